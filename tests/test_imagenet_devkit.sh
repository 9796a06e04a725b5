#!/usr/bin/env bash
# test_imagenet_devkit.sh — the flat ImageNet layout labelled by the ILSVRC2012
# devkit's own files (common/dataset_imagenet.c): ILSVRC2012_validation_
# ground_truth.txt + meta.mat, read with matio, through build/tests/tool_imagenet.
# The devkit is synthetic, written here by tests/ref/make_devkit.py (scipy):
# 1000 classes and 12 groups, IDs not in WNID order, entries shuffled.
#   1. labels equal torchvision's (an independent Python computation from the
#      same meta.mat: classes' WNIDs sorted), image by image, with the files in
#      the image folder, in ILSVRC2012_devkit_t12/data/, and under PATH/val;
#      the image folder's pair wins over the devkit folder's;
#   2. ILSVRC2012_val_labels.txt wins when present (even beside a broken meta.mat);
#   3. every malformed input is an error naming the file (and entry or line):
#      missing field, wrong types, IDs out of 1..1000, duplicate IDs or WNIDs,
#      not 1000 classes, no synsets / not a struct, not a MAT file (text,
#      empty, truncated), meta.mat missing, a ground-truth line out of range,
#      fewer lines than images, neither labels nor devkit.
# Without scipy (python3-scipy, deploy/install-deps.sh) the parts that need a
# meta.mat are SKIPs, counted and said by tests/run.sh.
# Prints "RESULT <passed> <failed> <skipped>".  BUILD selects the build folder.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
TOOL=$BUILD/tests/tool_imagenet
PY=${PYTHON:-/usr/bin/python3}
MK=tests/ref/make_devkit.py
T=$(mktemp -d "${TMPDIR:-/tmp}/drq_devkit.XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0 fail=0 skip=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
[ -x "$TOOL" ] || { echo "FAIL $TOOL missing (make all-tests)"; echo "RESULT 0 1 0"; exit 1; }

expect_err() { # what, want-substring, dataset PATH
    local what=$1 want=$2
    "$TOOL" dataset "$3" 0 -1 "$T/x.rgb" >"$T/out" 2>"$T/err"
    local rc=$?
    if [ "$rc" -eq 1 ] && grep -qF -- "$want" "$T/err"; then ok "$what: $(head -c 240 "$T/err")"
    else bad "$what: exit $rc, stdout '$(head -c 100 "$T/out")', stderr '$(head -c 300 "$T/err")', expected '$want'"; fi
}
labels_of() { "$TOOL" dataset "$1" 0 -1 "$T/x.rgb" 2>"$T/err" | tr '\n' ' ' | sed 's/ $//'; }

# images 1..6 (an 8×8 grey baseline JPEG), ground truth for 9 images
GOODJPEG="ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b0b0c1912130f141d1a1f1e1d1a1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ffc0000b080008000801011100ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b5100002010303020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda0008010100003f00fb7e8a28a00fffd9"
"$PY" -c 'import sys; open(sys.argv[1], "wb").write(bytes.fromhex(sys.argv[2]))' "$T/good.jpg" "$GOODJPEG" ||
    { echo "FAIL cannot write a JPEG with $PY"; echo "RESULT 0 1 0"; exit 1; }
images() { # images DIR N...: the flat images of numbers N in DIR
    local d=$1
    shift
    mkdir -p "$d"
    for n in "$@"; do cp "$T/good.jpg" "$d/$(printf 'ILSVRC2012_val_%08d.JPEG' "$n")"; done
}
printf '%s\n' 17 1000 1 523 999 2 640 88 300 >"$T/truth.txt"
NUMS="1 2 3 4 5 6"
TRUTH=ILSVRC2012_validation_ground_truth.txt

# ---- errors that need no scipy ------------------------------------------------
images "$T/none" $NUMS
expect_err "neither labels nor devkit files" \
    "$T/none/ILSVRC2012_val_labels.txt: missing: the flat layout needs it" "$T/none"
expect_err "neither: the devkit's places are named" "$T/none/ILSVRC2012_devkit_t12/data" "$T/none"
images "$T/nometa" $NUMS
cp "$T/truth.txt" "$T/nometa/$TRUTH"
expect_err "ground truth without meta.mat" "$T/nometa/meta.mat: missing" "$T/nometa"
for kind in text empty zeros; do
    images "$T/notmat-$kind" $NUMS
    cp "$T/truth.txt" "$T/notmat-$kind/$TRUTH"
    case $kind in
    text) printf 'this is not a MATLAB file\n%.0s' $(seq 40) >"$T/notmat-$kind/meta.mat" ;;
    empty) : >"$T/notmat-$kind/meta.mat" ;;
    zeros) head -c 4096 /dev/zero >"$T/notmat-$kind/meta.mat" ;;
    esac
    "$TOOL" dataset "$T/notmat-$kind" 0 -1 "$T/x.rgb" >"$T/out" 2>"$T/err"
    rc=$?
    if [ "$rc" -eq 1 ] && grep -qE -- "$T/notmat-$kind/meta.mat: (not a MAT file|not a MATLAB v5 MAT file|no readable variable)" "$T/err"; then
        ok "meta.mat that is no MAT file ($kind): $(head -c 200 "$T/err")"
    else bad "meta.mat that is no MAT file ($kind): exit $rc, stderr '$(head -c 300 "$T/err")'"; fi
