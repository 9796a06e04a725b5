#!/usr/bin/env bash
# test_convert.sh — deploy/convert-checkpoint (PyTorch checkpoint -> safetensors,
# no PyTorch, restricted unpickler).
#
# - runs the converter with a Python that cannot import torch (/usr/bin/python3
#   -I -S: no site, no dist-packages; checked) and once through its shebang;
# - checkpoints written by real torch.save (tests/ref/gen_checkpoints.py, Debian's
#   /usr/bin/python3 with torch) from the reference models: pesser's flat dict, the
#   guided-diffusion ADM UNet's flat dict (guided-unet keys: input_blocks.*, …),
#   RobustBench's {'state_dict': DataParallel keys 'module.…', num_batches_tracked},
#   an 'ema' entry, non-contiguous views sharing a storage; F32, F16, BF16; zip and
#   legacy format.  Each converts, keeps its dtype, loses prefixes and
#   num_batches_tracked, and `drq model run` matches the float64 oracle (y rel L2
#   ≤ 1e-5, grad_x ≤ 1e-4, as test_parity.sh); zip and legacy give equal tensors;
# - pickles that ask for os.system / posix.system / builtins.eval are refused with
#   the global named, and their side effect (a marker file) never happens;
# - a truncated zip, a zip without data.pkl, a storage shorter than its tensor, an
#   unknown storage type, a truncated legacy file, an HTML page: clear errors.
# Also the full-size CIFAR-10 WRN-28-10 (RobustBench layout, both formats, bitwise
# against torch's tensors; ~15 s, ~600 MB in $TMPDIR; DRQ_TEST_FULL=0 leaves it out).
# Prints "RESULT <passed> <failed> <skipped>".
cd "$(dirname "$0")/.."
source tests/queue_lib.sh
STCMP=$B/tests/tool_stcmp
CONV_SRC=deploy/convert-checkpoint
TORCHPY=/usr/bin/python3
NOTORCH=("$TORCHPY" -I -S)
[ -x "$TORCHPY" ] || NOTORCH=(python3 -I -S)
CONV=("${NOTORCH[@]}" "$CONV_SRC")
D=$T/ck
mkdir -p "$D"

# --- the converter's Python cannot import torch
if "${NOTORCH[@]}" -c 'import torch' 2>/dev/null; then
    check "a python without torch for the converter (${NOTORCH[*]})" false
else
    check "python without torch" true
fi

# run_conv NAME IN OUT [args]: converter with its stderr in $T/NAME.err; returns its status
run_conv() {
    local name=$1
    shift
    "${CONV[@]}" "$@" >"$T/$name.out" 2>"$T/$name.err"
}
# expect_error NAME PATTERN IN: conversion fails (status 1), says PATTERN, writes no output
expect_error() {
    local name=$1 pat=$2 in=$3
    shift 3
    run_conv "$name" "$in" "$D/$name.safetensors" "$@"
    local rc=$?
    check_eq "$name: exit status" "$rc" 1
    if grep -qE "$pat" "$T/$name.err"; then
        PASS=$((PASS + 1))
    else
        FAIL=$((FAIL + 1))
        echo "FAIL: $name: message does not match /$pat/: $(cat "$T/$name.err")"
    fi
    check "$name: no output file" test ! -e "$D/$name.safetensors"
}

# header_ok FILE DTYPE: every tensor has DTYPE, no 'module.'/'model.' prefix, no num_batches_tracked
header_ok() {
    "${NOTORCH[@]}" - "$1" "$2" <<'EOF'
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
h = json.loads(raw[8:8 + n])
bad = [k for k, v in h.items() if k != "__metadata__" and (v["dtype"] != sys.argv[2] or k.startswith(("module.", "model."))
       or k.endswith("num_batches_tracked"))]
if bad or len(h) < 2:
    print("bad header entries:", bad[:5], file=sys.stderr)
    sys.exit(1)
EOF
}

