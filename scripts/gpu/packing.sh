#!/usr/bin/env bash
# What packing several trials onto one GPU buys: aggregate training images per second with N
# trials running at once on GPU 0 (N = 1, 2, 4, 8 concurrent `worker train` processes, each a
# trial of its own), against one at a time, with the GPU's own utilisation and memory sampled
# beside it (nvidia-smi, every 200 ms); then what `trials_per_gpu: auto` chooses for the same
# trials and how its sweep's time compares with the best fixed N, through the product's path (a
# coordinator and a `worker --gpus 0` agent over loopback).
#
#   scripts/gpu/packing.sh            on a GPU machine (GPU 0)
#   scripts/gpu/packing.sh --cpu      the same on one CPU rank, smaller (a dry check: it shows the
#                                     script working, not what a GPU does)
#
# Binaries: BIN (default .device/bin, as `scripts/gpu-check.sh --prepare` fills it: `worker` built
# with the `nccl` feature, so that the agent reports the GPU's memory for `auto`, and
# `coordinator`), else target/release. libtorch: TORCH_LIB (default /opt/torch/.venv's torch/lib
# when it exists, else .venv/libtorch/lib).
# Settings (environment): MODELS (GPU: "resnet50 densenet121"; CPU: "resnet50"), RESOLUTIONS
# (GPU: "32 64"; CPU: "32"), NS (GPU: "1 2 4 8"; CPU: "1 2"), BATCH (64), EPOCHS (GPU 4, CPU 2),
# TRAIN_SIZE (GPU 8192, CPU 128), VAL_SIZE (GPU 1024, CPU 64), SWEEP_SEEDS (GPU 4, CPU 2: trials
# per profile in the auto sweep), OUT (a folder to keep the logs in; default a temporary one).
#
# Aggregate img/s of a packing = the sum over its trials of each trial's training img/s (epoch
# history, mean of the epochs after the first); the trials start together and run the same
# number of images, so their steady epochs overlap. Wall time is from the first start to the last
# exit (libtorch's load and CUDA's start included).
set -euo pipefail
cd "$(dirname "$0")/../.."

cpu=0
for arg in "$@"; do
    case "$arg" in
        --cpu) cpu=1 ;;
        *) echo "packing: unknown argument $arg (known: --cpu)" >&2; exit 2 ;;
    esac
done

bin=${BIN:-}
if [ -z "$bin" ]; then
    if [ -x .device/bin/worker ] && [ -x .device/bin/coordinator ]; then bin=.device/bin; else bin=target/release; fi
fi
for exe in worker coordinator; do
    [ -x "$bin/$exe" ] || { echo "packing: no $bin/$exe (scripts/gpu-check.sh --prepare, or set BIN)" >&2; exit 2; }
done
torch_lib=${TORCH_LIB:-}
if [ -z "$torch_lib" ]; then
    torch_lib=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
    [ -d "$torch_lib" ] || torch_lib=.venv/libtorch/lib
fi
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
python=${PYTHON:-python3}
command -v "$python" >/dev/null || python=/opt/torch/.venv/bin/python

if [ "$cpu" = 1 ]; then
    devices=(--cpu-ranks 1) agent_devices=(--cpu-ranks 1)
    models=${MODELS:-resnet50} resolutions=${RESOLUTIONS:-32} ns=${NS:-1 2}
    epochs=${EPOCHS:-2} train_size=${TRAIN_SIZE:-128} val_size=${VAL_SIZE:-64} seeds=${SWEEP_SEEDS:-2}
    device="one CPU rank ($(nproc) cores; each trial 1 intra-op thread)"
else
    command -v nvidia-smi >/dev/null || { echo "packing: no nvidia-smi: run with --cpu for the dry check" >&2; exit 2; }
    devices=(--gpus 0) agent_devices=(--gpus 0)
    models=${MODELS:-resnet50 densenet121} resolutions=${RESOLUTIONS:-32 64} ns=${NS:-1 2 4 8}
    epochs=${EPOCHS:-4} train_size=${TRAIN_SIZE:-8192} val_size=${VAL_SIZE:-1024} seeds=${SWEEP_SEEDS:-4}
    device="GPU 0 ($(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader -i 0))"
fi
batch=${BATCH:-64}

