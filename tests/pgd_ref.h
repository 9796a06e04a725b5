/* pgd_ref.h — the PGD reference cases of tests/fixtures/pgd_ref.safetensors
 * (made by tests/ref/gen_pgd_fixture.py) and the trajectory comparison,
 * shared by test_pgd_ref.c (CPU) and cuda_test.c (GPU).  Include after
 * check.h.
 *
 * Cases: L∞ PGD, eps 0.1, step 0.02, random start, fixed ω = seed 3, 3
 * steps, through DDIM, DDPM and DDIM without forward noising, on unet_small / wrn_small, 2 images of 1×16×16.  Float32
 * gradients may flip the sign of near-zero components, so iterates are
 * compared as a whole: within 2% of the perturbation's L2 norm, and at most
 * 10 of 512 pixels off by more than 1e-4.
 */
#ifndef DRQ_TEST_PGD_REF_H
#define DRQ_TEST_PGD_REF_H

#include <math.h>
#include <stdio.h>

#include "worker/eval/attack.h"

typedef struct {
    const char *name; /* fixture tensors xadv_<name>_<step> */
    purify_config pc;
} pgd_ref_case;

#define PGD_REF_NCASES 3
static const pgd_ref_case PGD_REF_CASES[PGD_REF_NCASES] = {
    {"ddim", {.kind = PURIFY_DDIM, .t_star = 4, .stride = 2, .clamp_out = 1}},
    {"ddpm", {.kind = PURIFY_DDPM, .t_star = 3, .clamp_out = 1}},
    {"ddimdet", {.kind = PURIFY_DDIM, .t_star = 4, .stride = 2, .no_forward = 1, .clamp_out = 1}}, /* "forward": false */
};

static inline attack_config pgd_ref_attack(void) {
    attack_config ac = {.eps = 0.1, .steps = 3, .stepsize = 0.02, .random_start = 1, .seed = 3};
    return ac;
}

/* Checks iterate `got` against `ref` (512 pixels) relative to x's perturbation. */
static void pgd_ref_compare(const char *what, const float *got, const float *ref, const float *x) {
    double num = 0, den = 0;
    int off = 0;
    for (int e = 0; e < 512; e++) {
        double d = got[e] - ref[e], dr = ref[e] - x[e];
        num += d * d, den += dr * dr;
        off += fabs(d) > 1e-4;
    }
    char k[400];
    snprintf(k, sizeof k, "%s: ‖x_got − x_ref‖ / ‖x_ref − x‖", what);
    CHECK_LE(sqrt(num / den), 0.02, k);
    snprintf(k, sizeof k, "%s: pixels off by > 1e-4 (of 512)", what);
    CHECK_LE(off, 10, k);
}

#endif
