/* test_cuda_host.c — the CUDA backend's host code (kernels/cuda/context.c and
 * conv_cuda.c) against a fake CUDA runtime and cuDNN, on the CPU.
 *
 * The two files are compiled into this program together with stand-ins for
 * the CUDA runtime, cuDNN and cuBLAS functions they call: device memory is
 * tracked host memory, and the fake cudnnConvolutionForward /
 * BackwardData compute a plain convolution from the descriptors they are
 * given (NCHW, KCRS filters, cross-correlation, symmetric padding, stride) —
 * the documented semantics — with the reference convolution of
 * tests/conv_ref.h (itself checked against oneDNN in test_conv).  So what is
 * checked is drq's own host logic:
 *   - descriptors: shapes, padding and stride handed to cuDNN, including the
 *     explicit zero padding of asymmetric convolutions (the DDPM
 *     downsampler) and its cropped backward;
 *   - algorithm choice: candidates in the heuristics' order, skipping
 *     unsupported ones, FP16 down-conversion, workspaces over the limit and
 *     (backward) nondeterministic ones; fp32 pins CUDNN_FMA_MATH, tf32 keeps
 *     the candidate's math type; an algorithm that fails to run is replaced
 *     by the next;
 *   - the plan cache (per shape and precision, LRU of 4) and grow-only
 *     scratch: no allocation on a repeated shape;
 *   - bias added through cudnnAddTensor.
 * Results are compared with a direct double-precision convolution.  The
 * kernels themselves are covered by tests/test_cuda_kernels.c; running on a
 * GPU by `make test-cuda`.
 */
#include <stdio.h>

#include "../kernels/ops.h"

/* tensor.c asks the op layer for non-CPU backends; this program links no op
 * layer (see the Makefile) and has none */
const drq_backend *drq_backend_for(drq_device dev) {
    (void)dev;
    return NULL;
}

#ifndef DRQ_CUDA_HEADERS
#error "test_cuda_host needs the CUDA headers (the Makefile leaves it out without them)"
#else
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/cuda/context.c"
#include "../kernels/cuda/conv_cuda.c"
#include "../kernels/cuda/kern.h"
#include "check.h"
#include "conv_ref.h"
#include "rand.h"

/* =====================================================================
 * fake CUDA runtime: tracked host memory
 * ===================================================================== */
typedef struct {
    char *p;
    size_t bytes;
} mblock;
static mblock mem[4096];
static int nmem;
static int fake_device;

static int is_dev(const void *p) {
    for (int i = 0; i < nmem; i++)
        if ((const char *)p >= mem[i].p && (const char *)p < mem[i].p + mem[i].bytes) return 1;
    return 0;
}
cudaError_t cudaMalloc(void **p, size_t bytes) {
    *p = calloc(1, bytes ? bytes : 1);
    mem[nmem++] = (mblock){*p, bytes};
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    for (int i = 0; i < nmem; i++)
        if (mem[i].p == p) {
            mem[i] = mem[--nmem];
            free(p);
            return cudaSuccess;
        }
    return cudaErrorInvalidValue;
}
cudaError_t cudaMemset(void *p, int v, size_t n) {
    if (!is_dev(p)) return cudaErrorInvalidValue;
    memset(p, v, n);
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void *d, const void *s, size_t n, enum cudaMemcpyKind k) {
    (void)k;
    memcpy(d, s, n);
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *fr, size_t *total) {
    *fr = (size_t)16 << 30, *total = (size_t)80 << 30;
    return cudaSuccess;
}
cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes *a, const void *p) {
    memset(a, 0, sizeof *a);
    a->type = is_dev(p) ? cudaMemoryTypeDevice : cudaMemoryTypeUnregistered;
    return cudaSuccess;
}
cudaError_t cudaGetDeviceCount(int *n) {
    *n = 2;
    return cudaSuccess;
}
cudaError_t cudaGetDevice(int *d) {
    *d = fake_device;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) {
    fake_device = d;
    return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int d) {
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "fake GPU %d", d);
    p->major = 9, p->totalGlobalMem = (size_t)80 << 30, p->multiProcessorCount = 132;
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
const char *cudaGetErrorString(cudaError_t e) { return e ? "fake error" : "no error"; }
const char *cudaGetErrorName(cudaError_t e) { return e ? "cudaErrorFake" : "cudaSuccess"; }

