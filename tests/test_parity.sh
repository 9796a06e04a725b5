#!/usr/bin/env bash
# test_parity.sh — drq's DDPM UNet, ADM UNet (guided-unet), WideResNet and
# ResNet-50 against the PyTorch float64 oracle (tests/ref/ref_models.py,
# ref_guided.py, ref_resnet.py) on the small fixtures of tests/fixtures:
# forward output y (rel L2 ≤ 1e-5) and input VJP grad_x (rel L2 ≤ 1e-4).
# Regenerate the fixtures with
#   /usr/bin/python3 tests/ref/gen_fixtures.py --out tests/fixtures
# BUILD selects the build folder (default build).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/drq_parity.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

status=0
for spec in ddpm-unet:unet_tiny ddpm-unet:unet_small guided-unet:guided_tiny guided-unet:guided_plain wrn:wrn_tiny \
    wrn:wrn_small resnet50:resnet_tiny; do
    arch=${spec%%:*}
    name=${spec#*:}
    fx=tests/fixtures/$name
    out=$TMP/$name.out.safetensors
    echo "== $name ($arch)"
    missing=0
    for f in "$fx.json" "$fx.weights.safetensors" "$fx.io.safetensors"; do
        [ -f "$f" ] || { echo "FAIL $name: missing fixture $f"; missing=1; }
    done
    if [ "$missing" -ne 0 ]; then echo "RESULT 0 1"; status=1; continue; fi

    "$BUILD/drq" model run --arch "$arch" --config "$fx.json" --weights "$fx.weights.safetensors" \
        --in "$fx.io.safetensors" --out "$out"
    rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "FAIL $name: drq model run exited with status $rc"
        echo "RESULT 0 1"
        status=1
        continue
    fi

    cmp_out=$("$BUILD/tests/tool_stcmp" "$out" "$fx.io.safetensors" --only y,grad_x \
        --tol y=1e-5 --tol grad_x=1e-4 2>&1)
    rc=$?
    echo "$cmp_out"
    # a comparison that died without reporting still counts as a failure
    if ! grep -qE '^RESULT [0-9]+ [0-9]+$' <<<"$cmp_out"; then echo "RESULT 0 1"; fi
    [ "$rc" -eq 0 ] || status=1
done
exit $status
