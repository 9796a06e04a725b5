/* ops_cpu.c — the CPU backend for every op but convolution (conv.c).
 *
 * Pointwise and normalisation loops are OpenMP-parallel over batch × channel
 * planes; linear and attention go to oneDNN's row-major sgemm, which runs on
 * the same OpenMP pool as everything else.  (OpenBLAS was measured too: its
 * own thread pool fought OpenMP's for the two cores — a fifth of the UNet's
 * time went to sched_yield — and its sgemm was 2–3× slower on these shapes.)
 * Shapes were validated by kernels/ops.c before anything here runs.
 */
#include <dnnl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/rng.h"
#include "../../common/util.h"
#include "../bf16.h"
#include "cpu.h"

/* Pointwise loops shorter than this run on the calling thread alone: an
 * OpenMP fork/join costs more than they do (the demo's 28×28 activations
 * are 25k floats per image).  Elementwise, so no value depends on it. */
#define PAR_MIN 32768

/* Row-major C = alpha·op(A)·op(B) + beta·C on oneDNN; ta/tb: 'N' or 'T'. */
static void sgemm(char ta, char tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                  float beta, float *C, int ldc) {
    dnnl_status_t st = dnnl_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    if (st != dnnl_success) DIE("dnnl_sgemm(%c%c, %d×%d×%d) failed with status %d", ta, tb, M, N, K, (int)st);
}

/* The same GEMM, cut into blocks of GEMM_ROWS rows of C, the blocks spread
 * over the OpenMP threads.  Inside a parallel region oneDNN's sgemm runs on
 * the calling thread alone, so every block is one single-threaded call of a
 * shape fixed by M, N, K: no element's sum depends on the thread count (a
 * multi-threaded sgemm splits K, and so the sums, by the threads it has). */
#define GEMM_ROWS 32
static void sgemm_rows(char ta, char tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                       int ldb, float beta, float *C, int ldc) {
    int blocks = (M + GEMM_ROWS - 1) / GEMM_ROWS;
#pragma omp parallel for schedule(static)
    for (int bi = 0; bi < blocks; bi++) {
        int r0 = bi * GEMM_ROWS, m = M - r0 < GEMM_ROWS ? M - r0 : GEMM_ROWS;
        const float *Ab = ta == 'N' ? A + (size_t)r0 * lda : A + r0; /* rows r0.. of op(A) */
        sgemm(ta, tb, m, N, K, alpha, Ab, lda, B, ldb, beta, C + (size_t)r0 * ldc, ldc);
    }
}

/* =====================================================================
 * linear: y[n,out] = x[n,in] · Wᵀ + b
 * One single-threaded GEMM per sample (M = 1), the samples over the threads:
 * sgemm picks its kernel by M and splits K by its threads, so a batched or
 * multi-threaded call would round differently at batch 1 and batch 3 or at
 * 1 and 2 threads.  (The linears are the timestep MLP and the classifier
 * head: tiny next to the convolutions.)
 * ===================================================================== */
static void cpu_linear_forward(const float *w, const float *b, int in, int out, const Tensor *x, Tensor *y) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < x->n; i++) {
        float *yi = y->data + (size_t)i * out;
        if (b) memcpy(yi, b, sizeof(float) * out);
        sgemm('N', 'T', 1, out, in, 1.0f, x->data + (size_t)i * in, in, w, in, b ? 1.0f : 0.0f, yi, out);
    }
}

/* gx[n,in] = gy[n,out] · W */
static void cpu_linear_backward_input(const float *w, int in, int out, const Tensor *gy, Tensor *gx) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < gy->n; i++)
        sgemm('N', 'N', 1, in, out, 1.0f, gy->data + (size_t)i * out, out, w, in, 0.0f, gx->data + (size_t)i * in, in);
}

/* =====================================================================
 * batch norm (inference): a per-channel affine map
 * ===================================================================== */
static void cpu_batch_norm_forward(const Tensor *x, const float *scale, const float *shift, Tensor *y) {
    size_t hw = (size_t)x->h * x->w;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < x->n * x->c; p++) {
        int ch = p % x->c;
        const float *xp = x->data + p * hw;
        float *yp = y->data + p * hw;
        float a = scale[ch], b = shift[ch];
        for (size_t e = 0; e < hw; e++) yp[e] = xp[e] * a + b;
    }
}

static void cpu_batch_norm_backward_input(const Tensor *gy, const float *scale, Tensor *gx) {
    size_t hw = (size_t)gy->h * gy->w;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < gy->n * gy->c; p++) {
        float a = scale[p % gy->c];
        const float *gp = gy->data + p * hw;
        float *op = gx->data + p * hw;
        for (size_t e = 0; e < hw; e++) op[e] = gp[e] * a;
    }
}

/* =====================================================================
 * pointwise
 * ===================================================================== */

