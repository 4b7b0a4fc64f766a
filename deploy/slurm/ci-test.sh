#!/usr/bin/env bash
# sal-sweep.sbatch under a real Slurm (local-cluster.sh: munge, slurmctld, three slurmd standing
# in for three CPU nodes on this machine), submitted with sbatch on 2 nodes:
#   1. a real sweep (small_cnn, baseline and SAL, generated data): the job ends COMPLETED, every
#      trial done, the report in the state dir, nothing left running, no token left on disk;
#   2. a noop sweep cancelled mid-sweep with scancel (SIGTERM to the coordinator and the workers
#      at once): the job ends CANCELLED before Slurm would SIGKILL it, no token left, nothing left
#      running; resubmitted, it completes and reruns no trial that had finished;
#   3. a noop sweep submitted with --requeue and requeued mid-sweep (what preemption does): the
#      same job runs again, completes, and reruns no trial that had finished.
# Run by .ci/run (as root, after `cargo test --workspace` built the binaries).
# Needs root (the daemons run as root) and the two binaries in BIN (default target/debug, as
# `cargo test --workspace` builds them). Without root: says SKIPPED and exits 0.
# Every wait polls a condition with a deadline; whatever it started it stops on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
BIN=$(cd "${BIN:-target/debug}" && pwd)
if [ "$(id -u)" != 0 ]; then
    echo "slurm ci-test: SKIPPED (needs root to run slurmctld and slurmd)"
    exit 0
fi
for binary in coordinator worker; do
    [ -x "$BIN/$binary" ] || { echo "slurm ci-test: $BIN/$binary is missing (cargo build -p coordinator -p worker)" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/sal-slurm-ci.XXXXXX)
