#!/usr/bin/env python3
"""The Keras side of scripts/check_keras_resnet50v2.sh.

    keras_resnet50v2_reference.py make DIR      a ResNet50V2 trunk with random weights (batch-norm
                                                statistics and conv biases too), saved as
                                                DIR/random.keras, DIR/random.h5 (whole model) and
                                                DIR/random_weights.h5 (weights alone, the layout
                                                of Keras' ImageNet files); random images
                                                in [0, 1] (DIR/inputs.safetensors, NCHW) and what
                                                Keras computes from them (DIR/keras.safetensors)
    keras_resnet50v2_reference.py compare A B   max |a - b| over every tensor the two files share;
                                                exits 1 above the tolerance

Images of two sizes (64 and 224 px) check the padding at the stem and at strided blocks.
Keras gets `preprocess_input`'s scaling, x * 2 - 1, which the worker's model applies itself.
"""

import json
import os
import struct
import sys

import numpy as np

TOLERANCE = 1e-4
SIZES = {"images_64": (3, 64), "images_224": (2, 224)}


def write_safetensors(tensors, path):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


def read_safetensors(path):
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        data = f.read()
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] != "F32":
            sys.exit(f"{path}: `{name}` is {entry['dtype']}, expected F32")
        start, end = entry["data_offsets"]
        tensors[name] = np.frombuffer(data[start:end], dtype="<f4").reshape(entry["shape"])
    return tensors


def make(directory):
    import keras

    keras.utils.set_random_seed(20261129)
    model = keras.applications.ResNet50V2(include_top=False, weights=None, input_shape=(None, None, 3))
    rng = np.random.default_rng(7)
    # Fresh batch norms are the identity (gamma 1, beta 0, mean 0, variance 1) and conv biases
    # zero: a converter that swapped them would go unnoticed. Random values of a realistic size
    # make every tensor count.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype("f4"))
            layer.beta.assign(rng.normal(0.0, 0.1, c).astype("f4"))
            layer.moving_mean.assign(rng.normal(0.0, 0.1, c).astype("f4"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, c).astype("f4"))
        elif isinstance(layer, keras.layers.Conv2D) and layer.use_bias:
            layer.bias.assign(rng.normal(0.0, 0.05, layer.bias.shape[0]).astype("f4"))
    model.save(os.path.join(directory, "random.keras"))
    model.save(os.path.join(directory, "random.h5"))
    # Weights alone in the legacy HDF5 layout, as Keras' downloadable ImageNet files are.
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(os.path.join(directory, "random_weights.h5"), "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)

    inputs, outputs = {}, {}
    for name, (count, side) in SIZES.items():
        images = rng.uniform(0.0, 1.0, (count, side, side, 3)).astype("f4")
        features = model(images * 2.0 - 1.0, training=False)
        inputs[name] = images.transpose(0, 3, 1, 2)
        outputs[name] = np.asarray(features).transpose(0, 3, 1, 2)
    write_safetensors(inputs, os.path.join(directory, "inputs.safetensors"))
    write_safetensors(outputs, os.path.join(directory, "keras.safetensors"))
    print(f"random ResNet50V2 ({len(model.layers)} layers) and {len(SIZES)} batches written to {directory}")


def compare(path_a, path_b):
    a, b = read_safetensors(path_a), read_safetensors(path_b)
    if set(a) != set(b):
        sys.exit(f"{path_a} holds {sorted(a)}, {path_b} holds {sorted(b)}")
    worst = 0.0
    for name in sorted(a):
        if a[name].shape != b[name].shape:
            sys.exit(f"`{name}`: shape {a[name].shape} vs {b[name].shape}")
        difference = float(np.max(np.abs(a[name].astype("f8") - b[name].astype("f8"))))
        scale = float(np.max(np.abs(a[name])))
        print(f"{name}: shape {list(a[name].shape)}, max |value| {scale:.4g}, max |difference| {difference:.3g}")
        worst = max(worst, difference)
    if worst > TOLERANCE:
        sys.exit(f"outputs differ by up to {worst:.3g} > {TOLERANCE}")
    print(f"Keras and resnet50_v2 agree within {worst:.3g} (tolerance {TOLERANCE})")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
