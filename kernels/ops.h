/* ops.h — the op interface of drq.
 *
 * Every op has a forward and a backward_input (the vector-Jacobian product
 * with respect to its input; parameter gradients are never needed).  Each
 * public function here checks shapes and devices and dispatches through one
 * point, ops.c:backend_of(), to the backend of its tensors' device tag
 * (kernels/cpu; kernels/cuda in CUDA builds).  Parameter pointers (conv and
 * linear weights, norm affines) live on the device of the tensors they are
 * used with; the host arrays t (timestep embedding) and keys (noise) are
 * always CPU memory.  Output tensors are allocated by
 * the caller with the right shape.  Nothing here knows about jobs, models or
 * files.
 *
 * Layout: float32 NCHW.  "Vectors" (linear, embeddings) are n × c × 1 × 1.
 */
#ifndef DRQ_OPS_H
#define DRQ_OPS_H

#include <stdint.h>
#include <string.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Call sites.  Each op that checks shapes is declared as NAME_at(file, line,
 * ...) and called as NAME(...): the macro NAME passes __FILE__/__LINE__, so a
 * bad shape dies naming the model line that called the op, not ops.c's
 * (the macros are at the end of this file).  Code that implements a backend
 * defines DRQ_OPS_BACKEND before including this header: its table members
 * have the op names, and b->NAME(...) must not become a macro call. */
#define DRQ_OP_SITE const char *file, int line

/* bf16 operands (a diffusion model's "precision": "bf16", docs/spec.md): what
 * GPU mixed precision (autocast) does to the matmul-class ops, emulated in
 * float32.  A convolution with c->bf16, linear_forward_prec /
 * linear_backward_input_prec with bf16 = 1 and attention_heads_* with
 * bf16 = 1 round their operands to bfloat16 (round_bf16 below: nearest, ties
 * to even) and then compute in float32 as usual: the products of two bf16
 * values are exact in float32, the sums are float32 accumulations, outputs
 * (and the bias, added after) stay float32.  What is rounded, here in the
 * dispatch layer (ops.c) unless said otherwise:
 *   - the op's input x (forward) and incoming gradient gy (backward), at
 *     every call, into a scratch tensor (the caller's tensors are not
 *     changed);
 *   - the weights: NOT here — the model rounds them once at load (params.c,
 *     params.bf16) and sets the flag; an op only trusts they are rounded;
 *   - attention: q, k and v (forward: in the saved q, k, v themselves, so the
 *     backward reuses them rounded), the incoming gradient gh, and inside the
 *     backend the softmax output P where it enters attention·V and gH·P, and
 *     the score gradient gS where it enters gQ = K gSᵀ and gK = Q gS; the
 *     softmax, its backward (with the float32 P) and the scale stay float32.
 * The backward is the float32 VJP evaluated at the rounded operands: the
 * rounding's own derivative is taken as the identity, as autocast's casts
 * do.  The rounding is elementwise, so rows stay independent of the batch. */

/* ---- convolution ------------------------------------------------------- */
typedef struct Conv2d {
    int cin, cout, kh, kw, stride;
    int pad_t, pad_l, pad_b, pad_r; /* zero padding, may be asymmetric */
    const float *w;                 /* [cout, cin, kh, kw] */
    const float *b;                 /* [cout] or NULL */
    int bf16;                       /* bfloat16 operands (see "bf16 operands" below); 0 after conv2d_make */
    void *impl[DRQ_NUM_DEVICES];    /* per-backend cache (packed weights, plans) */
} Conv2d;

/* Fills the geometry; the cache starts empty.  pad applies to all sides. */
static inline Conv2d conv2d_make(int cin, int cout, int k, int stride, int pad, const float *w, const float *b) {
    Conv2d c;
    memset(&c, 0, sizeof c);
    c.cin = cin, c.cout = cout, c.kh = c.kw = k, c.stride = stride;
    c.pad_t = c.pad_l = c.pad_b = c.pad_r = pad;
    c.w = w, c.b = b;
    return c;
}
static inline void conv2d_out_hw(const Conv2d *c, int h, int w, int *oh, int *ow) {
    *oh = (h + c->pad_t + c->pad_b - c->kh) / c->stride + 1;
    *ow = (w + c->pad_l + c->pad_r - c->kw) / c->stride + 1;
}
void conv2d_forward_at(DRQ_OP_SITE, Conv2d *c, const Tensor *x, Tensor *y);
void conv2d_backward_input_at(DRQ_OP_SITE, Conv2d *c, const Tensor *gy, Tensor *gx); /* gx has x's shape */
void conv2d_release(Conv2d *c); /* frees backend caches, not the weights */

