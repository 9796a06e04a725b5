/* params.h — binding model parameters to safetensors tensors by their
 * original PyTorch state_dict names.
 *
 * A model asks for each parameter by name and expected shape.  With a file,
 * the tensor must exist with exactly that shape; afterwards params_finish()
 * reports any tensor the model did not use.  Without a file (benchmarks,
 * self-tests) parameters are drawn from a seeded generator with PyTorch-like
 * fan-in scaling.  The first error is kept and later requests return a
 * harmless dummy, so a loader can bind everything and check once.
 */
#ifndef DRQ_PARAMS_H
#define DRQ_PARAMS_H

#include "common/safetensors.h"
#include "common/util.h"
#include "kernels/tensor.h"

typedef enum { P_WEIGHT, P_BIAS, P_ONE, P_ZERO, P_VAR } param_init;

typedef struct {
    st_file *file;     /* NULL: random parameters */
    uint64_t seed;     /* random mode */
    float **owned;     /* random-mode allocations */
    int n_owned;
    size_t count;      /* parameters bound (elements) */
    int failed;
    drq_err *err;
    const char *what;  /* "ddpm-unet" / "wrn", for messages */
    drq_device dev;    /* where params_get's pointers live (default CPU) */
    float **dev_owned; /* device copies (dev != CPU) */
    int n_dev;
} params;

void params_init(params *p, st_file *file, uint64_t seed, const char *what, drq_err *err);
/* Returns the tensor NAME of the given shape (ndim ≤ 4), marking it used;
 * the pointer is on p->dev (uploaded once, freed by params_free). */
const float *params_get(params *p, param_init init, int ndim, const int *shape, const char *fmt, ...)
    DRQ_PRINTF(5, 6);
/* The same, always in host memory (for values folded at load time). */
const float *params_get_host(params *p, param_init init, int ndim, const int *shape, const char *fmt, ...)
    DRQ_PRINTF(5, 6);
/* A copy of n host floats on p->dev (host itself on the CPU; freed by
 * params_free otherwise). */
const float *params_on_device(params *p, const float *host, size_t n);
/* 0 when every tensor of the file was used (names ending in
 * "num_batches_tracked" are ignored) and no error occurred; -1 otherwise. */
int params_finish(params *p);
void params_free(params *p); /* frees random-mode parameters and device copies */

#define SHAPE1(a) 1, (const int[]){a}
#define SHAPE2(a, b) 2, (const int[]){a, b}
#define SHAPE4(a, b, c, d) 4, (const int[]){a, b, c, d}

#endif
