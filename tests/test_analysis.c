/* test_analysis.c — the statistics of the variance and gradcorr analyses
 * (worker/eval/analysis.c) against known answers and a direct float64
 * reference, on synthetic P_jk arrays (no models):
 *   - an exact construction P_jk = c + u_j + v_k with Σ_j u_j = 0,
 *     Σ_k v_k = 0 and u, v on disjoint pixels (dyadic values, so the floats
 *     are exact): every variance, radius and cosine has a closed form;
 *   - random P: each statistic equals a naive float64 transcription of
 *     ../shared/DESIGN.md §8, and the law of total variance holds to rounding;
 *   - the identity purifier plus seed-dependent noise of known variance,
 *     P_jk = x + δ_j + σ z_k: SNR ≈ eps²/(3σ²), the compression radius equals
 *     the initial radius, the expansion radius ≈ σ·sqrt(d (N_ω−1)/N_ω).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/rng.h"
#include "worker/eval/analysis.h"
#include "check.h"

/* |a − b| ≤ tol·max(1, |b|) */
#define CLOSE(a, b, tol, what)                                                                   \
    do {                                                                                         \
        double a2_ = (a), b2_ = (b);                                                             \
        CHECK_MSG(fabs(a2_ - b2_) <= (tol) * fmax(1.0, fabs(b2_)), "%s: %.17g vs %.17g", what, a2_, b2_); \
    } while (0)

static double sq(const double *v, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += v[i] * v[i];
    return s;
}

static void test_exact(void) {
    enum { ND = 4, NW = 3, H = 6, D = 2 * H };
    double u[ND][H], v[NW][H];
    /* dyadic values; the last of each set makes the sum exactly zero */
    for (int j = 0; j < ND - 1; j++)
        for (int e = 0; e < H; e++) u[j][e] = ((j * 5 + e * 3) % 7 - 3) * 0.0625;
    for (int e = 0; e < H; e++) u[ND - 1][e] = -(u[0][e] + u[1][e] + u[2][e]);
    for (int k = 0; k < NW - 1; k++)
        for (int e = 0; e < H; e++) v[k][e] = ((k * 3 + e * 5) % 5 - 2) * 0.125;
    for (int e = 0; e < H; e++) v[NW - 1][e] = -(v[0][e] + v[1][e]);
    float P[ND * NW * D], delta[ND * D], x[D];
    for (int e = 0; e < D; e++) x[e] = 0.5f;
    for (int j = 0; j < ND; j++) {
        for (int e = 0; e < D; e++) delta[j * D + e] = e < H ? (float)u[j][e] : 0.0f;
        for (int k = 0; k < NW; k++)
            for (int e = 0; e < D; e++) P[(j * NW + k) * D + e] = (float)(0.5 + (e < H ? u[j][e] : v[k][e - H]));
    }
    variance_stats s;
    analysis_variance(P, delta, x, ND, NW, D, &s);
    double in = 0, it = 0, ru = 0, rv = 0, rb = 0, cw = 0, cd = 0;
    for (int j = 0; j < ND; j++) in += sq(u[j], H) / ND, ru += sqrt(sq(u[j], H)) / ND;
    for (int k = 0; k < NW; k++) it += sq(v[k], H) / NW, rv += sqrt(sq(v[k], H)) / NW;
    for (int j = 0; j < ND; j++)
        for (int k = 0; k < NW; k++) rb += sqrt(sq(u[j], H) + sq(v[k], H)) / (ND * NW);
    /* directions u_j + v_k: disjoint supports, so ⟨u_j + v_k, u_j' + v_k'⟩ = ⟨u_j, u_j'⟩ + ⟨v_k, v_k'⟩ */
    for (int k = 0; k < NW; k++)
        for (int j = 0; j < ND; j++)
            for (int j2 = j + 1; j2 < ND; j2++) {
                double uu = 0;
                for (int e = 0; e < H; e++) uu += u[j][e] * u[j2][e];
                cw += (uu + sq(v[k], H)) / sqrt((sq(u[j], H) + sq(v[k], H)) * (sq(u[j2], H) + sq(v[k], H)));
            }
    cw /= NW * ND * (ND - 1) / 2;
    for (int j = 0; j < ND; j++)
        for (int k = 0; k < NW; k++)
            for (int k2 = k + 1; k2 < NW; k2++) {
                double vv = 0;
                for (int e = 0; e < H; e++) vv += v[k][e] * v[k2][e];
                cd += (sq(u[j], H) + vv) / sqrt((sq(u[j], H) + sq(v[k], H)) * (sq(u[j], H) + sq(v[k2], H)));
            }
    cd /= ND * NW * (NW - 1) / 2;
    CLOSE(s.var_input, in, 1e-12, "exact: input variance = mean ‖u_j‖²");
    CLOSE(s.var_internal, it, 1e-12, "exact: internal variance = mean ‖v_k‖²");
    CLOSE(s.var_total, in + it, 1e-12, "exact: total = input + internal");
    CLOSE(s.snr, in / it, 1e-12, "exact: snr");
    CLOSE(s.radius_init, ru, 1e-12, "exact: initial radius = mean ‖u_j‖");
    CLOSE(s.radius_fixed_omega, ru, 1e-12, "exact: compression radius = mean ‖u_j‖");
    CLOSE(s.radius_fixed_delta, rv, 1e-12, "exact: expansion radius = mean ‖v_k‖");
    CLOSE(s.radius_both, rb, 1e-12, "exact: both radius");
    CLOSE(s.cos_same_omega, cw, 1e-12, "exact: cosine same ω");
    CLOSE(s.cos_same_delta, cd, 1e-12, "exact: cosine same δ");
}