/* ---- bfloat16 rounding (y may alias x) --------------------------------- */
/* y = x rounded to the nearest bfloat16, kept as float32 (kernels/bf16.h:
 * ties to even, ±0 / ±inf kept, NaN stays NaN, overflow to ±inf).  Its VJP
 * is taken as the identity (see "bf16 operands" above): no backward op. */
void round_bf16_forward_at(DRQ_OP_SITE, const Tensor *x, Tensor *y);

/* ---- linear: y = x Wᵀ + b, W is [out, in] ------------------------------ */
void linear_forward_at(DRQ_OP_SITE, const float *w, const float *b, int in, int out, const Tensor *x, Tensor *y);
void linear_backward_input_at(DRQ_OP_SITE, const float *w, int in, int out, const Tensor *gy, Tensor *gx);
/* The same with bf16 operands when bf16 = 1 (w already rounded by the caller). */
void linear_forward_prec_at(DRQ_OP_SITE, int bf16, const float *w, const float *b, int in, int out, const Tensor *x,
                            Tensor *y);
void linear_backward_input_prec_at(DRQ_OP_SITE, int bf16, const float *w, int in, int out, const Tensor *gy,
                                   Tensor *gx);

/* ---- normalisation ----------------------------------------------------- */
/* stats: caller-owned, n*groups*2 floats (mean, 1/std) saved for backward. */
void group_norm_forward_at(DRQ_OP_SITE, const Tensor *x, int groups, float eps, const float *gamma, const float *beta,
                        Tensor *y, float *stats);
void group_norm_backward_input_at(DRQ_OP_SITE, const Tensor *x, const Tensor *gy, int groups, const float *gamma,
                               const float *stats, Tensor *gx);
/* Fused group norm + swish (the UNet's norm → nonlinearity pairs): h = the
 * group norm of x + bias (saved for the backward), y = swish(h).  bias
 * (n × C × 1 × 1, or NULL) is added per (sample, channel) first: the
 * ResnetBlock's time-embedding add, which so costs no pass of its own.
 * Bit-identical to add_channel_forward, group_norm_forward, swish_forward, in
 * one pass over memory; the backward (at the same x and bias) equals
 * swish_backward_input then group_norm_backward_input at x + bias, and is also
 * the gradient of x (bias gets none: nothing needs it).  The backward may use
 * gy as scratch (its contents are undefined afterwards); gx must not alias x,
 * h or gy.  A backend without the fused op runs the ops it is made of
 * (ops.c), bit-identical as well. */
void group_norm_swish_forward_at(DRQ_OP_SITE, const Tensor *x, const Tensor *bias, int groups, float eps,
                                 const float *gamma, const float *beta, Tensor *h, Tensor *y, float *stats);
void group_norm_swish_backward_input_at(DRQ_OP_SITE, const Tensor *x, const Tensor *bias, const Tensor *h,
                                        const Tensor *gy, int groups, const float *gamma, const float *stats,
                                        Tensor *gx);
/* Inference batch norm as a per-channel affine map; batch_norm_fold turns
 * (weight, bias, running_mean, running_var, eps) into (scale, shift). */
void batch_norm_fold(int c, const float *weight, const float *bias, const float *mean, const float *var,
                     float eps, float *scale, float *shift);
void batch_norm_forward_at(DRQ_OP_SITE, const Tensor *x, const float *scale, const float *shift, Tensor *y);
void batch_norm_backward_input_at(DRQ_OP_SITE, const Tensor *gy, const float *scale, Tensor *gx);

