#!/usr/bin/env bash
# The coordinator at the paper grid's scale: a sweep shaped like sweeps/paper.yaml with 10 seeds
# (13,440 trials: 6 architectures, 4 optimizers, 7 datasets, 4 resolutions, 2 methods) where every
# trial is a no-op (`architecture: noop`, 5 epochs, so every result carries a 5-epoch history),
# run by a real coordinator and W real worker processes on loopback; then the reports a user reads
# from its state dir. Orchestration and reporting alone: no tensors.
#
#   scripts/bench_scale.sh            # W = 8
#   WORKERS=2 scripts/bench_scale.sh
#
# Prints, each timed from the command's start to its exit: the sweep (coordinator start to exit)
# and the coordinator's own peak RSS (it runs no worker: the workers are separate processes);
# `report` (text), `report --format json`, `report --format html` (and the page's size),
# `status --state-dir`, each with its peak RSS.
#
# The sweep is scripts/paper_noop_sweep.sh's.
#
# Environment: WORKERS (default 8), KEEP=1 keeps the run folder (target/bench-scale/), BIN=DIR
# takes the binaries from DIR instead of building target/release.
set -euo pipefail
cd "$(dirname "$0")/.."

workers=${WORKERS:-8}
if ! [[ $workers =~ ^[1-9][0-9]*$ ]]; then
    echo "error: WORKERS=$workers is not a positive integer" >&2
    exit 2
fi
if [[ -z ${BIN:-} ]]; then
    # As the README builds them (the coordinator links no libtorch).
    cargo build --release -p worker -p coordinator
fi
bin=${BIN:-target/release}
run=target/bench-scale/run-$$
rm -rf "$run"
mkdir -p "$run"

sweep="$run/paper-noop.yaml"
scripts/paper_noop_sweep.sh "$sweep"

now_ms() { date +%s%3N; }
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

echo "load: $(uptime | sed 's/.*load average/load average/'), $(nproc) cores, $workers workers"
started=$(now_ms)
/usr/bin/time -f "%M" -o "$run/coordinator.rss" "$bin/coordinator" --sweep "$sweep" \
    --state-dir "$run/state" --listen 127.0.0.1:0 --addr-file "$run/addr" \
    >"$run/coordinator.out" 2>"$run/coordinator.log" &
coordinator=$!
pids=("$coordinator")
for _ in $(seq 1200); do
    [[ -s $run/addr ]] && break
    kill -0 "$coordinator" 2>/dev/null || { echo "error: the coordinator exited early; see $run/coordinator.log" >&2; exit 1; }
    sleep 0.05
done
for i in $(seq "$workers"); do
    "$bin/worker" --coordinator "http://$(cat "$run/addr")" --work-dir "$run/worker-$i" \
        --worker-id "scale-$i" 2>"$run/worker-$i.log" &
    pids+=("$!")
done
wait "$coordinator" || { echo "error: the coordinator failed; see $run/coordinator.log" >&2; exit 1; }
ended=$(now_ms)
wait
pids=()
trials=$(grep -o '[0-9]* done' "$run/coordinator.log" | tail -1)
printf '%-34s %8.2f s  peak RSS %4d MB  (%s, %.0f trials/s)\n' "sweep (coordinator start to exit)" \
    "$(((ended - started)))e-3" "$(($(cat "$run/coordinator.rss") / 1024))" "$trials" \
    "$(awk -v t="${trials% done}" -v ms=$((ended - started)) 'BEGIN { print t / (ms / 1000) }')"

timed() {
    local label=$1 out=$2
    shift 2
    local t0 t1
    t0=$(now_ms)
    /usr/bin/time -f "%M" -o "$run/cmd.rss" "$@" >"$out" 2>"$run/cmd.err" || { cat "$run/cmd.err" >&2; exit 1; }
    t1=$(now_ms)
    printf '%-34s %8.2f s  peak RSS %4d MB  output %s\n' "$label" "$((t1 - t0))e-3" \
        "$(($(cat "$run/cmd.rss") / 1024))" "$(du -h "$out" | cut -f1)"
}
timed "report (text)" "$run/report.txt" "$bin/coordinator" report --state-dir "$run/state"
timed "report --format json" "$run/report.json" "$bin/coordinator" report --state-dir "$run/state" --format json
timed "report --format html" "$run/report.html" "$bin/coordinator" report --state-dir "$run/state" --format html
timed "status --state-dir" "$run/status.txt" "$bin/coordinator" status --state-dir "$run/state"
if [[ ${KEEP:-0} != 1 ]]; then
    rm -rf "$run"
fi
