#!/usr/bin/env bash
# bench_queue.sh — `make bench-queue`: throughput of the queue itself with the
# noop workload (ms_per_image 0), real processes on 127.0.0.1:
#   1. jobs/s dispatched + completed by 8 workers (1 image per job);
#   2. result rows/s ingested (1000 images per job);
#   3. the submit time of a 1M-job sweep and the latency of `drq status` on it.
# Sizes scale with BENCH_SCALE (default 1).  Prints one line per number.
cd "$(dirname "$0")/.." || exit 1
source tests/queue_lib.sh
SCALE=${BENCH_SCALE:-1}
NJOBS=$((100000 * SCALE))
NROWS=$((500000 * SCALE))
BIG=1000000

ms() { echo $(($(date +%s%N) / 1000000)); }

run_sweep() { # run_sweep NAME COUNT SHARD SWEEP_ID -> prints seconds from submit to finish
    local name=$1 count=$2 shard=$3 id=$4
    echo "{\"name\":\"$name\",\"dataset\":{\"kind\":\"none\",\"count\":$count},\"attacks\":[{\"name\":\"a\",\"kind\":\"noop\",\"ms_per_image\":0}],\"shard\":{\"images\":$shard}}" >"$T/$name.json"
    local t0=$(ms)
    "$DRQ" submit "$T/$name.json" >/dev/null 2>&1 || return 1
    wait_for 600 sweep_finished "$DB" "$id" || return 1
    local t1=$(ms)
    echo "scale=3; ($t1 - $t0) / 1000" | bc
}

DB=$T/bench.db
start_server "$DB" --quiet || { echo "bench-queue: server did not start"; exit 1; }
for i in 1 2 3 4 5 6 7 8; do start_worker "b$i" --quiet --prefetch 16 --checkpoint-every 0; done
sleep 0.5

echo "bench-queue: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(date -u +%F)"
S=$(run_sweep jobs "$NJOBS" 1 1) || { echo "bench-queue: jobs sweep did not finish"; dump_logs; exit 1; }
echo "jobs: $NJOBS jobs (1 image each) by 8 workers (--prefetch 16) in ${S} s, submit to last result, = $(echo "$NJOBS / $S" | bc) jobs/s dispatched+completed"
S=$(run_sweep rows "$NROWS" 1000 2) || { echo "bench-queue: rows sweep did not finish"; dump_logs; exit 1; }
echo "rows: $NROWS rows ($((NROWS / 1000)) jobs of 1000 images) in ${S} s = $(echo "$NROWS / $S" | bc) rows/s ingested"

# the 1M-job sweep: no workers, so it stays queued
for p in "${PIDS[@]}"; do [ "$p" != "$SERVER_PID" ] && kill -TERM "$p" 2>/dev/null; done
sleep 1
echo "{\"name\":\"big\",\"dataset\":{\"kind\":\"none\",\"count\":$BIG},\"attacks\":[{\"name\":\"a\",\"kind\":\"noop\"}],\"shard\":{\"images\":1}}" >"$T/big.json"
t0=$(ms)
"$DRQ" submit "$T/big.json" >/dev/null 2>&1
t1=$(ms)
expanded() { [ "$(sql "$DB" "select jobs_created = njobs from sweeps where id = 3")" == 1 ]; }
wait_for 600 expanded
t2=$(ms)
echo "submit: 1M-job sweep acknowledged in $((t1 - t0)) ms, all jobs queued in $((t2 - t0)) ms"
lat=()
for i in $(seq 20); do
    a=$(date +%s%N)
    "$DRQ" status 3 >/dev/null || echo "status failed"
    b=$(date +%s%N)
    lat+=($(((b - a) / 1000)))
done
sorted=($(printf '%s\n' "${lat[@]}" | sort -n))
echo "status: drq status on the 1M-job sweep: median $((sorted[10] / 1000)).$(((sorted[10] % 1000) / 100)) ms, max $((sorted[19] / 1000)) ms (20 runs, whole command)"
a=$(date +%s%N)
"$DRQ" status >/dev/null
b=$(date +%s%N)
echo "status: drq status of all 3 sweeps: $(((b - a) / 1000000)) ms"
