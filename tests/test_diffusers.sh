#!/usr/bin/env bash
# test_diffusers.sh — the DDPM UNet under diffusers key names (the layout of
# google/ddpm-cifar10-32's diffusion_pytorch_model.safetensors) loads unchanged:
# for each UNet fixture, tests/ref/st_layout.py renames the original (pesser)
# file's tensors per the diffusers map (both attention namings, q/k/v/proj_out
# as Linear [C, C]) and writes it in the safetensors library's layout; `drq
# model run` on it must give the original file's y and grad_x bit for bit —
# names detected, and with "format": "diffusers" in the config.  Wrong
# combinations are refused naming a tensor.  BUILD selects the build folder.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/drq_diffusers.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
PY=$(command -v python3 || command -v /usr/bin/python3 || true)
if [ -z "$PY" ]; then echo "SKIP test_diffusers.sh: no python3 to write the files"; echo "RESULT 0 0 1"; exit 0; fi
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
run() { "$BUILD/drq" model run --arch ddpm-unet "$@" 2>"$TMP/err"; }
# a config file like FX.json with "format": F added
with_format() { sed -e "s/}[[:space:]]*\$/, \"format\": \"$2\"}/" "$1"; }

for name in unet_tiny unet_small; do
    fx=tests/fixtures/$name
    echo "== $name"
    run --config "$fx.json" --weights "$fx.weights.safetensors" --in "$fx.io.safetensors" --out "$TMP/orig.st" ||
        { bad "$name: original file: $(cat "$TMP/err")"; continue; }
    with_format "$fx.json" diffusers >"$TMP/cfg_diffusers.json"
    with_format "$fx.json" original >"$TMP/cfg_original.json"
    for attn in new old; do
        st=$TMP/$name.$attn.safetensors
        "$PY" tests/ref/st_layout.py diffusers "$fx.weights.safetensors" "$st" --attn "$attn" >/dev/null ||
            { bad "$name/$attn: writer failed"; continue; }
        want=to_q
        [ "$attn" = old ] && want=query
        if grep -aq "\"down_blocks.0.resnets.0.time_emb_proj.weight\"" "$st" && grep -aq "attentions.0.$want.weight\"" "$st" &&
            ! grep -aq '"down.0.block' "$st"; then ok; else bad "$name/$attn: the file does not have diffusers names"; fi
        # names detected
        if run --config "$fx.json" --weights "$st" --in "$fx.io.safetensors" --out "$TMP/d.st"; then ok
        else bad "$name/$attn: refused: $(cat "$TMP/err")"; continue; fi
        if cmp -s "$TMP/orig.st" "$TMP/d.st"; then ok; else bad "$name/$attn: outputs differ from the original file's"; fi
        # "format": "diffusers" in the config
        if run --config "$TMP/cfg_diffusers.json" --weights "$st" --in "$fx.io.safetensors" --out "$TMP/f.st" &&
            cmp -s "$TMP/orig.st" "$TMP/f.st"; then ok; else bad "$name/$attn: with format diffusers: $(cat "$TMP/err")"; fi
        # "format": "original" turns the map off: the file is refused, naming a tensor
        if run --config "$TMP/cfg_original.json" --weights "$st" --in "$fx.io.safetensors" --out "$TMP/x.st"; then
            bad "$name/$attn: format original accepted diffusers names"
        elif grep -q "missing tensor 'temb.dense.0.weight'" "$TMP/err"; then ok
        else bad "$name/$attn: unexpected error: $(cat "$TMP/err")"; fi
    done
    # format diffusers on the original file: refused, naming a tensor
    if run --config "$TMP/cfg_diffusers.json" --weights "$fx.weights.safetensors" --in "$fx.io.safetensors" --out "$TMP/x.st"; then
        bad "$name: format diffusers accepted original names"
    elif grep -q "missing tensor" "$TMP/err"; then ok; else bad "$name: unexpected error: $(cat "$TMP/err")"; fi
done

# a file with both attention namings of the same tensor is refused, naming both
"$PY" - "$TMP/unet_tiny.new.safetensors" "$TMP/both.safetensors" <<'PYEOF'
import sys
sys.path.insert(0, "tests/ref")
import st_layout as s
meta, t = s.read_raw(sys.argv[1])
k = next(k for k in t if k.endswith("to_q.weight"))
t[k.replace("to_q", "query")] = t[k]
s.write_standard(sys.argv[2], t, meta)
PYEOF
if run --config tests/fixtures/unet_tiny.json --weights "$TMP/both.safetensors" --in tests/fixtures/unet_tiny.io.safetensors --out "$TMP/x.st"; then
    bad "both namings accepted"
elif grep -q "both stand for" "$TMP/err"; then ok; else bad "both namings: unexpected error: $(cat "$TMP/err")"; fi
# a bad format value names the key
if run --config "$(with_format tests/fixtures/unet_tiny.json pesser2)" --weights tests/fixtures/unet_tiny.weights.safetensors \
    --in tests/fixtures/unet_tiny.io.safetensors --out "$TMP/x.st"; then bad "format pesser2 accepted"
elif grep -q "config.format" "$TMP/err"; then ok; else bad "bad format: $(cat "$TMP/err")"; fi
echo "RESULT $pass $fail"
[ "$fail" -eq 0 ]
