#!/usr/bin/env python3
"""Writes worker/tests/fixtures/torchvision_trunks.json: for each torchvision architecture the
worker rebuilds, every state-dict entry of the trunk (name and shape), the ImageNet classifier
(`fc.`, `classifier.`) and batch norms' `num_batches_tracked` left out, and the model's parameter
count with its 1000-class classifier. `tests/models.rs` checks that the Rust trunks have exactly
these variables, so that weights converted from torchvision load.

Needs torch and torchvision importable (the worker's venv has torch; torchvision, numpy and
pillow may come from unpacked wheels on PYTHONPATH). Builds models without weights: no download.

Run from the repository root: python3 scripts/gen_model_fixtures.py
"""

import json
import os

import torchvision
import torchvision.models as models

ARCHITECTURES = ["resnet18", "resnet50", "densenet121", "densenet201", "mobilenet_v2", "efficientnet_b2"]


def is_trunk(name):
    return not (name.startswith("fc.") or name.startswith("classifier.") or name.endswith(".num_batches_tracked"))


def main():
    fixture = {"generator": "scripts/gen_model_fixtures.py", "torchvision": torchvision.__version__, "architectures": {}}
    for name in ARCHITECTURES:
        model = getattr(models, name)(weights=None)
        trunk = {key: list(value.shape) for key, value in model.state_dict().items() if is_trunk(key)}
        fixture["architectures"][name] = {
            "parameters_with_imagenet_classifier": sum(p.numel() for p in model.parameters()),
            "trunk": trunk,
        }
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = os.path.join(root, "worker", "tests", "fixtures", "torchvision_trunks.json")
    with open(out, "w") as f:
        # One entry per line: diffs stay readable when torchvision changes.
        f.write("{\n")
        f.write(f' "generator": {json.dumps(fixture["generator"])},\n')
        f.write(f' "torchvision": {json.dumps(fixture["torchvision"])},\n')
        f.write(' "architectures": {\n')
        for i, (name, arch) in enumerate(fixture["architectures"].items()):
            f.write(f'  {json.dumps(name)}: {{\n')
            f.write(f'   "parameters_with_imagenet_classifier": {arch["parameters_with_imagenet_classifier"]},\n')
            f.write('   "trunk": {\n')
            entries = [f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in arch["trunk"].items()]
            f.write(",\n".join(entries))
            f.write("\n   }\n  }" + ("," if i + 1 < len(fixture["architectures"]) else "") + "\n")
        f.write(" }\n}\n")
    json.load(open(out))  # what was written parses
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
