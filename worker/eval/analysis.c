/* analysis.c — see analysis.h. */
#include "worker/eval/analysis.h"

#include <math.h>
#include <stdlib.h>

#include "common/util.h"

double analysis_cosine(const float *a, const float *b, size_t d) {
    double ab = 0, aa = 0, bb = 0;
    for (size_t e = 0; e < d; e++) {
        ab += (double)a[e] * b[e];
        aa += (double)a[e] * a[e];
        bb += (double)b[e] * b[e];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : NAN;
}

/* ‖a − b‖² of d values, a in float, b in double. */
static double dist2(const float *a, const double *b, size_t d) {
    double s = 0;
    for (size_t e = 0; e < d; e++) {
        double t = (double)a[e] - b[e];
        s += t * t;
    }
    return s;
}

/* Mean cosine of the directions D_jk (unit vectors U, zero rows flagged by
 * ok = 0) over the pairs that differ in j with k fixed (same_omega) or in k
 * with j fixed. */
static double mean_pair_cos(const double *U, const char *ok, int nd, int nw, size_t d, int same_omega) {
    int outer = same_omega ? nw : nd, inner = same_omega ? nd : nw;
    double sum = 0;
    long cnt = 0;
    for (int o = 0; o < outer; o++)
        for (int a = 0; a < inner; a++)
            for (int b = a + 1; b < inner; b++) {
                size_t ia = same_omega ? (size_t)a * nw + o : (size_t)o * nw + a;
                size_t ib = same_omega ? (size_t)b * nw + o : (size_t)o * nw + b;
                if (!ok[ia] || !ok[ib]) continue;
                const double *u = U + ia * d, *v = U + ib * d;
                double s = 0;
                for (size_t e = 0; e < d; e++) s += u[e] * v[e];
                sum += s;
                cnt++;
            }
    return cnt ? sum / (double)cnt : NAN;
}

void analysis_variance(const float *P, const float *delta, const float *x, int nd, int nw, size_t d,
                       variance_stats *out) {
    size_t n = (size_t)nd * nw;
    double *mk = xcalloc((size_t)nw * d, sizeof(double)); /* P̄_·k */
    double *mj = xcalloc((size_t)nd * d, sizeof(double)); /* P̄_j· */
    double *m = xcalloc(d, sizeof(double));               /* P̄ */
    double *md = xcalloc(d, sizeof(double));              /* δ̄ */
    for (int j = 0; j < nd; j++)
        for (int k = 0; k < nw; k++) {
            const float *p = P + ((size_t)j * nw + k) * d;
            for (size_t e = 0; e < d; e++) {
                mk[(size_t)k * d + e] += p[e];
                mj[(size_t)j * d + e] += p[e];
                m[e] += p[e];
            }
        }
    for (size_t i = 0; i < (size_t)nw * d; i++) mk[i] /= nd;
    for (size_t i = 0; i < (size_t)nd * d; i++) mj[i] /= nw;
    for (size_t e = 0; e < d; e++) m[e] /= (double)n;
    for (int j = 0; j < nd; j++)
        for (size_t e = 0; e < d; e++) md[e] += delta[(size_t)j * d + e];
    for (size_t e = 0; e < d; e++) md[e] /= nd;

    double tot = 0, inp = 0, intl = 0, rw = 0, rd = 0, rb = 0, ri = 0;
    for (int j = 0; j < nd; j++)
        for (int k = 0; k < nw; k++) {
            const float *p = P + ((size_t)j * nw + k) * d;
            double a = dist2(p, m, d), b = dist2(p, mk + (size_t)k * d, d), c = dist2(p, mj + (size_t)j * d, d);
            tot += a, rb += sqrt(a);
            inp += b, rw += sqrt(b);
            rd += sqrt(c);
        }
    for (int k = 0; k < nw; k++) {
        double s = 0;
        for (size_t e = 0; e < d; e++) {
            double t = mk[(size_t)k * d + e] - m[e];
            s += t * t;
        }
        intl += s;
    }
    for (int j = 0; j < nd; j++) ri += sqrt(dist2(delta + (size_t)j * d, md, d));
    out->var_total = tot / (double)n;
    out->var_input = inp / (double)n;
    out->var_internal = intl / nw;
    out->snr = out->var_internal > 0 ? out->var_input / out->var_internal : NAN;
    out->radius_init = ri / nd;
    out->radius_fixed_omega = rw / (double)n;
    out->radius_fixed_delta = rd / (double)n;
    out->radius_both = rb / (double)n;

    /* directions P_jk − x, normalised once so that a pair costs one dot product */
    double *U = xmalloc(n * d * sizeof(double));
    char *ok = xmalloc(n);
    for (size_t i = 0; i < n; i++) {
        double s = 0, *u = U + i * d;
        for (size_t e = 0; e < d; e++) {
            u[e] = (double)P[i * d + e] - x[e];
            s += u[e] * u[e];
        }
        ok[i] = s > 0;
        for (size_t e = 0; ok[i] && e < d; e++) u[e] /= sqrt(s);
    }
    out->cos_same_omega = mean_pair_cos(U, ok, nd, nw, d, 1);
    out->cos_same_delta = mean_pair_cos(U, ok, nd, nw, d, 0);
    free(U), free(ok), free(mk), free(mj), free(m), free(md);
}
