#!/usr/bin/env bash
# What starting a trial process costs: the node agent runs every real trial in a process of its
# own (`worker trial-process --job FILE`) and logs the time from spawning it to its first event
# (`trial process up ... start_ms=N`): the process, libtorch's load and the job's setup.
#
#   scripts/bench_trial_start.sh         # 4 one-epoch small_cnn trials, one local worker
#
# Also prints what loading the worker binary alone costs (`worker --version`: the dynamic loader
# and libtorch's static initialisers), in wall and CPU time: on a loaded machine the wall time is
# mostly waiting for a core.
# Environment: TRIALS (default 4), BIN=DIR takes the binaries from DIR instead of building
# target/release, KEEP=1 keeps the run folder (under target/bench-trial-start/).
set -euo pipefail
cd "$(dirname "$0")/.."

trials=${TRIALS:-4}
if ! [[ $trials =~ ^[1-9][0-9]*$ ]]; then
    echo "error: TRIALS=$trials is not a positive integer" >&2
    exit 2
fi
if [[ -z ${BIN:-} ]]; then
    cargo build --release -p coordinator -p worker
fi
bin=${BIN:-target/release}
run=target/bench-trial-start/run-$$
rm -rf "$run"
mkdir -p "$run"
cat >"$run/sweep.yaml" <<YAML
name: trial-start-bench
epochs: 1
batch_size: 32
learning_rate: 0.001
seeds: [$(seq -s, 1 "$trials")]
methods: [baseline]
architectures: [small_cnn]
optimizers: [adam]
resolutions: [32]
datasets:
  synthetic:
    format: synthetic
    options:
      classes: 10
      train_size: 64
      val_size: 32
head: linear
YAML

echo "load: $(uptime | sed 's/.*load average/load average/'), $(nproc) cores"
if ! "$bin/coordinator" --sweep "$run/sweep.yaml" --state-dir "$run/state" --local --workers 1 \
    --worker-bin "$bin/worker" >"$run/coordinator.out" 2>"$run/coordinator.log"; then
    echo "error: the sweep failed; see $run/coordinator.log and $run/state/local-workers/" >&2
    exit 1
fi
grep -h "trial process up" "$run"/state/local-workers/*/worker.log |
    sed -n 's/.*start_ms="\{0,1\}\([0-9]*\).*/\1/p' | sort -n |
    awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "error: no `trial process up` line in the worker log" > "/dev/stderr"; exit 1 }
        printf "trial process, spawn to first event: %d trials, min %d ms, median %d ms, max %d ms\n", NR, v[1], v[int((NR + 1) / 2)], v[NR]
    }'
for i in 1 2 3; do
    /usr/bin/time -f "worker --version: %e s wall, %U s user + %S s system CPU" "$bin/worker" --version >/dev/null
done
if [[ ${KEEP:-0} != 1 ]]; then
    rm -rf "$run"
fi