/* =====================================================================
 * fake cuBLAS (handles only: the GEMMs are tested in test_cuda_kernels.c)
 * ===================================================================== */
static int nblas;
cublasStatus_t cublasCreate_v2(cublasHandle_t *h) {
    *h = (cublasHandle_t)(intptr_t)++nblas;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t h) {
    (void)h;
    return CUBLAS_STATUS_SUCCESS;
}
static cublasMath_t blas_math = (cublasMath_t)-1;
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) {
    (void)h;
    blas_math = m;
    return CUBLAS_STATUS_SUCCESS;
}
const char *cublasGetStatusName(cublasStatus_t s) { return s ? "CUBLAS_FAKE_ERROR" : "CUBLAS_STATUS_SUCCESS"; }
const char *cublasGetStatusString(cublasStatus_t s) { return s ? "fake error" : "success"; }

/* =====================================================================
 * fake cuDNN: descriptors record their settings; convolutions run directly
 * ===================================================================== */
struct cudnnContext {
    int id;
};
struct cudnnTensorStruct {
    int n, c, h, w;
};
struct cudnnFilterStruct {
    int k, c, r, s;
};
struct cudnnConvolutionStruct {
    int ph, pw, sh, sw;
    cudnnMathType_t math;
};
static int live_desc, nhandles, nhandles_destroyed;

cudnnStatus_t cudnnCreate(cudnnHandle_t *h) {
    *h = calloc(1, sizeof **h), nhandles++;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t h) {
    free(h), nhandles_destroyed++;
    return CUDNN_STATUS_SUCCESS;
}
size_t cudnnGetVersion(void) { return 91900; }
const char *cudnnGetErrorString(cudnnStatus_t s) { return s ? "CUDNN_STATUS_FAKE_FAILURE" : "CUDNN_STATUS_SUCCESS"; }
cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *d) {
    *d = calloc(1, sizeof **d), live_desc++;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d) {
    free(d), live_desc--;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *d) {
    *d = calloc(1, sizeof **d), live_desc++;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d) {
    free(d), live_desc--;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *d) {
    *d = calloc(1, sizeof **d), live_desc++;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d) {
    free(d), live_desc--;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t f, cudnnDataType_t t, int n,
                                         int c, int h, int w) {
    if (f != CUDNN_TENSOR_NCHW || t != CUDNN_DATA_FLOAT) return CUDNN_STATUS_BAD_PARAM;
    *d = (struct cudnnTensorStruct){n, c, h, w};
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t t, cudnnTensorFormat_t f, int k,
                                         int c, int r, int s) {
    if (f != CUDNN_TENSOR_NCHW || t != CUDNN_DATA_FLOAT) return CUDNN_STATUS_BAD_PARAM;
    *d = (struct cudnnFilterStruct){k, c, r, s};
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int ph, int pw, int sh, int sw, int dh,
                                              int dw, cudnnConvolutionMode_t mode, cudnnDataType_t t) {
    if (dh != 1 || dw != 1 || mode != CUDNN_CROSS_CORRELATION || t != CUDNN_DATA_FLOAT) return CUDNN_STATUS_BAD_PARAM;
    d->ph = ph, d->pw = pw, d->sh = sh, d->sw = sw;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t m) {
    d->math = m;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t d,
                                                    const cudnnTensorDescriptor_t x, const cudnnFilterDescriptor_t w,
                                                    int *n, int *c, int *h, int *ww) {
    *n = x->n, *c = w->k;
    *h = (x->h + 2 * d->ph - w->r) / d->sh + 1;
    *ww = (x->w + 2 * d->pw - w->s) / d->sw + 1;
    return CUDNN_STATUS_SUCCESS;
}

