/* kern.h — the bodies of the CUDA backend's own kernels, as plain functions
 * that compile both for the GPU (nvcc, ops_cuda.cu) and for the CPU (gcc,
 * tests/test_cuda_kernels.c).
 *
 * A kernel in ops_cuda.cu is only a launch shape around these bodies:
 *   - pointwise kernels call K_xxx(args, i) for every index i of a
 *     grid-stride loop;
 *   - reduction kernels (one block per row) call phase functions
 *     KR_xxx_*(args, row, tid, nthreads): each phase returns this thread's
 *     partial (strided over the row: e = tid, tid + nthreads, …), the block
 *     sums/maxes the partials (block_reduce in ops_cuda.cu), and the next
 *     phase gets the result.
 * tests/test_cuda_kernels.c runs the same bodies on the CPU — looping i, and
 * looping tid over a simulated block with the reductions done serially — and
 * compares them with the CPU backend (kernels/cpu/ops_cpu.c), so the index
 * arithmetic and formulas of every own kernel are checked without a GPU.
 * What that cannot check (launch limits, warp shuffles, shared memory) is
 * confined to block_reduce and the launch lines in ops_cuda.cu.
 *
 * Args structs are passed to kernels by value.  Formulas follow ops_cpu.c.
 */
#ifndef DRQ_CUDA_KERN_H
#define DRQ_CUDA_KERN_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/philox.h" /* DRQ_HD, Philox, Box–Muller */
#include "../bf16.h"            /* drq_bf16_round */
#include "../ops.h"             /* sampler_coef */

/* ---- pointwise --------------------------------------------------------- */
typedef struct {
    const float *a, *b; /* inputs (b unused by unary ops) */
    const float *c;     /* third input (gy of a backward, v of add_channel) */
    float *y;
    float alpha, beta;
    size_t hw;          /* plane size (add_channel, avgpool backward) */
} pw_args;

DRQ_HD void K_swish_fwd(pw_args p, size_t i) { p.y[i] = p.a[i] / (1.0f + expf(-p.a[i])); }
/* d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x))); a = x, c = gy */
DRQ_HD void K_swish_bwd(pw_args p, size_t i) {
    float s = 1.0f / (1.0f + expf(-p.a[i]));
    p.y[i] = p.c[i] * s * (1.0f + p.a[i] * (1.0f - s));
}
DRQ_HD void K_relu_fwd(pw_args p, size_t i) { p.y[i] = p.a[i] > 0.0f ? p.a[i] : 0.0f; }
DRQ_HD void K_relu_bwd(pw_args p, size_t i) { p.y[i] = p.a[i] > 0.0f ? p.c[i] : 0.0f; }
DRQ_HD void K_add(pw_args p, size_t i) { p.y[i] = p.a[i] + p.b[i]; }
/* round_bf16 (y may alias a) */
DRQ_HD void K_round_bf16(pw_args p, size_t i) { p.y[i] = drq_bf16_round(p.a[i]); }
DRQ_HD void K_axpy(pw_args p, size_t i) { p.y[i] += p.alpha * p.a[i]; }
DRQ_HD void K_axpby(pw_args p, size_t i) { p.y[i] = p.alpha * p.a[i] + p.beta * p.y[i]; }
/* y = x + v[plane]: v is n × c, plane i / hw indexes it directly */
DRQ_HD void K_add_channel(pw_args p, size_t i) { p.y[i] = p.a[i] + p.c[i / p.hw]; }
/* gx = gy[plane] / hw; c = gy */
DRQ_HD void K_avgpool_bwd(pw_args p, size_t i) { p.y[i] = p.c[i / p.hw] / (float)p.hw; }

/* per-channel affine y = x·scale[ch] (+ shift[ch]) (batch norm and its backward) */
typedef struct {
    const float *x, *scale, *shift; /* shift NULL: no shift */
    float *y;
    int C;
    size_t hw;
} chan_args;
DRQ_HD void K_channel_affine(chan_args p, size_t i) {
    int ch = (int)((i / p.hw) % (size_t)p.C);
    p.y[i] = p.shift ? p.x[i] * p.scale[ch] + p.shift[ch] : p.x[i] * p.scale[ch];
}

