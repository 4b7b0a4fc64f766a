#!/usr/bin/env python3
"""Writes coordinator/tests/fixtures/paired_stats.json: scipy's paired statistics on fixed inputs,
which coordinator::report::stats must reproduce (tests/report_stats.rs).

    python3 -m venv /tmp/scipy-venv && /tmp/scipy-venv/bin/pip install scipy
    /tmp/scipy-venv/bin/python scripts/make_stats_fixture.py

Each case pairs a SAL and a baseline sample (top-1 in percent, one value per seed); the
differences are SAL - baseline. Holm-Bonferroni is written out here (statsmodels' `holm` is the
same few lines) and checked on a family that includes untested cells.
"""
import json
import pathlib

import numpy as np
import scipy
from scipy import stats

# Multiples of 1/4 (and differences too, except where a case says otherwise), so that sums are
# exact in binary and tied differences really tie.
BASELINE = [71.25, 68.75, 70.5, 72.75, 69.5, 70.0, 71.75, 69.0, 70.5, 72.25, 68.5, 71.0, 70.75,
            69.75, 72.5, 70.25, 71.5, 69.5, 70.75, 72.0]

CASES = {
    # n = 2 and 3: t-test only.
    "two_pairs": [0.8, 2.1],
    "three_pairs": [0.5, 1.2, -0.3],
    # The smallest n with a signed-rank test; no ties: exact distribution.
    "six_pairs_exact": [1.25, -0.5, 2.25, 0.75, 2.0, 0.25],
    # Not multiples of 1/4: rounding makes the |d| distinct anyway.
    "ten_pairs_exact": [0.35, -0.9, 1.45, 0.6, 2.05, -0.15, 0.8, 1.2, 0.05, 1.7],
    # Ties in |d| (and a tie across signs): scipy's exact permutation test (n <= 13).
    "eight_pairs_ties": [1.0, 1.0, -0.5, 2.0, 2.0, 0.25, 0.5, 1.5],
    # A zero difference: dropped from the ranks, permutation test.
    "seven_pairs_zero": [0.0, 0.4, -1.2, 0.9, 1.6, 2.2, 0.75],
    # Ties with n > 13: normal approximation with the tie correction.
    "twenty_pairs_ties": [0.5, -0.25, 1.0, 1.0, 0.5, 2.0, -1.0, 0.75, 1.25, 0.5,
                          1.5, -0.5, 0.25, 1.0, 2.25, 0.75, -0.25, 1.75, 0.5, 1.0],
    # Every difference negative: the smallest exact p for n = 6 (2/64).
    "six_pairs_all_negative": [-0.5, -1.0, -1.5, -2.0, -2.5, -3.0],
}


def case(differences):
    n = len(differences)
    baseline = np.array(BASELINE[:n])
    sal = baseline + np.array(differences)
    d = sal - baseline
    magnitudes = np.abs(d[d != 0])
    out = {"ties": bool(len(np.unique(magnitudes)) < len(magnitudes)), "zeros": int(np.sum(d == 0)),"baseline": baseline.tolist(), "sal": sal.tolist(), "mean": float(np.mean(d))}
    t = stats.ttest_rel(sal, baseline)
    ci = t.confidence_interval(0.95)
    out["t_p"] = float(t.pvalue)
    out["ci_low"] = float(ci.low)
    out["ci_high"] = float(ci.high)
    out["wilcoxon_p"] = float(stats.wilcoxon(sal, baseline).pvalue) if n >= 6 else None
    return out


def holm(p_values):
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(tested)
    adjusted = [None] * len(p_values)
    running = 0.0
    for k, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - k) * p))
        adjusted[i] = running
    return adjusted


HOLM_INPUT = [0.01, 0.04, None, 0.03, 0.2, 0.005]

fixture = {
    "generated_by": "scripts/make_stats_fixture.py",
    "scipy": scipy.__version__,
    "cases": {name: case(d) for name, d in CASES.items()},
    "holm": {"p": HOLM_INPUT, "adjusted": holm(HOLM_INPUT)},
}
path = pathlib.Path(__file__).resolve().parent.parent / "coordinator/tests/fixtures/paired_stats.json"
path.write_text(json.dumps(fixture, indent=1) + "\n")
print(f"wrote {path}")