/* e^x, branch- and call-free so that loops over it vectorize (libm's expf
 * does not without -ffast-math): round-to-nearest k = x·log2(e) by the
 * 1.5·2^23 trick, Cody–Waite reduction r = x − k·ln 2, Cephes' degree-6
 * polynomial, then 2^k through the exponent bits.  Within 2 ulp of expf on
 * [−87, 88]; inputs outside are clamped (σ saturates long before). */
static inline float exp_vec(float x) {
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x; /* not fminf/fmaxf: those are libm calls here */
    float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - k * 0.693359375f;
    r = r + k * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float e = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return e * scale;
}

/* swish(x) = x·σ(x), and its VJP g·σ(x)·(1 + x·(1 − σ(x))); one definition
 * for the plain and the fused (group norm + swish) ops, so they round alike. */
static inline float swish_val(float x) { return x / (1.0f + exp_vec(-x)); }
static inline float swish_grad(float x, float g) {
    float s = 1.0f / (1.0f + exp_vec(-x));
    return g * s * (1.0f + x * (1.0f - s));
}

static void cpu_swish_forward(const Tensor *x, Tensor *y) {
    size_t n = tensor_numel(x);
    const float *xp = x->data;
    float *yp = y->data;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) yp[i] = swish_val(xp[i]);
}

/* d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x))) */
static void cpu_swish_backward_input(const Tensor *x, const Tensor *gy, Tensor *gx) {
    size_t n = tensor_numel(x);
    const float *xp = x->data, *gp = gy->data;
    float *op = gx->data;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) op[i] = swish_grad(xp[i], gp[i]);
}

/* =====================================================================
 * group norm, and group norm fused with swish: statistics per (sample,
 * group) over (C/G)·H·W values, accumulated in double; stats = {mean, rstd}
 * per (sample, group).  Each (sample, group) is computed whole by one
 * thread.  The fused ops run the same arithmetic in one pass (bit-identical
 * to the pair of ops).
 * ===================================================================== */
static void gn_stats(const float *xp, size_t m, float eps, double *mean, double *rstd) {
    double s = 0, ss = 0;
#pragma omp simd reduction(+ : s)
    for (size_t e = 0; e < m; e++) s += xp[e];
    *mean = s / (double)m;
#pragma omp simd reduction(+ : ss)
    for (size_t e = 0; e < m; e++) {
        double d = xp[e] - *mean;
        ss += d * d;
    }
    *rstd = 1.0 / sqrt(ss / (double)m + eps);
}

/* One (sample, group) of x + bias: x itself without a bias, else x + bias
 * per channel (float additions, as add_channel_forward) written into buf,
 * a thread's group-sized buffer that stays in cache. */
static const float *gn_group_input(const Tensor *x, const Tensor *bias, int ng, int groups, float *buf) {
    int cpg = x->c / groups, g = ng % groups, i = ng / groups;
    size_t hw = (size_t)x->h * x->w, off = ((size_t)i * x->c + (size_t)g * cpg) * hw;
    if (!bias) return x->data + off;
    for (int cc = 0; cc < cpg; cc++) {
        float b = bias->data[(size_t)i * x->c + g * cpg + cc];
        const float *xc = x->data + off + cc * hw;
        float *oc = buf + cc * hw;
        for (size_t e = 0; e < hw; e++) oc[e] = xc[e] + b;
    }
    return buf;
}

/* h = group norm of x (+ bias per channel, see gn_group_input); with y, also y = swish(h). */
static void gn_forward(const Tensor *x, const Tensor *bias, int groups, float eps, const float *gamma,
                       const float *beta, Tensor *h, Tensor *y, float *stats) {
    int n = x->n, cpg = x->c / groups;
    size_t hw = (size_t)x->h * x->w, m = (size_t)cpg * hw;
#pragma omp parallel if (tensor_numel(x) >= PAR_MIN)
    {
    float *buf = bias ? xmalloc(m * sizeof(float)) : NULL;
#pragma omp for schedule(static)
    for (int ng = 0; ng < n * groups; ng++) {
        int g = ng % groups, i = ng / groups;
        size_t off = ((size_t)i * x->c + (size_t)g * cpg) * hw;
        const float *xp = gn_group_input(x, bias, ng, groups, buf);
        double mean, rstd;
        gn_stats(xp, m, eps, &mean, &rstd);
        stats[2 * ng] = (float)mean;
        stats[2 * ng + 1] = (float)rstd;
        for (int cc = 0; cc < cpg; cc++) {
            int ch = g * cpg + cc;
            float a = (float)rstd * (gamma ? gamma[ch] : 1.0f);
            float bb = (beta ? beta[ch] : 0.0f) - (float)mean * a;
            const float *xc = xp + cc * hw;
            float *hc = h->data + off + cc * hw;
            for (size_t e = 0; e < hw; e++) hc[e] = xc[e] * a + bb;
            if (y) {
                float *yc = y->data + off + cc * hw;
                for (size_t e = 0; e < hw; e++) yc[e] = swish_val(hc[e]);
            }
        }
    }
    free(buf);
    }
}