/* linear bias broadcast: y[i] = b[i % out] over the n × out output */
typedef struct {
    const float *b;
    float *y;
    int out;
} bias_args;
DRQ_HD void K_bias_rows(bias_args p, size_t i) { p.y[i] = p.b[i % (size_t)p.out]; }

/* ---- resampling and padding (index i of the output) -------------------- */
typedef struct {
    const float *x;
    float *y;
    int H, W; /* the small side: x for forward, gx for backward */
} up_args;
/* y (2H × 2W planes) from x (H × W planes), nearest */
DRQ_HD void K_up_fwd(up_args p, size_t i) {
    size_t plane = (size_t)4 * p.H * p.W, pl = i / plane;
    int rc = (int)(i % plane), r = rc / (2 * p.W), col = rc % (2 * p.W);
    p.y[i] = p.x[pl * p.H * p.W + (size_t)(r / 2) * p.W + col / 2];
}
/* gx (H × W planes) from gy (2H × 2W planes): the sum of the 2×2 block */
DRQ_HD void K_up_bwd(up_args p, size_t i) {
    size_t plane = (size_t)p.H * p.W, pl = i / plane;
    int rc = (int)(i % plane), r = rc / p.W, col = rc % p.W;
    const float *g = p.x + pl * 4 * plane + (size_t)(2 * r) * 2 * p.W + 2 * col;
    p.y[i] = g[0] + g[1] + g[2 * p.W] + g[2 * p.W + 1];
}

typedef struct {
    const float *src;
    float *dst;
    int h, w, hp, wp, top, left; /* the small (h × w) and the padded (hp × wp) planes */
} pad_args;
/* dst (padded) ← src placed at (top, left), zeros around */
DRQ_HD void K_pad(pad_args p, size_t i) {
    size_t plane = (size_t)p.hp * p.wp, pl = i / plane;
    int rc = (int)(i % plane), r = rc / p.wp - p.top, col = rc % p.wp - p.left;
    p.dst[i] = r >= 0 && r < p.h && col >= 0 && col < p.w ? p.src[pl * p.h * p.w + (size_t)r * p.w + col] : 0.0f;
}
/* dst (small) ← the (top, left) window of src (padded) */
DRQ_HD void K_crop(pad_args p, size_t i) {
    size_t plane = (size_t)p.h * p.w, pl = i / plane;
    int rc = (int)(i % plane), r = rc / p.w, col = rc % p.w;
    p.dst[i] = p.src[pl * p.hp * p.wp + (size_t)(r + p.top) * p.wp + col + p.left];
}

/* ---- max pooling (ops.h: -inf padding, the first maximum wins ties) ---- */
typedef struct {
    const float *x, *gy;
    float *y; /* forward: y; backward: gx */
    int H, W, OH, OW, k, stride, pad;
} maxpool_args;
/* Index within plane xp of the first maximum of output window (oy, ox). */
DRQ_HD int maxpool_argmax(maxpool_args p, const float *xp, int oy, int ox) {
    int best = -1;
    float m = 0.0f;
    for (int i = 0; i < p.k; i++) {
        int r = oy * p.stride - p.pad + i;
        if (r < 0 || r >= p.H) continue;
        for (int j = 0; j < p.k; j++) {
            int c = ox * p.stride - p.pad + j;
            if (c < 0 || c >= p.W) continue;
            float v = xp[r * p.W + c];
            if (best < 0 || v > m) best = r * p.W + c, m = v;
        }
    }
    return best;
}
/* y (OH × OW planes), index i of y */
DRQ_HD void K_maxpool_fwd(maxpool_args p, size_t i) {
    size_t plane = (size_t)p.OH * p.OW, pl = i / plane;
    int rc = (int)(i % plane);
    const float *xp = p.x + pl * p.H * p.W;
    p.y[i] = xp[maxpool_argmax(p, xp, rc / p.OW, rc % p.OW)];
}
/* gx (H × W planes), index i of gx: a gather over the windows that hold
 * (r, c), in row-major window order (the CPU's scatter order), adding gy
 * where (r, c) is the window's argmax.  No atomics: deterministic. */
