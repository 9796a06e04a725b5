/* cuda.h — the CUDA backend's public controls (the ops themselves are
 * reached through kernels/ops.h like every backend).  Only CUDA builds
 * (DRQ_HAVE_CUDA) define these. */
#ifndef DRQ_CUDA_H
#define DRQ_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* GPUs visible to this process (0 when there is no driver or no device). */
int drq_cuda_device_count(void);
/* Why the last drq_cuda_device_count found none ("cudaErrorNoDevice: …",
 * "cudaErrorInsufficientDriver: …"), or NULL when it did not fail. */
const char *drq_cuda_init_error(void);
/* cudaMalloc calls so far (device tensors and scratch growth): tests check
 * that a sampler loop at a fixed shape makes none. */
long drq_cuda_alloc_count(void);
/* Makes GPU `ordinal` current for the calling thread; -1 (with a message in
 * err, msize bytes) when it does not exist. */
int drq_cuda_set_device(int ordinal, char *err, size_t msize);
/* "fp32": every FLOP in float32 FMA; "tf32" (default, as PyTorch): the
 * convolutions may use TF32 tensor cores, GEMMs stay float32.  -1 on an
 * unknown name.  Per calling thread; plans are cached per precision. */
int drq_cuda_set_precision(const char *name);
const char *drq_cuda_precision(void);
/* Name and memory of the current device into buf. */
void drq_cuda_describe(char *buf, size_t n);
void drq_cuda_synchronize(void);
/* 1 when DRQ_CUDA_SYNC=1: synchronise after every kernel (debugging). */
int drq_cuda_debug_sync(void);

#ifdef __cplusplus
}
#endif

#endif
