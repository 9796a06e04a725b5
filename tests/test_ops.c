/* test_ops.c — every op but conv2d (tests/test_conv.c) through the public
 * interface (kernels/ops.h), on random odd shapes:
 *   1. forward against a plain reference loop accumulated in double
 *      (relative L2 ≤ 1e-5);
 *   2. backward_input against central finite differences of the scalar
 *      loss ⟨gy, f(x)⟩ along random directions and single coordinates.
 * Multi-input ops are tested once per input with the others held fixed.
 * Piecewise-linear ops (relu, affine_clamp, sampler_step with clamp_x0) get
 * inputs kept off their kinks, so the differences are exact up to rounding.
 * normal_fill has no gradient: it is checked bit for bit against
 * common/rng.h, per image key, plus the moments of a larger draw.
 * One small struct per case (ggml style); failures print both numbers.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/rng.h"
#include "../common/util.h"
#include "../kernels/ops.h"
#include "check.h"
#include "rand.h" /* the same xorshift64* stream and seed this test always used */

static void fill(float *p, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) p[i] = scale * nrand();
}

/* ---- a test case: f maps a flat input to a flat output ---------------- */
typedef struct OpCase OpCase;
struct OpCase {
    const char *name;
    int n, c, h, w;   /* shape of the differentiated input */
    int on, oc, oh, ow; /* output shape */
    void (*fwd)(const OpCase *k, const Tensor *x, Tensor *y);
    void (*bwd)(const OpCase *k, const Tensor *x, const Tensor *gy, Tensor *gx);
    void (*ref)(const OpCase *k, const float *x, double *y);
    float fd_h;       /* finite-difference step */
    int away_from_zero; /* keep inputs away from 0 (kinks) */
    float xhi;          /* > 0: inputs uniform in [0, xhi) instead of normal */
    /* op parameters */
    int groups;
    float *p0, *p1, *p2; /* parameter vectors / fixed other inputs */
    int which;           /* which input is differentiated (multi-input ops) */
    float a, b, lo, hi;  /* affine_clamp / axpby scalars */
    sampler_coef sc;     /* sampler_step coefficients */
    void (*prep)(const OpCase *k, float *x, size_t n); /* optional: adjust the random inputs (off kinks) */
};

static double loss(const OpCase *k, const Tensor *x, const float *gy, Tensor *y) {
    k->fwd(k, x, y);
    double s = 0;
    for (size_t i = 0; i < tensor_numel(y); i++) s += (double)gy[i] * y->data[i];
    return s;
}

static void run_case(const OpCase *k) {
    Tensor x = tensor_new(k->n, k->c, k->h, k->w), y = tensor_new(k->on, k->oc, k->oh, k->ow);
    Tensor gy = tensor_new(k->on, k->oc, k->oh, k->ow), gx = tensor_new(k->n, k->c, k->h, k->w);
    size_t nx = tensor_numel(&x), ny = tensor_numel(&y);
    fill(x.data, nx, 1.0f);
    if (k->xhi > 0)
        for (size_t i = 0; i < nx; i++) x.data[i] = (float)(urand() * k->xhi);
    if (k->away_from_zero)
        for (size_t i = 0; i < nx; i++) x.data[i] += x.data[i] >= 0 ? 0.2f : -0.2f;
    if (k->prep) k->prep(k, x.data, nx);
    fill(gy.data, ny, 1.0f);

    /* 1. forward vs reference */
    double *ref = xmalloc(ny * sizeof(double));
    k->ref(k, x.data, ref);
    k->fwd(k, &x, &y);
    double num = 0, den = 0;
    for (size_t i = 0; i < ny; i++) num += (y.data[i] - ref[i]) * (y.data[i] - ref[i]), den += ref[i] * ref[i];
    char what[160];
    snprintf(what, sizeof what, "%s forward rel L2", k->name);
    CHECK_LE(sqrt(num) / (den > 0 ? sqrt(den) : 1), 1e-5, what);

    /* 2. VJP vs central differences */
    k->bwd(k, &x, &gy, &gx);
    Tensor xp = tensor_new(k->n, k->c, k->h, k->w), yt = tensor_new(k->on, k->oc, k->oh, k->ow);
    float h = k->fd_h > 0 ? k->fd_h : 1e-2f;
    for (int dir = 0; dir < 4; dir++) {
        float *v = xmalloc(nx * sizeof(float));
        if (dir < 3) {
            fill(v, nx, 1.0f);
        } else { /* one coordinate */
            memset(v, 0, nx * sizeof(float));
            v[(size_t)(urand() * nx)] = 1.0f;
        }
        double analytic = 0;
        for (size_t i = 0; i < nx; i++) analytic += (double)gx.data[i] * v[i];
        for (size_t i = 0; i < nx; i++) xp.data[i] = x.data[i] + h * v[i];
        double lp = loss(k, &xp, gy.data, &yt);
        for (size_t i = 0; i < nx; i++) xp.data[i] = x.data[i] - h * v[i];
        double lm = loss(k, &xp, gy.data, &yt);
        double fd = (lp - lm) / (2.0 * h);
        double scale = fabs(fd) + fabs(analytic) + 1e-3 * sqrt((double)ny);
        snprintf(what, sizeof what, "%s VJP vs FD (dir %d: analytic %.6g fd %.6g)", k->name, dir, analytic, fd);
        CHECK_LE(fabs(analytic - fd) / scale, 3e-3, what);
        free(v);
    }
    free(ref);
    tensor_free(&x), tensor_free(&y), tensor_free(&gy), tensor_free(&gx), tensor_free(&xp), tensor_free(&yt);
}

/* =====================================================================
 * op wrappers and references
 * ===================================================================== */
#define IDX(t, i, c, y, x) ((((size_t)(i) * (t)->c + (c)) * (t)->h + (y)) * (t)->w + (x))

/* linear: input n × in, p0 = W [out,in], p1 = b */
static void f_linear(const OpCase *k, const Tensor *x, Tensor *y) { linear_forward(k->p0, k->p1, k->c, k->oc, x, y); }
static void b_linear(const OpCase *k, const Tensor *x, const Tensor *gy, Tensor *gx) {
    linear_backward_input(k->p0, k->c, k->oc, gy, gx);
}
static void r_linear(const OpCase *k, const float *x, double *y) {
    for (int i = 0; i < k->n; i++)
        for (int o = 0; o < k->oc; o++) {
            double s = k->p1 ? k->p1[o] : 0;
            for (int j = 0; j < k->c; j++) s += (double)x[i * k->c + j] * k->p0[o * k->c + j];
            y[i * k->oc + o] = s;
        }
}