static void cpu_group_norm_forward(const Tensor *x, int groups, float eps, const float *gamma, const float *beta,
                                   Tensor *y, float *stats) {
    gn_forward(x, NULL, groups, eps, gamma, beta, y, NULL, stats);
}

static void cpu_group_norm_swish_forward(const Tensor *x, const Tensor *bias, int groups, float eps,
                                         const float *gamma, const float *beta, Tensor *h, Tensor *y, float *stats) {
    gn_forward(x, bias, groups, eps, gamma, beta, h, y, stats);
}

/* One (sample, group) of the backward: op = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))
 * with ĝ = gp·γ, x̂ = (x−μ)·rstd, over cpg channels of hw values. */
static void gn_backward_group(const float *xp, const float *gp, float *op, const float *gamma, int g, int cpg,
                              size_t hw, double mean, double rstd) {
    size_t m = (size_t)cpg * hw;
    double sg = 0, sgx = 0;
    for (int cc = 0; cc < cpg; cc++) {
        double gm = gamma ? gamma[g * cpg + cc] : 1.0;
#pragma omp simd reduction(+ : sg, sgx)
        for (size_t e = 0; e < hw; e++) {
            double gh = gp[cc * hw + e] * gm;
            sg += gh;
            sgx += gh * (xp[cc * hw + e] - mean) * rstd;
        }
    }
    double mg = sg / (double)m, mgx = sgx / (double)m;
    for (int cc = 0; cc < cpg; cc++) {
        double gm = gamma ? gamma[g * cpg + cc] : 1.0;
        for (size_t e = 0; e < hw; e++) {
            size_t k = cc * hw + e;
            double xh = (xp[k] - mean) * rstd;
            op[k] = (float)(rstd * (gp[k] * gm - mg - xh * mgx));
        }
    }
}

static void cpu_group_norm_backward_input(const Tensor *x, const Tensor *gy, int groups, const float *gamma,
                                          const float *stats, Tensor *gx) {
    int n = x->n, cpg = x->c / groups;
    size_t hw = (size_t)x->h * x->w;
#pragma omp parallel for schedule(static) if (tensor_numel(x) >= PAR_MIN)
    for (int ng = 0; ng < n * groups; ng++) {
        size_t off = ((size_t)(ng / groups) * x->c + (size_t)(ng % groups) * cpg) * hw;
        gn_backward_group(x->data + off, gy->data + off, gx->data + off, gamma, ng % groups, cpg, hw, stats[2 * ng],
                          stats[2 * ng + 1]);
    }
}

/* swish's VJP is taken per (sample, group) into a thread-local buffer that
 * stays in cache, then the norm's: no full pass writes it to memory. */
static void cpu_group_norm_swish_backward_input(const Tensor *x, const Tensor *bias, const Tensor *h,
                                                const Tensor *gy, int groups, const float *gamma, const float *stats,
                                                Tensor *gx) {
    int n = x->n, cpg = x->c / groups;
    size_t hw = (size_t)x->h * x->w, m = (size_t)cpg * hw;
#pragma omp parallel if (tensor_numel(x) >= PAR_MIN)
    {
        float *gs = xmalloc(m * sizeof(float)), *buf = bias ? xmalloc(m * sizeof(float)) : NULL;
#pragma omp for schedule(static)
        for (int ng = 0; ng < n * groups; ng++) {
            size_t off = ((size_t)(ng / groups) * x->c + (size_t)(ng % groups) * cpg) * hw;
            const float *hp = h->data + off, *gp = gy->data + off;
            for (size_t k = 0; k < m; k++) gs[k] = swish_grad(hp[k], gp[k]);
            gn_backward_group(gn_group_input(x, bias, ng, groups, buf), gs, gx->data + off, gamma, ng % groups, cpg,
                              hw, stats[2 * ng], stats[2 * ng + 1]);
        }
        free(gs);
        free(buf);
    }
}

static void cpu_relu_forward(const Tensor *x, Tensor *y) {
    size_t n = tensor_numel(x);
    const float *xp = x->data;
    float *yp = y->data;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) yp[i] = xp[i] > 0.0f ? xp[i] : 0.0f;
}

static void cpu_relu_backward_input(const Tensor *x, const Tensor *gy, Tensor *gx) {
    size_t n = tensor_numel(x);
    const float *xp = x->data, *gp = gy->data;
    float *op = gx->data;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) op[i] = xp[i] > 0.0f ? gp[i] : 0.0f;
}

static void cpu_add_forward(const Tensor *a, const Tensor *b, Tensor *y) {
    size_t n = tensor_numel(a);
    const float *ap = a->data, *bp = b->data;
    float *yp = y->data;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) yp[i] = ap[i] + bp[i];
}

