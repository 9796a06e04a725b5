/* fd.h — the finite-difference check of a whole model's input-VJP, shared
 * by tests/test_models.c and tests/test_purify.c.
 *
 * For `dirs` random unit directions v it compares ⟨gx, v⟩ with the central
 * difference of the scalar loss along v, Richardson-extrapolated from steps
 * h and h/2 (D = (4 D(h/2) − D(h)) / 3 cancels the h² term).  The error is
 * relative to |analytic| + |fd| + 1e-2·‖gx‖, so a direction nearly
 * orthogonal to gx does not demand impossible float32 precision.
 * Include after check.h.
 */
#ifndef DRQ_TEST_FD_H
#define DRQ_TEST_FD_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "../kernels/tensor.h"

typedef double (*fd_loss)(void *ctx, const Tensor *x);

static void fd_check_directions(const char *name, fd_loss loss, void *ctx, const Tensor *x, const Tensor *gx,
                                float (*rnd)(void), int dirs, float step, double tol) {
    size_t nx = tensor_numel(x);
    Tensor xp = tensor_new(x->n, x->c, x->h, x->w);
    double gnorm = 0;
    for (size_t i = 0; i < nx; i++) gnorm += (double)gx->data[i] * gx->data[i];
    gnorm = sqrt(gnorm);
    float *v = malloc(nx * sizeof(float));
    for (int d = 0; d < dirs; d++) {
        double an = 0, vn = 0, D[2];
        for (size_t i = 0; i < nx; i++) v[i] = rnd(), vn += (double)v[i] * v[i];
        for (size_t i = 0; i < nx; i++) v[i] /= (float)sqrt(vn), an += (double)v[i] * gx->data[i];
        for (int r = 0; r < 2; r++) {
            float hh = r ? step / 2 : step;
            for (size_t i = 0; i < nx; i++) xp.data[i] = x->data[i] + hh * v[i];
            double lp = loss(ctx, &xp);
            for (size_t i = 0; i < nx; i++) xp.data[i] = x->data[i] - hh * v[i];
            double lm = loss(ctx, &xp);
            D[r] = (lp - lm) / (2 * hh);
        }
        double fd = (4 * D[1] - D[0]) / 3;
        char what[200];
        snprintf(what, sizeof what, "%s: VJP vs FD dir %d (analytic %.6g, fd %.6g, |gx| %.3g)", name, d, an, fd,
                 gnorm);
        CHECK_LE(fabs(an - fd) / (fabs(fd) + fabs(an) + 1e-2 * gnorm), tol, what);
    }
    free(v);
    tensor_free(&xp);
}

#endif
