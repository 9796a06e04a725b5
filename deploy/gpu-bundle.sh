#!/usr/bin/env bash
# gpu-bundle.sh — packs the CUDA build's GPU test and benchmark programs with
# the Debian libraries they need into $BUILD/gpu-bundle/, for a GPU machine
# that has the CUDA runtime, cuBLAS, cuDNN (pip nvidia-* wheels) and PyTorch
# but no Debian packages and no network (docs/cuda.md, "On a lent GPU
# machine").  Each program gets a wrapper script of its name in the bundle
# that sets the library path and runs it.  The CUDA backend is the plugin
# libdrq-cuda.so (kernels/cuda_plugin.h), carried in bin/ next to the
# programs, where they look for it.
set -euo pipefail
B=${BUILD:-build}
OUT=$B/gpu-bundle
progs=("$B/drq" "$B/drq-worker" "$B/tests/cuda_test" "$B/tests/cuda_bench_pgd")
plugin=$B/libdrq-cuda.so
for p in "${progs[@]}" "$plugin"; do [ -x "$p" ] || { echo "gpu-bundle: $p is missing (run make first, in a CUDA build)" >&2; exit 1; }; done
rm -rf "$OUT"
mkdir -p "$OUT/bin" "$OUT/lib"
cp "${progs[@]}" "$plugin" "$OUT/bin/"
for p in "$OUT"/bin/*; do case $p in *.so) strip --strip-unneeded "$p" ;; *) strip "$p" ;; esac; done
# shared libraries outside glibc/libstdc++ and the CUDA toolkit (the GPU machine brings those)
for p in "$OUT"/bin/*; do ldd "$p"; done | awk '/=> \//{print $3}' | sort -u |
    grep -v -E '/(libc|libm|libpthread|libdl|librt|libresolv|libutil|libgcc_s|libstdc\+\+|ld-linux[^/]*)\.so' |
    grep -v -E '/(usr/local/cuda|.*cuda-[0-9.]+)/' |
    while read -r lib; do cp -L "$lib" "$OUT/lib/"; done
cat >"$OUT/run.sh" <<'SH'
#!/usr/bin/env bash
# run.sh PROGRAM [ARGS] — the bundled libraries, then the machine's CUDA
# libraries (pip nvidia-* wheels of its python3, the toolkit) on the path.
here=$(cd "$(dirname "$0")" && pwd)
wheels=$(python3 -c 'import glob, os, site; print(":".join(d for sp in site.getsitepackages() for d in glob.glob(os.path.join(sp, "nvidia", "*", "lib"))))' 2>/dev/null || true)
export LD_LIBRARY_PATH="$here/lib:${wheels}:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
exec "$@"
SH
chmod +x "$OUT/run.sh"
for p in "$OUT"/bin/*; do
    n=$(basename "$p")
    [[ $n == *.so ]] && continue
    printf '#!/usr/bin/env bash\nexec "$(dirname "$0")/run.sh" "$(dirname "$0")/bin/%s" "$@"\n' "$n" >"$OUT/$n"
    chmod +x "$OUT/$n"
done
echo "gpu-bundle: $OUT ($(du -sh "$OUT" | cut -f1)): $(ls "$OUT/bin" | tr '\n' ' ')"
