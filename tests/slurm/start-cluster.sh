#!/usr/bin/env bash
# Start a real single-node Slurm cluster on this machine, from nothing: munged, MariaDB, slurmdbd,
# slurmctld and slurmd, every file (configs, logs, state, the MariaDB data, the munge key) under
# one state dir. Needs root and apt (it installs Debian's slurm-wlm, slurmdbd, munge and
# mariadb-server when they are missing); no systemd. The pids it starts go into
# $STATE/pids, which tests/slurm/stop-cluster.sh reads to stop exactly those.
#
#   bash tests/slurm/start-cluster.sh          # prints the SLURM_CONF to export when it is up
#   export SLURM_CONF=/tmp/seedlock-slurm/etc/slurm.conf; sinfo; sacct
#
# Already up (its pids alive and sinfo answering): it says so and changes nothing. A state dir
# left by a cluster that is no longer running is wiped and made anew.
#
# Settings (environment): SEEDLOCK_SLURM_DIR (/tmp/seedlock-slurm), SEEDLOCK_SLURM_PARTITION
# (seedlock), SEEDLOCK_SLURM_MEMORY_MB (the node's RealMemory, 8192 or the machine's if less).
set -euo pipefail

STATE=${SEEDLOCK_SLURM_DIR:-/tmp/seedlock-slurm}
PARTITION=${SEEDLOCK_SLURM_PARTITION:-seedlock}
CLUSTER=seedlock
ETC=$STATE/etc
export SLURM_CONF=$ETC/slurm.conf
# Ports of their own, so that a machine's own Slurm or MariaDB is never spoken to.
DB_PORT=3307
DBD_PORT=6819
CTLD_PORT=6817
SLURMD_PORT=6818
START=$SECONDS

