/* tensor.c — allocation and copies for Tensor.  CPU memory is 64-byte
 * aligned; other devices allocate through their backend (kernels/ops.c
 * drq_backend_for), so this file knows no device API. */
#include "tensor.h"

#include <stdlib.h>
#include <string.h>

#include "../common/util.h"
#include "ops.h"

static const drq_backend *need_backend(drq_device dev) {
    const drq_backend *b = drq_backend_for(dev);
    if (!b || !b->alloc) DIE("no backend for device %s in this build (hint: build with CUDA=1 where nvcc and cuDNN are installed)", drq_device_name(dev));
    return b;
}

float *drq_dev_alloc(drq_device dev, size_t n) {
    if (dev == DRQ_CPU) {
        void *p = NULL;
        size_t bytes = (n ? n : 1) * sizeof(float);
        bytes = (bytes + 63) & ~(size_t)63;
        if (posix_memalign(&p, 64, bytes) != 0) DIE("out of memory allocating a %zu-byte tensor", bytes);
        memset(p, 0, bytes);
        return p;
    }
    return need_backend(dev)->alloc(n);
}

void drq_dev_free(drq_device dev, float *p) {
    if (!p) return;
    if (dev == DRQ_CPU) free(p);
    else need_backend(dev)->release(p);
}

void drq_dev_copy(void *dst, drq_device ddev, const void *src, drq_device sdev, size_t bytes) {
    if (!bytes || dst == src) return;
    if (ddev == DRQ_CPU && sdev == DRQ_CPU) memcpy(dst, src, bytes);
    else need_backend(ddev != DRQ_CPU ? ddev : sdev)->copy(dst, src, bytes);
}

const char *drq_device_name(drq_device dev) { return dev == DRQ_CPU ? "cpu" : dev == DRQ_CUDA ? "cuda" : "?"; }

Tensor tensor_new_on(drq_device dev, int n, int c, int h, int w) {
    Tensor t = {0};
    t.n = n, t.c = c, t.h = h, t.w = w;
    t.dev = dev;
    t.owns = 1;
    t.cap = tensor_numel(&t);
    t.data = drq_dev_alloc(dev, t.cap);
    return t;
}

Tensor tensor_new(int n, int c, int h, int w) { return tensor_new_on(DRQ_CPU, n, c, h, w); }

Tensor tensor_wrap(float *data, int n, int c, int h, int w) {
    Tensor t = {data, n, c, h, w, DRQ_CPU, 0, 0};
    return t;
}

void tensor_free(Tensor *t) {
    if (t->owns) drq_dev_free(t->dev, t->data);
    memset(t, 0, sizeof *t);
}

void tensor_ensure_on(Tensor *t, drq_device dev, int n, int c, int h, int w) {
    size_t need = (size_t)n * c * h * w;
    if (!t->data || !t->owns || need > t->cap || t->dev != dev) {
        if (t->owns) drq_dev_free(t->dev, t->data);
        t->data = drq_dev_alloc(dev, need);
        t->owns = 1;
        t->cap = need;
        t->dev = dev;
    }
    t->n = n, t->c = c, t->h = h, t->w = w;
}

void tensor_ensure(Tensor *t, int n, int c, int h, int w) {
    tensor_ensure_on(t, t->data ? t->dev : DRQ_CPU, n, c, h, w);
}

void tensor_copy(Tensor *dst, const Tensor *src) {
    if (tensor_numel(dst) != tensor_numel(src))
        DIE("tensor_copy: %dx%dx%dx%d into %dx%dx%dx%d", src->n, src->c, src->h, src->w, dst->n, dst->c, dst->h,
            dst->w);
    drq_dev_copy(dst->data, dst->dev, src->data, src->dev, tensor_numel(src) * sizeof(float));
}

void tensor_assign(Tensor *dst, drq_device dev, const Tensor *src) {
    tensor_ensure_on(dst, dev, src->n, src->c, src->h, src->w);
    tensor_copy(dst, src);
}

Tensor tensor_clone_on(drq_device dev, const Tensor *src) {
    Tensor t = {0};
    tensor_assign(&t, dev, src);
    return t;
}
