#!/usr/bin/env bash
# test_queue_workers.sh — worker faults with real processes on 127.0.0.1:
#   1. kill -9 a worker mid-job: the job is re-leased and finished elsewhere;
#   2. SIGTERM a worker mid-job: it checkpoints, releases, exits within a few
#      seconds; the job resumes from the checkpoint on another worker;
# and after each, the result rows equal those of an uninterrupted run (drq run),
# row for row, none missing or doubled.
cd "$(dirname "$0")/.." || exit 1
source tests/queue_lib.sh

# 20 jobs of 10 images at 40 ms: ~0.4 s per job
cat >"$T/spec.json" <<'EOF'
{"name": "faults", "dataset": {"kind": "none", "count": 100},
 "attacks": [{"name": "a", "kind": "noop", "ms_per_image": 40}],
 "seeds": [0, 1], "shard": {"images": 10}}
EOF
check "reference run (drq run)" make_reference "$T/spec.json"
check_eq "reference rows" "$(wc -l <"$T/ref.txt")" 200

# ---- 1. kill -9 a worker mid-job ------------------------------------------------------
DB=$T/kill.db
check "server starts" start_server "$DB" --lease-s 30
check "submit" "$DRQ" submit "$T/spec.json" >/dev/null
start_worker w1 --checkpoint-every 3
W1=$WORKER_PID
# w1 alone until it is in the middle of its second job
check "w1 finished a job" wait_for 20 jobs_done_at_least "$DB" 1
sleep 0.25
start_worker w2 --checkpoint-every 3
kill -9 "$W1"
JOB=$(sql "$DB" "select id from jobs where state = 'leased' and lease_owner = 'w1' order by id limit 1")
check "w1 held a job when killed" test -n "$JOB"
check "sweep completes after kill -9 of a worker" wait_for 60 sweep_finished "$DB"
check "the killed worker's job was requeued" \
    test "$(sql "$DB" "select count(*) from events where kind = 'requeue' and job = ${JOB:-0} and detail like '%w1 lost%'")" -ge 1
check_eq "the job is done" "$(sql "$DB" "select state from jobs where id = ${JOB:-0}")" done
check "w2 finished it" test "$(sql "$DB" "select count(*) from results r join jobs j on r.seed = j.seed and r.image >= j.image_start and r.image < j.image_start + j.image_count where j.id = ${JOB:-0} and r.worker = 'w2'")" -ge 1
check "rows equal the uninterrupted run" same_rows_as_reference "$DB" "$T/kill.csv"
check "no row doubled" no_duplicate_rows "$T/kill.csv"
check_eq "rows counted once" "$(sql "$DB" "select count(*) || ' ' || (select rows_done from sweeps) from results")" "200 200"
[ "$FAIL" -gt 0 ] && dump_logs; FAIL0=$FAIL
kill -9 "$SERVER_PID" "$WORKER_PID" 2>/dev/null
wait 2>/dev/null

# ---- 2. SIGTERM a worker mid-job ------------------------------------------------------
rm -f "$T"/*.log
DB=$T/term.db
check "server starts (2)" start_server "$DB"
check "submit (2)" "$DRQ" submit "$T/spec.json" >/dev/null
start_worker t1 --checkpoint-every 0
T1=$WORKER_PID
check "t1 finished a job" wait_for 20 jobs_done_at_least "$DB" 1
sleep 0.2
JOB=$(sql "$DB" "select id from jobs where state = 'leased' and lease_owner = 't1' order by id limit 1")
kill -TERM "$T1"
check "SIGTERMed worker exits within 5 s" wait_exit "$T1" 5
check "it checkpointed the running job" grep -q "preempted at" "$T/t1.log"
check "the job was released" test "$(sql "$DB" "select count(*) from events where kind = 'release' and job = ${JOB:-0}")" -ge 1
check_eq "the released job is queued" "$(sql "$DB" "select state from jobs where id = ${JOB:-0}")" queued
check "a checkpoint is stored" test "$(sql "$DB" "select count(*) from checkpoints where job = ${JOB:-0} and step > 0")" -eq 1
start_worker t2
check "sweep completes after SIGTERM" wait_for 60 sweep_finished "$DB"
check "the job resumed from its checkpoint" \
    test "$(sql "$DB" "select count(*) from events where kind = 'resume' and job = ${JOB:-0} and worker = 't2'")" -ge 1
check "the new worker used the checkpoint" grep -q "job ${JOB:-0}: resumed from checkpoint step" "$T/t2.log"
check_eq "release is not a failed attempt" "$(sql "$DB" "select attempts from jobs where id = ${JOB:-0}")" 0
check "rows equal the uninterrupted run (2)" same_rows_as_reference "$DB" "$T/term.csv"
check "no row doubled (2)" no_duplicate_rows "$T/term.csv"
check_eq "checkpoints cleaned up" "$(sql "$DB" "select count(*) from checkpoints")" 0
[ "$FAIL" -gt 0 ] && dump_logs; FAIL0=$FAIL
finish
