/* params.h — binding model parameters to safetensors tensors by their
 * original PyTorch state_dict names.
 *
 * A model asks for each parameter by name and expected shape.  With a file,
 * the tensor must exist with exactly that shape; afterwards params_finish()
 * reports any tensor the model did not use.  Without a file (benchmarks,
 * self-tests) parameters are drawn from a seeded generator with PyTorch-like
 * fan-in scaling.  The first error is kept and later requests return a
 * harmless dummy, so a loader can bind everything and check once.
 *
 * A needed tensor must hold floating-point values (F32, F16, BF16, F64 —
 * rounded to nearest float32 —, F8_E4M3, F8_E5M2, F8_E8M0); one stored as
 * integers or booleans, in an undecoded dtype (F4, F6_*) or with an F64 value
 * beyond float32's range is refused, naming it and its dtype.  Tensors the
 * model does not need may have any dtype.
 *
 * The DDPM UNet ("ddpm-unet") also binds a file with diffusers key names
 * (worker/models/diffusers_names.h): detected from the names, or forced with
 * format = PARAMS_DIFFUSERS (config "format": "diffusers"); format =
 * PARAMS_ORIGINAL turns the detection off.
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
    int format;          /* PARAMS_AUTO (default), PARAMS_ORIGINAL, PARAMS_DIFFUSERS; set before the first get */
    int names_ready;     /* alias table built (first get) */
    int diffusers;       /* the file has diffusers names */
    int n_alias;
    char **alias;        /* per file tensor: its original name (diffusers files), or NULL */
    unsigned char *linear_attn; /* per file tensor: an attention Linear [C,C] standing for a 1×1 conv */
    const char *const *prefixes; /* NULL-ended key prefixes tried when a name is absent (resnet50: RobustBench's
                                    "module." / "model." wrappers); set before the first get */
    int bf16;            /* 1: every P_WEIGHT tensor (conv / linear weights) is rounded to bfloat16 once, here at
                            load (kernels/bf16.h; a file's tensor is copied first, the file is not changed); the
                            model sets the ops' bf16 flags (kernels/ops.h "bf16 operands"); set before the first get */
} params;

enum { PARAMS_AUTO = 0, PARAMS_ORIGINAL = 1, PARAMS_DIFFUSERS = 2 };

void params_init(params *p, st_file *file, uint64_t seed, const char *what, drq_err *err);
/* Returns the tensor NAME of the given shape (ndim ≤ 4), marking it used;
 * the pointer is on p->dev (uploaded once, freed by params_free). */
const float *params_get(params *p, param_init init, int ndim, const int *shape, const char *fmt, ...)
    DRQ_PRINTF(5, 6);
/* The same, always in host memory (for values folded at load time). */
const float *params_get_host(params *p, param_init init, int ndim, const int *shape, const char *fmt, ...)
    DRQ_PRINTF(5, 6);
/* 1 when the file holds NAME (or a prefixed NAME, p->prefixes); 0 without a file. */
int params_has(params *p, const char *name);
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