static void cpu_axpy(float alpha, const Tensor *x, Tensor *y) {
    size_t n = tensor_numel(x);
    const float *xp = x->data;
    float *yp = y->data;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) yp[i] += alpha * xp[i];
}

static void cpu_add_channel_forward(const Tensor *x, const Tensor *v, Tensor *y) {
    size_t hw = (size_t)x->h * x->w;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < x->n * x->c; p++) {
        float a = v->data[p]; /* v is n × c, so plane p = (i, ch) indexes it directly */
        const float *xp = x->data + p * hw;
        float *yp = y->data + p * hw;
        for (size_t e = 0; e < hw; e++) yp[e] = xp[e] + a;
    }
}

static void cpu_add_channel_backward_input(const Tensor *gy, Tensor *gx, Tensor *gv) {
    size_t hw = (size_t)gy->h * gy->w;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < gy->n * gy->c; p++) {
        const float *gp = gy->data + p * hw;
        double s = 0;
        for (size_t e = 0; e < hw; e++) s += gp[e];
        if (gv) gv->data[p] = (float)s;
        if (gx && gx->data != gy->data) memcpy(gx->data + p * hw, gp, hw * sizeof(float));
    }
}

/* =====================================================================
 * single-head attention over L positions, per sample:
 *   S = Qᵀ K · scale (L×L), P = softmax_rows(S), H = V Pᵀ (C×L)
 * backward:
 *   gV = gH P,  gP = gHᵀ V,  gS = P ⊙ (gP − rowsum(gP ⊙ P)) · scale,
 *   gQ = K gSᵀ, gK = Q gS
 * bf16 (ops.h "bf16 operands"; q, k, v, gh come rounded from ops.c): P is
 * rounded (in a copy; p keeps the float32 softmax) where it enters H and gV,
 * and gS is rounded before gQ and gK.
 * ===================================================================== */
static void round_rows(float *y, const float *x, size_t n) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = drq_bf16_round(x[i]);
}

static void cpu_round_bf16(const Tensor *x, Tensor *y) { round_rows(y->data, x->data, tensor_numel(x)); }

static void cpu_attention_forward(const Tensor *q, const Tensor *k, const Tensor *v, Tensor *p, Tensor *h, int bf16) {
    int C = q->c, L = q->h * q->w;
    float scale = 1.0f / sqrtf((float)C);
    float *pb = bf16 ? xmalloc(sizeof(float) * (size_t)L * L) : NULL;
    for (int i = 0; i < q->n; i++) {
        const float *qi = q->data + (size_t)i * C * L, *ki = k->data + (size_t)i * C * L;
        const float *vi = v->data + (size_t)i * C * L;
        float *pi = p->data + (size_t)i * L * L, *hi = h->data + (size_t)i * C * L;
        sgemm_rows('T', 'N', L, L, C, scale, qi, L, ki, L, 0.0f, pi, L);
#pragma omp parallel for schedule(static)
        for (int r = 0; r < L; r++) {
            float *row = pi + (size_t)r * L, mx = row[0];
            for (int j = 1; j < L; j++) mx = row[j] > mx ? row[j] : mx;
            double s = 0;
            for (int j = 0; j < L; j++) s += (row[j] = expf(row[j] - mx));
            float inv = (float)(1.0 / s);
            for (int j = 0; j < L; j++) row[j] *= inv;
        }
        if (bf16) round_rows(pb, pi, (size_t)L * L);
        sgemm_rows('N', 'T', C, L, L, 1.0f, vi, L, bf16 ? pb : pi, L, 0.0f, hi, L);
    }
    free(pb);
}

static void cpu_attention_backward_input(const Tensor *q, const Tensor *k, const Tensor *v, const Tensor *p,
                                         const Tensor *gh, Tensor *gq, Tensor *gk, Tensor *gv, int bf16) {
    int C = q->c, L = q->h * q->w;
    float scale = 1.0f / sqrtf((float)C);
    float *gs = xmalloc(sizeof(float) * (size_t)L * L);
    float *pb = bf16 ? xmalloc(sizeof(float) * (size_t)L * L) : NULL;
    for (int i = 0; i < q->n; i++) {
        size_t o = (size_t)i * C * L;
        const float *pi = p->data + (size_t)i * L * L, *ghi = gh->data + o;
        if (bf16) round_rows(pb, pi, (size_t)L * L);
        sgemm_rows('N', 'N', C, L, L, 1.0f, ghi, L, bf16 ? pb : pi, L, 0.0f, gv->data + o, L);
        sgemm_rows('T', 'N', L, L, C, 1.0f, ghi, L, v->data + o, L, 0.0f, gs, L);
#pragma omp parallel for schedule(static)
        for (int r = 0; r < L; r++) {
            float *g = gs + (size_t)r * L;
            const float *pr = pi + (size_t)r * L;
            double dot = 0;
            for (int j = 0; j < L; j++) dot += (double)g[j] * pr[j];
            for (int j = 0; j < L; j++) g[j] = pr[j] * (g[j] - (float)dot) * scale;
        }
        if (bf16) round_rows(gs, gs, (size_t)L * L);
        sgemm_rows('N', 'T', C, L, L, 1.0f, k->data + o, L, gs, L, 0.0f, gq->data + o, L);
        sgemm_rows('N', 'N', C, L, L, 1.0f, q->data + o, L, gs, L, 0.0f, gk->data + o, L);
    }
    free(gs), free(pb);
}

