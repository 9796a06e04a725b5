/* plugin.c — the one symbol libdrq-cuda.so exports (kernels/cuda_plugin.h).
 * Everything else in the library is local (kernels/cuda/plugin.map). */
#include <cuda_runtime.h>

#include "../cuda_plugin.h"
#include "internal.h"

static int mem_info(size_t *free_bytes, size_t *total_bytes) {
    return cudaMemGetInfo(free_bytes, total_bytes) == cudaSuccess ? 0 : -1;
}

static const drq_cuda_plugin plugin = {
    .abi = DRQ_CUDA_PLUGIN_ABI,
    .backend_size = sizeof(drq_backend),
    .tensor_size = sizeof(Tensor),
    .backend = &drq_backend_cuda,
    .device_count = drq_cuda_device_count,
    .init_error = drq_cuda_init_error,
    .alloc_count = drq_cuda_alloc_count,
    .set_device = drq_cuda_set_device,
    .set_precision = drq_cuda_set_precision,
    .precision = drq_cuda_precision,
    .describe = drq_cuda_describe,
    .synchronize = drq_cuda_synchronize,
    .mem_info = mem_info,
};

__attribute__((visibility("default"))) const drq_cuda_plugin *drq_cuda_plugin_v1(void) { return &plugin; }
