#!/usr/bin/env bash
# One trial run twice as it is and twice with `deterministic: true`, through `worker train`; then
# whether each pair is bit-identical (every number of every epoch and of the final evaluation
# that training computes, not times or memory), where it first differs and how far apart it gets,
# and what each run took (start to exit).
#
# On a GPU (the first one), the deterministic pair must be bit-identical (exit 1 otherwise); the
# default pair's distance is what `deterministic` buys. Without a GPU, or with --cpu, the same
# runs go to one CPU rank, where both pairs must be bit-identical (README, "Reproducibility").
#
#   scripts/gpu/determinism-check.sh [--cpu] [--dry-run]
#
# The binaries come from a folder carried to the machine (BIN, default .device/bin, as
# `scripts/gpu-check.sh --prepare` fills it; only `worker` is needed). libtorch comes from
# TORCH_LIB (default /opt/torch/.venv/lib/python3.12/site-packages/torch/lib when it exists,
# else this checkout's .venv/libtorch/lib); it must be the libtorch the binary was built for.
# To carry it to a GPU machine without a toolchain: `cargo build -p worker && mkdir -p .device/bin
# && strip -o .device/bin/worker target/debug/worker` (26 MB; .device is git-ignored, carry it).
# --dry-run prints the commands and checks that the binary starts, without training.
# Settings: ARCH (resnet18 on GPU, small_cnn on CPU), EPOCHS (3), TRAIN_SIZE (2048 on GPU, 512
# on CPU), OUT (a folder to keep the results in; default a temporary one).
set -euo pipefail
cd "$(dirname "$0")/../.."

cpu=0
dry=0
for arg in "$@"; do
    case "$arg" in
        --cpu) cpu=1 ;;
        --dry-run) dry=1 ;;
        *) echo "determinism-check: unknown argument $arg (known: --cpu, --dry-run)" >&2; exit 2 ;;
    esac
done

bin=${BIN:-.device/bin}
if [ ! -x "$bin/worker" ]; then
    echo "determinism-check: no $bin/worker: set BIN to a folder with the worker binary" >&2
    exit 2
fi
torch_lib=${TORCH_LIB:-}
if [ -z "$torch_lib" ]; then
    torch_lib=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
    [ -d "$torch_lib" ] || torch_lib=.venv/libtorch/lib
fi
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
python=${PYTHON:-}
if [ -z "$python" ]; then
    if command -v python3 >/dev/null; then python=python3; else python=/opt/torch/.venv/bin/python; fi
fi

gpu_name=
if [ "$cpu" = 0 ] && command -v nvidia-smi >/dev/null; then
    gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || true)
fi
if [ -n "$gpu_name" ]; then
    device=cuda devices=(--gpus 0)
    arch=${ARCH:-resnet18} train_size=${TRAIN_SIZE:-2048} resolution=32
else
    device=cpu devices=(--cpu-ranks 1)
    arch=${ARCH:-small_cnn} train_size=${TRAIN_SIZE:-512} resolution=16
fi
epochs=${EPOCHS:-3}

out=${OUT:-}
if [ -z "$out" ]; then
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"
cat > "$out/off.yaml" <<YAML
architecture: $arch
optimizer: adam
head: linear
dataset:
  name: synthetic
  format: synthetic
  options: {classes: 10, train_size: $train_size, val_size: 256, label_noise: 0.2}
resolution: $resolution
method: baseline
epochs: $epochs
batch_size: 64
learning_rate: 0.001
seed: 1
YAML
{ cat "$out/off.yaml"; echo "deterministic: true"; } > "$out/on.yaml"

