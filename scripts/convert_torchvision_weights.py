#!/usr/bin/env python3
"""Converts a torchvision model's ImageNet weights into a `.safetensors` file that the worker's
`pretrained:` field loads (`worker::models::load_pretrained`): the trunk's variables under
torchvision's names, running statistics included; the ImageNet classifier and batch norms'
`num_batches_tracked` counters are left out (the worker's head is new).

    python3 scripts/convert_torchvision_weights.py densenet201 densenet201.safetensors
    python3 scripts/convert_torchvision_weights.py densenet201 densenet201.safetensors \
        --from densenet201-c1103571.pth

Without `--from`, needs torch and torchvision and downloads the weights through torchvision's own
cache (run it where the network allows). With `--from FILE`, converts a torchvision weights file
already downloaded (what `sal-data fetch weights:ARCH` does): torch alone is needed, and the
legacy DenseNet names in torchvision's files (`norm.1`) become the model's (`norm1`), as
torchvision's own loader renames them. `--no-weights` converts a randomly initialized model instead
(no download): a quick way to check the pipeline. Writes the safetensors format directly (a little-endian u64
header length, a JSON header, raw little-endian data), so no `safetensors` package is needed.

ResNet50V2 is Keras-only: see worker/src/models/resnet_v2.rs for how Keras' names map to ours.
"""

import argparse
import ctypes
import json
import re
import struct
import sys

import torch

ARCHITECTURES = ["densenet121", "densenet201", "mobilenet_v2", "resnet18", "resnet50", "efficientnet_b2"]
DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64", torch.int64: "I64"}


def is_trunk(name):
    return not (name.startswith("fc.") or name.startswith("classifier.") or name.endswith(".num_batches_tracked"))


# torchvision's DenseNet files predate its module names: `denselayer1.norm.1.weight` is loaded as
# `denselayer1.norm1.weight` (torchvision/models/densenet.py, _load_state_dict).
DENSENET_LEGACY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def from_file(path):
    """The trunk of a torchvision weights file (a state dict saved with torch.save)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        sys.exit(f"{path}: not a state dict")
    renamed = {}
    for name, tensor in state.items():
        match = DENSENET_LEGACY.match(name)
        renamed[match.group(1) + match.group(2) if match else name] = tensor
    return {name: tensor for name, tensor in renamed.items() if is_trunk(name)}


def write_safetensors(tensors, path, metadata):
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name, tensor in tensors.items():
        # The tensor's bytes in one copy (bytes(storage) walks them one by one in Python: 85 s for
        # DenseNet-121 on a 2-core machine); numpy is not needed.
        flat = tensor.detach().cpu().contiguous()
        data = ctypes.string_at(flat.data_ptr(), flat.numel() * flat.element_size())
        header[name] = {"dtype": DTYPES[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + len(data)]}
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
    parser.add_argument("architecture", choices=ARCHITECTURES)
    parser.add_argument("output", help="the .safetensors file to write")
    parser.add_argument("--no-weights", action="store_true", help="random initialization, no download")
    parser.add_argument("--from", dest="source", help="a torchvision weights file (.pth) already downloaded")
    args = parser.parse_args()
    if not args.output.endswith(".safetensors"):
        sys.exit(f"{args.output}: the output must end in .safetensors")
    if sys.byteorder != "little":
        sys.exit("safetensors is little-endian; run this on a little-endian machine")
    if args.source:
        trunk = from_file(args.source)
        weights = args.source.rsplit("/", 1)[-1]
    else:
        import torchvision.models as models

        weights = None if args.no_weights else "DEFAULT"
        model = getattr(models, args.architecture)(weights=weights)
        trunk = {name: tensor for name, tensor in model.state_dict().items() if is_trunk(name)}
    write_safetensors(trunk, args.output, {"architecture": args.architecture, "weights": str(weights)})
    print(f"wrote {len(trunk)} tensors to {args.output}")


if __name__ == "__main__":
    main()
