/* conv_cuda.c — convolutions on cuDNN: forward (+ bias) and backward-data.
 *
 * A plan (descriptors + algorithms) is built per input shape and cached in
 * the Conv2d (impl[DRQ_CUDA]), CUDA_MAX_PLANS shapes, least recently used
 * evicted.  Algorithms come from cuDNN's heuristics
 * (cudnnGet…Algorithm_v7), not from timing runs: the same GPU and cuDNN then
 * always run the same algorithm, so a sweep's rows are reproducible.
 * Backward-data takes the first deterministic algorithm.  Precision
 * (drq_cuda_set_precision): tf32 lets the heuristics pick TF32 tensor-core
 * algorithms, fp32 pins CUDNN_FMA_MATH.
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

typedef struct {
    int n, h, w, tf32;
    long used;                       /* LRU tick; 0 = empty slot */
    int oh, ow, hp, wp, padded;      /* padded: explicit zero padding to hp × wp */
    cudnnTensorDescriptor_t xd, yd, bd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cf, cb; /* forward / backward-data (own math types) */
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd;
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

/* Builds the plan for input n × cin × h × w. */
static void plan_build(cuda_ctx *ctx, const Conv2d *c, cuda_plan *p, int n, int h, int w) {
    p->n = n, p->h = h, p->w = w, p->tf32 = cuda_conv_tf32();
    p->padded = c->pad_t != c->pad_b || c->pad_l != c->pad_r;
    p->hp = p->padded ? h + c->pad_t + c->pad_b : h;
    p->wp = p->padded ? w + c->pad_l + c->pad_r : w;
    conv2d_out_hw(c, h, w, &p->oh, &p->ow);
    cuda_require_device_ptr(c->w, "conv2d weight");
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

    cudnnConvolutionFwdAlgoPerf_t fp[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int got = 0, pick = -1;
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(ctx->cudnn, p->xd, p->wd, p->cf, p->yd,
                                                       CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, fp));
    for (int i = 0; i < got && pick < 0; i++)
        if (fp[i].status == CUDNN_STATUS_SUCCESS && fp[i].memory <= CUDA_WS_LIMIT) pick = i;
    if (pick < 0) DIE("cuDNN has no forward algorithm for conv %d>%d %dx%d on %dx%dx%dx%d", c->cin, c->cout, c->kh,
                      c->kw, n, c->cin, h, w);
    p->fwd = fp[pick].algo;
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->cf, p->tf32 ? fp[pick].mathType : CUDNN_FMA_MATH));
    CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(ctx->cudnn, p->xd, p->wd, p->cf, p->yd, p->fwd, &p->fwd_ws));

    cudnnConvolutionBwdDataAlgoPerf_t bp[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    pick = -1;
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(ctx->cudnn, p->wd, p->yd, p->cb, p->xd,
                                                            CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, bp));
    for (int i = 0; i < got && pick < 0; i++)
        if (bp[i].status == CUDNN_STATUS_SUCCESS && bp[i].memory <= CUDA_WS_LIMIT &&
            bp[i].determinism == CUDNN_DETERMINISTIC)
            pick = i;
    if (pick < 0) DIE("cuDNN has no deterministic backward-data algorithm for conv %d>%d %dx%d on %dx%dx%dx%d",
                      c->cin, c->cout, c->kh, c->kw, n, c->cin, h, w);
    p->bwd = bp[pick].algo;
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->cb, p->tf32 ? bp[pick].mathType : CUDNN_FMA_MATH));
    CUDNN_CHECK(
        cudnnGetConvolutionBackwardDataWorkspaceSize(ctx->cudnn, p->wd, p->yd, p->cb, p->xd, p->bwd, &p->bwd_ws));
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
    void *ws = p->fwd_ws ? cuda_scratch(ctx, SCR_WORKSPACE, p->fwd_ws) : NULL;
    CUDNN_CHECK(cudnnConvolutionForward(ctx->cudnn, &one, p->xd, in, p->wd, c->w, p->cf, p->fwd, ws, p->fwd_ws, &zero,
                                        p->yd, y->data));
    if (c->b) CUDNN_CHECK(cudnnAddTensor(ctx->cudnn, &one, p->bd, c->b, &one, p->yd, y->data));
}

void cuda_conv2d_backward_input(Conv2d *c, const Tensor *gy, Tensor *gx) {
    cuda_ctx *ctx = cuda_ctx_get();
    cuda_plan *p = plan_for(ctx, c, gx->n, gx->h, gx->w);
    const float one = 1.0f, zero = 0.0f;
    float *out = gx->data;
    if (p->padded) out = cuda_scratch(ctx, SCR_PAD, sizeof(float) * (size_t)gx->n * c->cin * p->hp * p->wp);
    void *ws = p->bwd_ws ? cuda_scratch(ctx, SCR_WORKSPACE, p->bwd_ws) : NULL;
    CUDNN_CHECK(cudnnConvolutionBackwardData(ctx->cudnn, &one, p->wd, c->w, p->yd, gy->data, p->cb, p->bwd, ws,
                                             p->bwd_ws, &zero, p->xd, out));
    if (p->padded) cuda_crop2d(out, gx->n, c->cin, p->hp, p->wp, gx->data, gx->h, gx->w, c->pad_t, c->pad_l);
}

void cuda_conv2d_release(Conv2d *c) {
    cuda_conv_cache *cc = c->impl[DRQ_CUDA];
    if (!cc) return;
    for (int i = 0; i < CUDA_MAX_PLANS; i++) plan_destroy(&cc->plan[i]);
    free(cc);
    c->impl[DRQ_CUDA] = NULL;
}
