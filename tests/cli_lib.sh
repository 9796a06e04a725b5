# cli_lib.sh — helpers sourced by the command-line tests of `drq model` and
# `drq purify` (test_cli_model.sh, test_guided_cli.sh; not a test itself).
# Each test gets its own temp dir ($TMP, removed on exit) and counts its
# checks in pass / fail; it ends with `echo "RESULT $pass $fail"`.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/drq_${CLI_TEST:-cli}.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
pass=0 fail=0
F=tests/fixtures

# expect_error NAME WANT CMD... : exit status 1, WANT in stderr, no OUT written
expect_error() {
    local name=$1 want=$2
    shift 2
    rm -f "$TMP/out.safetensors"
    "$@" >"$TMP/stdout" 2>"$TMP/stderr"
    local rc=$?
    if [ "$rc" -eq 1 ] && grep -qF -- "$want" "$TMP/stderr" && [ ! -e "$TMP/out.safetensors" ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL $name: rc=$rc, wanted \"$want\" in: $(head -c 300 "$TMP/stderr")"
    fi
}
