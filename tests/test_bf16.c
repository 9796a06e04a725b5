/* test_bf16.c — "precision": "bf16" (docs/spec.md, kernels/ops.h "bf16
 * operands") on the CPU.
 *   1. round_bf16 against a plain reference written another way (the two
 *      bf16 neighbours of x compared in double, ties to the even one; the
 *      overflow threshold as IEEE's: the next bf16 step above the largest
 *      finite one counts as 2^128), bit for bit, on random bit patterns, exact
 *      ties and their neighbours, subnormals, ±0, ±inf, NaNs (also NaNs whose
 *      payload sits only in the low 16 bits, which truncation would turn into
 *      inf) and values around the overflow boundary; in place as well.  (The
 *      CUDA body K_round_bf16 against this op: tests/test_cuda_kernels.c.)
 *   2. the ops: a convolution and a linear layer with the bf16 flag equal,
 *      bit for bit, the float32 op on operands rounded here by hand (x and w
 *      forward, gy and w backward); attention_heads with bf16 leaves its saved
 *      q, k, v rounded and matches a double reference that rounds q, k, v and
 *      P (forward) and gh, P and gS (backward) to 1e-5.
 *   3. the guided-unet on the committed guided_tiny and guided_plain fixtures
 *      (32×32 scale-shift / updown / 4 heads, and 16×16 plain / 2 heads):
 *      a. bit for bit: the bf16 model on the CPU equals the fp32 model (no
 *         flags, weights unrounded) run on an "autocast" stand-in device: a
 *         copy of the CPU backend whose convolutions, linear layers and
 *         attention round their operands themselves, with this file's
 *         reference rounding (weights at every call, x / gy / q, k, v / gh;
 *         P and gS by the CPU attention's own bf16 path, checked in 2.) —
 *         so every matmul-class op of the model rounds, and nothing else does;
 *      b. against the float32 model: relative L2 above 1e-3 (the option does
 *         something) and below 5e-2 — bf16 keeps 8 significant bits, a
 *         relative rounding error of at most 2⁻⁹ ≈ 2e-3 per operand, two
 *         rounded operands per product; independent errors over a sum and
 *         over the ~30 layers of a path grow like their square root, so a few
 *         1e-3 to 1e-2 is the expected size; 5e-2 leaves room for the
 *         softmax's and the norms' amplification, not for an O(1) bug;
 *      c. against the float64 PyTorch reference with torch's own bf16
 *         rounding (tests/ref/gen_bf16.py, ref_guided.use_bf16): the size of
 *         the bf16 effect (bf16 vs fp32) agrees within a factor 1.25 (measured:
 *         within 5%), and the two bf16 results are closer to each other than
 *         either is to fp32.  Not closer: bf16 rounding is chaotic through
 *         a deep net — the reference's float64 activations differ from drq's
 *         float32 ones by ~1e-7, which flips the rounding of ~1e-4 of the
 *         first layer's operands; each flip is a whole bf16 step, so the next
 *         layer's inputs differ by ~1e-4, flipping more, until after a few
 *         layers the two roundings are as different as independent ones
 *         (measured in the guided_plain model: 0.02% of a conv's operands
 *         flipped at the first 3×3 conv, 2%, 9%, … 40% at the last ones).
 *         Any two bf16 implementations that differ anywhere in float32
 *         rounding share only the statistics, not the values.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../common/safetensors.h"
#include "../kernels/ops.h"
#include "worker/models/models.h"
#include "check.h"
#include "rand.h"

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- 1. the rounding -------------------------------------------------------- */
/* The reference: nearest of the two bf16 values around x, in double. */
static uint32_t ref_round(uint32_t u) {
    float x = float_of(u);
    if (isnan(x)) return 0x7fc00000u | (u & 0x80000000u); /* compared as "a NaN of this sign" */
    if (isinf(x) || x == 0) return u;
    uint32_t sign = u & 0x80000000u, mag = u & 0x7fffffffu;
    uint32_t lo = mag & 0xffff0000u, hi = lo + 0x10000u; /* the bf16 magnitudes around |x| (hi may be inf) */
    double ax = fabs((double)x), dlo = ax - (double)float_of(lo);
    double vhi = hi >= 0x7f800000u ? ldexp(1.0, 128) : (double)float_of(hi), dhi = vhi - ax;
    uint32_t r;
    if (dlo < dhi) r = lo;
    else if (dhi < dlo) r = hi;
    else r = (lo >> 16) & 1 ? hi : lo; /* tie: the even one */
    if (r >= 0x7f800000u) r = 0x7f800000u;
    return sign | r;
}