DRQ_HD void K_maxpool_bwd(maxpool_args p, size_t i) {
    size_t plane = (size_t)p.H * p.W, pl = i / plane;
    int rc = (int)(i % plane), r = rc / p.W, c = rc % p.W;
    const float *xp = p.x + pl * plane, *gp = p.gy + pl * p.OH * p.OW;
    /* windows oy with oy·s − pad ≤ r ≤ oy·s − pad + k − 1 */
    int oy0 = r + p.pad - p.k + 1, ox0 = c + p.pad - p.k + 1;
    oy0 = oy0 > 0 ? (oy0 + p.stride - 1) / p.stride : 0;
    ox0 = ox0 > 0 ? (ox0 + p.stride - 1) / p.stride : 0;
    int oy1 = (r + p.pad) / p.stride, ox1 = (c + p.pad) / p.stride;
    float s = 0.0f;
    for (int oy = oy0; oy <= oy1 && oy < p.OH; oy++)
        for (int ox = ox0; ox <= ox1 && ox < p.OW; ox++)
            if (maxpool_argmax(p, xp, oy, ox) == rc) s += gp[oy * p.OW + ox];
    p.y[i] = s;
}


/* ---- the ADM UNet: 2×2 average pool, scale-shift; the purifier's resize
 * and learned σ ------------------------------------------------------------ */
/* y (H × W planes) from x (2H × 2W planes): the mean of the 2×2 block; up_args' H, W are y's */
DRQ_HD void K_pool2_fwd(up_args p, size_t i) {
    size_t plane = (size_t)p.H * p.W, pl = i / plane;
    int rc = (int)(i % plane), r = rc / p.W, col = rc % p.W;
    const float *b = p.x + pl * 4 * plane + (size_t)(2 * r) * 2 * p.W + 2 * col;
    p.y[i] = (b[0] + b[1] + b[2 * p.W] + b[2 * p.W + 1]) * 0.25f;
}
/* gx (2H × 2W planes) from gy (H × W planes): gy/4 over the block; H, W are gy's */
DRQ_HD void K_pool2_bwd(up_args p, size_t i) {
    size_t plane = (size_t)4 * p.H * p.W, pl = i / plane;
    int rc = (int)(i % plane), r = rc / (2 * p.W), col = rc % (2 * p.W);
    p.y[i] = p.x[pl * p.H * p.W + (size_t)(r / 2) * p.W + col / 2] * 0.25f;
}

typedef struct {
    const float *x; /* forward: x; backward: gy */
    float *y;       /* forward: y; backward: gx */
    int hi, wi, ho, wo; /* the small-index (input) and output plane sizes */
} rs_args;
/* The taps of output index o resizing in → out (ops.h resize_bilinear): i0, i1, λ */
DRQ_HD void rs_tap(int o, int in, int out, int *i0, int *i1, float *lam) {
    double s = ((double)o + 0.5) * in / out - 0.5;
    if (s < 0) s = 0;
    int a = (int)s < in - 1 ? (int)s : in - 1;
    *i0 = a, *i1 = a < in - 1 ? a + 1 : a, *lam = (float)(s - a);
}
/* index i of y */
DRQ_HD void K_resize_fwd(rs_args p, size_t i) {
    size_t plane = (size_t)p.ho * p.wo, pl = i / plane;
    int rc = (int)(i % plane), r0, r1, c0, c1;
    float b, d;
    rs_tap(rc / p.wo, p.hi, p.ho, &r0, &r1, &b);
    rs_tap(rc % p.wo, p.wi, p.wo, &c0, &c1, &d);
    const float *xp = p.x + pl * p.hi * p.wi;
    float a = 1.0f - b, c = 1.0f - d;
    p.y[i] = a * (c * xp[(size_t)r0 * p.wi + c0] + d * xp[(size_t)r0 * p.wi + c1]) +
             b * (c * xp[(size_t)r1 * p.wi + c0] + d * xp[(size_t)r1 * p.wi + c1]);
}
/* The weight output index o gives input index r (0 when r is not one of its taps). */
DRQ_HD float rs_weight(int o, int r, int in, int out) {
    int i0, i1;
    float lam;
    rs_tap(o, in, out, &i0, &i1, &lam);
    return (i0 == r ? 1.0f - lam : 0.0f) + (i1 == r ? lam : 0.0f);
}
/* The first output index that may tap input index r (i0 is nondecreasing in o;
 * one below the exact bound, so rounding never skips one). */
