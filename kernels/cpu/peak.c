/* peak.c — the machine's measured matrix-multiply peak: oneDNN's sgemm on
 * n × n × n float32 matrices with the current OpenMP threads, best of
 * `repeat` timed runs after one warm-up.  `make bench` divides every
 * model's achieved GFLOP/s by this figure (docs/bench.md): it is what the
 * same library reaches on the same cores when nothing but a GEMM runs. */
#include <assert.h>
#include <dnnl.h>
#include <stdlib.h>

#include "common/util.h"
#include "kernels/cpu/cpu.h"

double cpu_sgemm_gflops(int n, int repeat) {
    assert(n > 0 && repeat > 0);
    size_t nn = (size_t)n * n;
    float *a = xmalloc(nn * sizeof *a), *b = xmalloc(nn * sizeof *b), *c = xmalloc(nn * sizeof *c);
    for (size_t i = 0; i < nn; i++) a[i] = (float)(i % 17) * 0.01f, b[i] = (float)(i % 13) * 0.02f, c[i] = 0;
    double best = 1e30;
    for (int r = 0; r <= repeat; r++) {
        double t0 = drq_clock_mono();
        dnnl_status_t st = dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double dt = drq_clock_mono() - t0;
        if (st != dnnl_success) DIE("dnnl_sgemm(%d³) failed with status %d", n, (int)st);
        if (r && dt < best) best = dt; /* round 0 warms the caches and the JIT */
    }
    free(a), free(b), free(c);
    return 2.0 * n * (double)n * n / best / 1e9;
}