/* ---- pointwise (y may alias x; gx may alias gy) ------------------------ */
void swish_forward_at(DRQ_OP_SITE, const Tensor *x, Tensor *y);
void swish_backward_input_at(DRQ_OP_SITE, const Tensor *x, const Tensor *gy, Tensor *gx);
void relu_forward_at(DRQ_OP_SITE, const Tensor *x, Tensor *y);
void relu_backward_input_at(DRQ_OP_SITE, const Tensor *x, const Tensor *gy, Tensor *gx);
void add_forward_at(DRQ_OP_SITE, const Tensor *a, const Tensor *b, Tensor *y); /* y may alias a or b */
/* y = x + v broadcast over H,W (v is n × c); backward sums gy over H,W into gv
 * and passes gy through to gx (gx may be NULL, gx may alias gy). */
void add_channel_forward_at(DRQ_OP_SITE, const Tensor *x, const Tensor *v, Tensor *y);
void add_channel_backward_input_at(DRQ_OP_SITE, const Tensor *gy, Tensor *gx, Tensor *gv);
/* y += a·x (gradient accumulation). */
void tensor_axpy_at(DRQ_OP_SITE, float a, const Tensor *x, Tensor *y);

/* ---- attention: single head over L = H·W positions ---------------------
 * q, k, v: n × C × H × W.  p (n × L × L × 1, saved) = softmax_keys(qᵀk · C^-½);
 * h[c, i] = Σ_j v[c, j] p[i, j]. */
void attention_forward_at(DRQ_OP_SITE, const Tensor *q, const Tensor *k, const Tensor *v, Tensor *p, Tensor *h);
void attention_backward_input_at(DRQ_OP_SITE, const Tensor *q, const Tensor *k, const Tensor *v, const Tensor *p,
                              const Tensor *gh, Tensor *gq, Tensor *gk, Tensor *gv);

/* ---- resampling, pooling, concat -------------------------------------- */
void upsample2x_forward_at(DRQ_OP_SITE, const Tensor *x, Tensor *y);     /* nearest */
void upsample2x_backward_input_at(DRQ_OP_SITE, const Tensor *gy, Tensor *gx);
void avgpool_global_forward_at(DRQ_OP_SITE, const Tensor *x, Tensor *y); /* y: n × c × 1 × 1 */
void avgpool_global_backward_input_at(DRQ_OP_SITE, const Tensor *gy, Tensor *gx);
void concat_forward_at(DRQ_OP_SITE, const Tensor *a, const Tensor *b, Tensor *y); /* along channels */
void concat_backward_input_at(DRQ_OP_SITE, const Tensor *gy, Tensor *ga, Tensor *gb);

/* ---- max pooling (ResNet stem) ------------------------------------------
 * k × k windows, stride s, implicit -inf padding p on every side (p ≤ k/2, so
 * every window holds an input element); y is floor((H + 2p − k)/s) + 1 per
 * side (PyTorch's ceil_mode=False).  Ties: the first maximum of the window in
 * row-major order takes the whole gradient, as PyTorch's CPU and CUDA
 * kernels do.  The backward recomputes the argmax from x (nothing saved). */
static inline int maxpool2d_out(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }
void maxpool2d_forward_at(DRQ_OP_SITE, const Tensor *x, int k, int stride, int pad, Tensor *y);
void maxpool2d_backward_input_at(DRQ_OP_SITE, const Tensor *x, const Tensor *gy, int k, int stride, int pad, Tensor *gx);

/* ---- the ADM (guided-diffusion) UNet and the 224↔256 purifier ----------
 * avgpool2x2: y[i,j] = mean of x's 2×2 block (2i..2i+1, 2j..2j+1); x's H, W
 * even.  The backward spreads gy/4 over each block. */
void avgpool2x2_forward_at(DRQ_OP_SITE, const Tensor *x, Tensor *y);
void avgpool2x2_backward_input_at(DRQ_OP_SITE, const Tensor *gy, Tensor *gx);
/* Bilinear resize, any in/out sizes, PyTorch's F.interpolate(mode="bilinear",
 * align_corners=False, antialias=False): output pixel o samples the input at
 * s = (o + ½)·in/out − ½, clamped below at 0; rows i0 = ⌊s⌋, i1 = min(i0+1,
 * in−1), weights 1−λ and λ = s − i0 (columns alike). */
