/* purify.h — diffusion purification P_ω(x) and its exact input-VJP,
 * docs/design.md §Purification.
 *
 *   ddpm     forward-noise x_d to t*, then ancestral reverse steps t*−1 … 0
 *   reverse  the same reverse chain started from x_d itself (no noising)
 *   ddim     forward-noise, then deterministic DDIM steps (η = 0), optional stride;
 *            with no_forward the DDIM chain starts from x_d itself: no draw
 *            at all, so P(x) is the same for every ω (compression only)
 *   none     identity (no purifier; the classifier sees x)
 *
 * ω — every Gaussian draw of one purification — is keyed per image by
 * (omega seed, image index, stream) (common/rng.h), so a batch holds images
 * with independent ω and results do not depend on batch size.
 *
 * Gradients (full mode): forward() stores only the state x entering each
 * reverse step (checkpointing); backward() walks the steps in reverse,
 * recomputing one step's UNet activations, then applying the UNet's VJP.
 * Memory: O(t* × image) for the states plus one UNet's activations.
 */
#ifndef DRQ_PURIFY_H
#define DRQ_PURIFY_H

#include <stdatomic.h>
#include <stdint.h>

#include "kernels/tensor.h"
#include "worker/models/models.h"

#define DIFF_T 1000 /* steps of the linear β schedule */

typedef enum { PURIFY_NONE = 0, PURIFY_DDPM, PURIFY_REVERSE, PURIFY_DDIM } purify_kind;

typedef struct {
    purify_kind kind;
    int t_star;     /* 1 … 1000 */
    int var_small;  /* ddpm: 0 fixedlarge (σ² = β), 1 fixedsmall (posterior variance) */
    int stride;     /* ddim: step stride ≥ 1 */
    int no_forward; /* ddim: skip the forward noising (spec "forward": false) */
    int clamp_x0;   /* clamp the x0 prediction to [-1,1] at every step (zeroes gradients) */
    int clamp_out;  /* clamp the output to [0,1] (default on) */
} purify_config;

typedef struct purifier purifier;

purifier *purifier_new(unet *u, const purify_config *c); /* u may be NULL for PURIFY_NONE */
/* The same over the ADM UNet (guided-diffusion, docs/design.md §Purification):
 * with learn_sigma the reverse step's variance is the model's (log σ² =
 * v·log β + (1 − v)·log β̃, gaussian_diffusion.py's LEARNED_RANGE) and the VJP
 * flows through σ as well as the mean; an input whose size is not the model's
 * image_size is resized to it (bilinear, align_corners=False) and the output
 * back, both resizes part of P and of its gradient (DiffPure's 224 ↔ 256). */
purifier *purifier_new_adm(guided_unet *adm, const purify_config *c);
void purifier_free(purifier *p);

/* y = P_ω(x) for x in [0,1] (n×C×H×W).  omega[i], image[i]: the noise seed
 * and dataset index of image i.  With `keep`, the states needed by
 * purifier_backward are stored.  xmax (optional, n×C×H×W): the forward-noised
 * state mapped back to [0,1] (for ddpm/ddim; x itself for reverse, none and
 * ddim without forward noising). */
void purifier_forward(purifier *p, const Tensor *x, const uint64_t *omega, const int64_t *image, int keep, Tensor *y,
                    Tensor *xmax);
/* gx = (∂P/∂x)ᵀ gy at the last forward (which must have had keep = 1). */
void purifier_backward(purifier *p, const Tensor *gy, Tensor *gx);
/* Bounded stop: while either flag (each may be NULL) is nonzero,
 * purifier_forward and purifier_backward return between two sampler steps
 * without finishing; purifier_stopped() then says so and their outputs (and
 * the kept states) are unusable.  A stop therefore waits for at most one
 * sampler step (one UNet forward, or forward + VJP in backward), not for a
 * whole PGD step of 2·t* of them.  The worker's preempt / cancel flags reach
 * here through the engine (worker/eval/engine.c). */
void purifier_set_stop(purifier *p, const atomic_int *a, const atomic_int *b);
/* 1 when the last forward or backward returned early on a stop flag. */
int purifier_stopped(const purifier *p);
/* Polls the stop flags now (for callers between passes, e.g. between the
 * classifier's forward and backward); 1 (and purifier_stopped() = 1) when set. */
int purifier_poll_stop(purifier *p);
/* UNet evaluations since creation (cost accounting). */
long purifier_unet_evals(const purifier *p);
/* Number of UNet calls of one forward (t*, or the DDIM step count). */
int purifier_steps(const purifier *p);

#endif
