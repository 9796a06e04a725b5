/* purify.c — see purify.h.  Coefficients are computed in double from the
 * float64 schedule and applied in float32. */
#include "purify.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/rng.h"
#include "../common/util.h"


struct purifier {
    purify_config c;
    unet *u;
    double beta[DIFF_T], abar[DIFF_T];
    int nsteps;
    int *step, *prev;  /* step k: UNet index i = step[k]; DDIM's next index prev[k] (−1: ᾱ = 1) */
    Tensor *xs;        /* xs[k]: state entering step k (kept for backward) */
    int kept;          /* forward states valid for backward */
    Tensor x, eps, g, gx0, geps, gu;
    Tensor final;      /* x_d-space output before the [0,1] map, for the clamp mask */
    float *tvec;
    int tcap;
    long evals;
};

static double abar_at(const purifier *p, int i) { return i < 0 ? 1.0 : p->abar[i]; }

purifier *purifier_new(unet *u, const purify_config *c) {
    purifier *p = xcalloc(1, sizeof *p);
    p->c = *c;
    p->u = u;
    if (c->kind == PURIFY_NONE) return p;
    if (!u) DIE("purifier_new: a diffusion purifier needs a UNet");
    if (c->t_star < 1 || c->t_star > DIFF_T) DIE("purifier_new: t* = %d outside 1..%d", c->t_star, DIFF_T);
    double ab = 1.0;
    for (int i = 0; i < DIFF_T; i++) { /* β = linspace(1e-4, 0.02, 1000) in float64 */
        p->beta[i] = 1e-4 + (0.02 - 1e-4) * (double)i / (DIFF_T - 1);
        ab *= 1.0 - p->beta[i];
        p->abar[i] = ab;
    }
    int stride = c->kind == PURIFY_DDIM && c->stride > 1 ? c->stride : 1;
    p->nsteps = (c->t_star + stride - 1) / stride;
    p->step = xmalloc(sizeof(int) * p->nsteps);
    p->prev = xmalloc(sizeof(int) * p->nsteps);
    for (int k = 0; k < p->nsteps; k++) {
        p->step[k] = c->t_star - 1 - k * stride;
        p->prev[k] = k + 1 < p->nsteps ? c->t_star - 1 - (k + 1) * stride : -1;
    }
    p->xs = xcalloc(p->nsteps, sizeof(Tensor));
    return p;
}

void purifier_free(purifier *p) {
    if (!p) return;
    for (int k = 0; k < p->nsteps; k++) tensor_free(&p->xs[k]);
    Tensor *ts[] = {&p->x, &p->eps, &p->g, &p->gx0, &p->geps, &p->gu, &p->final};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_free(ts[i]);
    free(p->xs), free(p->step), free(p->prev), free(p->tvec);
    free(p);
}

long purifier_unet_evals(const purifier *p) { return p->evals; }
int purifier_steps(const purifier *p) { return p->nsteps; }

/* Fills out (n × per floats) with image i's normals for STREAM. */
static void noise(const uint64_t *omega, const int64_t *image, uint64_t stream, int n, size_t per, float *out) {
    for (int i = 0; i < n; i++) drq_normal(drq_key(omega[i], (uint64_t)image[i], stream), per, out + (size_t)i * per);
}

/* ε_θ(x, i) for the whole batch into p->eps. */
static void eps_at(purifier *p, const Tensor *x, int i) {
    if (p->tcap < x->n) {
        free(p->tvec);
        p->tvec = xmalloc(sizeof(float) * x->n);
        p->tcap = x->n;
    }
    for (int j = 0; j < x->n; j++) p->tvec[j] = (float)i;
    tensor_ensure(&p->eps, x->n, x->c, x->h, x->w);
    unet_forward(p->u, x, p->tvec, &p->eps);
    p->evals += x->n;
}

/* σ_i of the ancestral step (i ≥ 1; no noise is added at i = 0). */
static double sigma_at(const purifier *p, int i) {
    double var = p->c.var_small ? p->beta[i] * (1.0 - p->abar[i - 1]) / (1.0 - p->abar[i]) : p->beta[i];
    return sqrt(var);
}