say() { echo "seedlock-slurm: $*"; }
fail() {
    echo "seedlock-slurm: error: $*" >&2
    for log in "$STATE"/log/*.log "$STATE"/mysql/*.log "$STATE"/munge/*.log; do
        [ -s "$log" ] && { echo "--- last lines of $log" >&2; tail -n 15 "$log" >&2; }
    done
    # what was started so far is stopped again: a failed start leaves nothing running
    [ -s "$STATE/pids" ] && bash "$(dirname "$0")/stop-cluster.sh" >&2
    exit 1
}

# wait_for SECONDS WHAT COMMAND...: run COMMAND every half second until it succeeds.
wait_for() {
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || fail "$what did not come up within ${limit} s"
        sleep 0.5
    done
}

[ "$(id -u)" -eq 0 ] || fail "run as root: the daemons switch to the munge and mysql users, and apt installs them"

if [ -f "$STATE/pids" ] && sinfo -h >/dev/null 2>&1; then
    all_alive=true
    while read -r _ pid; do kill -0 "$pid" 2>/dev/null || all_alive=false; done <"$STATE/pids"
    if $all_alive; then
        say "already up ($STATE/pids); export SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
fi
if [ -f "$STATE/pids" ]; then
    say "a cluster of $STATE is partly running: stopping what is left of it first"
    bash "$(dirname "$0")/stop-cluster.sh"
fi

# --- packages (Debian 12: Slurm 22.05, MariaDB 10.11) -------------------------------------------
missing=()
for tool in slurmctld:slurmctld slurmd:slurmd slurmdbd:slurmdbd sinfo:slurm-client munged:munge \
    mariadbd:mariadb-server; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${tool%%:*}" ] || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (apt)"
    # policy-rc.d: the packages' own services stay stopped (no systemd here, and this script
    # starts its own daemons on its own ports and files)
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends slurm-wlm slurmdbd munge mariadb-server >/dev/null
    say "installed in $((SECONDS - START)) s"
fi
PATH=/usr/sbin:/sbin:$PATH

# --- the state dir ------------------------------------------------------------------------------
rm -rf "$STATE"
mkdir -p "$ETC" "$STATE/log" "$STATE/run" "$STATE/ctld" "$STATE/slurmd" "$STATE/munge" "$STATE/mysql"
chmod 755 "$STATE"
: >"$STATE/pids"
record() { echo "$1 $2" >>"$STATE/pids"; }

# --- munge: its own key and socket --------------------------------------------------------------
MUNGE_SOCKET=$STATE/munge/munge.socket
chown munge:munge "$STATE/munge"
chmod 711 "$STATE/munge"  # munged wants its socket dir searchable by all, writable by it alone
runuser -u munge -- mungekey --create --keyfile="$STATE/munge/munge.key"
runuser -u munge -- munged --socket="$MUNGE_SOCKET" --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" \
    --seed-file="$STATE/munge/munged.seed"
wait_for 10 munged test -s "$STATE/munge/munged.pid"
record munged "$(cat "$STATE/munge/munged.pid")"
wait_for 10 munged bash -c "munge --socket='$MUNGE_SOCKET' -n | unmunge --socket='$MUNGE_SOCKET'"

# --- MariaDB on 127.0.0.1:$DB_PORT, data in the state dir ---------------------------------------
chown mysql:mysql "$STATE/mysql"
mariadb-install-db --no-defaults --user=mysql --datadir="$STATE/mysql/data" \
    --auth-root-authentication-method=socket --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1 \
    || fail "mariadb-install-db failed (see $STATE/log/mariadb-install.log)"
setsid nohup mysqld_safe --no-defaults --user=mysql --datadir="$STATE/mysql/data" \
    --socket="$STATE/mysql/mysqld.sock" --pid-file="$STATE/mysql/mysqld.pid" \
    --bind-address=127.0.0.1 --port=$DB_PORT --log-error="$STATE/mysql/mariadb.log" \
    --skip-name-resolve --innodb-buffer-pool-size=64M >/dev/null 2>&1 </dev/null &
record mysqld_safe $!
wait_for 60 MariaDB mariadb --no-defaults --socket="$STATE/mysql/mysqld.sock" -e "SELECT 1"
record mariadbd "$(cat "$STATE/mysql/mysqld.pid")"
mariadb --no-defaults --socket="$STATE/mysql/mysqld.sock" <<SQL
CREATE DATABASE slurm_acct_db;
CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'seedlock';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL

# --- Slurm's configs ----------------------------------------------------------------------------
HOST=$(hostname -s)
CPUS=$(nproc)
MACHINE_MB=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024))
MEMORY_MB=${SEEDLOCK_SLURM_MEMORY_MB:-$((MACHINE_MB < 8192 ? MACHINE_MB * 3 / 4 : 8192))}
cat >"$ETC/slurm.conf" <<CONF
# A single-node cluster for seedlock's tests (tests/slurm/start-cluster.sh).
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# Our own munged; cred_expire is also how long a requeued job waits before it may start again
# (default 120 s).
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
CredType=cred/munge
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# No cgroups without systemd: processes are tracked through /proc, tasks are not bound.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
# Cores and memory are consumable, so jobs share the node; without DefMemPerCPU a job asking for
# no memory takes all of it and the jobs run one at a time.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
SchedulerType=sched/backfill
ReturnToService=2
SlurmdParameters=config_overrides
# Accounting through slurmdbd: submitit reads each job's state from sacct.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# with slurmdbd: the munge socket to reach it through
AccountingStoragePass=$MUNGE_SOCKET
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Quick ends for the tests: 5 s from SIGTERM to SIGKILL, finished jobs kept 5 min for squeue.
KillWait=5
MinJobAge=300
# A job asking for more than a node has is refused at sbatch, not left pending for ever.
EnforcePartLimits=ALL
# Pre-emption as on a shared cluster: a job of the $PARTITION-urgent partition requeues jobs of
# $PARTITION that hold the cores it needs, sending them their own signal first (submitit's USR2)
# and killing them GraceTime seconds later.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEMORY_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP PriorityTier=1 GraceTime=30
PartitionName=$PARTITION-urgent Nodes=$HOST MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF
CONF
cat >"$ETC/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=seedlock
StorageLoc=slurm_acct_db
CONF
chmod 600 "$ETC/slurmdbd.conf"  # slurmdbd refuses a config others can read (it holds the password)

# --- the daemons --------------------------------------------------------------------------------
slurmdbd
wait_for 30 slurmdbd test -s "$STATE/run/slurmdbd.pid"
record slurmdbd "$(cat "$STATE/run/slurmdbd.pid")"
wait_for 60 "slurmdbd (its tables)" sacctmgr -n list cluster
sacctmgr -i add cluster "$CLUSTER" >/dev/null
slurmctld
wait_for 30 slurmctld test -s "$STATE/run/slurmctld.pid"
record slurmctld "$(cat "$STATE/run/slurmctld.pid")"
slurmd
wait_for 30 slurmd test -s "$STATE/run/slurmd.pid"
record slurmd "$(cat "$STATE/run/slurmd.pid")"

node_idle() { [ "$(sinfo -h -n "$HOST" -o %T)" = idle ]; }
wait_for 60 "the node (idle in sinfo)" node_idle
registered() { [ -n "$(sacctmgr -n -P list cluster "$CLUSTER" format=ControlHost)" ]; }
wait_for 60 "slurmctld's registration with slurmdbd" registered
wait_for 30 sacct sacct -n -X

say "up in $((SECONDS - START)) s: partition $PARTITION, node $HOST ($CPUS CPUs, ${MEMORY_MB} MB), accounting through slurmdbd; state in $STATE"
say "export SLURM_CONF=$SLURM_CONF"
