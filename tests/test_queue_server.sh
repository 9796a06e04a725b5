#!/usr/bin/env bash
# test_queue_server.sh — coordinator faults with real processes on 127.0.0.1:
#   1. kill -9 the server mid-sweep, restart it on the same db: the sweep
#      completes and its rows equal an uninterrupted run, none missing/doubled;
#   2. SIGTERM shuts the server down cleanly;
#   3. a poison job fails for good after max attempts with its error while the
#      rest of the sweep completes; drq retry requeues it;
#   4. garbage on both sockets is logged and dropped, the server keeps serving;
#   5. client errors: spec errors name the JSON path (exit 1), unreachable
#      server (exit 2), unknown sweep (exit 1), cancel.
# Sweep ids are read from drq submit's output, never assumed from the order of
# the sections; every wait is checked.
cd "$(dirname "$0")/.." || exit 1
source tests/queue_lib.sh

is_id() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }
new_id() { # new_id ID OTHER...: ID is a sweep id none of the others
    local id=$1
    shift
    is_id "$id" || return 1
    for o in "$@"; do [ "$id" != "$o" ] || return 1; done
}

cat >"$T/spec.json" <<'EOF'
{"name": "srv", "dataset": {"kind": "none", "count": 100},
 "attacks": [{"name": "a", "kind": "noop", "ms_per_image": 40}],
 "seeds": [0, 1], "shard": {"images": 10}}
EOF
check "reference run (drq run)" make_reference "$T/spec.json"

# ---- 1. kill -9 the server mid-sweep --------------------------------------------------
DB=$T/srv.db
check "server starts" start_server "$DB" --lease-s 20
S1=$("$DRQ" submit "$T/spec.json")
check_eq "submit exits 0" $? 0
check "submit prints a sweep id" is_id "$S1"
start_worker w1 --checkpoint-every 3
start_worker w2 --checkpoint-every 3
check "4 jobs done before the kill" wait_for 20 jobs_done_at_least "$DB" 4 "$S1"
kill -9 "$SERVER_PID"
DONE_AT_KILL=$(sql "$DB" "select n_done from sweeps where id = ${S1:-0}")
# at least the 4 waited for were committed, and not all 20 yet; a failed query fails both
check "killed mid-sweep (4 <= done at kill '$DONE_AT_KILL' < 20)" \
    bash -c "[[ '$DONE_AT_KILL' =~ ^[0-9]+\$ ]] && [ '$DONE_AT_KILL' -ge 4 ] && [ '$DONE_AT_KILL' -lt 20 ]"
sleep 1
check "server restarts on the same db" start_server "$DB" --lease-s 20
check "sweep completes after kill -9 of the server" wait_for 60 sweep_finished "$DB" "$S1"
check "workers re-registered" test "$(grep -c "worker w[12] joined" "$T/server.log")" -ge 4
check "rows equal the uninterrupted run" same_rows_as_reference "$DB" "$T/srv.csv"
check "no row doubled" no_duplicate_rows "$T/srv.csv"
check_eq "rows counted once" "$(sql "$DB" "select count(*) || ' ' || (select rows_done from sweeps where id = ${S1:-0}) from results")" "200 200"
check_eq "all jobs done" "$(sql "$DB" "select n_done || ' ' || n_failed from sweeps where id = ${S1:-0}")" "20 0"

# ---- 2. clean shutdown ------------------------------------------------------------------
kill -TERM "$SERVER_PID"
check "SIGTERM stops the server within 3 s" wait_exit "$SERVER_PID" 3
check "it logged the shutdown" grep -q "shutting down" "$T/server.log"
check "the db is consistent after shutdown" test "$(sql "$DB" "pragma integrity_check")" == ok
[ "$FAIL" -gt 0 ] && dump_logs

# ---- 3. a poison job ----------------------------------------------------------------------
DB=$T/poison.db
cat >"$T/poison.json" <<'EOF'
{"name": "poison", "dataset": {"kind": "none", "count": 40},
 "attacks": [{"name": "a", "kind": "noop", "ms_per_image": 5, "fail_images": [15]}],
 "seeds": [0], "shard": {"images": 10}}