echo "determinism-check: $device${gpu_name:+ ($gpu_name)}, $arch at ${resolution}px, $epochs epochs, $train_size images; worker from $bin, libtorch from $torch_lib"
run() { # MODE RUN
    local mode=$1 run=$2
    local command=("$bin/worker" train --trial "$out/$mode.yaml" "${devices[@]}" --no-progress
        --cache-dir "$out/cache" --checkpoint-dir "$out/ckpt-$mode-$run" --checkpoint-every 0
        --out "$out/$mode-$run.json")
    if [ "$dry" = 1 ]; then
        echo "would run: ${command[*]}"
        return
    fi
    local start end
    start=$(date +%s.%N)
    "${command[@]}" > "$out/$mode-$run.log" 2>&1 || { cat "$out/$mode-$run.log" >&2; exit 1; }
    end=$(date +%s.%N)
    "$python" -c "print(f'determinism-check: $mode run $run took {$end - $start:.1f} s')"
    echo "$end - $start" > "$out/$mode-$run.seconds"
}
if [ "$dry" = 1 ]; then
    "$bin/worker" --version
fi
for mode in off on; do
    for run in 1 2; do run "$mode" "$run"; done
done
[ "$dry" = 1 ] && exit 0

"$python" - "$out" "$epochs" "$device" <<'PY'
import json, sys
out, epochs, device = sys.argv[1], int(sys.argv[2]), sys.argv[3]
# Measurements of the run, not numbers training computed.
SKIP = {"seconds", "peak_device_mb", "train_images_per_s", "eval_images_per_s",
        "train_seconds", "peak_host_mb", "inference_ms_per_batch", "manifest", "history"}

def leaves(value, path=""):
    if isinstance(value, dict):
        for key in sorted(value):
            yield from leaves(value[key], f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from leaves(inner, f"{path}[{i}]")
    else:
        yield path, value

def rel(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        scale = max(abs(a), abs(b))
        return abs(a - b) / scale if scale else 0.0
    return 0.0 if a == b else float("inf")

def distance(a, b):
    """(first difference or None, epochs that differ, largest relative difference)."""
    first, differing, worst = None, 0, 0.0
    for i, (x, y) in enumerate(zip(a["history"], b["history"]), 1):
        pairs = [(p, v, w) for (p, v), (_, w) in zip(leaves({k: x[k] for k in x if k not in SKIP}),
                                                    leaves({k: y[k] for k in y if k not in SKIP}))]
        diffs = [(p, v, w) for p, v, w in pairs if v != w]
        if diffs:
            differing += 1
            first = first or (f"epoch {i}", *diffs[0])
            worst = max(worst, max(rel(v, w) for _, v, w in diffs))
    final = [(p, v, w) for (p, v), (_, w) in zip(leaves({k: a[k] for k in a if k not in SKIP}),
                                                leaves({k: b[k] for k in b if k not in SKIP})) if v != w]
    if final:
        first = first or ("final evaluation", *final[0])
        worst = max(worst, max(rel(v, w) for _, v, w in final))
    return first, differing, worst

load = lambda name: json.load(open(f"{out}/{name}.json"))
failed = False
for mode, label in [("off", "without deterministic"), ("on", "with deterministic: true")]:
    first, differing, worst = distance(load(f"{mode}-1"), load(f"{mode}-2"))
    if first is None:
        print(f"determinism-check: {label}: bit-identical ({epochs} epochs and the final evaluation)")
    else:
        where, metric, x, y = first
        print(f"determinism-check: {label}: differs, first at {where}, {metric}: {x!r} vs {y!r}; "
              f"{differing} of {epochs} epochs differ, largest relative difference {worst:.3e}")
        # On a GPU only the deterministic pair must agree; on CPU ranks both must.
        if mode == "on" or device == "cpu":
            failed = True
manifest = load("on-1").get("manifest") or {}
print("determinism-check: manifest with deterministic:", json.dumps(manifest, sort_keys=True))
if not manifest.get("deterministic") or manifest.get("cublas_workspace_config") != ":4096:8":
    print("determinism-check: the deterministic run's manifest does not show the settings", file=sys.stderr)
    failed = True
sys.exit(1 if failed else 0)
PY