DRQ_HD int rs_first(int r, int in, int out) {
    int o = (int)floor(((double)r - 0.5) * out / in - 0.5) - 1;
    return o < 0 ? 0 : o;
}
/* index i of gx (hi × wi planes), gathered from gy (ho × wo): no atomics, the
 * same sum whatever the launch */
DRQ_HD void K_resize_bwd(rs_args p, size_t i) {
    size_t plane = (size_t)p.hi * p.wi, pl = i / plane;
    int rc = (int)(i % plane), r = rc / p.wi, col = rc % p.wi;
    const float *gp = p.x + pl * p.ho * p.wo;
    float s = 0.0f;
    for (int o = rs_first(r, p.hi, p.ho); o < p.ho; o++) {
        int i0, i1;
        float lam;
        rs_tap(o, p.hi, p.ho, &i0, &i1, &lam);
        if (i0 > r) break;
        float wy = rs_weight(o, r, p.hi, p.ho);
        if (wy == 0.0f) continue;
        for (int q = rs_first(col, p.wi, p.wo); q < p.wo; q++) {
            int j0, j1;
            float mu;
            rs_tap(q, p.wi, p.wo, &j0, &j1, &mu);
            if (j0 > col) break;
            float wx = rs_weight(q, col, p.wi, p.wo);
            if (wx != 0.0f) s += wy * wx * gp[(size_t)o * p.wo + q];
        }
    }
    p.y[i] = s;
}

/* scale-shift: ss is n × 2C (scale, shift); plane pl = (sample, channel) */
typedef struct {
    const float *x, *ss, *gy;
    float *y, *gss;
    int C;
    size_t hw;
} ss_args;
DRQ_HD float ss_scale(ss_args p, size_t pl) { return p.ss[(pl / p.C) * 2 * p.C + pl % p.C]; }
DRQ_HD float ss_shift(ss_args p, size_t pl) { return p.ss[(pl / p.C) * 2 * p.C + p.C + pl % p.C]; }
DRQ_HD void K_ss_fwd(ss_args p, size_t i) {
    size_t pl = i / p.hw;
    p.y[i] = p.x[i] * (1.0f + ss_scale(p, pl)) + ss_shift(p, pl);
}
DRQ_HD void K_ss_bwd(ss_args p, size_t i) { p.y[i] = p.gy[i] * (1.0f + ss_scale(p, i / p.hw)); }
/* row = plane: this thread's partial Σ gy·x and Σ gy into out[0], out[1] */
DRQ_HD void KR_ss_sums(ss_args p, int row, int tid, int nt, double out[2]) {
    const float *g = p.gy + (size_t)row * p.hw, *x = p.x + (size_t)row * p.hw;
    double sgx = 0, sg = 0;
    for (size_t e = (size_t)tid; e < p.hw; e += (size_t)nt) sgx += (double)g[e] * x[e], sg += g[e];
    out[0] = sgx, out[1] = sg;
}
DRQ_HD void KR_ss_store(ss_args p, int row, double sgx, double sg) {
    size_t i = (size_t)row / p.C, c = (size_t)row % p.C;
    p.gss[i * 2 * p.C + c] = (float)sgx, p.gss[i * 2 * p.C + p.C + c] = (float)sg;
}

/* learned σ (ops.h learned_sigma): y += σ(r)·z; backward gr = gy·z·σ·(hi − lo)/4 */
typedef struct {
    const float *r, *z, *gy;
    float *y;
    float lo, hi;
} lsig_args;
DRQ_HD float lsig(lsig_args p, size_t i) {
    float v = 0.5f * (p.r[i] + 1.0f);
    return expf(0.5f * (v * p.hi + (1.0f - v) * p.lo));
}
DRQ_HD void K_lsig_fwd(lsig_args p, size_t i) { p.y[i] += lsig(p, i) * p.z[i]; }
DRQ_HD void K_lsig_bwd(lsig_args p, size_t i) { p.y[i] = p.gy[i] * p.z[i] * lsig(p, i) * (p.hi - p.lo) * 0.25f; }