/* group norm: p0 = gamma, p1 = beta, eps 1e-6 */
static void f_gn(const OpCase *k, const Tensor *x, Tensor *y) {
    float *stats = xmalloc(sizeof(float) * 2 * k->n * k->groups);
    group_norm_forward(x, k->groups, 1e-6f, k->p0, k->p1, y, stats);
    free(stats);
}
static void b_gn(const OpCase *k, const Tensor *x, const Tensor *gy, Tensor *gx) {
    float *stats = xmalloc(sizeof(float) * 2 * k->n * k->groups);
    Tensor y = tensor_new(x->n, x->c, x->h, x->w);
    group_norm_forward(x, k->groups, 1e-6f, k->p0, k->p1, &y, stats);
    group_norm_backward_input(x, gy, k->groups, k->p0, stats, gx);
    tensor_free(&y);
    free(stats);
}
static void r_gn(const OpCase *k, const float *x, double *y) {
    int cpg = k->c / k->groups, hw = k->h * k->w;
    for (int i = 0; i < k->n; i++)
        for (int g = 0; g < k->groups; g++) {
            const float *p = x + ((size_t)i * k->c + g * cpg) * hw;
            double m = 0, v = 0;
            for (int e = 0; e < cpg * hw; e++) m += p[e];
            m /= cpg * hw;
            for (int e = 0; e < cpg * hw; e++) v += (p[e] - m) * (p[e] - m);
            v /= cpg * hw;
            for (int e = 0; e < cpg * hw; e++) {
                int ch = g * cpg + e / hw;
                y[((size_t)i * k->c + g * cpg) * hw + e] = (p[e] - m) / sqrt(v + 1e-6) * k->p0[ch] + k->p1[ch];
            }
        }
}

/* batch norm: p0 = scale, p1 = shift (after batch_norm_fold) */
static void f_bn(const OpCase *k, const Tensor *x, Tensor *y) { batch_norm_forward(x, k->p0, k->p1, y); }
static void b_bn(const OpCase *k, const Tensor *x, const Tensor *gy, Tensor *gx) { batch_norm_backward_input(gy, k->p0, gx); }
static void r_bn(const OpCase *k, const float *x, double *y) {
    int hw = k->h * k->w;
    for (size_t e = 0; e < (size_t)k->n * k->c * hw; e++) {
        int ch = (int)(e / hw % k->c);
        y[e] = (double)x[e] * k->p0[ch] + k->p1[ch];
    }
}

static void f_swish(const OpCase *k, const Tensor *x, Tensor *y) { swish_forward(x, y); }
static void b_swish(const OpCase *k, const Tensor *x, const Tensor *gy, Tensor *gx) { swish_backward_input(x, gy, gx); }
static void r_swish(const OpCase *k, const float *x, double *y) {
    for (size_t e = 0; e < (size_t)k->n * k->c * k->h * k->w; e++) y[e] = x[e] / (1 + exp(-(double)x[e]));
}
static void f_relu(const OpCase *k, const Tensor *x, Tensor *y) { relu_forward(x, y); }
static void b_relu(const OpCase *k, const Tensor *x, const Tensor *gy, Tensor *gx) { relu_backward_input(x, gy, gx); }
static void r_relu(const OpCase *k, const float *x, double *y) {
    for (size_t e = 0; e < (size_t)k->n * k->c * k->h * k->w; e++) y[e] = x[e] > 0 ? x[e] : 0;
}

/* add: the other operand is p0 */
static void f_add(const OpCase *k, const Tensor *x, Tensor *y) {
    Tensor o = tensor_wrap(k->p0, k->n, k->c, k->h, k->w);
    if (k->which) add_forward(&o, x, y); else add_forward(x, &o, y);
}
/* add has no backward op: the models' backward accumulates gradients with add_forward itself, in place
 * (worker/models: add_forward(gx, gout, gx)).  So Jᵀgy is computed the same way, through the op: gx ← gy,
 * then gx ← add(gx, 0) in place, in the operand position of the differentiated input.  J = I is
 * symmetric, so this is the adjoint; step 2 of run_case checks it against FD of the forward. */
static void b_add(const OpCase *k, const Tensor *x, const Tensor *gy, Tensor *gx) {
    Tensor z = tensor_new(k->n, k->c, k->h, k->w);
    memset(z.data, 0, tensor_numel(&z) * sizeof(float));
    memcpy(gx->data, gy->data, tensor_numel(gy) * sizeof(float));
    if (k->which) add_forward(&z, gx, gx); else add_forward(gx, &z, gx);
    tensor_free(&z);
}
static void r_add(const OpCase *k, const float *x, double *y) {
    for (size_t e = 0; e < (size_t)k->n * k->c * k->h * k->w; e++) y[e] = (double)x[e] + k->p0[e];
}

/* add_channel: which=0 differentiates x (p0 = v), which=1 differentiates v (p0 = x, shape in oc/oh/ow) */
static void f_addc(const OpCase *k, const Tensor *in, Tensor *y) {
    if (k->which == 0) {
        Tensor v = tensor_wrap(k->p0, k->n, k->c, 1, 1);
        add_channel_forward(in, &v, y);
    } else {
        Tensor x = tensor_wrap(k->p0, k->on, k->oc, k->oh, k->ow);
        add_channel_forward(&x, in, y);
    }
}
static void b_addc(const OpCase *k, const Tensor *in, const Tensor *gy, Tensor *g) {
    if (k->which == 0) add_channel_backward_input(gy, g, NULL);
    else add_channel_backward_input(gy, NULL, g);
}
static void r_addc(const OpCase *k, const float *in, double *y) {
    int hw = k->oh * k->ow;
    for (size_t e = 0; e < (size_t)k->on * k->oc * hw; e++) {
        size_t p = e / hw;
        y[e] = k->which == 0 ? (double)in[e] + k->p0[p] : (double)k->p0[e] + in[p];
    }
}

