#!/usr/bin/env python3
"""Converts Keras' ResNet50V2 weights into a `.safetensors` file that the worker's `pretrained:`
field loads (`worker::models::load_pretrained`) for `resnet50_v2`: the trunk's variables under this
project's names (worker/src/models/resnet_v2.rs), running statistics included; an ImageNet
classifier (`predictions`), if the file has one, is left out (the worker's head is new).

    # ImageNet weights: Keras downloads them (resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5
    # from storage.googleapis.com/tensorflow/keras-applications/resnet/) into ~/.keras/models
    python3 scripts/convert_keras_resnet50v2.py --imagenet resnet50_v2.safetensors
    # A model or weights file of your own: a whole model (`.keras`, `.h5`), or weights (`.h5`)
    python3 scripts/convert_keras_resnet50v2.py model.keras resnet50_v2.safetensors

Needs TensorFlow with Keras 3 (`pip install tensorflow-cpu`). The name map, for each Keras layer:
`conv1_conv` -> `conv1`, `conv{s}_block{b}_{preact_bn,1_conv,1_bn,2_conv,2_bn,3_conv,0_conv}` ->
`layer{s-1}.{b-1}.{preact_bn,conv1,bn1,conv2,bn2,conv3,downsample}`, `post_bn` -> `post_bn`;
convolution kernels go from Keras' (kh, kw, in, out) to (out, in, kh, kw); a batch norm's gamma,
beta, moving mean and moving variance become `weight`, `bias`, `running_mean`, `running_var`.
The result is checked against the trunk's manifest
(common/src/weights_manifest/manifests/resnet50_v2.json): every name, every shape, nothing more.
Written in the safetensors format directly, as scripts/convert_torchvision_weights.py does.
"""

import argparse
import json
import os
import re
import struct
import sys

import numpy as np

MANIFEST = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "common", "src", "weights_manifest", "manifests", "resnet50_v2.json"
)
BLOCK = re.compile(r"^conv(\d)_block(\d+)_(preact_bn|1_conv|1_bn|2_conv|2_bn|3_conv|0_conv)$")
PARTS = {
    "preact_bn": "preact_bn",
    "1_conv": "conv1",
    "1_bn": "bn1",
    "2_conv": "conv2",
    "2_bn": "bn2",
    "3_conv": "conv3",
    "0_conv": "downsample",
}
# Keras layers with weights that are not the trunk's: the ImageNet classifier.
SKIPPED = {"predictions"}


def our_name(keras_name):
    """This project's module path for a Keras layer name, or None if it has none."""
    if keras_name == "conv1_conv":
        return "conv1"
    if keras_name == "post_bn":
        return "post_bn"
    match = BLOCK.match(keras_name)
    if match:
        stage, block, part = match.groups()
        return f"layer{int(stage) - 1}.{int(block) - 1}.{PARTS[part]}"
    return None


def load_keras_model(source, imagenet):
    if not imagenet:
        if not os.path.isfile(source):
            sys.exit(f"{source}: no such file")
        if not source.endswith((".keras", ".h5")):
            sys.exit(f"{source}: expected a .keras or .h5 file")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up notices
    import keras

    if imagenet:
        return keras.applications.ResNet50V2(include_top=False, weights="imagenet")
    if source.endswith(".keras"):
        return keras.saving.load_model(source, compile=False)
    try:  # a whole model saved as HDF5
        return keras.saving.load_model(source, compile=False)
    except Exception:
        pass
    errors = []
    for include_top in (False, True):  # weights alone, with or without the ImageNet classifier
        model = keras.applications.ResNet50V2(include_top=include_top, weights=None, input_shape=(224, 224, 3))
        try:
            model.load_weights(source)
            return model
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(str(error).splitlines()[0])
    sys.exit(f"{source}: neither a Keras model nor ResNet50V2 weights ({'; '.join(errors)})")


def trunk_tensors(model):
    """The trunk's tensors under this project's names, as float32 arrays in PyTorch's layouts."""
    import keras

    tensors = {}
    for layer in model.layers:
        if not layer.weights or layer.name in SKIPPED:
            continue
        name = our_name(layer.name)
        if name is None:
            sys.exit(f"Keras layer `{layer.name}` ({type(layer).__name__}) has no counterpart in resnet50_v2")
        value = lambda variable: np.asarray(keras.ops.convert_to_numpy(variable), dtype="<f4")  # noqa: E731
        if isinstance(layer, keras.layers.Conv2D):
            tensors[f"{name}.weight"] = np.ascontiguousarray(value(layer.kernel).transpose(3, 2, 0, 1))
            if layer.use_bias:
                tensors[f"{name}.bias"] = value(layer.bias)
        elif isinstance(layer, keras.layers.BatchNormalization):
            if not (layer.scale and layer.center):
                sys.exit(f"batch norm `{layer.name}` lacks its scale or shift")
            tensors[f"{name}.weight"] = value(layer.gamma)
            tensors[f"{name}.bias"] = value(layer.beta)
            tensors[f"{name}.running_mean"] = value(layer.moving_mean)
            tensors[f"{name}.running_var"] = value(layer.moving_variance)
        else:
            sys.exit(f"Keras layer `{layer.name}` is a {type(layer).__name__}: not a layer of ResNet50V2's trunk")
    return tensors


def check_against_manifest(tensors):
    with open(MANIFEST) as f:
        expected = json.load(f)["tensors"]
    found = {name: list(array.shape) for name, array in tensors.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    misshaped = sorted(f"{n} (file {found[n]}, model {expected[n]})" for n in set(found) & set(expected) if found[n] != expected[n])
    problems = [f"{len(v)} {what} ({', '.join(v[:5])}{', ...' if len(v) > 5 else ''})" for what, v in
                (("missing", missing), ("unexpected", unexpected), ("shape mismatches", misshaped)) if v]
    if problems:
        sys.exit(f"the converted weights do not fit resnet50_v2: {'; '.join(problems)}")


def write_safetensors(tensors, path, metadata):
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for blob in blobs:
            f.write(blob)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", help="a Keras ResNet50V2 model or weights file (.keras, .h5)")
    parser.add_argument("output", help="the .safetensors file to write")
    parser.add_argument("--imagenet", action="store_true", help="Keras' ImageNet weights (downloaded by Keras)")
    args = parser.parse_args()
    if args.imagenet == (args.source is not None):
        sys.exit("give either a source file or --imagenet")
    if not args.output.endswith(".safetensors"):
        sys.exit(f"{args.output}: the output must end in .safetensors")
    model = load_keras_model(args.source, args.imagenet)
    tensors = trunk_tensors(model)
    check_against_manifest(tensors)
    source = "keras imagenet" if args.imagenet else os.path.basename(args.source)
    write_safetensors(tensors, args.output, {"architecture": "resnet50_v2", "weights": source})
    print(f"wrote {len(tensors)} tensors to {args.output}")


if __name__ == "__main__":
    main()
