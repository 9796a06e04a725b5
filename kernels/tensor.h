/* tensor.h — the one tensor type of drq: float32, NCHW, contiguous.
 *
 * A tensor carries a device tag; every op dispatches on it (kernels/ops.c).
 * 2-D data (a batch of vectors) uses n × c with h = w = 1.  Device memory is
 * allocated through the backend of the device (cudaMalloc for DRQ_CUDA);
 * tensor_copy moves data between any two devices.
 */
#ifndef DRQ_TENSOR_H
#define DRQ_TENSOR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { DRQ_CPU = 0, DRQ_CUDA = 1, DRQ_NUM_DEVICES } drq_device;

typedef struct {
    float *data;
    int n, c, h, w;
    drq_device dev;
    int owns;   /* 1 when tensor_free must release data */
    size_t cap; /* floats allocated (owned tensors) */
} Tensor;

Tensor tensor_new(int n, int c, int h, int w);                        /* zero-filled, CPU */
Tensor tensor_new_on(drq_device dev, int n, int c, int h, int w);     /* zero-filled */
Tensor tensor_wrap(float *data, int n, int c, int h, int w);          /* borrowed, CPU */
void tensor_free(Tensor *t);
/* (Re)shapes t to n×c×h×w, reallocating only when it must grow; a tensor
 * that has no data yet is allocated on the CPU (tensor_ensure) or on dev
 * (tensor_ensure_on, which also moves a tensor that lives elsewhere).
 * Contents are undefined after a reallocation. */
void tensor_ensure(Tensor *t, int n, int c, int h, int w);
void tensor_ensure_on(Tensor *t, drq_device dev, int n, int c, int h, int w);
/* dst ← src (same number of elements, any pair of devices). */
void tensor_copy(Tensor *dst, const Tensor *src);
/* dst ← src on dev: dst takes src's shape (tensor_ensure_on) and contents. */
void tensor_assign(Tensor *dst, drq_device dev, const Tensor *src);
/* A new tensor on dev holding src's shape and contents. */
Tensor tensor_clone_on(drq_device dev, const Tensor *src);

/* Raw memory on a device (model parameters): n floats, zero-filled. */
float *drq_dev_alloc(drq_device dev, size_t n);
void drq_dev_free(drq_device dev, float *p);
/* bytes from src (on sdev) to dst (on ddev). */
void drq_dev_copy(void *dst, drq_device ddev, const void *src, drq_device sdev, size_t bytes);
const char *drq_device_name(drq_device dev);

static inline size_t tensor_numel(const Tensor *t) {
    return (size_t)t->n * (size_t)t->c * (size_t)t->h * (size_t)t->w;
}
static inline int tensor_same_shape(const Tensor *a, const Tensor *b) {
    return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w;
}

#ifdef __cplusplus
}
#endif

#endif