void resize_bilinear_forward_at(DRQ_OP_SITE, const Tensor *x, Tensor *y);
void resize_bilinear_backward_input_at(DRQ_OP_SITE, const Tensor *gy, Tensor *gx);
/* Scale-shift norm tail: ss is n × 2C (scale then shift, as th.chunk(emb, 2));
 * y = x·(1 + scale[n,c]) + shift[n,c] (y may alias x).  Backward:
 * gx = gy·(1 + scale) (gx may alias gy); gss (NULL: not wanted) gets
 * Σ_hw gy·x for the scale half and Σ_hw gy for the shift half. */
void scale_shift_forward_at(DRQ_OP_SITE, const Tensor *x, const Tensor *ss, Tensor *y);
void scale_shift_backward_input_at(DRQ_OP_SITE, const Tensor *x, const Tensor *ss, const Tensor *gy, Tensor *gx,
                                   Tensor *gss);
/* Channel slice: y = x[:, c0 : c0 + y->c]; the backward writes gy into those
 * channels of gx and leaves its other channels as they are. */
void channel_slice_forward_at(DRQ_OP_SITE, const Tensor *x, int c0, Tensor *y);
void channel_slice_backward_input_at(DRQ_OP_SITE, const Tensor *gy, int c0, Tensor *gx);
/* Multi-head attention, guided-diffusion's QKVAttentionLegacy order: qkv is
 * n × 3C × H × W, viewed as (n·heads) × 3ch × L (ch = C/heads), and split per
 * head into q, k, v of ch channels; each head is the single-head attention
 * above (scale 1/√ch, the same as 1/√√ch on q and on k); h is n × C × H × W
 * with head j's output in channels j·ch …  q, k, v (n × C × H × W, per-head
 * layout) and p (n × heads·L² × 1 × 1) are saved for the backward, which
 * writes gqkv (gq, gk, gv: scratch like q).  bf16 = 1: bf16 operands (see
 * "bf16 operands" at the top; the same bf16 for the forward and its backward). */
void attention_heads_forward_at(DRQ_OP_SITE, const Tensor *qkv, int heads, int bf16, Tensor *q, Tensor *k, Tensor *v,
                                Tensor *p, Tensor *h);
void attention_heads_backward_input_at(DRQ_OP_SITE, const Tensor *q, const Tensor *k, const Tensor *v, const Tensor *p,
                                       const Tensor *gh, int heads, int bf16, Tensor *gq, Tensor *gk, Tensor *gv,
                                       Tensor *gqkv);
/* Learned-variance noise (gaussian_diffusion.py's LEARNED_RANGE): with
 * v = (r + 1)/2 and log σ² = v·hi + (1 − v)·lo (hi = log β, lo = log β̃),
 * y += σ·z.  Backward: gr = gy·z·σ·(hi − lo)/4. */
void learned_sigma_forward_at(DRQ_OP_SITE, const Tensor *r, const Tensor *z, float lo, float hi, Tensor *y);
void learned_sigma_backward_input_at(DRQ_OP_SITE, const Tensor *r, const Tensor *z, float lo, float hi, const Tensor *gy,
                                     Tensor *gr);

/* ---- sinusoidal timestep embedding -------------------------------------
 * y[i] = [sin(t_i f_0..f_{half-1}), cos(t_i f_0..)], f_k = exp(-k ln(10000)/(half-1));
 * dim even.  The backward gives d/dt (t is a float step index). */
void timestep_embedding_forward_at(DRQ_OP_SITE, const float *t, int n, int dim, Tensor *y);
void timestep_embedding_backward_input_at(DRQ_OP_SITE, const float *t, int n, int dim, const Tensor *gy, float *gt);

/* ---- sampler arithmetic (docs/design.md §Purification) -----------------
 * y = clamp(a·x + b, lo, hi) (lo = -INFINITY, hi = INFINITY: no clamp; y may
 * alias x); the backward passes a·gy where lo < a·x + b < hi, else 0. */
