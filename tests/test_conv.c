/* test_conv.c — the CPU convolution (kernels/cpu/conv.c) against a plain
 * double-accumulation reference, the VJP against finite differences, the
 * per-shape cache against changing batch sizes, and release.
 *
 * Tolerances (stated once, used everywhere):
 *   forward / backward_input vs the double reference: relative L2 <= 1e-5;
 *   dot-product test |<gy, J v> - <J^T gy, v>| <= 1e-5 * |gy|·|J v|, with
 *     J v from central differences of the float forward (the conv is affine,
 *     so the difference has no truncation error, only float rounding);
 *   direct central differences of L(x) = sum(a·y) + 0.5·sum(y²) (quadratic in
 *     x, so central differences are exact up to rounding): relative 2e-3 per
 *     coordinate with an absolute floor of 1e-3·|grad|_inf.
 * Every check runs for each variant conv.c offers (DRQ_CONV_IMPL, read when a
 * Conv2d's cache is created): the default (oneDNN's direct kernels, one image
 * per call), Winograd (DRQ_CONV_ALG) and the plain reference loops "ref", so
 * every kernel family drq uses is covered on every shape.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"
#include "../kernels/cpu/cpu.h"
#include "check.h"
#include "conv_ref.h"
#include "rand.h"

/* One case: geometry, sizes, bias on/off. */
typedef struct {
    const char *name;
    int n, cin, cout, kh, kw, stride, pt, pl, pb, pr, h, w, bias;
} ConvCase;