static int same_result(uint32_t got, uint32_t want) {
    if (isnan(float_of(want))) return isnan(float_of(got)) && (got & 0x80000000u) == (want & 0x80000000u);
    return got == want;
}

static void test_round(void) {
    enum { NR = 200000 };
    static const uint32_t special[] = {
        0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u,                           /* ±0, ±inf */
        0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7f80ffffu, 0x7fffffffu, /* NaNs */
        0x7f7f0000u, 0x7f7f7fffu, 0x7f7f8000u, 0x7f7f8001u, 0x7f7fffffu,               /* the overflow boundary */
        0xff7f7fffu, 0xff7f8000u, 0xff7fffffu, 0x7f7e8000u, 0x7f7effffu,
        0x00000001u, 0x00007fffu, 0x00008000u, 0x00008001u, 0x00018000u, 0x007fffffu, /* subnormals */
        0x007f8000u, 0x807f8000u, 0x80008000u, 0x00800000u,
        0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x3f808001u, 0xbf808000u, 0xbf818000u, /* ties around 1 */
    };
    size_t ns = sizeof special / sizeof special[0];
    Tensor x = tensor_new(1, 1, 1, NR + (int)ns), y = tensor_new(1, 1, 1, NR + (int)ns);
    for (size_t i = 0; i < ns; i++) x.data[i] = float_of(special[i]);
    for (int i = 0; i < NR; i++) {
        uint32_t r = (uint32_t)(urand() * 4294967296.0);
        switch (i % 4) { /* random patterns, exact ties, one below, one above */
        case 1: r = (r & 0xffff0000u) | 0x8000u; break;
        case 2: r = (r & 0xffff0000u) | 0x7fffu; break;
        case 3: r = (r & 0xffff0000u) | 0x8001u; break;
        }
        if (i % 16 == 5) r &= 0x807fffffu; /* a subnormal */
        x.data[ns + i] = float_of(r);
    }
    size_t n = tensor_numel(&x);
    round_bf16_forward(&x, &y);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t want = ref_round(bits_of(x.data[i])), got = bits_of(y.data[i]);
        if (!same_result(got, want) && bad++ < 5)
            CHECK_MSG(0, "round_bf16(0x%08x) = 0x%08x, the reference gives 0x%08x", bits_of(x.data[i]), got, want);
        if ((bits_of(y.data[i]) & 0xffffu) != 0 && !isnan(y.data[i]) && bad++ < 5)
            CHECK_MSG(0, "round_bf16(0x%08x) = 0x%08x has low bits", bits_of(x.data[i]), got);
    }
    CHECK_MSG(!bad, "round_bf16: %d of %zu values differ from the reference", bad, n);
    /* the overflow boundary and NaN payloads, spelled out */
    CHECK_EQ_INT((int)(bits_of(y.data[12]) == 0x7f800000u), 1);   /* 0x7f7f8000: tie above the largest → inf */
    CHECK_EQ_INT((int)(bits_of(y.data[11]) == 0x7f7f0000u), 1);   /* 0x7f7f7fff: the largest finite bf16 */
    CHECK_MSG(isnan(y.data[6]) && isnan(y.data[7]), "a NaN with a low payload stays a NaN");
    /* in place */
    Tensor z = tensor_new(1, 1, 1, (int)n);
    memcpy(z.data, x.data, n * sizeof(float));
    round_bf16_forward(&z, &z);
    int same = 1;
    for (size_t i = 0; i < n; i++) same &= bits_of(z.data[i]) == bits_of(y.data[i]);
    CHECK_MSG(same, "round_bf16 in place differs from out of place");
    /* idempotent */
    round_bf16_forward(&z, &z);
    same = 1;
    for (size_t i = 0; i < n; i++) same &= bits_of(z.data[i]) == bits_of(y.data[i]) || isnan(z.data[i]);
    CHECK_MSG(same, "round_bf16 is not idempotent");
    tensor_free(&x), tensor_free(&y), tensor_free(&z);
}

/* ---- 2. the ops --------------------------------------------------------------- */
static Tensor rounded(const Tensor *t) {
    Tensor r = tensor_new(t->n, t->c, t->h, t->w);
    for (size_t i = 0; i < tensor_numel(t); i++) r.data[i] = float_of(ref_round(bits_of(t->data[i])));
    return r;
}

