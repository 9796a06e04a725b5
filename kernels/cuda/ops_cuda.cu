/* ops_cuda.cu — the CUDA backend for every op but convolution (conv_cuda.c):
 * GEMMs on cuBLAS (linear, attention), own kernels for the rest.
 *
 * The kernels' bodies and the GEMM plans live in kern.h, shared with the CPU
 * test that checks them against the CPU backend (tests/test_cuda_kernels.c);
 * this file only launches them.  Pointwise kernels are grid-stride loops of
 * 256 threads; reductions (group norm rows, per-plane sums, softmax rows,
 * timestep gradient) use one 256-thread block per row and block_reduce.
 * Everything runs on the thread's default stream, in order; host arrays
 * (timesteps, noise keys) are copied synchronously into grow-only scratch
 * buffers.  Shapes were validated by kernels/ops.c.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"
#include "kern.h"

#define THREADS 256

/* Blocks for a grid-stride loop over n elements. */
static unsigned grid_for(size_t n) {
    size_t b = (n + THREADS - 1) / THREADS;
    return (unsigned)(b < 65535u * 8 ? (b ? b : 1) : 65535u * 8);
}

/* i over [0, n) in a grid-stride loop */
#define FOR_GRID(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)
/* A grid-stride kernel applying body(args, i) to i < n. */
#define PW_KERNEL(name, A, body)         \
    __global__ void name(A a, size_t n) { \
        FOR_GRID(i, n) body(a, i);        \
    }
#define LAUNCH_PW(name, args, n)                                  \
    do {                                                          \
        size_t n_ = (n);                                          \
        if (n_) name<<<grid_for(n_), THREADS>>>((args), n_);      \
        CUDA_LAUNCHED();                                          \
    } while (0)

PW_KERNEL(k_swish_fwd, pw_args, K_swish_fwd)
PW_KERNEL(k_round_bf16, pw_args, K_round_bf16)
PW_KERNEL(k_swish_bwd, pw_args, K_swish_bwd)
PW_KERNEL(k_relu_fwd, pw_args, K_relu_fwd)
PW_KERNEL(k_relu_bwd, pw_args, K_relu_bwd)
PW_KERNEL(k_add, pw_args, K_add)
PW_KERNEL(k_axpy, pw_args, K_axpy)
PW_KERNEL(k_axpby, pw_args, K_axpby)
PW_KERNEL(k_add_channel, pw_args, K_add_channel)
PW_KERNEL(k_avgpool_bwd, pw_args, K_avgpool_bwd)
PW_KERNEL(k_channel_affine, chan_args, K_channel_affine)
PW_KERNEL(k_bias_rows, bias_args, K_bias_rows)
PW_KERNEL(k_up_fwd, up_args, K_up_fwd)
PW_KERNEL(k_up_bwd, up_args, K_up_bwd)
PW_KERNEL(k_pad, pad_args, K_pad)
PW_KERNEL(k_crop, pad_args, K_crop)
PW_KERNEL(k_temb_fwd, temb_args, K_temb_fwd)
PW_KERNEL(k_maxpool_fwd, maxpool_args, K_maxpool_fwd)
PW_KERNEL(k_maxpool_bwd, maxpool_args, K_maxpool_bwd)
PW_KERNEL(k_pool2_fwd, up_args, K_pool2_fwd)
PW_KERNEL(k_pool2_bwd, up_args, K_pool2_bwd)
PW_KERNEL(k_resize_fwd, rs_args, K_resize_fwd)
PW_KERNEL(k_resize_bwd, rs_args, K_resize_bwd)
PW_KERNEL(k_ss_fwd, ss_args, K_ss_fwd)
PW_KERNEL(k_ss_bwd, ss_args, K_ss_bwd)
PW_KERNEL(k_lsig_fwd, lsig_args, K_lsig_fwd)
PW_KERNEL(k_lsig_bwd, lsig_args, K_lsig_bwd)

/* Small host arrays (a batch's timesteps, noise keys) travel as kernel
 * arguments: a launch copies them without stopping the host, where a
 * cudaMemcpy from pageable memory would wait for the GPU to drain the stream
 * once per UNet call.  Larger batches fall back to a synchronous upload. */
