/* tensor.h — the one tensor type of drq: float32, NCHW, contiguous.
 *
 * A tensor carries a device tag; every op dispatches on it (kernels/ops.c).
 * 2-D data (a batch of vectors) uses n × c with h = w = 1.
 */
#ifndef DRQ_TENSOR_H
#define DRQ_TENSOR_H

#include <stddef.h>

typedef enum { DRQ_CPU = 0, DRQ_CUDA = 1, DRQ_NUM_DEVICES } drq_device;

typedef struct {
    float *data;
    int n, c, h, w;
    drq_device dev;
    int owns;   /* 1 when tensor_free must release data */
    size_t cap; /* floats allocated (owned tensors) */
} Tensor;

Tensor tensor_new(int n, int c, int h, int w);          /* zero-filled, CPU */
Tensor tensor_wrap(float *data, int n, int c, int h, int w); /* borrowed, CPU */
void tensor_free(Tensor *t);
/* (Re)shapes t to n×c×h×w, reallocating only when it must grow. */
void tensor_ensure(Tensor *t, int n, int c, int h, int w);
static inline size_t tensor_numel(const Tensor *t) {
    return (size_t)t->n * (size_t)t->c * (size_t)t->h * (size_t)t->w;
}
static inline int tensor_same_shape(const Tensor *a, const Tensor *b) {
    return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w;
}

#endif