export SAL_SLURM_DIR=$WORK/slurm NODES=3 PORT_BASE=${PORT_BASE:-26817}
export SLURM_CONF=$SAL_SLURM_DIR/slurm.conf
# The coordinator's port (sal-sweep's PORT); loopback only: every simulated node is this machine.
export PORT=${SWEEP_PORT:-26900}
# A real trial on two shared cores can take minutes; this only turns a hang into a failure.
PATIENCE=${PATIENCE:-900}
cleanup() {
    local status=$?
    "$REPO/deploy/slurm/local-cluster.sh" stop >/dev/null 2>&1 || true
    if [ "$status" != 0 ]; then
        echo "slurm ci-test: FAILED; the last lines of the job outputs and Slurm's logs:" >&2
        for log in "$WORK"/*.out "$SAL_SLURM_DIR"/slurmctld.log; do
            [ -f "$log" ] || continue
            echo "--- $log (first warnings, last lines)" >&2
            grep -m 10 -E 'WARN|ERROR|error' "$log" >&2 || true
            tail -n 30 "$log" >&2
        done
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

say() { echo "slurm ci-test: $*"; }
fail() { echo "slurm ci-test: $*" >&2; exit 1; }

# Polls "$@" until it succeeds, at most $1 seconds.
wait_until() {
    local seconds=$1 what=$2; shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || fail "$what: not within $seconds s"
        sleep 0.2
    done
}

# The end state of a job, as jobcomp/filetxt recorded it (the last record: a requeued job has
# several), or nothing while it has not ended.
end_state() {
    grep -s "^JobId=$1 " "$SAL_SLURM_DIR/jobcomp.txt" | tail -n1 | grep -o 'JobState=[A-Z_]*' | cut -d= -f2 || true
}
job_gone() { [ -z "$(squeue -h -j "$1" -o %i 2>/dev/null)" ]; }
job_running() { [ "$(squeue -h -j "$1" -o %T 2>/dev/null)" = RUNNING ]; }
ended() { job_gone "$1" && [ -n "$(end_state "$1")" ]; }
end_recorded() { [ -n "$(end_state "$1")" ]; }
ended_completed() { job_gone "$1" && [ "$(end_state "$1")" = COMPLETED ]; }

# Submits sal-sweep.sbatch on 2 nodes; prints the job id.
submit() {
    local name=$1 sweep=$2; shift 2
    STATE_DIR=$WORK/$name-state BIN=$BIN sbatch --parsable --nodes=2 --chdir="$REPO" \
        --output="$WORK/$name.out" --open-mode=append "$@" \
        deploy/slurm/sal-sweep.sbatch "$sweep" "$WORK/data"
}

# Trials that have a result, with what tells one run of them from another: `id attempt
# completed_ms`.
finished() {
    python3 - "$1/coordinator.sqlite" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
for row in db.execute("SELECT trial_id, attempt, completed_ms FROM results ORDER BY trial_id"):
    print(*row)
PY
}
count_finished() { [ -f "$1/coordinator.sqlite" ] && finished "$1" | wc -l || echo 0; }
has_finished() { [ "$(count_finished "$1")" -ge "$2" ]; }
# Attempts started per trial: `id count`.
attempts() {
    python3 - "$1/coordinator.sqlite" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
for row in db.execute("SELECT trial_id, COUNT(*) FROM attempts GROUP BY trial_id ORDER BY trial_id"):
    print(*row)
PY
}

# Nothing of the job left: no process of these binaries, no token file.
nothing_left() {
    local name=$1
    [ ! -e "$WORK/$name-state.token" ] || fail "$name: the token file outlived the job"
    if pgrep -f "^$BIN/(coordinator|worker)( |$)" >/dev/null; then
        fail "$name: processes outlived the job: $(pgrep -af "^$BIN/(coordinator|worker)( |$)")"
    fi
}

# What finished before must be as it was: same attempt, same commit time, no attempt since.
nothing_rerun() {
    local name=$1 before=$2 after_attempts
    local state=$WORK/$name-state
    diff <(finished "$state" | grep -F -f <(cut -d' ' -f1 "$before")) "$before" \
        || fail "$name: a trial that had finished has another result"
    after_attempts=$(attempts "$state")
    while read -r id attempt _; do
        grep -qx "$id $attempt" <<< "$after_attempts" \
            || fail "$name: trial $id finished in attempt $attempt, yet ran again: $(grep "^$id " <<< "$after_attempts")"
    done < "$before"
}

mkdir -p "$WORK/data"
cat > "$WORK/real.yaml" <<'EOF'
# Real training, small: small_cnn, baseline and SAL, on generated data.
name: slurm-real
epochs: 3
batch_size: 32
learning_rate: 0.001
seeds: [1]
methods: [baseline, sal]
architectures: [small_cnn]
optimizers: [adam]
resolutions: [32]
datasets:
  synthetic:
    format: synthetic
    options: {classes: 10, train_size: 256, val_size: 64, label_noise: 0.2, noise: 0.9}
sal:
  warmup_epochs: 1
head: linear
EOF
# Stand-in trials long enough to be cut: 10 trials of 6 epochs, 400 ms each.
total=10
cat > "$WORK/noop.yaml" <<'EOF'
name: slurm-noop
epochs: 6
batch_size: 8
learning_rate: 0.01
seeds: [1, 2, 3, 4, 5]
methods: [baseline, sal]
architectures: [noop]
optimizers: [sgd]
resolutions: [32]
datasets:
  synthetic:
    format: synthetic
    options: {epoch_ms: 400}
EOF

start=$SECONDS
"$REPO/deploy/slurm/local-cluster.sh" start >/dev/null
say "Slurm up in $((SECONDS - start)) s: $(sinfo -h -N -o '%N:%T' | paste -sd' ')"
KILL_WAIT=$(scontrol show config | awk '$1 == "KillWait" {print $3}')

# 1. A real sweep, completed.
start=$SECONDS
job=$(submit real "$WORK/real.yaml")
wait_until "$PATIENCE" "real sweep job $job to end" ended "$job"
[ "$(end_state "$job")" = COMPLETED ] || fail "real sweep: job $job ended $(end_state "$job")"
[ "$(count_finished "$WORK/real-state")" = 2 ] || fail "real sweep: $(count_finished "$WORK/real-state") of 2 trials have a result"
grep -q 'small_cnn' "$WORK/real-state/report.txt" || fail "real sweep: no report in the state dir"
nothing_left real
say "real sweep (2 trials of small_cnn, 3 epochs, 2 nodes): COMPLETED in $((SECONDS - start)) s, report in the state dir"

# 2. scancel mid-sweep, then the same sweep again.
start=$SECONDS
job=$(submit cancel "$WORK/noop.yaml")
wait_until "$PATIENCE" "noop job $job to finish 2 trials" has_finished "$WORK/cancel-state" 2
finished "$WORK/cancel-state" > "$WORK/cancel-before"
cancelled_at=$SECONDS
scancel "$job"
wait_until 120 "cancelled job $job to end" ended "$job"
took=$((SECONDS - cancelled_at))
[ "$(end_state "$job")" = CANCELLED ] || fail "scancel: job $job ended $(end_state "$job")"
# Slurm SIGKILLs what is left KillWait seconds after the SIGTERM: ending before means every
# process exited by itself.
[ "$took" -lt "$KILL_WAIT" ] || fail "scancel: the job took $took s to end, KillWait is $KILL_WAIT s (processes were SIGKILLed)"
nothing_left cancel
finished "$WORK/cancel-state" > "$WORK/cancel-before"
say "scancel: CANCELLED $took s after scancel, $(wc -l < "$WORK/cancel-before") of $total trials finished before"
job=$(submit cancel "$WORK/noop.yaml")
wait_until "$PATIENCE" "resubmitted job $job to end" ended "$job"
[ "$(end_state "$job")" = COMPLETED ] || fail "resubmitted: job $job ended $(end_state "$job")"
[ "$(count_finished "$WORK/cancel-state")" = "$total" ] || fail "resubmitted: $(count_finished "$WORK/cancel-state") of $total trials have a result"
nothing_rerun cancel "$WORK/cancel-before"
nothing_left cancel
say "scancel, resubmitted: COMPLETED, nothing that had finished ran again ($((SECONDS - start)) s in all)"

# 3. --requeue, requeued mid-sweep.
start=$SECONDS
job=$(submit requeue "$WORK/noop.yaml" --requeue)
wait_until "$PATIENCE" "noop job $job to finish 2 trials" has_finished "$WORK/requeue-state" 2
finished "$WORK/requeue-state" > "$WORK/requeue-before"
scontrol requeue "$job"
# The first run ends (jobcomp records it), then Slurm starts the same job again.
wait_until 120 "requeued job $job's first run to end" end_recorded "$job"
say "requeue: the first run ended $(end_state "$job") with $(wc -l < "$WORK/requeue-before") trials finished"
wait_until "$PATIENCE" "requeued job $job to end" ended_completed "$job"
runs=$(grep -c "^JobId=$job " "$SAL_SLURM_DIR/jobcomp.txt")
[ "$runs" -ge 2 ] || fail "requeue: job $job ran $runs times"
[ "$(count_finished "$WORK/requeue-state")" = "$total" ] || fail "requeue: $(count_finished "$WORK/requeue-state") of $total trials have a result"
nothing_rerun requeue "$WORK/requeue-before"
nothing_left requeue
say "requeue: ran twice, COMPLETED, nothing that had finished ran again ($((SECONDS - start)) s)"
say "ok"
