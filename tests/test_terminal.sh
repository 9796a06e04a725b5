#!/usr/bin/env bash
# test_terminal.sh — the terminal views (issue 14, part 3):
#   1. `drq run` into a file: no two identical consecutive progress lines, a
#      bounded number of them, and a non-zero rate and an ETA mid-sweep with
#      jobs of 2.5 s;
#   2. `drq run` on a pseudo-terminal (script(1)): the line is redrawn with \r,
#      and once a job has finished the rate never reads 0 again;
#   3. `drq status --json`: integer timestamps, "state": "finished" for a
#      finished sweep (failures' "t" too);
#   4. `drq status --watch` into a pipe prints a block only when it changes, and
#      clears and redraws on a terminal;
#   5. `drq status` mid-sweep: a non-zero rate with jobs of 2.5 s.
cd "$(dirname "$0")/.." || exit 1
source tests/queue_lib.sh

# 8 jobs of 5 images × 500 ms = 2.5 s each, two workers: ~10 s
cat >"$T/spec.json" <<'EOF'
{"name": "term", "dataset": {"kind": "none", "count": 40},
 "attacks": [{"name": "slow", "kind": "noop", "ms_per_image": 500}],
 "seeds": [1], "shard": {"images": 5}}
EOF
NJOBS=8
# progress lines → "fin rate" per line: fin jobs, rate (0 when "- jobs/s")
rates() { tr '\r' '\n' <"$1" | sed -n 's/.*%  \([0-9]*\)\/[0-9]* jobs .* \([-0-9.]*\) jobs\/\(s\|min\)  ETA \([^ ]*\) .*/\1 \2 \4/p' | sed 's/ - / 0 /'; }

# ---- 1. into a file -----------------------------------------------------------------------
DB=$T/term.db
"$DRQ" run "$T/spec.json" --db "$DB" --threads 2 --workers 2 >"$T/run.log" 2>&1
check_eq "drq run exits 0" $? 0
grep '^\[' "$T/run.log" >"$T/prog.txt"
N=$(wc -l <"$T/prog.txt")
check "some progress lines ($N)" test "$N" -ge 2
check "at most one line per job + 2 ($N)" test "$N" -le $((NJOBS + 2))
check_eq "no two identical consecutive lines" "$(uniq -d "$T/prog.txt" | wc -l)" 0
check "no carriage return into a file" bash -c "! grep -q $'\r' '$T/run.log'"
check "the last line is 100%" bash -c "tail -1 '$T/prog.txt' | grep -q ' 100.0%  8/8 jobs'"
rates "$T/run.log" >"$T/rates.txt"
check "a line mid-sweep" awk -v n=$NJOBS '$1 > 0 && $1 < n { found = 1 } END { exit !found }' "$T/rates.txt"
check "mid-sweep lines have a non-zero rate and an ETA" \
    awk -v n=$NJOBS '$1 > 0 && $1 < n && ($2 + 0 <= 0 || $3 == "-") { bad = 1 } END { exit bad }' "$T/rates.txt"
[ "$FAIL" -eq 0 ] || cat "$T/run.log"

# ---- 2. on a pseudo-terminal ----------------------------------------------------------------
script -qfc "'$DRQ' run '$T/spec.json' --db '$T/tty.db' --threads 2 --workers 2" /dev/null >"$T/tty.out" 2>&1
check_eq "drq run on a tty exits 0" $? 0
check "redrawn in place with \\r" test "$(grep -o $'\r\\[' "$T/tty.out" | wc -l)" -ge 3
check "the line is cleared to its end (ESC[K)" grep -q $'\033\\[K' "$T/tty.out"
check_eq "the progress line ends once (one line for all frames)" "$(grep -c '^\[\|'$'\r''\[' "$T/tty.out")" 1
rates "$T/tty.out" >"$T/tty-rates.txt"
check "frames mid-sweep" awk -v n=$NJOBS '$1 > 0 && $1 < n { found = 1 } END { exit !found }' "$T/tty-rates.txt"
check "once a job finished, the rate is never 0 again and the ETA is known" \
    awk -v n=$NJOBS '$1 > 0 && $1 < n && ($2 + 0 <= 0 || $3 == "-") { bad = 1 } END { exit bad }' "$T/tty-rates.txt"
