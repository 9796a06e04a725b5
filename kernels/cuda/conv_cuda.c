/* conv_cuda.c — convolutions on cuDNN: forward (+ bias) and backward-data.
 *
 * A plan (descriptors + algorithms) is built per input shape and cached in
 * the Conv2d (impl[DRQ_CUDA]), CUDA_MAX_PLANS shapes, least recently used
 * evicted.  Algorithms come from cuDNN's heuristics
 * (cudnnGet…Algorithm_v7), not from timing runs: the same GPU and cuDNN then
 * always run the same algorithm, so a sweep's rows are reproducible.  The
 * candidates are kept in the heuristics' order; the first whose workspace
 * fits (≤ 1 GiB and ≤ a quarter of the free memory) is used, and if running
 * it fails the next one is tried (as PyTorch does).  Backward-data only
 * considers deterministic algorithms.  Precision (drq_cuda_set_precision):
 * tf32 lets the heuristics pick TF32 tensor-core algorithms (never FP16
 * down-conversion), fp32 pins CUDNN_FMA_MATH.
 *
 * cuDNN pads symmetrically only; the DDPM downsampling conv pads right and
 * bottom by one.  Such convolutions copy the input into a zero-padded buffer
 * (cuda_pad2d) and run unpadded; their backward crops the padded gradient.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CUDA_MAX_PLANS 4
#define CUDA_WS_LIMIT ((size_t)1 << 30) /* largest workspace an algorithm may ask for */
#define NFWD CUDNN_CONVOLUTION_FWD_ALGO_COUNT
#define NBWD CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT

typedef struct {
    int n, h, w, tf32;
    long used;                       /* LRU tick; 0 = empty slot */
    int oh, ow, hp, wp, padded;      /* padded: explicit zero padding to hp × wp */
    cudnnTensorDescriptor_t xd, yd, bd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cf, cb; /* forward / backward-data (own math types) */
    /* heuristic candidates in order, and the one in use */
    cudnnConvolutionFwdAlgoPerf_t fc[NFWD];
    cudnnConvolutionBwdDataAlgoPerf_t bc[NBWD];
    int nf, nb, fi, bi;
    size_t fwd_ws, bwd_ws;
} cuda_plan;

typedef struct {
    cuda_plan plan[CUDA_MAX_PLANS];
    long tick;
} cuda_conv_cache;

static void plan_destroy(cuda_plan *p) {
    if (!p->used) return;
    cudnnDestroyTensorDescriptor(p->xd), cudnnDestroyTensorDescriptor(p->yd), cudnnDestroyTensorDescriptor(p->bd);
    cudnnDestroyFilterDescriptor(p->wd);
    cudnnDestroyConvolutionDescriptor(p->cf), cudnnDestroyConvolutionDescriptor(p->cb);
    memset(p, 0, sizeof *p);
}