/* The candidate lists the fake heuristics return (set by each test). */
static cudnnConvolutionFwdAlgoPerf_t fwd_list[8];
static cudnnConvolutionBwdDataAlgoPerf_t bwd_list[8];
static int nfwd_list, nbwd_list;
static int fail_fwd_algo = -1, fail_bwd_algo = -1; /* algorithms whose execution fails */
static int ran_fwd_algo, ran_bwd_algo;
static cudnnMathType_t ran_fwd_math, ran_bwd_math;
static long heuristic_calls;
static size_t ws_of(int algo) { return algo == 6 ? (size_t)3 << 30 : (size_t)(algo + 1) * 4096; } /* algo 6: huge */

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
                                                     const cudnnFilterDescriptor_t w,
                                                     const cudnnConvolutionDescriptor_t d,
                                                     const cudnnTensorDescriptor_t y, const int req, int *got,
                                                     cudnnConvolutionFwdAlgoPerf_t *perf) {
    (void)h, (void)x, (void)w, (void)d, (void)y;
    heuristic_calls++;
    *got = nfwd_list < req ? nfwd_list : req;
    memcpy(perf, fwd_list, sizeof *perf * *got);
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnnHandle_t h, const cudnnFilterDescriptor_t w,
                                                          const cudnnTensorDescriptor_t dy,
                                                          const cudnnConvolutionDescriptor_t d,
                                                          const cudnnTensorDescriptor_t dx, const int req, int *got,
                                                          cudnnConvolutionBwdDataAlgoPerf_t *perf) {
    (void)h, (void)w, (void)dy, (void)d, (void)dx;
    *got = nbwd_list < req ? nbwd_list : req;
    memcpy(perf, bwd_list, sizeof *perf * *got);
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
                                                      const cudnnFilterDescriptor_t w,
                                                      const cudnnConvolutionDescriptor_t d,
                                                      const cudnnTensorDescriptor_t y, cudnnConvolutionFwdAlgo_t a,
                                                      size_t *bytes) {
    (void)h, (void)x, (void)w, (void)d, (void)y;
    *bytes = ws_of(a);
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnHandle_t h, const cudnnFilterDescriptor_t w,
                                                           const cudnnTensorDescriptor_t dy,
                                                           const cudnnConvolutionDescriptor_t d,
                                                           const cudnnTensorDescriptor_t dx,
                                                           cudnnConvolutionBwdDataAlgo_t a, size_t *bytes) {
    (void)h, (void)w, (void)dy, (void)d, (void)dx;
    *bytes = ws_of(a);
    return CUDNN_STATUS_SUCCESS;
}

/* The convolution a cuDNN call describes, as a Conv2d for the reference
 * (tests/conv_ref.h): symmetric padding, no bias. */