/* attention: which input (0 q, 1 k, 2 v) is differentiated; the others are p0..p2 */
static void att_inputs(const OpCase *k, const Tensor *x, Tensor t[3]) {
    float *src[3] = {k->p0, k->p1, k->p2};
    for (int i = 0; i < 3; i++) t[i] = tensor_wrap(i == k->which ? x->data : src[i], k->n, k->c, k->h, k->w);
}
static void f_att(const OpCase *k, const Tensor *x, Tensor *y) {
    Tensor t[3];
    int L = k->h * k->w;
    att_inputs(k, x, t);
    Tensor p = tensor_new(k->n, L * L, 1, 1);
    attention_forward(&t[0], &t[1], &t[2], &p, y);
    tensor_free(&p);
}
static void b_att(const OpCase *k, const Tensor *x, const Tensor *gy, Tensor *gx) {
    Tensor t[3], g[3], y = tensor_new(k->n, k->c, k->h, k->w);
    int L = k->h * k->w;
    att_inputs(k, x, t);
    Tensor p = tensor_new(k->n, L * L, 1, 1);
    attention_forward(&t[0], &t[1], &t[2], &p, &y);
    for (int i = 0; i < 3; i++) g[i] = tensor_new(k->n, k->c, k->h, k->w);
    attention_backward_input(&t[0], &t[1], &t[2], &p, gy, &g[0], &g[1], &g[2]);
    memcpy(gx->data, g[k->which].data, tensor_numel(gx) * sizeof(float));
    for (int i = 0; i < 3; i++) tensor_free(&g[i]);
    tensor_free(&p), tensor_free(&y);
}
static void r_att(const OpCase *k, const float *x, double *y) {
    const float *in[3] = {k->p0, k->p1, k->p2};
    in[k->which] = x;
    int C = k->c, L = k->h * k->w;
    double *s = xmalloc(sizeof(double) * L);
    for (int i = 0; i < k->n; i++) {
        const float *q = in[0] + (size_t)i * C * L, *kk = in[1] + (size_t)i * C * L, *v = in[2] + (size_t)i * C * L;
        for (int a = 0; a < L; a++) {
            double mx = -1e300, tot = 0;
            for (int b = 0; b < L; b++) {
                double d = 0;
                for (int c = 0; c < C; c++) d += (double)q[c * L + a] * kk[c * L + b];
                s[b] = d / sqrt((double)C);
                mx = s[b] > mx ? s[b] : mx;
            }
            for (int b = 0; b < L; b++) tot += (s[b] = exp(s[b] - mx));
            for (int c = 0; c < C; c++) {
                double h = 0;
                for (int b = 0; b < L; b++) h += v[c * L + b] * s[b] / tot;
                y[(size_t)i * C * L + c * L + a] = h;
            }
        }
    }
    free(s);
}

static void f_up(const OpCase *k, const Tensor *x, Tensor *y) { upsample2x_forward(x, y); }
static void b_up(const OpCase *k, const Tensor *x, const Tensor *gy, Tensor *gx) { upsample2x_backward_input(gy, gx); }
static void r_up(const OpCase *k, const float *x, double *y) {
    Tensor s = {0};
    s.n = k->n, s.c = k->c, s.h = k->h, s.w = k->w;
    Tensor d = {0};
    d.n = k->on, d.c = k->oc, d.h = k->oh, d.w = k->ow;
    for (int i = 0; i < k->n; i++)
        for (int c = 0; c < k->c; c++)
            for (int a = 0; a < k->oh; a++)
                for (int b = 0; b < k->ow; b++) y[IDX(&d, i, c, a, b)] = x[IDX(&s, i, c, a / 2, b / 2)];
}

static void f_pool(const OpCase *k, const Tensor *x, Tensor *y) { avgpool_global_forward(x, y); }
static void b_pool(const OpCase *k, const Tensor *x, const Tensor *gy, Tensor *gx) { avgpool_global_backward_input(gy, gx); }
static void r_pool(const OpCase *k, const float *x, double *y) {
    int hw = k->h * k->w;
    for (int p = 0; p < k->n * k->c; p++) {
        double s = 0;
        for (int e = 0; e < hw; e++) s += x[(size_t)p * hw + e];
        y[p] = s / hw;
    }
}

/* concat: which=0 → x is the first operand (p0 second, p0 has channels k->groups) */
static void f_cat(const OpCase *k, const Tensor *x, Tensor *y) {
    Tensor o = tensor_wrap(k->p0, k->n, k->groups, k->h, k->w);
    if (k->which == 0) concat_forward(x, &o, y); else concat_forward(&o, x, y);
}
static void b_cat(const OpCase *k, const Tensor *x, const Tensor *gy, Tensor *gx) {
    Tensor go = tensor_new(k->n, k->groups, k->h, k->w);
    if (k->which == 0) concat_backward_input(gy, gx, &go); else concat_backward_input(gy, &go, gx);
    tensor_free(&go);
}
static void r_cat(const OpCase *k, const float *x, double *y) {
    size_t hw = (size_t)k->h * k->w, sx = k->c * hw, so = k->groups * hw;
    for (int i = 0; i < k->n; i++) {
        const float *first = k->which == 0 ? x + i * sx : k->p0 + i * so;
        const float *second = k->which == 0 ? k->p0 + i * so : x + i * sx;
        size_t s1 = k->which == 0 ? sx : so, s2 = k->which == 0 ? so : sx;
        for (size_t e = 0; e < s1; e++) y[i * (sx + so) + e] = first[e];
        for (size_t e = 0; e < s2; e++) y[i * (sx + so) + s1 + e] = second[e];
    }
}

/* max pooling: groups = k, a = stride, b = pad (ops.h: -inf padding) */
static void f_maxp(const OpCase *k, const Tensor *x, Tensor *y) { maxpool2d_forward(x, k->groups, (int)k->a, (int)k->b, y); }
static void b_maxp(const OpCase *k, const Tensor *x, const Tensor *gy, Tensor *gx) {
    maxpool2d_backward_input(x, gy, k->groups, (int)k->a, (int)k->b, gx);
}
static void r_maxp(const OpCase *k, const float *x, double *y) {
    int K = k->groups, S = (int)k->a, P = (int)k->b;
    for (int p = 0; p < k->n * k->c; p++)
        for (int oy = 0; oy < k->oh; oy++)
            for (int ox = 0; ox < k->ow; ox++) {
                double m = -INFINITY;
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < K; j++) {
                        int r = oy * S - P + i, c = ox * S - P + j;
                        if (r >= 0 && r < k->h && c >= 0 && c < k->w && x[((size_t)p * k->h + r) * k->w + c] > m)
                            m = x[((size_t)p * k->h + r) * k->w + c];
                    }
                y[((size_t)p * k->oh + oy) * k->ow + ox] = m;
            }
}
/* Distinct values 0.1 apart (a shuffled ramp): no window has two maxima
 * within the finite-difference step, so the VJP is the exact derivative. */
static void p_maxp(const OpCase *k, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = 0.1f * (float)i - 0.05f * (float)n;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(urand() * (i + 1));
        float t = x[i];
        x[i] = x[j], x[j] = t;
    }
}

/* Ties: on a constant plane every window's gradient goes to its first
 * element in row-major order (PyTorch's rule); with padding the first is the
 * first element inside the image. */
static void test_maxpool_ties(void) {
    Tensor x = tensor_new(1, 1, 4, 5), gy = tensor_new(1, 1, 2, 3), gx = tensor_new(1, 1, 4, 5);
    for (int i = 0; i < 20; i++) x.data[i] = 0.5f;
    for (int i = 0; i < 6; i++) gy.data[i] = (float)(1 << i);
    maxpool2d_backward_input(&x, &gy, 3, 2, 1, &gx);
    /* window (oy, ox) starts at row 2·oy − 1, column 2·ox − 1, clipped to 0 */
    float want[20] = {0};
    for (int oy = 0; oy < 2; oy++)
        for (int ox = 0; ox < 3; ox++) {
            int r = oy ? 2 * oy - 1 : 0, c = ox ? 2 * ox - 1 : 0;
            want[r * 5 + c] += gy.data[oy * 3 + ox];
        }
    for (int i = 0; i < 20; i++) CHECK_CMP_DBL(gx.data[i], ==, want[i]);
    tensor_free(&x), tensor_free(&gy), tensor_free(&gx);
}

