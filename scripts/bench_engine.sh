#!/usr/bin/env bash
# Speed benchmark (not a test): the engine against PyTorch eager on torchvision's own models, with
# the same batch, resolution, optimizer, ranks and threads, side by side in one run (on a shared
# machine only the ratios mean much). Prints a markdown table of training and evaluation images
# per second and their ratios, then SAL's epoch time over the baseline's and the input pipeline's
# share of an epoch.
#
# Usage: scripts/bench_engine.sh [--gpu N] [--precision bf16] [--channels-last] [--cudnn-benchmark]
# Environment (defaults in brackets): ARCHITECTURES [resnet18 mobilenet_v2 densenet121],
# RESOLUTIONS [32 64], OPTIMIZERS [sgd adam], RANKS [1 2; 1 on a GPU], BATCH [64],
# TRAIN_SIZE [192; 2048 on a GPU], VAL_SIZE [512; 1024 on a GPU: with fewer, 2 ranks time one
# batch each], EPOCHS [3],
# REPEATS [2 on the CPU, 1 on a GPU: each side runs that many times, alternating, and the best
# run counts; on a shared or virtual machine a whole process is sometimes twice as slow],
# EXTRAS_TRAIN_SIZE [2048; 16384 on a GPU: the epoch of the SAL and input measurements],
# BENCH_ENGINE_BIN [built here with cargo].
set -euo pipefail
cd "$(dirname "$0")/.."

gpu=()
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --gpu) gpu=(--gpu "$2"); shift 2 ;;
        --precision) extra+=(--precision "$2"); shift 2 ;;
        --channels-last | --cudnn-benchmark) extra+=("$1"); shift ;;
        *) echo "bench_engine: unknown argument $1" >&2; exit 2 ;;
    esac
done

python=${TORCH_VENV:-.venv}/bin/python
# torchvision matching the wheel's torch (2.11.0), without letting pip replace torch.
if ! "$python" -c 'import torchvision' >/dev/null 2>&1; then
    { "$python" -m pip install --quiet --disable-pip-version-check numpy pillow &&
        "$python" -m pip install --quiet --disable-pip-version-check --no-deps torchvision==0.26.0; } ||
        { echo "bench_engine: cannot install torchvision==0.26.0 into $python's environment" >&2; exit 1; }
fi

if [ ${#gpu[@]} -gt 0 ]; then
    default_ranks="1" default_train=2048 default_val=1024 default_repeats=1 default_extras_train=16384
else
    default_ranks="1 2" default_train=192 default_val=512 default_repeats=2 default_extras_train=2048
fi
repeats=${REPEATS:-$default_repeats}
architectures=${ARCHITECTURES:-resnet18 mobilenet_v2 densenet121}
resolutions=${RESOLUTIONS:-32 64}
optimizers=${OPTIMIZERS:-sgd adam}
ranks_list=${RANKS:-$default_ranks}
common=(--batch "${BATCH:-64}" --train-size "${TRAIN_SIZE:-$default_train}"
    --val-size "${VAL_SIZE:-$default_val}" --epochs "${EPOCHS:-3}" "${gpu[@]}" "${extra[@]}")

if [ -n "${BENCH_ENGINE_BIN:-}" ]; then
    engine_bin=$BENCH_ENGINE_BIN # a binary built beforehand
elif [ -x .device/bin/bench_engine ]; then
    engine_bin=.device/bin/bench_engine # prebuilt by scripts/gpu-check.sh --prepare
else
    cargo build --release -q -p worker --example bench_engine
    engine_bin=target/release/examples/bench_engine
fi

field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "–" }'; }
larger() { awk -v a="$1" -v b="${2:-0}" 'BEGIN { print (a + 0 > b + 0) ? a : b }'; }

pytorch_log=$(mktemp)
trap 'rm -f "$pytorch_log"' EXIT
started=$SECONDS
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores; threads: $("$python" -c 'import torch; print(torch.get_num_threads())' 2>/dev/null); best of $repeats run(s) per side"
echo
echo "| model | px | optimizer | ranks | train img/s ours | PyTorch | ratio | eval img/s ours | PyTorch | ratio |"
echo "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for architecture in $architectures; do
    for resolution in $resolutions; do
        for optimizer in $optimizers; do
            for ranks in $ranks_list; do
                row=(--architecture "$architecture" --resolution "$resolution" --optimizer "$optimizer" --ranks "$ranks" "${common[@]}")
                ot=0 oe=0 pt=0 pe=0
                for _ in $(seq "$repeats"); do
                    ours=$("$engine_bin" "${row[@]}")
                    ot=$(larger "$(field train_images_per_s "$ours")" "$ot")
                    oe=$(larger "$(field eval_images_per_s "$ours")" "$oe")
                    # A crash on PyTorch's side (gloo has aborted a run here) costs that run, not the table.
                    if theirs=$("$python" -W ignore scripts/bench_pytorch.py "${row[@]}" 2>"$pytorch_log"); then
                        pt=$(larger "$(field train_images_per_s "$theirs")" "$pt")
                        pe=$(larger "$(field eval_images_per_s "$theirs")" "$pe")
                    else
                        echo "bench_engine: PyTorch failed on $architecture $resolution px $optimizer, $ranks ranks: $(tail -1 "$pytorch_log")" >&2
                    fi
                done
                echo "| $architecture | $resolution | $optimizer | $ranks | $ot | $pt | $(ratio "$ot" "$pt") | $oe | $pe | $(ratio "$oe" "$pe") |"
            done
        done
    done
done
echo
# SAL's overhead and the input pipeline's share, on the first model at the first resolution, with
# epochs of EXTRAS_TRAIN_SIZE images: SAL's work is per epoch, not per step, so on the table's
# tiny epochs it would weigh far more than on any real dataset's.
set -- $architectures
first_architecture=$1
set -- $resolutions
# (The engine takes an option's first occurrence: the epoch size goes before the common ones.)
extras=(--train-size "${EXTRAS_TRAIN_SIZE:-$default_extras_train}" --architecture "$first_architecture"
    --resolution "$1" --optimizer sgd --ranks 1 "${common[@]}" --extras)
"$engine_bin" "${extras[@]}" | grep '^extras'
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); bench took $((SECONDS - started)) s"