EOF
check "server starts (poison)" start_server "$DB" --backoff-s 0.2 --max-attempts 3
P=$("$DRQ" submit "$T/poison.json")
check "submit poison prints a sweep id" is_id "$P"
P=${P:-0}
check "poison sweep finishes" wait_for 30 sweep_finished "$DB" "$P"
check_eq "one job failed, the rest done" "$(sql "$DB" "select n_done || ' ' || n_failed from sweeps where id = $P")" "3 1"
check_eq "the poison job used max attempts" "$(sql "$DB" "select attempts from jobs where state = 'failed'")" 3
ERR=$(sql "$DB" "select last_error from jobs where state = 'failed'")
check "its last error says why" bash -c "[[ '$ERR' == *'image 15 is listed in fail_images'*'after 3 attempts'* ]]"
"$DRQ" status "$P" >"$T/status.txt" 2>&1
check_eq "drq status exit code" $? 0
check "status shows the failure" grep -q "failed 1" "$T/status.txt"
check "status shows the error" grep -q "fail_images" "$T/status.txt"
"$DRQ" status --json >"$T/status.json"
check "status --json parses" sqlite3 :memory: "select json('$(tr -d '\n' <"$T/status.json" | sed "s/'/''/g")') is not null"
check "retry requeues it" bash -c "'$DRQ' retry $P | grep -q '1 jobs requeued'"
check "it fails again" wait_for 20 events_at_least "$DB" fail 2
check "poison sweep finishes again" wait_for 20 sweep_finished "$DB" "$P"
check_eq "still one failed after retry" "$(sql "$DB" "select n_done || ' ' || n_failed from sweeps where id = $P")" "3 1"
"$DRQ" results "$P" --out "$T/poison.csv" 2>/dev/null
check_eq "drq results exits 0" $? 0
check_eq "rows of the good jobs exported" "$(tail -n +2 "$T/poison.csv" | wc -l)" 30

# ---- 4. garbage on both sockets -----------------------------------------------------------
check "garbage to the workers socket" "$B/tests/tool_garbage" tcp://127.0.0.1:$WPORT workers
check "garbage to the clients socket" "$B/tests/tool_garbage" tcp://127.0.0.1:$CPORT clients
sleep 0.5
check "server survives garbage" kill -0 "$SERVER_PID"
check "worker garbage logged and dropped" test "$(grep -c "workers: dropped malformed" "$T/server.log")" -ge 20
check "client garbage logged and dropped" test "$(grep -c "clients: dropped malformed" "$T/server.log")" -ge 20
check "wrong protocol version named" grep -q "protocol version 99 not supported" "$T/server.log"
check "bad rows named" grep -q "malformed result rows" "$T/server.log"
check "oversized frame / non-ZMTP bytes: connection drops logged" grep -q "workers: a handshake failed" "$T/server.log"
check "status still answers" "$DRQ" status "$P" >/dev/null
S2=$("$DRQ" submit "$T/spec.json")
check "submit after garbage prints a new sweep id" new_id "$S2" "$P"
check "a sweep still completes after garbage" wait_for 30 sweep_finished "$DB" "${S2:-0}"

# ---- 5. client errors and cancel -----------------------------------------------------------
echo '{"name":"e","dataset":{"kind":"none","count":10},"attacks":[{"name":"a","kind":"pgd","eps":2}]}' >"$T/bad1.json"
echo '{"name":"e","dataset":{"kind":"none","count":10},"attacks":[{"name":"a","kind":"noop","epss":0.1}]}' >"$T/bad2.json"
"$DRQ" submit "$T/bad1.json" 2>"$T/err1.txt"
check_eq "spec error exits 1" $? 1
check "spec error names the JSON path" grep -q "attacks\[0\].eps: expected a number in (0,1\]" "$T/err1.txt"
"$DRQ" submit "$T/bad2.json" 2>"$T/err2.txt"
check "unknown key named" grep -q "attacks\[0\].epss: unknown key" "$T/err2.txt"
DRQ_TIMEOUT_MS=300 "$DRQ" status --server tcp://127.0.0.1:$((CPORT + 2)) 2>"$T/err3.txt"
check_eq "unreachable server exits 2" $? 2
check "unreachable is said" grep -q "unreachable" "$T/err3.txt"
"$DRQ" status 999 2>"$T/err4.txt"
check_eq "unknown sweep exits 1" $? 1
check "unknown sweep is said" grep -q "no sweep 999" "$T/err4.txt"
"$DRQ" frobnicate 2>/dev/null
check_eq "unknown command exits 1" $? 1
sed 's/"ms_per_image": 40/"ms_per_image": 200/' "$T/spec.json" >"$T/slow.json"
SW=$("$DRQ" submit "$T/slow.json" 2>/dev/null)
check "submit prints a new sweep id" new_id "$SW" "$P" "${S2:-0}"
SW=${SW:-0}

check "a job of the slow sweep is leased" wait_for 10 has_leased "$DB" "$SW"
check "cancel" bash -c "'$DRQ' cancel $SW | grep -q 'jobs cancelled'"
check_eq "nothing left queued or running" "$(sql "$DB" "select n_queued + n_leased from sweeps where id = $SW")" 0
check "workers were told to cancel" wait_for 5 grep -q "cancelled" "$T/w1.log" "$T/w2.log"
check "drq workers lists both" bash -c "'$DRQ' workers | grep -c '^w[12] ' | grep -q 2"
check "drq workers --json" bash -c "'$DRQ' workers --json | grep -q '\"name\": \"w1\"'"
[ "$FAIL" -gt 0 ] && dump_logs
finish