out=${OUT:-}
if [ -z "$out" ]; then
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"
echo "packing: $device, batch $batch, $epochs epochs of $train_size training and $val_size validation images per trial; binaries from $bin"

trial_file() { # FILE ARCH RESOLUTION SEED
    cat > "$1" <<YAML
architecture: $2
optimizer: adam
head: paper
dataset:
  name: synthetic
  format: synthetic
  options: {classes: 10, train_size: $train_size, val_size: $val_size}
resolution: $3
method: baseline
epochs: $epochs
batch_size: $batch
learning_rate: 1.0e-5
seed: $4
YAML
}

# Samples GPU utilisation and memory into FILE until stopped (nothing on CPU).
sampler=
start_sampling() {
    sampler=
    [ "$cpu" = 1 ] && return
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -i 0 -lms 200 > "$1" 2>/dev/null &
    sampler=$!
}
stop_sampling() {
    [ -n "$sampler" ] && { kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true; }
    sampler=
}

# A cache prepared once per resolution, so that no run decodes (generates) the data.
for resolution in $resolutions; do
    trial_file "$out/warm-$resolution.yaml" small_cnn "$resolution" 1
    sed -i "s/^epochs: .*/epochs: 1/" "$out/warm-$resolution.yaml"
    "$bin/worker" train --trial "$out/warm-$resolution.yaml" "${devices[@]}" --no-progress --cache-dir "$out/cache" \
        --checkpoint-dir "$out/ckpt-warm" --checkpoint-every 0 --out "$out/warm.json" > "$out/warm.log" 2>&1 \
        || { cat "$out/warm.log" >&2; exit 1; }
done

summary="$out/packing.tsv"
: > "$summary"
for arch in $models; do
    for resolution in $resolutions; do
        for n in $ns; do
            run="$arch-$resolution-n$n"
            pids=()
            start_sampling "$out/$run.smi"
            start=$(date +%s.%N)
            for i in $(seq 1 "$n"); do
                trial_file "$out/$run-$i.yaml" "$arch" "$resolution" "$i"
                "$bin/worker" train --trial "$out/$run-$i.yaml" "${devices[@]}" --no-progress \
                    --cache-dir "$out/cache" --checkpoint-dir "$out/ckpt-$run-$i" --checkpoint-every 0 \
                    --out "$out/$run-$i.json" > "$out/$run-$i.log" 2>&1 &
                pids+=($!)
            done
            failed=0
            for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
            end=$(date +%s.%N)
            stop_sampling
            if [ "$failed" = 1 ]; then
                echo "packing: $run: a trial failed (out of memory?); row left out:" >&2
                tail -3 "$out/$run"-*.log >&2
                continue
            fi
            "$python" - "$out" "$run" "$n" "$start" "$end" "$arch" "$resolution" >> "$summary" <<'PY'
import json, os, sys
out, run, n, start, end, arch, resolution = sys.argv[1:]
n = int(n)
rates = []
for i in range(1, n + 1):
    steady = json.load(open(f"{out}/{run}-{i}.json"))["history"][1:]
    rates.append(sum(e["train_images_per_s"] for e in steady) / len(steady))
util, memory = "-", "-"
smi = f"{out}/{run}.smi"
if os.path.exists(smi):
    rows = [line.split(",") for line in open(smi) if line.strip()]
    rows = [(float(u), float(m)) for u, m in rows if u.strip().replace(".", "").isdigit()]
    if rows:
        util = f"{sum(u for u, _ in rows) / len(rows):.0f}% mean, {max(u for u, _ in rows):.0f}% max"
        memory = f"{max(m for _, m in rows):.0f}"
print(f"{arch}\t{resolution}\t{n}\t{sum(rates):.1f}\t{min(rates):.1f}\t{float(end) - float(start):.1f}\t{util}\t{memory}")
PY
        done
    done
done

