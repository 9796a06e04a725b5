/* ops_cuda.cu — the CUDA backend for every op but convolution (conv_cuda.c):
 * GEMMs on cuBLAS (linear, attention), own kernels for the rest.
 *
 * Each kernel mirrors its CPU reference in kernels/cpu/ops_cpu.c, formula for
 * formula (the same accumulations in double where the CPU uses double), and
 * tests/test_cuda.c checks every one against it and against finite
 * differences.  Shapes were validated by kernels/ops.c.  Everything runs on
 * the thread's default stream, in order; host arrays (timesteps, noise keys)
 * are copied synchronously into grow-only scratch buffers.
 *
 * Kernel shapes: pointwise ops are grid-stride loops of 256 threads;
 * reductions (group norm, per-plane sums, softmax rows) use one block of 256
 * threads per reduced row and block_sum / block_max below.
 */
#include <math.h>
#include <stdint.h>

#include "../../common/philox.h"
#include "internal.h"

#define THREADS 256

/* Blocks for a grid-stride loop over n elements. */
static unsigned grid_for(size_t n) {
    size_t b = (n + THREADS - 1) / THREADS;
    return (unsigned)(b < 65535u * 8 ? (b ? b : 1) : 65535u * 8);
}

#define GRID_STRIDE(i, n) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

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

/* =====================================================================
 * linear (cuBLAS, column-major views of row-major data):
 *   y[n,out] = x[n,in]·Wᵀ + b   ⇔  Yc(out×n) = Wcᵀ·Xc with Wc = W viewed in×out
 * ===================================================================== */
__global__ void k_bias_rows(const float *b, int out, size_t total, float *y) {
    GRID_STRIDE(i, total) y[i] = b[i % out];
}

static void cuda_linear_forward(const float *w, const float *b, int in, int out, const Tensor *x, Tensor *y) {
    cuda_ctx *c = cuda_ctx_get();
    size_t total = (size_t)x->n * out;
    float one = 1.0f, beta = 0.0f;
    if (b) {
        k_bias_rows<<<grid_for(total), THREADS>>>(b, out, total, y->data);
        CUDA_LAUNCHED();
        beta = 1.0f;
    }
    CUBLAS_CHECK(cublasSgemm(c->cublas, CUBLAS_OP_T, CUBLAS_OP_N, out, x->n, in, &one, w, in, x->data, in, &beta,
                             y->data, out));
}

/* gx[n,in] = gy[n,out]·W  ⇔  Gxc(in×n) = Wc·Gyc */
static void cuda_linear_backward_input(const float *w, int in, int out, const Tensor *gy, Tensor *gx) {
    cuda_ctx *c = cuda_ctx_get();
    float one = 1.0f, zero = 0.0f;
    CUBLAS_CHECK(cublasSgemm(c->cublas, CUBLAS_OP_N, CUBLAS_OP_N, in, gy->n, out, &one, w, in, gy->data, out, &zero,
                             gx->data, in));
}

/* =====================================================================
 * group norm: one block per (sample, group); two-pass statistics in double
 * ===================================================================== */
__global__ void k_group_norm_fwd(const float *x, int C, int groups, size_t hw, float eps, const float *gamma,
                                 const float *beta, float *y, float *stats) {
    int ng = blockIdx.x, g = ng % groups, i = ng / groups, cpg = C / groups;
    size_t m = (size_t)cpg * hw, off = ((size_t)i * C + (size_t)g * cpg) * hw;
    const float *xp = x + off;
    double s = 0;
    for (size_t e = threadIdx.x; e < m; e += blockDim.x) s += xp[e];
    double mean = block_sum(s) / (double)m;
    double ss = 0;
    for (size_t e = threadIdx.x; e < m; e += blockDim.x) {
        double d = xp[e] - mean;
        ss += d * d;
    }
    double rstd = 1.0 / sqrt(block_sum(ss) / (double)m + eps);
    if (threadIdx.x == 0) stats[2 * ng] = (float)mean, stats[2 * ng + 1] = (float)rstd;
    for (size_t e = threadIdx.x; e < m; e += blockDim.x) {
        int ch = g * cpg + (int)(e / hw);
        float a = (float)rstd * (gamma ? gamma[ch] : 1.0f);
        float bb = (beta ? beta[ch] : 0.0f) - (float)mean * a;
        y[off + e] = xp[e] * a + bb;
    }
}

