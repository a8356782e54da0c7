#!/usr/bin/env bash
# Stop the cluster tests/slurm/start-cluster.sh started: cancel its jobs, then end exactly the
# pids it recorded in $STATE/pids, newest first (slurmd ... munged), SIGTERM and, after 20 s,
# SIGKILL. Nothing else is touched; the state dir stays, with the daemons' logs in $STATE/log.
set -uo pipefail

STATE=${SEEDLOCK_SLURM_DIR:-/tmp/seedlock-slurm}
export SLURM_CONF=$STATE/etc/slurm.conf
PATH=/usr/sbin:/sbin:$PATH

if [ ! -f "$STATE/pids" ]; then
    echo "seedlock-slurm: no cluster was started from $STATE (no $STATE/pids)"
    exit 0
fi

# Jobs first, while slurmd can still end their processes (a job's python is no pid of ours).
jobs=$(timeout 10 squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
if [ -n "${jobs// /}" ]; then
    echo "seedlock-slurm: cancelling jobs $jobs"
    # shellcheck disable=SC2086
    timeout 10 scancel $jobs 2>/dev/null
    for _ in $(seq 40); do
        [ -z "$(timeout 10 squeue -h -o %A 2>/dev/null)" ] && break
        sleep 0.5
    done
fi

# The pid file in reverse: each daemon stops before what it depends on.
tac "$STATE/pids" | while read -r name pid; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "seedlock-slurm: $name ($pid) had already stopped"
        continue
    fi
    kill -TERM "$pid"
    for _ in $(seq 40); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid"
        echo "seedlock-slurm: stopped $name ($pid) with SIGKILL"
    else
        echo "seedlock-slurm: stopped $name ($pid)"
    fi
done
rm -f "$STATE/pids"