void affine_clamp_forward_at(DRQ_OP_SITE, const Tensor *x, float a, float b, float lo, float hi, Tensor *y);
void affine_clamp_backward_input_at(DRQ_OP_SITE, const Tensor *x, const Tensor *gy, float a, float b, float lo, float hi, Tensor *gx);
/* y = a·x + b·y. */
void tensor_axpby_at(DRQ_OP_SITE, float a, const Tensor *x, float b, Tensor *y);
/* One reverse step, elementwise:
 *   x0 = a·x − b·eps, clamped to [−1, 1] when clamp_x0;
 *   y  = cx0·x0 + cx·x + ceps·eps + cz·z          (z may be NULL: no noise)
 * DDPM: cx0 = c1, cx = c2, ceps = 0, cz = σ; DDIM: cx0 = √ᾱ', cx = 0, ceps = √(1−ᾱ').
 * Backward, for the gradient g of y: gx0 = cx0·g (0 where the clamp is active),
 *   gx = cx·g + a·gx0 (the direct part; the UNet's part is added by the caller),
 *   geps = ceps·g − b·gx0.  y may alias x. */
typedef struct {
    float a, b;
    int clamp_x0;
    float cx0, cx, ceps, cz;
} sampler_coef;
void sampler_step_forward_at(DRQ_OP_SITE, const Tensor *x, const Tensor *eps, const Tensor *z, const sampler_coef *k, Tensor *y);
void sampler_step_backward_input_at(DRQ_OP_SITE, const Tensor *x, const Tensor *eps, const Tensor *g, const sampler_coef *k, Tensor *gx,
                                 Tensor *geps);
/* Image i of y (c·h·w elements) ← standard normals 0, 1, … of keys[i]
 * (common/rng.h: Philox4x32-10 + Box–Muller; keys: y->n host integers). */
void normal_fill(const uint64_t *keys, Tensor *y);

/* ---- call-site macros (see the top of this file) ----------------------- */
#ifndef DRQ_OPS_BACKEND
#define conv2d_forward(...) conv2d_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define conv2d_backward_input(...) conv2d_backward_input_at(__FILE__, __LINE__, __VA_ARGS__)
#define linear_forward(...) linear_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define linear_backward_input(...) linear_backward_input_at(__FILE__, __LINE__, __VA_ARGS__)
#define linear_forward_prec(...) linear_forward_prec_at(__FILE__, __LINE__, __VA_ARGS__)
#define linear_backward_input_prec(...) linear_backward_input_prec_at(__FILE__, __LINE__, __VA_ARGS__)
#define round_bf16_forward(...) round_bf16_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define group_norm_forward(...) group_norm_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define group_norm_backward_input(...) group_norm_backward_input_at(__FILE__, __LINE__, __VA_ARGS__)
#define group_norm_swish_forward(...) group_norm_swish_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define group_norm_swish_backward_input(...) group_norm_swish_backward_input_at(__FILE__, __LINE__, __VA_ARGS__)
#define batch_norm_forward(...) batch_norm_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define batch_norm_backward_input(...) batch_norm_backward_input_at(__FILE__, __LINE__, __VA_ARGS__)
#define swish_forward(...) swish_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define swish_backward_input(...) swish_backward_input_at(__FILE__, __LINE__, __VA_ARGS__)
#define relu_forward(...) relu_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define relu_backward_input(...) relu_backward_input_at(__FILE__, __LINE__, __VA_ARGS__)
#define add_forward(...) add_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define add_channel_forward(...) add_channel_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define add_channel_backward_input(...) add_channel_backward_input_at(__FILE__, __LINE__, __VA_ARGS__)
#define tensor_axpy(...) tensor_axpy_at(__FILE__, __LINE__, __VA_ARGS__)
#define attention_forward(...) attention_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define attention_backward_input(...) attention_backward_input_at(__FILE__, __LINE__, __VA_ARGS__)
#define upsample2x_forward(...) upsample2x_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define upsample2x_backward_input(...) upsample2x_backward_input_at(__FILE__, __LINE__, __VA_ARGS__)
#define avgpool_global_forward(...) avgpool_global_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define avgpool_global_backward_input(...) avgpool_global_backward_input_at(__FILE__, __LINE__, __VA_ARGS__)
#define concat_forward(...) concat_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define concat_backward_input(...) concat_backward_input_at(__FILE__, __LINE__, __VA_ARGS__)
#define maxpool2d_forward(...) maxpool2d_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define maxpool2d_backward_input(...) maxpool2d_backward_input_at(__FILE__, __LINE__, __VA_ARGS__)
#define avgpool2x2_forward(...) avgpool2x2_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define avgpool2x2_backward_input(...) avgpool2x2_backward_input_at(__FILE__, __LINE__, __VA_ARGS__)
#define resize_bilinear_forward(...) resize_bilinear_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define resize_bilinear_backward_input(...) resize_bilinear_backward_input_at(__FILE__, __LINE__, __VA_ARGS__)
#define scale_shift_forward(...) scale_shift_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define scale_shift_backward_input(...) scale_shift_backward_input_at(__FILE__, __LINE__, __VA_ARGS__)
#define channel_slice_forward(...) channel_slice_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define channel_slice_backward_input(...) channel_slice_backward_input_at(__FILE__, __LINE__, __VA_ARGS__)
#define attention_heads_forward(...) attention_heads_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define attention_heads_backward_input(...) attention_heads_backward_input_at(__FILE__, __LINE__, __VA_ARGS__)
#define learned_sigma_forward(...) learned_sigma_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define learned_sigma_backward_input(...) learned_sigma_backward_input_at(__FILE__, __LINE__, __VA_ARGS__)
#define timestep_embedding_forward(...) timestep_embedding_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define timestep_embedding_backward_input(...) timestep_embedding_backward_input_at(__FILE__, __LINE__, __VA_ARGS__)
#define affine_clamp_forward(...) affine_clamp_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define affine_clamp_backward_input(...) affine_clamp_backward_input_at(__FILE__, __LINE__, __VA_ARGS__)
#define tensor_axpby(...) tensor_axpby_at(__FILE__, __LINE__, __VA_ARGS__)
#define sampler_step_forward(...) sampler_step_forward_at(__FILE__, __LINE__, __VA_ARGS__)
#define sampler_step_backward_input(...) sampler_step_backward_input_at(__FILE__, __LINE__, __VA_ARGS__)
#endif

