/* test_logistic.c — the compression → robustness fit (common/logistic.c)
 * against answers known in closed form and against a float64 reference
 * computed here by a different method (a fine grid search of the
 * log-likelihood, then its numerical second derivatives for the covariance). */
#include <math.h>

#include "check.h"
#include "common/logistic.h"

static double sig(double z) { return 1 / (1 + exp(-z)); }

static double loglik(const double *x, const double *k, const double *n, int m, double a, double b) {
    double ll = 0;
    for (int i = 0; i < m; i++) {
        double p = sig(a + b * x[i]);
        ll += k[i] * log(p) + (n[i] - k[i]) * log(1 - p);
    }
    return ll;
}

/* Observed fractions exactly on a logistic curve: the MLE is that curve. */
static void test_exact_recovery(void) {
    double a0 = 6.0, b0 = -15.0, x[7] = {0.55, 0.42, 0.30, 0.23, 0.20, 0.187, 0.185}, k[7], n[7];
    for (int i = 0; i < 7; i++) n[i] = 1000, k[i] = 1000 * sig(a0 + b0 * x[i]);
    drq_logistic f = drq_logistic_fit(x, k, n, 7);
    CHECK_EQ_INT(f.ok, 1);
    CHECK_CMP_DBL(fabs(f.a - a0), <, 1e-9);
    CHECK_CMP_DBL(fabs(f.b - b0), <, 1e-9);
    CHECK_CMP_DBL(f.rmse, <, 1e-12);
    CHECK_CMP_DBL(fabs(f.deviance), <, 1e-8);
    double p, se, lo, hi;
    drq_logistic_predict(&f, 0.25, &p, &se, &lo, &hi);
    CHECK_CMP_DBL(fabs(p - sig(a0 + b0 * 0.25)), <, 1e-10);
    CHECK(lo < p && p < hi && se > 0);
}

/* Noisy counts: the optimum and the covariance match a brute-force search. */
static void test_against_grid(void) {
    double x[5] = {0.6, 0.45, 0.3, 0.25, 0.2}, n[5] = {50, 40, 60, 50, 30}, k[5] = {1, 4, 17, 24, 19};
    drq_logistic f = drq_logistic_fit(x, k, n, 5);
    CHECK_EQ_INT(f.ok, 1);
    /* coarse-to-fine grid search of the log-likelihood */
    double ba = 0, bb = 0, best = -INFINITY, ca = 0, cb = 0, span = 40;
    for (int level = 0; level < 12; level++, span /= 8) {
        for (int i = -40; i <= 40; i++)
            for (int j = -40; j <= 40; j++) {
                double a = ca + span * i / 40, b = cb + span * j / 40 * 4, ll = loglik(x, k, n, 5, a, b);
                if (ll > best) best = ll, ba = a, bb = b;
            }
        ca = ba, cb = bb;
    }
    CHECK_CMP_DBL(fabs(f.a - ba), <, 1e-6);
    CHECK_CMP_DBL(fabs(f.b - bb), <, 1e-5);
    /* covariance = inverse of minus the numerical Hessian */
    double h = 1e-4, l0 = loglik(x, k, n, 5, ba, bb);
    double haa = (loglik(x, k, n, 5, ba + h, bb) - 2 * l0 + loglik(x, k, n, 5, ba - h, bb)) / (h * h);
    double hbb = (loglik(x, k, n, 5, ba, bb + h) - 2 * l0 + loglik(x, k, n, 5, ba, bb - h)) / (h * h);
    double hab = (loglik(x, k, n, 5, ba + h, bb + h) - loglik(x, k, n, 5, ba + h, bb - h) -
                  loglik(x, k, n, 5, ba - h, bb + h) + loglik(x, k, n, 5, ba - h, bb - h)) / (4 * h * h);
    double det = haa * hbb - hab * hab;
    /* inverse of −H = [[−haa, −hab], [−hab, −hbb]]: det(−H) = det(H) */
    double va = -hbb / det, vb = -haa / det, vab = hab / det;
    CHECK_CMP_DBL(fabs(f.cov[0] - va) / va, <, 1e-3);
    CHECK_CMP_DBL(fabs(f.cov[2] - vb) / vb, <, 1e-3);
    CHECK_CMP_DBL(fabs(f.cov[1] - vab) / fabs(vab), <, 1e-3);
    /* a fit that does not pass through the points has a positive deviance and rmse */
    CHECK_CMP_DBL(f.deviance, >, 0);
    CHECK_CMP_DBL(f.rmse, >, 0);
}

/* What cannot be fitted says so. */
static void test_refusals(void) {
    double x[4] = {0.5, 0.4, 0.3, 0.2}, n[4] = {10, 10, 10, 10};
    double two_k[2] = {1, 5};
    CHECK_EQ_INT(drq_logistic_fit(x, two_k, n, 2).ok, 0);
    double none[4] = {0, 0, 0, 0}, all[4] = {10, 10, 10, 10}, sep[4] = {0, 0, 10, 10};
    drq_logistic f = drq_logistic_fit(x, none, n, 4);
    CHECK_EQ_INT(f.ok, 0);
    CHECK(f.why != NULL);
    CHECK_EQ_INT(drq_logistic_fit(x, all, n, 4).ok, 0);
    CHECK_EQ_INT(drq_logistic_fit(x, sep, n, 4).ok, 0);
    double same[4] = {0.3, 0.3, 0.3, 0.3}, k[4] = {1, 2, 3, 4};
    CHECK_EQ_INT(drq_logistic_fit(same, k, n, 4).ok, 0);
    /* points with n = 0 do not count */
    double n0[4] = {10, 0, 10, 0};
    CHECK_EQ_INT(drq_logistic_fit(x, k, n0, 4).ok, 0);
}

int main(void) {
    test_exact_recovery();
    test_against_grid();
    test_refusals();
    return CHECK_DONE();
}