static void cuda_group_norm_forward(const Tensor *x, int groups, float eps, const float *gamma, const float *beta,
                                    Tensor *y, float *stats) {
    k_group_norm_fwd<<<x->n * groups, THREADS>>>(x->data, x->c, groups, (size_t)x->h * x->w, eps, gamma, beta,
                                                 y->data, stats);
    CUDA_LAUNCHED();
}

/* gx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)), ĝ = gy·γ, x̂ = (x−μ)·rstd */
__global__ void k_group_norm_bwd(const float *x, const float *gy, int C, int groups, size_t hw, const float *gamma,
                                 const float *stats, float *gx) {
    int ng = blockIdx.x, g = ng % groups, i = ng / groups, cpg = C / groups;
    size_t m = (size_t)cpg * hw, off = ((size_t)i * C + (size_t)g * cpg) * hw;
    double mean = stats[2 * ng], rstd = stats[2 * ng + 1];
    double sg = 0, sgx = 0;
    for (size_t e = threadIdx.x; e < m; e += blockDim.x) {
        double gm = gamma ? gamma[g * cpg + (int)(e / hw)] : 1.0;
        double gh = gy[off + e] * gm;
        sg += gh;
        sgx += gh * (x[off + e] - mean) * rstd;
    }
    double mg = block_sum(sg) / (double)m, mgx = block_sum(sgx) / (double)m;
    for (size_t e = threadIdx.x; e < m; e += blockDim.x) {
        double gm = gamma ? gamma[g * cpg + (int)(e / hw)] : 1.0;
        double xh = (x[off + e] - mean) * rstd;
        gx[off + e] = (float)(rstd * (gy[off + e] * gm - mg - xh * mgx));
    }
}

static void cuda_group_norm_backward_input(const Tensor *x, const Tensor *gy, int groups, const float *gamma,
                                           const float *stats, Tensor *gx) {
    k_group_norm_bwd<<<x->n * groups, THREADS>>>(x->data, gy->data, x->c, groups, (size_t)x->h * x->w, gamma, stats,
                                                 gx->data);
    CUDA_LAUNCHED();
}

/* =====================================================================
 * batch norm (inference affine), pointwise ops
 * ===================================================================== */
__global__ void k_channel_affine(const float *x, const float *scale, const float *shift, int C, size_t hw,
                                 size_t total, float *y) {
    GRID_STRIDE(i, total) {
        int ch = (int)((i / hw) % C);
        y[i] = shift ? x[i] * scale[ch] + shift[ch] : x[i] * scale[ch];
    }
}

static void cuda_batch_norm_forward(const Tensor *x, const float *scale, const float *shift, Tensor *y) {
    size_t n = tensor_numel(x);
    k_channel_affine<<<grid_for(n), THREADS>>>(x->data, scale, shift, x->c, (size_t)x->h * x->w, n, y->data);
    CUDA_LAUNCHED();
}

static void cuda_batch_norm_backward_input(const Tensor *gy, const float *scale, Tensor *gx) {
    size_t n = tensor_numel(gy);
    k_channel_affine<<<grid_for(n), THREADS>>>(gy->data, scale, NULL, gy->c, (size_t)gy->h * gy->w, n, gx->data);
    CUDA_LAUNCHED();
}

/* expf here is CUDA's (within 2 ulp); the CPU uses its own exp_vec (2 ulp):
 * the two agree to float tolerance, not bit for bit. */