static const ConvCase cases[] = {
    {"3x3 s1 p1 cin3", 2, 3, 5, 3, 3, 1, 1, 1, 1, 1, 7, 7, 1},
    {"3x3 s1 p1 cin17 nobias", 1, 17, 5, 3, 3, 1, 1, 1, 1, 1, 9, 9, 0},
    {"3x3 s1 p1 cin1 7x9", 2, 1, 5, 3, 3, 1, 1, 1, 1, 1, 7, 9, 1},
    {"3x3 s2 pad(0,0,1,1) 9x9", 3, 5, 17, 3, 3, 2, 0, 0, 1, 1, 9, 9, 1},
    {"3x3 s2 pad(0,0,1,1) 8x8", 2, 17, 5, 3, 3, 2, 0, 0, 1, 1, 8, 8, 0},
    {"3x3 s2 pad(0,0,1,1) 7x5", 1, 3, 3, 3, 3, 2, 0, 0, 1, 1, 7, 5, 1},
    {"3x3 s2 p1 9x9", 2, 17, 3, 3, 3, 2, 1, 1, 1, 1, 9, 9, 0},
    {"3x3 s2 p1 5x7", 3, 5, 5, 3, 3, 2, 1, 1, 1, 1, 5, 7, 1},
    {"1x1 s1", 3, 17, 5, 1, 1, 1, 0, 0, 0, 0, 5, 5, 1},
    {"1x1 s1 cin1", 1, 1, 3, 1, 1, 1, 0, 0, 0, 0, 7, 7, 0},
    {"1x1 s2 9x9", 2, 5, 17, 1, 1, 2, 0, 0, 0, 0, 9, 9, 0},
    {"1x1 s2 8x8", 1, 17, 17, 1, 1, 2, 0, 0, 0, 0, 8, 8, 1},
    {"3x3 s1 asym(2,0,1,2)", 2, 5, 3, 3, 3, 1, 2, 0, 1, 2, 7, 9, 1},
    {"5x3 s2 asym(1,2,0,1)", 2, 3, 5, 5, 3, 2, 1, 2, 0, 1, 9, 7, 1},
    {"3x3 s3 p1", 1, 5, 5, 3, 3, 3, 1, 1, 1, 1, 9, 9, 0},
    {"3x3 s1 p1 32>48 11x11", 2, 32, 48, 3, 3, 1, 1, 1, 1, 1, 11, 11, 1},
    {"3x3 s2 p1 64>32 9x9", 3, 64, 32, 3, 3, 2, 1, 1, 1, 1, 9, 9, 0},
    {"3x3 s1 p1 128>128 8x8", 2, 128, 128, 3, 3, 1, 1, 1, 1, 1, 8, 8, 1},
    {"3x3 s2 pad(0,0,1,1) 64 8x8", 2, 64, 64, 3, 3, 2, 0, 0, 1, 1, 8, 8, 1},
    {"1x1 s1 64>32 7x7", 3, 64, 32, 1, 1, 1, 0, 0, 0, 0, 7, 7, 1},
    {"1x1 s2 32>64 9x9", 2, 32, 64, 1, 1, 2, 0, 0, 0, 0, 9, 9, 0},
    {"3x3 s1 p1 128>3 5x5", 1, 128, 3, 3, 3, 1, 1, 1, 1, 1, 5, 5, 1},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

static const char *impls[] = {"default", "ref", "winograd"};
#define NIMPLS ((int)(sizeof impls / sizeof impls[0]))
static const char *cur_impl = "default";

static void fill(float *p, size_t n, float scale) { /* uniform in [-scale, scale) */
    for (size_t i = 0; i < n; i++) p[i] = (float)(scale * urand_sym());
}

static void set_impl(const char *impl) {
    cur_impl = impl;
    unsetenv("DRQ_CONV_ALG");
    if (!strcmp(impl, "winograd")) setenv("DRQ_CONV_ALG", "winograd", 1); /* algorithm, default layout */
    if (!strcmp(impl, "default") || !strcmp(impl, "winograd")) unsetenv("DRQ_CONV_IMPL");
    else setenv("DRQ_CONV_IMPL", impl, 1);
}

static Conv2d make_conv(const ConvCase *t, const float *w, const float *b) {
    Conv2d c;
    memset(&c, 0, sizeof c);
    c.cin = t->cin, c.cout = t->cout, c.kh = t->kh, c.kw = t->kw, c.stride = t->stride;
    c.pad_t = t->pt, c.pad_l = t->pl, c.pad_b = t->pb, c.pad_r = t->pr;
    c.w = w, c.b = b;
    return c;
}

static void out_hw(const ConvCase *t, int h, int w, int *oh, int *ow) {
    Conv2d c = make_conv(t, NULL, NULL);
    conv2d_out_hw(&c, h, w, oh, ow);
}

/* Compares and, on failure, names the case and the worst element. */
static void expect_close(const ConvCase *t, const char *what, int n, int c, int h, int w, const float *got,
                         const float *want) {
    size_t len = (size_t)n * c * h * w;
    double err = rel_l2(got, want, len);
    if (err <= 1e-5 && err == err) {
        CHECK_LE(err, 1e-5, what);
        return;
    }
    size_t worst = 0;
    double wd = -1;
    for (size_t k = 0; k < len; k++) {
        double d = fabs((double)got[k] - want[k]);
        if (!(d <= wd)) wd = d, worst = k;
    }
    size_t xx = worst % w, yy = worst / w % h, cc = worst / ((size_t)w * h) % c, nn = worst / ((size_t)w * h * c);
    CHECK_(0, "[%s] %s %s (n%d %dx%d): rel L2 %.3e > 1e-5; worst at [%zu,%zu,%zu,%zu]: got %.7g want %.7g",
           cur_impl, t->name, what, n, h, w, err, nn, cc, yy, xx, (double)got[worst], (double)want[worst]);
}

/* ---- forward and backward_input against the reference ------------------- */
static void test_against_reference(const ConvCase *t) {
    int oh, ow;
    out_hw(t, t->h, t->w, &oh, &ow);
    size_t nw = (size_t)t->cout * t->cin * t->kh * t->kw;
    size_t nx = (size_t)t->n * t->cin * t->h * t->w, ny = (size_t)t->n * t->cout * oh * ow;
    float *w = xmalloc(nw * sizeof(float)), *b = xmalloc((size_t)t->cout * sizeof(float));
    fill(w, nw, 1.0f / sqrtf((float)(t->cin * t->kh * t->kw)));
    fill(b, (size_t)t->cout, 0.5f);
    Conv2d c = make_conv(t, w, t->bias ? b : NULL);
    Tensor x = tensor_new(t->n, t->cin, t->h, t->w), y = tensor_new(t->n, t->cout, oh, ow);
    Tensor gy = tensor_new(t->n, t->cout, oh, ow), gx = tensor_new(t->n, t->cin, t->h, t->w);
    float *yr = xmalloc(ny * sizeof(float)), *gxr = xmalloc(nx * sizeof(float));
    fill(x.data, nx, 1.0f);
    fill(gy.data, ny, 1.0f);
    /* poison the outputs: the conv must write every element */
    for (size_t k = 0; k < ny; k++) y.data[k] = NAN;
    for (size_t k = 0; k < nx; k++) gx.data[k] = NAN;

    cpu_conv2d_forward(&c, &x, &y);
    conv_ref_forward(&c, t->n, t->h, t->w, x.data, yr);
    expect_close(t, "forward", t->n, t->cout, oh, ow, y.data, yr);

    cpu_conv2d_backward_input(&c, &gy, &gx);
    conv_ref_backward(&c, t->n, t->h, t->w, gy.data, gxr);
    expect_close(t, "backward_input", t->n, t->cin, t->h, t->w, gx.data, gxr);

    /* the second call reuses the cached primitives */
    cpu_conv2d_forward(&c, &x, &y);
    expect_close(t, "forward (cached)", t->n, t->cout, oh, ow, y.data, yr);
    cpu_conv2d_backward_input(&c, &gy, &gx);
    expect_close(t, "backward_input (cached)", t->n, t->cin, t->h, t->w, gx.data, gxr);

    cpu_conv2d_release(&c);
    CHECK_MSG(c.impl[DRQ_CPU] == NULL, "[%s] %s: release leaves impl[DRQ_CPU] set", cur_impl, t->name);
    cpu_conv2d_release(&c); /* twice is harmless */
    tensor_free(&x), tensor_free(&y), tensor_free(&gy), tensor_free(&gx);
    free(w), free(b), free(yr), free(gxr);
}

/* ---- the VJP against finite differences ---------------------------------- */
static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t k = 0; k < n; k++) s += (double)a[k] * b[k];
    return s;
}