static cudnnConvolutionDescriptor_t conv_desc(const Conv2d *c, const cuda_plan *p) {
    cudnnConvolutionDescriptor_t d;
    int ph = p->padded ? 0 : c->pad_t, pw = p->padded ? 0 : c->pad_l;
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d));
    /* CROSS_CORRELATION: PyTorch's convolution (no kernel flip) */
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(d, ph, pw, c->stride, c->stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                                CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionMathType(d, p->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
    return d;
}

/* The workspace an algorithm may use: 1 GiB, or a quarter of the free memory. */
static size_t ws_limit(void) {
    size_t fr = 0, total = 0;
    if (cudaMemGetInfo(&fr, &total) != cudaSuccess) return CUDA_WS_LIMIT;
    return fr / 4 < CUDA_WS_LIMIT ? fr / 4 : CUDA_WS_LIMIT;
}

/* The math type a candidate runs with: its own under tf32 (never FP16
 * down-conversion), FMA under fp32; -1 when the candidate is not allowed. */
static int math_for(const cuda_plan *p, cudnnStatus_t st, cudnnMathType_t m) {
    if (st != CUDNN_STATUS_SUCCESS || m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) return -1;
    return p->tf32 ? (int)m : (int)CUDNN_FMA_MATH;
}

/* Moves the forward plan to the first usable candidate at index ≥ from; 0 when none is left. */
static int pick_fwd(cuda_ctx *ctx, cuda_plan *p, int from) {
    size_t lim = ws_limit();
    for (p->fi = from; p->fi < p->nf; p->fi++) {
        const cudnnConvolutionFwdAlgoPerf_t *f = &p->fc[p->fi];
        int m = math_for(p, f->status, f->mathType);
        if (m < 0 || f->memory > lim) continue;
        CUDNN_CHECK(cudnnSetConvolutionMathType(p->cf, (cudnnMathType_t)m));
        if (cudnnGetConvolutionForwardWorkspaceSize(ctx->cudnn, p->xd, p->wd, p->cf, p->yd, f->algo, &p->fwd_ws) ==
                CUDNN_STATUS_SUCCESS &&
            p->fwd_ws <= lim)
            return 1;
    }
    return 0;
}

static int pick_bwd(cuda_ctx *ctx, cuda_plan *p, int from) {
    size_t lim = ws_limit();
    for (p->bi = from; p->bi < p->nb; p->bi++) {
        const cudnnConvolutionBwdDataAlgoPerf_t *b = &p->bc[p->bi];
        int m = math_for(p, b->status, b->mathType);
        if (m < 0 || b->memory > lim || b->determinism != CUDNN_DETERMINISTIC) continue;
        CUDNN_CHECK(cudnnSetConvolutionMathType(p->cb, (cudnnMathType_t)m));
        if (cudnnGetConvolutionBackwardDataWorkspaceSize(ctx->cudnn, p->wd, p->yd, p->cb, p->xd, b->algo,
                                                         &p->bwd_ws) == CUDNN_STATUS_SUCCESS &&
            p->bwd_ws <= lim)
            return 1;
    }
    return 0;
}

#define CONV_FMT "conv %d>%d %dx%d s%d on %dx%dx%dx%d"
#define CONV_ARGS(c, p) (c)->cin, (c)->cout, (c)->kh, (c)->kw, (c)->stride, (p)->n, (c)->cin, (p)->h, (p)->w

/* Builds the plan for input n × cin × h × w. */
static void plan_build(cuda_ctx *ctx, const Conv2d *c, cuda_plan *p, int n, int h, int w) {
    p->n = n, p->h = h, p->w = w, p->tf32 = cuda_conv_tf32();
    p->padded = c->pad_t != c->pad_b || c->pad_l != c->pad_r;
    p->hp = p->padded ? h + c->pad_t + c->pad_b : h;
    p->wp = p->padded ? w + c->pad_l + c->pad_r : w;
    conv2d_out_hw(c, h, w, &p->oh, &p->ow);
    cuda_require_device_ptr(c->w, "conv2d weight");
    if (c->b) cuda_require_device_ptr(c->b, "conv2d bias");
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->xd));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->yd));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->bd));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&p->wd));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c->cin, p->hp, p->wp));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c->cout, p->oh, p->ow));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->bd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, c->cout, 1, 1));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, c->cout, c->cin, c->kh, c->kw));
    p->cf = conv_desc(c, p);
    p->cb = conv_desc(c, p);
    int oc, on, ohh, oww; /* cuDNN's own idea of the output shape must match ours */
    CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->cf, p->xd, p->wd, &on, &oc, &ohh, &oww));
    if (on != n || oc != c->cout || ohh != p->oh || oww != p->ow)
        DIE("cuDNN output %dx%dx%dx%d differs from drq's %dx%dx%dx%d", on, oc, ohh, oww, n, c->cout, p->oh, p->ow);
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(ctx->cudnn, p->xd, p->wd, p->cf, p->yd, NFWD, &p->nf, p->fc));
    CUDNN_CHECK(
        cudnnGetConvolutionBackwardDataAlgorithm_v7(ctx->cudnn, p->wd, p->yd, p->cb, p->xd, NBWD, &p->nb, p->bc));
    if (!pick_fwd(ctx, p, 0)) DIE("cuDNN has no usable forward algorithm for " CONV_FMT, CONV_ARGS(c, p));
    if (!pick_bwd(ctx, p, 0))
        DIE("cuDNN has no usable deterministic backward-data algorithm for " CONV_FMT, CONV_ARGS(c, p));
}