__global__ void k_swish_fwd(const float *x, size_t n, float *y) {
    GRID_STRIDE(i, n) y[i] = x[i] / (1.0f + expf(-x[i]));
}
__global__ void k_swish_bwd(const float *x, const float *gy, size_t n, float *gx) {
    GRID_STRIDE(i, n) {
        float s = 1.0f / (1.0f + expf(-x[i]));
        gx[i] = gy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}
__global__ void k_relu_fwd(const float *x, size_t n, float *y) {
    GRID_STRIDE(i, n) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}
__global__ void k_relu_bwd(const float *x, const float *gy, size_t n, float *gx) {
    GRID_STRIDE(i, n) gx[i] = x[i] > 0.0f ? gy[i] : 0.0f;
}
__global__ void k_add(const float *a, const float *b, size_t n, float *y) {
    GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}
__global__ void k_axpby(float a, const float *x, float b, size_t n, float *y) {
    GRID_STRIDE(i, n) y[i] = a * x[i] + b * y[i];
}
__global__ void k_axpy(float a, const float *x, size_t n, float *y) {
    GRID_STRIDE(i, n) y[i] += a * x[i];
}
__global__ void k_add_channel(const float *x, const float *v, size_t hw, size_t n, float *y) {
    GRID_STRIDE(i, n) y[i] = x[i] + v[i / hw];
}

#define POINTWISE1(name, kern)                                          \
    static void name(const Tensor *x, Tensor *y) {                      \
        size_t n = tensor_numel(x);                                     \
        kern<<<grid_for(n), THREADS>>>(x->data, n, y->data);            \
        CUDA_LAUNCHED();                                                \
    }
#define POINTWISE2(name, kern)                                          \
    static void name(const Tensor *x, const Tensor *gy, Tensor *gx) {   \
        size_t n = tensor_numel(x);                                     \
        kern<<<grid_for(n), THREADS>>>(x->data, gy->data, n, gx->data); \
        CUDA_LAUNCHED();                                                \
    }
POINTWISE1(cuda_swish_forward, k_swish_fwd)
POINTWISE2(cuda_swish_backward_input, k_swish_bwd)
POINTWISE1(cuda_relu_forward, k_relu_fwd)
POINTWISE2(cuda_relu_backward_input, k_relu_bwd)
POINTWISE2(cuda_add_forward, k_add)

static void cuda_axpy(float a, const Tensor *x, Tensor *y) {
    size_t n = tensor_numel(x);
    k_axpy<<<grid_for(n), THREADS>>>(a, x->data, n, y->data);
    CUDA_LAUNCHED();
}

static void cuda_axpby(float a, const Tensor *x, float b, Tensor *y) {
    size_t n = tensor_numel(x);
    k_axpby<<<grid_for(n), THREADS>>>(a, x->data, b, n, y->data);
    CUDA_LAUNCHED();
}

static void cuda_add_channel_forward(const Tensor *x, const Tensor *v, Tensor *y) {
    size_t n = tensor_numel(x);
    k_add_channel<<<grid_for(n), THREADS>>>(x->data, v->data, (size_t)x->h * x->w, n, y->data);
    CUDA_LAUNCHED();
}

/* One block per plane: out[p] = scale · Σ x[p·hw …] (double accumulation). */
__global__ void k_plane_sum(const float *x, size_t hw, double scale, float *out) {
    const float *xp = x + (size_t)blockIdx.x * hw;
    double s = 0;
    for (size_t e = threadIdx.x; e < hw; e += blockDim.x) s += xp[e];
    s = block_sum(s);
    if (threadIdx.x == 0) out[blockIdx.x] = (float)(s * scale);
}

static void cuda_add_channel_backward_input(const Tensor *gy, Tensor *gx, Tensor *gv) {
    size_t hw = (size_t)gy->h * gy->w;
    if (gv) {
        k_plane_sum<<<gy->n * gy->c, THREADS>>>(gy->data, hw, 1.0, gv->data);
        CUDA_LAUNCHED();
    }
    if (gx && gx->data != gy->data) cuda_copy(gx->data, gy->data, tensor_numel(gy) * sizeof(float));
}

/* The CPU divides the double sum by hw; here the sum is scaled by 1/hw in
 * double, which rounds the same to float within an ulp. */
static void cuda_avgpool_global_forward(const Tensor *x, Tensor *y) {
    size_t hw = (size_t)x->h * x->w;
    k_plane_sum<<<x->n * x->c, THREADS>>>(x->data, hw, 1.0 / (double)hw, y->data);
    CUDA_LAUNCHED();
}

__global__ void k_avgpool_bwd(const float *gy, size_t hw, size_t n, float *gx) {
    GRID_STRIDE(i, n) gx[i] = gy[i / hw] / (float)hw;
}

static void cuda_avgpool_global_backward_input(const Tensor *gy, Tensor *gx) {
    size_t n = tensor_numel(gx);
    k_avgpool_bwd<<<grid_for(n), THREADS>>>(gy->data, (size_t)gx->h * gx->w, n, gx->data);
    CUDA_LAUNCHED();
}

/* =====================================================================
 * attention: per sample S = scale·QᵀK, P = softmax_rows(S), H = V Pᵀ, with
 * strided-batched GEMMs over the batch (column-major views: a row-major
 * C×L matrix is an L×C column-major one).  See ops_cpu.c for the backward.
 * ===================================================================== */
/* Xc·Ycᵀ over the batch: out (L×L col-major) = A(L×C) · B(L×C)ᵀ · alpha */
static void gemm_LLC(cuda_ctx *c, int n, int L, int C, float alpha, const float *A, const float *B, float *out) {
    float zero = 0.0f;
    CUBLAS_CHECK(cublasSgemmStridedBatched(c->cublas, CUBLAS_OP_N, CUBLAS_OP_T, L, L, C, &alpha, A, L,
                                           (long long)C * L, B, L, (long long)C * L, &zero, out, L, (long long)L * L, n));
}
/* out (L×C col-major) = op(P)(L×L) · B(L×C), op = T or N */
static void gemm_LCL(cuda_ctx *c, int n, int L, int C, cublasOperation_t opP, const float *P, const float *B,
                     float *out) {
    float one = 1.0f, zero = 0.0f;
    CUBLAS_CHECK(cublasSgemmStridedBatched(c->cublas, opP, CUBLAS_OP_N, L, C, L, &one, P, L, (long long)L * L, B, L,
                                           (long long)C * L, &zero, out, L, (long long)C * L, n));
}

/* softmax over each row of L (one block per row) */
__global__ void k_softmax_rows(float *p, int L) {
    float *row = p + (size_t)blockIdx.x * L;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < L; j += blockDim.x) mx = fmaxf(mx, row[j]);
    mx = block_max(mx);
    double s = 0;
    for (int j = threadIdx.x; j < L; j += blockDim.x) {
        float e = expf(row[j] - mx);
        row[j] = e;
        s += e;
    }
    float inv = (float)(1.0 / block_sum(s));
    for (int j = threadIdx.x; j < L; j += blockDim.x) row[j] *= inv;
}