void purify_forward(purifier *p, const Tensor *x, const uint64_t *omega, const int64_t *image, int keep, Tensor *y,
                    Tensor *xmax) {
    size_t N = tensor_numel(x), per = N / x->n;
    if (p->c.kind == PURIFY_NONE) {
        memcpy(y->data, x->data, N * sizeof(float));
        if (xmax) memcpy(xmax->data, x->data, N * sizeof(float));
        p->kept = keep;
        return;
    }
    tensor_ensure(&p->x, x->n, x->c, x->h, x->w);
    float *s = p->x.data;
    for (size_t e = 0; e < N; e++) s[e] = 2.0f * x->data[e] - 1.0f;
    if (p->c.kind != PURIFY_REVERSE) { /* one-shot forward noising to t* */
        float a = (float)sqrt(p->abar[p->c.t_star - 1]), b = (float)sqrt(1.0 - p->abar[p->c.t_star - 1]);
        tensor_ensure(&p->g, x->n, x->c, x->h, x->w); /* scratch for ε */
        noise(omega, image, DRQ_STREAM_FORWARD_EPS, x->n, per, p->g.data);
        for (size_t e = 0; e < N; e++) s[e] = a * s[e] + b * p->g.data[e];
    }
    if (xmax)
        for (size_t e = 0; e < N; e++) xmax->data[e] = 0.5f * (s[e] + 1.0f);
    tensor_ensure(&p->gx0, x->n, x->c, x->h, x->w); /* scratch for z */
    for (int k = 0; k < p->nsteps; k++) {
        int i = p->step[k];
        if (keep) {
            tensor_ensure(&p->xs[k], x->n, x->c, x->h, x->w);
            memcpy(p->xs[k].data, s, N * sizeof(float));
        }
        eps_at(p, &p->x, i);
        const float *ep = p->eps.data;
        float a = (float)sqrt(1.0 / p->abar[i]), b = (float)sqrt(1.0 / p->abar[i] - 1.0);
        if (p->c.kind == PURIFY_DDIM) {
            double abp = abar_at(p, p->prev[k]);
            float ca = (float)sqrt(abp), cb = (float)sqrt(1.0 - abp);
            for (size_t e = 0; e < N; e++) {
                float x0 = a * s[e] - b * ep[e];
                if (p->c.clamp_x0) x0 = fminf(1.0f, fmaxf(-1.0f, x0));
                s[e] = ca * x0 + cb * ep[e];
            }
        } else {
            double abm = abar_at(p, i - 1);
            float c1 = (float)(p->beta[i] * sqrt(abm) / (1.0 - p->abar[i]));
            float c2 = (float)((1.0 - abm) * sqrt(1.0 - p->beta[i]) / (1.0 - p->abar[i]));
            float sg = i > 0 ? (float)sigma_at(p, i) : 0.0f;
            if (i > 0) noise(omega, image, drq_stream_reverse((unsigned)i), x->n, per, p->gx0.data);
            for (size_t e = 0; e < N; e++) {
                float x0 = a * s[e] - b * ep[e];
                if (p->c.clamp_x0) x0 = fminf(1.0f, fmaxf(-1.0f, x0));
                s[e] = c1 * x0 + c2 * s[e] + (i > 0 ? sg * p->gx0.data[e] : 0.0f);
            }
        }
    }
    tensor_ensure(&p->final, x->n, x->c, x->h, x->w);
    memcpy(p->final.data, s, N * sizeof(float));
    for (size_t e = 0; e < N; e++) {
        float v = 0.5f * (s[e] + 1.0f);
        y->data[e] = p->c.clamp_out ? fminf(1.0f, fmaxf(0.0f, v)) : v;
    }
    p->kept = keep;
}

void purify_backward(purifier *p, const Tensor *gy, Tensor *gx) {
    size_t N = tensor_numel(gy);
    if (!p->kept) DIE("purify_backward: the last purify_forward did not keep its states (keep = 0)");
    if (p->c.kind == PURIFY_NONE) {
        memcpy(gx->data, gy->data, N * sizeof(float));
        return;
    }
    int n = gy->n;
    Tensor *g = &p->g;
    tensor_ensure(g, n, gy->c, gy->h, gy->w);
    tensor_ensure(&p->gx0, n, gy->c, gy->h, gy->w);
    tensor_ensure(&p->geps, n, gy->c, gy->h, gy->w);
    tensor_ensure(&p->gu, n, gy->c, gy->h, gy->w);
    for (size_t e = 0; e < N; e++) { /* y = clamp((x + 1)/2) */
        float v = 0.5f * (p->final.data[e] + 1.0f);
        g->data[e] = (!p->c.clamp_out || (v > 0.0f && v < 1.0f)) ? 0.5f * gy->data[e] : 0.0f;
    }
    for (int k = p->nsteps - 1; k >= 0; k--) {
        int i = p->step[k];
        const float *xi = p->xs[k].data;
        eps_at(p, &p->xs[k], i); /* recompute this step's UNet activations */
        const float *ep = p->eps.data;
        float a = (float)sqrt(1.0 / p->abar[i]), b = (float)sqrt(1.0 / p->abar[i] - 1.0);
        float cx0, cx, ceps; /* ∂x_next/∂x0, ∂x_next/∂x (direct), ∂x_next/∂ε (direct) */
        if (p->c.kind == PURIFY_DDIM) {
            double abp = abar_at(p, p->prev[k]);
            cx0 = (float)sqrt(abp), cx = 0.0f, ceps = (float)sqrt(1.0 - abp);
        } else {
            double abm = abar_at(p, i - 1);
            cx0 = (float)(p->beta[i] * sqrt(abm) / (1.0 - p->abar[i]));
            cx = (float)((1.0 - abm) * sqrt(1.0 - p->beta[i]) / (1.0 - p->abar[i]));
            ceps = 0.0f;
        }
        for (size_t e = 0; e < N; e++) {
            float gx0 = cx0 * g->data[e];
            if (p->c.clamp_x0) {
                float x0 = a * xi[e] - b * ep[e];
                if (x0 <= -1.0f || x0 >= 1.0f) gx0 = 0.0f;
            }
            p->geps.data[e] = ceps * g->data[e] - b * gx0;
            p->gx0.data[e] = cx * g->data[e] + a * gx0; /* direct part of ∂/∂x_i */
        }
        unet_backward(p->u, &p->geps, &p->gu);
        for (size_t e = 0; e < N; e++) g->data[e] = p->gx0.data[e] + p->gu.data[e];
    }
    float a = p->c.kind == PURIFY_REVERSE ? 1.0f : (float)sqrt(p->abar[p->c.t_star - 1]);
    for (size_t e = 0; e < N; e++) gx->data[e] = 2.0f * a * g->data[e];
}
