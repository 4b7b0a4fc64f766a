#!/usr/bin/env bash
# Writes a sweep shaped like sweeps/paper.yaml with 10 seeds where every trial is a no-op
# (`architecture: noop`, 5 epochs of EPOCH_MS each): 13,440 trials (6 "architectures" × 4
# optimizers × 7 datasets × 4 resolutions × 2 methods × 10 seeds). The benchmarks of the
# coordinator at the paper grid's scale use it (scripts/bench_scale.sh, scripts/bench_dashboard.sh).
#
#   scripts/paper_noop_sweep.sh FILE [EPOCH_MS]     # EPOCH_MS: default 0
#
# A no-op trial has no architecture of its own, so the 6 architectures are stood in for by 6
# variants of each dataset (`DATASET_a1` .. `_a6`, differing in their size): the same number of
# trials, cells and epochs as the paper grid, which is what the coordinator and reports pay for.
set -euo pipefail
if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 FILE [EPOCH_MS]" >&2
    exit 2
fi
out=$1
epoch_ms=${2:-0}
if ! [[ $epoch_ms =~ ^[0-9]+$ ]]; then
    echo "error: EPOCH_MS=$epoch_ms is not a whole number of milliseconds" >&2
    exit 2
fi
{
    echo "name: paper-noop"
    echo "epochs: 5"
    echo "batch_size: 64"
    echo "learning_rate: 0.001"
    echo "seeds: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"
    echo "methods: [baseline, sal]"
    echo "architectures: [noop]"
    echo "optimizers: [adam, adamax, nadam, rmsprop]"
    echo "resolutions: [32, 64, 128, 224]"
    echo "datasets:"
    for d in imagenette imagewoof tiny_imagenet eurosat pacs cifar10 corel1k; do
        for a in 1 2 3 4 5 6; do
            echo "  ${d}_a$a: {format: synthetic, options: {epoch_ms: $epoch_ms, train_size: $((64 + a)), val_size: 16}}"
        done
    done
} >"$out"
