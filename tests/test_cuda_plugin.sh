#!/usr/bin/env bash
# test_cuda_plugin.sh — the CUDA backend as a plugin (issue 13 deliverable 4,
# kernels/cuda_plugin.h, docs/cuda.md §Build): drq, drq-server and drq-worker
# link no CUDA library, start and answer with the library path pointing
# nowhere, and load $BUILD/libdrq-cuda.so only when a GPU is asked for; a
# missing plugin, a plugin whose CUDA library is missing, or a .so that is not
# a drq plugin is a clear error of the GPU request (naming the file), and
# `drq devices` reports it and exits 0.  With the real plugin on a machine
# without a GPU driver, `drq devices` says the plugin loaded and no GPU is
# visible.  In a CPU-only build the same requests say the build has no CUDA
# backend.
cd "$(dirname "$0")/.." || exit 1
B=${BUILD:-build}
PASS=0 FAIL=0 SKIPPED=0
T=$(mktemp -d /tmp/drq-cuda-plugin-test.XXXXXX)
trap 'rm -rf "$T"' EXIT
check() { local what=$1; shift; if "$@"; then PASS=$((PASS + 1)); else FAIL=$((FAIL + 1)); echo "FAIL: $what"; fi; }
# expect NAME RC PATTERN CMD...: CMD exits RC and its stdout+stderr matches PATTERN (grep -E)
expect() {
    local what=$1 rc=$2 pat=$3; shift 3
    "$@" >"$T/out" 2>&1
    local got=$?
    if [ "$got" -eq "$rc" ] && grep -qE -- "$pat" "$T/out"; then PASS=$((PASS + 1)); else
        FAIL=$((FAIL + 1)); echo "FAIL: $what (exit $got, want $rc; want /$pat/ in:)"; sed 's/^/    /' "$T/out"; fi
}
echo '{"name":"p","dataset":{"kind":"none","count":2},"attacks":[{"name":"a","kind":"noop","ms_per_image":1}]}' >"$T/spec.json"

for p in drq drq-server drq-worker; do
    check "$p links no CUDA library" sh -c "! ldd $B/$p | grep -qE 'libcudnn|libcublas|libcudart|libcuda\\.so'"
done
# the CUDA toolkit off the library path: the programs start all the same
export LD_LIBRARY_PATH=/nonexistent
expect "drq --help without CUDA libraries" 0 "usage|Usage" "$B/drq" --help
expect "drq-worker --help without CUDA libraries" 0 "usage|Usage" "$B/drq-worker" --help
expect "drq devices without CUDA libraries" 0 "^cpu: " "$B/drq" devices
unset LD_LIBRARY_PATH

if [ "$(make -s --no-print-directory print-CUDA BUILD="$B")" != 1 ] || [ ! -e "$B/libdrq-cuda.so" ]; then
    check "CPU-only build: no plugin built" test ! -e "$B/libdrq-cuda.so"
    expect "CPU-only: drq devices" 0 "^cuda: not built" "$B/drq" devices
    expect "CPU-only: drq run --device cuda:0" 1 "cuda:0: this build has no CUDA backend" \
        "$B/drq" run "$T/spec.json" --db "$T/db" --device cuda:0
    echo "RESULT $PASS $FAIL $SKIPPED"
    exit 0
fi

check "the plugin exports drq_cuda_plugin_v1 only" \
    sh -c "[ \"\$(nm -D --defined-only $B/libdrq-cuda.so | awk '{print \$3}')\" = drq_cuda_plugin_v1 ]"
check "the plugin links cuDNN, cuBLAS and the CUDA runtime" \
    sh -c "ldd $B/libdrq-cuda.so | grep -q libcudnn && ldd $B/libdrq-cuda.so | grep -q libcublas && ldd $B/libdrq-cuda.so | grep -q libcudart"

