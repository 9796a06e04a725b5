/* cuda_check.h — checked wrappers for every CUDA runtime, cuDNN and cuBLAS
 * call of the CUDA backend (llm.c style): a failure dies with file:line, the
 * call, the library's own message and a hint.  Usable from C and CUDA C++. */
#ifndef DRQ_CUDA_CHECK_H
#define DRQ_CUDA_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "../../common/util.h"

#define CUDA_CHECK(call)                                                                                     \
    do {                                                                                                     \
        cudaError_t e_ = (call);                                                                             \
        if (e_ != cudaSuccess)                                                                               \
            DIE("%s failed: %s (%s) (hint: out of memory → lower --batch; no device → check nvidia-smi and " \
                "CUDA_VISIBLE_DEVICES)",                                                                     \
                #call, cudaGetErrorString(e_), cudaGetErrorName(e_));                                        \
    } while (0)

#define CUDNN_CHECK(call)                                                                                    \
    do {                                                                                                     \
        cudnnStatus_t s_ = (call);                                                                           \
        if (s_ != CUDNN_STATUS_SUCCESS)                                                                      \
            DIE("%s failed: %s (hint: CUDNN_LOGERR_DBG=1 CUDNN_LOGDEST_DBG=stderr shows cuDNN's reason)",   \
                #call, cudnnGetErrorString(s_));                                                             \
    } while (0)

#define CUBLAS_CHECK(call)                                                                                   \
    do {                                                                                                     \
        cublasStatus_t s_ = (call);                                                                          \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                                     \
            DIE("%s failed: %s (%s)", #call, cublasGetStatusName(s_), cublasGetStatusString(s_));           \
    } while (0)

/* After a library call (cuDNN, cuBLAS, cudaMemcpy2D): with DRQ_CUDA_SYNC=1
 * (read once) synchronise, so that an asynchronous fault is reported at the
 * call that caused it rather than at a later op. */
#define CUDA_DEBUG_SYNC()                                                   \
    do {                                                                    \
        if (drq_cuda_debug_sync()) CUDA_CHECK(cudaDeviceSynchronize());     \
    } while (0)

/* After a kernel launch: reports a bad launch configuration at its line
 * (and, with DRQ_CUDA_SYNC=1, a fault inside the kernel). */
#define CUDA_LAUNCHED()                  \
    do {                                 \
        CUDA_CHECK(cudaGetLastError());  \
        CUDA_DEBUG_SYNC();               \
    } while (0)

#endif