/* timestep embedding: input n t-values (n × 1), output n × dim; t in [0, 999] */
static void f_temb(const OpCase *k, const Tensor *x, Tensor *y) { timestep_embedding_forward(x->data, k->n, k->oc, y); }
static void b_temb(const OpCase *k, const Tensor *x, const Tensor *gy, Tensor *gx) {
    timestep_embedding_backward_input(x->data, k->n, k->oc, gy, gx->data);
}
static void r_temb(const OpCase *k, const float *x, double *y) {
    int half = k->oc / 2;
    for (int i = 0; i < k->n; i++)
        for (int j = 0; j < half; j++) {
            double f = exp(-j * log(10000.0) / (half - 1));
            y[i * k->oc + j] = sin(x[i] * f);
            y[i * k->oc + half + j] = cos(x[i] * f);
        }
}

/* ---- sampler arithmetic ---------------------------------------------- */
/* v moved to 2e-2 beyond lo / hi (same side) when it lies within 1e-2 of one; infinite bounds never move it.
 * With fd_h = 1e-3 a perturbation moves a·x + b by < 1e-2, so no FD step then crosses a kink. */
static double off_kinks(double v, double lo, double hi) {
    if (fabs(v - lo) < 1e-2) v = lo + (v >= lo ? 2e-2 : -2e-2);
    if (fabs(v - hi) < 1e-2) v = hi + (v >= hi ? 2e-2 : -2e-2);
    return v;
}
/* both regions present: some values inside (lo, hi), some clamped */
static void check_regions(const char *name, int inside, int clamped) {
    CHECK_MSG(inside > 0 && clamped > 0, "%s: inputs should hit both regions (inside %d, clamped %d)", name, inside,
              clamped);
}

/* affine_clamp: y = clamp(a·x + b, lo, hi) */
static void f_aff(const OpCase *k, const Tensor *x, Tensor *y) { affine_clamp_forward(x, k->a, k->b, k->lo, k->hi, y); }
static void b_aff(const OpCase *k, const Tensor *x, const Tensor *gy, Tensor *gx) {
    affine_clamp_backward_input(x, gy, k->a, k->b, k->lo, k->hi, gx);
}
static void r_aff(const OpCase *k, const float *x, double *y) {
    for (size_t e = 0; e < (size_t)k->n * k->c * k->h * k->w; e++) {
        double v = (double)k->a * x[e] + k->b;
        y[e] = v < k->lo ? k->lo : v > k->hi ? k->hi : v;
    }
}
static void p_aff(const OpCase *k, float *x, size_t n) {
    int inside = 0;
    for (size_t e = 0; e < n; e++) {
        double v = off_kinks((double)k->a * x[e] + k->b, k->lo, k->hi);
        x[e] = (float)((v - k->b) / k->a);
        inside += v > k->lo && v < k->hi;
    }
    if (isfinite(k->lo)) check_regions(k->name, inside, (int)n - inside);
}

/* axpby: y ← a·x + b·y in place; which=0 differentiates x (p0 = the initial y), which=1 the initial y (p0 = x) */
static void f_axpby(const OpCase *k, const Tensor *in, Tensor *y) {
    Tensor o = tensor_wrap(k->p0, k->n, k->c, k->h, k->w);
    memcpy(y->data, k->which ? in->data : k->p0, tensor_numel(y) * sizeof(float)); /* y is overwritten */
    tensor_axpby(k->a, k->which ? &o : in, k->b, y);
}
/* axpby has no backward op either; it is linear in each operand, J = a·I (x) or b·I (y), and symmetric, so
 * Jᵀgy = J gy is computed through the op: its forward with the other operand 0, applied to gy —
 * which=0: gx ← 0, axpby(a, gy, b, gx) = a·gy; which=1: gx ← gy, axpby(a, 0, b, gx) = b·gy. */
static void b_axpby(const OpCase *k, const Tensor *x, const Tensor *gy, Tensor *gx) {
    Tensor z = tensor_new(k->n, k->c, k->h, k->w);
    memset(z.data, 0, tensor_numel(&z) * sizeof(float));
    OpCase kz = *k;
    kz.p0 = z.data;
    f_axpby(&kz, gy, gx);
    tensor_free(&z);
}
static void r_axpby(const OpCase *k, const float *in, double *y) {
    const float *x = k->which ? k->p0 : in, *y0 = k->which ? in : k->p0;
    for (size_t e = 0; e < (size_t)k->n * k->c * k->h * k->w; e++) y[e] = (double)k->a * x[e] + (double)k->b * y0[e];
}

/* sampler_step: which=0 differentiates x (p0 = eps), which=1 eps (p0 = x); p1 = z or NULL; coefficients sc.
 * y is linear in (x, eps) off the clamp's kinks, so FD of ⟨g, y⟩ gives gx (direct part) and geps exactly. */
static void step_in(const OpCase *k, const Tensor *in, Tensor t[2]) {
    t[k->which] = tensor_wrap(in->data, k->n, k->c, k->h, k->w);
    t[1 - k->which] = tensor_wrap(k->p0, k->n, k->c, k->h, k->w);
}
static void f_step(const OpCase *k, const Tensor *in, Tensor *y) {
    Tensor t[2], z = tensor_wrap(k->p1, k->n, k->c, k->h, k->w);
    step_in(k, in, t);
    sampler_step_forward(&t[0], &t[1], k->p1 ? &z : NULL, &k->sc, y);
}
static void b_step(const OpCase *k, const Tensor *in, const Tensor *gy, Tensor *gin) {
    Tensor t[2], other = tensor_new(k->n, k->c, k->h, k->w);
    step_in(k, in, t);
    sampler_step_backward_input(&t[0], &t[1], gy, &k->sc, k->which ? &other : gin, k->which ? gin : &other);
    tensor_free(&other);
}
static void r_step(const OpCase *k, const float *in, double *y) {
    const float *x = k->which ? k->p0 : in, *eps = k->which ? in : k->p0;
    const sampler_coef c = k->sc;
    for (size_t e = 0; e < (size_t)k->n * k->c * k->h * k->w; e++) {
        double x0 = (double)c.a * x[e] - (double)c.b * eps[e];
        if (c.clamp_x0) x0 = x0 < -1 ? -1 : x0 > 1 ? 1 : x0;
        y[e] = c.cx0 * x0 + (double)c.cx * x[e] + (double)c.ceps * eps[e] + (k->p1 ? (double)c.cz * k->p1[e] : 0);
    }
}
static void p_step(const OpCase *k, float *in, size_t n) { /* keep x0 = a·x − b·eps off ±1 */
    if (!k->sc.clamp_x0) return;
    const double a = k->sc.a, b = k->sc.b;
    int inside = 0;
    for (size_t e = 0; e < n; e++) {
        double x = k->which ? k->p0[e] : in[e], eps = k->which ? in[e] : k->p0[e];
        double x0 = off_kinks(a * x - b * eps, -1, 1);
        in[e] = (float)(k->which ? (a * x - x0) / b : (x0 + b * eps) / a);
        inside += fabs(x0) < 1;
    }
    check_regions(k->name, inside, (int)n - inside);
}