/* ---- timestep embedding (phases in double, as on the CPU) -------------- */
typedef struct {
    const float *t, *gy;
    float *y, *gt;
    int n, dim;
} temb_args;
DRQ_HD double temb_freq(int k, int half) { return exp(-(double)k * log(10000.0) / (double)(half - 1)); }
/* y[i·dim + k] = sin(t_i f_k) | cos(t_i f_{k−half}) | 0 for an odd last entry */
DRQ_HD void K_temb_fwd(temb_args p, size_t e) {
    int half = p.dim / 2, i = (int)(e / (size_t)p.dim), k = (int)(e % (size_t)p.dim);
    if (k >= 2 * half) p.y[e] = 0.0f;
    else if (k < half) p.y[e] = (float)sin((double)p.t[i] * temb_freq(k, half));
    else p.y[e] = (float)cos((double)p.t[i] * temb_freq(k - half, half));
}
/* row i: partial of d/dt Σ_k gy·y over k = tid, tid + nt, … */
DRQ_HD double KR_temb_bwd(temb_args p, int i, int tid, int nt) {
    int half = p.dim / 2;
    double s = 0;
    for (int k = tid; k < half; k += nt) {
        double f = temb_freq(k, half), a = (double)p.t[i] * f;
        s += p.gy[(size_t)i * p.dim + k] * f * cos(a) - p.gy[(size_t)i * p.dim + half + k] * f * sin(a);
    }
    return s;
}

/* ---- sampler arithmetic -------------------------------------------------- */
typedef struct {
    const float *x, *gy;
    float *y;
    float a, b, lo, hi;
} affine_args;
DRQ_HD void K_affine_fwd(affine_args p, size_t i) {
    float v = p.a * p.x[i] + p.b;
    p.y[i] = v < p.lo ? p.lo : v > p.hi ? p.hi : v;
}
DRQ_HD void K_affine_bwd(affine_args p, size_t i) {
    float v = p.a * p.x[i] + p.b;
    p.y[i] = v > p.lo && v < p.hi ? p.a * p.gy[i] : 0.0f;
}

typedef struct {
    const float *x, *eps, *z, *g; /* z may be NULL (forward); g: backward input */
    float *y, *gx, *geps;
    sampler_coef c;
} sampler_args;
DRQ_HD void K_sampler_fwd(sampler_args p, size_t i) {
    float xi = p.x[i], ei = p.eps[i];
    float x0 = p.c.a * xi - p.c.b * ei;
    if (p.c.clamp_x0) x0 = x0 < -1.0f ? -1.0f : x0 > 1.0f ? 1.0f : x0;
    float v = p.c.cx0 * x0 + p.c.cx * xi + p.c.ceps * ei;
    p.y[i] = p.z ? v + p.c.cz * p.z[i] : v;
}
DRQ_HD void K_sampler_bwd(sampler_args p, size_t i) {
    float gi = p.g[i], gx0 = p.c.cx0 * gi;
    if (p.c.clamp_x0) {
        float x0 = p.c.a * p.x[i] - p.c.b * p.eps[i];
        if (x0 <= -1.0f || x0 >= 1.0f) gx0 = 0.0f;
    }
    p.geps[i] = p.c.ceps * gi - p.c.b * gx0;
    p.gx[i] = p.c.cx * gi + p.c.a * gx0;
}

/* noise: index t = (image, counter block) writes up to 4 normals */
typedef struct {
    const uint64_t *keys;
    float *y;
    size_t per; /* elements per image */
} normal_args;
DRQ_HD void K_normal(normal_args p, size_t t) {
    size_t blocks = (p.per + 3) / 4, i = t / blocks, b = t % blocks;
    uint32_t w[4];
    float z[4];
    drq_philox_block(p.keys[i], (uint64_t)b, w);
    drq_philox_box_muller(w[0], w[1], &z[0], &z[1]);
    drq_philox_box_muller(w[2], w[3], &z[2], &z[3]);
    float *yi = p.y + i * p.per;
    for (int j = 0; j < 4 && 4 * b + j < p.per; j++) yi[4 * b + j] = z[j];
}