/* The statistics transcribed from ../shared/DESIGN.md §8 as they read, in float64. */
static void reference(const float *P, const float *dl, const float *x, int nd, int nw, int d, double out[10]) {
#define PX(j, k, e) ((double)P[((size_t)(j) * nw + (k)) * d + (e)])
    double *pk = calloc((size_t)nw * d, 8), *pj = calloc((size_t)nd * d, 8), *pm = calloc(d, 8), *dm = calloc(d, 8);
    for (int e = 0; e < d; e++) {
        for (int k = 0; k < nw; k++) {
            for (int j = 0; j < nd; j++) pk[k * d + e] += PX(j, k, e) / nd;
            pm[e] += pk[k * d + e] / nw;
        }
        for (int j = 0; j < nd; j++) {
            for (int k = 0; k < nw; k++) pj[j * d + e] += PX(j, k, e) / nw;
            dm[e] += dl[j * d + e] / (double)nd;
        }
    }
    double tot = 0, inp = 0, itl = 0, r0 = 0, rw = 0, rd = 0, rb = 0, cw = 0, cd = 0;
    long nwp = 0, ndp = 0;
    for (int j = 0; j < nd; j++)
        for (int k = 0; k < nw; k++) {
            double a = 0, b = 0, c = 0;
            for (int e = 0; e < d; e++) {
                a += pow(PX(j, k, e) - pm[e], 2);
                b += pow(PX(j, k, e) - pk[k * d + e], 2);
                c += pow(PX(j, k, e) - pj[j * d + e], 2);
            }
            tot += a / (nd * nw), inp += b / (nd * nw), rb += sqrt(a) / (nd * nw), rw += sqrt(b) / (nd * nw);
            rd += sqrt(c) / (nd * nw);
            for (int j2 = 0; j2 < nd; j2++)
                for (int k2 = 0; k2 < nw; k2++) {
                    if ((j2 == j) == (k2 == k)) continue; /* exactly one index differs */
                    if (j2 < j || k2 < k) continue;       /* unordered pairs */
                    double ab = 0, aa = 0, bb = 0;
                    for (int e = 0; e < d; e++) {
                        double p = PX(j, k, e) - x[e], q = PX(j2, k2, e) - x[e];
                        ab += p * q, aa += p * p, bb += q * q;
                    }
                    if (k2 == k) cw += ab / sqrt(aa * bb), nwp++;
                    else cd += ab / sqrt(aa * bb), ndp++;
                }
        }
    for (int k = 0; k < nw; k++) {
        double a = 0;
        for (int e = 0; e < d; e++) a += pow(pk[k * d + e] - pm[e], 2);
        itl += a / nw;
    }
    for (int j = 0; j < nd; j++) {
        double a = 0;
        for (int e = 0; e < d; e++) a += pow(dl[j * d + e] - dm[e], 2);
        r0 += sqrt(a) / nd;
    }
    double r[10] = {tot, inp, itl, inp / itl, r0, rw, rd, rb, cw / nwp, cd / ndp};
    memcpy(out, r, sizeof r);
    free(pk), free(pj), free(pm), free(dm);
#undef PX
}

