#!/usr/bin/env bash
# Speed benchmark (not a test): the engine against PyTorch eager on the same model, batch,
# resolution and thread count; SAL's overhead over the baseline; the input pipeline's share.
# Usage: scripts/bench_engine.sh [--resolution 32] [--batch 64] [--train-size 4096] [--epochs 4] [--gpu N]
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q -p worker --example bench_engine
engine=$(target/release/examples/bench_engine "$@")
pytorch=$(.venv/bin/python -W ignore scripts/bench_pytorch.py "$@")
echo "$engine"
echo "$pytorch"
ours=$(sed -n 's/.*images_per_s=\([0-9.]*\).*/\1/p' <<<"$engine")
theirs=$(sed -n 's/.*images_per_s=\([0-9.]*\).*/\1/p' <<<"$pytorch")
awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "ratio engine/pytorch = %.3f\n", a / b }'
