#!/usr/bin/env bash
# test_cli_model.sh — `drq model run` and `drq purify` on bad input: every
# case exits 1 with a message naming the problem, never crashes, and writes
# no output file.  Also: `drq purify` on the fixtures gives y in [0,1] and a
# grad_x, and the same call twice is bit-identical.
CLI_TEST=cli
. "$(dirname "$0")/cli_lib.sh"

run=("$BUILD/drq" model run --out "$TMP/out.safetensors")
expect_error bad-arch "expected ddpm-unet, guided-unet, wrn or resnet50" "${run[@]}" --arch resnet --config cifar10 \
    --weights $F/wrn_tiny.weights.safetensors --in $F/wrn_tiny.io.safetensors
expect_error no-weights-file "/nonexistent.safetensors" "${run[@]}" --arch wrn --config $F/wrn_tiny.json \
    --weights /nonexistent.safetensors --in $F/wrn_tiny.io.safetensors
expect_error wrong-config "wrn weights: tensor 'conv1.weight' has shape" "${run[@]}" --arch wrn \
    --config '{"depth":10,"widen":1,"num_classes":10,"in_channels":1}' \
    --weights $F/wrn_tiny.weights.safetensors --in $F/wrn_tiny.io.safetensors
expect_error unet-weights-as-wrn "missing tensor 'conv1.weight'" "${run[@]}" --arch wrn --config $F/wrn_tiny.json \
    --weights $F/unet_tiny.weights.safetensors --in $F/wrn_tiny.io.safetensors
expect_error input-channels "tensor 'x' must be N×1×H×W" "${run[@]}" --arch wrn --config $F/wrn_small.json \
    --weights $F/wrn_small.weights.safetensors --in $F/wrn_tiny.io.safetensors
expect_error unet-input "tensor 'x' must be N×3×H×W" "${run[@]}" --arch ddpm-unet --config $F/unet_tiny.json \
    --weights $F/unet_tiny.weights.safetensors --in $F/wrn_small.io.safetensors
expect_error unet-no-t "the UNet needs tensor 't' with 3 step indices" "${run[@]}" --arch ddpm-unet \
    --config $F/unet_tiny.json --weights $F/unet_tiny.weights.safetensors --in $F/wrn_tiny.io.safetensors
printf 'not a safetensors file' >"$TMP/garbage.safetensors"
expect_error garbage-input "$TMP/garbage.safetensors" "${run[@]}" --arch wrn --config $F/wrn_tiny.json \
    --weights $F/wrn_tiny.weights.safetensors --in "$TMP/garbage.safetensors"
expect_error config-typo "config.widn: unknown key" "${run[@]}" --arch wrn --config '{"depth":10,"widn":1}' \
    --weights $F/wrn_tiny.weights.safetensors --in $F/wrn_tiny.io.safetensors

# drq purify
cat >"$TMP/spec.json" <<JSON
{"name":"p","dataset":{"kind":"mnist","path":"$TMP","count":1},
 "classifier":{"arch":"wrn","config":"$F/wrn_small.json","weights":"$F/wrn_small.weights.safetensors"},
 "diffusion":{"arch":"ddpm-unet","config":"$F/unet_small.json","weights":"$F/unet_small.weights.safetensors"},
 "purifiers":[{"name":"ddpm","kind":"ddpm","t_star":5}],
 "attacks":[{"name":"a","kind":"pgd"}]}
JSON
pur=("$BUILD/drq" purify "$TMP/spec.json" --seed 1 --out "$TMP/out.safetensors")
expect_error purify-name "no purifier named 'ddim'" "${pur[@]}" --purifier ddim --in $F/wrn_small.io.safetensors
expect_error purify-no-file "cannot open" "${pur[@]}" --purifier ddpm --in $F/pgd_ref.safetensors.missing
expect_error purify-no-x "needs a tensor 'x'" "${pur[@]}" --purifier ddpm --in $F/unet_tiny.weights.safetensors
printf '{"name":"p","dataset":{"kind":"mnist"}}' >"$TMP/bad.json"
expect_error purify-spec "dataset.path" "$BUILD/drq" purify "$TMP/bad.json" --purifier ddpm --seed 1 \
    --in $F/wrn_small.io.safetensors --out "$TMP/out.safetensors"