static Conv2d described(const struct cudnnTensorStruct *x, const struct cudnnFilterStruct *w,
                        const struct cudnnConvolutionStruct *cd, const void *wdata) {
    Conv2d c = conv2d_make(x->c, w->k, w->r, cd->sh, cd->ph, wdata, NULL);
    c.kw = w->s, c.pad_l = c.pad_r = cd->pw;
    return c;
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void *alpha, const cudnnTensorDescriptor_t xd,
                                      const void *x, const cudnnFilterDescriptor_t wd, const void *w,
                                      const cudnnConvolutionDescriptor_t cd, cudnnConvolutionFwdAlgo_t algo, void *ws,
                                      size_t wsb, const void *beta, const cudnnTensorDescriptor_t yd, void *y) {
    (void)h;
    if (*(const float *)alpha != 1.0f || *(const float *)beta != 0.0f) return CUDNN_STATUS_BAD_PARAM;
    if (!is_dev(x) || !is_dev(w) || !is_dev(y) || (wsb && (!ws || !is_dev(ws)))) return CUDNN_STATUS_BAD_PARAM;
    if (wsb < ws_of(algo)) return CUDNN_STATUS_BAD_PARAM;
    if ((int)algo == fail_fwd_algo) return CUDNN_STATUS_EXECUTION_FAILED;
    ran_fwd_algo = algo, ran_fwd_math = cd->math;
    Conv2d c = described(xd, wd, cd, w);
    int oh, ow;
    conv2d_out_hw(&c, xd->h, xd->w, &oh, &ow);
    if (cd->sh != cd->sw || yd->n != xd->n || yd->c != wd->k || yd->h != oh || yd->w != ow) return CUDNN_STATUS_BAD_PARAM;
    conv_ref_forward(&c, xd->n, xd->h, xd->w, x, y);
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const void *alpha, const cudnnFilterDescriptor_t wd,
                                           const void *w, const cudnnTensorDescriptor_t dyd, const void *dy,
                                           const cudnnConvolutionDescriptor_t cd, cudnnConvolutionBwdDataAlgo_t algo,
                                           void *ws, size_t wsb, const void *beta, const cudnnTensorDescriptor_t dxd,
                                           void *dx) {
    (void)h;
    if (*(const float *)alpha != 1.0f || *(const float *)beta != 0.0f) return CUDNN_STATUS_BAD_PARAM;
    if (!is_dev(w) || !is_dev(dy) || !is_dev(dx) || (wsb && (!ws || !is_dev(ws)))) return CUDNN_STATUS_BAD_PARAM;
    if (wsb < ws_of(algo)) return CUDNN_STATUS_BAD_PARAM;
    if ((int)algo == fail_bwd_algo) return CUDNN_STATUS_EXECUTION_FAILED;
    ran_bwd_algo = algo, ran_bwd_math = cd->math;
    Conv2d c = described(dxd, wd, cd, w);
    int oh, ow;
    conv2d_out_hw(&c, dxd->h, dxd->w, &oh, &ow);
    if (cd->sh != cd->sw || dyd->n != dxd->n || dyd->c != wd->k || dyd->h != oh || dyd->w != ow)
        return CUDNN_STATUS_BAD_PARAM;
    conv_ref_backward(&c, dxd->n, dxd->h, dxd->w, dy, dx);
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnAddTensor(cudnnHandle_t h, const void *alpha, const cudnnTensorDescriptor_t bd, const void *b,
                             const void *beta, const cudnnTensorDescriptor_t yd, void *y) {
    (void)h;
    if (*(const float *)alpha != 1.0f || *(const float *)beta != 1.0f || bd->n != 1 || bd->c != yd->c || bd->h != 1 ||
        bd->w != 1 || !is_dev(b) || !is_dev(y))
        return CUDNN_STATUS_BAD_PARAM;
    size_t hw = (size_t)yd->h * yd->w;
    for (size_t i = 0; i < (size_t)yd->n * yd->c * hw; i++) ((float *)y)[i] += ((const float *)b)[(i / hw) % yd->c];
    return CUDNN_STATUS_SUCCESS;
}

/* ops_cuda.cu's padding kernels, as their kern.h bodies on the host */
void cuda_pad2d(const float *x, int n, int c, int h, int w, float *xp, int hp, int wp, int top, int left) {
    for (size_t i = 0; i < (size_t)n * c * hp * wp; i++) K_pad((pad_args){x, xp, h, w, hp, wp, top, left}, i);
}
void cuda_crop2d(const float *xp, int n, int c, int hp, int wp, float *x, int h, int w, int top, int left) {
    for (size_t i = 0; i < (size_t)n * c * h * w; i++) K_crop((pad_args){xp, x, h, w, hp, wp, top, left}, i);
}

/* =====================================================================
 * the tests
 * ===================================================================== */
static float *dev_copy(const float *h, size_t n) {
    void *d;
    cudaMalloc(&d, n * sizeof(float));
    memcpy(d, h, n * sizeof(float));
    return d;
}
static Tensor dev_tensor(const Tensor *h) {
    Tensor t = *h;
    t.data = dev_copy(h->data, tensor_numel(h));
    t.dev = DRQ_CUDA, t.owns = 0;
    return t;
}

static void set_candidates(void) {
    /* forward: 0 unsupported, 1 FP16 conversion, 6 over the workspace limit, 2 usable (tensor op), 3 usable (fma) */
    nfwd_list = 5;
    fwd_list[0] = (cudnnConvolutionFwdAlgoPerf_t){.algo = 0, .status = CUDNN_STATUS_NOT_SUPPORTED};
    fwd_list[1] = (cudnnConvolutionFwdAlgoPerf_t){.algo = 1, .status = CUDNN_STATUS_SUCCESS, .memory = 8192,
                                                  .mathType = CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION};
    fwd_list[2] = (cudnnConvolutionFwdAlgoPerf_t){.algo = 6, .status = CUDNN_STATUS_SUCCESS, .memory = (size_t)3 << 30,
                                                  .mathType = CUDNN_DEFAULT_MATH};
    fwd_list[3] = (cudnnConvolutionFwdAlgoPerf_t){.algo = 2, .status = CUDNN_STATUS_SUCCESS, .memory = 12288,
                                                  .mathType = CUDNN_TENSOR_OP_MATH};
    fwd_list[4] = (cudnnConvolutionFwdAlgoPerf_t){.algo = 3, .status = CUDNN_STATUS_SUCCESS, .memory = 16384,
                                                  .mathType = CUDNN_FMA_MATH};
    /* backward-data: 0 nondeterministic, 4 usable, 5 usable */
    nbwd_list = 3;
    bwd_list[0] = (cudnnConvolutionBwdDataAlgoPerf_t){.algo = 0, .status = CUDNN_STATUS_SUCCESS, .memory = 4096,
                                                      .determinism = CUDNN_NON_DETERMINISTIC,
                                                      .mathType = CUDNN_DEFAULT_MATH};
    bwd_list[1] = (cudnnConvolutionBwdDataAlgoPerf_t){.algo = 4, .status = CUDNN_STATUS_SUCCESS, .memory = 20480,
                                                      .determinism = CUDNN_DETERMINISTIC,
                                                      .mathType = CUDNN_TENSOR_OP_MATH};
    bwd_list[2] = (cudnnConvolutionBwdDataAlgoPerf_t){.algo = 5, .status = CUDNN_STATUS_SUCCESS, .memory = 24576,
                                                      .determinism = CUDNN_DETERMINISTIC, .mathType = CUDNN_FMA_MATH};
}

typedef struct {
    int n, cin, h, w, cout, k, stride, pad, asym, bias;
} shape;

/* One convolution through cuda_conv2d_* against the reference. */
static void run_conv(const shape *s, const char *prec) {
    char nm[160];
    snprintf(nm, sizeof nm, "conv %d>%d k%d s%d p%d%s%s %dx%dx%d [%s]", s->cin, s->cout, s->k, s->stride, s->pad,
             s->asym ? " asym" : "", s->bias ? " bias" : "", s->n, s->h, s->w, prec);
    drq_cuda_set_precision(prec);
    size_t nw = (size_t)s->cout * s->cin * s->k * s->k;
    float *w = malloc(nw * sizeof(float)), *b = malloc(s->cout * sizeof(float));
    for (size_t i = 0; i < nw; i++) w[i] = nrand() * 0.2f;
    for (int i = 0; i < s->cout; i++) b[i] = nrand() * 0.1f;
    Conv2d ch = conv2d_make(s->cin, s->cout, s->k, s->stride, s->pad, w, s->bias ? b : NULL);
    Conv2d cd = conv2d_make(s->cin, s->cout, s->k, s->stride, s->pad, dev_copy(w, nw),
                            s->bias ? dev_copy(b, s->cout) : NULL);
    if (s->asym) ch.pad_t = ch.pad_l = cd.pad_t = cd.pad_l = 0, ch.pad_b = ch.pad_r = cd.pad_b = cd.pad_r = 1;
    int oh, ow;
    conv2d_out_hw(&ch, s->h, s->w, &oh, &ow);
    Tensor x = rnd(s->n, s->cin, s->h, s->w), gy = rnd(s->n, s->cout, oh, ow);
    Tensor y = tensor_new(s->n, s->cout, oh, ow), gx = tensor_new(s->n, s->cin, s->h, s->w);
    Tensor yr = tensor_new(s->n, s->cout, oh, ow), gxr = tensor_new(s->n, s->cin, s->h, s->w);
    Tensor xd = dev_tensor(&x), gyd = dev_tensor(&gy), yd = dev_tensor(&y), gxd = dev_tensor(&gx);
    conv_ref_forward(&ch, s->n, s->h, s->w, x.data, yr.data);
    conv_ref_backward(&ch, s->n, s->h, s->w, gy.data, gxr.data);
    cuda_conv2d_forward(&cd, &xd, &yd);
    cuda_conv2d_backward_input(&cd, &gyd, &gxd);
    memcpy(y.data, yd.data, tensor_numel(&y) * sizeof(float));
    memcpy(gx.data, gxd.data, tensor_numel(&gx) * sizeof(float));
    char k[200];
    snprintf(k, sizeof k, "%s: forward vs reference", nm);
    CHECK_LE(rel_l2(y.data, yr.data, tensor_numel(&y)), 1e-6, k);
    snprintf(k, sizeof k, "%s: backward-data vs reference", nm);
    CHECK_LE(rel_l2(gx.data, gxr.data, tensor_numel(&gx)), 1e-6, k);
    /* algorithm choice: forward skips 0 (unsupported), 1 (FP16 conversion), 6 (workspace) → 2;
     * backward skips 0 (nondeterministic) → 4; the math type follows the precision */
    int tf32 = !strcmp(prec, "tf32");
    CHECK_MSG(ran_fwd_algo == 2 && ran_bwd_algo == 4, "%s: ran algorithms %d / %d, expected 2 / 4", nm, ran_fwd_algo,
              ran_bwd_algo);
    CHECK_MSG(ran_fwd_math == (tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH) &&
                  ran_bwd_math == (tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH),
              "%s: math types %d / %d", nm, (int)ran_fwd_math, (int)ran_bwd_math);
    /* the same shape again: no new plan, no allocation */
    long calls = heuristic_calls, allocs = drq_cuda_alloc_count();
    cuda_conv2d_forward(&cd, &xd, &yd), cuda_conv2d_backward_input(&cd, &gyd, &gxd);
    CHECK_MSG(heuristic_calls == calls && drq_cuda_alloc_count() == allocs,
              "%s: a repeated shape built a plan (%ld) or allocated (%ld)", nm, heuristic_calls - calls,
              drq_cuda_alloc_count() - allocs);
    cuda_conv2d_release(&cd);
    cudaFree((void *)cd.w), cudaFree((void *)cd.b);
    Tensor *hs[] = {&x, &gy, &y, &gx, &yr, &gxr};
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) tensor_free(hs[i]);
    cudaFree(xd.data), cudaFree(gyd.data), cudaFree(yd.data), cudaFree(gxd.data);
    free(w), free(b);
}