static int bits_equal(const Tensor *a, const Tensor *b) {
    return tensor_numel(a) == tensor_numel(b) && !memcmp(a->data, b->data, tensor_numel(a) * sizeof(float));
}

static void test_conv_linear(void) {
    int cin = 5, cout = 7, k = 3;
    Tensor w = rnd(cout, cin, k, k), b = rnd(1, cout, 1, 1), x = rnd(2, cin, 9, 8), gy = rnd(2, cout, 9, 8);
    Tensor wr = rounded(&w), xr = rounded(&x), gyr = rounded(&gy);
    Conv2d c16 = conv2d_make(cin, cout, k, 1, 1, wr.data, b.data), c32 = conv2d_make(cin, cout, k, 1, 1, wr.data, b.data);
    c16.bf16 = 1;
    Tensor y16 = tensor_new(2, cout, 9, 8), y32 = tensor_new(2, cout, 9, 8), y0 = tensor_new(2, cout, 9, 8);
    conv2d_forward(&c16, &x, &y16);
    conv2d_forward(&c32, &xr, &y32);
    conv2d_forward(&c32, &x, &y0);
    CHECK_MSG(bits_equal(&y16, &y32), "bf16 conv forward differs from the fp32 conv on rounded x (rel %.3g)",
              rel_l2(y16.data, y32.data, tensor_numel(&y32)));
    CHECK_MSG(!bits_equal(&y16, &y0), "bf16 conv forward did not round x");
    Tensor g16 = tensor_new(2, cin, 9, 8), g32 = tensor_new(2, cin, 9, 8);
    conv2d_backward_input(&c16, &gy, &g16);
    conv2d_backward_input(&c32, &gyr, &g32);
    CHECK_MSG(bits_equal(&g16, &g32), "bf16 conv backward differs from the fp32 one on rounded gy (rel %.3g)",
              rel_l2(g16.data, g32.data, tensor_numel(&g32)));
    Tensor xc = rnd(2, cin, 9, 8);
    memcpy(xc.data, x.data, tensor_numel(&x) * sizeof(float));
    conv2d_forward(&c16, &x, &y16);
    CHECK_MSG(bits_equal(&x, &xc), "bf16 conv changed its input");
    conv2d_release(&c16), conv2d_release(&c32);

    /* linear: in 24, out 10 */
    int in = 24, out = 10;
    Tensor lw = rnd(out, in, 1, 1), lb = rnd(1, out, 1, 1), lx = rnd(3, in, 1, 1), lgy = rnd(3, out, 1, 1);
    Tensor lwr = rounded(&lw), lxr = rounded(&lx), lgyr = rounded(&lgy);
    Tensor ly16 = tensor_new(3, out, 1, 1), ly32 = tensor_new(3, out, 1, 1);
    linear_forward_prec(1, lwr.data, lb.data, in, out, &lx, &ly16);
    linear_forward(lwr.data, lb.data, in, out, &lxr, &ly32);
    CHECK_MSG(bits_equal(&ly16, &ly32), "bf16 linear forward differs from the fp32 one on rounded x");
    Tensor lg16 = tensor_new(3, in, 1, 1), lg32 = tensor_new(3, in, 1, 1);
    linear_backward_input_prec(1, lwr.data, in, out, &lgy, &lg16);
    linear_backward_input(lwr.data, in, out, &lgyr, &lg32);
    CHECK_MSG(bits_equal(&lg16, &lg32), "bf16 linear backward differs from the fp32 one on rounded gy");
    Tensor *ts[] = {&w, &b, &x, &gy, &wr, &xr, &gyr, &y16, &y32, &y0, &g16, &g32, &xc, &lw, &lb, &lx, &lgy,
                    &lwr, &lxr, &lgyr, &ly16, &ly32, &lg16, &lg32};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_free(ts[i]);
}

static float rb(double v) { return float_of(ref_round(bits_of((float)v))); }

