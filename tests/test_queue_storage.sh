#!/usr/bin/env bash
# test_queue_storage.sh — storage faults, injected SQLite's way (the VFS shim
# of server/faultvfs.c, enabled by $DRQ_FAULT_VFS), with real processes:
#   1. drq-server, disk full mid-sweep (every write fails while a flag file
#      exists): it logs the fault, keeps serving status, refuses submit and
#      cancel with a clear error, hands out no job; when space returns it
#      carries on and the rows equal an uninterrupted run, none lost/doubled;
#   2. the same with I/O errors (SQLITE_IOERR_WRITE);
#   3. one transient failed write (the Nth): recovered at the next tick;
#   4. kill -9 of the server while the disk is full, restart with space;
#   5. drq run, disk full mid-sweep: stops with exit 4 and a clear message,
#      committed rows kept; run again: completes, rows equal, none doubled.
cd "$(dirname "$0")/.." || exit 1
source tests/queue_lib.sh

# 20 jobs of 10 images at 40 ms: ~0.4 s per job
cat >"$T/spec.json" <<'EOF'
{"name": "store", "dataset": {"kind": "none", "count": 100},
 "attacks": [{"name": "a", "kind": "noop", "ms_per_image": 40}],
 "seeds": [0, 1], "shard": {"images": 10}}
EOF
cat >"$T/other.json" <<'EOF'
{"name": "other", "dataset": {"kind": "none", "count": 10},
 "attacks": [{"name": "a", "kind": "noop"}], "shard": {"images": 10}}
EOF
check "reference run (drq run)" make_reference "$T/spec.json"

jobs_dispatched() { grep -c " -> w[12] (attempt" "$T/server.log"; }
all_good() { # all_good DB WHAT: the sweep finished with every row once
    local db=$1 what=$2
    check "$what: rows equal the uninterrupted run" same_rows_as_reference "$db" "$db.csv"
    check "$what: no row doubled" no_duplicate_rows "$db.csv"
    check_eq "$what: rows counted once" "$(sql "$db" "select count(*) || ' ' || (select rows_done from sweeps where id = 1) from results")" "200 200"
    check_eq "$what: all jobs done" "$(sql "$db" "select n_done || ' ' || n_failed from sweeps where id = 1")" "20 0"
    check_eq "$what: database intact" "$(sql "$db" "pragma integrity_check")" ok
}