/* ---- the ADM UNet's ops and the purifier's resize / learned σ ----------- */
static void f_pool2(const OpCase *k, const Tensor *x, Tensor *y) { avgpool2x2_forward(x, y); }
static void b_pool2(const OpCase *k, const Tensor *x, const Tensor *gy, Tensor *gx) { avgpool2x2_backward_input(gy, gx); }
static void r_pool2(const OpCase *k, const float *x, double *y) {
    for (int p = 0; p < k->n * k->c; p++)
        for (int i = 0; i < k->oh; i++)
            for (int j = 0; j < k->ow; j++) {
                const float *b = x + (size_t)p * k->h * k->w + (size_t)(2 * i) * k->w + 2 * j;
                y[((size_t)p * k->oh + i) * k->ow + j] = ((double)b[0] + b[1] + b[k->w] + b[k->w + 1]) / 4;
            }
}
/* bilinear, align_corners=False (PyTorch's rule, written out in double): src = max(0, (o + ½)·in/out − ½) */
static void f_resize(const OpCase *k, const Tensor *x, Tensor *y) { resize_bilinear_forward(x, y); }
static void b_resize(const OpCase *k, const Tensor *x, const Tensor *gy, Tensor *gx) {
    resize_bilinear_backward_input(gy, gx);
}
static void src_of(int o, int in, int out, int *i0, int *i1, double *lam) {
    double s = fmax(0.0, (o + 0.5) * in / out - 0.5);
    *i0 = (int)floor(s) < in - 1 ? (int)floor(s) : in - 1;
    *i1 = *i0 + 1 < in ? *i0 + 1 : in - 1;
    *lam = s - *i0;
}
static void r_resize(const OpCase *k, const float *x, double *y) {
    for (int p = 0; p < k->n * k->c; p++)
        for (int i = 0; i < k->oh; i++)
            for (int j = 0; j < k->ow; j++) {
                int a0, a1, b0, b1;
                double u, v;
                src_of(i, k->h, k->oh, &a0, &a1, &u);
                src_of(j, k->w, k->ow, &b0, &b1, &v);
                const float *xp = x + (size_t)p * k->h * k->w;
                y[((size_t)p * k->oh + i) * k->ow + j] = (1 - u) * ((1 - v) * xp[a0 * k->w + b0] + v * xp[a0 * k->w + b1]) +
                                                         u * ((1 - v) * xp[a1 * k->w + b0] + v * xp[a1 * k->w + b1]);
            }
}
/* scale_shift: which=0 differentiates x (p0 = ss, n × 2C), which=1 ss (p0 = x, shape in on/oc/oh/ow) */
static void f_ss(const OpCase *k, const Tensor *in, Tensor *y) {
    Tensor x = k->which ? tensor_wrap(k->p0, k->on, k->oc, k->oh, k->ow) : *in;
    Tensor ss = k->which ? *in : tensor_wrap(k->p0, k->n, 2 * k->c, 1, 1);
    scale_shift_forward(&x, &ss, y);
}
static void b_ss(const OpCase *k, const Tensor *in, const Tensor *gy, Tensor *g) {
    Tensor x = k->which ? tensor_wrap(k->p0, k->on, k->oc, k->oh, k->ow) : *in;
    Tensor ss = k->which ? *in : tensor_wrap(k->p0, k->n, 2 * k->c, 1, 1);
    Tensor other = k->which ? tensor_new(k->on, k->oc, k->oh, k->ow) : tensor_new(k->n, 2 * k->c, 1, 1);
    if (k->which) scale_shift_backward_input(&x, &ss, gy, &other, g);
    else scale_shift_backward_input(&x, &ss, gy, g, &other);
    tensor_free(&other);
}
static void r_ss(const OpCase *k, const float *in, double *y) {
    const float *x = k->which ? k->p0 : in, *ss = k->which ? in : k->p0;
    int C = k->oc, hw = k->oh * k->ow;
    for (size_t e = 0; e < (size_t)k->on * C * hw; e++) {
        size_t i = e / hw / C, c = e / hw % C;
        y[e] = (double)x[e] * (1.0 + ss[i * 2 * C + c]) + ss[i * 2 * C + C + c];
    }
}
/* channel_slice: y = x[:, groups : groups + oc] */
static void f_slice(const OpCase *k, const Tensor *x, Tensor *y) { channel_slice_forward(x, k->groups, y); }
static void b_slice(const OpCase *k, const Tensor *x, const Tensor *gy, Tensor *gx) {
    memset(gx->data, 0, tensor_numel(gx) * sizeof(float)); /* the other channels get no gradient */
    channel_slice_backward_input(gy, k->groups, gx);
}
static void r_slice(const OpCase *k, const float *x, double *y) {
    size_t hw = (size_t)k->h * k->w;
    for (int i = 0; i < k->n; i++)
        for (size_t e = 0; e < k->oc * hw; e++) y[i * k->oc * hw + e] = x[(i * k->c + k->groups) * hw + e];
}
/* attention_heads: input qkv n × 3C, heads = groups; reference per head in double (legacy split) */
static void heads_bufs(const OpCase *k, Tensor t[4]) {
    int L = k->oh * k->ow;
    for (int i = 0; i < 3; i++) t[i] = tensor_new(k->on, k->oc, k->oh, k->ow);
    t[3] = tensor_new(k->n, k->groups * L * L, 1, 1);
}
static void f_heads(const OpCase *k, const Tensor *x, Tensor *y) {
    Tensor t[4];
    heads_bufs(k, t);
    attention_heads_forward(x, k->groups, 0, &t[0], &t[1], &t[2], &t[3], y);
    for (int i = 0; i < 4; i++) tensor_free(&t[i]);
}
static void b_heads(const OpCase *k, const Tensor *x, const Tensor *gy, Tensor *gx) {
    Tensor t[4], g[3], y = tensor_new(k->on, k->oc, k->oh, k->ow);
    heads_bufs(k, t);
    attention_heads_forward(x, k->groups, 0, &t[0], &t[1], &t[2], &t[3], &y);
    for (int i = 0; i < 3; i++) g[i] = tensor_new(k->on, k->oc, k->oh, k->ow);
    attention_heads_backward_input(&t[0], &t[1], &t[2], &t[3], gy, k->groups, 0, &g[0], &g[1], &g[2], gx);
    for (int i = 0; i < 3; i++) tensor_free(&g[i]);
    for (int i = 0; i < 4; i++) tensor_free(&t[i]);
    tensor_free(&y);
}
static void r_heads(const OpCase *k, const float *x, double *y) {
    int C = k->oc, H = k->groups, ch = C / H, L = k->oh * k->ow;
    double *s = xmalloc(sizeof(double) * L);
    for (int i = 0; i < k->n; i++)
        for (int hd = 0; hd < H; hd++) {
            const float *q = x + ((size_t)i * 3 * C + (size_t)hd * 3 * ch) * L, *kk = q + (size_t)ch * L,
                        *v = q + (size_t)2 * ch * L;
            for (int a = 0; a < L; a++) {
                double mx = -1e300, tot = 0, sc = 1 / sqrt(sqrt((double)ch));
                for (int b = 0; b < L; b++) {
                    double d = 0;
                    for (int c = 0; c < ch; c++) d += (q[c * L + a] * sc) * (kk[c * L + b] * sc);
                    s[b] = d, mx = d > mx ? d : mx;
                }
                for (int b = 0; b < L; b++) tot += (s[b] = exp(s[b] - mx));
                for (int c = 0; c < ch; c++) {
                    double h = 0;
                    for (int b = 0; b < L; b++) h += v[c * L + b] * s[b] / tot;
                    y[((size_t)i * C + (size_t)hd * ch + c) * L + a] = h;
                }
            }
        }
    free(s);
}
/* learned_sigma: y = p0 + σ(r)·p1, lo/hi = log β̃ / log β */
static void f_lsig(const OpCase *k, const Tensor *r, Tensor *y) {
    Tensor z = tensor_wrap(k->p1, k->n, k->c, k->h, k->w);
    memcpy(y->data, k->p0, tensor_numel(y) * sizeof(float));
    learned_sigma_forward(r, &z, k->lo, k->hi, y);
}
static void b_lsig(const OpCase *k, const Tensor *r, const Tensor *gy, Tensor *gr) {
    Tensor z = tensor_wrap(k->p1, k->n, k->c, k->h, k->w);
    learned_sigma_backward_input(r, &z, k->lo, k->hi, gy, gr);
}
static void r_lsig(const OpCase *k, const float *r, double *y) {
    for (size_t e = 0; e < (size_t)k->n * k->c * k->h * k->w; e++) {
        double v = (r[e] + 1.0) / 2;
        y[e] = k->p0[e] + exp(0.5 * (v * k->hi + (1 - v) * k->lo)) * k->p1[e];
    }
}