# a missing plugin: only a GPU request fails, naming the plugin
export DRQ_CUDA_PLUGIN=/nonexistent/libdrq-cuda.so
expect "no plugin: drq --help" 0 "usage|Usage" "$B/drq" --help
expect "no plugin: drq devices" 0 "^cuda: plugin not loadable: CUDA plugin /nonexistent/libdrq-cuda.so \(DRQ_CUDA_PLUGIN\) does not exist" \
    "$B/drq" devices
expect "no plugin: drq run --device cuda:0" 1 "device cuda:0: CUDA plugin /nonexistent/libdrq-cuda.so" \
    "$B/drq" run "$T/spec.json" --db "$T/db1" --device cuda:0
expect "no plugin: drq run --device cpu" 0 "" "$B/drq" run "$T/spec.json" --db "$T/db2" --device cpu
expect "no plugin: drq-worker --devices all" 1 "--devices all: CUDA plugin /nonexistent/libdrq-cuda.so" \
    "$B/drq-worker" --server tcp://127.0.0.1:1 --devices all
expect "no plugin: drq-worker --device cuda:0" 1 "CUDA plugin /nonexistent/libdrq-cuda.so" \
    "$B/drq-worker" --server tcp://127.0.0.1:1 --device cuda:0

# a plugin whose CUDA library is missing: dlerror names the library
mkdir -p "$T/fake"
echo 'int fake_cudnn;' | cc -shared -fPIC -x c - -Wl,-soname,libcudnn.so.99 -o "$T/fake/libcudnn.so.99"
echo 'extern int fake_cudnn; int *drq_cuda_plugin_v1(void) { return &fake_cudnn; }' |
    cc -shared -fPIC -x c - -L"$T/fake" -l:libcudnn.so.99 -o "$T/fake/libdrq-cuda.so"
rm -f "$T/fake/libcudnn.so.99"
export DRQ_CUDA_PLUGIN=$T/fake/libdrq-cuda.so
expect "missing CUDA library: drq devices names it" 0 "^cuda: plugin not loadable: cannot load the CUDA plugin .*libcudnn.so.99: cannot open shared object file" \
    "$B/drq" devices
expect "missing CUDA library: drq run --device cuda:0 names it" 1 "device cuda:0: cannot load the CUDA plugin .*libcudnn.so.99" \
    "$B/drq" run "$T/spec.json" --db "$T/db3" --device cuda:0
# a .so that is not a drq plugin
echo 'int other;' | cc -shared -fPIC -x c - -o "$T/fake/other.so"
DRQ_CUDA_PLUGIN=$T/fake/other.so expect "not a plugin" 0 "has no drq_cuda_plugin_v1" "$B/drq" devices
unset DRQ_CUDA_PLUGIN

# the real plugin, found next to the executable; a copy of the programs elsewhere finds its own copy
expect "real plugin: drq devices" 0 "^cuda: plugin $(cd "$B" && pwd)/libdrq-cuda.so loaded" "$B/drq" devices
if [ ! -e /dev/nvidiactl ]; then
    expect "real plugin, no driver: no GPU visible" 0 "^cuda: no GPU visible to this process" "$B/drq" devices
    expect "real plugin, no driver: drq run --device cuda:0" 1 "cuda:0" \
        "$B/drq" run "$T/spec.json" --db "$T/db4" --device cuda:0
else
    SKIPPED=$((SKIPPED + 1)); echo "SKIP: a GPU driver is present: the no-GPU answers are not checked"
fi
mkdir -p "$T/bin" "$T/lib"
cp "$B/drq" "$T/bin/"
expect "plugin missing next to a copied drq" 0 "^cuda: plugin not loadable: CUDA plugin libdrq-cuda.so not found next to the executable \($T/bin/" \
    "$T/bin/drq" devices
cp "$B/libdrq-cuda.so" "$T/lib/"
expect "plugin in ../lib of a copied drq" 0 "^cuda: plugin $T/bin/../lib/libdrq-cuda.so loaded" "$T/bin/drq" devices

echo "RESULT $PASS $FAIL $SKIPPED"
