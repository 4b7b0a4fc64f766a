#!/usr/bin/env bash
# A real Slurm on this one machine, to try deploy/slurm/sal-sweep.sbatch without a cluster:
# munged, slurmctld and NODES slurmd daemons (`slurmd -N NAME`, each on its own port) that stand
# in for NODES CPU nodes. Debian's slurm-wlm and munge are installed when missing (root, apt-get).
#
#   deploy/slurm/local-cluster.sh start     # prints the `export SLURM_CONF=...` to use it
#   export SLURM_CONF=/tmp/sal-slurm/slurm.conf
#   sbatch --nodes=2 deploy/slurm/sal-sweep.sbatch sweeps/noop.yaml "$PWD"
#   deploy/slurm/local-cluster.sh status
#   deploy/slurm/local-cluster.sh stop      # stops every daemon it started, removes nothing else
#
# Settings (environment): SAL_SLURM_DIR (default /tmp/sal-slurm: config, logs, spool, pid files),
# NODES (3), CPUS (CPUs each node offers: this machine's core count), PORT_BASE (16817: slurmctld
# on it, node i's slurmd on PORT_BASE+i). No systemd is needed: the daemons are started by hand,
# as root (SlurmUser=root), with a munge key and socket of their own in SAL_SLURM_DIR, so that an
# installed munge or Slurm is left alone. Jobs run as the user who submits them.
#
# What this Slurm has and lacks: no accounting database (sacct says nothing; the end state of
# every job is in SAL_SLURM_DIR/jobcomp.txt, written by jobcomp/filetxt), no cgroups (processes
# are tracked by their parent ids), no GPUs (CPU nodes: sal-sweep.sbatch then gives workers CPU
# ranks). Node names are sal-node1..N: Slurm sorts an allocation's node list by name, so the
# first one, where sal-sweep.sbatch starts the coordinator, is the lowest name allocated.
set -euo pipefail

DIR=${SAL_SLURM_DIR:-/tmp/sal-slurm}
NODES=${NODES:-3}
CPUS=${CPUS:-$(nproc)}
PORT_BASE=${PORT_BASE:-16817}
CONF=$DIR/slurm.conf
# How long a daemon gets to come up or go away before this script says it failed.
PATIENCE=${PATIENCE:-60}

say() { echo "local-cluster: $*" >&2; }
die() { say "$*"; exit 1; }

nodes() { seq 1 "$NODES" | sed 's/^/sal-node/'; }