/* =====================================================================
 * resampling, pooling, concat
 * ===================================================================== */
static void cpu_upsample2x_forward(const Tensor *x, Tensor *y) {
    int H = x->h, W = x->w;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < x->n * x->c; p++) {
        const float *xp = x->data + (size_t)p * H * W;
        float *yp = y->data + (size_t)p * 4 * H * W;
        for (int i = 0; i < 2 * H; i++)
            for (int j = 0; j < 2 * W; j++) yp[(size_t)i * 2 * W + j] = xp[(i / 2) * W + j / 2];
    }
}

static void cpu_upsample2x_backward_input(const Tensor *gy, Tensor *gx) {
    int H = gx->h, W = gx->w;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < gx->n * gx->c; p++) {
        const float *gp = gy->data + (size_t)p * 4 * H * W;
        float *op = gx->data + (size_t)p * H * W;
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++) {
                const float *g = gp + (size_t)(2 * i) * 2 * W + 2 * j;
                op[i * W + j] = g[0] + g[1] + g[2 * W] + g[2 * W + 1];
            }
    }
}

static void cpu_avgpool_global_forward(const Tensor *x, Tensor *y) {
    size_t hw = (size_t)x->h * x->w;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < x->n * x->c; p++) {
        double s = 0;
        for (size_t e = 0; e < hw; e++) s += x->data[p * hw + e];
        y->data[p] = (float)(s / (double)hw);
    }
}

static void cpu_avgpool_global_backward_input(const Tensor *gy, Tensor *gx) {
    size_t hw = (size_t)gx->h * gx->w;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < gx->n * gx->c; p++) {
        float g = gy->data[p] / (float)hw;
        for (size_t e = 0; e < hw; e++) gx->data[p * hw + e] = g;
    }
}

static void cpu_concat_forward(const Tensor *a, const Tensor *b, Tensor *y) {
    size_t sa = (size_t)a->c * a->h * a->w, sb = (size_t)b->c * b->h * b->w;
    for (int i = 0; i < a->n; i++) {
        memcpy(y->data + i * (sa + sb), a->data + i * sa, sa * sizeof(float));
        memcpy(y->data + i * (sa + sb) + sa, b->data + i * sb, sb * sizeof(float));
    }
}

static void cpu_concat_backward_input(const Tensor *gy, Tensor *ga, Tensor *gb) {
    size_t sa = (size_t)ga->c * ga->h * ga->w, sb = (size_t)gb->c * gb->h * gb->w;
    for (int i = 0; i < ga->n; i++) {
        memcpy(ga->data + i * sa, gy->data + i * (sa + sb), sa * sizeof(float));
        memcpy(gb->data + i * sb, gy->data + i * (sa + sb) + sa, sb * sizeof(float));
    }
}

/* =====================================================================
 * max pooling (ops.h: -inf padding, the first maximum wins ties)
 * ===================================================================== */
/* Index within the H × W plane xp of the first maximum of output window
 * (oy, ox). */
static int maxpool_argmax(const float *xp, int H, int W, int k, int stride, int pad, int oy, int ox) {
    int best = -1;
    float m = 0.0f;
    for (int i = 0; i < k; i++) {
        int r = oy * stride - pad + i;
        if (r < 0 || r >= H) continue;
        for (int j = 0; j < k; j++) {
            int c = ox * stride - pad + j;
            if (c < 0 || c >= W) continue;
            float v = xp[r * W + c];
            if (best < 0 || v > m) best = r * W + c, m = v;
        }
    }
    return best;
}

static void cpu_maxpool2d_forward(const Tensor *x, int k, int stride, int pad, Tensor *y) {
    int H = x->h, W = x->w, OH = y->h, OW = y->w;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < x->n * x->c; p++) {
        const float *xp = x->data + (size_t)p * H * W;
        float *yp = y->data + (size_t)p * OH * OW;
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) yp[oy * OW + ox] = xp[maxpool_argmax(xp, H, W, k, stride, pad, oy, ox)];
    }
}

/* Each window's gradient goes to its argmax, windows in row-major order (the
 * CUDA gather, kern.h K_maxpool_bwd, adds in the same order). */
