/* test_fused.c — the fused ops (kernels/ops.h "Fused group norm + swish"):
 *   1. bit-identical to the pair of plain ops they replace (forward: h and
 *      y; backward: gx), so fusing changes no row;
 *   2. forward against a plain double reference (relative L2 <= 1e-5);
 *   3. backward against central finite differences of <gy, y(x)> along
 *      random directions (Richardson-extrapolated, as tests/fd.h);
 *   4. the composition ops.c runs for a backend without the fused op,
 *      through a copy of the CPU backend with the fused members removed,
 *      installed in the CUDA slot: bit-identical too;
 *   5. batch and thread invariance: image 1 of a batch of 3 at 1, 2, 3
 *      threads equals image 1 alone.
 * Cases with a bias (the ResnetBlock's time-embedding add fused into norm2)
 * compare against add_channel_forward followed by the pair.
 * One small struct per case; failures print both numbers.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"
#include "../kernels/ops.h"
#include "check.h"
#include "rand.h"

typedef struct {
    const char *name;
    int n, c, h, w, groups;
    int affine; /* random gamma/beta (else NULL: 1 and 0) */
    int bias;   /* a random n × C bias added first */
} gn_case;

static const gn_case cases[] = {
    {"unet 128ch 32 groups 8x8", 2, 128, 8, 8, 32, 1, 0},
    {"demo 32ch 32 groups 7x7", 3, 32, 7, 7, 32, 1, 0},
    {"odd 12ch 3 groups 5x3", 2, 12, 5, 3, 3, 1, 0},
    {"no affine 8ch 2 groups 4x4", 1, 8, 4, 4, 2, 0, 0},
    {"unet 128ch 32 groups 8x8 + temb bias", 2, 128, 8, 8, 32, 1, 1},
    {"demo 64ch 32 groups 7x7 + temb bias", 3, 64, 7, 7, 32, 1, 1},
    {"odd 12ch 3 groups 5x3 + bias, no affine", 2, 12, 5, 3, 3, 0, 1},
};

