/* bnorm.c — the classifiers' folded inference BatchNorm and bias-free convs (bnorm.h). */
#include <stdlib.h>

#include "worker/models/bnorm.h"

#define BN_EPS 1e-5f

void bn_bind(bnorm *b, params *p, int c, const char *prefix) {
    const float *w = params_get_host(p, P_ONE, SHAPE1(c), "%s.weight", prefix);
    const float *bb = params_get_host(p, P_ZERO, SHAPE1(c), "%s.bias", prefix);
    const float *mean = params_get_host(p, P_ZERO, SHAPE1(c), "%s.running_mean", prefix);
    const float *var = params_get_host(p, P_VAR, SHAPE1(c), "%s.running_var", prefix);
    b->c = c;
    b->hscale = xcalloc(c, sizeof(float));
    b->hshift = xcalloc(c, sizeof(float));
    b->scale = b->hscale, b->shift = b->hshift;
    if (p->failed) return; /* dummies: nothing to fold */
    batch_norm_fold(c, w, bb, mean, var, BN_EPS, b->hscale, b->hshift);
    b->scale = params_on_device(p, b->hscale, c);
    b->shift = params_on_device(p, b->hshift, c);
}

void bn_free(bnorm *b) { free(b->hscale), free(b->hshift); }

Conv2d conv_nobias(params *p, int cin, int cout, int k, int stride, int pad, const char *name) {
    const float *w = params_get(p, P_WEIGHT, SHAPE4(cout, cin, k, k), "%s", name);
    return conv2d_make(cin, cout, k, stride, pad, w, NULL);
}
