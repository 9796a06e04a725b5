#!/usr/bin/env bash
# test_queue_run.sh — `drq run`, the embedded one-machine mode:
#   interrupted with SIGINT and run again → resumes (checkpoints used) and the
#   rows equal an uninterrupted run; killed with -9 and run again → the same;
#   run again when finished → nothing redone; the same database served later by
#   drq-server answers status and results; a spec error exits 1 with its path.
cd "$(dirname "$0")/.." || exit 1
source tests/queue_lib.sh

cat >"$T/spec.json" <<'EOF'
{"name": "emb", "dataset": {"kind": "none", "count": 120},
 "attacks": [{"name": "a", "kind": "noop", "ms_per_image": 25}, {"name": "b", "kind": "noop", "ms_per_image": 5}],
 "seeds": [4], "shard": {"images": 10}}
EOF
check "reference run" make_reference "$T/spec.json"
check_eq "reference rows" "$(wc -l <"$T/ref.txt")" 240
check "report printed" grep -q "clean acc" "$T/ref-run.log"

# ---- SIGINT, then run again ---------------------------------------------------------------
DB=$T/emb.db
"$DRQ" run "$T/spec.json" --db "$DB" --threads 2 --checkpoint-every 2 >"$T/run1.log" 2>&1 &
RUN=$!
PIDS+=("$RUN")
check "3 jobs done before the SIGINT" wait_for 20 jobs_done_at_least "$DB" 3
kill -INT "$RUN"
wait "$RUN"
check_eq "interrupted run exits 130" $? 130
check "it says how to resume" grep -q "run the same command again to resume" "$T/run1.log"
check "not finished yet" bash -c "! sqlite3 '$DB' 'select 1 from sweeps where n_done = njobs' | grep -q 1"
check_eq "nothing left leased" "$(sql "$DB" "select n_leased from sweeps")" 0
check "released jobs kept checkpoints" test "$(sql "$DB" "select count(*) from checkpoints")" -ge 1
"$DRQ" run "$T/spec.json" --db "$DB" --threads 2 >"$T/run2.log" 2>&1
check_eq "second run exits 0" $? 0
check "second run resumed the sweep" grep -q "resuming sweep 1" "$T/run2.log"
check "a job resumed from its checkpoint" test "$(sql "$DB" "select count(*) from events where kind = 'resume'")" -ge 1
check "rows equal the uninterrupted run" same_rows_as_reference "$DB" "$T/emb.csv"
check "no row doubled" no_duplicate_rows "$T/emb.csv"

# ---- finished: run again does nothing ------------------------------------------------------
BEFORE=$(sql "$DB" "select count(*) from events")
"$DRQ" run "$T/spec.json" --db "$DB" --threads 2 >"$T/run3.log" 2>&1
check_eq "third run exits 0" $? 0
check "third run reports everything done" grep -q "24/24 jobs done" "$T/run3.log"
check_eq "no job re-run" "$(sql "$DB" "select count(*) from events where id > $BEFORE and kind in ('resume', 'requeue', 'release')")" 0

# ---- drq report on the finished database: the same table as drq run's ----------------------------
"$DRQ" report "$DB" >"$T/report.txt" 2>&1
check_eq "drq report exits 0" $? 0
check "drq report prints the table of drq run" bash -c "grep -F -f <(grep -E '^[a-z]' '$T/report.txt' | tail -n +2) '$T/run3.log' >/dev/null"
check_eq "drq report --json: one entry per table line" "$("$DRQ" report "$DB" --json | grep -c '"images": ')" \
    "$(grep -cE '^[a-z]' "$T/report.txt" | awk '{print $1 - 1}')"
"$DRQ" report "$T/nonexistent.db" >/dev/null 2>&1
check_eq "drq report on a missing file exits 1" $? 1

# ---- kill -9, then run again -----------------------------------------------------------------
DB2=$T/emb2.db
"$DRQ" run "$T/spec.json" --db "$DB2" --threads 2 --checkpoint-every 2 >"$T/run4.log" 2>&1 &
RUN=$!
PIDS+=("$RUN")
check "3 jobs done before the kill" wait_for 20 jobs_done_at_least "$DB2" 3
kill -9 "$RUN"
wait "$RUN" 2>/dev/null
"$DRQ" run "$T/spec.json" --db "$DB2" --threads 2 >"$T/run5.log" 2>&1
check_eq "run after kill -9 exits 0" $? 0
check "rows equal the uninterrupted run (after kill -9)" same_rows_as_reference "$DB2" "$T/emb2.csv"
check "no row doubled (after kill -9)" no_duplicate_rows "$T/emb2.csv"

# ---- served later by drq-server --------------------------------------------------------------
check "drq-server serves the drq run database" start_server "$DB"
"$DRQ" status 1 >"$T/st.txt" 2>&1
check_eq "status on the served db" $? 0
check "it is finished" grep -q "finished" "$T/st.txt"
"$DRQ" results 1 --out "$T/served.csv" 2>/dev/null
check_eq "results over the wire" "$(tail -n +2 "$T/served.csv" | wc -l)" 240
check "same rows over the wire" bash -c "cmp -s <(tail -n +2 '$T/served.csv' | cut -d, -f2-27,29- | LC_ALL=C sort) '$T/ref.txt'"
"$DRQ" results "$DB" --format jsonl --out "$T/r.jsonl" 2>/dev/null
check_eq "jsonl export" "$(wc -l <"$T/r.jsonl")" 240
check "jsonl rows are JSON objects" bash -c "head -1 '$T/r.jsonl' | grep -q '^{\"sweep\":1,'"

# ---- errors -------------------------------------------------------------------------------------
echo '{"name":"x","dataset":{"kind":"none","count":5},"attacks":[{"name":"a","kind":"noop","ms_per_image":-1}]}' >"$T/bad.json"
"$DRQ" run "$T/bad.json" --db "$T/bad.db" 2>"$T/bad.txt"
check_eq "spec error exits 1" $? 1
check "spec error names the path" grep -q "attacks\[0\].ms_per_image: expected a number in \[0," "$T/bad.txt"
check "no database for a bad spec" test ! -e "$T/bad.db"
"$DRQ" run "$T/bad.json" --db "$T/dev.db" --device gpu0 2>"$T/dev.txt"
check_eq "bad --device exits 1" $? 1
check "bad --device is named" grep -q "device 'gpu0': expected cpu or cuda:N" "$T/dev.txt"
check "no database for a bad --device" test ! -e "$T/dev.db"
"$DRQ" run 2>/dev/null
check_eq "usage exits 1" $? 1
[ "$FAIL" -gt 0 ] && dump_logs
finish
