#!/usr/bin/env bash
# The live dashboard at the paper grid's scale (13,440 no-op trials: scripts/paper_noop_sweep.sh),
# beside the static report it complements.
#
#   scripts/bench_dashboard.sh                  # everything below
#   scripts/bench_dashboard.sh once off|tabs    # one sweep, for pairing (prints one line)
#
# 1. A sweep run to its end, then, on its state dir: `report --format html` (time, size), and
#    `coordinator dashboard` measured by scripts/bench_dashboard.py: every API call a view makes
#    (p50, p95, max; the trial table over every sort, filter and page), and in headless Chromium
#    the first view (navigation to the overview drawn) and the page weight, beside the static
#    report's load and size; the TensorBoard export of every trial (time, size).
# 2. Dispatch with the dashboard off, and on with five open tabs (scripts/bench_dashboard.py tabs:
#    each holds the live stream and refetches its view on change, as the pages do), in turn, PAIRS
#    times: each sweep's time from the coordinator's start to its exit and the coordinator's own
#    CPU seconds (its workers are separate processes), and their ratios pair by pair.
#
# Environment: WORKERS (default 2), PAIRS (default 3), BIN=DIR takes the binaries from DIR instead
# of building target/release, KEEP=1 keeps the run folder (target/bench-dashboard/).
set -euo pipefail
cd "$(dirname "$0")/.."

workers=${WORKERS:-2}
pairs=${PAIRS:-3}
for value in "$workers" "$pairs"; do
    if ! [[ $value =~ ^[1-9][0-9]*$ ]]; then
        echo "error: WORKERS and PAIRS are positive integers (got $value)" >&2
        exit 2
    fi
done
bin=${BIN:-target/release}
root=target/bench-dashboard
mkdir -p "$root"
sweep="$root/paper-noop.yaml"
[[ -s $sweep ]] || scripts/paper_noop_sweep.sh "$sweep"
now_ms() { date +%s%3N; }

# One sweep from a fresh state dir: coordinator (timed alone) and WORKERS worker processes, with the
# dashboard off or on with five tabs open. Prints: mode, seconds, coordinator CPU seconds, trials.
once() {
    local mode=$1 run
    run=$(mktemp -d "$root/once-XXXXXX")
    local pids=() extra=()
    [[ $mode == tabs ]] && extra=(--dashboard 127.0.0.1:0)
    local started
    started=$(now_ms)
    /usr/bin/time -f "%U %S" -o "$run/cpu" "$bin/coordinator" --sweep "$sweep" --state-dir "$run/state" \
        --listen 127.0.0.1:0 --addr-file "$run/addr" "${extra[@]}" >"$run/out" 2>"$run/log" &
    local coordinator=$!
    # Polls for the files the coordinator writes once it listens (a benchmark, not a test).
    until [[ -s $run/addr ]]; do
        kill -0 "$coordinator" 2>/dev/null || { echo "error: the coordinator exited; see $run/log" >&2; exit 1; }
        sleep 0.02
    done
    for i in $(seq "$workers"); do
        "$bin/worker" --coordinator "http://$(cat "$run/addr")" --work-dir "$run/worker-$i" \
            --worker-id "bench-$i" 2>"$run/worker-$i.log" &
        pids+=("$!")
    done
    if [[ $mode == tabs ]]; then
        until grep -q '^dashboard on ' "$run/out"; do sleep 0.02; done
        python3 scripts/bench_dashboard.py tabs "$(sed -n 's/^dashboard on //p' "$run/out")" 5 2>"$run/tabs.log" &
        pids+=("$!")
    fi
    wait "$coordinator"
    local ended
    ended=$(now_ms)
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    local trials
    trials=$(grep -o '[0-9]* done' "$run/log" | tail -1)
    read -r user sys <"$run/cpu"
    printf '%s %s %s %s\n' "$mode" "$((ended - started))e-3" "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" \
        "${trials% done}"
    rm -rf "$run"
}

if [[ ${1:-} == once ]]; then
    [[ ${2:-} == off || ${2:-} == tabs ]] || { echo "usage: $0 once off|tabs" >&2; exit 2; }
    once "$2"
    exit 0
fi

if [[ -z ${BIN:-} ]]; then
    cargo build --release -p worker -p coordinator
fi
echo "load: $(uptime | sed 's/.*load average/load average/'), $(nproc) cores, $workers workers"

# 1. The views, on a finished state dir.
run="$root/views"
rm -rf "$run"
mkdir -p "$run"
"$bin/coordinator" --sweep "$sweep" --state-dir "$run/state" --local --workers "$workers" --no-dashboard \
    >/dev/null 2>"$run/sweep.log"
t0=$(now_ms)
"$bin/coordinator" report --state-dir "$run/state" --format html >"$run/report.html"
t1=$(now_ms)
printf 'static report: report --format html  %6.2f s  %s\n' "$((t1 - t0))e-3" "$(du -h "$run/report.html" | cut -f1)"
"$bin/coordinator" dashboard --state-dir "$run/state" --listen 127.0.0.1:0 >"$run/dashboard.out" 2>"$run/dashboard.log" &
dashboard=$!
trap 'kill "$dashboard" 2>/dev/null || true' EXIT
until grep -q '^dashboard on ' "$run/dashboard.out"; do
    kill -0 "$dashboard" 2>/dev/null || { echo "error: coordinator dashboard exited; see $run/dashboard.log" >&2; exit 1; }
    sleep 0.02
done
t_ready=$(now_ms)
printf 'coordinator dashboard: serving after %6.2f s (the state dir loaded)\n' "$((t_ready - t1))e-3"
python3 scripts/bench_dashboard.py views "$(sed -n 's/^dashboard on //p' "$run/dashboard.out")" "$run/report.html"
kill "$dashboard"
if "$bin/coordinator" export tensorboard --help >/dev/null 2>&1; then
    t0=$(now_ms)
    "$bin/coordinator" export tensorboard --state-dir "$run/state" --out "$run/tensorboard" >/dev/null
    t1=$(now_ms)
    printf 'export tensorboard (every trial)     %6.2f s  %s in %s files\n' "$((t1 - t0))e-3" \
        "$(du -sh "$run/tensorboard" | cut -f1)" "$(find "$run/tensorboard" -type f | wc -l)"
fi

# 2. Dispatch, the dashboard off and on with five tabs, in turn.
echo "dispatch, $pairs pairs (off, then on with 5 tabs): seconds start to exit, coordinator CPU seconds"
results="$root/pairs.txt"
: >"$results"
for i in $(seq "$pairs"); do
    once off | tee -a "$results"
    once tabs | tee -a "$results"
done
awk '
    $1 == "off" { wall = $2; cpu = $3; next }
    $1 == "tabs" { n++; w[n] = $2 / wall; c[n] = $3 / cpu }
    END {
        for (i = 1; i <= n; i++) { printf "pair %d: tabs/off wall %.3f, coordinator CPU %.3f\n", i, w[i], c[i] }
    }' "$results"
if [[ ${KEEP:-0} != 1 ]]; then
    rm -rf "$run"
fi