static void cpu_maxpool2d_backward_input(const Tensor *x, const Tensor *gy, int k, int stride, int pad, Tensor *gx) {
    int H = x->h, W = x->w, OH = gy->h, OW = gy->w;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < x->n * x->c; p++) {
        const float *xp = x->data + (size_t)p * H * W, *gp = gy->data + (size_t)p * OH * OW;
        float *op = gx->data + (size_t)p * H * W;
        memset(op, 0, sizeof(float) * H * W);
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) op[maxpool_argmax(xp, H, W, k, stride, pad, oy, ox)] += gp[oy * OW + ox];
    }
}

/* =====================================================================
 * the ADM UNet's resampling and scale-shift, the purifier's resize
 * ===================================================================== */
static void cpu_avgpool2x2_forward(const Tensor *x, Tensor *y) {
    int H = y->h, W = y->w;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < x->n * x->c; p++) {
        const float *xp = x->data + (size_t)p * 4 * H * W;
        float *yp = y->data + (size_t)p * H * W;
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++) {
                const float *b = xp + (size_t)(2 * i) * 2 * W + 2 * j;
                yp[i * W + j] = (b[0] + b[1] + b[2 * W] + b[2 * W + 1]) * 0.25f;
            }
    }
}

static void cpu_avgpool2x2_backward_input(const Tensor *gy, Tensor *gx) {
    int H = gy->h, W = gy->w;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < gx->n * gx->c; p++) {
        const float *gp = gy->data + (size_t)p * H * W;
        float *op = gx->data + (size_t)p * 4 * H * W;
        for (int i = 0; i < 2 * H; i++)
            for (int j = 0; j < 2 * W; j++) op[(size_t)i * 2 * W + j] = gp[(i / 2) * W + j / 2] * 0.25f;
    }
}

/* Source taps of output index o when resizing in → out (ops.h): i0, i1, λ. */
typedef struct {
    int i0, i1;
    float lam;
} rs_tap;
static rs_tap *rs_taps(int in, int out) {
    rs_tap *t = xmalloc(sizeof(rs_tap) * out);
    for (int o = 0; o < out; o++) {
        double s = ((double)o + 0.5) * in / out - 0.5;
        if (s < 0) s = 0;
        int a = (int)s < in - 1 ? (int)s : in - 1;
        t[o] = (rs_tap){a, a < in - 1 ? a + 1 : a, (float)(s - a)};
    }
    return t;
}

static void cpu_resize_bilinear_forward(const Tensor *x, Tensor *y) {
    rs_tap *ty = rs_taps(x->h, y->h), *tx = rs_taps(x->w, y->w);
#pragma omp parallel for schedule(static)
    for (int p = 0; p < x->n * x->c; p++) {
        const float *xp = x->data + (size_t)p * x->h * x->w;
        float *yp = y->data + (size_t)p * y->h * y->w;
        for (int i = 0; i < y->h; i++) {
            const float *r0 = xp + (size_t)ty[i].i0 * x->w, *r1 = xp + (size_t)ty[i].i1 * x->w;
            float b = ty[i].lam, a = 1.0f - b;
            for (int j = 0; j < y->w; j++) {
                float d = tx[j].lam, c = 1.0f - d;
                yp[(size_t)i * y->w + j] = a * (c * r0[tx[j].i0] + d * r0[tx[j].i1]) + b * (c * r1[tx[j].i0] + d * r1[tx[j].i1]);
            }
        }
    }
    free(ty), free(tx);
}

/* The adjoint: every output pixel's gradient scattered onto its four taps,
 * plane by plane (so the sums' order does not depend on the threads). */
static void cpu_resize_bilinear_backward_input(const Tensor *gy, Tensor *gx) {
    rs_tap *ty = rs_taps(gx->h, gy->h), *tx = rs_taps(gx->w, gy->w);
#pragma omp parallel for schedule(static)
    for (int p = 0; p < gx->n * gx->c; p++) {
        const float *gp = gy->data + (size_t)p * gy->h * gy->w;
        float *op = gx->data + (size_t)p * gx->h * gx->w;
        memset(op, 0, sizeof(float) * gx->h * gx->w);
        for (int i = 0; i < gy->h; i++) {
            float *r0 = op + (size_t)ty[i].i0 * gx->w, *r1 = op + (size_t)ty[i].i1 * gx->w;
            float b = ty[i].lam, a = 1.0f - b;
            for (int j = 0; j < gy->w; j++) {
                float g = gp[(size_t)i * gy->w + j], d = tx[j].lam, c = 1.0f - d;
                r0[tx[j].i0] += a * c * g, r0[tx[j].i1] += a * d * g;
                r1[tx[j].i0] += b * c * g, r1[tx[j].i1] += b * d * g;
            }
        }
    }
    free(ty), free(tx);
}

