#!/usr/bin/env bash
# Speed benchmark (not a test) of the path every trial takes: `worker train --trial FILE`, the
# released binary, against the engine alone (worker/examples/bench_engine.rs) and PyTorch eager on
# torchvision's model (scripts/bench_pytorch.py), the same rows side by side and alternating in one
# run. Prints a markdown table of training images per second (the fastest epoch after the first,
# best run of each side) with the ratios, then SAL's epoch cost per architecture: without an
# intervention (warm-up past the last epoch) and with one in every epoch.
#
# Usage: scripts/bench_trial.sh
# Environment (defaults in brackets): ARCHITECTURES [resnet18 mobilenet_v2 densenet121],
# RESOLUTION [32], OPTIMIZERS [sgd adam], BATCH [64], TRAIN_SIZE [1024], VAL_SIZE [256],
# EPOCHS [3], REPEATS [3], THREADS [all cores: every side gets them, the trial as `cpu_threads`],
# SAL_EPOCHS [4: epochs of the SAL runs], WORKER_BIN and BENCH_ENGINE_BIN [built here with cargo].
set -euo pipefail
cd "$(dirname "$0")/.."

python=${TORCH_VENV:-.venv}/bin/python
if ! "$python" -c 'import torchvision' >/dev/null 2>&1; then
    { "$python" -m pip install --quiet --disable-pip-version-check numpy pillow &&
        "$python" -m pip install --quiet --disable-pip-version-check --no-deps torchvision==0.26.0; } ||
        { echo "bench_trial: cannot install torchvision==0.26.0 into $python's environment" >&2; exit 1; }
fi
if [ -z "${WORKER_BIN:-}" ] || [ -z "${BENCH_ENGINE_BIN:-}" ]; then
    cargo build --release -q -p worker --bin worker --example bench_engine
fi
worker_bin=${WORKER_BIN:-target/release/worker}
engine_bin=${BENCH_ENGINE_BIN:-target/release/examples/bench_engine}

architectures=${ARCHITECTURES:-resnet18 mobilenet_v2 densenet121}
resolution=${RESOLUTION:-32}
optimizers=${OPTIMIZERS:-sgd adam}
batch=${BATCH:-64} train_size=${TRAIN_SIZE:-1024} val_size=${VAL_SIZE:-256} epochs=${EPOCHS:-3}
repeats=${REPEATS:-3}
threads=${THREADS:-$(nproc)}
sal_epochs=${SAL_EPOCHS:-4}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A trial file for `worker train`: generated data, torchvision's classifier (`head: linear`).
trial_file() { # architecture optimizer method epochs [sal block]
    cat >"$work/trial.yaml" <<EOF
architecture: $1
optimizer: $2
head: linear
dataset: {name: bench, format: synthetic, options: {classes: 10, train_size: $train_size, val_size: $val_size}}
resolution: $resolution
method: $3
epochs: $4
batch_size: $batch
learning_rate: 0.01
seed: 1
cpu_threads: $threads
${5:-}
EOF
}

# `worker train` as a user runs it (checkpoints every epoch, the default); prints its result file.
run_trial() {
    rm -rf "$work/checkpoints" "$work/result.json"
    "$worker_bin" train --trial "$work/trial.yaml" --out "$work/result.json" --cache-dir "$work/cache" \
        --checkpoint-dir "$work/checkpoints" --no-progress >/dev/null 2>"$work/worker.log" ||
        { echo "bench_trial: worker train failed: $(tail -2 "$work/worker.log")" >&2; exit 1; }
}

# From the result: the fastest training epoch after the first, or the mean epoch seconds after it.
best_train() { "$python" -c 'import json,sys; h=json.load(open(sys.argv[1]))["history"][1:]; print("%.1f" % max(e["train_images_per_s"] for e in h))' "$work/result.json"; }
mean_seconds() { "$python" -c 'import json,sys; h=json.load(open(sys.argv[1]))["history"][1:]; print(sum(e["seconds"] for e in h)/len(h))' "$work/result.json"; }
interventions() { "$python" -c 'import json,sys; h=json.load(open(sys.argv[1]))["history"][1:]; print(sum(1 for e in h if e["sal"] and e["sal"]["applied"]!="none"), len(h))' "$work/result.json"; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "–" }'; }
larger() { awk -v a="$1" -v b="${2:-0}" 'BEGIN { print (a + 0 > b + 0) ? a : b }'; }
smaller() { awk -v a="$1" -v b="${2:-0}" 'BEGIN { print (b + 0 == 0 || a + 0 < b + 0) ? a : b }'; }

