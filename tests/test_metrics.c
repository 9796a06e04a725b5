/* test_metrics.c — the per-image metrics (worker/metrics.c) against plain
 * references: SSIM against a direct (non-separable) 11×11 Gaussian-window
 * computation in double over the valid region, on random, identical,
 * shifted and multi-channel images; SSIM's known values; norms; mean/std.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "worker/eval/metrics.h"
#include "check.h"
#include "rand.h"


/* Wang et al. 2004 SSIM, straight from the definition. */
static double ssim_ref(const float *a, const float *b, int c, int h, int w) {
    double g[11][11], gs = 0, total = 0;
    for (int i = 0; i < 11; i++)
        for (int j = 0; j < 11; j++) gs += (g[i][j] = exp(-((i - 5) * (i - 5) + (j - 5) * (j - 5)) / (2 * 1.5 * 1.5)));
    for (int ch = 0; ch < c; ch++) {
        double s = 0;
        const float *pa = a + (size_t)ch * h * w, *pb = b + (size_t)ch * h * w;
        for (int y = 0; y + 11 <= h; y++)
            for (int x = 0; x + 11 <= w; x++) {
                double mx = 0, my = 0, xx = 0, yy = 0, xy = 0;
                for (int i = 0; i < 11; i++)
                    for (int j = 0; j < 11; j++) {
                        double wt = g[i][j] / gs, u = pa[(y + i) * w + x + j], v = pb[(y + i) * w + x + j];
                        mx += wt * u, my += wt * v, xx += wt * u * u, yy += wt * v * v, xy += wt * u * v;
                    }
                double C1 = 1e-4, C2 = 9e-4;
                s += ((2 * mx * my + C1) * (2 * (xy - mx * my) + C2)) /
                     ((mx * mx + my * my + C1) * (xx - mx * mx + yy - my * my + C2));
            }
        total += s / ((h - 10) * (w - 10));
    }
    return total / c;
}

int main(void) {
    float a[3 * 28 * 28], b[3 * 28 * 28];
    for (int i = 0; i < 3 * 28 * 28; i++) a[i] = (float)urand(), b[i] = fminf(1, fmaxf(0, a[i] + 0.2f * ((float)urand() - 0.5f)));
    struct { int c, h, w; } shapes[] = {{1, 28, 28}, {3, 17, 23}, {1, 11, 11}, {3, 28, 13}};
    for (int k = 0; k < 4; k++) {
        double got = metrics_ssim(a, b, shapes[k].c, shapes[k].h, shapes[k].w);
        double want = ssim_ref(a, b, shapes[k].c, shapes[k].h, shapes[k].w);
        char what[96];
        snprintf(what, sizeof what, "ssim %dx%dx%d: %.12f vs reference %.12f", shapes[k].c, shapes[k].h, shapes[k].w,
                 got, want);
        CHECK_LE(fabs(got - want), 1e-12, what);
    }
    CHECK_LE(fabs(metrics_ssim(a, a, 3, 28, 28) - 1.0), 1e-12, "metrics_ssim(x, x) = 1");
    CHECK(isnan(metrics_ssim(a, b, 1, 10, 28)));                             /* smaller than the window */
    CHECK_LE(metrics_ssim(a, b, 1, 28, 28), 0.999, "ssim of a perturbed image < 1");
    float c0[64] = {0}, c1[64];
    for (int i = 0; i < 64; i++) c1[i] = i == 5 ? -3.0f : i == 9 ? 4.0f : 0.0f;
    CHECK_LE(fabs(metrics_diff_l2(c1, c0, 64) - 5.0), 1e-12, "‖(3,4)‖₂ = 5");
    CHECK_LE(fabs(metrics_diff_l2(c1, NULL, 64) - 5.0), 1e-12, "norm of a (b NULL)");
    CHECK_LE(fabs(metrics_diff_linf(c1, c0, 64) - 4.0), 1e-12, "‖·‖∞ = 4");
    CHECK_EQ_INT(metrics_argmax(c1, 64), 9);
    double v[4] = {1, 2, 3, 4}, m, s;
    metrics_mean_std(v, 4, &m, &s);
    CHECK_LE(fabs(m - 2.5) + fabs(s - sqrt(1.25)), 1e-12, "mean/std (population)");
    return CHECK_DONE();
}
