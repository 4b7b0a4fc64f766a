#!/usr/bin/env bash
# Calibration rows for `coordinator --dry-run`'s cost estimate: training and evaluation images per
# second of the real trial path (`worker train`, each row one trial process on generated data),
# per architecture x resolution x batch on one device, as CSV rows of
# coordinator/calibration/throughput.csv (see its header).
#
#   scripts/calibrate.sh                 one CPU rank with 1 intra-op thread (a trial's default
#                                        `cpu_threads`): device `cpu`
#   scripts/calibrate.sh --gpu 0         GPU 0: device named after its model (`NVIDIA H200` ->
#                                        `nvidia-h200`), as the coordinator names a stored
#                                        trial's GPU
#   scripts/calibrate.sh --append FILE   also append the rows to FILE
#
# A row's figures are what the trial's epoch history records (`train_images_per_s`,
# `eval_images_per_s`), averaged over the epochs after the first (the first pays for warm-up:
# allocator, cuDNN's choices). Its `source` column says the script, date, machine, load average
# (1 minute, before and after the row: on a shared machine other work slows a row down) and how.
#
# Settings (environment): ARCHS (default the paper's six), RESOLUTIONS ("32 64"), BATCH (64),
# EPOCHS (3), TRAIN_SIZE (256 on CPU, 4096 on a GPU), VAL_SIZE (256 on CPU, 2048 on a GPU),
# OPTIMIZER (adam), HEAD (paper), DEVICE_NAME (overrides the device's name), BIN (folder with the
# `worker` binary; default .device/bin if it has one, else target/release, built if missing),
# TORCH_LIB (libtorch's folder, as in scripts/gpu/determinism-check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

gpu=
append=
while [ $# -gt 0 ]; do
    case "$1" in
        --gpu) gpu=${2:?--gpu takes a device id}; shift 2 ;;
        --append) append=${2:?--append takes a file}; shift 2 ;;
        *) echo "calibrate: unknown argument $1 (known: --gpu ID, --append FILE)" >&2; exit 2 ;;
    esac
done

bin=${BIN:-}
if [ -z "$bin" ]; then
    if [ -x .device/bin/worker ]; then bin=.device/bin; else bin=target/release; fi
fi
if [ ! -x "$bin/worker" ]; then
    command -v cargo >/dev/null || { echo "calibrate: no $bin/worker and no cargo: set BIN" >&2; exit 2; }
    cargo build --release -p worker >&2
fi
torch_lib=${TORCH_LIB:-}
if [ -z "$torch_lib" ]; then
    torch_lib=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
    [ -d "$torch_lib" ] || torch_lib=.venv/libtorch/lib
fi
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
python=${PYTHON:-python3}
command -v "$python" >/dev/null || python=/opt/torch/.venv/bin/python

archs=${ARCHS:-densenet201 densenet121 mobilenet_v2 resnet50 efficientnet_b2 resnet50_v2}
resolutions=${RESOLUTIONS:-32 64}
batch=${BATCH:-64}
epochs=${EPOCHS:-3}
optimizer=${OPTIMIZER:-adam}
head=${HEAD:-paper}
if [ -n "$gpu" ]; then
    model=$(nvidia-smi --query-gpu=name --format=csv,noheader -i "$gpu" | head -1)
    # The coordinator's rule for a stored trial's device (coordinator/src/sweep/calibration.rs).
    device=${DEVICE_NAME:-$(echo "$model" | tr 'A-Z' 'a-z' | sed -e 's/[^a-z0-9]\{1,\}/-/g' -e 's/^-//' -e 's/-$//')}
    devices=(--gpus "$gpu")
    train_size=${TRAIN_SIZE:-4096} val_size=${VAL_SIZE:-2048}
    machine="$model, $(nproc) cores"
else
    device=${DEVICE_NAME:-cpu}
    devices=(--cpu-ranks 1)
    train_size=${TRAIN_SIZE:-256} val_size=${VAL_SIZE:-256}
    machine="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) cores, 1 rank x 1 thread"
fi
if [ "$epochs" -lt 2 ]; then
    echo "calibrate: EPOCHS must be at least 2 (the first epoch is left out)" >&2
    exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
load1() { cut -d' ' -f1 /proc/loadavg; }
echo "calibrate: $device ($machine), worker from $bin; $train_size train and $val_size validation images, $epochs epochs, batch $batch, $optimizer, head $head" >&2
for arch in $archs; do
    for resolution in $resolutions; do
        row="$arch-$resolution"
        cat > "$work/$row.yaml" <<YAML
architecture: $arch
optimizer: $optimizer
head: $head
dataset:
  name: synthetic
  format: synthetic
  options: {classes: 10, train_size: $train_size, val_size: $val_size}
resolution: $resolution
method: baseline
epochs: $epochs
batch_size: $batch
learning_rate: 1.0e-5
seed: 1
YAML
        before=$(load1)
        start=$(date +%s.%N)
        if ! "$bin/worker" train --trial "$work/$row.yaml" "${devices[@]}" --no-progress \
            --cache-dir "$work/cache" --checkpoint-dir "$work/ckpt-$row" --checkpoint-every 0 \
            --out "$work/$row.json" > "$work/$row.log" 2>&1; then
            echo "calibrate: $row failed (row left out):" >&2
            tail -5 "$work/$row.log" >&2
            continue
        fi
        end=$(date +%s.%N)
        after=$(load1)
        line=$("$python" - "$work/$row.json" "$start" "$end" <<PY
import json, sys
history = json.load(open(sys.argv[1]))["history"][1:]
train = sum(e["train_images_per_s"] for e in history) / len(history)
evaluate = sum(e["eval_images_per_s"] for e in history) / len(history)
source = ("scripts/calibrate.sh $(date -u +%Y-%m-%d), $(hostname), $machine, load average $before before $after after; "
          "worker train, synthetic $train_size train/$val_size val images, $optimizer, head $head, "
          "mean of epochs 2-$epochs, " f"run {float(sys.argv[3]) - float(sys.argv[2]):.0f} s")
print(f"$arch,$resolution,$batch,$device,{train:.1f},{evaluate:.1f},{source}")
PY
)
        echo "$line"
        if [ -n "$append" ]; then echo "$line" >> "$append"; fi
    done
done