/* gS = P ⊙ (gP − rowsum(gP ⊙ P)) · scale, in place in g (one block per row) */
__global__ void k_softmax_bwd_rows(const float *p, float *g, int L, float scale) {
    const float *pr = p + (size_t)blockIdx.x * L;
    float *gr = g + (size_t)blockIdx.x * L;
    double dot = 0;
    for (int j = threadIdx.x; j < L; j += blockDim.x) dot += (double)gr[j] * pr[j];
    float d = (float)block_sum(dot);
    for (int j = threadIdx.x; j < L; j += blockDim.x) gr[j] = pr[j] * (gr[j] - d) * scale;
}

static void cuda_attention_forward(const Tensor *q, const Tensor *k, const Tensor *v, Tensor *p, Tensor *h) {
    cuda_ctx *c = cuda_ctx_get();
    int n = q->n, C = q->c, L = q->h * q->w;
    float scale = 1.0f / sqrtf((float)C);
    gemm_LLC(c, n, L, C, scale, k->data, q->data, p->data);  /* Sc = Kc·Qcᵀ, i.e. S = QᵀK row-major */
    k_softmax_rows<<<n * L, THREADS>>>(p->data, L);
    CUDA_LAUNCHED();
    gemm_LCL(c, n, L, C, CUBLAS_OP_T, p->data, v->data, h->data); /* Hc = Pcᵀ·Vc */
}

static void cuda_attention_backward_input(const Tensor *q, const Tensor *k, const Tensor *v, const Tensor *p,
                                          const Tensor *gh, Tensor *gq, Tensor *gk, Tensor *gv) {
    cuda_ctx *c = cuda_ctx_get();
    int n = q->n, C = q->c, L = q->h * q->w;
    float scale = 1.0f / sqrtf((float)C);
    float *gs = (float *)cuda_scratch(c, SCR_ATTN, sizeof(float) * (size_t)n * L * L);
    gemm_LCL(c, n, L, C, CUBLAS_OP_N, p->data, gh->data, gv->data); /* gV = gH P */
    gemm_LLC(c, n, L, C, 1.0f, v->data, gh->data, gs);              /* gP = gHᵀ V */
    k_softmax_bwd_rows<<<n * L, THREADS>>>(p->data, gs, L, scale);
    CUDA_LAUNCHED();
    gemm_LCL(c, n, L, C, CUBLAS_OP_T, gs, k->data, gq->data); /* gQ = K gSᵀ */
    gemm_LCL(c, n, L, C, CUBLAS_OP_N, gs, q->data, gk->data); /* gK = Q gS */
}

