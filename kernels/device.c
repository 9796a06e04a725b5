/* device.c — see device.h. */
#include "device.h"

#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"
#ifdef DRQ_HAVE_CUDA
#include "cuda/cuda.h"
#endif

int drq_device_parse(const char *s, drq_device_sel *d, drq_err *err) {
    memset(d, 0, sizeof *d);
    if (!strcmp(s, "cpu")) return 0;
    char *end = NULL;
    long n = strncmp(s, "cuda:", 5) || !s[5] ? -1 : strtol(s + 5, &end, 10);
    if (n < 0 || n > 1024 || *end) return drq_errf(err, "device '%s': expected cpu or cuda:N", s);
#ifdef DRQ_HAVE_CUDA
    d->kind = DRQ_CUDA;
    d->ordinal = (int)n;
    return drq_device_bind(d, err);
#else
    return drq_errf(err, "device %s: this build has no CUDA backend (built with CUDA=0, or nvcc and cuDNN were not "
                         "found at build time); use cpu", s);
#endif
}

int drq_device_bind(const drq_device_sel *d, drq_err *err) {
    if (d->kind == DRQ_CPU) return 0;
#ifdef DRQ_HAVE_CUDA
    char msg[256];
    if (drq_cuda_set_device(d->ordinal, msg, sizeof msg)) return drq_errf(err, "device cuda:%d: %s", d->ordinal, msg);
    return 0;
#else
    return drq_errf(err, "this build has no CUDA backend");
#endif
}

void drq_device_sync(const drq_device_sel *d) {
#ifdef DRQ_HAVE_CUDA
    if (d->kind == DRQ_CUDA) drq_cuda_synchronize();
#else
    (void)d;
#endif
}

void drq_device_describe(const drq_device_sel *d, char *buf, size_t n) {
#ifdef DRQ_HAVE_CUDA
    if (d->kind == DRQ_CUDA) {
        drq_cuda_describe(buf, n);
        return;
    }
#endif
    int t = drq_get_threads();
    snprintf(buf, n, "cpu (%s, %d thread%s)", cpu_isa_name(), t, t == 1 ? "" : "s");
}

void drq_device_tag(const drq_device_sel *d, char *buf, size_t n) {
    if (d->kind == DRQ_CPU)
        snprintf(buf, n, "cpu:%s", cpu_isa_name());
    else
        snprintf(buf, n, "cuda:%d", d->ordinal);
}

int drq_device_set_precision(const char *name) {
#ifdef DRQ_HAVE_CUDA
    return drq_cuda_set_precision(name);
#else
    (void)name;
    return -1;
#endif
}

int drq_device_cuda_built(void) {
#ifdef DRQ_HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

int drq_device_gpu_count(void) {
#ifdef DRQ_HAVE_CUDA
    return drq_cuda_device_count();
#else
    return 0;
#endif
}