/* attention_heads with bf16 against a double reference rounding what ops.h says */
static void test_attention(void) {
    int n = 2, heads = 2, C = 8, H = 3, W = 4, L = H * W, ch = C / heads;
    Tensor qkv = rnd(n, 3 * C, H, W), gh = rnd(n, C, H, W);
    for (size_t i = 0; i < tensor_numel(&qkv); i++) qkv.data[i] *= 1.5f;
    Tensor q = tensor_new(n, C, H, W), k = tensor_new(n, C, H, W), v = tensor_new(n, C, H, W);
    Tensor p = tensor_new(n, heads * L * L, 1, 1), h = tensor_new(n, C, H, W), h32 = tensor_new(n, C, H, W);
    Tensor gq = tensor_new(n, C, H, W), gk = tensor_new(n, C, H, W), gv = tensor_new(n, C, H, W);
    Tensor gqkv = tensor_new(n, 3 * C, H, W), gqkv32 = tensor_new(n, 3 * C, H, W);
    attention_heads_forward(&qkv, heads, 0, &q, &k, &v, &p, &h32);
    attention_heads_backward_input(&q, &k, &v, &p, &gh, heads, 0, &gq, &gk, &gv, &gqkv32);
    attention_heads_forward(&qkv, heads, 1, &q, &k, &v, &p, &h);
    int saved_rounded = 1;
    for (size_t i = 0; i < tensor_numel(&q); i++)
        saved_rounded &= (bits_of(q.data[i]) & 0xffffu) == 0 && (bits_of(k.data[i]) & 0xffffu) == 0 &&
                         (bits_of(v.data[i]) & 0xffffu) == 0;
    CHECK_MSG(saved_rounded, "attention_heads bf16: the saved q, k, v are not rounded");
    attention_heads_backward_input(&q, &k, &v, &p, &gh, heads, 1, &gq, &gk, &gv, &gqkv);
    /* the reference, per (image, head) */
    double scale = 1 / sqrt((double)ch), e_h = 0, n_h = 0, e_g = 0, n_g = 0;
    double *P = malloc(sizeof(double) * L * L), *GS = malloc(sizeof(double) * L * L);
    double *ref_h = calloc((size_t)n * C * L, sizeof(double)), *ref_g = calloc((size_t)n * 3 * C * L, sizeof(double));
    for (int i = 0; i < n; i++)
        for (int hd = 0; hd < heads; hd++) {
            const float *base = qkv.data + ((size_t)i * 3 * C + (size_t)hd * 3 * ch) * L;
            const float *Q = base, *K = base + (size_t)ch * L, *V = base + (size_t)2 * ch * L;
            const float *G = gh.data + ((size_t)i * C + (size_t)hd * ch) * L;
            double *RH = ref_h + ((size_t)i * C + (size_t)hd * ch) * L, *RG = ref_g + ((size_t)i * 3 * C + (size_t)hd * 3 * ch) * L;
            for (int t = 0; t < L; t++) {
                double mx = -1e300, s = 0;
                for (int u = 0; u < L; u++) {
                    double d = 0;
                    for (int c = 0; c < ch; c++) d += (double)rb(Q[c * L + t]) * rb(K[c * L + u]);
                    P[t * L + u] = d * scale, mx = fmax(mx, d * scale);
                }
                for (int u = 0; u < L; u++) s += (P[t * L + u] = exp(P[t * L + u] - mx));
                for (int u = 0; u < L; u++) P[t * L + u] /= s;
            }
            for (int c = 0; c < ch; c++)
                for (int t = 0; t < L; t++) {
                    double a = 0;
                    for (int u = 0; u < L; u++) a += (double)rb(V[c * L + u]) * rb(P[t * L + u]);
                    RH[c * L + t] = a;
                }
            /* gV = gH P, gP = gHᵀ V, gS = P ⊙ (gP − rowsum) · scale, gQ = K gSᵀ, gK = Q gS */
            for (int c = 0; c < ch; c++)
                for (int u = 0; u < L; u++) {
                    double a = 0;
                    for (int t = 0; t < L; t++) a += (double)rb(G[c * L + t]) * rb(P[t * L + u]);
                    RG[(2 * ch + c) * L + u] = a;
                }
            for (int t = 0; t < L; t++) {
                double dot = 0;
                for (int u = 0; u < L; u++) {
                    double a = 0;
                    for (int c = 0; c < ch; c++) a += (double)rb(G[c * L + t]) * rb(V[c * L + u]);
                    GS[t * L + u] = a, dot += a * P[t * L + u];
                }
                for (int u = 0; u < L; u++) GS[t * L + u] = rb(P[t * L + u] * (GS[t * L + u] - dot) * scale);
            }
            for (int c = 0; c < ch; c++)
                for (int t = 0; t < L; t++) {
                    double a = 0, b2 = 0;
                    for (int u = 0; u < L; u++) a += (double)rb(K[c * L + u]) * GS[t * L + u];
                    for (int u = 0; u < L; u++) b2 += (double)rb(Q[c * L + u]) * GS[u * L + t];
                    RG[c * L + t] = a, RG[(ch + c) * L + t] = b2;
                }
        }
    for (size_t i = 0; i < tensor_numel(&h); i++) e_h += pow(h.data[i] - ref_h[i], 2), n_h += ref_h[i] * ref_h[i];
    for (size_t i = 0; i < tensor_numel(&gqkv); i++)
        e_g += pow(gqkv.data[i] - ref_g[i], 2), n_g += ref_g[i] * ref_g[i];
    double rel_h = sqrt(e_h / n_h), rel_g = sqrt(e_g / n_g);
    CHECK_LE(rel_h, 1e-5, "attention_heads bf16 forward vs the double reference with rounded operands");
    CHECK_LE(rel_g, 1e-5, "attention_heads bf16 backward vs the double reference with rounded operands");
    double d_h = rel_l2(h.data, h32.data, tensor_numel(&h)), d_g = rel_l2(gqkv.data, gqkv32.data, tensor_numel(&gqkv));
    CHECK_MSG(d_h > 1e-4 && d_g > 1e-4, "attention_heads bf16 differs from fp32 (forward %.3g, backward %.3g)", d_h,
              d_g);
    printf("attention_heads bf16: vs the rounded double reference %.2e / %.2e, vs fp32 %.2e / %.2e\n", rel_h, rel_g,
           d_h, d_g);
    free(P), free(GS), free(ref_h), free(ref_g);
    Tensor *ts[] = {&qkv, &gh, &q, &k, &v, &p, &h, &h32, &gq, &gk, &gv, &gqkv, &gqkv32};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_free(ts[i]);
}