static void cpu_scale_shift_forward(const Tensor *x, const Tensor *ss, Tensor *y) {
    size_t hw = (size_t)x->h * x->w;
    int C = x->c;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < x->n * C; p++) {
        int i = p / C, c = p % C;
        float a = 1.0f + ss->data[(size_t)i * 2 * C + c], b = ss->data[(size_t)i * 2 * C + C + c];
        for (size_t e = 0; e < hw; e++) y->data[p * hw + e] = x->data[p * hw + e] * a + b;
    }
}

static void cpu_scale_shift_backward_input(const Tensor *x, const Tensor *ss, const Tensor *gy, Tensor *gx,
                                           Tensor *gss) {
    size_t hw = (size_t)x->h * x->w;
    int C = x->c;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < x->n * C; p++) {
        int i = p / C, c = p % C;
        float a = 1.0f + ss->data[(size_t)i * 2 * C + c];
        double sgx = 0, sg = 0;
        for (size_t e = 0; e < hw; e++) {
            float g = gy->data[p * hw + e];
            sgx += (double)g * x->data[p * hw + e], sg += g;
            gx->data[p * hw + e] = g * a;
        }
        if (gss) gss->data[(size_t)i * 2 * C + c] = (float)sgx, gss->data[(size_t)i * 2 * C + C + c] = (float)sg;
    }
}

static void cpu_channel_slice_forward(const Tensor *x, int c0, Tensor *y) {
    size_t hw = (size_t)x->h * x->w, len = (size_t)y->c * hw;
    for (int i = 0; i < x->n; i++) memcpy(y->data + i * len, x->data + ((size_t)i * x->c + c0) * hw, len * sizeof(float));
}

static void cpu_channel_slice_backward_input(const Tensor *gy, int c0, Tensor *gx) {
    size_t hw = (size_t)gx->h * gx->w, len = (size_t)gy->c * hw;
    for (int i = 0; i < gx->n; i++) memcpy(gx->data + ((size_t)i * gx->c + c0) * hw, gy->data + i * len, len * sizeof(float));
}

/* σ = exp(½·(v·hi + (1 − v)·lo)), v = (r + 1)/2 */
static inline float learned_sigma(float r, float lo, float hi) {
    float v = 0.5f * (r + 1.0f);
    return expf(0.5f * (v * hi + (1.0f - v) * lo));
}

static void cpu_learned_sigma_forward(const Tensor *r, const Tensor *z, float lo, float hi, Tensor *y) {
    size_t n = tensor_numel(r);
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) y->data[i] += learned_sigma(r->data[i], lo, hi) * z->data[i];
}

static void cpu_learned_sigma_backward_input(const Tensor *r, const Tensor *z, float lo, float hi, const Tensor *gy,
                                             Tensor *gr) {
    size_t n = tensor_numel(r);
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++)
        gr->data[i] = gy->data[i] * z->data[i] * learned_sigma(r->data[i], lo, hi) * (hi - lo) * 0.25f;
}

/* =====================================================================
 * sinusoidal timestep embedding (computed in double: t reaches 999 and
 * float32 phases would lose ~1e-4 absolute)
 * ===================================================================== */
static double temb_freq(int k, int half) { return exp(-(double)k * log(10000.0) / (double)(half - 1)); }

static void cpu_timestep_embedding_forward(const float *t, int n, int dim, Tensor *y) {
    int half = dim / 2;
    for (int i = 0; i < n; i++) {
        float *yp = y->data + (size_t)i * dim;
        for (int k = 0; k < half; k++) {
            double a = (double)t[i] * temb_freq(k, half);
            yp[k] = (float)sin(a);
            yp[half + k] = (float)cos(a);
        }
        if (dim & 1) yp[dim - 1] = 0.0f;
    }
}

static void cpu_timestep_embedding_backward_input(const float *t, int n, int dim, const Tensor *gy, float *gt) {
    int half = dim / 2;
    for (int i = 0; i < n; i++) {
        const float *g = gy->data + (size_t)i * dim;
        double s = 0;
        for (int k = 0; k < half; k++) {
            double f = temb_freq(k, half), a = (double)t[i] * f;
            s += g[k] * f * cos(a) - g[half + k] * f * sin(a);
        }
        gt[i] = (float)s;
    }
}

/* =====================================================================
 * sampler arithmetic
 * ===================================================================== */
static void cpu_affine_clamp_forward(const Tensor *x, float a, float b, float lo, float hi, Tensor *y) {
    size_t n = tensor_numel(x);
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float v = a * x->data[i] + b;
        y->data[i] = v < lo ? lo : v > hi ? hi : v;
    }
}

static void cpu_affine_clamp_backward_input(const Tensor *x, const Tensor *gy, float a, float b, float lo, float hi,
                                            Tensor *gx) {
    size_t n = tensor_numel(x);
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float v = a * x->data[i] + b;
        gx->data[i] = v > lo && v < hi ? a * gy->data[i] : 0.0f;
    }
}

static void cpu_axpby(float a, const Tensor *x, float b, Tensor *y) {
    size_t n = tensor_numel(x);
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) y->data[i] = a * x->data[i] + b * y->data[i];
}

