#!/usr/bin/env bash
# Dispatch benchmark: a real `coordinator` process and N real `worker` processes over loopback
# gRPC run 1344 no-op trials (`architecture: noop`, 1 epoch, no sleep), every result and epoch
# report committed to the store. Orchestration alone: no-op trials have no tensors and run on a
# thread of the agent.
#
#   scripts/bench_dispatch.sh            # N = 2, 8, 32
#   scripts/bench_dispatch.sh 8 8 8      # any worker counts, each a fresh run
#
# For each run it prints:
# - dispatch: from the first lease granted to the last result committed (the store's own
#   timestamps), trials/s, and ms per trial per worker (= dispatch time × N / trials: the time one
#   worker spends per trial, orchestration overhead only);
# - all up: the same from the moment the last worker got its first trial (the others start faster
#   and work meanwhile), when at least a tenth of the trials were left by then: the rate once
#   every worker is there, without the staggered start of N processes that load libtorch;
# - start to exit: from starting the coordinator to its exit, as a user meets it (loading and
#   expanding the sweep, worker start-up, which loads libtorch, and the coordinator telling every
#   worker that the sweep is done, included), and trials/s over that.
#
# Environment: TRIALS (default 1344, a multiple of 4), KEEP=1 keeps the run folders (under
# target/bench-dispatch/), BIN=DIR takes the binaries from DIR instead of building
# target/release.
set -euo pipefail
cd "$(dirname "$0")/.."

trials=${TRIALS:-1344}
if ((trials % 4 != 0)); then
    echo "error: TRIALS=$trials: must be a multiple of 4 (seeds × 2 methods × 2 resolutions)" >&2
    exit 2
fi
counts=("$@")
if ((${#counts[@]} == 0)); then
    counts=(2 8 32)
fi
for n in "${counts[@]}"; do
    if ! [[ $n =~ ^[1-9][0-9]*$ ]]; then
        echo "error: worker count '$n' is not a positive integer" >&2
        exit 2
    fi
done
if ! command -v sqlite3 >/dev/null; then
    echo "error: sqlite3 (the command-line shell) is needed to read the store's timestamps" >&2
    exit 2
fi

# Built as the README builds them (the coordinator links no libtorch: loading it would cost the
# coordinator about 0.4 s of CPU at every start).
if [[ -z ${BIN:-} ]]; then
    cargo build --release -p worker -p coordinator
fi
if ldd "${BIN:-target/release}/coordinator" | grep -q libtorch; then
    echo "warning: this coordinator links libtorch; users' does not" >&2
fi
bin=${BIN:-target/release}
root=target/bench-dispatch
mkdir -p "$root"

# seeds × methods × resolutions = trials
seeds=$((trials / 4))
sweep="$root/sweep.yaml"
cat >"$sweep" <<EOF
name: dispatch-bench
epochs: 1
batch_size: 8
learning_rate: 0.01
seeds: [$(seq -s, 1 "$seeds")]
methods: [baseline, sal]
architectures: [noop]
optimizers: [sgd]
resolutions: [32, 64]
datasets:
  synthetic:
    format: synthetic
    options:
      epoch_ms: 0
EOF

now_ms() { date +%s%3N; }

pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

echo "load: $(uptime | sed 's/.*load average/load average/'), $(nproc) cores"
printf '%8s %8s %10s %10s %16s %22s %16s\n' trials workers dispatch trials/s ms/trial/worker "all up: trials/s, ms" 'start to exit'
for n in "${counts[@]}"; do
    run="$root/run-$n-$$"
    rm -rf "$run"
    mkdir -p "$run"
    started=$(now_ms)
    "$bin/coordinator" --sweep "$sweep" --state-dir "$run/state" --listen 127.0.0.1:0 \
        --addr-file "$run/addr" >"$run/coordinator.out" 2>"$run/coordinator.log" &
    coordinator=$!
    pids=("$coordinator")
    # Readiness: the coordinator writes its address file once it listens.
    for _ in $(seq 600); do
        [[ -s $run/addr ]] && break
        if ! kill -0 "$coordinator" 2>/dev/null; then
            echo "error: the coordinator exited early; see $run/coordinator.log" >&2
            exit 1
        fi
        sleep 0.05
    done
    url="http://$(cat "$run/addr")"
    workers=()
    for i in $(seq "$n"); do
        "$bin/worker" --coordinator "$url" --work-dir "$run/worker-$i" --worker-id "bench-$i" \
            2>"$run/worker-$i.log" &
        workers+=("$!")
    done
    pids+=("${workers[@]}")
    if ! wait "$coordinator"; then
        echo "error: the coordinator failed; see $run/coordinator.log" >&2
        exit 1
    fi
    ended=$(now_ms)
    for pid in "${workers[@]}"; do
        if ! wait "$pid"; then
            echo "error: worker (pid $pid) failed; see $run/worker-*.log" >&2
            exit 1
        fi
    done
    pids=()
    db="$run/state/coordinator.sqlite"
    read -r done first last < <(sqlite3 -separator ' ' "$db" \
        "SELECT (SELECT COUNT(*) FROM results), (SELECT MIN(started_ms) FROM attempts), (SELECT MAX(completed_ms) FROM results);")
    reports=$(sqlite3 "$db" "SELECT COUNT(*) FROM epochs;")
    if ((done != trials || reports != trials)); then
        echo "error: $done results and $reports epoch reports committed, expected $trials each" >&2
        exit 1
    fi
    # When the last worker got its first trial, and how many trials were leased from then on.
    read -r all_up after < <(sqlite3 -separator ' ' "$db" \
        "SELECT m, (SELECT COUNT(*) FROM attempts WHERE started_ms >= m) FROM (SELECT MAX(f) AS m FROM (SELECT MIN(started_ms) AS f FROM attempts GROUP BY worker_id));")
    span=$((last - first))
    awk -v n="$n" -v t="$trials" -v span="$span" -v total=$((ended - started)) \
        -v up_span=$((last - all_up)) -v after="$after" 'BEGIN {
        up = "-"
        if (after * 10 >= t && up_span > 0) {
            up = sprintf("%.0f, %.2f", after / (up_span / 1000), up_span * n / after)
        }
        printf "%8d %8d %8.2f s %10.0f %16.2f %22s %7.2f s, %4.0f/s\n", t, n, span / 1000, t / (span / 1000), span * n / t, up, total / 1000, t / (total / 1000)
    }'
    if [[ ${KEEP:-0} != 1 ]]; then
        rm -rf "$run"
    fi
done