/* An algorithm that fails to run is replaced by the next candidate. */
static void test_fallback(void) {
    shape s = {2, 4, 6, 6, 5, 3, 1, 1, 0, 1};
    fail_fwd_algo = 2, fail_bwd_algo = 4;
    drq_cuda_set_precision("tf32");
    float w[5 * 4 * 9], b[5];
    for (int i = 0; i < 180; i++) w[i] = nrand() * 0.2f;
    for (int i = 0; i < 5; i++) b[i] = nrand() * 0.1f;
    Conv2d ch = conv2d_make(4, 5, 3, 1, 1, w, b), cd = conv2d_make(4, 5, 3, 1, 1, dev_copy(w, 180), dev_copy(b, 5));
    Tensor x = rnd(s.n, 4, 6, 6), gy = rnd(s.n, 5, 6, 6), y = tensor_new(s.n, 5, 6, 6), yr = tensor_new(s.n, 5, 6, 6);
    Tensor gx = tensor_new(s.n, 4, 6, 6), gxr = tensor_new(s.n, 4, 6, 6);
    Tensor xd = dev_tensor(&x), gyd = dev_tensor(&gy), yd = dev_tensor(&y), gxd = dev_tensor(&gx);
    conv_ref_forward(&ch, s.n, 6, 6, x.data, yr.data);
    conv_ref_backward(&ch, s.n, 6, 6, gy.data, gxr.data);
    cuda_conv2d_forward(&cd, &xd, &yd), cuda_conv2d_backward_input(&cd, &gyd, &gxd);
    CHECK_MSG(ran_fwd_algo == 3 && ran_bwd_algo == 5, "fallback: ran %d / %d, expected 3 / 5", ran_fwd_algo,
              ran_bwd_algo);
    CHECK_MSG(ran_fwd_math == CUDNN_FMA_MATH, "fallback: the next candidate runs with its own math type (%d)",
              (int)ran_fwd_math);
    CHECK_LE(rel_l2(yd.data, yr.data, tensor_numel(&y)), 1e-6, "fallback: forward vs reference");
    CHECK_LE(rel_l2(gxd.data, gxr.data, tensor_numel(&gx)), 1e-6, "fallback: backward vs reference");
    fail_fwd_algo = fail_bwd_algo = -1;
    cuda_conv2d_release(&cd);
    cudaFree((void *)cd.w), cudaFree((void *)cd.b);
    Tensor *hs[] = {&x, &gy, &y, &yr, &gx, &gxr};
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) tensor_free(hs[i]);
    cudaFree(xd.data), cudaFree(gyd.data), cudaFree(yd.data), cudaFree(gxd.data);
}

