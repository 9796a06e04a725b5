/* bnorm.h — the classifiers' (resnet50.c, wrn.c) inference BatchNorm, folded
 * at load into a per-channel scale and shift (eps 1e-5), and their bias-free
 * convolutions, docs/design.md §Models.
 */
#ifndef DRQ_BNORM_H
#define DRQ_BNORM_H

#include "kernels/ops.h"
#include "worker/models/params.h"

typedef struct {
    float *hscale, *hshift;     /* folded on the host */
    const float *scale, *shift; /* the same on the model's device (params owns device copies) */
    int c;
} bnorm;

/* Binds PREFIX.{weight, bias, running_mean, running_var} and folds them
 * (dummies when the weights failed to bind: nothing to fold). */
void bn_bind(bnorm *b, params *p, int c, const char *prefix);
void bn_free(bnorm *b);

/* A bias-free k×k convolution whose weight is the tensor NAME. */
Conv2d conv_nobias(params *p, int cin, int cout, int k, int stride, int pad, const char *name);

#endif
