# queue_lib.sh — helpers sourced by tests/test_queue_*.sh (not a test itself).
#
# Each test gets its own temp dir ($T, removed on exit) and its own ports
# (random in 20000-59999, re-picked when a bind fails).  Every process started
# through start_server / start_worker is recorded and killed on exit, even when
# the test fails.  check / check_eq count results, skip counts a check that
# cannot run here (with its reason); finish prints
# "RESULT <passed> <failed> <skipped>" for tests/run.sh.
set -u
B=${BUILD:-build}
DRQ=$B/drq
SERVER=$B/drq-server
WORKER=$B/drq-worker
T=$(mktemp -d /tmp/drq-queue-test.XXXXXX)
PIDS=()
PASS=0
FAIL=0
SKIPPED=0

cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT

check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then
        PASS=$((PASS + 1))
    else
        FAIL=$((FAIL + 1))
        echo "FAIL: $what"
    fi
}
check_eq() { # check_eq DESCRIPTION GOT WANT
    if [ "$2" == "$3" ]; then
        PASS=$((PASS + 1))
    else
        FAIL=$((FAIL + 1))
        echo "FAIL: $1: got '$2', want '$3'"
    fi
}
skip() { # skip REASON: a check that cannot run here, counted and said
    SKIPPED=$((SKIPPED + 1))
    echo "SKIP: $1"
}
finish() {
    # sanitizer builds (SAN=1): any report in a process log is a failure
    if grep -l -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$T"/*.log 2>/dev/null; then
        grep -h -A30 -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$T"/*.log | head -80
        FAIL=$((FAIL + 1))
    else
        PASS=$((PASS + 1))
    fi
    echo "RESULT $PASS $FAIL $SKIPPED"
    [ "$FAIL" -eq 0 ]
}

pick_ports() {
    local base=$((20000 + (RANDOM * 32768 + RANDOM + $$) % 39000))
    WPORT=$base
    CPORT=$((base + 1))
    export DRQ_SERVER=tcp://127.0.0.1:$CPORT
}

# start_server DB [extra args]: starts drq-server on $WPORT/$CPORT (re-picking
# ports when the bind fails), logs to $T/server.log; sets SERVER_PID.
start_server() {
    local db=$1
    shift
    for _ in 1 2 3 4 5; do
        "$SERVER" --db "$db" --workers tcp://127.0.0.1:$WPORT --clients tcp://127.0.0.1:$CPORT "$@" >>"$T/server.log" 2>&1 &
        SERVER_PID=$!
        PIDS+=("$SERVER_PID")
        for _ in $(seq 50); do
            grep -q "drq-server .* on tcp://127.0.0.1:$WPORT" "$T/server.log" 2>/dev/null && return 0
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if grep -q "cannot bind" "$T/server.log"; then
            wait "$SERVER_PID" 2>/dev/null
            : >"$T/server.log"
            pick_ports
            continue
        fi
        return 1
    done
    return 1
}

# start_worker NAME [extra args]: logs to $T/NAME.log; sets WORKER_PID.
start_worker() {
    local name=$1
    shift
    "$WORKER" --server tcp://127.0.0.1:$WPORT --name "$name" "$@" >>"$T/$name.log" 2>&1 &
    WORKER_PID=$!
    PIDS+=("$WORKER_PID")
}

# wait_for SECONDS COMMAND...: polls every 0.1 s; 0 when COMMAND succeeded.
wait_for() {
    local until=$(($(date +%s%N) + $1 * 1000000000))
    shift
    while [ "$(date +%s%N)" -lt "$until" ]; do
        "$@" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# wait_exit PID SECONDS: 0 when the process exited within the time.
wait_exit() {
    local pid=$1 until=$(($(date +%s%N) + $2 * 1000000000))
    while [ "$(date +%s%N)" -lt "$until" ]; do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
        sleep 0.05
    done
    return 1
}

sql() { sqlite3 -cmd ".timeout 5000" "$1" "$2"; }

# sweep_finished DB [SWEEP]: all jobs of the sweep are done/failed/cancelled.
sweep_finished() {
    local s=${2:-1}
    [ "$(sql "$1" "select jobs_created = njobs and n_queued = 0 and n_leased = 0 from sweeps where id = $s")" == 1 ]
}

# jobs_done_at_least DB N [SWEEP]
jobs_done_at_least() {
    [ "$(sql "$1" "select n_done from sweeps where id = ${3:-1}")" -ge "$2" ]
}

# events_at_least DB KIND N
events_at_least() {
    [ "$(sql "$1" "select count(*) from events where kind = '$2'")" -ge "$3" ]
}

# has_leased DB SWEEP: some job of the sweep is leased
has_leased() {
    [ -n "$(sql "$1" "select 1 from jobs where sweep = $2 and state = 'leased' limit 1")" ]
}

# normalized CSV: without header and without the sweep and worker columns, sorted
norm_csv() { tail -n +2 "$1" | cut -d, -f2-27,29- | LC_ALL=C sort; }

# reference SPEC: the rows of an uninterrupted run of SPEC, normalized, in $T/ref.txt
make_reference() {
    local spec=$1
    "$DRQ" run "$spec" --db "$T/ref.db" --threads 4 --quiet >"$T/ref-run.log" 2>&1 || return 1
    "$DRQ" results "$T/ref.db" --out "$T/ref.csv" 2>/dev/null || return 1
    norm_csv "$T/ref.csv" >"$T/ref.txt"
}

# same_rows_as_reference DB CSV: exports DB's rows to CSV (removed first, so a
# failed export never leaves an earlier file behind) and compares them with the
# reference row for row.  Pass the same CSV to no_duplicate_rows afterwards.
same_rows_as_reference() {
    local db=$1 csv=$2
    rm -f "$csv" "$csv.txt"
    "$DRQ" results "$db" --out "$csv" 2>/dev/null || { echo "same_rows_as_reference: drq results $db failed"; return 1; }
    norm_csv "$csv" >"$csv.txt"
    cmp -s "$csv.txt" "$T/ref.txt" || { diff "$csv.txt" "$T/ref.txt" | head -5; return 1; }
}

# no_duplicate_rows CSV: the exported CSV has a header and at least one row,
# and no two rows share their key columns (sweep, purifier, attack, seed,
# image).  A missing or empty file fails (an export that did not happen proves
# nothing), so pass the file the caller has just exported, never a left-over.
no_duplicate_rows() {
    local csv=$1
    [ -s "$csv" ] || { echo "no_duplicate_rows: $csv is missing or empty"; return 1; }
    [ "$(wc -l <"$csv")" -ge 2 ] || { echo "no_duplicate_rows: $csv has no row"; return 1; }
    local dup
    dup=$(tail -n +2 "$csv" | cut -d, -f1-5 | LC_ALL=C sort | uniq -d | head -1)
    [ -z "$dup" ] || { echo "no_duplicate_rows: $csv: row key $dup appears more than once"; return 1; }
}

# dump logs on failure to help diagnosis
dump_logs() {
    for f in "$T"/*.log; do
        echo "== $f"
        tail -n 25 "$f"
    done
}

pick_ports
