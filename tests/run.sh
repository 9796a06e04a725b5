#!/usr/bin/env bash
# run.sh — runs each test program or script given, sums the
# "RESULT <passed> <failed> [<skipped>]" lines they print (C tests print three
# numbers, tests/check.h; a two-number line counts no skip), and ends with
# "N passed, N failed, N skipped".  A test that exits non-zero without
# reporting a failure counts as one failure (a crash); a test that reports
# nothing at all (no pass, failure or skip) counts as one failure too.
# An argument ISA:PATH runs PATH with ONEDNN_MAX_CPU_ISA=ISA (e.g. AVX2:…),
# which lowers oneDNN's kernels and drq's own loops alike (kernels/cpu/isa.c).
# Each test runs under a time limit, DRQ_TEST_TIMEOUT seconds (default 900);
# a test past it is killed (its whole process group, SIGTERM then SIGKILL
# 10 s later) and counts as a failure that names the test and the limit.
set -u
limit=${DRQ_TEST_TIMEOUT:-900}
if ! [[ "$limit" =~ ^[0-9]+$ ]] || [ "$limit" -eq 0 ]; then
    echo "run.sh: DRQ_TEST_TIMEOUT must be a positive number of seconds, not '$limit'" >&2
    exit 2
fi
passed=0
failed=0
skipped=0
for arg in "$@"; do
    t=$arg isa=
    if [[ "$arg" =~ ^([A-Z0-9_]+):(.*)$ ]]; then isa=${BASH_REMATCH[1]} t=${BASH_REMATCH[2]}; fi
    name=$(basename "$t")${isa:+ [$isa]}
    start=$(date +%s.%N)
    out=$(mktemp)
    run=(timeout -k 10 "$limit")
    [ -n "$isa" ] && run+=(env ONEDNN_MAX_CPU_ISA="$isa")
    if [[ "$t" == *.sh ]]; then run+=(bash "$t"); else run+=("$t"); fi
    "${run[@]}" >"$out" 2>&1
    rc=$?
    p=0 f=0 s=0
    while read -r _ a b c; do p=$((p + a)) f=$((f + b)) s=$((s + ${c:-0})); done \
        < <(grep -E '^RESULT [0-9]+ [0-9]+( [0-9]+)?$' "$out")
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    # 124: timeout sent SIGTERM; 137: it had to send SIGKILL 10 s later
    if [ "$rc" -eq 124 ] || { [ "$rc" -eq 137 ] && [ "$(echo "$secs >= $limit" | bc)" -eq 1 ]; }; then
        f=$((f + 1))
        echo "TIMEOUT: $name did not finish within ${limit}s (DRQ_TEST_TIMEOUT); killed" >>"$out"
    elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
    fi
    if [ "$p" -eq 0 ] && [ "$f" -eq 0 ] && [ "$s" -eq 0 ]; then f=1; echo "  ($name ran no check)"; fi
    skips=
    [ "$s" -ne 0 ] && skips=", $s skipped"
    if [ "$f" -ne 0 ]; then
        printf 'FAIL %-28s %4d passed, %d failed%s (%.1fs)\n' "$name" "$p" "$f" "$skips" "$secs"
        # the failed checks themselves first (a test's own logs can be long), then its last lines
        grep -E '^ *FAIL' "$out" | head -n 40 | sed 's/^/    /'
        echo "    -- last lines:"
        grep -v -E '^RESULT ' "$out" | tail -n 60 | sed 's/^/    /'
    else
        printf 'ok   %-28s %4d passed%s (%.1fs)\n' "$name" "$p" "$skips" "$secs"
    fi
    # every skip is said, with its reason, also when the test passed
    [ "$s" -ne 0 ] && grep -E '^SKIP ' "$out" | sed 's/^/    /'
    rm -f "$out"
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
