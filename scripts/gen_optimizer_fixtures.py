#!/usr/bin/env python3
"""Writes worker/tests/fixtures/optimizers.json: five steps of each optimizer, Keras 3 semantics.

An independent implementation of the update rules of keras/src/optimizers/{adam,adamax,nadam,
rmsprop,sgd}.py in plain Python floats (float64, no numpy), element by element, so that the Rust
optimizers (tensor ops, in place) are checked against code that shares nothing with them.

Besides the Keras trajectories the fixture carries "variants": the same optimizers with a plausible
mistake (PyTorch's epsilon placement, epsilon on the other side of the root, no bias correction).
The Rust test asserts that each variant is far from the Keras numbers, so a fixture that could not
tell the mistake apart would fail rather than pass silently.

Run from the repository root: python3 scripts/gen_optimizer_fixtures.py
"""

import json
import math
import os

LEARNING_RATE = 0.01
STEPS = 5

# Two parameters, flattened (shapes [3] and [2, 2]).
SHAPES = [[3], [2, 2]]
INITIAL = [[0.5, -1.25, 2.0], [0.75, -0.3, 1.5, -2.0]]


def gradient(step, param, index):
    """A fixed gradient sequence with every regime that tells the formulas apart: ordinary
    gradients whose sign flips, a tiny one (1e-8, below epsilon: the epsilon placement and the
    bias correction dominate there), one that is zero at some steps, and a large one."""
    if param == 0:
        return [0.3 * (-1) ** step + 0.05 * step, 1e-8 * (step + 1), -0.7 + 0.1 * step][index]
    return [2.5 - 0.4 * step, 0.0 if step % 2 == 0 else -0.2, 3e-8 * (-1) ** step, 10.0 / (step + 1)][index]


GRADIENTS = [[[gradient(s, p, i) for i in range(len(INITIAL[p]))] for p in range(len(INITIAL))] for s in range(STEPS)]


def run(update, init_state):
    """Applies `update(t, w, g, state) -> (w, state)` element by element; returns the parameters
    after each step. `state` is per element; `shared` steps (Nadam's u-product) live in update."""
    params = [list(p) for p in INITIAL]
    states = [[init_state() for _ in p] for p in INITIAL]
    trajectory = []
    for s in range(STEPS):
        t = s + 1
        update.begin_step(t) if hasattr(update, "begin_step") else None
        for p in range(len(params)):
            for i in range(len(params[p])):
                params[p][i], states[p][i] = update(t, params[p][i], GRADIENTS[s][p][i], states[p][i])
        trajectory.append([list(p) for p in params])
    return trajectory


def adam(beta_1=0.9, beta_2=0.999, eps=1e-7, variant=None):
    def update(t, w, g, state):
        m, v = state
        m = m + (g - m) * (1 - beta_1)
        v = v + (g * g - v) * (1 - beta_2)
        if variant == "torch_epsilon":  # PyTorch: epsilon added to the bias-corrected root
            m_hat = m / (1 - beta_1**t)
            v_hat = v / (1 - beta_2**t)
            w = w - LEARNING_RATE * m_hat / (math.sqrt(v_hat) + eps)
        elif variant == "no_bias_correction":
            w = w - LEARNING_RATE * m / (math.sqrt(v) + eps)
        else:  # Keras: bias correction folded into the learning rate
            alpha = LEARNING_RATE * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)
            w = w - m * alpha / (math.sqrt(v) + eps)
        return w, (m, v)

    return run(update, lambda: (0.0, 0.0))


def adamax(beta_1=0.9, beta_2=0.999, eps=1e-7, variant=None):
    def update(t, w, g, state):
        m, u = state
        m = m + (g - m) * (1 - beta_1)
        u = max(beta_2 * u, abs(g))
        correction = 1.0 if variant == "no_bias_correction" else 1 - beta_1**t
        w = w - LEARNING_RATE * m / (correction * (u + eps))
        return w, (m, u)

    return run(update, lambda: (0.0, 0.0))