/* ---- 3a. the autocast stand-in device ------------------------------------------ */
static const drq_backend *CPU_B;
static drq_backend autocast;
static float *ac_alloc(size_t n) { return calloc(n ? n : 1, sizeof(float)); }
static void ac_release(float *p) { free(p); }
static void ac_copy(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
static float *rounded_copy(const float *x, size_t n) {
    float *r = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) r[i] = float_of(ref_round(bits_of(x[i])));
    return r;
}
static Tensor rounded_like(const Tensor *t) {
    Tensor r = *t;
    r.owns = 0, r.data = rounded_copy(t->data, tensor_numel(t));
    return r;
}
/* a Conv2d like c with its weight rounded here, and a cache of its own */
static Conv2d conv_rounded(const Conv2d *c) {
    Conv2d r = *c;
    memset(r.impl, 0, sizeof r.impl);
    r.w = rounded_copy(c->w, (size_t)c->cout * c->cin * c->kh * c->kw);
    return r;
}
static void ac_conv_f(Conv2d *c, const Tensor *x, Tensor *y) {
    Conv2d r = conv_rounded(c);
    Tensor xr = rounded_like(x);
    (CPU_B->conv2d_forward)(&r, &xr, y);
    (CPU_B->conv2d_release)(&r);
    free((float *)r.w), free(xr.data);
}
static void ac_conv_b(Conv2d *c, const Tensor *gy, Tensor *gx) {
    Conv2d r = conv_rounded(c);
    Tensor gr = rounded_like(gy);
    (CPU_B->conv2d_backward_input)(&r, &gr, gx);
    (CPU_B->conv2d_release)(&r);
    free((float *)r.w), free(gr.data);
}
static void ac_lin_f(const float *w, const float *b, int in, int out, const Tensor *x, Tensor *y) {
    float *wr = rounded_copy(w, (size_t)in * out);
    Tensor xr = rounded_like(x);
    (CPU_B->linear_forward)(wr, b, in, out, &xr, y);
    free(wr), free(xr.data);
}
static void ac_lin_b(const float *w, int in, int out, const Tensor *gy, Tensor *gx) {
    float *wr = rounded_copy(w, (size_t)in * out);
    Tensor gr = rounded_like(gy);
    (CPU_B->linear_backward_input)(wr, in, out, &gr, gx);
    free(wr), free(gr.data);
}
static void round_in_place(const Tensor *t) {
    for (size_t i = 0; i < tensor_numel(t); i++) t->data[i] = float_of(ref_round(bits_of(t->data[i])));
}
/* q, k, v are attention_heads' saved copies: rounded in place, as the backward must see them */
static void ac_att_f(const Tensor *q, const Tensor *k, const Tensor *v, Tensor *p, Tensor *h, int bf16) {
    CHECK_MSG(!bf16, "the fp32 model asked for bf16 attention");
    round_in_place(q), round_in_place(k), round_in_place(v);
    (CPU_B->attention_forward)(q, k, v, p, h, 1);
}
static void ac_att_b(const Tensor *q, const Tensor *k, const Tensor *v, const Tensor *p, const Tensor *gh, Tensor *gq,
                     Tensor *gk, Tensor *gv, int bf16) {
    Tensor gr = rounded_like(gh);
    (CPU_B->attention_backward_input)(q, k, v, p, &gr, gq, gk, gv, 1);
    free(gr.data);
}
static void ac_round(const Tensor *x, Tensor *y) {
    (void)x, (void)y;
    CHECK_MSG(0, "the fp32 model called round_bf16");
}