/* ---- group norm: row = (sample, group) ----------------------------------- */
typedef struct {
    const float *x, *gy, *gamma, *beta, *stats_in;
    float *y, *stats;
    int C, groups;
    size_t hw;
    float eps;
    /* fused with swish (group_norm_swish_*): forward also writes act = swish(y);
     * backward takes gy through swish's VJP at h (the saved norm output) first */
    float *act;
    const float *h;
    /* group_norm_swish's bias (n × C, or NULL): the input is x + bias per channel */
    const float *bias;
} gn_args;
/* the input at k = off + e of row: x, plus the bias of its channel (a float add, as K_add_channel) */
DRQ_HD float gn_x(gn_args p, int row, size_t k, size_t e) {
    if (!p.bias) return p.x[k];
    int g = row % p.groups, i = row / p.groups, cpg = p.C / p.groups;
    return p.x[k] + p.bias[(size_t)i * p.C + (size_t)g * cpg + e / p.hw];
}
/* the backward's incoming gradient at k: gy, or swish's VJP of it at h (K_swish_bwd's arithmetic) */
DRQ_HD float gn_gy(gn_args p, size_t k) {
    if (!p.h) return p.gy[k];
    float s = 1.0f / (1.0f + expf(-p.h[k]));
    return p.gy[k] * s * (1.0f + p.h[k] * (1.0f - s));
}
DRQ_HD size_t gn_off(gn_args p, int row) {
    int g = row % p.groups, i = row / p.groups, cpg = p.C / p.groups;
    return ((size_t)i * p.C + (size_t)g * cpg) * p.hw;
}
DRQ_HD size_t gn_m(gn_args p) { return (size_t)(p.C / p.groups) * p.hw; }
/* forward phase 1: Σ x */
DRQ_HD double KR_gn_sum(gn_args p, int row, int tid, int nt) {
    size_t off = gn_off(p, row);
    double s = 0;
    for (size_t e = (size_t)tid; e < gn_m(p); e += (size_t)nt) s += gn_x(p, row, off + e, e);
    return s;
}
/* forward phase 2: Σ (x − mean)² */
DRQ_HD double KR_gn_sqdev(gn_args p, int row, double mean, int tid, int nt) {
    size_t off = gn_off(p, row);
    double ss = 0;
    for (size_t e = (size_t)tid; e < gn_m(p); e += (size_t)nt) {
        double d = gn_x(p, row, off + e, e) - mean;
        ss += d * d;
    }
    return ss;
}
/* forward phase 3: stats (thread 0) and y */
DRQ_HD void KR_gn_apply(gn_args p, int row, double mean, double rstd, int tid, int nt) {
    int g = row % p.groups, cpg = p.C / p.groups;
    size_t off = gn_off(p, row);
    if (tid == 0) p.stats[2 * row] = (float)mean, p.stats[2 * row + 1] = (float)rstd;
    for (size_t e = (size_t)tid; e < gn_m(p); e += (size_t)nt) {
        int ch = g * cpg + (int)(e / p.hw);
        float a = (float)rstd * (p.gamma ? p.gamma[ch] : 1.0f);
        float bb = (p.beta ? p.beta[ch] : 0.0f) - (float)mean * a;
        float v = gn_x(p, row, off + e, e) * a + bb;
        p.y[off + e] = v;
        if (p.act) p.act[off + e] = v / (1.0f + expf(-v)); /* K_swish_fwd's arithmetic */
    }
}
/* backward phase 1: Σ ĝ and Σ ĝ·x̂ (ĝ = gy·γ, x̂ = (x − μ)·rstd) into out[0], out[1] */
DRQ_HD void KR_gn_bwd_sums(gn_args p, int row, int tid, int nt, double out[2]) {
    int g = row % p.groups, cpg = p.C / p.groups;
    size_t off = gn_off(p, row);
    double mean = p.stats_in[2 * row], rstd = p.stats_in[2 * row + 1], sg = 0, sgx = 0;
    for (size_t e = (size_t)tid; e < gn_m(p); e += (size_t)nt) {
        double gm = p.gamma ? p.gamma[g * cpg + (int)(e / p.hw)] : 1.0;
        double gh = gn_gy(p, off + e) * gm;
        sg += gh;
        sgx += gh * (gn_x(p, row, off + e, e) - mean) * rstd;
    }
    out[0] = sg, out[1] = sgx;
}
/* backward phase 2: gx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) into y */
DRQ_HD void KR_gn_bwd_apply(gn_args p, int row, double sg, double sgx, int tid, int nt) {
    int g = row % p.groups, cpg = p.C / p.groups;
    size_t off = gn_off(p, row), m = gn_m(p);
    double mean = p.stats_in[2 * row], rstd = p.stats_in[2 * row + 1], mg = sg / (double)m, mgx = sgx / (double)m;
    for (size_t e = (size_t)tid; e < m; e += (size_t)nt) {
        double gm = p.gamma ? p.gamma[g * cpg + (int)(e / p.hw)] : 1.0;
        double xh = (gn_x(p, row, off + e, e) - mean) * rstd;
        p.y[off + e] = (float)(rstd * (gn_gy(p, off + e) * gm - mg - xh * mgx));
    }
}

