#!/usr/bin/env bash
# test_slurm.sh — drq-workers under a real Slurm (issue 13, docs/slurm.md):
# Debian's munged, slurmctld and slurmd on this machine (single node, state and
# spool in the test's temp dir, proctrack/linuxproc, task/none), drq-server on
# 127.0.0.1, deploy/slurm/drq-workers.sbatch submitted as an array of 2 CPU
# tasks against a noop sweep.  Array task 0 is preempted mid-job with
# `scancel --signal=TERM --batch` (what --signal=B:TERM@… sends); checked:
#   - its worker checkpointed and released the running job, exited 0;
#   - the task requeued itself (scontrol requeue), ran again and registered
#     again under the same worker name;
#   - the sweep completes with rows equal to an uninterrupted `drq run`, none
#     doubled; both tasks then end by themselves (sweep finished, no requeue).
# Every daemon is stopped by its pid.  Skips (counted) when not root or when the
# Slurm/munge packages are missing (deploy/install-deps.sh installs them) or the
# daemons cannot start here for an environmental reason (the logs are shown).
cd "$(dirname "$0")/.." || exit 1
source tests/queue_lib.sh

ROOT=$(pwd)
DAEMONS=() # pids of munged, slurmctld, slurmd (stopped in this order reversed)
JOB=""
slurm_cleanup() {
    if [ -n "$JOB" ]; then scancel "$JOB" 2>/dev/null; sleep 1; fi
    local i
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        local p=${DAEMONS[$i]}
        kill -TERM "$p" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    # the batch scripts and workers slurmd started are its children: gone with it;
    # anything left under $T is ours
    for p in $(pgrep -f "$T/" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    cleanup
}
trap slurm_cleanup EXIT

skip_all() {
    skip "$1"
    echo "RESULT $PASS $FAIL $SKIPPED"
    exit 0
}

[ "$(id -u)" -eq 0 ] || skip_all "not root: slurmd and munged run as root here"
for b in munged slurmctld slurmd sbatch scontrol squeue scancel sinfo; do
    command -v "$b" >/dev/null || skip_all "$b not installed (deploy/install-deps.sh installs slurmctld slurmd slurm-client munge)"
done

mkdir -p "$T/munge" "$T/etc" "$T/state" "$T/spool" "$T/log" "$T/run"
chmod 700 "$T/munge"
# ---- munge -----------------------------------------------------------------------------
dd if=/dev/urandom of="$T/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$T/munge/munge.key"
SOCK=$T/munge/munge.socket
munged -F --force --key-file "$T/munge/munge.key" --socket "$SOCK" --pid-file "$T/munge/munged.pid" \
    --log-file "$T/log/munged.log" --seed-file "$T/munge/munged.seed" >>"$T/log/munged.out" 2>&1 &
DAEMONS+=($!)
wait_for 10 test -S "$SOCK" || { cat "$T/log/munged"* 2>/dev/null | tail -5; skip_all "munged did not start"; }

# ---- slurm.conf ------------------------------------------------------------------------
HOST=$(hostname -s)
CTLD_PORT=$((WPORT + 2))
SLURMD_PORT=$((WPORT + 3))
NCPU=$(nproc)
MEM=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2))
cat >"$T/etc/slurm.conf" <<EOF
ClusterName=drqtest
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
AuthInfo=socket=$SOCK
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/run/slurmctld.pid
SlurmdPidFile=$T/run/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
JobRequeue=1
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=drqnode NodeHostname=$HOST NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$MEM State=UNKNOWN
PartitionName=drq Nodes=drqnode Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
cat >"$T/etc/cgroup.conf" <<EOF
CgroupPlugin=cgroup/v1
CgroupAutomount=no
EOF
export SLURM_CONF=$T/etc/slurm.conf