static void autocast_install(void) {
    CPU_B = drq_backend_for(DRQ_CPU);
    autocast = *CPU_B;
    autocast.name = "autocast stand-in";
    autocast.alloc = ac_alloc, autocast.release = ac_release, autocast.copy = ac_copy;
    autocast.conv2d_forward = ac_conv_f, autocast.conv2d_backward_input = ac_conv_b;
    autocast.linear_forward = ac_lin_f, autocast.linear_backward_input = ac_lin_b;
    autocast.attention_forward = ac_att_f, autocast.attention_backward_input = ac_att_b;
    autocast.round_bf16 = ac_round;
    drq_backend_install(DRQ_CUDA, &autocast);
}

/* ---- 3. the guided-unet on the fixtures --------------------------------------- */
static guided_unet *load_fixture(const char *name, st_file *w, int bf16, drq_device dev) {
    char cfg[256];
    drq_err err = {{0}};
    guided_unet_config c;
    snprintf(cfg, sizeof cfg, "tests/fixtures/%s.json", name);
    if (guided_unet_config_parse(cfg, &c, &err)) {
        CHECK_MSG(0, "%s: %s", cfg, err.msg);
        return NULL;
    }
    c.bf16 = bf16;
    for (int i = 0; i < w->n; i++) w->t[i].used = 0;
    guided_unet *m = guided_unet_load(&c, w, 0, dev, &err);
    CHECK_MSG(m != NULL, "%s: %s", name, err.msg);
    return m;
}

static Tensor from_st(const st_tensor *t) {
    Tensor r = tensor_new((int)t->shape[0], (int)t->shape[1], (int)t->shape[2], (int)t->shape[3]);
    memcpy(r.data, t->data, t->numel * sizeof(float));
    return r;
}