class NadamUpdate:
    def __init__(self, beta_1, beta_2, eps, variant):
        self.beta_1, self.beta_2, self.eps, self.variant = beta_1, beta_2, eps, variant
        self.u_product = 1.0

    def begin_step(self, t):
        # Keras updates the product once per step, before any variable.
        self.u_product *= self.beta_1 * (1 - 0.5 * 0.96**t)

    def __call__(self, t, w, g, state):
        beta_1, beta_2 = self.beta_1, self.beta_2
        m, v = state
        u_t = beta_1 * (1 - 0.5 * 0.96**t)
        u_next = beta_1 * (1 - 0.5 * 0.96 ** (t + 1))
        u_product_next = self.u_product * u_next
        m = m + (g - m) * (1 - beta_1)
        v = v + (g * g - v) * (1 - beta_2)
        if self.variant == "plain_momentum":  # Adam-style m_hat: no Nesterov look-ahead, no schedule
            m_hat = m / (1 - beta_1**t)
        else:
            m_hat = u_next * m / (1 - u_product_next) + (1 - u_t) * g / (1 - self.u_product)
        v_hat = v / (1 - beta_2**t)
        if self.variant == "epsilon_inside_root":
            w = w - LEARNING_RATE * m_hat / math.sqrt(v_hat + self.eps)
        else:
            w = w - LEARNING_RATE * m_hat / (math.sqrt(v_hat) + self.eps)
        return w, (m, v)


def nadam(beta_1=0.9, beta_2=0.999, eps=1e-7, variant=None):
    return run(NadamUpdate(beta_1, beta_2, eps, variant), lambda: (0.0, 0.0))


def rmsprop(rho=0.9, momentum=0.0, eps=1e-7, variant=None):
    def update(t, w, g, state):
        v, b = state
        v = rho * v + (1 - rho) * g * g
        if variant == "epsilon_outside_root":  # PyTorch's placement
            increment = LEARNING_RATE * g / (math.sqrt(v) + eps)
        else:  # Keras: inside the root
            increment = LEARNING_RATE * g / math.sqrt(v + eps)
        if momentum > 0:
            b = momentum * b + increment
            w = w - b
        else:
            w = w - increment
        return w, (v, b)

    return run(update, lambda: (0.0, 0.0))


def sgd(momentum=0.0, nesterov=False):
    def update(t, w, g, b):
        if momentum == 0:
            return w - LEARNING_RATE * g, b
        b = momentum * b - LEARNING_RATE * g
        if nesterov:
            w = w + momentum * b - LEARNING_RATE * g
        else:
            w = w + b
        return w, b

    return run(update, lambda: 0.0)


def main():
    cases = {
        "adam": {
            "config": {},
            "trajectory": adam(),
            "variants": {"torch_epsilon": adam(variant="torch_epsilon"), "no_bias_correction": adam(variant="no_bias_correction")},
        },
        "adamax": {"config": {}, "trajectory": adamax(), "variants": {"no_bias_correction": adamax(variant="no_bias_correction")}},
        "nadam": {
            "config": {},
            "trajectory": nadam(),
            "variants": {"epsilon_inside_root": nadam(variant="epsilon_inside_root"), "plain_momentum": nadam(variant="plain_momentum")},
        },
        "rmsprop": {"config": {}, "trajectory": rmsprop(), "variants": {"epsilon_outside_root": rmsprop(variant="epsilon_outside_root")}},
        "rmsprop_momentum": {"config": {"momentum": 0.9}, "trajectory": rmsprop(momentum=0.9), "variants": {}},
        "sgd": {"config": {}, "trajectory": sgd(), "variants": {}},
        "sgd_momentum": {"config": {"momentum": 0.9}, "trajectory": sgd(momentum=0.9), "variants": {}},
        "sgd_nesterov": {"config": {"momentum": 0.9, "nesterov": True}, "trajectory": sgd(momentum=0.9, nesterov=True), "variants": {}},
    }
    fixture = {
        "generator": "scripts/gen_optimizer_fixtures.py",
        "learning_rate": LEARNING_RATE,
        "shapes": SHAPES,
        "initial": INITIAL,
        "gradients": GRADIENTS,
        "optimizers": cases,
    }
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = os.path.join(root, "worker", "tests", "fixtures", "optimizers.json")
    with open(out, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