# ---- 1./2. disk full, then I/O errors, mid-sweep -------------------------------------------
for KIND in full ioerr; do
    rm -f "$T"/*.log
    DB=$T/$KIND.db
    FLAG=$T/$KIND.flag
    DRQ_FAULT_VFS="err=$KIND,op=write,while=$FLAG" start_server "$DB" --lease-s 10
    check "$KIND: server starts" kill -0 "$SERVER_PID"
    check "$KIND: submit" "$DRQ" submit "$T/spec.json" >/dev/null
    start_worker w1 --checkpoint-every 3
    start_worker w2 --checkpoint-every 3
    check "$KIND: 4 jobs done before the fault" wait_for 30 jobs_done_at_least "$DB" 4
    touch "$FLAG"
    check "$KIND: the fault is logged" wait_for 10 grep -q "storage fault: .* failed: .*refusing new work" "$T/server.log"
    if [ "$KIND" == full ]; then
        check "$KIND: the log says disk full" grep -q "database or disk is full" "$T/server.log"
    else
        check "$KIND: the log says I/O error" grep -q "disk I/O error" "$T/server.log"
    fi
    DONE_AT_FAULT=$(sql "$DB" "select n_done from sweeps where id = 1")
    N0=$(jobs_dispatched)
    "$DRQ" submit "$T/other.json" >/dev/null 2>"$T/err-submit.txt"
    check_eq "$KIND: submit refused (exit 1)" $? 1
    check "$KIND: ... saying why" grep -q "submit refused: the coordinator cannot write its database" "$T/err-submit.txt"
    "$DRQ" cancel 1 >/dev/null 2>"$T/err-cancel.txt"
    check_eq "$KIND: cancel refused (exit 1)" $? 1
    "$DRQ" status 1 >"$T/status.txt" 2>&1
    check_eq "$KIND: status still answers" $? 0
    check "$KIND: status shows the fault" grep -q "STORAGE FAULT" "$T/status.txt"
    sleep 3 # three ticks, three heartbeat periods: workers stay, nothing is dispatched
    check_eq "$KIND: no job handed out while the disk is full" "$(jobs_dispatched)" "$N0"
    check_eq "$KIND: nothing committed while the disk is full" "$(sql "$DB" "select n_done from sweeps where id = 1")" "$DONE_AT_FAULT"
    check "$KIND: no worker lost the server" bash -c "! grep -q 'server silent' '$T/w1.log' '$T/w2.log'"
    check "$KIND: the server is alive" kill -0 "$SERVER_PID"
    rm -f "$FLAG"
    check "$KIND: recovery is logged" wait_for 10 grep -q "can be written again" "$T/server.log"
    check "$KIND: sweep completes after the fault" wait_for 60 sweep_finished "$DB"
    check "$KIND: the refused submit created nothing" test "$(sql "$DB" "select count(*) from sweeps")" -eq 1
    check_eq "$KIND: no attempt counted against any job" "$(sql "$DB" "select sum(attempts) from jobs")" 0
    all_good "$DB" "$KIND"
    check "$KIND: submit works again" "$DRQ" submit "$T/other.json" >/dev/null
    kill -TERM "$SERVER_PID"
    check "$KIND: server stops cleanly" wait_exit "$SERVER_PID" 10
    kill -9 "${PIDS[@]}" 2>/dev/null
    wait 2>/dev/null
    [ "$FAIL" -gt 0 ] && { dump_logs; exit 1; }
done

# ---- 3. one transient failed write ---------------------------------------------------------
rm -f "$T"/*.log
DB=$T/once.db
# the database and the sweep first, without faults; then a server whose 30th
# write (a few transactions into the sweep) fails once
check "once: server starts" start_server "$DB"
check "once: submit" "$DRQ" submit "$T/spec.json" >/dev/null
kill -TERM "$SERVER_PID"
wait_exit "$SERVER_PID" 10
DRQ_FAULT_VFS="err=full,op=write,after=30,count=1" start_server "$DB"
check "once: server restarts with the fault armed" kill -0 "$SERVER_PID"
start_worker w1 --checkpoint-every 3
start_worker w2 --checkpoint-every 3
check "once: sweep completes" wait_for 60 sweep_finished "$DB"
check "once: the fault was injected" grep -q "faultvfs: injecting disk full" "$T/server.log"
check "once: and recovered from" grep -q "can be written again" "$T/server.log"
all_good "$DB" once
kill -9 "${PIDS[@]}" 2>/dev/null
wait 2>/dev/null

# ---- 4. kill -9 while the disk is full -------------------------------------------------------
rm -f "$T"/*.log
DB=$T/kill.db
FLAG=$T/kill.flag
DRQ_FAULT_VFS="err=full,while=$FLAG" start_server "$DB" --lease-s 10
check "kill: submit" "$DRQ" submit "$T/spec.json" >/dev/null
start_worker w1 --checkpoint-every 3
start_worker w2 --checkpoint-every 3
check "kill: 4 jobs done before the fault" wait_for 30 jobs_done_at_least "$DB" 4
touch "$FLAG"
check "kill: the fault is logged" wait_for 10 grep -q "storage fault" "$T/server.log"
kill -9 "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null
rm -f "$FLAG"
check "kill: server restarts with space" start_server "$DB" --lease-s 10
check "kill: sweep completes" wait_for 60 sweep_finished "$DB"
all_good "$DB" kill
kill -9 "${PIDS[@]}" 2>/dev/null
wait 2>/dev/null

# ---- 5. drq run ------------------------------------------------------------------------------
DB=$T/run.db
FLAG=$T/run.flag
(DRQ_FAULT_VFS="err=full,while=$FLAG" "$DRQ" run "$T/spec.json" --db "$DB" --threads 2 --quiet >"$T/run1.out" 2>"$T/run1.err"
 echo $? >"$T/run1.rc") &
RUN_SUBSHELL=$!
check "run: 4 jobs done before the fault" wait_for 60 jobs_done_at_least "$DB" 4
touch "$FLAG"
wait "$RUN_SUBSHELL"
check_eq "run: stops with exit 4" "$(cat "$T/run1.rc")" 4
check "run: says why" grep -q "cannot be written: .*database or disk is full" "$T/run1.err"
check "run: says how to resume" grep -q "run the same command again to resume" "$T/run1.err"
ROWS=$(sql "$DB" "select count(*) from results")
check "run: committed rows kept" test "${ROWS:-0}" -ge 40
check_eq "run: counters agree with the rows" "$(sql "$DB" "select rows_done from sweeps")" "$ROWS"
check_eq "run: database intact" "$(sql "$DB" "pragma integrity_check")" ok
rm -f "$FLAG"
"$DRQ" run "$T/spec.json" --db "$DB" --threads 2 --quiet >"$T/run2.out" 2>"$T/run2.err"
check_eq "run: the rerun completes (exit 0)" $? 0
all_good "$DB" run
[ "$FAIL" -gt 0 ] && { dump_logs; cat "$T"/run*.err; }
finish
