/* logistic.c — see logistic.h. */
#include "logistic.h"

#include <math.h>

static double sigmoid(double z) { return z >= 0 ? 1 / (1 + exp(-z)) : exp(z) / (1 + exp(z)); }

/* k log p + (n − k) log(1 − p), with 0 log 0 = 0. */
static double binom_ll(double k, double n, double p) {
    double ll = 0;
    if (k > 0) ll += k * log(p);
    if (n - k > 0) ll += (n - k) * log1p(-p);
    return ll;
}

drq_logistic drq_logistic_fit(const double *x, const double *k, const double *n, int m) {
    drq_logistic f = {0};
    double xmin = INFINITY, xmax = -INFINITY, ksum = 0, nsum = 0;
    for (int i = 0; i < m; i++) {
        if (!(n[i] > 0)) continue;
        f.points++;
        xmin = fmin(xmin, x[i]), xmax = fmax(xmax, x[i]);
        ksum += k[i], nsum += n[i];
    }
    if (f.points < 3) return f.why = "fewer than 3 attacked configs with a compression rate", f;
    if (!(xmax > xmin)) return f.why = "every config has the same compression rate", f;
    if (ksum <= 0 || ksum >= nsum) return f.why = "every attacked image is robust, or none is: the slope is unbounded", f;
    /* Start from the pooled rate (b = 0); Newton steps, halved while the
     * log-likelihood would fall. */
    double a = log(ksum / (nsum - ksum)), b = 0, ll = 0;
    for (int i = 0; i < m; i++)
        if (n[i] > 0) ll += binom_ll(k[i], n[i], sigmoid(a + b * x[i]));
    int it;
    for (it = 1; it <= 200; it++) {
        double g0 = 0, g1 = 0, h00 = 0, h01 = 0, h11 = 0;
        for (int i = 0; i < m; i++) {
            if (!(n[i] > 0)) continue;
            double p = sigmoid(a + b * x[i]), w = n[i] * p * (1 - p), r = k[i] - n[i] * p;
            g0 += r, g1 += r * x[i];
            h00 += w, h01 += w * x[i], h11 += w * x[i] * x[i];
        }
        double det = h00 * h11 - h01 * h01;
        if (!(det > 0)) return f.why = "the information matrix is singular (the points separate perfectly)", f;
        double da = (h11 * g0 - h01 * g1) / det, db = (h00 * g1 - h01 * g0) / det, nll = -INFINITY;
        double t = 1;
        for (int half = 0; half < 40; half++, t /= 2) {
            nll = 0;
            for (int i = 0; i < m; i++)
                if (n[i] > 0) nll += binom_ll(k[i], n[i], sigmoid((a + t * da) + (b + t * db) * x[i]));
            if (nll >= ll - 1e-12 * fabs(ll)) break;
        }
        a += t * da, b += t * db;
        double step = fabs(t * da) + fabs(t * db) * (xmax - xmin);
        ll = nll;
        if (!isfinite(a) || !isfinite(b) || fabs(b) * (xmax - xmin) > 50)
            return f.why = "the optimum is at infinity (the points separate perfectly)", f;
        if (step < 1e-12 * (1 + fabs(a))) break;
    }
    if (it > 200) return f.why = "Newton's method did not converge in 200 iterations", f;
    double h00 = 0, h01 = 0, h11 = 0, se = 0, sat = 0;
    for (int i = 0; i < m; i++) {
        if (!(n[i] > 0)) continue;
        double p = sigmoid(a + b * x[i]), w = n[i] * p * (1 - p), d = k[i] / n[i] - p;
        h00 += w, h01 += w * x[i], h11 += w * x[i] * x[i];
        se += d * d;
        sat += binom_ll(k[i], n[i], k[i] / n[i]);
    }
    double det = h00 * h11 - h01 * h01;
    f.ok = 1, f.a = a, f.b = b, f.iterations = it;
    f.cov[0] = h11 / det, f.cov[1] = -h01 / det, f.cov[2] = h00 / det;
    f.rmse = sqrt(se / f.points);
    f.deviance = 2 * (sat - ll);
    return f;
}

void drq_logistic_predict(const drq_logistic *f, double x, double *p, double *se, double *lo, double *hi) {
    double eta = f->a + f->b * x;
    double var = f->cov[0] + 2 * x * f->cov[1] + x * x * f->cov[2], sd = sqrt(var > 0 ? var : 0);
    *p = sigmoid(eta);
    *se = *p * (1 - *p) * sd;
    *lo = sigmoid(eta - 1.96 * sd);
    *hi = sigmoid(eta + 1.96 * sd);
}