#define BYVAL_MAX 256
typedef struct {
    float v[BYVAL_MAX];
} tvals;
typedef struct {
    uint64_t v[BYVAL_MAX];
} kvals;
__global__ void k_temb_fwd_v(temb_args a, tvals t, size_t n) {
    a.t = t.v;
    FOR_GRID(i, n) K_temb_fwd(a, i);
}
__global__ void k_normal_v(normal_args a, kvals k, size_t n) {
    a.keys = k.v;
    FOR_GRID(i, n) K_normal(a, i);
}
PW_KERNEL(k_affine_fwd, affine_args, K_affine_fwd)
PW_KERNEL(k_affine_bwd, affine_args, K_affine_bwd)
PW_KERNEL(k_sampler_fwd, sampler_args, K_sampler_fwd)
PW_KERNEL(k_sampler_bwd, sampler_args, K_sampler_bwd)
PW_KERNEL(k_normal, normal_args, K_normal)

/* =====================================================================
 * block reductions (blockDim.x a multiple of 32, ≤ 1024): every thread
 * returns op over all threads' v; `id` is op's identity
 * ===================================================================== */
template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T id) {
    __shared__ T sh[32];
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o; o >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, o));
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    if (wid == 0) {
        v = lane < nw ? sh[lane] : id;
        for (int o = 16; o; o >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, o));
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    v = sh[0];
    __syncthreads(); /* sh may be reused by the next reduction */
    return v;
}
struct SumOp {
    __device__ double operator()(double a, double b) const { return a + b; }
};
struct MaxOp {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
__device__ double block_sum(double v) { return block_reduce(v, SumOp(), 0.0); }
__device__ float block_max(float v) { return block_reduce(v, MaxOp(), -INFINITY); }

/* One block per row; the phases are kern.h's. */
__global__ void k_group_norm_fwd(gn_args a) {
    int r = blockIdx.x, t = threadIdx.x, nt = blockDim.x;
    double m = (double)gn_m(a);
    double mean = block_sum(KR_gn_sum(a, r, t, nt)) / m;
    double rstd = 1.0 / sqrt(block_sum(KR_gn_sqdev(a, r, mean, t, nt)) / m + a.eps);
    KR_gn_apply(a, r, mean, rstd, t, nt);
}
__global__ void k_group_norm_bwd(gn_args a) {
    int r = blockIdx.x, t = threadIdx.x, nt = blockDim.x;
    double s[2];
    KR_gn_bwd_sums(a, r, t, nt, s);
    double sg = block_sum(s[0]), sgx = block_sum(s[1]);
    KR_gn_bwd_apply(a, r, sg, sgx, t, nt);
}
__global__ void k_plane_sum(plane_args a) {
    double s = block_sum(KR_plane_sum(a, blockIdx.x, threadIdx.x, blockDim.x));
    if (threadIdx.x == 0) KR_plane_store(a, blockIdx.x, s);
}
__global__ void k_softmax_rows(softmax_args a) {
    int r = blockIdx.x, t = threadIdx.x, nt = blockDim.x;
    float mx = block_max(KR_softmax_max(a, r, t, nt));
    double sum = block_sum(KR_softmax_exp(a, r, mx, t, nt));
    KR_softmax_scale(a, r, sum, t, nt);
}
__global__ void k_softmax_bwd_rows(softmax_args a) {
    int r = blockIdx.x, t = threadIdx.x, nt = blockDim.x;
    double dot = block_sum(KR_softmax_bwd_dot(a, r, t, nt));
    KR_softmax_bwd_apply(a, r, dot, t, nt);
}
__global__ void k_ss_sums(ss_args a) {
    double s[2];
    KR_ss_sums(a, blockIdx.x, threadIdx.x, blockDim.x, s);
    double sgx = block_sum(s[0]), sg = block_sum(s[1]);
    if (threadIdx.x == 0) KR_ss_store(a, blockIdx.x, sgx, sg);
}
__global__ void k_temb_bwd(temb_args a) {
    double s = block_sum(KR_temb_bwd(a, blockIdx.x, threadIdx.x, blockDim.x));
    if (threadIdx.x == 0) a.gt[blockIdx.x] = (float)s;
}
#define LAUNCH_ROWS(name, args, rows)                       \
    do {                                                    \
        int r_ = (rows);                                    \
        if (r_) name<<<r_, THREADS>>>(args);                \
        CUDA_LAUNCHED();                                    \
    } while (0)

/* =====================================================================
 * GEMMs: kern.h's plans on cuBLAS
 * ===================================================================== */
typedef struct {
    const float *buf[GB_GV + 1];
} gemm_bufs;

static void run_plan(cuda_ctx *c, const gemm_plan *g, const gemm_bufs *b) {
    CUBLAS_CHECK(cublasSgemmStridedBatched(c->cublas, g->ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                           g->tb ? CUBLAS_OP_T : CUBLAS_OP_N, g->m, g->n, g->k, &g->alpha,
                                           b->buf[g->a], g->lda, g->sa, b->buf[g->b], g->ldb, g->sb, &g->beta,
                                           (float *)b->buf[g->c], g->ldc, g->sc, g->batch));
    CUDA_DEBUG_SYNC();
}

static void cuda_linear_forward(const float *w, const float *b, int in, int out, const Tensor *x, Tensor *y) {
    cuda_ctx *c = cuda_ctx_get();
    if (b) LAUNCH_PW(k_bias_rows, (bias_args{b, y->data, out}), (size_t)x->n * out);
    gemm_bufs gb = {};
    gb.buf[GB_W] = w, gb.buf[GB_X] = x->data, gb.buf[GB_Y] = y->data;
    gemm_plan g = plan_linear_fwd(x->n, in, out, b != NULL);
    run_plan(c, &g, &gb);
}

static void cuda_linear_backward_input(const float *w, int in, int out, const Tensor *gy, Tensor *gx) {
    cuda_ctx *c = cuda_ctx_get();
    gemm_bufs gb = {};
    gb.buf[GB_W] = w, gb.buf[GB_Y] = gy->data, gb.buf[GB_X] = gx->data;
    gemm_plan g = plan_linear_bwd(gy->n, in, out);
    run_plan(c, &g, &gb);
}

static void cuda_round_bf16(const Tensor *x, Tensor *y) {
    LAUNCH_PW(k_round_bf16, (pw_args{x->data, NULL, NULL, y->data, 0, 0, 0}), tensor_numel(x));
}

/* P rounded to bf16 in its scratch slot (bf16 operands, ops.h): what the P-side GEMMs read. */
static const float *attention_p_bf16(cuda_ctx *c, const Tensor *p, size_t nll) {
    float *pr = (float *)cuda_scratch(c, SCR_ATTN_P, sizeof(float) * nll);
    LAUNCH_PW(k_round_bf16, (pw_args{p->data, NULL, NULL, pr, 0, 0, 0}), nll);
    return pr;
}

static void cuda_attention_forward(const Tensor *q, const Tensor *k, const Tensor *v, Tensor *p, Tensor *h, int bf16) {
    cuda_ctx *c = cuda_ctx_get();
    int n = q->n, C = q->c, L = q->h * q->w;
    gemm_bufs gb = {};
    gb.buf[GB_Q] = q->data, gb.buf[GB_K] = k->data, gb.buf[GB_V] = v->data, gb.buf[GB_P] = p->data,
    gb.buf[GB_H] = h->data;
    gemm_plan g0 = plan_attention(0, n, L, C), g1 = plan_attention(1, n, L, C);
    run_plan(c, &g0, &gb);
    LAUNCH_ROWS(k_softmax_rows, (softmax_args{NULL, p->data, L, 1.0f}), n * L);
    if (bf16) gb.buf[GB_P] = attention_p_bf16(c, p, (size_t)n * L * L);
    run_plan(c, &g1, &gb);
}

static void cuda_attention_backward_input(const Tensor *q, const Tensor *k, const Tensor *v, const Tensor *p,
                                          const Tensor *gh, Tensor *gq, Tensor *gk, Tensor *gv, int bf16) {
    cuda_ctx *c = cuda_ctx_get();
    int n = q->n, C = q->c, L = q->h * q->w;
    float *gs = (float *)cuda_scratch(c, SCR_ATTN, sizeof(float) * (size_t)n * L * L);
    gemm_bufs gb = {};
    gb.buf[GB_Q] = q->data, gb.buf[GB_K] = k->data, gb.buf[GB_V] = v->data, gb.buf[GB_P] = p->data;
    gb.buf[GB_GH] = gh->data, gb.buf[GB_GS] = gs, gb.buf[GB_GQ] = gq->data, gb.buf[GB_GK] = gk->data,
    gb.buf[GB_GV] = gv->data;
    if (bf16) gb.buf[GB_P] = attention_p_bf16(c, p, (size_t)n * L * L); /* for gV = gH P only */
    for (int step = 2; step <= 5; step++) {
        gemm_plan g = plan_attention(step, n, L, C);
        run_plan(c, &g, &gb);
        if (step == 3) { /* the softmax backward reads the float32 P */
            LAUNCH_ROWS(k_softmax_bwd_rows, (softmax_args{p->data, gs, L, 1.0f / sqrtf((float)C)}), n * L);
            if (bf16) LAUNCH_PW(k_round_bf16, (pw_args{gs, NULL, NULL, gs, 0, 0, 0}), (size_t)n * L * L);
        }
    }
}

/* =====================================================================
 * normalisation, pointwise, pooling
 * ===================================================================== */
static gn_args gn_make(const Tensor *x, int groups, float eps, const float *gamma, const float *beta) {
    gn_args a = {};
    a.x = x->data, a.gamma = gamma, a.beta = beta, a.C = x->c, a.groups = groups, a.hw = (size_t)x->h * x->w;
    a.eps = eps;
    return a;
}

static void cuda_group_norm_forward(const Tensor *x, int groups, float eps, const float *gamma, const float *beta,
                                    Tensor *y, float *stats) {
    gn_args a = gn_make(x, groups, eps, gamma, beta);
    a.y = y->data, a.stats = stats;
    LAUNCH_ROWS(k_group_norm_fwd, a, x->n * groups);
}

static void cuda_group_norm_backward_input(const Tensor *x, const Tensor *gy, int groups, const float *gamma,
                                           const float *stats, Tensor *gx) {
    gn_args a = gn_make(x, groups, 0.0f, gamma, NULL);
    a.gy = gy->data, a.stats_in = stats, a.y = gx->data;
    LAUNCH_ROWS(k_group_norm_bwd, a, x->n * groups);
}

/* group norm + swish in the same kernels (kern.h gn_args.act / .h) */
static void cuda_group_norm_swish_forward(const Tensor *x, const Tensor *bias, int groups, float eps,
                                          const float *gamma, const float *beta, Tensor *h, Tensor *y, float *stats) {
    gn_args a = gn_make(x, groups, eps, gamma, beta);
    a.y = h->data, a.act = y->data, a.stats = stats, a.bias = bias ? bias->data : NULL;
    LAUNCH_ROWS(k_group_norm_fwd, a, x->n * groups);
}

static void cuda_group_norm_swish_backward_input(const Tensor *x, const Tensor *bias, const Tensor *h,
                                                 const Tensor *gy, int groups, const float *gamma,
                                                 const float *stats, Tensor *gx) {
    gn_args a = gn_make(x, groups, 0.0f, gamma, NULL);
    a.gy = gy->data, a.h = h->data, a.stats_in = stats, a.y = gx->data, a.bias = bias ? bias->data : NULL;
    LAUNCH_ROWS(k_group_norm_bwd, a, x->n * groups);
}

static void cuda_batch_norm_forward(const Tensor *x, const float *scale, const float *shift, Tensor *y) {
    LAUNCH_PW(k_channel_affine, (chan_args{x->data, scale, shift, y->data, x->c, (size_t)x->h * x->w}),
              tensor_numel(x));
}

static void cuda_batch_norm_backward_input(const Tensor *gy, const float *scale, Tensor *gx) {
    LAUNCH_PW(k_channel_affine, (chan_args{gy->data, scale, NULL, gx->data, gy->c, (size_t)gy->h * gy->w}),
              tensor_numel(gy));
}

/* pw_args{a, b, c, y, alpha, beta, hw} */
static void cuda_swish_forward(const Tensor *x, Tensor *y) {
    LAUNCH_PW(k_swish_fwd, (pw_args{x->data, NULL, NULL, y->data, 0, 0, 0}), tensor_numel(x));
}
static void cuda_swish_backward_input(const Tensor *x, const Tensor *gy, Tensor *gx) {
    LAUNCH_PW(k_swish_bwd, (pw_args{x->data, NULL, gy->data, gx->data, 0, 0, 0}), tensor_numel(x));
}
static void cuda_relu_forward(const Tensor *x, Tensor *y) {
    LAUNCH_PW(k_relu_fwd, (pw_args{x->data, NULL, NULL, y->data, 0, 0, 0}), tensor_numel(x));
}
static void cuda_relu_backward_input(const Tensor *x, const Tensor *gy, Tensor *gx) {
    LAUNCH_PW(k_relu_bwd, (pw_args{x->data, NULL, gy->data, gx->data, 0, 0, 0}), tensor_numel(x));
}
static void cuda_add_forward(const Tensor *a, const Tensor *b, Tensor *y) {
    LAUNCH_PW(k_add, (pw_args{a->data, b->data, NULL, y->data, 0, 0, 0}), tensor_numel(a));
}
static void cuda_axpy(float alpha, const Tensor *x, Tensor *y) {
    LAUNCH_PW(k_axpy, (pw_args{x->data, NULL, NULL, y->data, alpha, 0, 0}), tensor_numel(x));
}
static void cuda_axpby(float alpha, const Tensor *x, float beta, Tensor *y) {
    LAUNCH_PW(k_axpby, (pw_args{x->data, NULL, NULL, y->data, alpha, beta, 0}), tensor_numel(x));
}
static void cuda_add_channel_forward(const Tensor *x, const Tensor *v, Tensor *y) {
    LAUNCH_PW(k_add_channel, (pw_args{x->data, NULL, v->data, y->data, 0, 0, (size_t)x->h * x->w}), tensor_numel(x));
}

static void cuda_add_channel_backward_input(const Tensor *gy, Tensor *gx, Tensor *gv) {
    if (gv) LAUNCH_ROWS(k_plane_sum, (plane_args{gy->data, gv->data, (size_t)gy->h * gy->w, 1.0}), gy->n * gy->c);
    if (gx && gx->data != gy->data) cuda_copy(gx->data, gy->data, tensor_numel(gy) * sizeof(float));
}

/* The CPU divides the double sum by hw; here it is scaled by 1/hw in double:
 * the same float after rounding, within an ulp. */
static void cuda_avgpool_global_forward(const Tensor *x, Tensor *y) {
    size_t hw = (size_t)x->h * x->w;
    LAUNCH_ROWS(k_plane_sum, (plane_args{x->data, y->data, hw, 1.0 / (double)hw}), x->n * x->c);
}

static void cuda_avgpool_global_backward_input(const Tensor *gy, Tensor *gx) {
    LAUNCH_PW(k_avgpool_bwd, (pw_args{NULL, NULL, gy->data, gx->data, 0, 0, (size_t)gx->h * gx->w}), tensor_numel(gx));
}

/* =====================================================================
 * resampling, concat, padding
 * ===================================================================== */
static void cuda_upsample2x_forward(const Tensor *x, Tensor *y) {
    LAUNCH_PW(k_up_fwd, (up_args{x->data, y->data, x->h, x->w}), tensor_numel(y));
}

static void cuda_upsample2x_backward_input(const Tensor *gy, Tensor *gx) {
    LAUNCH_PW(k_up_bwd, (up_args{gy->data, gx->data, gx->h, gx->w}), tensor_numel(gx));
}

static void cuda_maxpool2d_forward(const Tensor *x, int k, int stride, int pad, Tensor *y) {
    LAUNCH_PW(k_maxpool_fwd, (maxpool_args{x->data, NULL, y->data, x->h, x->w, y->h, y->w, k, stride, pad}),
              tensor_numel(y));
}

static void cuda_maxpool2d_backward_input(const Tensor *x, const Tensor *gy, int k, int stride, int pad, Tensor *gx) {
    LAUNCH_PW(k_maxpool_bwd, (maxpool_args{x->data, gy->data, gx->data, x->h, x->w, gy->h, gy->w, k, stride, pad}),
              tensor_numel(gx));
}

/* per sample: y = [a (sa bytes), b (sb bytes)] — two pitched copies */
static void cuda_concat_forward(const Tensor *a, const Tensor *b, Tensor *y) {
    size_t sa = (size_t)a->c * a->h * a->w * sizeof(float), sb = (size_t)b->c * b->h * b->w * sizeof(float);
    CUDA_CHECK(cudaMemcpy2D(y->data, sa + sb, a->data, sa, sa, a->n, cudaMemcpyDeviceToDevice));
    CUDA_CHECK(cudaMemcpy2D((char *)y->data + sa, sa + sb, b->data, sb, sb, a->n, cudaMemcpyDeviceToDevice));
    CUDA_DEBUG_SYNC();
}

static void cuda_concat_backward_input(const Tensor *gy, Tensor *ga, Tensor *gb) {
    size_t sa = (size_t)ga->c * ga->h * ga->w * sizeof(float), sb = (size_t)gb->c * gb->h * gb->w * sizeof(float);
    CUDA_CHECK(cudaMemcpy2D(ga->data, sa, gy->data, sa + sb, sa, ga->n, cudaMemcpyDeviceToDevice));
    CUDA_CHECK(cudaMemcpy2D(gb->data, sb, (const char *)gy->data + sa, sa + sb, sb, ga->n, cudaMemcpyDeviceToDevice));
    CUDA_DEBUG_SYNC();
}

extern "C" void cuda_pad2d(const float *x, int n, int c, int h, int w, float *xp, int hp, int wp, int top, int left) {
    LAUNCH_PW(k_pad, (pad_args{x, xp, h, w, hp, wp, top, left}), (size_t)n * c * hp * wp);
}

extern "C" void cuda_crop2d(const float *xp, int n, int c, int hp, int wp, float *x, int h, int w, int top, int left) {
    LAUNCH_PW(k_crop, (pad_args{xp, x, h, w, hp, wp, top, left}), (size_t)n * c * h * w);
}

/* =====================================================================
 * the ADM UNet's pool, scale-shift and channel slices; resize; learned σ
 * ===================================================================== */
static void cuda_avgpool2x2_forward(const Tensor *x, Tensor *y) {
    LAUNCH_PW(k_pool2_fwd, (up_args{x->data, y->data, y->h, y->w}), tensor_numel(y));
}

static void cuda_avgpool2x2_backward_input(const Tensor *gy, Tensor *gx) {
    LAUNCH_PW(k_pool2_bwd, (up_args{gy->data, gx->data, gy->h, gy->w}), tensor_numel(gx));
}

static void cuda_resize_bilinear_forward(const Tensor *x, Tensor *y) {
    LAUNCH_PW(k_resize_fwd, (rs_args{x->data, y->data, x->h, x->w, y->h, y->w}), tensor_numel(y));
}

static void cuda_resize_bilinear_backward_input(const Tensor *gy, Tensor *gx) {
    LAUNCH_PW(k_resize_bwd, (rs_args{gy->data, gx->data, gx->h, gx->w, gy->h, gy->w}), tensor_numel(gx));
}

static void cuda_scale_shift_forward(const Tensor *x, const Tensor *ss, Tensor *y) {
    LAUNCH_PW(k_ss_fwd, (ss_args{x->data, ss->data, NULL, y->data, NULL, x->c, (size_t)x->h * x->w}), tensor_numel(x));
}

/* the sums read gy before gx (which may alias it) is written */
static void cuda_scale_shift_backward_input(const Tensor *x, const Tensor *ss, const Tensor *gy, Tensor *gx,
                                            Tensor *gss) {
    ss_args a = {x->data, ss->data, gy->data, gx->data, gss ? gss->data : NULL, x->c, (size_t)x->h * x->w};
    if (gss) LAUNCH_ROWS(k_ss_sums, a, x->n * x->c);
    LAUNCH_PW(k_ss_bwd, a, tensor_numel(x));
}

/* per sample: y's c·hw floats from x at channel c0 — one pitched copy */
static void cuda_channel_slice_forward(const Tensor *x, int c0, Tensor *y) {
    size_t hw = (size_t)x->h * x->w * sizeof(float), len = y->c * hw;
    CUDA_CHECK(cudaMemcpy2D(y->data, len, (const char *)x->data + c0 * hw, x->c * hw, len, x->n,
                            cudaMemcpyDeviceToDevice));
    CUDA_DEBUG_SYNC();
}

static void cuda_channel_slice_backward_input(const Tensor *gy, int c0, Tensor *gx) {
    size_t hw = (size_t)gx->h * gx->w * sizeof(float), len = gy->c * hw;
    CUDA_CHECK(cudaMemcpy2D((char *)gx->data + c0 * hw, gx->c * hw, gy->data, len, len, gx->n,
                            cudaMemcpyDeviceToDevice));
    CUDA_DEBUG_SYNC();
}

static void cuda_learned_sigma_forward(const Tensor *r, const Tensor *z, float lo, float hi, Tensor *y) {
    LAUNCH_PW(k_lsig_fwd, (lsig_args{r->data, z->data, NULL, y->data, lo, hi}), tensor_numel(r));
}

static void cuda_learned_sigma_backward_input(const Tensor *r, const Tensor *z, float lo, float hi, const Tensor *gy,
                                              Tensor *gr) {
    LAUNCH_PW(k_lsig_bwd, (lsig_args{r->data, z->data, gy->data, gr->data, lo, hi}), tensor_numel(r));
}

/* =====================================================================
 * timestep embedding; t comes from the host
 * ===================================================================== */
static float *upload_t(cuda_ctx *c, const float *t, int n) {
    float *d = (float *)cuda_scratch(c, SCR_HOSTIN, sizeof(float) * n);
    CUDA_CHECK(cudaMemcpy(d, t, sizeof(float) * n, cudaMemcpyHostToDevice));
    return d;
}

static void cuda_timestep_embedding_forward(const float *t, int n, int dim, Tensor *y) {
    if (n <= BYVAL_MAX) {
        tvals tv = {};
        memcpy(tv.v, t, sizeof(float) * n);
        size_t total = (size_t)n * dim;
        k_temb_fwd_v<<<grid_for(total), THREADS>>>(temb_args{NULL, NULL, y->data, NULL, n, dim}, tv, total);
        CUDA_LAUNCHED();
        return;
    }
    cuda_ctx *c = cuda_ctx_get();
    LAUNCH_PW(k_temb_fwd, (temb_args{upload_t(c, t, n), NULL, y->data, NULL, n, dim}), (size_t)n * dim);
}

static void cuda_timestep_embedding_backward_input(const float *t, int n, int dim, const Tensor *gy, float *gt) {
    cuda_ctx *c = cuda_ctx_get();
    float *gd = (float *)cuda_scratch(c, SCR_HOSTOUT, sizeof(float) * n);
    LAUNCH_ROWS(k_temb_bwd, (temb_args{upload_t(c, t, n), gy->data, NULL, gd, n, dim}), n);
    CUDA_CHECK(cudaMemcpy(gt, gd, sizeof(float) * n, cudaMemcpyDeviceToHost));
}

/* =====================================================================
 * sampler arithmetic and noise
 * ===================================================================== */
static void cuda_affine_clamp_forward(const Tensor *x, float a, float b, float lo, float hi, Tensor *y) {
    LAUNCH_PW(k_affine_fwd, (affine_args{x->data, NULL, y->data, a, b, lo, hi}), tensor_numel(x));
}

static void cuda_affine_clamp_backward_input(const Tensor *x, const Tensor *gy, float a, float b, float lo, float hi,
                                             Tensor *gx) {
    LAUNCH_PW(k_affine_bwd, (affine_args{x->data, gy->data, gx->data, a, b, lo, hi}), tensor_numel(x));
}

static void cuda_sampler_step_forward(const Tensor *x, const Tensor *eps, const Tensor *z, const sampler_coef *k,
                                      Tensor *y) {
    sampler_args a = {};
    a.x = x->data, a.eps = eps->data, a.z = z ? z->data : NULL, a.y = y->data, a.c = *k;
    LAUNCH_PW(k_sampler_fwd, a, tensor_numel(x));
}

static void cuda_sampler_step_backward_input(const Tensor *x, const Tensor *eps, const Tensor *g, const sampler_coef *k,
                                             Tensor *gx, Tensor *geps) {
    sampler_args a = {};
    a.x = x->data, a.eps = eps->data, a.g = g->data, a.gx = gx->data, a.geps = geps->data, a.c = *k;
    LAUNCH_PW(k_sampler_bwd, a, tensor_numel(x));
}

static void cuda_normal_fill(const uint64_t *keys, Tensor *y) {
    size_t per = (size_t)y->c * y->h * y->w, total = (size_t)y->n * ((per + 3) / 4);
    if (y->n <= BYVAL_MAX) {
        kvals kv = {};
        memcpy(kv.v, keys, sizeof(uint64_t) * y->n);
        if (total) k_normal_v<<<grid_for(total), THREADS>>>(normal_args{NULL, y->data, per}, kv, total);
        CUDA_LAUNCHED();
        return;
    }
    cuda_ctx *c = cuda_ctx_get();
    uint64_t *kd = (uint64_t *)cuda_scratch(c, SCR_HOSTIN, sizeof(uint64_t) * y->n);
    CUDA_CHECK(cudaMemcpy(kd, keys, sizeof(uint64_t) * y->n, cudaMemcpyHostToDevice));
    LAUNCH_PW(k_normal, (normal_args{kd, y->data, per}), (size_t)y->n * ((per + 3) / 4));
}

/* =====================================================================
 * the backend table
 * ===================================================================== */
static drq_backend make_backend(void) {
    drq_backend b = {};
    b.name = "cuda";
    b.alloc = cuda_alloc;
    b.release = cuda_release;
    b.copy = cuda_copy;
    b.conv2d_forward = cuda_conv2d_forward;
    b.conv2d_backward_input = cuda_conv2d_backward_input;
    b.conv2d_release = cuda_conv2d_release;
    b.linear_forward = cuda_linear_forward;
    b.linear_backward_input = cuda_linear_backward_input;
    b.group_norm_forward = cuda_group_norm_forward;
    b.group_norm_backward_input = cuda_group_norm_backward_input;
    b.group_norm_swish_forward = cuda_group_norm_swish_forward;
    b.group_norm_swish_backward_input = cuda_group_norm_swish_backward_input;
    b.batch_norm_forward = cuda_batch_norm_forward;
    b.batch_norm_backward_input = cuda_batch_norm_backward_input;
    b.swish_forward = cuda_swish_forward;
    b.swish_backward_input = cuda_swish_backward_input;
    b.relu_forward = cuda_relu_forward;
    b.relu_backward_input = cuda_relu_backward_input;
    b.add_forward = cuda_add_forward;
    b.add_channel_forward = cuda_add_channel_forward;
    b.add_channel_backward_input = cuda_add_channel_backward_input;
    b.axpy = cuda_axpy;
    b.attention_forward = cuda_attention_forward;
    b.round_bf16 = cuda_round_bf16;
    b.attention_backward_input = cuda_attention_backward_input;
    b.upsample2x_forward = cuda_upsample2x_forward;
    b.upsample2x_backward_input = cuda_upsample2x_backward_input;
    b.avgpool_global_forward = cuda_avgpool_global_forward;
    b.avgpool_global_backward_input = cuda_avgpool_global_backward_input;
    b.concat_forward = cuda_concat_forward;
    b.concat_backward_input = cuda_concat_backward_input;
    b.maxpool2d_forward = cuda_maxpool2d_forward;
    b.maxpool2d_backward_input = cuda_maxpool2d_backward_input;
    b.avgpool2x2_forward = cuda_avgpool2x2_forward;
    b.avgpool2x2_backward_input = cuda_avgpool2x2_backward_input;
    b.resize_bilinear_forward = cuda_resize_bilinear_forward;
    b.resize_bilinear_backward_input = cuda_resize_bilinear_backward_input;
    b.scale_shift_forward = cuda_scale_shift_forward;
    b.scale_shift_backward_input = cuda_scale_shift_backward_input;
    b.channel_slice_forward = cuda_channel_slice_forward;
    b.channel_slice_backward_input = cuda_channel_slice_backward_input;
    b.learned_sigma_forward = cuda_learned_sigma_forward;
    b.learned_sigma_backward_input = cuda_learned_sigma_backward_input;
    b.timestep_embedding_forward = cuda_timestep_embedding_forward;
    b.timestep_embedding_backward_input = cuda_timestep_embedding_backward_input;
    b.affine_clamp_forward = cuda_affine_clamp_forward;
    b.affine_clamp_backward_input = cuda_affine_clamp_backward_input;
    b.axpby = cuda_axpby;
    b.sampler_step_forward = cuda_sampler_step_forward;
    b.sampler_step_backward_input = cuda_sampler_step_backward_input;
    b.normal_fill = cuda_normal_fill;
    return b;
}

const drq_backend drq_backend_cuda = make_backend();
