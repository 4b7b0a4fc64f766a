#!/usr/bin/env bash
# How far a trial's numbers depend on how it was deployed: one 2-trial sweep (small_cnn, Adam,
# generated data, 4 epochs of 2048 images) through `coordinator --local --workers N` for each N
# given, then how many trials are bit-identical to the first deployment's (every number of every
# epoch that training computes, and the final top-1, top-5 and test loss) and the largest relative
# difference of a training loss. Each run is timed from the coordinator's start to its exit.
#
#   scripts/deployment-invariance.sh BIN_DIR OUT_DIR N [N...]   e.g. target/debug /tmp/inv 1 2 4
#
# BIN_DIR holds `coordinator` and `worker` (run this with another build's BIN_DIR to compare
# builds); OUT_DIR keeps the state dirs.
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 BIN_DIR OUT_DIR N N [N...]" >&2
    exit 2
fi
bin=$1 out=$2
shift 2
mkdir -p "$out"
cat > "$out/sweep.yaml" <<'YAML'
name: invariance
epochs: 4
batch_size: 16
learning_rate: 0.001
seeds: [1, 2]
methods: [baseline]
architectures: [small_cnn]
optimizers: [adam]
resolutions: [16]
head: paper
gpus_per_trial: 1
datasets:
  synthetic:
    format: synthetic
    options: {classes: 4, train_size: 2048, val_size: 64, label_noise: 0.25}
YAML
for n in "$@"; do
    rm -rf "$out/local-$n"
    start=$(date +%s.%N)
    "$bin/coordinator" --sweep "$out/sweep.yaml" --state-dir "$out/local-$n" --local --workers "$n" \
        > "$out/local-$n.log" 2>&1 || { cat "$out/local-$n.log" >&2; exit 1; }
    end=$(date +%s.%N)
    python3 -c "print(f'--local --workers $n: {$end - $start:.1f} s')"
done
python3 - "$out" "$@" <<'PY'
import json, sqlite3, sys
out, ns = sys.argv[1], sys.argv[2:]
skip = {"seconds", "peak_device_mb", "train_images_per_s", "eval_images_per_s"}
def results(n):
    db = sqlite3.connect(f"{out}/local-{n}/coordinator.sqlite")
    return {t: json.loads(j) for t, j in db.execute("SELECT trial_id, result_json FROM results")}
def computed(r):
    return ([{k: v for k, v in e.items() if k not in skip} for e in r["history"]],
            r["top1"], r["top5"], r["test_loss"])
base = results(ns[0])
for n in ns[1:]:
    other = results(n)
    same = sum(1 for t in base if computed(base[t]) == computed(other[t]))
    worst = max(abs(a["train_loss"] - b["train_loss"]) / abs(a["train_loss"])
                for t in base for a, b in zip(base[t]["history"], other[t]["history"]))
    print(f"--local --workers {ns[0]} vs {n}: {same} of {len(base)} trials bit-identical; "
          f"largest relative train_loss difference {worst:.3e}")
PY
