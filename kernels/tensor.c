/* tensor.c — allocation helpers for Tensor (CPU memory, 64-byte aligned). */
#include "tensor.h"

#include <stdlib.h>
#include <string.h>

#include "../common/util.h"

static float *alloc_floats(size_t n) {
    void *p = NULL;
    size_t bytes = (n ? n : 1) * sizeof(float);
    bytes = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, bytes) != 0) DIE("out of memory allocating a %zu-byte tensor", bytes);
    return p;
}

Tensor tensor_new(int n, int c, int h, int w) {
    Tensor t = {0};
    t.n = n, t.c = c, t.h = h, t.w = w;
    t.dev = DRQ_CPU;
    t.owns = 1;
    t.cap = tensor_numel(&t);
    t.data = alloc_floats(t.cap);
    memset(t.data, 0, tensor_numel(&t) * sizeof(float));
    return t;
}

Tensor tensor_wrap(float *data, int n, int c, int h, int w) {
    Tensor t = {data, n, c, h, w, DRQ_CPU, 0, 0};
    return t;
}

void tensor_free(Tensor *t) {
    if (t->owns) free(t->data);
    memset(t, 0, sizeof *t);
}

void tensor_ensure(Tensor *t, int n, int c, int h, int w) {
    size_t need = (size_t)n * c * h * w;
    if (!t->data || !t->owns || need > t->cap) {
        if (t->owns) free(t->data);
        t->data = alloc_floats(need);
        t->owns = 1;
        t->cap = need;
        t->dev = DRQ_CPU;
    }
    t->n = n, t->c = c, t->h = h, t->w = w;
}