slurmctld -D -i -f "$SLURM_CONF" >>"$T/log/slurmctld.out" 2>&1 &
DAEMONS+=($!)
CTLD=$!
slurmd -D -N drqnode -f "$SLURM_CONF" >>"$T/log/slurmd.out" 2>&1 &
DAEMONS+=($!)
SLURMD=$!
node_idle() { sinfo -h -n drqnode -o %T 2>/dev/null | grep -qx idle; }
if ! wait_for 60 node_idle; then
    for f in "$T"/log/*; do echo "== $f"; tail -n 8 "$f"; done
    kill -0 "$CTLD" 2>/dev/null || skip_all "slurmctld exited at start (environment; log above)"
    kill -0 "$SLURMD" 2>/dev/null || skip_all "slurmd exited at start (environment; log above)"
    skip_all "the Slurm node did not become idle within 60 s (log above)"
fi
check "slurm: node drqnode idle" true

# ---- drq-server and the sweep ----------------------------------------------------------
# 32 jobs of 10 images at 150 ms: 1.5 s per job, ~25 s for two workers
cat >"$T/spec.json" <<'EOF'
{"name": "slurm", "dataset": {"kind": "none", "count": 160},
 "attacks": [{"name": "a", "kind": "noop", "ms_per_image": 150}],
 "seeds": [0, 1], "shard": {"images": 10}}
EOF
check "reference run (drq run)" make_reference "$T/spec.json"
DB=$T/slurm.db
check "server starts" start_server "$DB" --lease-s 30
SWEEP=$("$DRQ" submit "$T/spec.json" 2>/dev/null)
check "submit" test -n "$SWEEP"

# the worker array: 2 CPU tasks, 1 CPU each; per-task logs in $T
export DRQ_BIN=$ROOT/$B DRQ_SWEEP=$SWEEP DRQ_POLL_S=1 DRQ_STOP_GRACE_S=20
OUT=$(sbatch --parsable --array=0-1 --cpus-per-task=1 --chdir="$T" --output="$T/w-%A_%a.log" \
    deploy/slurm/drq-workers.sbatch --server tcp://127.0.0.1:$WPORT --checkpoint-every 0 --prefetch 0 2>&1)
JOB=${OUT%%;*}
check "sbatch submits the worker array" test -n "$JOB" -a "$JOB" -eq "$JOB" 2>/dev/null || echo "sbatch: $OUT"
W0=drq-$JOB-0
W1=drq-$JOB-1
running_tasks() { [ "$(squeue -h -j "$JOB" -t R -o %i 2>/dev/null | wc -l)" -eq 2 ]; }
check "both array tasks run" wait_for 30 running_tasks
held_by() { [ -n "$(sql "$DB" "select id from jobs where state = 'leased' and lease_owner = '$1' limit 1")" ]; }
check "task 0's worker registered as $W0 and leased a job" wait_for 30 held_by "$W0"
check "task 1's worker registered as $W1" wait_for 30 held_by "$W1"
check "a job is done" wait_for 30 jobs_done_at_least "$DB" 1
# task 0 mid-job (it holds one job at a time: --prefetch 0): a few images in
LOG0=$T/w-${JOB}_0.log
started() { grep -q "\[$W0\] job [0-9]*: images" "$LOG0"; }
wait_for 10 started
sleep 0.5
check "task 0 holds a job when preempted" held_by "$W0"
T0=$(date +%s%N)
check "scancel --signal=TERM --batch" scancel --signal=TERM --batch "${JOB}_0"
preempted() { grep -q "\[$W0\] job [0-9]* preempted at" "$LOG0"; }
check "task 0's worker checkpointed the running job" wait_for 20 preempted
PJOB=$(sed -n "s/.*\[$W0\] job \([0-9]*\) preempted at.*/\1/p" "$LOG0" | head -1)
released() { [ "$(sql "$DB" "select count(*) from events where kind = 'release' and job = ${PJOB:-0}")" -ge 1 ]; }
check "the preempted job was released" wait_for 20 released
REL_MS=$((($(date +%s%N) - T0) / 1000000))
check "release is not a failed attempt" test "$(sql "$DB" "select attempts from jobs where id = ${PJOB:-0}")" -eq 0
check "the task requeued itself" wait_for 20 grep -q "requeueing job" "$LOG0"
restarted() { scontrol show job "${JOB}_0" 2>/dev/null | grep -qE 'Restarts=[1-9]'; }
check "Slurm counts a restart of task 0" wait_for 20 restarted
# Slurm holds a requeued job back (BeginTime about 2 minutes ahead, whatever the
# configuration); the test lets it start at once
pending0() { squeue -h -j "${JOB}_0" -t PD -o %i 2>/dev/null | grep -q .; }
check "task 0 is pending again after the requeue" wait_for 30 pending0
echo "slurm: after the requeue: $(squeue -h -j "${JOB}_0" -o '%T %r %S' 2>/dev/null)"
# (not before slurmd has finished cleaning up the first run: a launch racing
# that cleanup fails)
sleep 5
scontrol update JobId="${JOB}_0" StartTime=now 2>&1 | grep -v '^$'
ran_again() { [ "$(grep -c 'restart count 1' "$LOG0")" -ge 1 ]; }
check "task 0 ran again (requeued)" wait_for 180 ran_again
hello_again() { [ "$(grep -c "worker .* on tcp://127.0.0.1:$WPORT" "$LOG0")" -ge 2 ]; }
check "the requeued task's worker registered again as $W0" wait_for 30 hello_again
check "sweep completes" wait_for 120 sweep_finished "$DB" "$SWEEP"
did_work() { sed -n '/restart count 1/,$p' "$LOG0" | grep -q "\[$W0\] job [0-9]* done"; }
check "the requeued task's worker finished jobs" did_work
check "the preempted job resumed from its checkpoint" \
    test "$(sql "$DB" "select count(*) from events where kind = 'resume' and job = ${PJOB:-0}")" -ge 1
check "it resumed mid-job (checkpoint step > 0)" grep -qE "job ${PJOB:-0}: resumed from checkpoint step [1-9]" "$T"/w-*.log
check_eq "one worker row per task name" \
    "$(sql "$DB" "select count(*) from workers where name in ('$W0', '$W1')")" 2
check "rows equal the uninterrupted run" same_rows_as_reference "$DB" "$T/slurm.csv"
check "no row doubled" no_duplicate_rows "$T/slurm.csv"
array_gone() { [ -z "$(squeue -h -j "$JOB" -o %i 2>/dev/null)" ]; }
check "both tasks end by themselves once the sweep is finished" wait_for 60 array_gone
check "task 1 saw the sweep finished" grep -q "the sweep is finished" "$T/w-${JOB}_1.log"
echo "slurm: preempted job released $REL_MS ms after scancel; task 0 requeued and re-registered as $W0"
if [ "$FAIL" -gt 0 ]; then
    dump_logs
    for f in "$T"/w-*.log "$T"/log/slurmctld.log "$T"/log/slurmd.log; do echo "== $f"; tail -n 30 "$f"; done
fi
finish
