/* device.h — naming and selecting the device models run on: "cpu" or
 * "cuda:N".  CUDA's current device is per host thread, so every thread that
 * runs ops on a GPU calls drq_device_bind first. */
#ifndef DRQ_DEVICE_H
#define DRQ_DEVICE_H

#include "../common/util.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    drq_device kind;
    int ordinal; /* GPU index for DRQ_CUDA */
} drq_device_sel;

/* Parses "cpu" / "cuda:N" and checks the device exists in this build and
 * machine; -1 with a message otherwise. */
int drq_device_parse(const char *s, drq_device_sel *d, drq_err *err);
/* Makes d current for the calling thread (no-op for the CPU). */
int drq_device_bind(const drq_device_sel *d, drq_err *err);
/* Waits for the device's queued work (timing). */
void drq_device_sync(const drq_device_sel *d);
/* One line describing d ("cpu (N threads)" / the GPU's name and memory). */
void drq_device_describe(const drq_device_sel *d, char *buf, size_t n);
/* What a result row records as its device: "cpu:ISA" (oneDNN's effective
 * instruction set, e.g. cpu:avx2, cpu:avx512_core) or "cuda:N".  Rows are
 * bit-identical only between devices with the same tag (docs/seeds.md). */
void drq_device_tag(const drq_device_sel *d, char *buf, size_t n);
/* 1 when this build has the CUDA backend (nvcc and cuDNN were found at build
 * time: the plugin libdrq-cuda.so was built), 0 in a CPU-only build. */
int drq_device_cuda_built(void);
/* Loads the CUDA plugin (kernels/cuda_plugin.h) if not yet loaded: 0, or -1
 * with the reason (no plugin, a missing CUDA library, a CPU-only build). */
int drq_device_cuda_load(drq_err *err);
/* GPUs visible to this process: 0 without a driver or device, when the CUDA
 * plugin cannot load, and always 0 in a CPU-only build. */
int drq_device_gpu_count(void);
/* GPU convolution precision, "tf32" or "fp32" (-1 on another name or no CUDA
 * plugin). */
int drq_device_set_precision(const char *name);

#ifdef __cplusplus
}
#endif

#endif