/* ---- per-plane sum (add_channel backward, average pool) ------------------ */
typedef struct {
    const float *x;
    float *out;
    size_t hw;
    double scale;
} plane_args;
DRQ_HD double KR_plane_sum(plane_args p, int row, int tid, int nt) {
    const float *xp = p.x + (size_t)row * p.hw;
    double s = 0;
    for (size_t e = (size_t)tid; e < p.hw; e += (size_t)nt) s += xp[e];
    return s;
}
DRQ_HD void KR_plane_store(plane_args p, int row, double total) { p.out[row] = (float)(total * p.scale); }

/* ---- softmax over rows of L (attention) ---------------------------------- */
typedef struct {
    const float *p; /* probabilities (backward) */
    float *s;       /* scores → probabilities (forward); gP → gS (backward) */
    int L;
    float scale;
} softmax_args;
DRQ_HD float KR_softmax_max(softmax_args a, int row, int tid, int nt) {
    const float *r = a.s + (size_t)row * a.L;
    float mx = -INFINITY;
    for (int j = tid; j < a.L; j += nt) mx = r[j] > mx ? r[j] : mx;
    return mx;
}
DRQ_HD double KR_softmax_exp(softmax_args a, int row, float mx, int tid, int nt) {
    float *r = a.s + (size_t)row * a.L;
    double s = 0;
    for (int j = tid; j < a.L; j += nt) {
        float e = expf(r[j] - mx);
        r[j] = e;
        s += e;
    }
    return s;
}
DRQ_HD void KR_softmax_scale(softmax_args a, int row, double sum, int tid, int nt) {
    float *r = a.s + (size_t)row * a.L, inv = (float)(1.0 / sum);
    for (int j = tid; j < a.L; j += nt) r[j] *= inv;
}
/* gS = P ⊙ (gP − rowsum(gP ⊙ P)) · scale, in place in s */
DRQ_HD double KR_softmax_bwd_dot(softmax_args a, int row, int tid, int nt) {
    const float *pr = a.p + (size_t)row * a.L, *gr = a.s + (size_t)row * a.L;
    double dot = 0;
    for (int j = tid; j < a.L; j += nt) dot += (double)gr[j] * pr[j];
    return dot;
}
DRQ_HD void KR_softmax_bwd_apply(softmax_args a, int row, double dot, int tid, int nt) {
    const float *pr = a.p + (size_t)row * a.L;
    float *gr = a.s + (size_t)row * a.L, d = (float)dot;
    for (int j = tid; j < a.L; j += nt) gr[j] = pr[j] * (gr[j] - d) * a.scale;
}