/* =====================================================================
 * resampling, concat, padding
 * ===================================================================== */
__global__ void k_up_fwd(const float *x, int H, int W, size_t n, float *y) {
    GRID_STRIDE(i, n) { /* i indexes y: plane p, row r, column c of 2H × 2W */
        size_t p = i / ((size_t)4 * H * W);
        int rc = (int)(i % ((size_t)4 * H * W)), r = rc / (2 * W), col = rc % (2 * W);
        y[i] = x[p * H * W + (size_t)(r / 2) * W + col / 2];
    }
}
__global__ void k_up_bwd(const float *gy, int H, int W, size_t n, float *gx) {
    GRID_STRIDE(i, n) { /* i indexes gx */
        size_t p = i / ((size_t)H * W);
        int rc = (int)(i % ((size_t)H * W)), r = rc / W, col = rc % W;
        const float *g = gy + p * 4 * H * W + (size_t)(2 * r) * 2 * W + 2 * col;
        gx[i] = g[0] + g[1] + g[2 * W] + g[2 * W + 1];
    }
}

static void cuda_upsample2x_forward(const Tensor *x, Tensor *y) {
    size_t n = tensor_numel(y);
    k_up_fwd<<<grid_for(n), THREADS>>>(x->data, x->h, x->w, n, y->data);
    CUDA_LAUNCHED();
}

static void cuda_upsample2x_backward_input(const Tensor *gy, Tensor *gx) {
    size_t n = tensor_numel(gx);
    k_up_bwd<<<grid_for(n), THREADS>>>(gy->data, gx->h, gx->w, n, gx->data);
    CUDA_LAUNCHED();
}

/* per sample: y = [a (sa floats), b (sb floats)] — two pitched copies */
static void cuda_concat_forward(const Tensor *a, const Tensor *b, Tensor *y) {
    size_t sa = (size_t)a->c * a->h * a->w * sizeof(float), sb = (size_t)b->c * b->h * b->w * sizeof(float);
    CUDA_CHECK(cudaMemcpy2D(y->data, sa + sb, a->data, sa, sa, a->n, cudaMemcpyDeviceToDevice));
    CUDA_CHECK(cudaMemcpy2D((char *)y->data + sa, sa + sb, b->data, sb, sb, a->n, cudaMemcpyDeviceToDevice));
}

static void cuda_concat_backward_input(const Tensor *gy, Tensor *ga, Tensor *gb) {
    size_t sa = (size_t)ga->c * ga->h * ga->w * sizeof(float), sb = (size_t)gb->c * gb->h * gb->w * sizeof(float);
    CUDA_CHECK(cudaMemcpy2D(ga->data, sa, gy->data, sa + sb, sa, ga->n, cudaMemcpyDeviceToDevice));
    CUDA_CHECK(cudaMemcpy2D(gb->data, sb, (const char *)gy->data + sa, sa + sb, sb, ga->n, cudaMemcpyDeviceToDevice));
}

__global__ void k_pad(const float *x, int h, int w, float *xp, int hp, int wp, int top, int left, size_t n) {
    GRID_STRIDE(i, n) { /* i indexes xp */
        size_t p = i / ((size_t)hp * wp);
        int rc = (int)(i % ((size_t)hp * wp)), r = rc / wp - top, col = rc % wp - left;
        xp[i] = r >= 0 && r < h && col >= 0 && col < w ? x[p * h * w + (size_t)r * w + col] : 0.0f;
    }
}
__global__ void k_crop(const float *xp, int hp, int wp, float *x, int h, int w, int top, int left, size_t n) {
    GRID_STRIDE(i, n) { /* i indexes x */
        size_t p = i / ((size_t)h * w);
        int rc = (int)(i % ((size_t)h * w)), r = rc / w, col = rc % w;
        x[i] = xp[p * hp * wp + (size_t)(r + top) * wp + col + left];
    }
}

extern "C" void cuda_pad2d(const float *x, int n, int c, int h, int w, float *xp, int hp, int wp, int top, int left) {
    size_t total = (size_t)n * c * hp * wp;
    k_pad<<<grid_for(total), THREADS>>>(x, h, w, xp, hp, wp, top, left, total);
    CUDA_LAUNCHED();
}

extern "C" void cuda_crop2d(const float *xp, int n, int c, int hp, int wp, float *x, int h, int w, int top, int left) {
    size_t total = (size_t)n * c * h * w;
    k_crop<<<grid_for(total), THREADS>>>(xp, hp, wp, x, h, w, top, left, total);
    CUDA_LAUNCHED();
}

