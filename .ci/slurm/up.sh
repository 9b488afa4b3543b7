#!/usr/bin/env bash
# Bring up a single-node SLURM cluster with accounting (slurmdbd + MariaDB)
# on a Debian machine without systemd. Idempotent: running it again while the
# daemons are up only checks them. Must run as root.
#
# Environment (all optional):
#   SLURM_CLUSTER_NAME  cluster name            (default: miaaudit)
#   SLURM_PARTITION     partition name          (default: debug)
#   SLURM_ACCOUNT       accounting account      (default: mia)
#   SLURM_EXTRA_USERS   space-separated users added to the account besides root
#                       and the invoking user
#   SLURM_SKIP_APT=1    do not run apt-get even if packages are missing
#   SLURM_WAIT_S        seconds to wait for each readiness check (default: 60)
#   SLURM_PROBE_JOB=0   skip the final one-second srun probe job
set -euo pipefail

CLUSTER="${SLURM_CLUSTER_NAME:-miaaudit}"
PARTITION="${SLURM_PARTITION:-debug}"
ACCOUNT="${SLURM_ACCOUNT:-mia}"
WAIT_S="${SLURM_WAIT_S:-60}"
DB_NAME="slurm_acct_db"
DB_USER="slurm"

CONF_DIR=/etc/slurm
SLURM_CONF_FILE="$CONF_DIR/slurm.conf"
DBD_CONF_FILE="$CONF_DIR/slurmdbd.conf"
RUN_DIR=/run/slurm
LOG_DIR=/var/log/slurm
STATE_DIR=/var/lib/slurm

log() { echo "[slurm-up $(date +%H:%M:%S)] $*"; }
die() {
    echo "[slurm-up $(date +%H:%M:%S)] ERROR: $*" >&2
    for f in "$LOG_DIR"/slurmctld.log "$LOG_DIR"/slurmd.log "$LOG_DIR"/slurmdbd.log /var/log/slurm/mariadb.err; do
        if [[ -s "$f" ]]; then
            echo "----- last lines of $f -----" >&2
            tail -n 15 "$f" >&2 || true
        fi
    done
    exit 1
}

# wait_until <seconds> <description> <command...>: poll every second, bounded.
wait_until() {
    local limit="$1" what="$2"
    shift 2
    local start=$SECONDS
    while ! "$@" >/dev/null 2>&1; do
        if ((SECONDS - start >= limit)); then
            die "timed out after ${limit}s waiting for: $what"
        fi
        sleep 1
    done
    log "ready after $((SECONDS - start))s: $what"
}

# pid_alive <pidfile>: the pid in the file names a running process.
pid_alive() {
    local pf="$1"
    [[ -s "$pf" ]] && kill -0 "$(cat "$pf")" 2>/dev/null
}

[[ "$(id -u)" == 0 ]] || die "must run as root (uid 0), running as uid $(id -u)"

T_START=$SECONDS