# happy path: wrn_small.io.safetensors holds x (3×1×16×16 in [0,1]) and a grad_y of the logits' shape,
# which is not x's shape: purify must refuse it; pgd_ref holds x only
ok=1
"${pur[@]}" --purifier ddpm --in $F/pgd_ref.safetensors >/dev/null 2>"$TMP/err" || ok=0
cp "$TMP/out.safetensors" "$TMP/a.safetensors" 2>/dev/null || ok=0
"${pur[@]}" --purifier ddpm --in $F/pgd_ref.safetensors >/dev/null 2>>"$TMP/err" || ok=0
cmp -s "$TMP/out.safetensors" "$TMP/a.safetensors" || ok=0
if [ "$ok" -eq 1 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL purify twice: $(cat "$TMP/err")"; fi
expect_error purify-grad-shape "'grad_y' must have the shape of 'x'" "${pur[@]}" --purifier ddpm \
    --in $F/wrn_small.io.safetensors

# a CUDA device that this build or machine lacks is refused clearly
if "$BUILD/drq" devices | grep -q "^cuda: not built"; then
    expect_error worker-cuda "no CUDA backend" "$BUILD/drq-worker" --server tcp://127.0.0.1:1 --device cuda:0
    expect_error model-cuda "no CUDA backend" "$BUILD/drq" model bench --arch wrn --config '{"depth":10,"widen":1}' --device cuda:0
    expect_error purify-cuda "no CUDA backend" "${pur[@]}" --purifier ddpm --in $F/pgd_ref.safetensors --device cuda:0
elif "$BUILD/drq" devices | grep -q "^cuda: no GPU visible"; then
    expect_error worker-cuda "cuda:0 does not exist" "$BUILD/drq-worker" --server tcp://127.0.0.1:1 --device cuda:0
    expect_error worker-all-gpus "no GPU visible" "$BUILD/drq-worker" --server tcp://127.0.0.1:1 --devices all
    expect_error model-cuda "cuda:0 does not exist" "$BUILD/drq" model bench --arch wrn --config '{"depth":10,"widen":1}' --device cuda:0
    expect_error purify-cuda "cuda:0 does not exist" "${pur[@]}" --purifier ddpm --in $F/pgd_ref.safetensors --device cuda:0
fi
expect_error model-bad-precision "--precision: expected tf32, fp32 or bf16" "$BUILD/drq" model bench --arch wrn \
    --config '{"depth":10,"widen":1,"num_classes":10,"in_channels":3}' --precision fp16
expect_error model-bf16-arch "--precision bf16: built for --arch guided-unet only" "${run[@]}" --arch wrn \
    --config $F/wrn_tiny.json --weights $F/wrn_tiny.weights.safetensors --in $F/wrn_tiny.io.safetensors --precision bf16
# --precision bf16 on the guided-unet fixture: runs, and differs from fp32 (tests/test_bf16.c checks the values)
ok=1
for prec in fp32 bf16; do
    "$BUILD/drq" model run --arch guided-unet --config $F/guided_plain.json --weights $F/guided_plain.weights.safetensors \
        --in $F/guided_plain.io.safetensors --out "$TMP/$prec.safetensors" --precision $prec >/dev/null 2>"$TMP/stderr" || ok=0
done
[ $ok = 1 ] && ! cmp -s "$TMP/fp32.safetensors" "$TMP/bf16.safetensors" || ok=0
if [ $ok = 1 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL model-run-bf16: $(head -c 300 "$TMP/stderr")"; fi
expect_error worker-bad-device "expected cpu or cuda:N" "$BUILD/drq-worker" --server tcp://127.0.0.1:1 --device gpu0
expect_error worker-devices-twice "GPU 0 listed twice" "$BUILD/drq-worker" --server tcp://127.0.0.1:1 --devices 0,0
expect_error worker-devices-bad "expected all or a list of GPU indices" "$BUILD/drq-worker" --server tcp://127.0.0.1:1 --devices 0,x
# --devices I,J: the supervisor starts one child per listed GPU, each told its device; without
# those GPUs every child refuses, and the supervisor exits with the worst status
ok=1
"$BUILD/drq-worker" --server tcp://127.0.0.1:1 --devices 0,2 --name w --device cpu >"$TMP/stdout" 2>"$TMP/stderr"
rc=$?
[ "$rc" -eq 1 ] || ok=0
grep -q "device cuda:0" "$TMP/stderr" || ok=0
grep -q "device cuda:2" "$TMP/stderr" || ok=0
[ "$(grep -c "drq-worker: device cuda" "$TMP/stderr")" -eq 2 ] || ok=0
if [ "$ok" -eq 1 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL worker-devices-list: rc=$rc $(cat "$TMP/stderr")"; fi

echo "RESULT $pass $fail"
[ "$fail" -eq 0 ]