/* "y may alias x": in-place calls equal the out-of-place ones bit for bit (eps, z: 3×5×7×1) */
static void test_aliasing(const float *eps, const float *z, const sampler_coef *c) {
    Tensor x = tensor_new(3, 5, 7, 1), y = tensor_new(3, 5, 7, 1), e = tensor_wrap((float *)eps, 3, 5, 7, 1);
    Tensor zt = tensor_wrap((float *)z, 3, 5, 7, 1);
    size_t n = tensor_numel(&x);
    fill(x.data, n, 1.0f);
    affine_clamp_forward(&x, 0.5f, 0.5f, 0.0f, 1.0f, &y);
    affine_clamp_forward(&x, 0.5f, 0.5f, 0.0f, 1.0f, &x);
    CHECK_MSG(memcmp(x.data, y.data, n * sizeof(float)) == 0, "affine_clamp in place differs");
    fill(x.data, n, 1.0f);
    sampler_step_forward(&x, &e, &zt, c, &y);
    sampler_step_forward(&x, &e, &zt, c, &x);
    CHECK_MSG(memcmp(x.data, y.data, n * sizeof(float)) == 0, "sampler_step in place differs");
    tensor_free(&x), tensor_free(&y);
}

/* normal_fill: image i is drq_normal(keys[i]) bit for bit (105 = not a multiple of 4 per image); distinct keys give
 * images with no element in common; a 2×64×64 draw has mean 0 and std 1 within 0.05. */
static void test_normal_fill(void) {
    const uint64_t keys[3] = {1, (1ull << 40) + 7, 12345}; /* the middle one uses the key's high word */
    Tensor y = tensor_new(3, 3, 5, 7);
    size_t per = 3 * 5 * 7;
    float *ref = xmalloc(per * sizeof(float));
    normal_fill(keys, &y);
    for (int i = 0; i < 3; i++) {
        const float *img = y.data + i * per;
        drq_normal(keys[i], per, ref);
        size_t e = 0;
        while (e < per && memcmp(&img[e], &ref[e], sizeof(float)) == 0) e++;
        CHECK_MSG(e == per, "normal_fill image %d (key %llu) element %zu: %.9g vs drq_normal %.9g", i,
                  (unsigned long long)keys[i], e, e < per ? img[e] : 0.0f, e < per ? ref[e] : 0.0f);
        for (int j = 0; j < i; j++) {
            int same = 0;
            for (size_t q = 0; q < per; q++) same += img[q] == y.data[j * per + q];
            CHECK_MSG(same == 0, "normal_fill images %d and %d share %d of %zu elements", j, i, same, per);
        }
    }
    const uint64_t big_keys[2] = {7, 8};
    Tensor big = tensor_new(2, 1, 64, 64);
    size_t nb = tensor_numel(&big);
    normal_fill(big_keys, &big);
    double m = 0, v = 0;
    for (size_t e = 0; e < nb; e++) m += big.data[e];
    m /= nb;
    for (size_t e = 0; e < nb; e++) v += (big.data[e] - m) * (big.data[e] - m);
    double sd = sqrt(v / nb);
    CHECK_MSG(fabs(m) <= 0.05, "normal_fill mean %.4f, want 0 ± 0.05", m);
    CHECK_MSG(fabs(sd - 1) <= 0.05, "normal_fill std %.4f, want 1 ± 0.05", sd);
    free(ref);
    tensor_free(&y), tensor_free(&big);
}

static float *randv(size_t n, float scale) {
    float *p = xmalloc(n * sizeof(float));
    fill(p, n, scale);
    return p;
}