/* Five shapes through one Conv2d: the fifth evicts the least recently used plan. */
static void test_plan_cache(void) {
    drq_cuda_set_precision("fp32");
    float w[3 * 2 * 9];
    for (int i = 0; i < 54; i++) w[i] = nrand();
    Conv2d cd = conv2d_make(2, 3, 3, 1, 1, dev_copy(w, 54), NULL);
    int sizes[6] = {4, 5, 6, 7, 8, 4};
    long before = heuristic_calls;
    for (int i = 0; i < 6; i++) {
        Tensor x = rnd(1, 2, sizes[i], sizes[i]), y = tensor_new(1, 3, sizes[i], sizes[i]);
        Tensor xd = dev_tensor(&x), yd = dev_tensor(&y);
        cuda_conv2d_forward(&cd, &xd, &yd);
        cudaFree(xd.data), cudaFree(yd.data), tensor_free(&x), tensor_free(&y);
    }
    /* 4, 5, 6, 7 built; 8 evicts 4; 4 again is rebuilt: 6 plans */
    CHECK_EQ_INT(heuristic_calls - before, 6);
    int live0 = live_desc;
    cuda_conv2d_release(&cd);
    CHECK_EQ_INT(live_desc, live0 - 4 * 6); /* 4 plans × (3 tensor + 1 filter + 2 conv descriptors) */
    CHECK_MSG(cd.impl[DRQ_CUDA] == NULL, "%s: %p", "cd.impl[DRQ_CUDA] == NULL", (void *)(cd.impl[DRQ_CUDA]));
    cudaFree((void *)cd.w);
}