done

if ! "$PY" -c 'import scipy.io, numpy' 2>/dev/null; then
    echo "SKIP devkit labels and meta.mat checks: $PY has no scipy/numpy (install python3-scipy; deploy/install-deps.sh does)"
    skip=$((skip + 1))
    echo "RESULT $pass $fail $skip"
    [ "$fail" -eq 0 ]
    exit
fi

# ---- 1. labels against torchvision's computation ------------------------------
"$PY" "$MK" meta "$T/meta.mat" || bad "make_devkit.py meta"
want=$("$PY" "$MK" expect "$T/meta.mat" "$T/truth.txt" $NUMS)
naive=$(for n in $NUMS; do echo $(($(sed -n "${n}p" "$T/truth.txt") - 1)); done | tr '\n' ' ' | sed 's/ $//')
if [ -n "$want" ] && [ "$want" != "$naive" ]; then ok "the fixture's map is not ID − 1 (torchvision: $want; ID − 1: $naive)"
else bad "fixture: torchvision labels '$want' equal ID − 1 '$naive' (the test could not catch a wrong map)"; fi
# a second fixture (another seed) must give other labels: nothing is hard-wired
"$PY" "$MK" meta "$T/meta2.mat" --seed 2
want2=$("$PY" "$MK" expect "$T/meta2.mat" "$T/truth.txt" $NUMS)

images "$T/root" $NUMS
cp "$T/truth.txt" "$T/root/$TRUTH" && cp "$T/meta.mat" "$T/root/meta.mat"
got=$(labels_of "$T/root")
[ "$got" = "$want" ] && ok "devkit files in the image folder: labels $got" ||
    bad "devkit files in the image folder: '$got', expected '$want' ($(cat "$T/err"))"

images "$T/sub" $NUMS
mkdir -p "$T/sub/ILSVRC2012_devkit_t12/data"
cp "$T/truth.txt" "$T/sub/ILSVRC2012_devkit_t12/data/$TRUTH"
cp "$T/meta2.mat" "$T/sub/ILSVRC2012_devkit_t12/data/meta.mat"
got=$(labels_of "$T/sub")
[ "$got" = "$want2" ] && [ "$want2" != "$want" ] && ok "devkit tarball layout (ILSVRC2012_devkit_t12/data/): labels $got" ||
    bad "devkit tarball layout: '$got', expected '$want2' (other seed: '$want') ($(cat "$T/err"))"

images "$T/val/val" $NUMS
mkdir -p "$T/val/val/ILSVRC2012_devkit_t12/data"
cp "$T/truth.txt" "$T/val/val/ILSVRC2012_devkit_t12/data/$TRUTH"
cp "$T/meta.mat" "$T/val/val/ILSVRC2012_devkit_t12/data/meta.mat"
got=$(labels_of "$T/val")
[ "$got" = "$want" ] && ok "PATH/val with the devkit folder inside: labels $got" || bad "PATH/val: '$got', expected '$want' ($(cat "$T/err"))"

# the image folder's pair comes first: a broken devkit folder is not read
images "$T/both" $NUMS
mkdir -p "$T/both/ILSVRC2012_devkit_t12/data"
cp "$T/truth.txt" "$T/both/$TRUTH" && cp "$T/meta.mat" "$T/both/meta.mat"
echo broken >"$T/both/ILSVRC2012_devkit_t12/data/$TRUTH"
echo broken >"$T/both/ILSVRC2012_devkit_t12/data/meta.mat"
got=$(labels_of "$T/both")
[ "$got" = "$want" ] && ok "image folder's devkit files before ILSVRC2012_devkit_t12/data/" || bad "search order: '$got' ($(cat "$T/err"))"

# a shard (start 2, count 3) and an image subset (numbers with gaps)
got=$("$TOOL" dataset "$T/root" 2 3 "$T/x.rgb" 2>"$T/err" | tr '\n' ' ' | sed 's/ $//')
[ "$got" = "$(echo "$want" | cut -d' ' -f3-5)" ] && ok "a shard of the devkit-labelled images: $got" || bad "shard: '$got' ($(cat "$T/err"))"
images "$T/gaps" 2 5 9
cp "$T/truth.txt" "$T/gaps/$TRUTH" && cp "$T/meta.mat" "$T/gaps/meta.mat"
got=$(labels_of "$T/gaps")
w=$("$PY" "$MK" expect "$T/meta.mat" "$T/truth.txt" 2 5 9)
[ "$got" = "$w" ] && ok "images 2, 5, 9 only: labels $got" || bad "images 2 5 9: '$got', expected '$w' ($(cat "$T/err"))"