/* ---- GEMM plans: the cuBLAS calls of linear and attention ----------------
 * cuBLAS is column-major: a row-major R×C matrix is a C×R column-major one.
 * Each plan is one (strided-batched) sgemm C = alpha·op(A)·op(B) + beta·C,
 * with A, B, C chosen by `a`, `b`, `c` among the op's buffers.  ops_cuda.cu
 * hands these to cublasSgemmStridedBatched; the CPU test runs them through a
 * reference column-major GEMM. */
typedef enum { GB_X, GB_W, GB_Y, GB_Q, GB_K, GB_V, GB_P, GB_H, GB_GH, GB_GS, GB_GQ, GB_GK, GB_GV } gemm_buf;
typedef struct {
    int ta, tb; /* 1: transpose */
    int m, n, k, lda, ldb, ldc;
    long long sa, sb, sc; /* batch strides (elements) */
    int batch;
    float alpha, beta;
    gemm_buf a, b, c;
} gemm_plan;

/* linear forward: Yc(out×n) = Wcᵀ·Xc (Wc: W viewed in×out); beta 1 when the bias was broadcast first */
DRQ_HD gemm_plan plan_linear_fwd(int n, int in, int out, int has_bias) {
    gemm_plan g = {1, 0, out, n, in, in, in, out, 0, 0, 0, 1, 1.0f, has_bias ? 1.0f : 0.0f, GB_W, GB_X, GB_Y};
    return g;
}
/* linear backward: Gxc(in×n) = Wc·Gyc; X = gx, Y = gy */
DRQ_HD gemm_plan plan_linear_bwd(int n, int in, int out) {
    gemm_plan g = {0, 0, in, n, out, in, out, in, 0, 0, 0, 1, 1.0f, 0.0f, GB_W, GB_Y, GB_X};
    return g;
}
/* Lc(L×L) = A(L×C)·B(L×C)ᵀ·alpha: S = scale·QᵀK is Sc = Kc·Qcᵀ; gP = gHᵀV is gPc = Vc·gHcᵀ */
DRQ_HD gemm_plan plan_LLC(int n, int L, int C, float alpha, gemm_buf a, gemm_buf b, gemm_buf c) {
    gemm_plan g = {0, 1, L, L, C, L, L, L, (long long)C * L, (long long)C * L, (long long)L * L, n, alpha, 0.0f,
                   a, b, c};
    return g;
}
/* out(L×C) = op(P)(L×L)·B(L×C): H = VPᵀ is Hc = Pcᵀ·Vc; gV = gH·P is gVc = Pc·gHc;
 * gQ = K·gSᵀ is gQc = gScᵀ·Kc; gK = Q·gS is gKc = gSc·Qc */
DRQ_HD gemm_plan plan_LCL(int n, int L, int C, int transP, gemm_buf p, gemm_buf b, gemm_buf c) {
    gemm_plan g = {transP, 0, L, C, L, L, L, L, (long long)L * L, (long long)C * L, (long long)C * L, n, 1.0f, 0.0f,
                   p, b, c};
    return g;
}
/* The attention products in call order (forward: 2, backward: 5 with the
 * softmax backward between the second and the third). */
DRQ_HD gemm_plan plan_attention(int step, int n, int L, int C) {
    float scale = 1.0f / sqrtf((float)C);
    switch (step) {
    case 0: return plan_LLC(n, L, C, scale, GB_K, GB_Q, GB_P);  /* S = scale·QᵀK (softmax follows) */
    case 1: return plan_LCL(n, L, C, 1, GB_P, GB_V, GB_H);      /* H = V Pᵀ */
    case 2: return plan_LCL(n, L, C, 0, GB_P, GB_GH, GB_GV);    /* gV = gH P */
    case 3: return plan_LLC(n, L, C, 1.0f, GB_V, GB_GH, GB_GS); /* gP = gHᵀ V (softmax backward follows) */
    case 4: return plan_LCL(n, L, C, 1, GB_GS, GB_K, GB_GQ);    /* gQ = K gSᵀ */
    default: return plan_LCL(n, L, C, 0, GB_GS, GB_Q, GB_GK);   /* gK = Q gS */
    }
}

#endif
