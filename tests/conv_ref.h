/* conv_ref.h — the plain reference convolution of the tests: forward and
 * backward-data (the input VJP) of a Conv2d (any stride, asymmetric zero
 * padding, optional bias) on n × cin × h × w host arrays, accumulated in
 * double.  Shared by test_conv.c (oneDNN) and test_cuda_host.c (cuDNN host
 * code). */
#ifndef DRQ_TEST_CONV_REF_H
#define DRQ_TEST_CONV_REF_H

#include <stdlib.h>

#include "../kernels/ops.h"

/* y[i, co, oy, ox] = b[co] + Σ w[co, ci, ky, kx] · x[i, ci, oy·s − pt + ky, ox·s − pl + kx] */
static void conv_ref_forward(const Conv2d *c, int n, int h, int wd, const float *x, float *y) {
    int oh, ow;
    conv2d_out_hw(c, h, wd, &oh, &ow);
    for (int i = 0; i < n; i++)
        for (int co = 0; co < c->cout; co++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    double acc = c->b ? c->b[co] : 0.0;
                    for (int ci = 0; ci < c->cin; ci++)
                        for (int ky = 0; ky < c->kh; ky++)
                            for (int kx = 0; kx < c->kw; kx++) {
                                int iy = oy * c->stride - c->pad_t + ky, ix = ox * c->stride - c->pad_l + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                                acc += (double)c->w[((co * c->cin + ci) * c->kh + ky) * c->kw + kx] *
                                       x[(((size_t)i * c->cin + ci) * h + iy) * wd + ix];
                            }
                    y[(((size_t)i * c->cout + co) * oh + oy) * ow + ox] = (float)acc;
                }
}

/* Scatter form (the transpose of the loop above). */
static void conv_ref_backward(const Conv2d *c, int n, int h, int wd, const float *gy, float *gx) {
    int oh, ow;
    conv2d_out_hw(c, h, wd, &oh, &ow);
    size_t nx = (size_t)n * c->cin * h * wd;
    double *acc = calloc(nx, sizeof(double));
    for (int i = 0; i < n; i++)
        for (int co = 0; co < c->cout; co++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    double g = gy[(((size_t)i * c->cout + co) * oh + oy) * ow + ox];
                    for (int ci = 0; ci < c->cin; ci++)
                        for (int ky = 0; ky < c->kh; ky++)
                            for (int kx = 0; kx < c->kw; kx++) {
                                int iy = oy * c->stride - c->pad_t + ky, ix = ox * c->stride - c->pad_l + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                                acc[(((size_t)i * c->cin + ci) * h + iy) * wd + ix] +=
                                    g * c->w[((co * c->cin + ci) * c->kh + ky) * c->kw + kx];
                            }
                }
    for (size_t k = 0; k < nx; k++) gx[k] = (float)acc[k];
    free(acc);
}

#endif