# ---- 2. the labels file wins ---------------------------------------------------
images "$T/lab" $NUMS
cp "$T/truth.txt" "$T/lab/$TRUTH" && cp "$T/meta.mat" "$T/lab/meta.mat"
printf '%s\n' 11 22 33 44 55 66 >"$T/lab/ILSVRC2012_val_labels.txt"
got=$(labels_of "$T/lab")
[ "$got" = "11 22 33 44 55 66" ] && ok "ILSVRC2012_val_labels.txt wins over the devkit files" || bad "labels file: '$got' ($(cat "$T/err"))"
echo broken >"$T/lab/meta.mat"
got=$(labels_of "$T/lab")
[ "$got" = "11 22 33 44 55 66" ] && ok "ILSVRC2012_val_labels.txt wins: a broken meta.mat beside it is not read" || bad "labels file + broken meta: '$got' ($(cat "$T/err"))"

# ---- 3. malformed meta.mat ----------------------------------------------------
variant() { # variant NAME want-substring
    local d=$T/v-$1
    images "$d" $NUMS
    cp "$T/truth.txt" "$d/$TRUTH"
    if ! "$PY" "$MK" meta "$d/meta.mat" --variant "$1"; then bad "make_devkit.py --variant $1"; return; fi
    expect_err "meta.mat $1" "$2" "$d"
    grep -qF "$d/meta.mat" "$T/err" || bad "meta.mat $1: the message does not name the file"
}
variant no_wnid_field 'meta.mat: synsets has no field "WNID"'
variant wnid_not_string ').WNID: not a string'
variant id_not_number ').ILSVRC2012_ID: not a positive integer scalar'
variant id_zero ').ILSVRC2012_ID: not a positive integer scalar'
variant id_fraction ').ILSVRC2012_ID: not a positive integer scalar'
variant num_children_negative ').num_children: not a non-negative integer scalar'
variant leaf_id_1001 'with ILSVRC2012_ID 1500, not in 1..1000'
variant dup_id 'have the same ILSVRC2012_ID'
variant nonleaf_id_dup 'have the same ILSVRC2012_ID'
variant dup_wnid 'are both the class'
variant leaves_999 '999 synsets with num_children == 0 (the classes), expected exactly 1000'
variant leaves_1001 '1001 synsets with num_children == 0'
variant not_struct '"synsets" is not a struct array'
variant no_synsets 'no readable variable "synsets"'
# a truncated meta.mat
images "$T/trunc" $NUMS
cp "$T/truth.txt" "$T/trunc/$TRUTH"
head -c 20000 "$T/meta.mat" >"$T/trunc/meta.mat"
"$TOOL" dataset "$T/trunc" 0 -1 "$T/x.rgb" >"$T/out" 2>"$T/err"
rc=$?
[ "$rc" -eq 1 ] && grep -qF "$T/trunc/meta.mat: " "$T/err" && ok "truncated meta.mat: $(head -c 200 "$T/err")" ||
    bad "truncated meta.mat: exit $rc, '$(head -c 300 "$T/err")'"

# ---- 3. malformed ground truth -------------------------------------------------
gt() { # gt NAME CONTENT want-substring
    local d=$T/gt-$1
    images "$d" $NUMS
    cp "$T/meta.mat" "$d/meta.mat"
    printf "$2" >"$d/$TRUTH"
    expect_err "ground truth $1" "$3" "$d"
}
gt id_1001 '17\n1000\n1001\n5\n5\n5\n' "$TRUTH:3: expected an ILSVRC2012_ID in [1, 1000], got \"1001\""
gt id_0 '0\n' "$TRUTH:1: expected an ILSVRC2012_ID in [1, 1000], got \"0\""
gt not_number '17\nkit fox\n' "$TRUTH:2: expected an ILSVRC2012_ID in [1, 1000], got \"kit fox\""
gt long_line "17\n$(printf '1%.0s' $(seq 100))\n" "$TRUTH:2: line too long"
gt short '17\n1000\n1\n523\n' "$TRUTH: 4 lines, no label for ILSVRC2012_val_00000005.JPEG (image 5)"
gt empty '' "$TRUTH: 0 lines, no label for ILSVRC2012_val_00000001.JPEG (image 1)"

echo "RESULT $pass $fail $skip"
[ "$fail" -eq 0 ]
