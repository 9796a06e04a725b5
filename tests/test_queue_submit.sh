#!/usr/bin/env bash
# test_queue_submit.sh — submits never stall the coordinator and never double,
# with real processes on 127.0.0.1:
#   1. a 100000-seed spec (the documented maximum) is submitted while two
#      workers heartbeat: `drq status` issued all through the submit answers
#      within 2 heartbeat periods, the server's tick never runs late, no worker
#      finds the server silent, none is declared lost;
#   2. submitting the same spec again returns the same sweep ("already
#      submitted as sweep N; use --again") and creates nothing;
#   3. a client whose first sends time out (server stopped with SIGSTOP)
#      sends again with the same submission id: one sweep, even with --again;
#   4. --again runs a spec twice; --submission-id makes separate invocations
#      idempotent; a cancelled sweep does not block a new submit.
cd "$(dirname "$0")/.." || exit 1
source tests/queue_lib.sh

# 100000 seeds x 1 image: 100000 jobs; slow noop images so the workers only
# nibble at it (the point is the submit, not the run)
awk 'BEGIN { printf "{\"name\": \"big\", \"dataset\": {\"kind\": \"none\", \"count\": 1},\n";
             printf " \"attacks\": [{\"name\": \"a\", \"kind\": \"noop\", \"ms_per_image\": 2000}],\n \"seeds\": [";
             for (i = 0; i < 100000; i++) printf "%s%d", (i ? ", " : ""), i;
             printf "]}\n" }' >"$T/big.json"
check "the spec is large (> 500 KB)" test "$(stat -c %s "$T/big.json")" -gt 500000

DB=$T/submit.db
check "server starts" start_server "$DB"
start_worker w1 --checkpoint-every 0
start_worker w2 --checkpoint-every 0
check "workers registered" wait_for 20 bash -c "[ \$(grep -c 'worker w[12] joined' '$T/server.log') -ge 2 ]"

# ---- 1. the big submit, with status probes all through it ------------------------------
ms() { echo $(($(date +%s%N) / 1000000)); }
expanded() { [ "$(sql "$DB" "select jobs_created = njobs from sweeps where id = 1")" == 1 ]; }
(
    t0=$(ms)
    "$DRQ" submit "$T/big.json" >"$T/submit1.out" 2>"$T/submit1.err"
    echo "$? $(($(ms) - t0))" >"$T/submit1.rc"
) &
SUBMIT_SUBSHELL=$!
MAXLAT=0
NPROBE=0
PROBE_FAIL=0
DEADLINE=$(($(ms) + 180000))
# probe until the submit has returned and every job is inserted, then 2 s more
END=0
while [ "$(ms)" -lt "$DEADLINE" ]; do
    t0=$(ms)
    DRQ_TIMEOUT_MS=20000 "$DRQ" status >/dev/null 2>&1 || PROBE_FAIL=$((PROBE_FAIL + 1))
    lat=$(($(ms) - t0))
    NPROBE=$((NPROBE + 1))
    [ "$lat" -gt "$MAXLAT" ] && MAXLAT=$lat
    if [ "$END" -eq 0 ] && [ -s "$T/submit1.rc" ] && expanded; then END=$(($(ms) + 2000)); fi
    [ "$END" -gt 0 ] && [ "$(ms)" -gt "$END" ] && break
    sleep 0.1
done
wait "$SUBMIT_SUBSHELL"
echo "big submit: $(cat "$T/submit1.rc" 2>/dev/null) (rc, ms); $NPROBE status probes, slowest ${MAXLAT} ms"
check_eq "big submit exits 0" "$(cut -d' ' -f1 "$T/submit1.rc" 2>/dev/null)" 0
check_eq "it prints the sweep id" "$(cat "$T/submit1.out")" 1
check "every job inserted" expanded
check_eq "100000 jobs" "$(sql "$DB" "select count(*) from jobs where sweep = 1")" 100000
check "status probes ran during the submit" test "$NPROBE" -ge 5
check_eq "every status probe answered" "$PROBE_FAIL" 0
check "status answered within 2 heartbeat periods all through the submit (slowest ${MAXLAT} ms)" \
    test "$MAXLAT" -lt 2000