/* =====================================================================
 * timestep embedding (double phases, as on the CPU); t comes from the host
 * ===================================================================== */
__device__ double temb_freq(int k, int half) { return exp(-(double)k * log(10000.0) / (double)(half - 1)); }

__global__ void k_temb_fwd(const float *t, int n, int dim, float *y) {
    int half = dim / 2;
    GRID_STRIDE(e, (size_t)n * dim) {
        int i = (int)(e / dim), k = (int)(e % dim);
        if (k >= 2 * half) y[e] = 0.0f; /* odd dim: last entry */
        else if (k < half) y[e] = (float)sin((double)t[i] * temb_freq(k, half));
        else y[e] = (float)cos((double)t[i] * temb_freq(k - half, half));
    }
}
__global__ void k_temb_bwd(const float *t, int n, int dim, const float *gy, float *gt) {
    int half = dim / 2, i = blockIdx.x;
    double s = 0;
    for (int k = threadIdx.x; k < half; k += blockDim.x) {
        double f = temb_freq(k, half), a = (double)t[i] * f;
        s += gy[(size_t)i * dim + k] * f * cos(a) - gy[(size_t)i * dim + half + k] * f * sin(a);
    }
    s = block_sum(s);
    if (threadIdx.x == 0) gt[i] = (float)s;
}

static float *upload_t(cuda_ctx *c, const float *t, int n) {
    float *d = (float *)cuda_scratch(c, SCR_HOSTIN, sizeof(float) * n);
    CUDA_CHECK(cudaMemcpy(d, t, sizeof(float) * n, cudaMemcpyHostToDevice));
    return d;
}

static void cuda_timestep_embedding_forward(const float *t, int n, int dim, Tensor *y) {
    cuda_ctx *c = cuda_ctx_get();
    float *td = upload_t(c, t, n);
    k_temb_fwd<<<grid_for((size_t)n * dim), THREADS>>>(td, n, dim, y->data);
    CUDA_LAUNCHED();
}

static void cuda_timestep_embedding_backward_input(const float *t, int n, int dim, const Tensor *gy, float *gt) {
    cuda_ctx *c = cuda_ctx_get();
    float *td = upload_t(c, t, n), *gd = (float *)cuda_scratch(c, SCR_HOSTOUT, sizeof(float) * n);
    k_temb_bwd<<<n, THREADS>>>(td, n, dim, gy->data, gd);
    CUDA_LAUNCHED();
    CUDA_CHECK(cudaMemcpy(gt, gd, sizeof(float) * n, cudaMemcpyDeviceToHost));
}

/* =====================================================================
 * sampler arithmetic and noise
 * ===================================================================== */
__global__ void k_affine_clamp_fwd(const float *x, float a, float b, float lo, float hi, size_t n, float *y) {
    GRID_STRIDE(i, n) {
        float v = a * x[i] + b;
        y[i] = v < lo ? lo : v > hi ? hi : v;
    }
}
__global__ void k_affine_clamp_bwd(const float *x, const float *gy, float a, float b, float lo, float hi, size_t n,
                                   float *gx) {
    GRID_STRIDE(i, n) {
        float v = a * x[i] + b;
        gx[i] = v > lo && v < hi ? a * gy[i] : 0.0f;
    }
}

static void cuda_affine_clamp_forward(const Tensor *x, float a, float b, float lo, float hi, Tensor *y) {
    size_t n = tensor_numel(x);
    k_affine_clamp_fwd<<<grid_for(n), THREADS>>>(x->data, a, b, lo, hi, n, y->data);
    CUDA_LAUNCHED();
}

static void cuda_affine_clamp_backward_input(const Tensor *x, const Tensor *gy, float a, float b, float lo, float hi,
                                             Tensor *gx) {
    size_t n = tensor_numel(x);
    k_affine_clamp_bwd<<<grid_for(n), THREADS>>>(x->data, gy->data, a, b, lo, hi, n, gx->data);
    CUDA_LAUNCHED();
}

