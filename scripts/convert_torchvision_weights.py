#!/usr/bin/env python3
"""Converts a torchvision model's ImageNet weights into a `.safetensors` file that the worker's
`pretrained:` field loads (`worker::models::load_pretrained`): the trunk's variables under
torchvision's names, running statistics included; the ImageNet classifier and batch norms'
`num_batches_tracked` counters are left out (the worker's head is new).

    python3 scripts/convert_torchvision_weights.py densenet201 densenet201.safetensors

Needs torch and torchvision; downloads the weights through torchvision's own cache (run it where
the network allows). `--no-weights` converts a randomly initialized model instead (no download):
a quick way to check the pipeline. Writes the safetensors format directly (a little-endian u64
header length, a JSON header, raw little-endian data), so no `safetensors` package is needed.

ResNet50V2 is Keras-only: see worker/src/models/resnet_v2.rs for how Keras' names map to ours.
"""

import argparse
import json
import struct
import sys

import torch
import torchvision.models as models

ARCHITECTURES = ["densenet121", "densenet201", "mobilenet_v2", "resnet18", "resnet50", "efficientnet_b2"]
DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64", torch.int64: "I64"}


def is_trunk(name):
    return not (name.startswith("fc.") or name.startswith("classifier.") or name.endswith(".num_batches_tracked"))


def write_safetensors(tensors, path, metadata):
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name, tensor in tensors.items():
        data = bytes(tensor.detach().cpu().contiguous().clone().untyped_storage())
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
    args = parser.parse_args()
    if not args.output.endswith(".safetensors"):
        sys.exit(f"{args.output}: the output must end in .safetensors")
    if sys.byteorder != "little":
        sys.exit("safetensors is little-endian; run this on a little-endian machine")
    weights = None if args.no_weights else "DEFAULT"
    model = getattr(models, args.architecture)(weights=weights)
    trunk = {name: tensor for name, tensor in model.state_dict().items() if is_trunk(name)}
    write_safetensors(trunk, args.output, {"architecture": args.architecture, "weights": str(weights)})
    print(f"wrote {len(trunk)} tensors to {args.output}")


if __name__ == "__main__":
    main()
