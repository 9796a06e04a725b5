/* compress.h — the uniform-δ compression rate of docs/design.md §Metrics,
 * shared by the attack rows (worker/eval/engine.c, comp_unif_*) and the
 * screen analysis (worker/eval/analyses.c), so that it is defined once:
 *
 *   rate_j = ‖P_ω(x + δ_j) − P_ω(x)‖₂ / ‖δ_j‖₂,   δ_j = clip(x + u_j) − x,
 *   u_j uniform in [−a, a] per pixel, a = eps (L∞) or eps·sqrt(3/d) (L2:
 *   E‖u‖₂² = eps²), drawn under the seed from stream 3000 + j (docs/seeds.md).
 */
#ifndef DRQ_COMPRESS_H
#define DRQ_COMPRESS_H

#include <stdint.h>

#include "kernels/tensor.h"
#include "worker/eval/purify.h"

/* The half-width a of the uniform draws for one image of d values. */
float compress_amplitude(int l2, double eps, size_t d);

/* xu = clip(x + u, 0, 1), u uniform in [−amp, amp] from noise key `key`, for one image of d values. */
void compress_draw(uint64_t key, const float *x, size_t d, float amp, float *xu);

/* The rates of nu draws for a batch x (n images), purified under ω = seed
 * for every image, against p0 = P_ω(x): rate[i·nu + j] (NaN when δ_j = 0).
 * Returns 1 (rates unusable) when the purifier's stop flags ended a pass. */
int compress_uniform(purifier *pur, const Tensor *x, const int64_t *image, uint64_t seed, int l2, double eps, int nu,
                     const Tensor *p0, double *rate);

#endif
