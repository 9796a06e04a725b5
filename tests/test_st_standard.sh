#!/usr/bin/env bash
# test_st_standard.sh — a WRN state_dict saved the way RobustBench users save
# it (safetensors.torch.save_file of model.state_dict(): F32 weights plus an
# I64 num_batches_tracked per BatchNorm, the library's layout: sorted by
# dtype then name, "__metadata__" first, 8-byte header padding) loads
# unchanged in `drq model run` and gives the original-named file's outputs
# bit for bit, within the float64 oracle's tolerance.  The file is written by
# tests/ref/st_layout.py (Python standard library; with the safetensors
# package installed, by the library itself).  BUILD selects the build folder.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/drq_ststd.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
PY=$(command -v python3 || command -v /usr/bin/python3 || true)
if [ -z "$PY" ]; then echo "SKIP test_st_standard.sh: no python3 to write the files"; echo "RESULT 0 0 1"; exit 0; fi
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

for name in wrn_tiny wrn_small; do
    fx=tests/fixtures/$name
    st=$TMP/$name.robustbench.safetensors
    "$PY" tests/ref/st_layout.py robustbench "$fx.weights.safetensors" "$st" || { bad "$name: writer failed"; continue; }
    # the header really holds I64 tensors, first (the library's order)
    hdr=$(head -c 400 "$st" | tail -c +9)
    if [[ "$hdr" == '{"__metadata__":{"format":"pt"},"'*'num_batches_tracked":{"dtype":"I64","shape":[],"data_offsets":[0,8]}'* ]]; then ok; else bad "$name: header is not the library's layout: ${hdr:0:160}"; fi
    "$BUILD/drq" model run --arch wrn --config "$fx.json" --weights "$fx.weights.safetensors" \
        --in "$fx.io.safetensors" --out "$TMP/orig.safetensors" || { bad "$name: original file"; continue; }
    if "$BUILD/drq" model run --arch wrn --config "$fx.json" --weights "$st" --in "$fx.io.safetensors" \
        --out "$TMP/std.safetensors"; then ok; else bad "$name: drq model run refused the library-layout file"; continue; fi
    if cmp -s "$TMP/orig.safetensors" "$TMP/std.safetensors"; then ok; else bad "$name: outputs differ from the original file's"; fi
    out=$("$BUILD/tests/tool_stcmp" "$TMP/std.safetensors" "$fx.io.safetensors" --only y,grad_x --tol y=1e-5 --tol grad_x=1e-4 2>&1)
    if [ $? -eq 0 ]; then ok; else bad "$name: parity with the oracle: $out"; fi
done
echo "RESULT $pass $fail"
[ "$fail" -eq 0 ]
