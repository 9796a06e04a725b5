/* cuda_plugin.h — the CUDA backend as a plugin (issue 13, deliverable 4).
 *
 * kernels/cuda/ is built into a shared library, $(BUILD)/libdrq-cuda.so,
 * linked against cuDNN, cuBLAS and the CUDA runtime; drq, drq-server and
 * drq-worker link none of them.  The first request for a GPU
 * (drq_device_parse("cuda:N"), drq_device_gpu_count: `drq devices`,
 * `drq-worker --devices all`) dlopens the plugin and takes its one exported
 * symbol, drq_cuda_plugin_v1(), which returns the table below; the backend
 * table goes into ops.c's CUDA slot.  A process that never asks for a GPU
 * never loads a CUDA library.
 *
 * Where: $DRQ_CUDA_PLUGIN when set (a path), else libdrq-cuda.so in the
 * directory of /proc/self/exe, then in its parent (build/tests/ programs),
 * then in ../lib (an install prefix's bin/ + lib/).
 * A missing plugin, a missing CUDA library (dlerror() names it) or a plugin
 * of another ABI is an error of the GPU request only. */
#ifndef DRQ_CUDA_PLUGIN_H
#define DRQ_CUDA_PLUGIN_H

#include <stddef.h>

#include "../common/util.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever this struct, drq_backend or Tensor changes layout. */
#define DRQ_CUDA_PLUGIN_ABI 1
#define DRQ_CUDA_PLUGIN_SYMBOL "drq_cuda_plugin_v1"
#define DRQ_CUDA_PLUGIN_FILE "libdrq-cuda.so"

typedef struct drq_cuda_plugin {
    int abi;              /* DRQ_CUDA_PLUGIN_ABI of the plugin's build */
    size_t backend_size;  /* sizeof(drq_backend) there */
    size_t tensor_size;   /* sizeof(Tensor) there */
    const drq_backend *backend;
    /* kernels/cuda/cuda.h, one for one */
    int (*device_count)(void);
    const char *(*init_error)(void);
    long (*alloc_count)(void);
    int (*set_device)(int ordinal, char *err, size_t msize);
    int (*set_precision)(const char *name);
    const char *(*precision)(void);
    void (*describe)(char *buf, size_t n);
    void (*synchronize)(void);
    /* cudaMemGetInfo of the current device; -1 on a CUDA error */
    int (*mem_info)(size_t *free_bytes, size_t *total_bytes);
} drq_cuda_plugin;

typedef const drq_cuda_plugin *(*drq_cuda_plugin_fn)(void);
const drq_cuda_plugin *drq_cuda_plugin_v1(void);

/* Loads the plugin once per process (thread-safe) and installs its backend
 * in the CUDA slot; the table, or NULL with the reason in err (the same
 * reason on every later call).  In a CPU-only build: NULL, "this build has
 * no CUDA backend …". */
const drq_cuda_plugin *drq_cuda_plugin_load(drq_err *err);
/* The path the plugin was loaded from (or last tried), "" before a load. */
const char *drq_cuda_plugin_path(void);

#ifdef __cplusplus
}
#endif

#endif