static void test_reference(void) {
    enum { ND = 5, NW = 4, D = 37 };
    static float P[ND * NW * D], dl[ND * D], x[D];
    drq_uniform(drq_key(1, 2, 3), D, 0.2f, 0.8f, x);
    drq_uniform(drq_key(1, 2, 4), ND * D, -0.1f, 0.1f, dl);
    drq_normal(drq_key(1, 2, 5), ND * NW * D, P);
    for (int i = 0; i < ND * NW * D; i++) P[i] = 0.5f + 0.2f * P[i];
    variance_stats s;
    analysis_variance(P, dl, x, ND, NW, D, &s);
    double ref[10];
    reference(P, dl, x, ND, NW, D, ref);
    const char *names[10] = {"var_total", "var_input", "var_internal", "snr", "radius_init", "radius_fixed_omega",
                             "radius_fixed_delta", "radius_both", "cos_same_omega", "cos_same_delta"};
    double got[10] = {s.var_total, s.var_input, s.var_internal, s.snr, s.radius_init, s.radius_fixed_omega,
                      s.radius_fixed_delta, s.radius_both, s.cos_same_omega, s.cos_same_delta};
    for (int i = 0; i < 10; i++) CLOSE(got[i], ref[i], 1e-11, names[i]);
    CHECK_LE(fabs(s.var_total - s.var_input - s.var_internal), 1e-13 * s.var_total,
             "law of total variance: |total − input − internal|");
}

static void test_noise_model(void) {
    enum { ND = 20, NW = 20, D = 4096 };
    const double eps = 0.1, sigma = 0.05;
    float *P = malloc(sizeof(float) * ND * NW * D), *dl = malloc(sizeof(float) * ND * D), *x = malloc(sizeof(float) * D);
    float *z = malloc(sizeof(float) * NW * D);
    drq_uniform(drq_key(7, 0, 1), D, 0.3f, 0.7f, x);
    for (int j = 0; j < ND; j++) drq_uniform(drq_key(7, 0, 100 + j), D, (float)-eps, (float)eps, dl + j * D);
    for (int k = 0; k < NW; k++) drq_normal(drq_key(7, 0, 200 + k), D, z + k * D);
    for (int j = 0; j < ND; j++)
        for (int k = 0; k < NW; k++)
            for (int e = 0; e < D; e++)
                P[((size_t)j * NW + k) * D + e] = x[e] + dl[j * D + e] + (float)sigma * z[k * D + e];
    variance_stats s;
    analysis_variance(P, dl, x, ND, NW, D, &s);
    double in = D * eps * eps / 3 * (ND - 1) / ND, it = D * sigma * sigma * (NW - 1) / NW;
    CHECK_LE(fabs(s.var_input / in - 1), 0.02, "noise model: input variance vs d·eps²/3·(N−1)/N");
    CHECK_LE(fabs(s.var_internal / it - 1), 0.02, "noise model: internal variance vs d·σ²·(N−1)/N");
    CHECK_LE(fabs(s.snr / (eps * eps / (3 * sigma * sigma)) - 1), 0.03, "noise model: snr vs eps²/(3σ²)");
    CHECK_LE(fabs(s.radius_fixed_omega - s.radius_init), 1e-5 * s.radius_init,
             "identity + noise: compression radius = initial radius");
    CHECK_LE(fabs(s.radius_fixed_delta / sqrt(it) - 1), 0.02, "noise model: expansion radius vs σ·sqrt(d(N−1)/N)");
    CHECK_LE(fabs(s.var_total - s.var_input - s.var_internal), 1e-12 * s.var_total, "law of total variance");
    free(P), free(dl), free(x), free(z);
}

static void test_cosine(void) {
    float a[3] = {1, 2, 3}, b[3] = {-1, -2, -3}, c[3] = {3, 0, -1}, zero[3] = {0};
    CHECK_CMP_DBL(analysis_cosine(a, a, 3), ==, 1.0);
    CHECK_CMP_DBL(analysis_cosine(a, b, 3), ==, -1.0);
    CHECK_CMP_DBL(analysis_cosine(a, c, 3), ==, 0.0);
    CHECK(isnan(analysis_cosine(a, zero, 3)));
}

int main(void) {
    test_exact();
    test_reference();
    test_noise_model();
    test_cosine();
    return CHECK_DONE();
}
