/* attack.h — PGD with foolbox semantics against "classifier ∘ purifier",
 * docs/design.md §Attacks, on a batch of images.  Knows tensors, models and seeds; nothing
 * of jobs or specs (worker/eval/engine.c maps a spec onto this).
 *
 * Loss: cross-entropy of the classifier's logits on P_ω(x), per image.
 * Gradient: full (exact VJP through the sampler and the UNet) or bpda
 * (∂L/∂x ≈ ∂L/∂P(x)).  ω per PGD step by randomness mode:
 *   fixed     ω_s at every step              evaluation ω_s
 *   fresh     a new ω per step                evaluation: M fresh draws, majority vote
 *   eot       mean gradient of K new ω's      evaluation: as fresh
 *   transfer  ω_s                             evaluation ω_{s'}  (seed = s, transfer_seed = s')
 * An ω is a noise seed; image i's noise is keyed by (ω, image index), see
 * docs/seeds.md for the derived seeds of fresh/EOT/vote draws.
 */
#ifndef DRQ_ATTACK_H
#define DRQ_ATTACK_H

#include <stdint.h>

#include "worker/models/classifier.h"
#include "worker/models/models.h"
#include "worker/eval/purify.h"

typedef enum { OMEGA_FIXED, OMEGA_FRESH, OMEGA_EOT, OMEGA_TRANSFER } omega_mode;

typedef struct {
    int l2;              /* 0: L∞, 1: L2 */
    double eps;
    int steps;
    double stepsize;     /* absolute (rel_stepsize · eps resolved by the caller) */
    int random_start;
    omega_mode mode;
    int eot_k;           /* draws per step in eot mode */
    int votes;           /* final-evaluation draws in fresh/eot mode */
    uint64_t seed;          /* s: the attack's ω (random start, gradients, fixed-ω metrics) */
    uint64_t transfer_seed; /* s': evaluation ω of transfer mode */
    int bpda;            /* gradient mode */
} attack_config;

typedef struct {
    classifier *clf;
    purifier *pur;
    int classes;
    void *scratch; /* per-pass buffers on the models' device, reused across steps (NULL initially) */
} attack_models;

/* Frees m->scratch (the models themselves belong to the caller). */
void attack_models_release(attack_models *m);

/* Per-batch state of a running attack, enough to resume it exactly. */
typedef struct {
    int n;
    int step;           /* PGD steps done */
    Tensor xadv;        /* current iterate */
    int *success_step;  /* first step misclassified, −1 none yet */
} attack_state;

/* Initialises st for x (random start or x itself). */
void attack_begin(const attack_config *a, const Tensor *x, const int64_t *image, attack_state *st);
/* Performs one PGD step (gradient, step, projection, clipping).  Returns 0,
 * or 1 when the purifier's stop flags (purifier_set_stop) ended a pass
 * mid-way: then the step is abandoned and st is left as it was, at the last
 * completed PGD step, so a checkpoint of st resumes exactly. */
int attack_step(const attack_config *a, attack_models *m, const Tensor *x, const int *label, const int64_t *image,
                 attack_state *st);
void attack_state_free(attack_state *st);

/* Predictions of classifier ∘ P_ω on x under the evaluation ω of the mode
 * (majority vote over `votes` draws for fresh/eot; ties go to the lowest
 * class).  pred: n ints.  Returns 1 (pred unusable) when stopped mid-way. */
int attack_evaluate(const attack_config *a, attack_models *m, const Tensor *x, const int64_t *image, int *pred);

/* The loss gradient at x under one ω (the same seed for every image):
 * g = ∂ CE(clf(P_ω(x)), label)/∂x; pred gets the predictions of that pass.
 * Returns 1 (g and pred unusable) when the purifier was stopped mid-way. */
int attack_gradient(const attack_config *a, attack_models *m, const Tensor *x, const int *label,
                     const int64_t *image, uint64_t omega, Tensor *g, int *pred);

#endif