static void cpu_sampler_step_forward(const Tensor *x, const Tensor *eps, const Tensor *z, const sampler_coef *k,
                                     Tensor *y) {
    size_t n = tensor_numel(x);
    const sampler_coef c = *k;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float xi = x->data[i], ei = eps->data[i];
        float x0 = c.a * xi - c.b * ei;
        if (c.clamp_x0) x0 = x0 < -1.0f ? -1.0f : x0 > 1.0f ? 1.0f : x0;
        float v = c.cx0 * x0 + c.cx * xi + c.ceps * ei;
        y->data[i] = z ? v + c.cz * z->data[i] : v;
    }
}

static void cpu_sampler_step_backward_input(const Tensor *x, const Tensor *eps, const Tensor *g, const sampler_coef *k,
                                            Tensor *gx, Tensor *geps) {
    size_t n = tensor_numel(x);
    const sampler_coef c = *k;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float gi = g->data[i], gx0 = c.cx0 * gi;
        if (c.clamp_x0) {
            float x0 = c.a * x->data[i] - c.b * eps->data[i];
            if (x0 <= -1.0f || x0 >= 1.0f) gx0 = 0.0f;
        }
        geps->data[i] = c.ceps * gi - c.b * gx0;
        gx->data[i] = c.cx * gi + c.a * gx0;
    }
}

static void cpu_normal_fill(const uint64_t *keys, Tensor *y) {
    size_t per = (size_t)y->c * y->h * y->w;
    for (int i = 0; i < y->n; i++) drq_normal(keys[i], per, y->data + (size_t)i * per);
}

#ifndef CPU_OPS_TABLE
#define CPU_OPS_TABLE drq_backend_cpu_base
#endif
const drq_backend CPU_OPS_TABLE = {
    .name = "cpu",
    .conv2d_forward = cpu_conv2d_forward,
    .conv2d_backward_input = cpu_conv2d_backward_input,
    .conv2d_release = cpu_conv2d_release,
    .linear_forward = cpu_linear_forward,
    .linear_backward_input = cpu_linear_backward_input,
    .group_norm_forward = cpu_group_norm_forward,
    .group_norm_backward_input = cpu_group_norm_backward_input,
    .group_norm_swish_forward = cpu_group_norm_swish_forward,
    .group_norm_swish_backward_input = cpu_group_norm_swish_backward_input,
    .batch_norm_forward = cpu_batch_norm_forward,
    .batch_norm_backward_input = cpu_batch_norm_backward_input,
    .swish_forward = cpu_swish_forward,
    .swish_backward_input = cpu_swish_backward_input,
    .relu_forward = cpu_relu_forward,
    .relu_backward_input = cpu_relu_backward_input,
    .add_forward = cpu_add_forward,
    .add_channel_forward = cpu_add_channel_forward,
    .add_channel_backward_input = cpu_add_channel_backward_input,
    .axpy = cpu_axpy,
    .attention_forward = cpu_attention_forward,
    .attention_backward_input = cpu_attention_backward_input,
    .upsample2x_forward = cpu_upsample2x_forward,
    .upsample2x_backward_input = cpu_upsample2x_backward_input,
    .avgpool_global_forward = cpu_avgpool_global_forward,
    .avgpool_global_backward_input = cpu_avgpool_global_backward_input,
    .maxpool2d_forward = cpu_maxpool2d_forward,
    .maxpool2d_backward_input = cpu_maxpool2d_backward_input,
    .concat_forward = cpu_concat_forward,
    .concat_backward_input = cpu_concat_backward_input,
    .avgpool2x2_forward = cpu_avgpool2x2_forward,
    .avgpool2x2_backward_input = cpu_avgpool2x2_backward_input,
    .resize_bilinear_forward = cpu_resize_bilinear_forward,
    .resize_bilinear_backward_input = cpu_resize_bilinear_backward_input,
    .scale_shift_forward = cpu_scale_shift_forward,
    .scale_shift_backward_input = cpu_scale_shift_backward_input,
    .channel_slice_forward = cpu_channel_slice_forward,
    .channel_slice_backward_input = cpu_channel_slice_backward_input,
    .learned_sigma_forward = cpu_learned_sigma_forward,
    .learned_sigma_backward_input = cpu_learned_sigma_backward_input,
    .timestep_embedding_forward = cpu_timestep_embedding_forward,
    .timestep_embedding_backward_input = cpu_timestep_embedding_backward_input,
    .affine_clamp_forward = cpu_affine_clamp_forward,
    .affine_clamp_backward_input = cpu_affine_clamp_backward_input,
    .axpby = cpu_axpby,
    .sampler_step_forward = cpu_sampler_step_forward,
    .sampler_step_backward_input = cpu_sampler_step_backward_input,
    .normal_fill = cpu_normal_fill,
    .round_bf16 = cpu_round_bf16,
};
