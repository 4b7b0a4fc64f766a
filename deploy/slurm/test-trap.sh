#!/usr/bin/env bash
# Tests sal-sweep.sbatch outside Slurm, with stand-ins for scontrol, srun and the two binaries:
# the token file is private while the job runs and gone after it; the background coordinator is
# stopped however the script ends (a failed worker step, a signal) and waited for when the sweep
# ends by itself. Processes meet through FIFOs: nothing waits a fixed time.
set -euo pipefail
SCRIPT=$(cd "$(dirname "$0")" && pwd)/sal-sweep.sbatch
WORK=$(mktemp -d)
STRAYS=()
trap 'for p in "${STRAYS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT

mkdir -p "$WORK/bin"
# scontrol: the allocation's host names, and the head node's address (its name does not resolve).
cat > "$WORK/bin/scontrol" <<'STUB'
#!/bin/sh
case "$1 $2" in
    "show node") echo "NodeName=head-node Arch=x86_64 NodeAddr=10.1.2.3 NodeHostName=head-node" ;;
    *) echo head-node ;;
esac
STUB
# The coordinator stand-in: announces its pid, then serves until killed, or until the worker
# step says the sweep is done (the `done` FIFO), like the real one; `report` records its arguments.
cat > "$WORK/bin/coordinator" <<'STUB'
#!/bin/bash
if [ "$1" = report ]; then printf '%s\n' "$@" > "$T/report.args"; exit 0; fi
printf '%s\n' "$@" > "$T/coordinator.args"
echo $$ > "$T/coordinator.pid.fifo"
read -r _ < "$T/done.fifo"
STUB
# The srun stand-in: checks the token file, tells the test it runs, then does what the test
# asks through the `srun.fifo` FIFO: `fail`, `finish` (the sweep ends) or `hold` (until a line
# on `go.fifo`). Each FIFO carries one message: a FIFO reopened may lose what was written to it.
cat > "$WORK/bin/srun" <<'STUB'
#!/bin/bash
printf '%s\n' "$@" > "$T/srun.args"
token=$(grep -o -- '--token-file [^ ]*' <<< "$*" | cut -d' ' -f2)
stat -c %a "$token" > "$T/token.mode"
cat "$token" > "$T/token.value"
echo running > "$T/started.fifo"
read -r what < "$T/srun.fifo"
case $what in
    fail) exit 1 ;;
    finish) echo done > "$T/done.fifo"; exit 0 ;;
    hold) read -r _ < "$T/go.fifo"; exit 0 ;;
esac
STUB
chmod +x "$WORK"/bin/*

fail() { echo "test-trap: $*" >&2; exit 1; }

# Starts the script in the background with FIFOs for the stand-ins; sets JOB and COORD.
start() {
    export T=$WORK/$1
    mkdir -p "$T"
    for f in coordinator.pid srun go started done; do mkfifo "$T/$f.fifo"; done
    PATH=$WORK/bin:$PATH SLURM_JOB_NODELIST=head-node STATE_DIR=$T/state BIN=$WORK/bin \
        bash "$SCRIPT" sweeps/paper.yaml /data > "$T/out" 2>&1 &
    JOB=$!
    STRAYS+=("$JOB")
    read -r COORD < "$T/coordinator.pid.fifo"
    STRAYS+=("$COORD")
    read -r _ < "$T/started.fifo"
    [ "$(cat "$T/token.mode")" = 600 ] || fail "$1: token file mode $(cat "$T/token.mode"), not 600"
    [[ $(cat "$T/token.value") =~ ^[0-9a-f]{32}$ ]] || fail "$1: token is not 128 random bits in hex"
    grep -qx -- --token-file "$T/coordinator.args" || fail "$1: the coordinator got no --token-file"
}

# Waits for the script; checks its status, that the coordinator is gone and the token removed.
finish() {
    local expected=$1 status=0
    wait "$JOB" || status=$?
    [ "$status" = "$expected" ] || fail "$T: exit status $status, expected $expected: $(cat "$T/out")"
    ! kill -0 "$COORD" 2>/dev/null || fail "$T: the coordinator (pid $COORD) outlived the job"
    [ ! -e "$T/state.token" ] || fail "$T: the token file outlived the job"
}

start failed-step
echo fail > "$T/srun.fifo"
finish 1

start signalled
echo hold > "$T/srun.fifo"
kill -TERM "$JOB"
echo go > "$T/go.fifo"
finish 143

start sweep-done
echo finish > "$T/srun.fifo"
finish 0
grep -q -- '--coordinator http://10.1.2.3:50051' <<< "$(tr '\n' ' ' < "$T/srun.args")" \
    || fail "workers were not pointed at the first node's address: $(cat "$T/srun.args")"
grep -qx -- "$T/state/report.txt" "$T/report.args" || fail "no report written into the state dir"

echo "test-trap: ok (failed step, SIGTERM, sweep done)"
