#!/usr/bin/env python3
"""Writes worker/tests/fixtures/flatness.json: a tiny model's exact Hessian and SAM's steps.

The model is an MLP small enough that its Hessian is a 31 x 31 matrix PyTorch's autograd gives
exactly (torch.autograd.functional.hessian on the flattened parameters): logits =
tanh(x W1^T + b1) W2^T + b2, loss = mean cross-entropy over 8 fixed samples, all in float64.
The Rust tests build the same model from these numbers and check:
- every Hessian-vector product against the exact Hessian (one column per unit vector),
- Hutchinson's trace against the exact trace (within its standard error),
- power iteration's top eigenvalue against eigvalsh (the eigenvalue of largest magnitude),
- the gradient norm;
- three SAM steps (Foret et al. 2021: e = rho g / (||g|| + 1e-12), gradient at w + e, the
  optimizer steps from w) with each optimizer, Keras 3's update rules written out again here in
  torch tensor arithmetic (the same formulas as scripts/gen_optimizer_fixtures.py).

Parameter order everywhere: W1 [4, 3], b1 [4], W2 [3, 4], b2 [3], each flattened row-major.

Run from the repository root: .venv/bin/python scripts/gen_flatness_fixtures.py
"""

import json
import math
import os

import torch

torch.set_default_dtype(torch.float64)

SHAPES = [[4, 3], [4], [3, 4], [3]]
SAM_RHO = 0.05
SAM_STEPS = 3
LEARNING_RATES = {"sgd": 0.1, "adam": 0.01, "adamax": 0.01, "nadam": 0.01, "rmsprop": 0.01}


def fixed_values(count, scale, phase):
    """Deterministic, irregular numbers without a random generator (the fixture must not depend
    on torch's generator across versions)."""
    return [scale * math.sin(1.7 * i + phase) + 0.1 * scale * math.cos(0.3 * i * i + phase) for i in range(count)]


def sizes():
    return [math.prod(shape) for shape in SHAPES]


def initial_parameters():
    flat = []
    for p, count in enumerate(sizes()):
        flat.extend(fixed_values(count, 0.8, 0.5 + p))
    return flat


INPUTS = [fixed_values(3, 1.5, 10.0 + n) for n in range(8)]
LABELS = [n % 3 for n in range(8)]


def split(flat):
    out, start = [], 0
    for shape, count in zip(SHAPES, sizes()):
        out.append(flat[start : start + count].reshape(shape))
        start += count
    return out


def loss_of(flat):
    w1, b1, w2, b2 = split(flat)
    x = torch.tensor(INPUTS)
    y = torch.tensor(LABELS)
    logits = torch.tanh(x @ w1.T + b1) @ w2.T + b2
    return torch.nn.functional.cross_entropy(logits, y, reduction="mean")


def gradient(flat):
    w = flat.clone().requires_grad_(True)
    loss = loss_of(w)
    (g,) = torch.autograd.grad(loss, w)
    return loss.item(), g


def keras_update(name, lr):
    """Keras 3's update for `name` over a flat float64 vector; returns step(t, w, g) -> w."""
    state = {}
    b1, b2, eps = 0.9, 0.999, 1e-7

    def step(t, w, g):
        if name == "sgd":
            return w - lr * g
        if name == "adam":
            m = state.get("m", torch.zeros_like(w))
            v = state.get("v", torch.zeros_like(w))
            m = m + (g - m) * (1 - b1)
            v = v + (g * g - v) * (1 - b2)
            state["m"], state["v"] = m, v
            alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
            return w - m * alpha / (torch.sqrt(v) + eps)
        if name == "adamax":
            m = state.get("m", torch.zeros_like(w))
            u = state.get("u", torch.zeros_like(w))
            m = m + (g - m) * (1 - b1)
            u = torch.maximum(b2 * u, g.abs())
            state["m"], state["u"] = m, u
            return w - lr * m / ((1 - b1**t) * (u + eps))
        if name == "nadam":
            m = state.get("m", torch.zeros_like(w))
            v = state.get("v", torch.zeros_like(w))
            u_product = state.get("u_product", 1.0) * b1 * (1 - 0.5 * 0.96**t)
            u_t = b1 * (1 - 0.5 * 0.96**t)
            u_next = b1 * (1 - 0.5 * 0.96 ** (t + 1))
            u_product_next = u_product * u_next
            m = m + (g - m) * (1 - b1)
            v = v + (g * g - v) * (1 - b2)
            state["m"], state["v"], state["u_product"] = m, v, u_product
            m_hat = u_next * m / (1 - u_product_next) + (1 - u_t) * g / (1 - u_product)
            v_hat = v / (1 - b2**t)
            return w - lr * m_hat / (torch.sqrt(v_hat) + eps)
        if name == "rmsprop":
            v = state.get("v", torch.zeros_like(w))
            v = 0.9 * v + 0.1 * g * g
            state["v"] = v
            return w - lr * g / torch.sqrt(v + eps)
        raise ValueError(name)

    return step


def sam_trajectory(name, use_sam=True):
    lr = LEARNING_RATES[name]
    update = keras_update(name, lr)
    w = torch.tensor(initial_parameters())
    trajectory = []
    for s in range(SAM_STEPS):
        _, g = gradient(w)
        if use_sam:
            e = SAM_RHO * g / (g.norm() + 1e-12)
            _, g = gradient(w + e)
        w = update(s + 1, w, g)
        trajectory.append(w.tolist())
    return trajectory


def main():
    w = torch.tensor(initial_parameters())
    loss, g = gradient(w)
    hessian = torch.autograd.functional.hessian(loss_of, w)
    hessian = 0.5 * (hessian + hessian.T)
    eigenvalues = torch.linalg.eigvalsh(hessian)
    top = eigenvalues[eigenvalues.abs().argmax()].item()
    fixture = {
        "generator": "scripts/gen_flatness_fixtures.py",
        "torch": torch.__version__,
        "shapes": SHAPES,
        "parameters": initial_parameters(),
        "inputs": INPUTS,
        "labels": LABELS,
        "loss": loss,
        "gradient": g.tolist(),
        "grad_norm": g.norm().item(),
        "hessian": hessian.tolist(),
        "trace": torch.trace(hessian).item(),
        "eigenvalues": eigenvalues.tolist(),
        "lambda_max": top,
        "sam": {
            "rho": SAM_RHO,
            "learning_rates": LEARNING_RATES,
            "trajectories": {name: sam_trajectory(name) for name in LEARNING_RATES},
            "without_sam": {name: sam_trajectory(name, use_sam=False) for name in LEARNING_RATES},
        },
    }
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = os.path.join(root, "worker", "tests", "fixtures", "flatness.json")
    with open(out, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    gap = sorted(eigenvalues.abs().tolist())[-2:]
    print(f"wrote {out}: trace {fixture['trace']:.6f}, lambda_max {top:.6f}, |eig| top two {gap}")


if __name__ == "__main__":
    main()
