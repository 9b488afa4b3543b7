#!/usr/bin/env bash
# Stop the daemons started by .ci/slurm/up.sh (slurmd, slurmctld, slurmdbd,
# mariadbd, munged), each by its pid file, bounded. Leaves packages, config,
# the accounting database and job state in place so up.sh can start again.
set -uo pipefail

RUN_DIR=/run/slurm
WAIT_S="${SLURM_WAIT_S:-30}"
status=0

log() { echo "[slurm-down $(date +%H:%M:%S)] $*"; }

[[ "$(id -u)" == 0 ]] || { echo "[slurm-down] ERROR: must run as root" >&2; exit 1; }

# stop_pidfile <name> <pidfile>: SIGTERM, wait up to WAIT_S, then SIGKILL.
stop_pidfile() {
    local name="$1" pf="$2" pid
    if [[ ! -s "$pf" ]]; then
        log "$name: no pid file ($pf), not running"
        return 0
    fi
    pid="$(cat "$pf")"
    if ! kill -0 "$pid" 2>/dev/null; then
        log "$name: pid $pid not running; removing stale $pf"
        rm -f "$pf"
        return 0
    fi
    log "$name: stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    local start=$SECONDS
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS - start >= WAIT_S)); then
            log "$name: still running after ${WAIT_S}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 1
            kill -0 "$pid" 2>/dev/null && { log "$name: could not stop pid $pid"; status=1; }
            break
        fi
        sleep 0.5
    done
    rm -f "$pf"
}

stop_pidfile slurmd "$RUN_DIR/slurmd.pid"
stop_pidfile slurmctld "$RUN_DIR/slurmctld.pid"
stop_pidfile slurmdbd "$RUN_DIR/slurmdbd.pid"

# MariaDB: orderly shutdown through the client, then the pid file as fallback.
if timeout 5 mariadb-admin --protocol=socket -uroot ping >/dev/null 2>&1; then
    log "mariadbd: shutting down"
    timeout "$WAIT_S" mariadb-admin --protocol=socket -uroot shutdown || log "mariadbd: shutdown command failed"
fi
stop_pidfile mariadbd /run/mysqld/mysqld.pid

stop_pidfile munged /run/munge/munged.pid

if ((status)); then
    log "some daemons could not be stopped"
else
    log "all stopped"
fi
exit "$status"
