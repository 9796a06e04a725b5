#!/usr/bin/env bash
# test_vectorised.sh — drq's own CPU loops (kernels/cpu/ops_cpu.c) still
# vectorise in each of the three builds the Makefile makes of them (x86-64-v2,
# -v3 = AVX2, -v4 = AVX-512; the default ARCH is the portable x86-64-v2 and
# kernels/cpu/isa.c picks the build matching the CPU at run time).  GCC's
# -fopt-info-vec report must show a loop of each hot pointwise and
# normalisation op vectorised with that build's full vector width.
cd "$(dirname "$0")/.." || exit 1
CC=${CC:-gcc}
FLAGS=$(make -s --no-print-directory print-CPU_LOOP_FLAGS) # as the Makefile builds ops_cpu.c
pass=0 fail=0
TMPO=$(mktemp /tmp/drq_vec.XXXXXX.o)
trap 'rm -f "$TMPO"' EXIT
HOT=(cpu_swish_forward cpu_swish_backward_input cpu_add_forward cpu_axpy cpu_axpby gn_stats gn_forward
     gn_backward_group cpu_group_norm_swish_backward_input cpu_affine_clamp_forward cpu_sampler_step_forward cpu_sampler_step_backward_input
     cpu_add_channel_forward) # (upsample2x_forward, a strided copy, vectorises in no build)
# line -> enclosing function, from the definitions' first lines
funcs=$(grep -nE '^static [a-z ]*\b[a-z_][a-z0-9_]*\(' kernels/cpu/ops_cpu.c | sed -E 's/^([0-9]+):static [a-z ]*\b([a-z_][a-z0-9_]*)\(.*/\1 \2/')
for lv in "v2 16" "v3 32" "v4 64"; do
    set -- $lv
    report=$("$CC" -std=c11 -D_GNU_SOURCE -O3 -march=x86-64-$1 -fopenmp $FLAGS -I. -fopt-info-vec-optimized \
        -c kernels/cpu/ops_cpu.c -o "$TMPO" 2>&1 | grep "loop vectorized using $2 byte vectors" | cut -d: -f2)
    vec=$(for l in $report; do echo "$funcs" | awk -v l="$l" '$1 <= l { f = $2 } END { print f }'; done | sort -u)
    for f in "${HOT[@]}"; do
        if grep -qx "$f" <<<"$vec"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: x86-64-$1: no loop of $f vectorised with $2-byte vectors"; fi
    done
    echo "x86-64-$1: $(wc -w <<<"$report") loops vectorised with $2-byte vectors"
    # swish's x / (1 + e), in the object compiled above: one vector division per
    # vectorised copy of the loop, not two (PRE once added a division by the clamp's
    # constant; see the Makefile)
    nd=$(objdump -d --no-show-raw-insn "$TMPO" | awk '/<cpu_swish_forward._omp_fn.0>:/,/^$/' | grep -cE 'v?divps')
    if [ "$nd" -eq 1 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: x86-64-$1: swish_forward has $nd packed divisions, want 1"; fi
done
echo "RESULT $pass $fail"
[ "$fail" -eq 0 ]