static double dotf(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* the pair of plain ops */
static void pair_forward(const gn_case *k, const Tensor *x, const float *gm, const float *bt, Tensor *h, Tensor *y,
                         float *st) {
    group_norm_forward(x, k->groups, 1e-6f, gm, bt, h, st);
    swish_forward(h, y);
}

static void check_case(const gn_case *k) {
    Tensor x = rnd(k->n, k->c, k->h, k->w), gy = rnd(k->n, k->c, k->h, k->w);
    size_t nx = tensor_numel(&x);
    float *gm = NULL, *bt = NULL;
    if (k->affine) {
        gm = xmalloc(k->c * sizeof(float)), bt = xmalloc(k->c * sizeof(float));
        for (int i = 0; i < k->c; i++) gm[i] = 1.0f + 0.3f * nrand(), bt[i] = 0.5f * nrand();
    }
    Tensor h1 = tensor_new(k->n, k->c, k->h, k->w), y1 = tensor_new(k->n, k->c, k->h, k->w);
    Tensor h2 = tensor_new(k->n, k->c, k->h, k->w), y2 = tensor_new(k->n, k->c, k->h, k->w);
    Tensor g1 = tensor_new(k->n, k->c, k->h, k->w), g2 = tensor_new(k->n, k->c, k->h, k->w);
    Tensor scratch = tensor_new(k->n, k->c, k->h, k->w);
    /* with a bias the pair runs on xb = x + bias (add_channel_forward) */
    Tensor bias = k->bias ? rnd(k->n, k->c, 1, 1) : (Tensor){0}, xb = tensor_new(k->n, k->c, k->h, k->w);
    const Tensor *bp = k->bias ? &bias : NULL;
    if (k->bias) add_channel_forward(&x, &bias, &xb);
    else memcpy(xb.data, x.data, nx * sizeof(float));
    float *st1 = xmalloc(2 * k->n * k->groups * sizeof(float)), *st2 = xmalloc(2 * k->n * k->groups * sizeof(float));

    /* 1. fused == pair, bit for bit */
    pair_forward(k, &xb, gm, bt, &h1, &y1, st1);
    group_norm_swish_forward(&x, bp, k->groups, 1e-6f, gm, bt, &h2, &y2, st2);
    CHECK_MSG(!memcmp(h1.data, h2.data, nx * sizeof(float)), "%s: fused h differs from group_norm_forward (rel %.3g)",
              k->name, rel_l2(h2.data, h1.data, nx));
    CHECK_MSG(!memcmp(y1.data, y2.data, nx * sizeof(float)), "%s: fused y differs from swish(group_norm) (rel %.3g)",
              k->name, rel_l2(y2.data, y1.data, nx));
    memcpy(scratch.data, gy.data, nx * sizeof(float));
    swish_backward_input(&h1, &scratch, &scratch);
    group_norm_backward_input(&xb, &scratch, k->groups, gm, st1, &g1);
    memcpy(scratch.data, gy.data, nx * sizeof(float));
    group_norm_swish_backward_input(&x, bp, &h2, &scratch, k->groups, gm, st2, &g2);
    CHECK_MSG(!memcmp(g1.data, g2.data, nx * sizeof(float)), "%s: fused backward differs from the pair (rel %.3g)",
              k->name, rel_l2(g2.data, g1.data, nx));

    /* 2. forward against a double reference */
    int cpg = k->c / k->groups;
    size_t hw = (size_t)k->h * k->w, m = (size_t)cpg * hw;
    double *ref = xmalloc(nx * sizeof(double));
    for (int i = 0; i < k->n; i++)
        for (int g = 0; g < k->groups; g++) {
            const float *xp = xb.data + ((size_t)i * k->c + (size_t)g * cpg) * hw;
            double mu = 0, var = 0;
            for (size_t e = 0; e < m; e++) mu += xp[e];
            mu /= (double)m;
            for (size_t e = 0; e < m; e++) var += (xp[e] - mu) * (xp[e] - mu);
            var /= (double)m;
            for (int cc = 0; cc < cpg; cc++)
                for (size_t e = 0; e < hw; e++) {
                    int ch = g * cpg + cc;
                    double v = (xp[cc * hw + e] - mu) / sqrt(var + 1e-6) * (gm ? gm[ch] : 1.0) + (bt ? bt[ch] : 0.0);
                    ref[((size_t)i * k->c + ch) * hw + e] = v / (1.0 + exp(-v));
                }
        }
    double num = 0, den = 0;
    for (size_t i = 0; i < nx; i++) num += (y2.data[i] - ref[i]) * (y2.data[i] - ref[i]), den += ref[i] * ref[i];
    CHECK_LE(sqrt(num / den), 1e-5, k->name);

    /* 3. backward against finite differences along random directions */
    Tensor xp = tensor_new(k->n, k->c, k->h, k->w), hp = tensor_new(k->n, k->c, k->h, k->w);
    Tensor yp = tensor_new(k->n, k->c, k->h, k->w);
    double gnorm = sqrt(dotf(g2.data, g2.data, nx));
    float *v = xmalloc(nx * sizeof(float));
    for (int d = 0; d < 3; d++) {
        double vn = 0;
        for (size_t i = 0; i < nx; i++) v[i] = nrand(), vn += (double)v[i] * v[i];
        for (size_t i = 0; i < nx; i++) v[i] /= (float)sqrt(vn);
        double D[2];
        for (int r = 0; r < 2; r++) {
            /* the bias cases spread the group statistics: a larger step keeps float32 rounding
             * below the tolerance (Richardson keeps the truncation error O(step⁴)) */
            float step = (r ? 5e-3f : 1e-2f) * (k->bias ? 4 : 1);
            double l[2];
            for (int sgn = 0; sgn < 2; sgn++) {
                for (size_t i = 0; i < nx; i++) xp.data[i] = x.data[i] + (sgn ? -step : step) * v[i];
                group_norm_swish_forward(&xp, bp, k->groups, 1e-6f, gm, bt, &hp, &yp, st1);
                l[sgn] = dotf(gy.data, yp.data, nx);
            }
            D[r] = (l[0] - l[1]) / (2 * step);
        }
        double fd = (4 * D[1] - D[0]) / 3, an = dotf(g2.data, v, nx);
        char what[160];
        snprintf(what, sizeof what, "%s: VJP vs FD dir %d (analytic %.6g, fd %.6g)", k->name, d, an, fd);
        CHECK_LE(fabs(an - fd) / (fabs(an) + fabs(fd) + 1e-2 * gnorm), 2e-3, what);
    }

    /* 4. the composition of ops.c, through a backend without the fused members */
    drq_backend plain = *drq_backend_for(DRQ_CPU);
    plain.name = "cpu-without-fused-ops";
    plain.group_norm_swish_forward = NULL;
    plain.group_norm_swish_backward_input = NULL;
    const drq_backend *old = drq_backend_install(DRQ_CUDA, &plain);
    Tensor xc = x, hc = hp, yc = yp, gc = g1, sc = scratch, bc = bias;
    xc.dev = hc.dev = yc.dev = gc.dev = sc.dev = bc.dev = DRQ_CUDA; /* host memory, dispatched to the stand-in */
    group_norm_swish_forward(&xc, k->bias ? &bc : NULL, k->groups, 1e-6f, gm, bt, &hc, &yc, st1);
    CHECK_MSG(!memcmp(yc.data, y2.data, nx * sizeof(float)) && !memcmp(hc.data, h2.data, nx * sizeof(float)),
              "%s: composed forward differs from the fused one", k->name);
    memcpy(sc.data, gy.data, nx * sizeof(float));
    group_norm_swish_backward_input(&xc, k->bias ? &bc : NULL, &hc, &sc, k->groups, gm, st1, &gc);
    CHECK_MSG(!memcmp(gc.data, g2.data, nx * sizeof(float)), "%s: composed backward differs from the fused one (rel %.3g)",
              k->name, rel_l2(gc.data, g2.data, nx));
    drq_backend_install(DRQ_CUDA, old);

    tensor_free(&bias), tensor_free(&xb);
    tensor_free(&x), tensor_free(&gy), tensor_free(&h1), tensor_free(&y1), tensor_free(&h2), tensor_free(&y2);
    tensor_free(&g1), tensor_free(&g2), tensor_free(&scratch), tensor_free(&xp), tensor_free(&hp), tensor_free(&yp);
    free(st1), free(st2), free(gm), free(bt), free(ref), free(v);
}

/* 5. image 1 of a batch of 3, at 1..3 threads, equals image 1 alone at 1 thread */
static void check_invariance(int with_bias) {
    const int n = 3, c = 64, hh = 9, ww = 9, groups = 32;
    Tensor x = rnd(n, c, hh, ww), gy = rnd(n, c, hh, ww), b = rnd(n, c, 1, 1);
    Tensor b1 = tensor_wrap(b.data + c, 1, c, 1, 1);
    const Tensor *bp = with_bias ? &b : NULL, *bp1 = with_bias ? &b1 : NULL;
    size_t per = (size_t)c * hh * ww;
    Tensor h = tensor_new(n, c, hh, ww), y = tensor_new(n, c, hh, ww), g = tensor_new(n, c, hh, ww);
    Tensor s = tensor_new(n, c, hh, ww);
    float st[2 * 3 * 32];
    drq_set_threads(1);
    Tensor x1 = tensor_wrap(x.data + per, 1, c, hh, ww), h1 = tensor_new(1, c, hh, ww), y1 = tensor_new(1, c, hh, ww);
    Tensor g1 = tensor_new(1, c, hh, ww), s1 = tensor_new(1, c, hh, ww);
    group_norm_swish_forward(&x1, bp1, groups, 1e-6f, NULL, NULL, &h1, &y1, st);
    memcpy(s1.data, gy.data + per, per * sizeof(float));
    group_norm_swish_backward_input(&x1, bp1, &h1, &s1, groups, NULL, st, &g1);
    for (int t = 1; t <= 3; t++) {
        drq_set_threads(t);
        group_norm_swish_forward(&x, bp, groups, 1e-6f, NULL, NULL, &h, &y, st);
        memcpy(s.data, gy.data, tensor_numel(&gy) * sizeof(float));
        group_norm_swish_backward_input(&x, bp, &h, &s, groups, NULL, st, &g);
        CHECK_MSG(!memcmp(y.data + per, y1.data, per * sizeof(float)),
                  "forward%s: image 1 of 3 at %d threads differs", with_bias ? " with a bias" : "", t);
        CHECK_MSG(!memcmp(g.data + per, g1.data, per * sizeof(float)),
                  "backward%s: image 1 of 3 at %d threads differs", with_bias ? " with a bias" : "", t);
    }
    Tensor *ts[] = {&x, &gy, &b, &h, &y, &g, &s, &h1, &y1, &g1, &s1};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_free(ts[i]);
}

int main(void) {
    drq_set_threads(2);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i]);
    check_invariance(0);
    check_invariance(1);
    return CHECK_DONE();
}