static void test_vjp(const ConvCase *t) {
    int oh, ow;
    out_hw(t, t->h, t->w, &oh, &ow);
    size_t nw = (size_t)t->cout * t->cin * t->kh * t->kw;
    size_t nx = (size_t)t->n * t->cin * t->h * t->w, ny = (size_t)t->n * t->cout * oh * ow;
    float *w = xmalloc(nw * sizeof(float)), *b = xmalloc((size_t)t->cout * sizeof(float));
    fill(w, nw, 1.0f / sqrtf((float)(t->cin * t->kh * t->kw)));
    fill(b, (size_t)t->cout, 0.5f);
    Conv2d c = make_conv(t, w, t->bias ? b : NULL);
    Tensor x = tensor_new(t->n, t->cin, t->h, t->w), xp = tensor_new(t->n, t->cin, t->h, t->w);
    Tensor v = tensor_new(t->n, t->cin, t->h, t->w), gx = tensor_new(t->n, t->cin, t->h, t->w);
    Tensor yp = tensor_new(t->n, t->cout, oh, ow), ym = tensor_new(t->n, t->cout, oh, ow);
    Tensor gy = tensor_new(t->n, t->cout, oh, ow);
    float *jv = xmalloc(ny * sizeof(float));
    fill(x.data, nx, 1.0f);
    fill(v.data, nx, 1.0f);
    fill(gy.data, ny, 1.0f);

    /* dot-product test: J v by central differences with eps = 0.5 */
    const float eps = 0.5f;
    for (size_t k = 0; k < nx; k++) xp.data[k] = x.data[k] + eps * v.data[k];
    cpu_conv2d_forward(&c, &xp, &yp);
    for (size_t k = 0; k < nx; k++) xp.data[k] = x.data[k] - eps * v.data[k];
    cpu_conv2d_forward(&c, &xp, &ym);
    for (size_t k = 0; k < ny; k++) jv[k] = (float)(((double)yp.data[k] - ym.data[k]) / (2.0 * eps));
    cpu_conv2d_backward_input(&c, &gy, &gx);
    double lhs = dot(gy.data, jv, ny), rhs = dot(gx.data, v.data, nx);
    double scale = sqrt(dot(gy.data, gy.data, ny) * dot(jv, jv, ny));
    double err = fabs(lhs - rhs) / (scale > 0 ? scale : 1.0);
    CHECK_(err <= 1e-5, "[%s] %s: dot-product test <gy,Jv> = %.9g vs <J^T gy,v> = %.9g (rel %.3e > 1e-5)",
           cur_impl, t->name, lhs, rhs, err);

    /* direct central differences of L(x) = sum(a*y) + 0.5*sum(y^2), a = gy */
    cpu_conv2d_forward(&c, &x, &yp);
    for (size_t k = 0; k < ny; k++) ym.data[k] = gy.data[k] + yp.data[k]; /* dL/dy */
    cpu_conv2d_backward_input(&c, &ym, &gx);
    double gmax = 0;
    for (size_t k = 0; k < nx; k++) gmax = fmax(gmax, fabs(gx.data[k]));
    const float hstep = 0.25f;
    for (int probe = 0; probe < 4; probe++) {
        size_t k = (size_t)(urand() * (double)nx) % nx;
        double L[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            memcpy(xp.data, x.data, nx * sizeof(float));
            xp.data[k] += sgn ? -hstep : hstep;
            cpu_conv2d_forward(&c, &xp, &yp);
            L[sgn] = dot(gy.data, yp.data, ny) + 0.5 * dot(yp.data, yp.data, ny);
        }
        double fd = (L[0] - L[1]) / (2.0 * hstep), an = gx.data[k];
        double tol = 2e-3 * fabs(an) + 1e-3 * gmax;
        CHECK_(fabs(fd - an) <= tol, "[%s] %s: dL/dx[%zu] central diff %.7g vs VJP %.7g (tol %.2e)", cur_impl,
               t->name, k, fd, an, tol);
    }
    cpu_conv2d_release(&c);
    tensor_free(&x), tensor_free(&xp), tensor_free(&v), tensor_free(&gx);
    tensor_free(&yp), tensor_free(&ym), tensor_free(&gy);
    free(w), free(b), free(jv);
}