__global__ void k_sampler_fwd(const float *x, const float *eps, const float *z, sampler_coef c, size_t n, float *y) {
    GRID_STRIDE(i, n) {
        float xi = x[i], ei = eps[i];
        float x0 = c.a * xi - c.b * ei;
        if (c.clamp_x0) x0 = x0 < -1.0f ? -1.0f : x0 > 1.0f ? 1.0f : x0;
        float v = c.cx0 * x0 + c.cx * xi + c.ceps * ei;
        y[i] = z ? v + c.cz * z[i] : v;
    }
}
__global__ void k_sampler_bwd(const float *x, const float *eps, const float *g, sampler_coef c, size_t n, float *gx,
                              float *geps) {
    GRID_STRIDE(i, n) {
        float gi = g[i], gx0 = c.cx0 * gi;
        if (c.clamp_x0) {
            float x0 = c.a * x[i] - c.b * eps[i];
            if (x0 <= -1.0f || x0 >= 1.0f) gx0 = 0.0f;
        }
        geps[i] = c.ceps * gi - c.b * gx0;
        gx[i] = c.cx * gi + c.a * gx0;
    }
}

static void cuda_sampler_step_forward(const Tensor *x, const Tensor *eps, const Tensor *z, const sampler_coef *k,
                                      Tensor *y) {
    size_t n = tensor_numel(x);
    k_sampler_fwd<<<grid_for(n), THREADS>>>(x->data, eps->data, z ? z->data : NULL, *k, n, y->data);
    CUDA_LAUNCHED();
}

static void cuda_sampler_step_backward_input(const Tensor *x, const Tensor *eps, const Tensor *g, const sampler_coef *k,
                                             Tensor *gx, Tensor *geps) {
    size_t n = tensor_numel(x);
    k_sampler_bwd<<<grid_for(n), THREADS>>>(x->data, eps->data, g->data, *k, n, gx->data, geps->data);
    CUDA_LAUNCHED();
}

/* One thread per Philox counter block (4 elements) of one image. */
__global__ void k_normal(const uint64_t *keys, int nimg, size_t per, float *y) {
    size_t blocks = (per + 3) / 4;
    GRID_STRIDE(t, (size_t)nimg * blocks) {
        size_t i = t / blocks, b = t % blocks;
        uint32_t w[4];
        float z[4];
        drq_philox_block(keys[i], (uint64_t)b, w);
        drq_philox_box_muller(w[0], w[1], &z[0], &z[1]);
        drq_philox_box_muller(w[2], w[3], &z[2], &z[3]);
        float *yi = y + i * per;
        for (int j = 0; j < 4 && 4 * b + j < per; j++) yi[4 * b + j] = z[j];
    }
}

static void cuda_normal_fill(const uint64_t *keys, Tensor *y) {
    cuda_ctx *c = cuda_ctx_get();
    size_t per = (size_t)y->c * y->h * y->w;
    uint64_t *kd = (uint64_t *)cuda_scratch(c, SCR_HOSTIN, sizeof(uint64_t) * y->n);
    CUDA_CHECK(cudaMemcpy(kd, keys, sizeof(uint64_t) * y->n, cudaMemcpyHostToDevice));
    size_t total = (size_t)y->n * ((per + 3) / 4);
    k_normal<<<grid_for(total), THREADS>>>(kd, y->n, per, y->data);
    CUDA_LAUNCHED();
}

/* =====================================================================
 * the backend table
 * ===================================================================== */
static drq_backend make_backend(void) {
    drq_backend b = {};
    b.name = "cuda";
    b.available = cuda_available;
    b.alloc = cuda_alloc;
    b.release = cuda_release;
    b.copy = cuda_copy;
    b.zero = cuda_zero;
    b.conv2d_forward = cuda_conv2d_forward;
    b.conv2d_backward_input = cuda_conv2d_backward_input;
    b.conv2d_release = cuda_conv2d_release;
    b.linear_forward = cuda_linear_forward;
    b.linear_backward_input = cuda_linear_backward_input;
    b.group_norm_forward = cuda_group_norm_forward;
    b.group_norm_backward_input = cuda_group_norm_backward_input;
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
    b.attention_backward_input = cuda_attention_backward_input;
    b.upsample2x_forward = cuda_upsample2x_forward;
    b.upsample2x_backward_input = cuda_upsample2x_backward_input;
    b.avgpool_global_forward = cuda_avgpool_global_forward;
    b.avgpool_global_backward_input = cuda_avgpool_global_backward_input;
    b.concat_forward = cuda_concat_forward;
    b.concat_backward_input = cuda_concat_backward_input;
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
