/* purify.c — see purify.h.  Coefficients are computed in double from the
 * float64 schedule and applied in float32. */
#include "worker/eval/purify.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "common/util.h"
#include "kernels/ops.h"


struct purifier {
    purify_config c;
    unet *u;
    guided_unet *adm;  /* the ADM UNet instead of u (purifier_new_adm) */
    int learned;       /* adm outputs [ε, v]: the reverse step's variance is learned */
    int res;           /* adm's image size: inputs of another size are resized to it and back */
    Tensor out, r, gr, gout, z; /* ADM: model output, its v half, their gradients; the step's noise */
    Tensor xr, small;  /* ADM: the input resized to res; the output resized back */
    uint64_t *omega;   /* host: the last forward's ω and image index per image (backward redraws z) */
    int64_t *image;
    double beta[DIFF_T], abar[DIFF_T];
    int nsteps;
    int *step, *prev;  /* step k: UNet index i = step[k]; DDIM's next index prev[k] (−1: ᾱ = 1) */
    Tensor *xs;        /* xs[k]: state entering step k (kept for backward) */
    int kept;          /* forward states valid for backward */
    drq_device dev;    /* the UNet's (CPU for PURIFY_NONE) */
    Tensor x, eps, g, gx0, geps, gu;
    Tensor final;      /* x_d-space output before the [0,1] map, for the clamp mask */
    Tensor xin, yout;  /* inputs copied to / outputs staged on dev */
    float *tvec;       /* host: the step index per image */
    uint64_t *keys;    /* host: noise keys per image */
    int tcap;
    long evals;
    const atomic_int *stop[2]; /* purifier_set_stop */
    int stopped;               /* the last pass returned early */
};

/* Sizes t like x on the purifier's device. */
#define ENSURE(t, like) tensor_ensure_on((t), p->dev, (like)->n, (like)->c, (like)->h, (like)->w)

static double abar_at(const purifier *p, int i) { return i < 0 ? 1.0 : p->abar[i]; }

/* Whether the chain starts from x_d with the one-shot forward noising to t*
 * (ddpm, ddim) or from x_d itself (reverse, ddim with no_forward). */
static int noises_forward(const purify_config *c) {
    return c->kind == PURIFY_DDPM || (c->kind == PURIFY_DDIM && !c->no_forward);
}