/* ---- one Conv2d, many batch sizes and image sizes (the cache) ------------ */
static void run_shape(Conv2d *c, const ConvCase *t, int n, int h, int wd) {
    int oh, ow;
    out_hw(t, h, wd, &oh, &ow);
    Tensor x = tensor_new(n, t->cin, h, wd), y = tensor_new(n, t->cout, oh, ow);
    Tensor gy = tensor_new(n, t->cout, oh, ow), gx = tensor_new(n, t->cin, h, wd);
    float *yr = xmalloc(tensor_numel(&y) * sizeof(float)), *gxr = xmalloc(tensor_numel(&x) * sizeof(float));
    fill(x.data, tensor_numel(&x), 1.0f);
    fill(gy.data, tensor_numel(&gy), 1.0f);
    cpu_conv2d_forward(c, &x, &y);
    cpu_conv2d_backward_input(c, &gy, &gx);
    conv_ref_forward(c, n, h, wd, x.data, yr);
    conv_ref_backward(c, n, h, wd, gy.data, gxr);
    char what[64];
    snprintf(what, sizeof what, "cache n=%d %dx%d forward", n, h, wd);
    expect_close(t, what, n, t->cout, oh, ow, y.data, yr);
    snprintf(what, sizeof what, "cache n=%d %dx%d backward_input", n, h, wd);
    expect_close(t, what, n, t->cin, h, wd, gx.data, gxr);
    tensor_free(&x), tensor_free(&y), tensor_free(&gy), tensor_free(&gx);
    free(yr), free(gxr);
}

static void test_cache(const ConvCase *t) {
    size_t nw = (size_t)t->cout * t->cin * t->kh * t->kw;
    float *w = xmalloc(nw * sizeof(float)), *b = xmalloc((size_t)t->cout * sizeof(float));
    fill(w, nw, 1.0f / sqrtf((float)(t->cin * t->kh * t->kw)));
    fill(b, (size_t)t->cout, 0.5f);
    Conv2d c = make_conv(t, w, t->bias ? b : NULL);
    /* more distinct shapes than the cache holds, then old ones again */
    static const int seq[][3] = {{3, 9, 9}, {1, 9, 9}, {2, 9, 9}, {3, 9, 9}, {5, 9, 9}, {4, 9, 9}, {1, 7, 5},
                                 {6, 9, 9}, {7, 9, 9}, {8, 9, 9}, {1, 9, 9}, {3, 9, 9}, {2, 11, 8}, {1, 9, 9}};
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) run_shape(&c, t, seq[i][0], seq[i][1], seq[i][2]);
    cpu_conv2d_release(&c);
    CHECK_MSG(c.impl[DRQ_CPU] == NULL, "%s: %p", "c.impl[DRQ_CPU] == NULL", (void *)(c.impl[DRQ_CPU]));
    run_shape(&c, t, 2, 9, 9); /* usable again after release */
    cpu_conv2d_release(&c);
    free(w), free(b);
}

int main(void) {
    drq_set_threads(2);
    for (int m = 0; m < NIMPLS; m++) {
        set_impl(impls[m]);
        for (int i = 0; i < NCASES; i++) test_against_reference(&cases[i]);
        for (int i = 0; i < NCASES; i++)
            if (cases[i].cin * cases[i].cout <= 64 * 64) test_vjp(&cases[i]); /* keeps SAN=1 quick */
        test_cache(&cases[3]);  /* 3x3 s2 pad(0,0,1,1), bias */
        test_cache(&cases[18]); /* 3x3 s2 pad(0,0,1,1), 64 channels */
        test_cache(&cases[20]); /* 1x1 s2 32>64 */
    }
    /* odd and single thread counts on the default implementation */
    set_impl("default");
    drq_set_threads(3);
    test_against_reference(&cases[16]);
    drq_set_threads(1);
    test_against_reference(&cases[17]);
    test_vjp(&cases[12]);
    drq_set_threads(2);
    return CHECK_DONE();
}
