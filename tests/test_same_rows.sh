#!/usr/bin/env bash
# test_same_rows.sh — the promise of docs/seeds.md "What is reproducible", end
# to end, on the demo's real models (examples/models) and Fashion-MNIST:
#   `drq run` rows are byte-identical (every column but seconds and worker)
#   between --threads 1 and --threads 2, --batch 8 and --batch 1 and 3,
#   --workers 1 and --workers 2, and shards of 8 and of 3 images;
#   `drq purify` gives the same bytes at --threads 1 and 2, and for an image
#   alone and inside a batch;
#   rows record the instruction set they were computed with (device cpu:ISA),
#   and ONEDNN_MAX_CPU_ISA=AVX2 says cpu:avx2.
# A reduced demo sweep (8 images, t* = 4, 2 PGD steps) keeps it to seconds.
cd "$(dirname "$0")/.." || exit 1
source tests/queue_lib.sh

DATA=/usr/share/datasets/fashion-mnist
spec() { # spec SHARD_IMAGES > file
    cat <<EOF
{"name": "same-rows",
 "dataset": {"kind": "fashion-mnist", "path": "$DATA", "start": 0, "count": 8},
 "classifier": {"arch": "wrn", "config": "examples/models/fmnist-wrn.json", "weights": "examples/models/fmnist-wrn.safetensors"},
 "diffusion": {"arch": "ddpm-unet", "config": "examples/models/fmnist-ddpm.json", "weights": "examples/models/fmnist-ddpm.safetensors"},
 "purifiers": [{"name": "ddpm", "kind": "ddpm", "t_star": 4}, {"name": "ddim", "kind": "ddim", "t_star": 4, "stride": 2}],
 "attacks": [{"name": "pgd-fixed", "kind": "pgd", "eps": 0.03, "steps": 2, "abs_stepsize": 0.0125, "randomness": "fixed", "n_uniform": 2},
             {"name": "pgd-eot", "kind": "pgd", "eps": 0.03, "steps": 1, "abs_stepsize": 0.0125, "randomness": "eot", "eot_k": 2, "n_uniform": 1},
             {"name": "bpda-fixed", "kind": "bpda", "eps": 0.03, "steps": 2, "abs_stepsize": 0.0125, "randomness": "fixed", "n_uniform": 2}],
 "seeds": [3],
 "shard": {"images": $1}}
EOF
}
spec 8 >"$T/s8.json"
spec 3 >"$T/s3.json"

# rows without sweep (1), seconds (25) and worker (28), sorted
norm_rows() { tail -n +2 "$1" | cut -d, -f2-24,26-27,29- | LC_ALL=C sort; }

run_rows() { # run_rows NAME SPEC ARGS...: the normalized rows of a fresh drq run in $T/NAME.txt
    local name=$1 sp=$2
    shift 2
    "$DRQ" run "$sp" --db "$T/$name.db" --quiet "$@" >"$T/$name.log" 2>&1 || { echo "drq run $name failed:"; tail -5 "$T/$name.log"; return 1; }
    "$DRQ" results "$T/$name.db" --out "$T/$name.csv" 2>/dev/null || return 1
    norm_rows "$T/$name.csv" >"$T/$name.txt"
}
same() { # same A B: identical normalized rows
    cmp -s "$T/$1.txt" "$T/$2.txt" || { diff "$T/$1.txt" "$T/$2.txt" | head -4; return 1; }
}

check "reference: --threads 1 --batch 8" run_rows ref "$T/s8.json" --threads 1 --batch 8
check_eq "reference rows" "$(wc -l <"$T/ref.txt")" 48
check "--threads 2" run_rows t2 "$T/s8.json" --threads 2 --batch 8
check "rows of --threads 1 and 2 are identical" same ref t2
check "--batch 1" run_rows b1 "$T/s8.json" --threads 2 --batch 1
check "rows of --batch 8 and 1 are identical" same ref b1
check "--batch 3" run_rows b3 "$T/s8.json" --threads 2 --batch 3
check "rows of --batch 8 and 3 are identical" same ref b3
check "--workers 2" run_rows w2 "$T/s8.json" --threads 2 --workers 2 --batch 8
check "rows of --workers 1 and 2 are identical" same ref w2
check_eq "--workers 2 used both workers" "$(tail -n +2 "$T/w2.csv" | cut -d, -f28 | sort -u | wc -l)" 2
check "shards of 3 images" run_rows sh3 "$T/s3.json" --threads 2 --batch 8
check "rows of shards of 8 and of 3 are identical" same ref sh3

isa=$(tail -n +2 "$T/ref.csv" | cut -d, -f27 | sort -u)
check "rows record cpu:ISA ($isa)" bash -c "[[ '$isa' =~ ^cpu:[a-z0-9_]+$ ]]"
check "ONEDNN_MAX_CPU_ISA=AVX2" env ONEDNN_MAX_CPU_ISA=AVX2 bash -c "$(declare -f run_rows norm_rows); DRQ=$DRQ T=$T run_rows avx2 '$T/s8.json' --threads 2"
check_eq "rows under ONEDNN_MAX_CPU_ISA=AVX2 say so" "$(tail -n +2 "$T/avx2.csv" | cut -d, -f27 | sort -u)" "cpu:avx2"

# ---- drq purify: 4 images with a gradient, alone and in a batch, 1 and 2 threads ------------------------------
/usr/bin/python3 - "$T" <<'PY'
import json, struct, sys, random
random.seed(5)
def save(path, tensors):
    hdr, blobs, off = {}, b"", 0
    for name, shape, vals in tensors:
        b = struct.pack("<%df" % len(vals), *vals)
        hdr[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(b)]}
        blobs += b; off += len(b)
    h = json.dumps(hdr).encode()
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + blobs)
x = [random.random() for _ in range(4 * 784)]
g = [random.gauss(0, 1) for _ in range(4 * 784)]
save(sys.argv[1] + "/in4.safetensors", [("x", [4, 1, 28, 28], x), ("grad_y", [4, 1, 28, 28], g)])
save(sys.argv[1] + "/in1.safetensors", [("x", [1, 1, 28, 28], x[2*784:3*784]), ("grad_y", [1, 1, 28, 28], g[2*784:3*784])])
PY
pur() { "$DRQ" purify "$T/s8.json" --purifier ddpm --seed 3 "$@" >/dev/null 2>>"$T/purify.log"; }
check "purify 4 images, 1 thread" pur --in "$T/in4.safetensors" --out "$T/p1.safetensors" --threads 1
check "purify 4 images, 2 threads" pur --in "$T/in4.safetensors" --out "$T/p2.safetensors" --threads 2
check "purify: --threads 1 and 2 give the same bytes" cmp -s "$T/p1.safetensors" "$T/p2.safetensors"
check "purify image 2 alone" pur --in "$T/in1.safetensors" --out "$T/p3.safetensors" --threads 2 --image-offset 2
check "purify: image 2 alone equals image 2 of the batch (y and grad_x)" /usr/bin/python3 - "$T" <<'PY'
import json, struct, sys
def load(p):
    d = open(p, "rb").read(); n = struct.unpack("<Q", d[:8])[0]; h = json.loads(d[8:8 + n])
    return {k: d[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]] for k, v in h.items() if k != "__metadata__"}
b, a = load(sys.argv[1] + "/p2.safetensors"), load(sys.argv[1] + "/p3.safetensors")
per = 784 * 4
ok = all(b[k][2 * per:3 * per] == a[k] for k in ("y", "grad_x"))
sys.exit(0 if ok else 1)
PY
[ "$FAIL" -gt 0 ] && tail -5 "$T"/*.log
finish
