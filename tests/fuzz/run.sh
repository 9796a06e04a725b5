#!/usr/bin/env bash
# run.sh — runs each fuzz harness for a fixed time and prints one line per target.
#
#   tests/fuzz/run.sh BUILD_DIR SECONDS TARGET...
#
# Runs BUILD_DIR/fuzz_<target> on BUILD_DIR/corpus/<target> (which it grows)
# for SECONDS with tests/fuzz/<target>.dict when present (inputs up to 4 KiB
# for model_config, 8 KiB for spec and proto, 32 KiB for safetensors, jpeg and
# dataset, 64 KiB for devkit (a compressed 1000-class meta.mat); libFuzzer's -timeout=30 s per input, -rss_limit_mb=2048), and prints
#   fuzz <target>: <execs> execs, cov <n>, crashes <n> (ft <n>, corpus <n>, <s> s, seeds cov <n>)
# then "N passed, N failed".  A target fails when its harness is missing (did
# not build), libFuzzer exits non-zero, or it left a crash/leak/timeout/oom
# input in BUILD_DIR/artifacts/<target>/ (reproduce: BUILD_DIR/fuzz_<target>
# FILE; inputs up to 64 KiB are also printed as base64, so a CI log can replay
# them).  A slow unit (an input that took over 10 s: a time bomb) counts as a
# crash and is named so.  devkit runs with ASan's max_allocation_size_mb=256 and
# allocator_may_return_null=1: matio callocs what a corrupt length in a
# compressed meta.mat asks for (hundreds of MB, hundreds of times per input;
# untouched, so cheap without ASan, whose calloc zeroes it), so there such a
# request fails and matio's own out-of-memory path is what gets fuzzed.  Exit status 1 when any target failed.  Full logs: BUILD_DIR/logs/.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=$1
T=$2
shift 2
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
pass=0
fail=0
mkdir -p "$B/logs"
for t in "$@"; do
    bin=$B/fuzz_$t corpus=$B/corpus/$t art=$B/artifacts/$t log=$B/logs/$t.log
    if [ ! -x "$bin" ]; then
        echo "fuzz $t: build failed (no $bin), crashes ?"
        fail=$((fail + 1))
        continue
    fi
    mkdir -p "$corpus"
    rm -rf "$art"
    mkdir -p "$art"
    dict=()
    [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
    # largest input: enough for every seed of the target (the CIFAR-10 train
    # seeds are 30 KiB) but no more, as the default (the largest corpus file)
    # lets one big seed slow down every mutation
    case $t in
    safetensors | dataset | jpeg) maxlen=32768 ;;
    model_config) maxlen=4096 ;;
    devkit) maxlen=65536 ;;
    *) maxlen=8192 ;;
    esac
    asan=$ASAN_OPTIONS
    [ "$t" = devkit ] && asan="$asan:max_allocation_size_mb=256:allocator_may_return_null=1"
    start=$(date +%s)
    ASAN_OPTIONS=$asan timeout -k 10 $((T + 300)) "$bin" "$corpus" -max_total_time="$T" -print_final_stats=1 -timeout=30 -max_len=$maxlen \
        -rss_limit_mb=2048 -artifact_prefix="$art/" "${dict[@]}" >"$log" 2>&1
    rc=$?
    secs=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+.* cov: ' "$log" | tail -1)
    init=$(grep -E '^#[0-9]+.*INITED.* cov: ' "$log" | tail -1)
    [ -z "$execs" ] && execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$last")
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    icov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$init")
    ncorp=$(find "$corpus" -type f | wc -l)
    crashes=$(find "$art" -type f | wc -l)
    slow=$(find "$art" -type f -name 'slow-unit-*' | wc -l)
    echo "fuzz $t: ${execs:-?} execs, cov ${cov:-?}, crashes $crashes (ft ${ft:-?}, corpus $ncorp, $secs s, seeds cov ${icov:-?}$([ "$slow" -gt 0 ] && echo ", of the crashes $slow slow units: inputs over libFuzzer's 10 s"))"
    if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        fail=$((fail + 1))
        echo "---- fuzz $t: libFuzzer exit status $rc; end of $log:"
        tail -n 60 "$log"
        for f in "$art"/*; do
            [ -f "$f" ] || continue
            echo "---- reproduce: ASAN_OPTIONS=$asan $bin $f"
            # the input itself, so that a CI log (whose clone is gone) can still replay it:
            # base64 -d > FILE
            [ "$(stat -c %s "$f")" -le 65536 ] && echo "---- $(basename "$f") as base64: $(base64 -w0 "$f")"
        done
    else
        pass=$((pass + 1))
    fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
