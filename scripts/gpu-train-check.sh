#!/usr/bin/env bash
# On a CUDA machine: the training engine on one GPU, then data-parallel on every visible GPU with
# the replicas' checksums compared after every epoch. Minutes; prints what it checks.
# (Meant to be folded into scripts/gpu-check.sh.)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q -p worker --features nccl
worker=target/release/worker
gpus=$(.venv/bin/python -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
echo "visible GPUs: $gpus"
[ "$gpus" -ge 1 ] || { echo "no GPU visible"; exit 1; }

trial=$(mktemp --suffix .yaml)
work=$(mktemp -d)
trap 'rm -rf "$trial" "$work"' EXIT
sed -e 's/^epochs: .*/epochs: 2/' sweeps/trials/synthetic-small.yaml > "$trial"

echo "=== one GPU, 2 epochs"
"$worker" train --trial "$trial" --gpus 0 --no-progress --cache-dir "$work/cache" \
    --checkpoint-dir "$work/ckpt1" --out "$work/one.json"

ids=$(seq -s, 0 $((gpus - 1)))
echo "=== data-parallel on GPUs $ids, replicas compared after every epoch"
"$worker" train --trial "$trial" --gpus "$ids" --check-replicas --no-progress --cache-dir "$work/cache" \
    --checkpoint-dir "$work/ckptn" --out "$work/all.json"
grep -o '"peak_device_mb": [0-9.]*' "$work/one.json" "$work/all.json" || true
echo "gpu-train-check: ok"