/* ---- the backend table ---------------------------------------------------
 * One instance per device.  ops.c validates, then calls through this table. */
typedef struct drq_backend {
    const char *name;
    /* memory (NULL for the CPU, which tensor.c handles itself) */
    float *(*alloc)(size_t n); /* zero-filled */
    void (*release)(float *p);
    void (*copy)(void *dst, const void *src, size_t bytes); /* either side may be host memory */
    void (*conv2d_forward)(Conv2d *c, const Tensor *x, Tensor *y);
    void (*conv2d_backward_input)(Conv2d *c, const Tensor *gy, Tensor *gx);
    void (*conv2d_release)(Conv2d *c);
    void (*linear_forward)(const float *w, const float *b, int in, int out, const Tensor *x, Tensor *y);
    void (*linear_backward_input)(const float *w, int in, int out, const Tensor *gy, Tensor *gx);
    void (*group_norm_forward)(const Tensor *x, int groups, float eps, const float *gamma,
                               const float *beta, Tensor *y, float *stats);
    void (*group_norm_backward_input)(const Tensor *x, const Tensor *gy, int groups, const float *gamma,
                                      const float *stats, Tensor *gx);
    /* optional (NULL: ops.c composes group norm and swish) */
    void (*group_norm_swish_forward)(const Tensor *x, const Tensor *bias, int groups, float eps, const float *gamma,
                                     const float *beta, Tensor *h, Tensor *y, float *stats);
    void (*group_norm_swish_backward_input)(const Tensor *x, const Tensor *bias, const Tensor *h, const Tensor *gy,
                                            int groups, const float *gamma, const float *stats, Tensor *gx);
    void (*batch_norm_forward)(const Tensor *x, const float *scale, const float *shift, Tensor *y);
    void (*batch_norm_backward_input)(const Tensor *gy, const float *scale, Tensor *gx);
    void (*swish_forward)(const Tensor *x, Tensor *y);
    void (*swish_backward_input)(const Tensor *x, const Tensor *gy, Tensor *gx);
    void (*relu_forward)(const Tensor *x, Tensor *y);
    void (*relu_backward_input)(const Tensor *x, const Tensor *gy, Tensor *gx);
    void (*add_forward)(const Tensor *a, const Tensor *b, Tensor *y);
    void (*add_channel_forward)(const Tensor *x, const Tensor *v, Tensor *y);
    void (*add_channel_backward_input)(const Tensor *gy, Tensor *gx, Tensor *gv);
    void (*axpy)(float a, const Tensor *x, Tensor *y);
    /* bf16 = 1: round P where it enters H = V Pᵀ and gV = gH P, and gS before gQ, gK (ops.c rounds the rest) */
    void (*attention_forward)(const Tensor *q, const Tensor *k, const Tensor *v, Tensor *p, Tensor *h, int bf16);
    void (*attention_backward_input)(const Tensor *q, const Tensor *k, const Tensor *v, const Tensor *p,
                                     const Tensor *gh, Tensor *gq, Tensor *gk, Tensor *gv, int bf16);
    void (*upsample2x_forward)(const Tensor *x, Tensor *y);
    void (*upsample2x_backward_input)(const Tensor *gy, Tensor *gx);
    void (*avgpool_global_forward)(const Tensor *x, Tensor *y);
    void (*avgpool_global_backward_input)(const Tensor *gy, Tensor *gx);
    void (*concat_forward)(const Tensor *a, const Tensor *b, Tensor *y);
    void (*concat_backward_input)(const Tensor *gy, Tensor *ga, Tensor *gb);
    void (*maxpool2d_forward)(const Tensor *x, int k, int stride, int pad, Tensor *y);
    void (*maxpool2d_backward_input)(const Tensor *x, const Tensor *gy, int k, int stride, int pad, Tensor *gx);
    void (*avgpool2x2_forward)(const Tensor *x, Tensor *y);
    void (*avgpool2x2_backward_input)(const Tensor *gy, Tensor *gx);
    void (*resize_bilinear_forward)(const Tensor *x, Tensor *y);
    void (*resize_bilinear_backward_input)(const Tensor *gy, Tensor *gx);
    void (*scale_shift_forward)(const Tensor *x, const Tensor *ss, Tensor *y);
    void (*scale_shift_backward_input)(const Tensor *x, const Tensor *ss, const Tensor *gy, Tensor *gx, Tensor *gss);
    void (*channel_slice_forward)(const Tensor *x, int c0, Tensor *y);
    void (*channel_slice_backward_input)(const Tensor *gy, int c0, Tensor *gx);
    void (*learned_sigma_forward)(const Tensor *r, const Tensor *z, float lo, float hi, Tensor *y);
    void (*learned_sigma_backward_input)(const Tensor *r, const Tensor *z, float lo, float hi, const Tensor *gy,
                                         Tensor *gr);
    void (*timestep_embedding_forward)(const float *t, int n, int dim, Tensor *y);
    void (*timestep_embedding_backward_input)(const float *t, int n, int dim, const Tensor *gy, float *gt);
    void (*affine_clamp_forward)(const Tensor *x, float a, float b, float lo, float hi, Tensor *y);
    void (*affine_clamp_backward_input)(const Tensor *x, const Tensor *gy, float a, float b, float lo, float hi,
                                        Tensor *gx);
    void (*axpby)(float a, const Tensor *x, float b, Tensor *y);
    void (*sampler_step_forward)(const Tensor *x, const Tensor *eps, const Tensor *z, const sampler_coef *k, Tensor *y);
    void (*sampler_step_backward_input)(const Tensor *x, const Tensor *eps, const Tensor *g, const sampler_coef *k,
                                        Tensor *gx, Tensor *geps);
    void (*normal_fill)(const uint64_t *keys, Tensor *y);
    void (*round_bf16)(const Tensor *x, Tensor *y); /* y may alias x */
} drq_backend;

/* The CPU backend is the build of kernels/cpu/ops_cpu.c for this machine's
 * instruction set (kernels/cpu/isa.c): drq_backend_for(DRQ_CPU). */
#ifdef DRQ_HAVE_CUDA
extern const drq_backend drq_backend_cuda;
#endif
/* The backend of dev in this build, or NULL. */
const drq_backend *drq_backend_for(drq_device dev);
/* Tests only: puts b in dev's slot (not the CPU's), returns the previous
 * backend (tests/test_device_plumbing.c runs the models on a checked
 * stand-in device this way). */
const drq_backend *drq_backend_install(drq_device dev, const drq_backend *b);

#ifdef __cplusplus
}
#endif

#endif
