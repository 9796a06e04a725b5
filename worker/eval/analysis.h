/* analysis.h — the statistics of the analysis job kinds (docs/design.md
 * §Analyses, ../shared/DESIGN.md §8) as pure functions of arrays of
 * purified images: no models, no seeds, so they are tested on synthetic data
 * with known answers (tests/test_analysis.c).  All sums in double.
 *
 * Notation: x the clean image (d values), δ_j (j < nd) the perturbations,
 * ω_k (k < nw) the randomness configurations, P_jk = P_{ω_k}(x + δ_j);
 * P̄_·k = mean_j P_jk, P̄_j· = mean_k P_jk, P̄ = mean_jk P_jk (population means).
 */
#ifndef DRQ_ANALYSIS_H
#define DRQ_ANALYSIS_H

#include <stddef.h>

typedef struct {
    /* law of total variance: total = input + internal (to rounding) */
    double var_total;    /* mean_jk ‖P_jk − P̄‖² */
    double var_input;    /* mean_k mean_j ‖P_jk − P̄_·k‖²  (signal) */
    double var_internal; /* mean_k ‖P̄_·k − P̄‖²            (noise) */
    double snr;          /* input / internal; NaN when internal is 0 */
    /* radii: mean distance to a centroid */
    double radius_init;        /* mean_j ‖δ_j − δ̄‖ */
    double radius_fixed_omega; /* mean_k mean_j ‖P_jk − P̄_·k‖  (compression) */
    double radius_fixed_delta; /* mean_j mean_k ‖P_jk − P̄_j·‖  (expansion) */
    double radius_both;        /* mean_jk ‖P_jk − P̄‖ */
    /* mean cosine of the purification directions P_jk − x over all unordered
     * pairs with the same ω and different δ / the same δ and different ω
     * (pairs with a zero direction left out; NaN when none is left) */
    double cos_same_omega, cos_same_delta;
} variance_stats;

/* P: nd·nw images of d values, P_jk at P + (j·nw + k)·d; delta: nd·d (δ_j at
 * delta + j·d); x: d.  nd ≥ 1, nw ≥ 1. */
void analysis_variance(const float *P, const float *delta, const float *x, int nd, int nw, size_t d,
                       variance_stats *out);

/* Cosine of two vectors of d values; NaN when either is zero. */
double analysis_cosine(const float *a, const float *b, size_t d);

#endif