/* The cached plan for input n × h × w (built on a miss). */
static cuda_plan *plan_for(cuda_ctx *ctx, Conv2d *c, int n, int h, int w) {
    cuda_conv_cache *cc = c->impl[DRQ_CUDA];
    if (!cc) cc = c->impl[DRQ_CUDA] = xcalloc(1, sizeof *cc);
    int tf32 = cuda_conv_tf32();
    cuda_plan *lru = &cc->plan[0];
    for (int i = 0; i < CUDA_MAX_PLANS; i++) {
        cuda_plan *p = &cc->plan[i];
        if (p->used && p->n == n && p->h == h && p->w == w && p->tf32 == tf32) {
            p->used = ++cc->tick;
            return p;
        }
        if (p->used < lru->used) lru = p;
    }
    plan_destroy(lru);
    plan_build(ctx, c, lru, n, h, w);
    lru->used = ++cc->tick;
    return lru;
}

void cuda_conv2d_forward(Conv2d *c, const Tensor *x, Tensor *y) {
    cuda_ctx *ctx = cuda_ctx_get();
    cuda_plan *p = plan_for(ctx, c, x->n, x->h, x->w);
    const float one = 1.0f, zero = 0.0f;
    const float *in = x->data;
    if (p->padded) {
        float *xp = cuda_scratch(ctx, SCR_PAD, sizeof(float) * (size_t)x->n * c->cin * p->hp * p->wp);
        cuda_pad2d(x->data, x->n, c->cin, x->h, x->w, xp, p->hp, p->wp, c->pad_t, c->pad_l);
        in = xp;
    }
    for (;;) { /* the chosen algorithm, or the next candidate if it cannot run */
        void *ws = p->fwd_ws ? cuda_scratch(ctx, SCR_WORKSPACE, p->fwd_ws) : NULL;
        cudnnStatus_t st = cudnnConvolutionForward(ctx->cudnn, &one, p->xd, in, p->wd, c->w, p->cf,
                                                   p->fc[p->fi].algo, ws, p->fwd_ws, &zero, p->yd, y->data);
        if (st == CUDNN_STATUS_SUCCESS) break;
        if (!pick_fwd(ctx, p, p->fi + 1))
            DIE("cudnnConvolutionForward failed for " CONV_FMT ": %s, and no other algorithm is left", CONV_ARGS(c, p),
                cudnnGetErrorString(st));
    }
    if (c->b) CUDNN_CHECK(cudnnAddTensor(ctx->cudnn, &one, p->bd, c->b, &one, p->yd, y->data));
    CUDA_DEBUG_SYNC();
}

void cuda_conv2d_backward_input(Conv2d *c, const Tensor *gy, Tensor *gx) {
    cuda_ctx *ctx = cuda_ctx_get();
    cuda_plan *p = plan_for(ctx, c, gx->n, gx->h, gx->w);
    const float one = 1.0f, zero = 0.0f;
    float *out = gx->data;
    if (p->padded) out = cuda_scratch(ctx, SCR_PAD, sizeof(float) * (size_t)gx->n * c->cin * p->hp * p->wp);
    for (;;) {
        void *ws = p->bwd_ws ? cuda_scratch(ctx, SCR_WORKSPACE, p->bwd_ws) : NULL;
        cudnnStatus_t st = cudnnConvolutionBackwardData(ctx->cudnn, &one, p->wd, c->w, p->yd, gy->data, p->cb,
                                                        p->bc[p->bi].algo, ws, p->bwd_ws, &zero, p->xd, out);
        if (st == CUDNN_STATUS_SUCCESS) break;
        if (!pick_bwd(ctx, p, p->bi + 1))
            DIE("cudnnConvolutionBackwardData failed for " CONV_FMT ": %s, and no other algorithm is left",
                CONV_ARGS(c, p), cudnnGetErrorString(st));
    }
    CUDA_DEBUG_SYNC();
    if (p->padded) cuda_crop2d(out, gx->n, c->cin, p->hp, p->wp, gx->data, gx->h, gx->w, c->pad_t, c->pad_l);
}

void cuda_conv2d_release(Conv2d *c) {
    cuda_conv_cache *cc = c->impl[DRQ_CUDA];
    if (!cc) return;
    for (int i = 0; i < CUDA_MAX_PLANS; i++) plan_destroy(&cc->plan[i]);
    free(cc);
    c->impl[DRQ_CUDA] = NULL;
}
