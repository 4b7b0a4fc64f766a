#!/usr/bin/env bash
# The GPU check: on a CUDA machine, show that our binaries see every GPU, that the NCCL
# collectives keep replicas identical across all visible GPUs, and that the training engine runs
# a trial on one GPU and data-parallel on all of them, that `deterministic: true` makes two runs of
# a trial bit-identical (and how far apart they are without it), that a sweep runs through a coordinator and
# a node agent with two trials sharing the GPU, then the speed table against PyTorch eager
# on GPU 0 (fp32, then bf16 + channels-last + cuDNN benchmark). A few minutes in all; set
# GPU_BENCH=0 to skip the speed table.
#
#   scripts/gpu-check.sh --prepare   on a build machine (no GPU needed): build the check binaries
#                                    with the `nccl` feature into .device/bin (git-ignored), to
#                                    carry to a GPU machine that has no Rust toolchain.
#   scripts/gpu-check.sh             on the GPU machine: run them (building first if cargo is
#                                    there and .device/bin is not). Exits non-zero on any failure.
#
# On the GPU machine libtorch is taken from TORCH_VENV (default: /opt/torch/.venv if present,
# else this checkout's .venv): it must hold torch 2.11.0, the version the binaries were built for.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.device/bin

prepare() {
    scripts/setup.sh
    mkdir -p "$bin"
    # Test executables are named with a hash; ask cargo where it put them.
    cargo test -p sal --features nccl --test nccl_gpu --no-run --message-format=json 2>/dev/null \
        | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "nccl_gpu":
        print(m["executable"])' \
        | while read -r exe; do cp "$exe" "$bin/nccl_gpu"; done
    cargo build -p sal --features nccl --example cuda_info
    cp target/debug/examples/cuda_info "$bin/"
    cargo build --release -p worker --features nccl
    cp target/release/worker "$bin/"
    cargo build --release -p worker --example bench_engine
    cp target/release/examples/bench_engine "$bin/"
    # Built alone, so that it links no libtorch (as users build it).
    cargo build --release -p coordinator
    cp target/release/coordinator "$bin/"
    # Debug symbols would take the binaries past what a call to a GPU machine carries.
    strip "$bin"/*
    ls -la "$bin"
}

if [ "${1:-}" = "--prepare" ]; then
    prepare
    exit 0
fi

if [ ! -x "$bin/cuda_info" ]; then
    command -v cargo >/dev/null || { echo "gpu-check: no $bin and no cargo: run --prepare on a build machine" >&2; exit 1; }
    prepare
fi

venv=${TORCH_VENV:-}
if [ -z "$venv" ]; then
    if [ -x /opt/torch/.venv/bin/python ]; then venv=/opt/torch/.venv; else venv=.venv; fi
fi
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
version=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("torch"))')
echo "gpu-check: torch $version from $site"
case "$version" in 2.11.0*) ;; *) echo "gpu-check: need torch 2.11.0, found $version" >&2; exit 1 ;; esac

# cudarc opens NCCL as libnccl.so; the wheel has libnccl.so.2 only.
nccl_link=$(mktemp -d)
trap 'rm -rf "$nccl_link"' EXIT
ln -s "$site/nvidia/nccl/lib/libnccl.so.2" "$nccl_link/libnccl.so"
export LD_LIBRARY_PATH="$site/torch/lib:$nccl_link${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

echo "== nvidia-smi"
nvidia-smi -L || true
echo "== what our binary sees"
"$bin/cuda_info" | tee /tmp/cuda_info.txt
visible=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
seen=$(sed -n 's/^cuda devices: //p' /tmp/cuda_info.txt)
if [ -n "$visible" ] && [ "$visible" != "0" ] && [ "$seen" != "$visible" ]; then
    echo "gpu-check: nvidia-smi lists $visible GPUs, the binary sees $seen" >&2
    exit 1
fi
echo "== NCCL collectives on all $seen GPUs"
if [ "$seen" -ge 2 ]; then
    "$bin/nccl_gpu" --ignored --test-threads=1
else
    # NCCL puts one rank per device: the abort test needs two GPUs.
    echo "(one GPU: the test of a rank leaving its group needs two, skipped)"
    "$bin/nccl_gpu" --ignored --test-threads=1 --skip a_rank_that_leaves
fi

# The training engine: a 2-epoch trial on one GPU, then data-parallel on every visible GPU with
# the replicas' parameter checksums compared after every epoch (--check-replicas exits 1 if any
# differ).
work=$(mktemp -d)
trap 'rm -rf "$nccl_link" "$work"' EXIT
sed -e 's/^epochs: .*/epochs: 2/' sweeps/trials/synthetic-small.yaml > "$work/trial.yaml"
echo "== worker: 2 epochs on GPU 0"
"$bin/worker" train --trial "$work/trial.yaml" --gpus 0 --no-progress --cache-dir "$work/cache" \
    --checkpoint-dir "$work/ckpt1" --out "$work/one.json"
ids=$(seq -s, 0 $((seen - 1)))
echo "== worker: data-parallel on GPUs $ids, replicas compared after every epoch"
"$bin/worker" train --trial "$work/trial.yaml" --gpus "$ids" --check-replicas --no-progress \
    --cache-dir "$work/cache" --checkpoint-dir "$work/ckptn" --out "$work/all.json"
grep -o '"peak_device_mb": [0-9.]*' "$work/one.json" "$work/all.json" || true

# Determinism: one convolutional trial run twice as it is and twice with `deterministic: true`;
# the deterministic pair must be bit-identical, the other pair's distance is printed.
echo "== determinism (scripts/gpu/determinism-check.sh)"
BIN="$bin" TORCH_LIB="$site/torch/lib" scripts/gpu/determinism-check.sh

# The product's own path on a GPU node: a coordinator and a node agent over loopback gRPC, each
# trial in its own trial process on GPU 0, two at a time (sweeps/gpu.yaml: trials_per_gpu 2).
echo "== sweeps/gpu.yaml: coordinator and worker --gpus 0 over loopback"
"$bin/coordinator" --sweep sweeps/gpu.yaml --state-dir "$work/state" --listen 127.0.0.1:0 \
    >"$work/coordinator.out" 2>"$work/coordinator.err" &
coordinator=$!
for _ in $(seq 100); do
    grep -q '^listening on ' "$work/coordinator.out" && break
    sleep 0.1
done
url="http://$(sed -n 's/^listening on //p' "$work/coordinator.out" | head -1)"
"$bin/worker" --coordinator "$url" --gpus 0 --work-dir "$work/agent" --worker-id gpu0 \
    >"$work/agent.log" 2>&1 &
agent=$!
status=0
wait "$coordinator" || status=$?
kill "$agent" 2>/dev/null || true
wait "$agent" 2>/dev/null || true
cat "$work/coordinator.out"
if [ "$status" != 0 ]; then
    echo "gpu-check: the GPU sweep's coordinator exited with $status" >&2
    tail -30 "$work/coordinator.err" "$work/agent.log" >&2
    exit 1
fi
"$bin/coordinator" report --state-dir "$work/state" --by architecture,method
# `reproduce` reruns a trial of that store in a fresh process and compares bit for bit; the sweep
# runs without `deterministic`, so on a GPU a difference is expected and shown, not a failure.
first=$("$bin/coordinator" report --state-dir "$work/state" --format json 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["trials"][0]["id"])') || true
echo "== coordinator reproduce (a trial of the GPU sweep, not deterministic)"
"$bin/coordinator" reproduce "${first:-0}" --state-dir "$work/state" --worker-bin "$bin/worker" || true

if [ "${GPU_BENCH:-1}" != "0" ]; then
    echo "== speed against PyTorch eager on GPU 0, fp32"
    TORCH_VENV="$venv" scripts/bench_engine.sh --gpu 0
    echo "== speed against PyTorch eager on GPU 0, bf16 autocast, channels-last, cuDNN benchmark"
    TORCH_VENV="$venv" OPTIMIZERS=adam scripts/bench_engine.sh --gpu 0 --precision bf16 --channels-last --cudnn-benchmark
fi
echo "gpu-check: all passed"
