#!/usr/bin/env bash
# test_dryrun.sh — `drq run --dry-run` and `drq submit --dry-run`: the counts
# of a small spec against hand-computed numbers, no database or log written,
# no server contacted, the CPU rates measured once and then read from the
# cache (~/.cache/drq/rates.json under a temporary HOME), missing weights and
# dataset files allowed, and examples/cifar10-paper.json's counts.
# BUILD selects the build folder.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD:-build}
DRQ=$ROOT/$BUILD/drq
TMP=$(mktemp -d "${TMPDIR:-/tmp}/drq_dryrun.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
export HOME=$TMP/home XDG_CACHE_HOME=
mkdir -p "$HOME" "$TMP/cwd"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
expect() { # FILE KEY VALUE: the line "KEY: VALUE ..." is there
    if grep -q "^$2: $3\( \|\$\)" "$1"; then ok; else bad "$2: expected $3, got: $(grep "^$2:" "$1")"; fi
}

# 3 purifiers (none S=0, ddpm t*=4 S=4, ddim t*=5 stride 2 S=3) x 3 attacks x 2 seeds x 3 shards (10 images, 4 per shard)
cat >"$TMP/dry.json" <<JSON
{"name": "dry",
 "dataset": {"kind": "fashion-mnist", "path": "$TMP/no-such-dataset", "count": 10},
 "classifier": {"arch": "wrn", "config": "$ROOT/examples/models/fmnist-wrn.json", "weights": "$TMP/missing-wrn.safetensors"},
 "diffusion": {"arch": "ddpm-unet", "config": "$ROOT/examples/models/fmnist-ddpm.json", "weights": "$ROOT/examples/models/fmnist-ddpm.safetensors"},
 "purifiers": [{"name": "none", "kind": "none"}, {"name": "ddpm", "kind": "ddpm", "t_star": 4},
               {"name": "ddim", "kind": "ddim", "t_star": 5, "stride": 2}],
 "attacks": [{"name": "fixed", "kind": "pgd", "steps": 2, "n_uniform": 1},
             {"name": "eot", "kind": "pgd", "steps": 1, "randomness": "eot", "eot_k": 3, "votes": 2, "n_uniform": 0},
             {"name": "bpda", "kind": "bpda", "steps": 2, "n_uniform": 2}],
 "seeds": [0, 1], "shard": {"images": 4}}
JSON
# Per image and seed, S steps (cli/cmd_dryrun.c):
#   fixed: UNet fwd 2·S·2 + 2·S + 3·S = 9S, VJP 2S; classifier fwd 2 + 2 = 4, VJP 2
#   eot:   UNet fwd 3·S·2 + 2·2·S + 2·S = 12S, VJP 3S; classifier fwd 3 + 4 = 7, VJP 3
#   bpda:  UNet fwd 2·S + 2·S + 4·S = 8S, VJP 0; classifier fwd 4, VJP 2
# ΣS = 0 + 4 + 3 = 7 over purifiers, 10 images × 2 seeds = 20:
#   UNet fwd 29·7·20 = 4060, VJP 5·7·20 = 700; classifier fwd 15·3·20 = 900, VJP 7·3·20 = 420
cd "$TMP/cwd"
if "$DRQ" run --dry-run "$TMP/dry.json" --threads 1 --batch 2 >"$TMP/out1" 2>"$TMP/err1"; then ok
else bad "drq run --dry-run failed: $(cat "$TMP/err1")"; fi
cat "$TMP/out1"
expect "$TMP/out1" jobs 54
expect "$TMP/out1" rows 180
expect "$TMP/out1" unet_forward 4060
expect "$TMP/out1" unet_vjp 700
expect "$TMP/out1" classifier_forward 900
expect "$TMP/out1" classifier_vjp 420
grep -q "missing-wrn.safetensors MISSING" "$TMP/out1" && ok || bad "the missing weights file is not said"
grep -q "measured now" "$TMP/out1" && ok || bad "first run did not measure"
grep -q "^estimate cpu: " "$TMP/out1" && ok || bad "no cpu estimate"
grep -q "^estimate cuda: unknown" "$TMP/out1" && ok || bad "no cuda line"
grep -q "^peak_memory_per_worker: [1-9][0-9]* bytes" "$TMP/out1" && ok || bad "no peak memory"
[ -s "$HOME/.cache/drq/rates.json" ] && ok || bad "no rate cache written"
# nothing written where a run writes: no database, no log
if [ -z "$(ls -A "$TMP/cwd")" ]; then ok; else bad "dry run wrote files: $(ls -A "$TMP/cwd")"; fi
# second run: rates from the cache, same counts
"$DRQ" run --dry-run "$TMP/dry.json" --threads 1 --batch 2 >"$TMP/out2" 2>&1 || bad "second dry run failed"
grep -q "cached in)" "$TMP/out2" && ok || bad "second run did not use the cache: $(grep rates "$TMP/out2")"
diff <(grep -E '^(jobs|rows|unet|classifier|flops)' "$TMP/out1") <(grep -E '^(jobs|rows|unet|classifier|flops)' "$TMP/out2") >/dev/null && ok || bad "counts differ between runs"
# submit --dry-run: no server on this port, yet it succeeds (nothing is sent)
if timeout 60 "$DRQ" submit --dry-run "$TMP/dry.json" --server tcp://127.0.0.1:9 --threads 1 --batch 2 >"$TMP/out3" 2>"$TMP/err3"; then ok
else bad "drq submit --dry-run failed: $(cat "$TMP/err3")"; fi
expect "$TMP/out3" jobs 54
expect "$TMP/out3" unet_forward 4060
grep -q "per worker of 1 thread" "$TMP/out3" && ok || bad "submit estimate not per worker"
if [ -z "$(ls -A "$TMP/cwd")" ]; then ok; else bad "submit dry run wrote files: $(ls -A "$TMP/cwd")"; fi
# a bad spec is still an error
echo '{"name": "x"}' >"$TMP/bad.json"
if "$DRQ" run --dry-run "$TMP/bad.json" >/dev/null 2>&1; then bad "bad spec accepted"; else ok; fi

# the paper's sweep: counts only (its rates were cached above for other models; this measures the CIFAR-10 ones
# unless DRQ_DRYRUN_PAPER=0)
cd "$ROOT"
if [ "${DRQ_DRYRUN_PAPER:-1}" = 1 ]; then
    "$DRQ" run --dry-run examples/cifar10-paper.json --threads 1 --batch 1 >"$TMP/paper" 2>&1 || bad "paper dry run: $(cat "$TMP/paper")"
    # per image and seed: S = 100 (ddpm), 100 (reverse), 10 (ddim); UNet fwd per S: fixed/fresh/transfer 85, eot 1205, bpda 45
    expect "$TMP/paper" jobs 5625
    expect "$TMP/paper" rows 45000
    expect "$TMP/paper" unet_forward 948150000
    expect "$TMP/paper" unet_vjp 453600000
fi
echo "RESULT $pass $fail"
[ "$fail" -eq 0 ]
