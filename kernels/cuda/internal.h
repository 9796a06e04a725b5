/* internal.h — what the CUDA backend's files share: the per-thread context
 * (library handles and grow-only device buffers) and the entry points that
 * ops_cuda.cu gathers into drq_backend_cuda. */
#ifndef DRQ_CUDA_INTERNAL_H
#define DRQ_CUDA_INTERNAL_H

#include "../ops.h"
#include "cuda.h"
#include "cuda_check.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Grow-only device buffers of one thread.  Each has one user at a time; a
 * buffer grows (cudaFree + cudaMalloc) only when a larger shape arrives, so
 * a sampler loop at a fixed batch shape allocates nothing. */
typedef enum {
    SCR_WORKSPACE, /* cuDNN workspace */
    SCR_PAD,       /* asymmetrically padded conv input / its gradient */
    SCR_ATTN,      /* attention backward: gS, n × L × L */
    SCR_ATTN_P,    /* attention with bf16 operands: P rounded, n × L × L */
    SCR_HOSTIN,    /* small uploads: timestep values, noise keys */
    SCR_HOSTOUT,   /* small downloads: timestep gradient */
    SCR_COUNT
} cuda_scratch_slot;

typedef struct {
    int device;
    cudnnHandle_t cudnn;
    cublasHandle_t cublas;
    void *buf[SCR_COUNT];
    size_t cap[SCR_COUNT];
} cuda_ctx;

/* The calling thread's context on its current device (created on first use). */
cuda_ctx *cuda_ctx_get(void);
/* Slot `s` of the context with at least `bytes` bytes. */
void *cuda_scratch(cuda_ctx *c, cuda_scratch_slot s, size_t bytes);
/* 1 when convolutions may use TF32 (drq_cuda_set_precision). */
int cuda_conv_tf32(void);

/* context.c: memory hooks */
float *cuda_alloc(size_t n);
void cuda_release(float *p);
void cuda_copy(void *dst, const void *src, size_t bytes);
/* Dies unless p is device memory (parameters must be bound on the GPU). */
void cuda_require_device_ptr(const void *p, const char *what);

/* conv_cuda.c */
void cuda_conv2d_forward(Conv2d *c, const Tensor *x, Tensor *y);
void cuda_conv2d_backward_input(Conv2d *c, const Tensor *gy, Tensor *gx);
void cuda_conv2d_release(Conv2d *c);
/* ops_cuda.cu: zero padding / cropping for convolutions cuDNN cannot pad
 * (asymmetric): xp (n×c×hp×wp) ← x placed at (top, left), zeros elsewhere;
 * and the reverse crop. */
void cuda_pad2d(const float *x, int n, int c, int h, int w, float *xp, int hp, int wp, int top, int left);
void cuda_crop2d(const float *xp, int n, int c, int hp, int wp, float *x, int h, int w, int top, int left);

#ifdef __cplusplus
}
#endif

#endif
