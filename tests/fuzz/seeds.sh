#!/usr/bin/env bash
# seeds.sh — seed corpora for the fuzz harnesses, from the unit tests' own inputs.
#
#   tests/fuzz/seeds.sh [BUILD_DIR]        (default build-fuzz)
#
# Writes BUILD_DIR/corpus/<target>/ for target in safetensors spec model_config
# proto dataset jpeg devkit:
#   - every input that tests/test_{spec,safetensors,proto,dataset}.c hand to
#     the parsers: each test is linked (uninstrumented, into BUILD_DIR/seedgen/)
#     with tests/fuzz/seed_recorder.c and -Wl,--wrap=<parser>, and run once
#     (test_safetensors also loads models: SEED_LIBS, set by the Makefile, adds
#     the worker and kernel archives of the main build and their libraries);
#   - examples/*.json (spec), tests/fixtures/*.json, examples/models/*.json and
#     the preset "cifar10" (model_config), tests/fixtures/*.safetensors of at
#     most 64 KiB (safetensors).
# Deterministic (the tests use fixed seeds; file names are content hashes).
# Existing corpus files are kept, so a corpus grown by earlier runs survives.
# A test that fails to build or to pass (someone is editing it) only costs its
# seeds: a warning, not an error.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${1:-build-fuzz}
CC=${FUZZ_CC:-clang}
S=$B/seedgen
mkdir -p "$S/obj" "$B/corpus"
for t in safetensors spec model_config proto dataset jpeg devkit; do mkdir -p "$B/corpus/$t"; done
corpus=$(cd "$B/corpus" && pwd)

CFLAGS=(-std=c11 -D_GNU_SOURCE -O1 -g -I. -w)
LIBS=(-ljansson -lzmq -ljpeg -lmatio -lz -lm -lpthread)
WRAP=-Wl,--wrap=drq_spec_parse_text,--wrap=drq_spec_load,--wrap=st_load,--wrap=drq_msg_decode,--wrap=drq_rows_unpack,--wrap=dataset_load

objs=()
for src in common/*.c tests/fuzz/seed_recorder.c; do
    o=$S/obj/$(basename "${src%.c}").o
    if [ ! -f "$o" ] || [ "$src" -nt "$o" ] || [ -n "$(find common -name '*.h' -newer "$o" 2>/dev/null)" ]; then
        "$CC" "${CFLAGS[@]}" -c "$src" -o "$o" || { echo "seeds: cannot compile $src" >&2; exit 1; }
    fi
    objs+=("$o")
done

warn=0
for t in spec safetensors proto dataset; do
    exe=$S/test_$t
    # shellcheck disable=SC2086 # SEED_LIBS is a list of words
    if ! "$CC" "${CFLAGS[@]}" -o "$exe" "tests/test_$t.c" "${objs[@]}" $WRAP ${SEED_LIBS:-} "${LIBS[@]}" 2>"$S/test_$t.build.log"; then
        echo "seeds: warning: tests/test_$t.c does not build, no seeds from it (see $S/test_$t.build.log)" >&2
        warn=1
        continue
    fi
    if ! DRQ_FUZZ_SEEDS=$corpus "$exe" >"$S/test_$t.log" 2>&1; then
        echo "seeds: warning: tests/test_$t.c failed (its seeds are kept; see $S/test_$t.log)" >&2
        warn=1
    fi
done

copy() { # copy TARGET FILE...: adds files under their own names
    local t=$1
    shift
    for f in "$@"; do [ -f "$f" ] && cp "$f" "$B/corpus/$t/file-$(basename "$f")"; done
}
copy spec examples/*.json
copy model_config tests/fixtures/*.json examples/models/*.json
printf 'cifar10' >"$B/corpus/model_config/preset-cifar10"
# JPEG: small images written by Pillow (greyscale, RGB 4:2:0 and 4:4:4, progressive, CMYK), when it is there
"${PYTHON:-/usr/bin/python3}" - "$B/corpus/jpeg" <<'PYEOF' 2>/dev/null || echo "seeds: no Pillow, no JPEG seeds" >&2
import io, sys
from PIL import Image
d = sys.argv[1]
for name, mode, kw in (("grey", "L", {}), ("rgb420", "RGB", {}), ("rgb444", "RGB", {"subsampling": 0}),
                       ("progressive", "RGB", {"progressive": True}), ("cmyk", "CMYK", {})):
    im = Image.linear_gradient("L").resize((37, 23)).convert(mode)
    im.save(f"{d}/file-{name}.jpg", "JPEG", quality=75, **kw)
PYEOF
# devkit: synthetic meta.mat files (tests/ref/make_devkit.py, compressed, the
# three fields drq reads) with a ground truth, in fuzz_devkit's input format
# (header: mode byte, u32 length of meta.mat), when scipy is there
"${PYTHON:-/usr/bin/python3}" - "$B/corpus/devkit" <<'PYEOF' 2>/dev/null || echo "seeds: no scipy, no devkit seeds" >&2
import os, struct, subprocess, sys, tempfile
d = sys.argv[1]
truth = b"17\n1000\n1\n"
with tempfile.TemporaryDirectory() as t:
    for i, v in enumerate(["good", "good", "dup_id", "leaves_999", "not_struct", "no_synsets", "wnid_not_string"]):
        m = os.path.join(t, "m.mat")
        subprocess.run([sys.executable, "tests/ref/make_devkit.py", "meta", m, "--variant", v, "--compact"], check=True)
        b = open(m, "rb").read()
        mode = [0, 3, 0, 0, 1, 0, 2][i]
        open(f"{d}/file-{i}-{v}", "wb").write(bytes([mode]) + struct.pack("<I", len(b)) + b + truth)
PYEOF
for f in tests/fixtures/*.safetensors; do
    [ "$(stat -c %s "$f")" -le 65536 ] && copy safetensors "$f"
done

for t in safetensors spec model_config proto dataset jpeg devkit; do
    printf 'seeds %s: %d seed files, corpus %d files\n' "$t" \
        "$(find "$B/corpus/$t" -type f \( -name 'seed-*' -o -name 'file-*' -o -name 'preset-*' \) | wc -l)" \
        "$(find "$B/corpus/$t" -type f | wc -l)"
done
exit 0