int main(void) {
    drq_set_threads(2);
    float *W = randv(13 * 37, 0.2f), *B = randv(13, 0.5f);
    float *gam = randv(96, 0.3f), *bet = randv(96, 0.3f);
    for (int i = 0; i < 96; i++) gam[i] += 1.0f;
    float bnw[7], bnb[7], bnm[7], bnv[7], scale[7], shift[7];
    for (int i = 0; i < 7; i++) bnw[i] = 1 + 0.2f * nrand(), bnb[i] = 0.2f * nrand(), bnm[i] = 0.3f * nrand(),
                        bnv[i] = 0.5f + (float)urand();
    batch_norm_fold(7, bnw, bnb, bnm, bnv, 1e-5f, scale, shift);
    float *addo = randv(3 * 5 * 7 * 9, 1.0f), *chv = randv(3 * 5, 1.0f), *chx = randv(3 * 5 * 7 * 9, 1.0f);
    float *aq = randv(2 * 6 * 15, 1.0f), *ak = randv(2 * 6 * 15, 1.0f), *av = randv(2 * 6 * 15, 1.0f);
    float *cato = randv(2 * 4 * 5 * 3, 1.0f);
    float *axo = randv(2 * 3 * 5 * 7, 1.0f), *sx = randv(3 * 5 * 7, 1.0f), *seps = randv(3 * 5 * 7, 1.0f);
    float *sz = randv(3 * 5 * 7, 1.0f);
    /* test-friendly coefficients, no term cancelling another in gx or geps, clamped or not:
     * DDPM-like gx = 0.7 + 1.4·0.6 (0.7 clamped), geps = −0.6 (0); DDIM-like gx = 1.25·0.8 (0), geps = 0.5 − 0.72 (0.5).
     * x0 = a·x − b·eps has std ≈ 1.7 / 1.5, so about half the elements are clamped. */
    const sampler_coef ddpm = {.a = 1.4f, .b = 1.0f, .cx0 = 0.6f, .cx = 0.7f, .ceps = 0.0f, .cz = 0.3f};
    const sampler_coef ddim = {.a = 1.25f, .b = 0.9f, .cx0 = 0.8f, .cx = 0.0f, .ceps = 0.5f, .cz = 0.0f};
    sampler_coef ddpm_c = ddpm, ddim_c = ddim;
    ddpm_c.clamp_x0 = ddim_c.clamp_x0 = 1;

    OpCase cases[] = {
        {.name = "linear", .n = 3, .c = 37, .h = 1, .w = 1, .on = 3, .oc = 13, .oh = 1, .ow = 1, .fwd = f_linear,
         .bwd = b_linear, .ref = r_linear, .p0 = W, .p1 = B},
        {.name = "linear_nobias", .n = 2, .c = 37, .h = 1, .w = 1, .on = 2, .oc = 13, .oh = 1, .ow = 1,
         .fwd = f_linear, .bwd = b_linear, .ref = r_linear, .p0 = W},
        {.name = "group_norm_g3", .n = 2, .c = 9, .h = 5, .w = 7, .on = 2, .oc = 9, .oh = 5, .ow = 7, .fwd = f_gn,
         .bwd = b_gn, .ref = r_gn, .groups = 3, .p0 = gam, .p1 = bet},
        {.name = "group_norm_g32", .n = 2, .c = 96, .h = 3, .w = 3, .on = 2, .oc = 96, .oh = 3, .ow = 3, .fwd = f_gn,
         .bwd = b_gn, .ref = r_gn, .groups = 32, .p0 = gam, .p1 = bet},
        {.name = "batch_norm", .n = 3, .c = 7, .h = 5, .w = 3, .on = 3, .oc = 7, .oh = 5, .ow = 3, .fwd = f_bn,
         .bwd = b_bn, .ref = r_bn, .p0 = scale, .p1 = shift},
        {.name = "swish", .n = 2, .c = 5, .h = 7, .w = 3, .on = 2, .oc = 5, .oh = 7, .ow = 3, .fwd = f_swish,
         .bwd = b_swish, .ref = r_swish},
        {.name = "relu", .n = 2, .c = 5, .h = 7, .w = 3, .on = 2, .oc = 5, .oh = 7, .ow = 3, .fwd = f_relu,
         .bwd = b_relu, .ref = r_relu, .away_from_zero = 1},
        {.name = "add_a", .n = 3, .c = 5, .h = 7, .w = 9, .on = 3, .oc = 5, .oh = 7, .ow = 9, .fwd = f_add,
         .bwd = b_add, .ref = r_add, .p0 = addo},
        {.name = "add_b", .n = 3, .c = 5, .h = 7, .w = 9, .on = 3, .oc = 5, .oh = 7, .ow = 9, .fwd = f_add,
         .bwd = b_add, .ref = r_add, .p0 = addo, .which = 1},
        {.name = "add_channel_x", .n = 3, .c = 5, .h = 7, .w = 9, .on = 3, .oc = 5, .oh = 7, .ow = 9, .fwd = f_addc,
         .bwd = b_addc, .ref = r_addc, .p0 = chv},
        {.name = "add_channel_v", .n = 3, .c = 5, .h = 1, .w = 1, .on = 3, .oc = 5, .oh = 7, .ow = 9, .fwd = f_addc,
         .bwd = b_addc, .ref = r_addc, .p0 = chx, .which = 1},
        {.name = "attention_q", .n = 2, .c = 6, .h = 3, .w = 5, .on = 2, .oc = 6, .oh = 3, .ow = 5, .fwd = f_att,
         .bwd = b_att, .ref = r_att, .p0 = aq, .p1 = ak, .p2 = av, .which = 0},
        {.name = "attention_k", .n = 2, .c = 6, .h = 3, .w = 5, .on = 2, .oc = 6, .oh = 3, .ow = 5, .fwd = f_att,
         .bwd = b_att, .ref = r_att, .p0 = aq, .p1 = ak, .p2 = av, .which = 1},
        {.name = "attention_v", .n = 2, .c = 6, .h = 3, .w = 5, .on = 2, .oc = 6, .oh = 3, .ow = 5, .fwd = f_att,
         .bwd = b_att, .ref = r_att, .p0 = aq, .p1 = ak, .p2 = av, .which = 2},
        {.name = "upsample2x", .n = 2, .c = 3, .h = 5, .w = 7, .on = 2, .oc = 3, .oh = 10, .ow = 14, .fwd = f_up,
         .bwd = b_up, .ref = r_up},
        {.name = "avgpool_global", .n = 3, .c = 5, .h = 7, .w = 9, .on = 3, .oc = 5, .oh = 1, .ow = 1,
         .fwd = f_pool, .bwd = b_pool, .ref = r_pool},
        {.name = "maxpool_k3s2p1", .n = 2, .c = 3, .h = 9, .w = 7, .on = 2, .oc = 3, .oh = 5, .ow = 4, .fwd = f_maxp,
         .bwd = b_maxp, .ref = r_maxp, .groups = 3, .a = 2, .b = 1, .prep = p_maxp},
        {.name = "maxpool_k2s2p0", .n = 1, .c = 2, .h = 6, .w = 8, .on = 1, .oc = 2, .oh = 3, .ow = 4, .fwd = f_maxp,
         .bwd = b_maxp, .ref = r_maxp, .groups = 2, .a = 2, .b = 0, .prep = p_maxp},
        {.name = "maxpool_k3s1p1", .n = 2, .c = 2, .h = 5, .w = 6, .on = 2, .oc = 2, .oh = 5, .ow = 6, .fwd = f_maxp,
         .bwd = b_maxp, .ref = r_maxp, .groups = 3, .a = 1, .b = 1, .prep = p_maxp},
        {.name = "concat_first", .n = 2, .c = 3, .h = 5, .w = 3, .on = 2, .oc = 7, .oh = 5, .ow = 3, .fwd = f_cat,
         .bwd = b_cat, .ref = r_cat, .groups = 4, .p0 = cato},
        {.name = "concat_second", .n = 2, .c = 3, .h = 5, .w = 3, .on = 2, .oc = 7, .oh = 5, .ow = 3, .fwd = f_cat,
         .bwd = b_cat, .ref = r_cat, .groups = 4, .p0 = cato, .which = 1},
        {.name = "timestep_embedding", .n = 4, .c = 1, .h = 1, .w = 1, .on = 4, .oc = 32, .oh = 1, .ow = 1,
         .fwd = f_temb, .bwd = b_temb, .ref = r_temb, .fd_h = 0.05f, .xhi = 999.0f},
        {.name = "affine_noclamp", .n = 2, .c = 3, .h = 5, .w = 7, .on = 2, .oc = 3, .oh = 5, .ow = 7, .fwd = f_aff,
         .bwd = b_aff, .ref = r_aff, .a = 2.0f, .b = -1.0f, .lo = -INFINITY, .hi = INFINITY},
        {.name = "affine_clamp01", .n = 2, .c = 3, .h = 5, .w = 7, .on = 2, .oc = 3, .oh = 5, .ow = 7, .fwd = f_aff,
         .bwd = b_aff, .ref = r_aff, .fd_h = 1e-3f, .a = 0.5f, .b = 0.5f, .lo = 0.0f, .hi = 1.0f, .prep = p_aff},
        {.name = "axpby_x", .n = 2, .c = 3, .h = 5, .w = 7, .on = 2, .oc = 3, .oh = 5, .ow = 7, .fwd = f_axpby,
         .bwd = b_axpby, .ref = r_axpby, .a = 0.7f, .b = -1.3f, .p0 = axo},
        {.name = "axpby_y", .n = 2, .c = 3, .h = 5, .w = 7, .on = 2, .oc = 3, .oh = 5, .ow = 7, .fwd = f_axpby,
         .bwd = b_axpby, .ref = r_axpby, .a = 0.7f, .b = -1.3f, .p0 = axo, .which = 1},
#define STEP(nm, coef, z, wh)                                                                                      \
    {.name = nm, .n = 3, .c = 5, .h = 7, .w = 1, .on = 3, .oc = 5, .oh = 7, .ow = 1, .fwd = f_step, .bwd = b_step, \
     .ref = r_step, .fd_h = 1e-3f, .sc = coef, .p0 = (wh) ? sx : seps, .p1 = z, .which = wh, .prep = p_step}
        STEP("sampler_ddpm_x", ddpm, sz, 0),           STEP("sampler_ddpm_eps", ddpm, sz, 1),
        STEP("sampler_ddpm_clamp_x", ddpm_c, sz, 0),   STEP("sampler_ddpm_clamp_eps", ddpm_c, sz, 1),
        STEP("sampler_ddim_x", ddim, NULL, 0),         STEP("sampler_ddim_eps", ddim, NULL, 1),
        STEP("sampler_ddim_clamp_x", ddim_c, NULL, 0), STEP("sampler_ddim_clamp_eps", ddim_c, NULL, 1),
#undef STEP
        {.name = "avgpool2x2", .n = 2, .c = 3, .h = 6, .w = 10, .on = 2, .oc = 3, .oh = 3, .ow = 5, .fwd = f_pool2,
         .bwd = b_pool2, .ref = r_pool2},
        /* up and down by non-integer ratios (7·8/7 and 8·7/8: the 224↔256 of the purifier), integer ×3, and
         * mixed (rows up, columns down) */
        {.name = "resize_up_7to8", .n = 2, .c = 3, .h = 7, .w = 7, .on = 2, .oc = 3, .oh = 8, .ow = 8,
         .fwd = f_resize, .bwd = b_resize, .ref = r_resize},
        {.name = "resize_down_8to7", .n = 2, .c = 3, .h = 8, .w = 8, .on = 2, .oc = 3, .oh = 7, .ow = 7,
         .fwd = f_resize, .bwd = b_resize, .ref = r_resize},
        {.name = "resize_up_x3", .n = 1, .c = 2, .h = 4, .w = 5, .on = 1, .oc = 2, .oh = 12, .ow = 15,
         .fwd = f_resize, .bwd = b_resize, .ref = r_resize},
        {.name = "resize_mixed", .n = 2, .c = 2, .h = 5, .w = 11, .on = 2, .oc = 2, .oh = 9, .ow = 4,
         .fwd = f_resize, .bwd = b_resize, .ref = r_resize},
        {.name = "scale_shift_x", .n = 3, .c = 5, .h = 7, .w = 9, .on = 3, .oc = 5, .oh = 7, .ow = 9, .fwd = f_ss,
         .bwd = b_ss, .ref = r_ss, .p0 = addo}, /* ss: addo's first 30 values */
        {.name = "scale_shift_ss", .n = 3, .c = 10, .h = 1, .w = 1, .on = 3, .oc = 5, .oh = 7, .ow = 9, .fwd = f_ss,
         .bwd = b_ss, .ref = r_ss, .p0 = chx, .which = 1},
        {.name = "channel_slice", .n = 2, .c = 9, .h = 3, .w = 5, .on = 2, .oc = 4, .oh = 3, .ow = 5,
         .fwd = f_slice, .bwd = b_slice, .ref = r_slice, .groups = 3},
        {.name = "attention_heads", .n = 2, .c = 36, .h = 3, .w = 5, .on = 2, .oc = 12, .oh = 3, .ow = 5,
         .fwd = f_heads, .bwd = b_heads, .ref = r_heads, .groups = 3},
        {.name = "learned_sigma", .n = 3, .c = 5, .h = 7, .w = 1, .on = 3, .oc = 5, .oh = 7, .ow = 1,
         .fwd = f_lsig, .bwd = b_lsig, .ref = r_lsig, .p0 = sx, .p1 = sz, .lo = -9.2f, .hi = -4.1f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_case(&cases[i]);
    }
    test_aliasing(sx, sz, &ddpm_c);
    test_maxpool_ties();
    test_normal_fill();
    free(W), free(B), free(gam), free(bet), free(addo), free(chv), free(chx), free(aq), free(ak), free(av), free(cato);
    free(axo), free(sx), free(seps), free(sz);
    return CHECK_DONE();
}
