#!/usr/bin/env bash
# test_res256.sh — the ImageNet image path (common/jpeg.c, common/resample.c,
# common/dataset_imagenet.c) through build/tests/tool_imagenet:
#   1. against Pillow (tests/ref/check_res256.py): JPEG decode, bilinear
#      resize, Res256Crop224 and both dataset layouts, on images generated
#      here, within one grey level (skipped, and said, without python3-pil);
#   2. bad input is a clear error naming the file, never a crash: a
#      truncated JPEG, a corrupt one, a file that is no JPEG, an empty file;
#      a progressive JPEG with thousands of scans (refused: a decoding-time
#      bomb); 1 × 65500 and 65500 × 1 JPEGs, whose full Resize(256) would be
#      12.9 GB, crop in under 256 MB (max RSS);
#      a flat folder without its label file (with the devkit's ground truth
#      but no meta.mat: meta.mat is named; tests/test_imagenet_devkit.sh covers
#      the devkit's files), a label out of range,
#      a range past the end;
#   3. drq run end to end: an ImageNet class-folder layout, a small ResNet-50
#      (tests/fixtures/resnet_tiny), a 2-step PGD: rows and labels; the dry run.
# Prints "RESULT <passed> <failed> <skipped>".  BUILD selects the build folder.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
TOOL=$BUILD/tests/tool_imagenet
PY=${PYTHON:-/usr/bin/python3}
T=$(mktemp -d "${TMPDIR:-/tmp}/drq_res256.XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0 fail=0 skip=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }

# 1. Pillow
if "$PY" -c 'import PIL, numpy' 2>/dev/null; then
    out=$("$PY" tests/ref/check_res256.py --tool "$TOOL" 2>&1)
    echo "$out" | grep -v '^RESULT '
    read -r p f < <(echo "$out" | sed -n 's/^RESULT \([0-9]*\) \([0-9]*\)$/\1 \2/p')
    if [ -z "${p:-}" ]; then bad "check_res256.py reported nothing"; else pass=$((pass + p)) fail=$((fail + f)); fi
else
    echo "SKIP Pillow comparison: $PY has no PIL/numpy (install python3-pil; deploy/install-deps.sh does)"
    skip=$((skip + 1))
fi

# 2. errors: exit status 1 (not a crash) and a message naming the file
expect_err() { # what, want-substring, tool args...
    local what=$1 want=$2
    shift 2
    "$TOOL" "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    if [ "$rc" -eq 1 ] && grep -qF -- "$want" "$T/err"; then ok "$what: $(head -c 200 "$T/err")"
    else bad "$what: exit $rc, stderr '$(head -c 300 "$T/err")', expected '$want'"; fi
}
"$PY" - "$T" <<'PYEOF'
import random, struct, sys, zlib
t = sys.argv[1]
# a baseline JPEG written without Pillow: the smallest valid one is hard to
# hand-make, so take a known-good 8×8 grey JPEG (standard tables) as bytes
hexjpeg = ("ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b0b0c1912130f141d1a1f1e1d1a1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ffc0000b080008000801011100ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b5100002010303020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda0008010100003f00fb7e8a28a00fffd9")
good = bytes.fromhex(hexjpeg)
open(f"{t}/good.jpg", "wb").write(good)
open(f"{t}/trunc.jpg", "wb").write(good[: len(good) * 2 // 3])
bad = bytearray(good)
random.seed(7)
for i in range(180, len(bad) - 2, 3):
    bad[i] = random.randrange(256)
open(f"{t}/corrupt.jpg", "wb").write(bytes(bad))
open(f"{t}/text.jpg", "w").write("this is not a JPEG\n")
open(f"{t}/empty.jpg", "wb").close()
PYEOF
if "$TOOL" decode "$T/good.jpg" "$T/good.rgb" >"$T/out" 2>"$T/err" && [ "$(cat "$T/out")" = "8 8" ]; then
    ok "a valid 8×8 JPEG decodes"
else bad "the valid 8×8 JPEG: $(cat "$T/err")"; fi
expect_err "truncated JPEG" "$T/trunc.jpg: not a readable JPEG file" decode "$T/trunc.jpg" "$T/x.rgb"
expect_err "truncated JPEG (crop)" "$T/trunc.jpg" crop "$T/trunc.jpg" "$T/x.rgb"
"$TOOL" decode "$T/corrupt.jpg" "$T/x.rgb" >/dev/null 2>"$T/err"
rc=$?
if [ "$rc" -le 1 ]; then ok "corrupt JPEG: exit $rc, no crash$( [ "$rc" -eq 1 ] && echo ": $(head -c 160 "$T/err")")"
else bad "corrupt JPEG: exit $rc ($(cat "$T/err"))"; fi
expect_err "not a JPEG" "$T/text.jpg: not a readable JPEG file" decode "$T/text.jpg" "$T/x.rgb"
expect_err "empty file" "$T/empty.jpg" decode "$T/empty.jpg" "$T/x.rgb"
expect_err "missing file" "$T/none.jpg" decode "$T/none.jpg" "$T/x.rgb"

# hostile shapes: only the crop is computed, so memory stays small (max RSS of the tool, in KiB)
if "$PY" -c 'import PIL' 2>/dev/null; then
    "$PY" -c '
import sys
from PIL import Image
Image.linear_gradient("L").resize((1, 65500)).convert("RGB").save(sys.argv[1] + "/tall.jpg", quality=90)
Image.linear_gradient("L").resize((65500, 1)).convert("RGB").save(sys.argv[1] + "/wide.jpg", quality=90)' "$T"
    "$PY" - "$T/bomb.jpg" <<'PYEOF'
import io, sys
from PIL import Image
# a progressive 2048 × 2048 JPEG, then one of its 33-byte AC scans repeated 800 times before EOI
b = io.BytesIO()
Image.linear_gradient("L").resize((2048, 2048)).convert("RGB").save(b, "JPEG", progressive=True, quality=5)
d = b.getvalue()
i, scans = 2, []
while d[i + 1] != 0xD9:
    j = i + 2 + (d[i + 2] << 8 | d[i + 3])
    if d[i + 1] == 0xDA:  # SOS: the entropy-coded data runs to the next marker
        while not (d[j] == 0xFF and d[j + 1] != 0 and not 0xD0 <= d[j + 1] <= 0xD7):
            j += 1
        scans.append(d[i:j])
    i = j
small = min(scans[1:], key=len)
open(sys.argv[1], "wb").write(d[:i] + small * 800 + d[i:])
PYEOF
    expect_err "a progressive JPEG of 810 scans (a decoding-time bomb)" "$T/bomb.jpg: more than 682 scans of its 4194304 pixels" decode "$T/bomb.jpg" "$T/x.rgb"
    for f in tall wide; do
        read -r rc kb < <("$PY" -c '
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$TOOL" crop "$T/$f.jpg" "$T/$f.crop")
        if [ "$rc" = 0 ] && [ "$kb" -lt 262144 ]; then ok "$f JPEG (Resize(256) of 12.9 GB): cropped with max RSS $((kb / 1024)) MiB"
        else bad "$f JPEG: exit $rc, max RSS $kb KiB (limit 262144)"; fi
    done
else
    echo "SKIP the 1 × 65500 JPEG crops: $PY has no PIL (install python3-pil; deploy/install-deps.sh does)"
    skip=$((skip + 1))
fi

# dataset folders
mkdir -p "$T/flat" "$T/cls/n01/sub" "$T/cls2/n01" "$T/cls2/n02"
cp "$T/good.jpg" "$T/flat/ILSVRC2012_val_00000001.JPEG"
cp "$T/good.jpg" "$T/flat/ILSVRC2012_val_00000002.JPEG"
echo 1 >"$T/flat/ILSVRC2012_validation_ground_truth.txt"
expect_err "flat layout, devkit ground truth without meta.mat" "$T/flat/meta.mat: missing" dataset "$T/flat" 0 1 "$T/x.rgb"
rm "$T/flat/ILSVRC2012_validation_ground_truth.txt"
expect_err "flat layout without labels" "$T/flat/ILSVRC2012_val_labels.txt: missing" dataset "$T/flat" 0 1 "$T/x.rgb"
printf '5\n1000\n' >"$T/flat/ILSVRC2012_val_labels.txt"
expect_err "label out of range" "ILSVRC2012_val_labels.txt:2: expected a class index in [0, 999], got \"1000\"" \
    dataset "$T/flat" 0 1 "$T/x.rgb"
printf '5\n999\n' >"$T/flat/ILSVRC2012_val_labels.txt"
if [ "$("$TOOL" dataset "$T/flat" 0 -1 "$T/x.rgb" 2>"$T/err" | tr '\n' ' ')" = "5 999 " ]; then
    ok "flat layout: labels by image number"
else bad "flat layout labels: $(cat "$T/err")"; fi
expect_err "range past the end" "start 1 + count 2 exceeds the 2 images of $T/flat" dataset "$T/flat" 1 2 "$T/x.rgb"
cp "$T/trunc.jpg" "$T/flat/ILSVRC2012_val_00000002.JPEG"
expect_err "truncated JPEG in a shard" "$T/flat/ILSVRC2012_val_00000002.JPEG" dataset "$T/flat" 1 1 "$T/x.rgb"
cp "$T/good.jpg" "$T/cls/n01/a.JPEG"
expect_err "nested class folder" "$T/cls/n01/sub: a folder inside a class folder" dataset "$T/cls" 0 1 "$T/x.rgb"
cp "$T/good.jpg" "$T/cls2/n01/a.jpg"
cp "$T/good.jpg" "$T/cls2/n02/b.png"
expect_err "a PNG among the images" "$T/cls2/n02/b.png: not a JPEG" dataset "$T/cls2" 0 1 "$T/x.rgb"
expect_err "not a folder" "$T/good.jpg: not a folder" dataset "$T/good.jpg" 0 1 "$T/x.rgb"

# 3. end to end: drq run on an ImageNet class-folder layout with a small ResNet-50
#    (tests/fixtures/resnet_tiny, 10 classes), no purifier, a 2-step PGD; then the dry run
mkdir -p "$T/inet/val/n0" "$T/inet/val/n1" "$T/inet/val/n2"
for c in 0 1 2; do for j in a b; do cp "$T/good.jpg" "$T/inet/val/n$c/$j.JPEG"; done; done
cat >"$T/spec.json" <<SPEC
{"name": "inet", "dataset": {"kind": "imagenet", "path": "$T/inet", "start": 1, "count": 4},
 "classifier": {"arch": "resnet50", "config": "tests/fixtures/resnet_tiny.json",
                "weights": "tests/fixtures/resnet_tiny.weights.safetensors"},
 "attacks": [{"name": "pgd", "kind": "pgd", "eps": 0.0156863, "steps": 2, "abs_stepsize": 0.004}],
 "seeds": [0], "shard": {"images": 2}}
SPEC
if "$BUILD/drq" run "$T/spec.json" --db "$T/inet.db" --threads 2 >"$T/run.log" 2>&1; then
    ok "drq run: imagenet + resnet50 sweep finished"
else bad "drq run: exit $? ($(tail -5 "$T/run.log"))"; fi
rows=$("$BUILD/drq" results "$T/inet.db" --format csv 2>/dev/null | tail -n +2 | wc -l)
[ "$rows" = 4 ] && ok "drq run: 4 rows" || bad "drq run: $rows rows, expected 4"
"$BUILD/drq" results "$T/inet.db" --format csv >"$T/rows.csv" 2>/dev/null
labels=$("$PY" -c '
import csv, sys
r = list(csv.DictReader(open(sys.argv[1])))
print(" ".join(x["label"] for x in sorted(r, key=lambda x: int(x["image"]))))' "$T/rows.csv" 2>&1)
[ "$labels" = "0 1 1 2" ] && ok "drq run: labels of images 1..4 are their class folders"     || bad "drq run: labels '$labels', expected '0 1 1 2'"
if XDG_CACHE_HOME=$T/cache "$BUILD/drq" run "$T/spec.json" --dry-run >"$T/dry.log" 2>&1 && grep -q "classifier_forward" "$T/dry.log"; then
    ok "drq run --dry-run: imagenet + resnet50"
else bad "dry run: $(tail -5 "$T/dry.log")"; fi
echo "RESULT $pass $fail $skip"
[ "$fail" -eq 0 ]
