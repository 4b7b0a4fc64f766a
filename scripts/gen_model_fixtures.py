#!/usr/bin/env python3
"""Writes worker/tests/fixtures/torchvision_trunks.json: for each torchvision architecture the
worker rebuilds, every state-dict entry of the trunk (name and shape), the ImageNet classifier
(`fc.`, `classifier.`) and batch norms' `num_batches_tracked` left out, and the model's parameter
count with its 1000-class classifier. `tests/models.rs` checks that the Rust trunks have exactly
these variables, so that weights converted from torchvision load.

It also records what each trunk computes: every variable is filled by `deterministic_fill` (a
formula of its name and shape that the Rust test repeats with the same libtorch ops), a fixed
64 px batch of two images goes through the trunk in training mode (batch statistics, so that the
arbitrary weights keep activations in range; stochastic depth off), and the globally pooled
features are stored (every 16th channel, and each sample's sum and sum of squares).

Needs torch and torchvision importable (the worker's venv has torch; torchvision, numpy and
pillow may come from unpacked wheels on PYTHONPATH). Builds models without weights: no download.

Run from the repository root: python3 scripts/gen_model_fixtures.py
"""

import json
import os

import torch
import torchvision
import torchvision.models as models
from torchvision.ops import StochasticDepth

ARCHITECTURES = ["resnet18", "resnet50", "densenet121", "densenet201", "mobilenet_v2", "efficientnet_b2"]


def is_trunk(name):
    return not (name.startswith("fc.") or name.startswith("classifier.") or name.endswith(".num_batches_tracked"))


FEATURE_STRIDE = 16
SIDE = 64


def deterministic_fill(name, shape):
    """The same formula as `deterministic_fill` in worker/tests/models.rs."""
    n = 1
    for d in shape:
        n *= d
    wave = torch.sin(torch.arange(n, dtype=torch.float64) * 0.61 + (len(name) % 17) * 0.1)
    if name.endswith("running_var"):
        values = 1.0 + 0.5 * wave
    elif name.endswith("running_mean") or (len(shape) == 1 and not name.endswith("weight")):
        values = 0.1 * wave
    elif len(shape) == 1:
        values = 1.0 + 0.1 * wave
    else:
        values = wave * (3.0 / (n // shape[0])) ** 0.5
    return values.to(torch.float32).reshape(shape)


def reference_images():
    """Two 64 px images in [0, 1], the same as `reference_images` in worker/tests/models.rs."""
    n = 2 * 3 * SIDE * SIDE
    wave = torch.sin(torch.arange(n, dtype=torch.float64) * 0.013)
    return (0.5 + 0.5 * wave).to(torch.float32).reshape(2, 3, SIDE, SIDE)


def pooled_features(name, model, images):
    mean = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    x = (images - mean) / std
    if name.startswith("resnet"):
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    elif name.startswith("densenet"):
        x = torch.relu(model.features(x))
    else:
        x = model.features(x)
    return x.mean(dim=(2, 3))


def computed_features(name, model):
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if is_trunk(key):
                tensor.copy_(deterministic_fill(key, list(tensor.shape)))
    model.train()
    for module in model.modules():
        if isinstance(module, StochasticDepth):
            module.eval()
    with torch.no_grad():
        features = pooled_features(name, model, reference_images()).double()
    return {
        "channels": features.shape[1],
        "stride": FEATURE_STRIDE,
        "every_16th": features[:, ::FEATURE_STRIDE].tolist(),
        "sum": features.sum(dim=1).tolist(),
        "sum_of_squares": (features**2).sum(dim=1).tolist(),
    }


def main():
    fixture = {"generator": "scripts/gen_model_fixtures.py", "torchvision": torchvision.__version__, "architectures": {}}
    for name in ARCHITECTURES:
        model = getattr(models, name)(weights=None)
        trunk = {key: list(value.shape) for key, value in model.state_dict().items() if is_trunk(key)}
        fixture["architectures"][name] = {
            "parameters_with_imagenet_classifier": sum(p.numel() for p in model.parameters()),
            "trunk": trunk,
            "features_64px": computed_features(name, model),
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
            f.write(f'   "features_64px": {json.dumps(arch["features_64px"])},\n')
            f.write('   "trunk": {\n')
            entries = [f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in arch["trunk"].items()]
            f.write(",\n".join(entries))
            f.write("\n   }\n  }" + ("," if i + 1 < len(fixture["architectures"]) else "") + "\n")
        f.write(" }\n}\n")
    json.load(open(out))  # what was written parses
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