static void test_fixture(const char *name) {
    char path[256], key[128];
    drq_err err = {{0}};
    st_file w = {0}, io = {0}, ref = {0};
    snprintf(path, sizeof path, "tests/fixtures/%s.weights.safetensors", name);
    int bad = st_load(path, &w, &err);
    snprintf(path, sizeof path, "tests/fixtures/%s.io.safetensors", name);
    bad = bad || st_load(path, &io, &err);
    bad = bad || st_load("tests/fixtures/guided_bf16.safetensors", &ref, &err);
    if (bad) {
        CHECK_MSG(0, "%s: %s", name, err.msg);
        return;
    }
    guided_unet *m16 = load_fixture(name, &w, 1, DRQ_CPU), *m32 = load_fixture(name, &w, 0, DRQ_CPU);
    guided_unet *mac = load_fixture(name, &w, 0, DRQ_CUDA); /* fp32 on the autocast stand-in */
    const st_tensor *tx = st_find(&io, "x"), *tt = st_find(&io, "t"), *tg = st_find(&io, "grad_y");
    const st_tensor *y64 = st_find(&io, "y"), *g64 = st_find(&io, "grad_x"); /* the float64 fp32 reference */
    snprintf(key, sizeof key, "%s.y", name);
    const st_tensor *ry = st_find(&ref, key);
    snprintf(key, sizeof key, "%s.grad_x", name);
    const st_tensor *rg = st_find(&ref, key);
    if (!m16 || !m32 || !mac || !tx || !tt || !tg || !ry || !rg || !y64 || !g64) {
        CHECK_MSG(0, "%s: a model or a fixture tensor is missing", name);
        return;
    }
    Tensor x = from_st(tx), gy = from_st(tg);
    Tensor y16 = tensor_new(gy.n, gy.c, gy.h, gy.w), y32 = tensor_new(gy.n, gy.c, gy.h, gy.w);
    Tensor g16 = tensor_new(x.n, x.c, x.h, x.w), g32 = tensor_new(x.n, x.c, x.h, x.w);
    guided_unet_forward(m16, &x, tt->data, &y16);
    guided_unet_backward(m16, &gy, &g16);
    guided_unet_forward(m32, &x, tt->data, &y32);
    guided_unet_backward(m32, &gy, &g32);
    size_t ny = tensor_numel(&y16), nx = tensor_numel(&x);
    /* a. the autocast stand-in */
    Tensor xd = tensor_clone_on(DRQ_CUDA, &x), gyd = tensor_clone_on(DRQ_CUDA, &gy);
    Tensor yd = tensor_new_on(DRQ_CUDA, gy.n, gy.c, gy.h, gy.w), gd = tensor_new_on(DRQ_CUDA, x.n, x.c, x.h, x.w);
    guided_unet_forward(mac, &xd, tt->data, &yd);
    guided_unet_backward(mac, &gyd, &gd);
    CHECK_MSG(!memcmp(yd.data, y16.data, ny * sizeof(float)),
              "%s: bf16 forward differs from the fp32 model on the autocast stand-in (rel %.3g)", name,
              rel_l2(y16.data, yd.data, ny));
    CHECK_MSG(!memcmp(gd.data, g16.data, nx * sizeof(float)),
              "%s: bf16 input-VJP differs from the fp32 model on the autocast stand-in (rel %.3g)", name,
              rel_l2(g16.data, gd.data, nx));
    /* b. against fp32 */
    double dy = rel_l2(y16.data, y32.data, ny), dg = rel_l2(g16.data, g32.data, nx);
    char what[200];
    CHECK_MSG(dy > 1e-3 && dg > 1e-3, "%s: bf16 vs fp32 must differ (y %.3g, grad_x %.3g)", name, dy, dg);
    snprintf(what, sizeof what, "%s: bf16 vs fp32, y", name);
    CHECK_LE(dy, 5e-2, what);
    snprintf(what, sizeof what, "%s: bf16 vs fp32, grad_x", name);
    CHECK_LE(dg, 5e-2, what);
    /* c. against the torch reference: the same size of effect; closer to each other than to fp32 */
    CHECK_MSG(ry->numel == ny && rg->numel == nx && y64->numel == ny && g64->numel == nx, "%s: reference shapes", name);
    double ry_ = rel_l2(ry->data, y64->data, ny), rg_ = rel_l2(rg->data, g64->data, nx);
    double ey = rel_l2(y16.data, ry->data, ny), eg = rel_l2(g16.data, rg->data, nx);
    CHECK_MSG(dy / ry_ < 1.25 && ry_ / dy < 1.25, "%s: bf16's effect on y: drq %.3g, torch %.3g", name, dy, ry_);
    CHECK_MSG(dg / rg_ < 1.25 && rg_ / dg < 1.25, "%s: bf16's effect on grad_x: drq %.3g, torch %.3g", name, dg, rg_);
    CHECK_MSG(ey < dy && ey < ry_ && eg < dg && eg < rg_,
              "%s: drq's and torch's bf16 results are not closer to each other (y %.3g, grad_x %.3g) than to fp32",
              name, ey, eg);
    printf("%s: bf16 vs fp32: y %.2e, grad_x %.2e (torch: %.2e, %.2e); drq bf16 vs torch bf16: y %.2e, grad_x %.2e\n",
           name, dy, dg, ry_, rg_, ey, eg);
    guided_unet_free(m16), guided_unet_free(m32), guided_unet_free(mac);
    tensor_free(&xd), tensor_free(&gyd), tensor_free(&yd), tensor_free(&gd);
    Tensor *ts[] = {&x, &gy, &y16, &y32, &g16, &g32};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_free(ts[i]);
    st_free(&w), st_free(&io), st_free(&ref);
}

int main(void) {
    test_round();
    test_conv_linear();
    test_attention();
    autocast_install();
    test_fixture("guided_tiny");
    test_fixture("guided_plain");
    return CHECK_DONE();
}