install_if_missing() {
    local missing=()
    command -v munged >/dev/null 2>&1 || missing+=(munge)
    command -v slurmctld >/dev/null 2>&1 || missing+=(slurmctld)
    command -v slurmd >/dev/null 2>&1 || missing+=(slurmd)
    command -v sbatch >/dev/null 2>&1 || missing+=(slurm-client)
    [ ${#missing[@]} = 0 ] && return
    [ "$(id -u)" = 0 ] || die "missing ${missing[*]}: install them (apt-get install slurm-wlm munge) or run as root"
    command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
    say "installing ${missing[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

# Waits until "$@" succeeds, at most PATIENCE seconds; polls, never sleeps for a fixed outcome.
wait_until() {
    local what=$1; shift
    local deadline=$((SECONDS + PATIENCE))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || die "$what: not within ${PATIENCE} s (logs in $DIR)"
        sleep 0.2
    done
}

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_config() {
    local host
    host=$(hostname -s)
    mkdir -p "$DIR/ctld" "$DIR/munge"
    for node in $(nodes); do mkdir -p "$DIR/spool/$node"; done
    # Every node is this machine (NodeHostname), reached on 127.0.0.1 on a port of its own.
    {
        cat <<EOF
# Written by deploy/slurm/local-cluster.sh: $NODES simulated CPU nodes on $host.
ClusterName=sal-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT_BASE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd-%n.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# The simulated nodes share this machine's cores: take the node lines as they are.
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.txt
ReturnToService=2
# scancel: SIGTERM, then SIGKILL this long after (sal-sweep's processes exit well before).
KillWait=30
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
EOF
        local i=0
        for node in $(nodes); do
            i=$((i + 1))
            echo "NodeName=$node NodeHostname=$host NodeAddr=127.0.0.1 Port=$((PORT_BASE + i)) CPUs=$CPUS RealMemory=1000 State=UNKNOWN"
        done
        echo "PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO"
    } > "$CONF"
}

start() {
    install_if_missing
    [ "$(id -u)" = 0 ] || die "the daemons run as root (SlurmUser=root): run start as root"
    if alive "$DIR/slurmctld.pid"; then
        say "already running (slurmctld pid $(cat "$DIR/slurmctld.pid")); stop it first"
        echo "export SLURM_CONF=$CONF"
        return
    fi
    write_config
    export SLURM_CONF=$CONF
    # A munge key of its own, readable by root only (munged checks that).
    if [ ! -s "$DIR/munge/munge.key" ]; then
        (umask 077 && dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none)
    fi
    chmod 700 "$DIR/munge"
    munged --force --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
        --seed-file="$DIR/munge/munged.seed"
    wait_until "munged answers" munge -S "$DIR/munge/munge.socket" -n
    slurmctld -f "$CONF"
    wait_until "slurmctld answers" scontrol ping
    for node in $(nodes); do
        slurmd -f "$CONF" -N "$node"
    done
    # A node is usable once slurmctld has heard from its slurmd: idle, not unknown or down.
    for node in $(nodes); do
        wait_until "$node registers" node_idle "$node"
    done
    say "up: $NODES nodes ($(nodes | paste -sd' ')), $CPUS CPUs each; logs and job end states in $DIR"
    echo "export SLURM_CONF=$CONF"
}

node_idle() {
    [ "$(sinfo -h -n "$1" -o %T)" = idle ]
}

# Stops a daemon by its pid file and waits until it is gone (SIGKILL after PATIENCE seconds).
stop_daemon() {
    local name=$1 pidfile=$2 pid
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + PATIENCE))
        while kill -0 "$pid" 2>/dev/null; do
            if [ "$SECONDS" -ge "$deadline" ]; then
                say "$name (pid $pid) did not stop within ${PATIENCE} s: SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.2
        done
    fi
    rm -f "$pidfile"
}

stop() {
    [ -f "$CONF" ] || { say "nothing to stop in $DIR"; return; }
    export SLURM_CONF=$CONF
    # Jobs first, so that no job step outlives its slurmd; bounded like everything else.
    if alive "$DIR/slurmctld.pid" && [ -n "$(squeue -h -o %i 2>/dev/null)" ]; then
        scancel --full $(squeue -h -o %i) 2>/dev/null || true
        local deadline=$((SECONDS + PATIENCE))
        while [ -n "$(squeue -h -o %i 2>/dev/null)" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    fi
    for pidfile in "$DIR"/slurmd-*.pid; do
        [ -e "$pidfile" ] || continue
        stop_daemon "slurmd $(basename "$pidfile" .pid)" "$pidfile"
    done
    stop_daemon slurmctld "$DIR/slurmctld.pid"
    stop_daemon munged "$DIR/munge/munged.pid"
    say "stopped"
}

status() {
    local up=0
    alive "$DIR/munge/munged.pid" && { echo "munged: pid $(cat "$DIR/munge/munged.pid")"; up=1; }
    alive "$DIR/slurmctld.pid" && { echo "slurmctld: pid $(cat "$DIR/slurmctld.pid")"; up=1; }
    for pidfile in "$DIR"/slurmd-*.pid; do
        alive "$pidfile" && { echo "$(basename "$pidfile" .pid): pid $(cat "$pidfile")"; up=1; }
    done
    if [ "$up" = 0 ]; then
        echo "not running ($DIR)"
        return 3
    fi
    if alive "$DIR/slurmctld.pid"; then
        SLURM_CONF=$CONF sinfo -N -o '%N %T %c' || true
        SLURM_CONF=$CONF squeue || true
    fi
    echo "export SLURM_CONF=$CONF"
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