static void test_context(void) {
    cuda_ctx *c = cuda_ctx_get();
    CHECK_MSG(c && c->cudnn && c->cublas, "context %p, cudnn %p, cublas %p", (void *)c, c ? (void *)c->cudnn : NULL,
              c ? (void *)c->cublas : NULL);
    CHECK_MSG(blas_math == CUBLAS_DEFAULT_MATH, "cuBLAS math mode %d (float32 GEMMs want the default)", (int)blas_math);
    CHECK_EQ_INT(cuda_ctx_get(), c); /* one context per thread and device */
    long a0 = drq_cuda_alloc_count();
    void *p1 = cuda_scratch(c, SCR_PAD, 1000), *p2 = cuda_scratch(c, SCR_PAD, 900);
    CHECK_MSG(p1 == p2 && drq_cuda_alloc_count() == a0 + 1, "scratch %p then %p, %ld allocations (want %ld)", p1, p2,
              (long)drq_cuda_alloc_count(), a0 + 1); /* grow-only */
    cuda_scratch(c, SCR_PAD, 100000);
    CHECK_EQ_INT(drq_cuda_alloc_count(), a0 + 2);
    char err[200];
    CHECK_EQ_INT(drq_cuda_set_device(2, err, sizeof err), -1);
    CHECK_CONTAINS(err, "cuda:2 does not exist");
    CHECK_EQ_INT(drq_cuda_set_device(1, err, sizeof err), 0);
    cuda_ctx *c1 = cuda_ctx_get();
    CHECK_MSG(c1->device == 1 && nhandles == 2, "device %d (want 1), %d handles (want 2)", (int)c1->device,
              (int)nhandles); /* a new context for the other device */
    drq_cuda_set_device(0, err, sizeof err);
    CHECK_EQ_INT(drq_cuda_set_precision("fp16"), -1);
    CHECK_EQ_INT(drq_cuda_set_precision("fp32"), 0);
    CHECK_EQ_STR(drq_cuda_precision(), "fp32");
    char desc[256];
    drq_cuda_describe(desc, sizeof desc);
    CHECK_CONTAINS(desc, "fake GPU 0");
}