check_eq "no frame drawn twice in a row" "$(tr '\r' '\n' <"$T/tty.out" | grep '^\[' | uniq -d | wc -l)" 0

# ---- 3. status --json of finished sweeps ----------------------------------------------------
# a second sweep in the same database whose first image fails for good
cat >"$T/poison.json" <<'EOF'
{"name": "poison", "dataset": {"kind": "none", "count": 4},
 "attacks": [{"name": "p", "kind": "noop", "ms_per_image": 1, "fail_images": [0]}],
 "seeds": [1], "shard": {"images": 2}}
EOF
"$DRQ" run "$T/poison.json" --db "$DB" --threads 1 --max-attempts 1 >"$T/poison.log" 2>&1
check_eq "the poison sweep finishes with failures (exit 3)" $? 3
check "drq-server serves the database" start_server "$DB"
"$DRQ" status --json >"$T/st.json" 2>&1
check_eq "status --json exits 0" $? 0
check "timestamps are integers, state finished" python3 - "$T/st.json" <<'EOF'
import json, re, sys
text = open(sys.argv[1]).read()
d = json.loads(text)
s = {x["name"]: x for x in d["sweeps"]}
assert not re.search(r'\d\.\d+e[+-]?\d', text), "a number in exponent form"
for x in d["sweeps"]:
    assert isinstance(x["created"], int) and x["created"] > 1.6e9, x["created"]
    assert x["state"] == "finished" and x["finished"] is True, (x["state"], x["finished"])
f = s["poison"]["failures"]
assert f and all(isinstance(e["t"], int) and e["t"] > 1.6e9 for e in f), f
assert s["term"]["eta_s"] is None
EOF
"$DRQ" status 1 >"$T/st.txt" 2>&1
check "status says finished" grep -q '^sweep 1 "term"  finished$' "$T/st.txt"

# ---- 4. status --watch ----------------------------------------------------------------------
# a sweep no worker takes yet: nothing changes, so one block into a pipe
cat >"$T/wait.json" <<'EOF'
{"name": "wait", "dataset": {"kind": "none", "count": 20},
 "attacks": [{"name": "w", "kind": "noop", "ms_per_image": 500}],
 "seeds": [1], "shard": {"images": 5}}
EOF
S=$("$DRQ" submit "$T/wait.json" 2>/dev/null)
check "submitted ($S)" test -n "$S"
S=${S:-3}
timeout 3 "$DRQ" status "$S" --watch | cat >"$T/watch.txt"
check_eq "--watch into a pipe: one block while nothing changes" "$(grep -c '^sweep ' "$T/watch.txt")" 1
timeout 3 "$DRQ" status "$S" --watch --json | cat >"$T/watch-json.txt"
check_eq "--watch --json into a pipe: one block" "$(grep -c '"sweeps"' "$T/watch-json.txt")" 1
script -qfc "timeout 3 '$DRQ' status $S --watch" /dev/null >"$T/watch-tty.txt" 2>&1
check "--watch on a tty: cleared and redrawn" test "$(grep -o $'\033\\[H\033\\[J' "$T/watch-tty.txt" | wc -l)" -ge 2

# ---- 5. status mid-sweep: the rate ----------------------------------------------------------
start_worker w1
check "2 jobs done" wait_for 60 jobs_done_at_least "$DB" 2 "$S"
"$DRQ" status "$S" --json >"$T/mid.json"
check "status mid-sweep: a non-zero rate and an ETA" python3 -c "
import json
s = json.load(open('$T/mid.json'))['sweeps'][0]
assert not s['finished'] and s['state'] == 'active', s['state']
assert s['jobs_per_s'] > 0 and s['eta_s'] is not None, (s['jobs_per_s'], s['eta_s'])
"
"$DRQ" status "$S" >"$T/mid.txt"
check "drq status shows the rate" grep -qE 'rate [0-9.]*[1-9][0-9.]* jobs/(s|min)' "$T/mid.txt"
timeout 4 "$DRQ" status "$S" --watch | cat >"$T/watch2.txt"
check_eq "--watch into a pipe while running: no identical consecutive blocks" \
    "$(awk -v RS= '{ gsub(/rate [^\n]*/, ""); print (NR > 1 && $0 == prev); prev = $0 }' "$T/watch2.txt" | grep -c 1)" 0

[ "$FAIL" -eq 0 ] || dump_logs
finish
