/* context.c — devices, precision, per-thread handles and buffers, and the
 * memory hooks of the CUDA backend (see internal.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* per thread: each job thread applies its spec's precision (worker/eval/engine.c);
 * PyTorch's default is TF32 convolutions, float32 GEMMs */
static _Thread_local int g_tf32 = 1;
static cudaError_t g_init_error = cudaSuccess;
static long g_allocs; /* cudaMalloc calls (device tensors and scratch growth) */

int drq_cuda_set_precision(const char *name) {
    if (!strcmp(name, "fp32")) g_tf32 = 0;
    else if (!strcmp(name, "tf32")) g_tf32 = 1;
    else return -1;
    return 0;
}

const char *drq_cuda_precision(void) { return g_tf32 ? "tf32" : "fp32"; }
int cuda_conv_tf32(void) { return g_tf32; }

int drq_cuda_debug_sync(void) {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("DRQ_CUDA_SYNC");
        v = e && *e == '1';
    }
    return v;
}

int drq_cuda_device_count(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        g_init_error = e;
        (void)cudaGetLastError(); /* clear the error */
        return 0;
    }
    return n;
}

const char *drq_cuda_init_error(void) {
    static char buf[256];
    if (g_init_error == cudaSuccess) return NULL;
    snprintf(buf, sizeof buf, "%s: %s", cudaGetErrorName(g_init_error), cudaGetErrorString(g_init_error));
    return buf;
}

long drq_cuda_alloc_count(void) { return __atomic_load_n(&g_allocs, __ATOMIC_RELAXED); }

int drq_cuda_set_device(int ordinal, char *err, size_t msize) {
    int n = drq_cuda_device_count();
    if (ordinal < 0 || ordinal >= n) {
        snprintf(err, msize, "cuda:%d does not exist: this machine shows %d GPU%s to the process%s", ordinal, n,
                 n == 1 ? "" : "s", n ? "" : " (no driver or CUDA_VISIBLE_DEVICES empty?)");
        return -1;
    }
    cudaError_t e = cudaSetDevice(ordinal);
    if (e != cudaSuccess) {
        snprintf(err, msize, "cudaSetDevice(%d): %s", ordinal, cudaGetErrorString(e));
        return -1;
    }
    return 0;
}

void drq_cuda_describe(char *buf, size_t n) {
    int d = 0;
    struct cudaDeviceProp p;
    CUDA_CHECK(cudaGetDevice(&d));
    CUDA_CHECK(cudaGetDeviceProperties(&p, d));
    snprintf(buf, n, "cuda:%d %s (sm_%d%d, %.1f GiB, %d SMs), cuDNN %zu, precision %s", d, p.name, p.major, p.minor,
             (double)p.totalGlobalMem / (1u << 30), p.multiProcessorCount, cudnnGetVersion(), drq_cuda_precision());
}

void drq_cuda_synchronize(void) { CUDA_CHECK(cudaDeviceSynchronize()); }

static _Thread_local cuda_ctx *t_ctx;
static pthread_key_t ctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;

/* Releases a context's buffers and handles on its own device. */
static void ctx_destroy(void *v) {
    cuda_ctx *c = v;
    int now = 0;
    if (!c) return;
    cudaGetDevice(&now);
    cudaSetDevice(c->device);
    for (int i = 0; i < SCR_COUNT; i++) cudaFree(c->buf[i]);
    cudnnDestroy(c->cudnn);
    cublasDestroy(c->cublas);
    cudaSetDevice(now);
    free(c);
}

/* A thread's context is released when the thread exits (the key's destructor). */
static void ctx_key_init(void) {
    if (pthread_key_create(&ctx_key, ctx_destroy)) DIE("pthread_key_create failed");
}

cuda_ctx *cuda_ctx_get(void) {
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    if (t_ctx && t_ctx->device == dev) return t_ctx;
    /* first use on this thread, or the thread switched devices: a new context
     * (the old one's buffers belong to the other device and are released) */
    pthread_once(&ctx_once, ctx_key_init);
    ctx_destroy(t_ctx);
    t_ctx = NULL;
    cuda_ctx *c = xcalloc(1, sizeof *c);
    c->device = dev;
    CUDNN_CHECK(cudnnCreate(&c->cudnn));
    CUBLAS_CHECK(cublasCreate(&c->cublas));
    /* float32 GEMMs: the default math mode never uses TF32 for sgemm (PyTorch's
     * default for matmul); the convolutions carry their own math type */
    CUBLAS_CHECK(cublasSetMathMode(c->cublas, CUBLAS_DEFAULT_MATH));
    t_ctx = c;
    pthread_setspecific(ctx_key, c);
    return c;
}

void *cuda_scratch(cuda_ctx *c, cuda_scratch_slot s, size_t bytes) {
    if (bytes <= c->cap[s] && c->buf[s]) return c->buf[s];
    if (c->buf[s]) CUDA_CHECK(cudaFree(c->buf[s]));
    size_t cap = bytes + bytes / 4 + 256; /* headroom: fewer regrowths */
    CUDA_CHECK(cudaMalloc(&c->buf[s], cap));
    __atomic_add_fetch(&g_allocs, 1, __ATOMIC_RELAXED);
    c->cap[s] = cap;
    return c->buf[s];
}

/* ---- memory hooks of drq_backend_cuda ---------------------------------- */
float *cuda_alloc(size_t n) {
    void *p = NULL;
    size_t bytes = (n ? n : 1) * sizeof(float);
    CUDA_CHECK(cudaMalloc(&p, bytes));
    __atomic_add_fetch(&g_allocs, 1, __ATOMIC_RELAXED);
    CUDA_CHECK(cudaMemset(p, 0, bytes));
    return p;
}

void cuda_release(float *p) { CUDA_CHECK(cudaFree(p)); }

/* Unified addressing tells host from device memory on either side. */
void cuda_copy(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
    CUDA_DEBUG_SYNC();
}

void cuda_require_device_ptr(const void *p, const char *what) {
    struct cudaPointerAttributes a;
    CUDA_CHECK(cudaPointerGetAttributes(&a, p));
    if (a.type != cudaMemoryTypeDevice)
        DIE("%s is host memory on a CUDA op (hint: load the model with unet_load_on / wrn_load_on(DRQ_CUDA))", what);
}