/* A thread's context (handles, scratch) is released when the thread exits. */
static void *thread_body(void *arg) {
    (void)arg;
    cuda_ctx *c = cuda_ctx_get();
    cuda_scratch(c, SCR_PAD, 5000), cuda_scratch(c, SCR_ATTN, 7000);
    return NULL;
}
static void test_thread_exit(void) {
    int mem0 = nmem, destroyed0 = nhandles_destroyed;
    pthread_t t;
    pthread_create(&t, NULL, thread_body, NULL);
    pthread_join(t, NULL);
    CHECK_MSG(nmem == mem0 && nhandles_destroyed == destroyed0 + 1,
              "thread exit: %d device buffers left, %d cuDNN handles destroyed", nmem - mem0,
              nhandles_destroyed - destroyed0);
}

int main(void) {
    set_candidates();
    test_context();
    test_thread_exit();
    static const shape shapes[] = {
        {2, 3, 7, 7, 4, 3, 1, 1, 0, 1},  /* symmetric padding, bias */
        {2, 4, 8, 8, 4, 3, 2, 0, 1, 1},  /* the DDPM downsampler: pad right/bottom, stride 2 */
        {1, 6, 5, 5, 3, 1, 2, 0, 0, 0},  /* 1×1 stride 2, no bias */
        {3, 5, 6, 9, 2, 3, 2, 1, 0, 0},  /* stride 2, padding 1, non-square */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        run_conv(&shapes[i], "fp32");
        run_conv(&shapes[i], "tf32");
    }
    test_fallback();
    test_plan_cache();
    return CHECK_DONE();
}
#endif
