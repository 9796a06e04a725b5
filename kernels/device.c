/* device.c — see device.h. */
#include "device.h"

#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"
#include "cuda_plugin.h"

/* The CUDA entry points come from the plugin (kernels/cuda_plugin.h), loaded
 * on the first GPU request; NULL with err filled when it cannot load. */
static const drq_cuda_plugin *cuda(drq_err *err) { return drq_cuda_plugin_load(err); }

int drq_device_parse(const char *s, drq_device_sel *d, drq_err *err) {
    memset(d, 0, sizeof *d);
    if (!strcmp(s, "cpu")) return 0;
    char *end = NULL;
    long n = strncmp(s, "cuda:", 5) || !s[5] ? -1 : strtol(s + 5, &end, 10);
    if (n < 0 || n > 1024 || *end) return drq_errf(err, "device '%s': expected cpu or cuda:N", s);
    drq_err e;
    if (!cuda(&e)) {
        memset(d, 0, sizeof *d);
        return drq_errf(err, "device %s: %s%s", s, e.msg, drq_device_cuda_built() ? "" : "; use cpu");
    }
    d->kind = DRQ_CUDA;
    d->ordinal = (int)n;
    return drq_device_bind(d, err);
}

int drq_device_bind(const drq_device_sel *d, drq_err *err) {
    if (d->kind == DRQ_CPU) return 0;
    drq_err e;
    const drq_cuda_plugin *p = cuda(&e);
    if (!p) return drq_errf(err, "device cuda:%d: %s", d->ordinal, e.msg);
    char msg[256];
    if (p->set_device(d->ordinal, msg, sizeof msg)) return drq_errf(err, "device cuda:%d: %s", d->ordinal, msg);
    return 0;
}

void drq_device_sync(const drq_device_sel *d) {
    const drq_cuda_plugin *p = d->kind == DRQ_CUDA ? cuda(NULL) : NULL;
    if (p) p->synchronize();
}

void drq_device_describe(const drq_device_sel *d, char *buf, size_t n) {
    const drq_cuda_plugin *p = d->kind == DRQ_CUDA ? cuda(NULL) : NULL;
    if (p) {
        p->describe(buf, n);
        return;
    }
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
    const drq_cuda_plugin *p = cuda(NULL);
    return p ? p->set_precision(name) : -1;
}

int drq_device_cuda_built(void) {
#ifdef DRQ_HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

int drq_device_cuda_load(drq_err *err) { return cuda(err) ? 0 : -1; }

int drq_device_gpu_count(void) {
    const drq_cuda_plugin *p = cuda(NULL);
    return p ? p->device_count() : 0;
}
