#!/usr/bin/env bash
# run.sh — runs each test program or script given, sums the "RESULT p f"
# lines they print, and ends with "N passed, N failed".  A test that exits
# non-zero without reporting a failure counts as one failure (a crash).
# An argument ISA:PATH runs PATH with ONEDNN_MAX_CPU_ISA=ISA (e.g. AVX2:…),
# which lowers oneDNN's kernels and drq's own loops alike (kernels/cpu/isa.c).
set -u
passed=0
failed=0
for arg in "$@"; do
    t=$arg isa=
    if [[ "$arg" =~ ^([A-Z0-9_]+):(.*)$ ]]; then isa=${BASH_REMATCH[1]} t=${BASH_REMATCH[2]}; fi
    name=$(basename "$t")${isa:+ [$isa]}
    start=$(date +%s.%N)
    out=$(mktemp)
    run=()
    [ -n "$isa" ] && run=(env ONEDNN_MAX_CPU_ISA="$isa")
    if [[ "$t" == *.sh ]]; then "${run[@]}" bash "$t" >"$out" 2>&1; rc=$?; else "${run[@]}" "$t" >"$out" 2>&1; rc=$?; fi
    p=0; f=0
    while read -r _ a b; do p=$((p + a)); f=$((f + b)); done < <(grep -E '^RESULT [0-9]+ [0-9]+$' "$out")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then f=1; echo "  ($name ran no check)"; fi
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    if [ "$f" -ne 0 ]; then
        printf 'FAIL %-28s %4d passed, %d failed (%.1fs)\n' "$name" "$p" "$f" "$secs"
        grep -v -E '^RESULT ' "$out" | tail -n 60 | sed 's/^/    /'
    else
        printf 'ok   %-28s %4d passed (%.1fs)\n' "$name" "$p" "$secs"
    fi
    rm -f "$out"
    passed=$((passed + p)); failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
