/* logistic.h — the compression → robustness fit of `drq report` (DESIGN §8,
 * docs/report.md): a binomial logistic regression of robust counts on one
 * covariate, by Newton's method (iteratively reweighted least squares).
 *
 *   p(x) = 1 / (1 + exp(−(a + b·x)))
 *
 * Point i is a config (a purifier): x_i its mean uniform-δ compression rate,
 * k_i of n_i attacked images robust under fixed ω.  The fit maximises
 * Σ k_i log p(x_i) + (n_i − k_i) log(1 − p(x_i)); its covariance is the
 * inverse Fisher information at the optimum, and a prediction's uncertainty
 * follows from it by the delta method on the logit.
 */
#ifndef DRQ_LOGISTIC_H
#define DRQ_LOGISTIC_H

typedef struct {
    int ok;              /* 1: converged to a finite optimum */
    const char *why;     /* ok == 0: why not (static text) */
    double a, b;         /* intercept and slope of the logit */
    double cov[3];       /* covariance of (a, b): var a, cov ab, var b */
    double rmse;         /* root mean square of observed k/n − fitted p over the points */
    double deviance;     /* 2 × (saturated − fitted log-likelihood) */
    int points, iterations;
} drq_logistic;

/* Fits m points (x[i], k[i] of n[i]); needs m >= 3 points with n > 0 and at
 * least two distinct x.  ok = 0 with `why` when fewer points, all x equal, or
 * the optimum is at infinity (every point all robust or none, or the points
 * separate perfectly). */
drq_logistic drq_logistic_fit(const double *x, const double *k, const double *n, int m);

/* Predicted p at x, its standard error (delta method) and the 95% interval
 * σ(η ± 1.96·sd η) of a fit with ok = 1. */
void drq_logistic_predict(const drq_logistic *f, double x, double *p, double *se, double *lo, double *hi);

#endif