# ---------------------------------------------------------------- packages
PKGS=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
T_APT=$SECONDS
if ((${#missing[@]})); then
    [[ "${SLURM_SKIP_APT:-0}" == 1 ]] && die "packages missing and SLURM_SKIP_APT=1: ${missing[*]}"
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep package scripts from starting daemons: this script starts them.
    policy_created=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_created=1
    fi
    trap '[[ $policy_created == 1 ]] && rm -f /usr/sbin/policy-rc.d' EXIT
    timeout 300 apt-get update -q || die "apt-get update failed or timed out"
    timeout 900 apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${PKGS[@]}" || die "apt-get install failed or timed out"
    if [[ $policy_created == 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
    trap - EXIT
else
    log "packages already installed: ${PKGS[*]}"
fi
T_APT=$((SECONDS - T_APT))
log "$(dpkg-query -W -f='${Package} ${Version}\n' slurmctld munge slurmdbd mariadb-server | tr '\n' ';')"

T_DAEMONS=$SECONDS

# ---------------------------------------------------------------- config
install -d -m 755 "$CONF_DIR" "$LOG_DIR"
install -d -m 755 -o slurm -g slurm "$RUN_DIR" "$STATE_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd"
chown slurm:slurm "$LOG_DIR"

NCPU="$(nproc)"
MEM_MB="$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)"
REAL_MEM=$((MEM_MB * 80 / 100))

new_conf="$(mktemp)"
cat >"$new_conf" <<EOF
# Single-node SLURM for tests and small runs; written by .ci/slurm/up.sh.
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=slurm
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
# No cgroups on these machines.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
# Sample each job step's memory and CPU every second: the workflow's jobs last seconds to
# minutes, and sacct's MaxRSS of a step shorter than the interval would stay empty.
JobAcctGatherFrequency=task=1
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# Keep finished jobs visible to squeue for 5 minutes.
MinJobAge=300
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
JobCompType=jobcomp/none
DefMemPerCPU=1000
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$REAL_MEM State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
conf_changed=0
if ! cmp -s "$new_conf" "$SLURM_CONF_FILE"; then
    install -m 644 "$new_conf" "$SLURM_CONF_FILE"
    conf_changed=1
    log "wrote $SLURM_CONF_FILE (CPUs=$NCPU RealMemory=${REAL_MEM}MB partition=$PARTITION)"
fi
rm -f "$new_conf"

# Reuse the database password across runs.
DB_PASS=""
if [[ -s "$DBD_CONF_FILE" ]]; then
    DB_PASS="$(sed -n 's/^StoragePass=//p' "$DBD_CONF_FILE")"
fi
if [[ -z "$DB_PASS" ]]; then
    DB_PASS="$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
fi
new_dbd="$(mktemp)"
cat >"$new_dbd" <<EOF
# slurmdbd for the single-node cluster; written by .ci/slurm/up.sh.
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$RUN_DIR/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
dbd_changed=0
if ! cmp -s "$new_dbd" "$DBD_CONF_FILE"; then
    install -m 600 -o slurm -g slurm "$new_dbd" "$DBD_CONF_FILE"
    dbd_changed=1
    log "wrote $DBD_CONF_FILE"
fi
chown slurm:slurm "$DBD_CONF_FILE"
chmod 600 "$DBD_CONF_FILE"
rm -f "$new_dbd"

# ---------------------------------------------------------------- munge
munge_ok() { timeout 5 munge -n | timeout 5 unmunge; }
if munge_ok >/dev/null 2>&1; then
    log "munged already running"
else
    [[ -s /etc/munge/munge.key ]] || die "/etc/munge/munge.key missing (the munge package creates it)"
    install -d -m 755 -o munge -g munge /run/munge
    log "starting munged"
    timeout 20 runuser -u munge -- /usr/sbin/munged || die "munged failed to start"
    wait_until "$WAIT_S" "munge credential round trip" munge_ok
fi

# ---------------------------------------------------------------- mariadb
cat >/etc/mysql/mariadb.conf.d/99-slurmdbd.cnf <<'EOF'
# Values slurmdbd recommends.
[mysqld]
innodb_buffer_pool_size=256M
innodb_lock_wait_timeout=900
EOF
db_ok() { timeout 5 mariadb-admin --protocol=socket -uroot ping; }
if db_ok >/dev/null 2>&1; then
    log "mariadb already running"
else
    install -d -m 755 -o mysql -g mysql /run/mysqld
    if [[ ! -d /var/lib/mysql/mysql ]]; then
        log "initialising the MariaDB data directory"
        timeout 120 mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null ||
            die "mariadb-install-db failed"
    fi
    log "starting mariadbd"
    # setsid + nohup: detached from this shell, survives its exit.
    setsid nohup /usr/sbin/mariadbd --user=mysql --log-error=/var/log/slurm/mariadb.err \
        </dev/null >/dev/null 2>&1 &
    wait_until "$WAIT_S" "mariadb answers ping" db_ok
fi
timeout 30 mariadb --protocol=socket -uroot <<EOF || die "could not create database user $DB_USER"
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON $DB_NAME.* TO '$DB_USER'@'localhost';
FLUSH PRIVILEGES;
EOF

# ---------------------------------------------------------------- slurmdbd
dbd_ok() { timeout 10 sacctmgr -n list cluster format=cluster; }
if pid_alive "$RUN_DIR/slurmdbd.pid" && ((dbd_changed == 0)) && dbd_ok >/dev/null 2>&1; then
    log "slurmdbd already running"
else
    if pid_alive "$RUN_DIR/slurmdbd.pid"; then
        log "restarting slurmdbd (configuration changed or not answering)"
        kill "$(cat "$RUN_DIR/slurmdbd.pid")" || true
        wait_until 30 "old slurmdbd exits" bash -c "! kill -0 $(cat "$RUN_DIR/slurmdbd.pid") 2>/dev/null"
    fi
    log "starting slurmdbd"
    timeout 30 /usr/sbin/slurmdbd || die "slurmdbd failed to start"
    wait_until "$WAIT_S" "slurmdbd answers sacctmgr" dbd_ok
fi

# Cluster, account and users must exist before jobs are accepted
# (AccountingStorageEnforce=associations).
if ! timeout 10 sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    log "registering cluster $CLUSTER"
    timeout 30 sacctmgr -i add cluster "$CLUSTER" || die "sacctmgr add cluster $CLUSTER failed"
fi
if ! timeout 10 sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT"; then
    log "adding account $ACCOUNT"
    timeout 30 sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" \
        description="single-node test account" organization=local ||
        die "sacctmgr add account $ACCOUNT failed"
fi
users="root ${SUDO_USER:-} ${SLURM_EXTRA_USERS:-}"
for u in $users; do
    id "$u" >/dev/null 2>&1 || { log "skipping unknown user $u"; continue; }
    if ! timeout 10 sacctmgr -n -P list assoc user="$u" account="$ACCOUNT" cluster="$CLUSTER" format=user |
        grep -qx "$u"; then
        log "adding user $u to account $ACCOUNT"
        timeout 30 sacctmgr -i add user "$u" account="$ACCOUNT" cluster="$CLUSTER" defaultaccount="$ACCOUNT" ||
            die "sacctmgr add user $u failed"
    fi
done

# ---------------------------------------------------------------- slurmctld, slurmd
ctld_ok() { timeout 10 scontrol ping | grep -q "is UP"; }
if pid_alive "$RUN_DIR/slurmctld.pid" && ((conf_changed == 0)) && ctld_ok; then
    log "slurmctld already running"
else
    for d in slurmd slurmctld; do
        if pid_alive "$RUN_DIR/$d.pid"; then
            log "stopping $d (configuration changed or not answering)"
            pid="$(cat "$RUN_DIR/$d.pid")"
            kill "$pid" || true
            wait_until 30 "old $d exits" bash -c "! kill -0 $pid 2>/dev/null"
        fi
    done
    log "starting slurmctld"
    timeout 30 /usr/sbin/slurmctld || die "slurmctld failed to start"
    wait_until "$WAIT_S" "slurmctld answers scontrol ping" ctld_ok
fi
# slurmd_registered: slurmctld has heard from a slurmd started at or after
# $slurmd_t0 (a restarted slurmctld restores the old node state from disk, so
# "idle" alone does not prove that this slurmd registered).
slurmd_t0=0
slurmd_registered() {
    local t
    t="$(timeout 10 scontrol show node localhost | sed -n 's/.*SlurmdStartTime=\([^ ]*\).*/\1/p')"
    [[ -n "$t" && "$t" != None ]] && (($(date -d "$t" +%s) >= slurmd_t0))
}
if pid_alive "$RUN_DIR/slurmd.pid"; then
    log "slurmd already running"
else
    log "starting slurmd"
    slurmd_t0=$(($(date +%s) - 1))
    timeout 30 /usr/sbin/slurmd -N localhost || die "slurmd failed to start"
    wait_until "$WAIT_S" "slurmd registered with slurmctld" slurmd_registered
    pid_alive "$RUN_DIR/slurmd.pid" || die "slurmd exited after start"
fi

node_idle() { [[ "$(timeout 10 sinfo -h -n localhost -o %T)" == idle* ]]; }
node_usable() { timeout 10 sinfo -h -n localhost -o %T | grep -Eq '^(idle|mixed|allocated)'; }
start=$SECONDS
while ! node_usable; do
    state="$(timeout 10 sinfo -h -n localhost -o %T 2>&1 || true)"
    if [[ "$state" =~ drain|down|fail ]]; then
        log "node state is '$state'; resuming it"
        timeout 10 scontrol update nodename=localhost state=resume || true
    fi
    ((SECONDS - start < WAIT_S)) || die "node did not become idle within ${WAIT_S}s (state: '$state'; reason: $(timeout 10 sinfo -h -R 2>&1))"
    sleep 1
done
node_idle && log "node localhost is idle" || log "node localhost is $(timeout 10 sinfo -h -n localhost -o %T) (busy with jobs)"
timeout 20 sacct -n -X -S now-1minute >/dev/null || die "sacct does not answer"
log "sacct answers"

# Final proof that jobs run: a one-second job step through the whole path
# (munge credential, slurmctld scheduling, slurmd launch, accounting).
if [[ "${SLURM_PROBE_JOB:-1}" == 1 ]]; then
    probe_out="$(timeout 60 srun -p "$PARTITION" -A "$ACCOUNT" -N1 -n1 --mem=50 -t 1 -J up-probe echo probe-ok 2>&1)" ||
        die "probe job failed or timed out: $probe_out"
    [[ "$probe_out" == *probe-ok* ]] || die "probe job printed unexpected output: $probe_out"
    log "probe job ran"
fi

T_DAEMONS=$((SECONDS - T_DAEMONS))
log "cluster '$CLUSTER' up: partition '$PARTITION', account '$ACCOUNT', ${NCPU} CPUs, ${REAL_MEM} MB"
log "timing: apt ${T_APT}s, configure+daemons ${T_DAEMONS}s, total $((SECONDS - T_START))s"
