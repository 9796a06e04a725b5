#!/usr/bin/env bash
# test_guided_cli.sh — the ADM UNet (guided-unet) through the command line:
# `drq model run --arch guided-unet` refuses bad configs and weights with a
# message naming the key or tensor (exit 1, no output file); --mem-budget
# (checkpointing inside the UNet) changes no bit of the result; `drq purify`
# with a spec whose diffusion model is a guided-unet purifies 28×28 images
# through the 32×32 fixture model (resizing in and out), giving y and grad_x
# of x's shape, bit-identical when run twice.  "precision": "bf16" (issue 17)
# through both paths: --precision bf16 with checkpointing is bit-identical to
# without, and a spec's diffusion.precision reaches the model (another result
# than fp32, the same twice).
CLI_TEST=guided
. "$(dirname "$0")/cli_lib.sh"

run=("$BUILD/drq" model run --arch guided-unet --out "$TMP/out.safetensors" --in $F/guided_tiny.io.safetensors)
tiny=$(cat $F/guided_tiny.json)
expect_error missing-tensor "guided-unet weights: missing tensor 'time_embed.0.weight'" "${run[@]}" \
    --config $F/guided_tiny.json --weights $F/unet_tiny.weights.safetensors
expect_error mis-shaped "tensor 'out.2.weight' has shape" "${run[@]}" \
    --config "${tiny/\"learn_sigma\": true/\"learn_sigma\": false}" --weights $F/guided_tiny.weights.safetensors
expect_error class-cond "config.class_cond: class-conditional models are not built" "${run[@]}" \
    --config "${tiny%\}}, \"class_cond\": true}" --weights $F/guided_tiny.weights.safetensors
expect_error new-order "config.use_new_attention_order" "${run[@]}" \
    --config "${tiny%\}}, \"use_new_attention_order\": true}" --weights $F/guided_tiny.weights.safetensors
expect_error heads "config.num_head_channels: 64 channels at an attention resolution do not split" "${run[@]}" \
    --config "${tiny/\"num_head_channels\": 16/\"num_head_channels\": 24}" --weights $F/guided_tiny.weights.safetensors
expect_error typo "config.num_chanels: unknown key" "${run[@]}" --config '{"num_chanels": 32}' \
    --weights $F/guided_tiny.weights.safetensors
expect_error no-default-mult "config.channel_mult: missing, and image_size 32 has no default" "${run[@]}" \
    --config '{"image_size":32,"num_channels":32,"num_res_blocks":1,"attention_resolutions":[]}' \
    --weights $F/guided_tiny.weights.safetensors
expect_error preset-wrong-weights "missing tensor 'time_embed.0.weight'" "${run[@]}" --config imagenet256 \
    --weights $F/unet_tiny.weights.safetensors

expect_error budget-other-arch "--mem-budget: only the guided-unet" "$BUILD/drq" model run --arch wrn \
    --config $F/wrn_tiny.json --weights $F/wrn_tiny.weights.safetensors --in $F/wrn_tiny.io.safetensors \
    --out "$TMP/out.safetensors" --mem-budget 1

# --mem-budget 1 (MiB; the fixture's batch needs more): checkpointed, bit-identical to the plain run
ok=1
for b in 0 1; do
    "$BUILD/drq" model run --arch guided-unet --config $F/guided_tiny.json --weights $F/guided_tiny.weights.safetensors \
        --in $F/guided_tiny.io.safetensors --out "$TMP/b$b.safetensors" --mem-budget $b 2>>"$TMP/err" || ok=0