started=$SECONDS
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores; $threads threads each side; best of $repeats run(s) per side, alternating"
echo
echo "| model | px | optimizer | trial path img/s | engine | PyTorch | trial / PyTorch | engine / PyTorch | trial / engine |"
echo "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for architecture in $architectures; do
    for optimizer in $optimizers; do
        row=(--architecture "$architecture" --resolution "$resolution" --optimizer "$optimizer" --ranks 1
            --batch "$batch" --train-size "$train_size" --val-size "$val_size" --epochs "$epochs")
        trial_file "$architecture" "$optimizer" baseline "$epochs"
        tr=0 en=0 py=0
        for round in $(seq "$repeats"); do
            # Each round in another order: a process's place in the sequence is not its speed.
            order=(trial engine pytorch)
            [ $((round % 3)) -eq 2 ] && order=(engine pytorch trial)
            [ $((round % 3)) -eq 0 ] && order=(pytorch trial engine)
            for side in "${order[@]}"; do
                case $side in
                    trial) run_trial; tr=$(larger "$(best_train)" "$tr") ;;
                    engine)
                        out=$(OMP_NUM_THREADS=$threads "$engine_bin" "${row[@]}")
                        en=$(larger "$(field train_images_per_s "$out")" "$en") ;;
                    pytorch)
                        out=$("$python" -W ignore scripts/bench_pytorch.py "${row[@]}" --threads "$threads")
                        py=$(larger "$(field train_images_per_s "$out")" "$py") ;;
                esac
            done
        done
        echo "| $architecture | $resolution | $optimizer | $tr | $en | $py | $(ratio "$tr" "$py") | $(ratio "$en" "$py") | $(ratio "$tr" "$en") |"
    done
done
echo
echo "SAL through \`worker train\` (SGD, $sal_epochs epochs of $train_size images, mean epoch after the first, best of $repeats each, alternating):"
echo
echo "| model | baseline s/epoch | SAL, no intervention | ratio | SAL, intervening every epoch | ratio | intervening epochs |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for architecture in $architectures; do
    base=0 quiet=0 busy=0 counted=""
    for round in $(seq "$repeats"); do
        sides=(baseline quiet busy)
        [ $((round % 2)) -eq 0 ] && sides=(busy quiet baseline)
        for side in "${sides[@]}"; do
            case $side in
                baseline) trial_file "$architecture" sgd baseline "$sal_epochs" ;;
                # Warm-up past the last epoch: the stress is kept, nothing is applied.
                quiet) trial_file "$architecture" sgd sal "$sal_epochs" "sal: {warmup_epochs: $sal_epochs}" ;;
                # No epoch counts as improved and no warm-up: noise, then deformations, every epoch.
                busy) trial_file "$architecture" sgd sal "$sal_epochs" "sal: {warmup_epochs: 0, eps_loss: 100.0, theta: 0.01, recovery_patience: 100}" ;;
            esac
            run_trial
            seconds=$(mean_seconds)
            case $side in
                baseline) base=$(smaller "$seconds" "$base") ;;
                quiet) quiet=$(smaller "$seconds" "$quiet") ;;
                busy) busy=$(smaller "$seconds" "$busy"); counted=$(interventions | awk '{print $1 " of " $2}') ;;
            esac
        done
    done
    printf '| %s | %.3f | %.3f | %s | %.3f | %s | %s |\n' "$architecture" "$base" "$quiet" "$(ratio "$quiet" "$base")" \
        "$busy" "$(ratio "$busy" "$base")" "$counted"
done
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); bench took $((SECONDS - started)) s"
