/* metrics.h — per-image measurements of docs/design.md §Metrics (pixels in [0,1]). */
#ifndef DRQ_METRICS_H
#define DRQ_METRICS_H

#include <stddef.h>

/* ‖a − b‖₂ and ‖a − b‖∞ over n values (b may be NULL: norms of a). */
double metrics_diff_l2(const float *a, const float *b, size_t n);
double metrics_diff_linf(const float *a, const float *b, size_t n);

/* SSIM (Wang et al. 2004) of two c×h×w images: Gaussian window 11×11,
 * σ = 1.5, K1 = 0.01, K2 = 0.03, data range 1, over the valid region
 * (no padding), mean over channels.  Images smaller than 11×11 give NAN. */
double metrics_ssim(const float *a, const float *b, int c, int h, int w);

/* Index of the largest of n logits. */
int metrics_argmax(const float *v, int n);

/* Mean and (population) standard deviation of n values. */
void metrics_mean_std(const double *v, int n, double *mean, double *std);

#endif
