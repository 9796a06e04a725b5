/* metrics.c — see metrics.h. */
#include "worker/eval/metrics.h"

#include <math.h>
#include <stdlib.h>

#include "common/util.h"

double metrics_diff_l2(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (b ? (double)b[i] : 0.0);
        s += d * d;
    }
    return sqrt(s);
}

double metrics_diff_linf(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (b ? (double)b[i] : 0.0));
        if (d > m) m = d;
    }
    return m;
}

int metrics_argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

void metrics_mean_std(const double *v, int n, double *mean, double *std) {
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = n ? s / n : NAN;
    for (int i = 0; i < n; i++) ss += (v[i] - *mean) * (v[i] - *mean);
    *std = n ? sqrt(ss / n) : NAN;
}

#define WIN 11

/* Separable valid filtering with the normalised 11-tap Gaussian (σ = 1.5):
 * out is (h−10) × (w−10). */
static void gauss_valid(const double *in, int h, int w, const double *g, double *tmp, double *out) {
    int oh = h - WIN + 1, ow = w - WIN + 1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < ow; x++) {
            double s = 0;
            for (int k = 0; k < WIN; k++) s += g[k] * in[y * w + x + k];
            tmp[y * ow + x] = s;
        }
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
            double s = 0;
            for (int k = 0; k < WIN; k++) s += g[k] * tmp[(y + k) * ow + x];
            out[y * ow + x] = s;
        }
}

double metrics_ssim(const float *a, const float *b, int c, int h, int w) {
    if (h < WIN || w < WIN) return NAN;
    const double C1 = 0.01 * 0.01, C2 = 0.03 * 0.03;
    double g[WIN], gs = 0;
    for (int k = 0; k < WIN; k++) gs += (g[k] = exp(-(double)((k - 5) * (k - 5)) / (2 * 1.5 * 1.5)));
    for (int k = 0; k < WIN; k++) g[k] /= gs;
    int oh = h - WIN + 1, ow = w - WIN + 1;
    size_t hw = (size_t)h * w, ohw = (size_t)oh * ow;
    double *buf = xmalloc(sizeof(double) * (5 * hw + hw + 5 * ohw));
    double *in[5] = {buf, buf + hw, buf + 2 * hw, buf + 3 * hw, buf + 4 * hw}, *tmp = buf + 5 * hw;
    double *mu[5];
    for (int i = 0; i < 5; i++) mu[i] = buf + 6 * hw + i * ohw;
    double total = 0;
    for (int ch = 0; ch < c; ch++) {
        const float *pa = a + ch * hw, *pb = b + ch * hw;
        for (size_t e = 0; e < hw; e++) {
            double x = pa[e], y = pb[e];
            in[0][e] = x, in[1][e] = y, in[2][e] = x * x, in[3][e] = y * y, in[4][e] = x * y;
        }
        for (int i = 0; i < 5; i++) gauss_valid(in[i], h, w, g, tmp, mu[i]);
        double s = 0;
        for (size_t e = 0; e < ohw; e++) {
            double mx = mu[0][e], my = mu[1][e];
            double vx = mu[2][e] - mx * mx, vy = mu[3][e] - my * my, cxy = mu[4][e] - mx * my;
            s += ((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2));
        }
        total += s / (double)ohw;
    }
    free(buf);
    return total / c;
}