done
"$BUILD/tests/tool_stcmp" "$TMP/b1.safetensors" "$TMP/b0.safetensors" --default-tol 0 >/dev/null 2>&1 || ok=0
if [ "$ok" -eq 1 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL --mem-budget: $(cat "$TMP/err")"; fi
# the same with --precision bf16 (issue 17): checkpointing recomputes the rounded ops bit for bit
ok=1
for b in 0 1; do
    "$BUILD/drq" model run --arch guided-unet --config $F/guided_tiny.json --weights $F/guided_tiny.weights.safetensors \
        --in $F/guided_tiny.io.safetensors --out "$TMP/h$b.safetensors" --mem-budget $b --precision bf16 2>>"$TMP/err" || ok=0
done
"$BUILD/tests/tool_stcmp" "$TMP/h1.safetensors" "$TMP/h0.safetensors" --default-tol 0 >/dev/null 2>&1 || ok=0
if [ "$ok" -eq 1 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL --mem-budget bf16: $(cat "$TMP/err")"; fi

expect_error run-budget "drq run: --mem-budget: expected mebibytes" "$BUILD/drq" run "$TMP/none.json" \
    --mem-budget 2x
expect_error worker-budget "drq-worker: --mem-budget: expected mebibytes" "$BUILD/drq-worker" \
    --server tcp://127.0.0.1:1 --mem-budget -3
expect_error purify-budget "drq purify: --mem-budget: expected mebibytes" "$BUILD/drq" purify "$TMP/none.json" \
    --purifier p --seed 0 --in x --out "$TMP/out.safetensors" --mem-budget 99999999999

# drq purify through a guided-unet spec
cat >"$TMP/spec.json" <<JSON
{"name":"p","dataset":{"kind":"mnist","path":"$TMP","count":1},
 "classifier":{"arch":"wrn","config":"$F/wrn_tiny.json","weights":"$F/wrn_tiny.weights.safetensors"},
 "diffusion":{"arch":"guided-unet","config":"$F/guided_tiny.json","weights":"$F/guided_tiny.weights.safetensors"},
 "purifiers":[{"name":"ddpm","kind":"ddpm","t_star":3}],
 "attacks":[{"name":"a","kind":"pgd"}]}
JSON
pur=("$BUILD/drq" purify "$TMP/spec.json" --seed 1 --purifier ddpm --in $F/guided_purify.safetensors)
ok=1
"${pur[@]}" --out "$TMP/a.safetensors" >/dev/null 2>"$TMP/err" || ok=0
"${pur[@]}" --out "$TMP/b.safetensors" >/dev/null 2>>"$TMP/err" || ok=0
cmp -s "$TMP/a.safetensors" "$TMP/b.safetensors" || ok=0
if [ "$ok" -eq 1 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL purify twice: $(cat "$TMP/err")"; fi
# "precision": "bf16" on the diffusion model reaches the model through spec → engine: another
# result than fp32, the same twice
sed 's|"weights":"'$F'/guided_tiny.weights.safetensors"}|"weights":"'$F'/guided_tiny.weights.safetensors","precision":"bf16"}|' \
    "$TMP/spec.json" >"$TMP/spec16.json"
pur16=("$BUILD/drq" purify "$TMP/spec16.json" --seed 1 --purifier ddpm --in $F/guided_purify.safetensors)
ok=1
grep -q '"precision":"bf16"' "$TMP/spec16.json" || ok=0
"${pur16[@]}" --out "$TMP/c.safetensors" >/dev/null 2>"$TMP/err" || ok=0
"${pur16[@]}" --out "$TMP/d.safetensors" >/dev/null 2>>"$TMP/err" || ok=0
cmp -s "$TMP/c.safetensors" "$TMP/d.safetensors" || ok=0
cmp -s "$TMP/a.safetensors" "$TMP/c.safetensors" && ok=0
if [ "$ok" -eq 1 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL purify bf16: $(cat "$TMP/err")"; fi
check=$("$BUILD/tests/tool_stcmp" "$TMP/a.safetensors" "$TMP/a.safetensors" --only y,grad_x 2>&1)
if grep -q "y  *\[2,3,28,28\]" <<<"$check" && grep -q "grad_x  *\[2,3,28,28\]" <<<"$check"; then
    pass=$((pass + 1))
else
    fail=$((fail + 1)); echo "FAIL purify output shapes: $check"
fi

echo "RESULT $pass $fail"
[ "$fail" -eq 0 ]