check "the server parsed the spec off the loop" grep -q "sweep 1 \"big\" submitted: 100000 jobs.*off the loop" "$T/server.log"
check "the server's tick never ran late" bash -c "! grep -q 'event loop stalled' '$T/server.log'"
check "no worker found the server silent" bash -c "! grep -q 'server silent' '$T/w1.log' '$T/w2.log'"
check "no worker was lost" bash -c "! grep -q 'lost' '$T/server.log'"
"$DRQ" workers --json >"$T/workers.json" 2>/dev/null
check_eq "both workers still registered" "$(grep -c '"name": "w[12]"' "$T/workers.json")" 2

# ---- 2. the same spec again: the same sweep --------------------------------------------
OUT=$("$DRQ" submit "$T/big.json" 2>"$T/submit2.err")
check_eq "resubmit exits 0 with the same sweep id" "$?:$OUT" "0:1"
check "resubmit says so" grep -q "already submitted as sweep 1; use --again to run it twice" "$T/submit2.err"
check_eq "no second sweep" "$(sql "$DB" "select count(*) from sweeps")" 1
check_eq "no job added" "$(sql "$DB" "select count(*) from jobs")" 100000
t0=$(ms)
"$DRQ" cancel 1 >/dev/null 2>&1
CANCEL_MS=$(($(ms) - t0))
echo "cancel of the 100000-job sweep: ${CANCEL_MS} ms"
# cancel is still one O(jobs) transaction on the loop (~0.4 s here, ~0.9 s
# under ASan): it must stay below the workers' 3-heartbeat liveness
check "cancelling it answers within the 3 s liveness (${CANCEL_MS} ms)" test "$CANCEL_MS" -lt 3000

# ---- 3. retries after a timeout carry the same submission id ---------------------------
cat >"$T/small.json" <<'EOF'
{"name": "small", "dataset": {"kind": "none", "count": 4},
 "attacks": [{"name": "a", "kind": "noop", "ms_per_image": 1}], "seeds": [0], "shard": {"images": 2}}
EOF
OUT=$("$DRQ" submit "$T/small.json" 2>/dev/null)
check_eq "small submitted" "$OUT" 2
# attempts at 0, 1 and 2 s, the server stopped until 2.2 s (less than the
# workers' 3 s liveness): the server receives the same submission three times
kill -STOP "$SERVER_PID"
(DRQ_TIMEOUT_MS=1000 "$DRQ" submit "$T/small.json" --again >"$T/submit3.out" 2>"$T/submit3.err"; echo $? >"$T/submit3.rc") &
RETRY_SUBSHELL=$!
sleep 2.2
kill -CONT "$SERVER_PID"
wait "$RETRY_SUBSHELL"
check_eq "the retried submit exits 0" "$(cat "$T/submit3.rc")" 0
check "the client sent again after a timeout" grep -q "sending again (attempt [23] of 3)" "$T/submit3.err"
check_eq "it got the new sweep" "$(cat "$T/submit3.out")" 3
check "the server saw the retry" wait_for 10 grep -q "a retry of sweep 3, nothing created" "$T/server.log"
check_eq "one sweep for the retried submission (--again)" "$(sql "$DB" "select count(*) from sweeps where name = 'small'")" 2

# ---- 4. --again, --submission-id, cancelled sweeps -------------------------------------
OUT=$("$DRQ" submit "$T/small.json" --again 2>/dev/null)
check_eq "--again runs it once more" "$OUT" 4
OUT=$("$DRQ" submit "$T/small.json" --again --submission-id retry-42 2>/dev/null)
OUT2=$("$DRQ" submit "$T/small.json" --again --submission-id retry-42 2>/dev/null)
check_eq "the same --submission-id twice: one sweep" "$OUT $OUT2" "5 5"
"$DRQ" submit "$T/small.json" --submission-id 'bad id!' 2>"$T/err5.txt"
check_eq "a malformed submission id is refused" $? 1
check "and named" grep -q "submission id" "$T/err5.txt"
for s in 2 3 4 5; do "$DRQ" cancel $s >/dev/null 2>&1; done
OUT=$("$DRQ" submit "$T/small.json" 2>/dev/null)
check_eq "a cancelled sweep does not block a new submit" "$OUT" 6
check_eq "sweeps in all" "$(sql "$DB" "select count(*) from sweeps")" 6
check "spec hashes recorded" test "$(sql "$DB" "select count(distinct spec_hash) from sweeps")" -eq 2

kill -TERM "$SERVER_PID"
check "server stops cleanly" wait_exit "$SERVER_PID" 10
[ "$FAIL" -gt 0 ] && { dump_logs; cat "$T"/submit*.err; }
finish