# --- real torch.save checkpoints
HAVE_TORCH=0
"$TORCHPY" -c 'import torch' 2>/dev/null && HAVE_TORCH=1
if [ "$HAVE_TORCH" -eq 1 ]; then
    FULL=()
    [ "${DRQ_TEST_FULL:-1}" = 1 ] && FULL=(--full)
    if "$TORCHPY" tests/ref/gen_checkpoints.py --out "$D" "${FULL[@]}" >"$T/gen.txt" 2>&1; then
        check "gen_checkpoints.py" true
    else
        check "gen_checkpoints.py" false
        cat "$T/gen.txt"
    fi
    n=0
    while IFS=$'\t' read -r case arch name dtype fmt layout file; do
        n=$((n + 1))
        in=$D/$file
        out=$D/$case.safetensors
        run_conv "$case" "$in" "$out"
        rc=$?
        check_eq "$case: convert" "$rc" 0
        [ "$rc" -eq 0 ] || { cat "$T/$case.err"; continue; }
        check "$case: dtype $dtype kept, prefixes and num_batches_tracked gone" header_ok "$out" "$dtype"
        [ "$name" = wrn_full ] && continue
        "$DRQ" model run --arch "$arch" --config "$D/$name.json" --weights "$out" \
            --in "$D/$name.$dtype.io.safetensors" --out "$D/$case.run.safetensors" >"$T/$case.run.log" 2>&1
        rc=$?
        check_eq "$case: drq model run" "$rc" 0
        [ "$rc" -eq 0 ] || { tail -3 "$T/$case.run.log"; continue; }
        if "$STCMP" "$D/$case.run.safetensors" "$D/$name.$dtype.io.safetensors" --only y,grad_x \
            --tol y=1e-5 --tol grad_x=1e-4 >"$T/$case.cmp" 2>&1; then
            PASS=$((PASS + 1))
        else
            FAIL=$((FAIL + 1))
            echo "FAIL: $case: parity against the float64 oracle"
            cat "$T/$case.cmp"
        fi
    done <"$D/manifest.tsv"
    check "manifest has the cases" test "$n" -ge 26
    # zip and legacy formats give the same tensors, bit for bit
    for z in "$D"/*.zip.safetensors; do
        l=${z%.zip.safetensors}.legacy.safetensors
        [ -f "$l" ] || continue
        check "$(basename "$z"): zip = legacy" "$STCMP" "$z" "$l" --default-tol 0 >/dev/null
    done
    if [ "${#FULL[@]}" -gt 0 ]; then
        for fmt in zip legacy; do
            check "full WRN-28-10 ($fmt) bitwise" "$STCMP" "$D/wrn_full.robustbench.F32.$fmt.safetensors" \
                "$D/wrn_full.expected.safetensors" --default-tol 0 >/dev/null
        done
        rm -f "$D"/wrn_full.*
    fi
    # through the shebang (env python3) as a user runs it
    check "runs as an executable" "$CONV_SRC" "$D/wrn_tiny.robustbench.F32.zip.ckpt" "$D/shebang.safetensors"
    # an argparse.Namespace beside the weights: refused, unless named with --inert
    expect_error args_refused "refused global argparse\.Namespace" "$D/extra_args.ckpt"
    run_conv args_inert "$D/extra_args.ckpt" "$D/args_inert.safetensors" --inert argparse.Namespace
    check_eq "--inert argparse.Namespace: converts" "$?" 0
    check "--inert: same tensors" "$STCMP" "$D/args_inert.safetensors" "$D/wrn_tiny.robustbench.F32.zip.safetensors" \
        --default-tol 0 >/dev/null
else
    skip "no /usr/bin/python3 with torch: the torch.save checkpoints and drq parity are not checked"
fi

# --- malicious and broken files (standard library only)
MARK=$T/pwned
"${NOTORCH[@]}" - "$D" "$MARK" "$HAVE_TORCH" <<'EOF'
import collections, io, os, pickle, sys, zipfile
d, mark, have_torch = sys.argv[1], sys.argv[2], sys.argv[3] == "1"

class Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg
    def __reduce__(self):
        return (self.fn, (self.arg,))

def zipped(path, pkl, extra=None):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/version", "3\n")
        for k, v in (extra or {}).items():
            z.writestr(k, v)

def legacy(path, pkl):
    with open(path, "wb") as f:
        for o in (0x1950a86a20f9469cfc6c, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(o, f, protocol=2)
        f.write(pkl)
        pickle.dump([], f, protocol=2)

touch = f"touch {mark}"
sysp = pickle.dumps(collections.OrderedDict(w=Evil(os.system, touch)), protocol=2)
zipped(f"{d}/evil_system.zip.ckpt", sysp)
legacy(f"{d}/evil_system.legacy.ckpt", sysp)
nested = pickle.dumps({"state_dict": collections.OrderedDict(a=1, b=Evil(os.system, touch))}, protocol=2)
zipped(f"{d}/evil_nested.zip.ckpt", nested)
# the os.system global written out by hand (GLOBAL 'os system')
zipped(f"{d}/evil_os.zip.ckpt", b"cos\nsystem\n(X" + len(touch).to_bytes(4, "little") + touch.encode() + b"tR.")
ev = pickle.dumps(Evil(eval, f"open({mark!r}, 'w').close()"), protocol=4)
zipped(f"{d}/evil_eval.zip.ckpt", ev)
with zipfile.ZipFile(f"{d}/no_datapkl.zip.ckpt", "w") as z:
    z.writestr("archive/version", "3\n")
    z.writestr("archive/data/0", b"\0" * 16)
with open(f"{d}/page.ckpt", "w") as f:
    f.write("<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head></html>\n")
open(f"{d}/empty.ckpt", "wb").close()

if have_torch:
    src = f"{d}/wrn_tiny.robustbench.F32.zip.ckpt"
    raw = open(src, "rb").read()
    open(f"{d}/truncated.zip.ckpt", "wb").write(raw[: len(raw) // 2])
    lraw = open(f"{d}/wrn_tiny.robustbench.F32.legacy.ckpt", "rb").read()
    open(f"{d}/truncated.legacy.ckpt", "wb").write(lraw[: len(lraw) - 1000])
    zin = zipfile.ZipFile(src)
    with zipfile.ZipFile(f"{d}/short_storage.zip.ckpt", "w") as zs, \
            zipfile.ZipFile(f"{d}/unknown_storage.zip.ckpt", "w") as zu:
        for n in zin.namelist():
            b = zin.read(n)
            if n.endswith("data.pkl"):
                zu.writestr(n, b.replace(b"torch\nFloatStorage\n", b"torch\nQInt8Storage\n"))
                zs.writestr(n, b)
            elif "/data/" in n:
                zs.writestr(n, b[: len(b) // 2])
                zu.writestr(n, b)
            else:
                zs.writestr(n, b)
                zu.writestr(n, b)
EOF
check "malicious/broken files written" test -f "$D/evil_eval.zip.ckpt"

expect_error evil_system_zip "refused global posix\.system" "$D/evil_system.zip.ckpt"
expect_error evil_system_legacy "refused global posix\.system" "$D/evil_system.legacy.ckpt"
expect_error evil_nested "refused global posix\.system" "$D/evil_nested.zip.ckpt"
expect_error evil_os "refused global os\.system" "$D/evil_os.zip.ckpt"
expect_error evil_eval "refused global builtins\.eval" "$D/evil_eval.zip.ckpt"
# an inert stand-in is never called either, and cannot become a weight
expect_error evil_inert "no state dict found" "$D/evil_system.zip.ckpt" --inert posix.system
check "no side effect: $MARK was never created" test ! -e "$MARK"

expect_error no_datapkl "without a data\.pkl" "$D/no_datapkl.zip.ckpt"
expect_error html_page "HTML" "$D/page.ckpt"
expect_error empty_file "empty file" "$D/empty.ckpt"
expect_error missing_file "No such file" "$D/nonexistent.ckpt"
if [ "$HAVE_TORCH" -eq 1 ]; then
    expect_error truncated_zip "damaged or truncated zip" "$D/truncated.zip.ckpt"
    expect_error truncated_legacy "truncated" "$D/truncated.legacy.ckpt"
    expect_error short_storage "needs elements up to [0-9]+ of storage .*holds only" "$D/short_storage.zip.ckpt"
    expect_error unknown_storage "unknown storage type torch\.QInt8Storage" "$D/unknown_storage.zip.ckpt"
else
    skip "no torch: truncated zip/legacy, short storage and unknown storage type are not checked"
fi
"${CONV[@]}" >/dev/null 2>&1
check_eq "usage: exit status 2" "$?" 2
finish