/* A purifier over the DDPM UNet u or the ADM UNet adm (one of them; neither for PURIFY_NONE). */
static purifier *purifier_make(unet *u, guided_unet *adm, const purify_config *c) {
    purifier *p = xcalloc(1, sizeof *p);
    p->c = *c;
    p->u = u;
    p->adm = adm;
    p->dev = u ? unet_device(u) : adm ? guided_unet_device(adm) : DRQ_CPU;
    if (adm) p->learned = guided_unet_out_channels(adm) == 6, p->res = guided_unet_resolution(adm);
    if (c->kind == PURIFY_NONE) return p;
    if (!u && !adm) DIE("purifier_new: a diffusion purifier needs a UNet");
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

purifier *purifier_new(unet *u, const purify_config *c) { return purifier_make(u, NULL, c); }
purifier *purifier_new_adm(guided_unet *adm, const purify_config *c) { return purifier_make(NULL, adm, c); }

void purifier_free(purifier *p) {
    if (!p) return;
    for (int k = 0; k < p->nsteps; k++) tensor_free(&p->xs[k]);
    Tensor *ts[] = {&p->x, &p->eps, &p->g, &p->gx0, &p->geps, &p->gu, &p->final, &p->xin, &p->yout,
                    &p->out, &p->r, &p->gr, &p->gout, &p->z, &p->xr, &p->small};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_free(ts[i]);
    free(p->xs), free(p->step), free(p->prev), free(p->tvec), free(p->keys), free(p->omega), free(p->image);
    free(p);
}

void purifier_set_stop(purifier *p, const atomic_int *a, const atomic_int *b) {
    p->stop[0] = a, p->stop[1] = b;
}
int purifier_stopped(const purifier *p) { return p->stopped; }

/* Polled between sampler steps (one relaxed load each: free next to a UNet call). */
static int stop_requested(purifier *p) {
    for (int i = 0; i < 2; i++)
        if (p->stop[i] && atomic_load_explicit(p->stop[i], memory_order_relaxed)) return p->stopped = 1;
    return 0;
}

int purifier_poll_stop(purifier *p) { return stop_requested(p); }

long purifier_unet_evals(const purifier *p) { return p->evals; }
int purifier_steps(const purifier *p) { return p->nsteps; }

/* Fills out (on the purifier's device) with each image's normals for STREAM. */
static void noise(purifier *p, const uint64_t *omega, const int64_t *image, uint64_t stream, Tensor *out) {
    for (int i = 0; i < out->n; i++) p->keys[i] = drq_key(omega[i], (uint64_t)image[i], stream);
    normal_fill(p->keys, out);
}

/* =====================================================================
 * the ADM UNet: output halves, learned variance, resizing
 * ===================================================================== */
/* The ADM UNet at (x, tvec): ε into p->eps and, with a learned variance, v's raw half into p->r. */
static void adm_forward(purifier *p, const Tensor *x) {
    if (!p->learned) {
        guided_unet_forward(p->adm, x, p->tvec, &p->eps);
        return;
    }
    tensor_ensure_on(&p->out, p->dev, x->n, 6, x->h, x->w);
    ENSURE(&p->r, x);
    guided_unet_forward(p->adm, x, p->tvec, &p->out);
    channel_slice_forward(&p->out, 0, &p->eps);
    channel_slice_forward(&p->out, 3, &p->r);
}

/* gx = the denoiser's VJP for the output gradients geps (and p->gr, learned variance). */
static void denoiser_backward(purifier *p, const Tensor *geps, Tensor *gx) {
    if (p->u) {
        unet_backward(p->u, geps, gx);
    } else if (!p->learned) {
        guided_unet_backward(p->adm, geps, gx);
    } else {
        tensor_ensure_on(&p->gout, p->dev, geps->n, 6, geps->h, geps->w);
        concat_forward(geps, &p->gr, &p->gout);
        guided_unet_backward(p->adm, &p->gout, gx);
    }
}

/* log β̃_i, clipped as gaussian_diffusion.py's posterior_log_variance_clipped (β̃_0 := β̃_1). */
static double log_post_var(const purifier *p, int i) {
    if (i == 0) i = 1;
    return log(p->beta[i] * (1.0 - p->abar[i - 1]) / (1.0 - p->abar[i]));
}

/* Learned variance of step i (i ≥ 1): y += σ(r)·z (ops.h learned_sigma). */
static void learned_noise_forward(purifier *p, int i, const Tensor *z, Tensor *y) {
    learned_sigma_forward(&p->r, z, (float)log_post_var(p, i), (float)log(p->beta[i]), y);
}

/* p->gr = its gradient for the step's output gradient g: zero at i = 0 (no noise). */
static void learned_noise_backward(purifier *p, int i, const Tensor *g) {
    ENSURE(&p->gr, g);
    if (i == 0) {
        tensor_axpby(0.0f, g, 0.0f, &p->gr);
        return;
    }
    ENSURE(&p->z, g);
    noise(p, p->omega, p->image, drq_stream_reverse((unsigned)i), &p->z);
    learned_sigma_backward_input(&p->r, &p->z, (float)log_post_var(p, i), (float)log(p->beta[i]), g, &p->gr);
}

/* x at the ADM UNet's image size: x itself, or resized into p->xr (bilinear, ops.h). */
static const Tensor *to_model_size(purifier *p, const Tensor *x) {
    if (!p->adm || (x->h == p->res && x->w == p->res)) return x;
    tensor_ensure_on(&p->xr, p->dev, x->n, x->c, p->res, p->res);
    resize_bilinear_forward(x, &p->xr);
    return &p->xr;
}

/* s (model size) resized to like's size into p->small, or s itself. */
static const Tensor *to_input_size(purifier *p, const Tensor *s, const Tensor *like) {
    if (tensor_same_shape(s, like)) return s;
    ENSURE(&p->small, like);
    resize_bilinear_forward(s, &p->small);
    return &p->small;
}

/* ε_θ(x, i) for the whole batch into p->eps (and v into p->r with a learned variance). */
static void eps_at(purifier *p, const Tensor *x, int i) {
    for (int j = 0; j < x->n; j++) p->tvec[j] = (float)i;
    ENSURE(&p->eps, x);
    if (p->adm) adm_forward(p, x);
    else unet_forward(p->u, x, p->tvec, &p->eps);
    p->evals += x->n;
}

/* σ_i of the ancestral step (i ≥ 1; no noise is added at i = 0). */
static double sigma_at(const purifier *p, int i) {
    double var = p->c.var_small ? p->beta[i] * (1.0 - p->abar[i - 1]) / (1.0 - p->abar[i]) : p->beta[i];
    return sqrt(var);
}

/* The coefficients of reverse step k (see ops.h sampler_step_forward). */
static sampler_coef step_coef(const purifier *p, int k) {
    int i = p->step[k];
    sampler_coef c = {0};
    c.a = (float)sqrt(1.0 / p->abar[i]), c.b = (float)sqrt(1.0 / p->abar[i] - 1.0);
    c.clamp_x0 = p->c.clamp_x0;
    if (p->c.kind == PURIFY_DDIM) {
        double abp = abar_at(p, p->prev[k]);
        c.cx0 = (float)sqrt(abp), c.ceps = (float)sqrt(1.0 - abp);
    } else {
        double abm = abar_at(p, i - 1);
        c.cx0 = (float)(p->beta[i] * sqrt(abm) / (1.0 - p->abar[i]));
        c.cx = (float)((1.0 - abm) * sqrt(1.0 - p->beta[i]) / (1.0 - p->abar[i]));
        c.cz = i > 0 && !p->learned ? (float)sigma_at(p, i) : 0.0f; /* learned: learned_noise_forward */
    }
    return c;
}

/* A tensor on the purifier's device with x's contents: x itself when it
 * already lives there, else a copy in buf. */
static const Tensor *on_dev(purifier *p, const Tensor *x, Tensor *buf) {
    if (x->dev == p->dev) return x;
    tensor_assign(buf, p->dev, x);
    return buf;
}

/* Writes src into dst, which may live on another device. */
static void to_out(const Tensor *src, Tensor *dst) {
    if (dst->data != src->data) tensor_copy(dst, src);
}

/* Sizes the per-batch host arrays. */
static void ensure_batch(purifier *p, int n) {
    if (p->tcap >= n) return;
    free(p->tvec), free(p->keys), free(p->omega), free(p->image);
    p->tvec = xmalloc(sizeof(float) * n);
    p->keys = xmalloc(sizeof(uint64_t) * n);
    p->omega = xmalloc(sizeof(uint64_t) * n);
    p->image = xmalloc(sizeof(int64_t) * n);
    p->tcap = n;
}

void purifier_forward(purifier *p, const Tensor *x_in, const uint64_t *omega, const int64_t *image, int keep, Tensor *y,
                    Tensor *xmax) {
    p->kept = keep;
    p->stopped = 0;
    if (p->c.kind == PURIFY_NONE) { /* identity, on whatever device x and y live */
        to_out(x_in, y);
        if (xmax) to_out(x_in, xmax);
        return;
    }
    const Tensor *xu = on_dev(p, x_in, &p->xin), *x = to_model_size(p, xu);
    ensure_batch(p, x->n);
    memcpy(p->omega, omega, sizeof(uint64_t) * x->n), memcpy(p->image, image, sizeof(int64_t) * x->n);
    Tensor *s = &p->x;
    ENSURE(s, x);
    affine_clamp_forward(x, 2.0f, -1.0f, -INFINITY, INFINITY, s); /* [0,1] → [-1,1] */
    if (noises_forward(&p->c)) { /* one-shot forward noising to t* */
        float a = (float)sqrt(p->abar[p->c.t_star - 1]), b = (float)sqrt(1.0 - p->abar[p->c.t_star - 1]);
        ENSURE(&p->g, x); /* scratch for ε */
        noise(p, omega, image, DRQ_STREAM_FORWARD_EPS, &p->g);
        tensor_axpby(b, &p->g, a, s);
    }
    if (xmax) {
        ENSURE(&p->gx0, xu);
        affine_clamp_forward(to_input_size(p, s, xu), 0.5f, 0.5f, -INFINITY, INFINITY, &p->gx0);
        to_out(&p->gx0, xmax);
    }
    ENSURE(&p->gx0, x); /* scratch for z */
    for (int k = 0; k < p->nsteps; k++) {
        int i = p->step[k];
        if (stop_requested(p)) {
            p->kept = 0; /* the states are incomplete */
            return;
        }
        if (keep) {
            tensor_assign(&p->xs[k], p->dev, s);
        }
        eps_at(p, s, i);
        sampler_coef c = step_coef(p, k);
        int noisy = p->c.kind != PURIFY_DDIM && i > 0;
        if (noisy) noise(p, omega, image, drq_stream_reverse((unsigned)i), &p->gx0);
        sampler_step_forward(s, &p->eps, noisy ? &p->gx0 : NULL, &c, s);
        if (p->learned && noisy) learned_noise_forward(p, i, &p->gx0, s);
    }
    tensor_assign(&p->final, p->dev, to_input_size(p, s, xu));
    ENSURE(&p->yout, xu);
    affine_clamp_forward(&p->final, 0.5f, 0.5f, p->c.clamp_out ? 0.0f : -INFINITY, p->c.clamp_out ? 1.0f : INFINITY,
                         &p->yout);
    to_out(&p->yout, y);
}

void purifier_backward(purifier *p, const Tensor *gy_in, Tensor *gx) {
    if (!p->kept) DIE("purifier_backward: the last purifier_forward did not keep its states (keep = 0)");
    p->stopped = 0;
    if (p->c.kind == PURIFY_NONE) {
        to_out(gy_in, gx);
        return;
    }
    const Tensor *gy = on_dev(p, gy_in, &p->xin), *xm = &p->xs[0]; /* xm: the model-size shape */
    int resized = !tensor_same_shape(gy, xm);
    Tensor *g = &p->g;
    ENSURE(g, xm), ENSURE(&p->gx0, xm), ENSURE(&p->geps, xm), ENSURE(&p->gu, xm);
    if (resized) ENSURE(&p->small, gy);
    /* y = clamp((x + 1)/2) [of x resized back to the input size] */
    affine_clamp_backward_input(&p->final, gy, 0.5f, 0.5f, p->c.clamp_out ? 0.0f : -INFINITY,
                                p->c.clamp_out ? 1.0f : INFINITY, resized ? &p->small : g);
    if (resized) resize_bilinear_backward_input(&p->small, g);
    for (int k = p->nsteps - 1; k >= 0; k--) {
        if (stop_requested(p)) return; /* the states stay kept: a later backward may still run */
        eps_at(p, &p->xs[k], p->step[k]); /* recompute this step's UNet activations */
        sampler_coef c = step_coef(p, k);
        sampler_step_backward_input(&p->xs[k], &p->eps, g, &c, &p->gx0, &p->geps);
        if (p->learned) learned_noise_backward(p, p->c.kind != PURIFY_DDIM ? p->step[k] : 0, g); /* into p->gr */
        denoiser_backward(p, &p->geps, &p->gu);
        add_forward(&p->gx0, &p->gu, g);
    }
    float a = noises_forward(&p->c) ? (float)sqrt(p->abar[p->c.t_star - 1]) : 1.0f;
    ENSURE(&p->yout, xm);
    affine_clamp_forward(g, 2.0f * a, 0.0f, -INFINITY, INFINITY, &p->yout);
    if (resized) resize_bilinear_backward_input(&p->yout, &p->small); /* the input's resize */
    to_out(resized ? &p->small : &p->yout, gx);
}