"$python" - "$summary" <<'PY'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
one = {(r[0], r[1]): float(r[3]) for r in rows if r[2] == "1"}
print("| model | px | trials at once | aggregate train img/s | vs one at a time | slowest trial img/s | wall s | GPU utilisation | GPU memory MB |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
best = {}
for arch, px, n, total, slowest, wall, util, memory in rows:
    base = one.get((arch, px))
    ratio = f"{float(total) / base:.2f}x" if base else "-"
    print(f"| {arch} | {px} | {n} | {total} | {ratio} | {slowest} | {wall} | {util} | {memory} |")
    if float(total) > best.get((arch, px), (0, 0))[0]:
        best[(arch, px)] = (float(total), int(n))
for (arch, px), (total, n) in best.items():
    print(f"packing: best fixed N for {arch} {px} px: {n} ({total:.1f} img/s)")
PY
# The N the auto sweep is compared with: the best for most profiles (the smallest on a tie).
best_n=$("$python" - "$summary" <<'PY'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
best = {}
for arch, px, n, total, *_ in rows:
    if float(total) > best.get((arch, px), (0, 0))[0]:
        best[(arch, px)] = (float(total), int(n))
ns = [n for _, n in best.values()] or [1]
print(max(sorted(set(ns)), key=lambda n: (ns.count(n), -n)))
PY
)

# The product's path: the same profiles as a sweep (SWEEP_SEEDS trials each), once with
# `trials_per_gpu: auto` and once with the best fixed N, each through a coordinator and one
# `worker` agent on the device; the trial processes the agent runs at once are counted every
# 200 ms.
sweep_run() { # NAME TRIALS_PER_GPU
    local name=$1 per_gpu=$2 folder="$out/sweep-$1"
    mkdir -p "$folder"
    local archs resolutions_list seeds_list
    archs=$(echo $models | sed 's/ /, /g') resolutions_list=$(echo $resolutions | sed 's/ /, /g')
    seeds_list=$(seq -s, 1 "$seeds" | sed 's/,/, /g')
    cat > "$folder/sweep.yaml" <<YAML
name: packing-$name
epochs: $epochs
batch_size: $batch
learning_rate: 1.0e-5
seeds: [$seeds_list]
methods: [baseline]
architectures: [$archs]
optimizers: [adam]
resolutions: [$resolutions_list]
datasets:
  synthetic:
    format: synthetic
    options: {classes: 10, train_size: $train_size, val_size: $val_size}
head: paper
gpus_per_trial: 1
trials_per_gpu: $per_gpu
YAML
    local start end coordinator agent status=0
    start=$(date +%s.%N)
    "$bin/coordinator" --sweep "$folder/sweep.yaml" --state-dir "$folder/state" --listen 127.0.0.1:0 \
        > "$folder/coordinator.out" 2> "$folder/coordinator.err" &
    coordinator=$!
    for _ in $(seq 300); do
        grep -q '^listening on ' "$folder/coordinator.out" && break
        kill -0 "$coordinator" 2>/dev/null || break
        sleep 0.1
    done
    local url
    url="http://$(sed -n 's/^listening on //p' "$folder/coordinator.out" | head -1)"
    "$bin/worker" --coordinator "$url" "${agent_devices[@]}" --work-dir "$folder/agent" --worker-id packing \
        > "$folder/agent.log" 2>&1 &
    agent=$!
    local most=0
    while kill -0 "$coordinator" 2>/dev/null; do
        local now
        now=$(pgrep -c -P "$agent" || true)
        [ "${now:-0}" -gt "$most" ] && most=$now
        sleep 0.2
    done
    wait "$coordinator" || status=$?
    end=$(date +%s.%N)
    kill "$agent" 2>/dev/null || true
    wait "$agent" 2>/dev/null || true
    if [ "$status" != 0 ]; then
        echo "packing: the $name sweep's coordinator exited with $status" >&2
        tail -20 "$folder/coordinator.err" "$folder/agent.log" >&2
        exit 1
    fi
    local trials=$(( $(wc -w <<< "$models") * $(wc -w <<< "$resolutions") * seeds ))
    "$python" -c "print(f'packing: sweep with trials_per_gpu: $per_gpu: $trials trials in {$end - $start:.1f} s (coordinator start to exit), at most $most trial processes at once')"
    echo "$end - $start" > "$folder/seconds"
}
sweep_run auto auto
sweep_run fixed "$best_n"
"$python" -c "
auto = eval(open('$out/sweep-auto/seconds').read()); fixed = eval(open('$out/sweep-fixed/seconds').read())
print(f'packing: trials_per_gpu auto took {auto / fixed:.2f}x the time of the best fixed N ($best_n)')"
