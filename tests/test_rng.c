/* test_rng.c — Philox4x32-10 known answers, key scheme, normal/uniform
 * statistics, element/prefix independence, determinism. */
#include "common/rng.h"
#include "common/util.h"
#include "tests/check.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Known-answer vectors: Random123, tests/kat_vectors lines 27-29
 * (https://github.com/DEShawResearch/random123, commit
 * 9545ff6413f258be2f04c1d319d99aaef7521150), format "name R CTR[4] KEY[2] EXPECTED[4]":
 *   philox4x32 10 00000000 00000000 00000000 00000000 00000000 00000000   6627e8d5 e169c58d bc57ac4c 9b00dbd8
 *   philox4x32 10 ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff   408f276d 41c83b0e a20bc7c6 6d5451fd
 *   philox4x32 10 243f6a88 85a308d3 13198a2e 03707344 a4093822 299f31d0   d16cfe09 94fdcceb 5001e420 24126ea1 */
static void test_kat(void) {
    static const struct {
        uint32_t ctr[4], key[2], want[4];
    } kat[3] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
         {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (int v = 0; v < 3; v++) {
        uint32_t out[4];
        philox4x32_10(kat[v].ctr, kat[v].key, out);
        for (int i = 0; i < 4; i++)
            CHECK_MSG(out[i] == kat[v].want[i], "KAT %d word %d: %08x vs %08x", v, i, out[i],
                      kat[v].want[i]);
    }
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* drq_key by hand (uint64 wrap-around), docs/seeds.md "Key". */
static void test_key(void) {
    CHECK_EQ_INT(drq_key(0, 0, 0), 0);
    CHECK_EQ_INT(drq_key(1, 0, 0), 83492791u);
    CHECK_EQ_INT(drq_key(0, 1, 0), 73856093u);
    CHECK_EQ_INT(drq_key(0, 0, 1), 19349663u);
    /* 83492791 ^ 73856093 ^ 19349663 */
    CHECK_EQ_INT(drq_key(1, 1, 1), (UINT64_C(83492791) ^ UINT64_C(73856093) ^ UINT64_C(19349663)));
    /* 7·83492791 = 584449537, 1234·73856093 = 91138418762, 1099·19349663 = 21265179637;
     * XOR = 0x11e9127cde */
    CHECK_EQ_INT(drq_key(7, 1234, 1099), UINT64_C(0x11e9127cde));
    /* products wrap modulo 2^64 */
    CHECK_EQ_INT(drq_key((UINT64_C(1) << 40) + 5, 9999, 3001), UINT64_C(0xf9ffb7a66c870507));
    CHECK_EQ_INT(drq_key(UINT64_C(1) << 63, 3, 2), UINT64_C(0x800000000f7a5c29));
    CHECK_MSG(drq_stream_reverse(0) == 1000 && drq_stream_reverse(999) == 1999, "reverse streams %llu, %llu (want 1000, 1999)",
              (unsigned long long)drq_stream_reverse(0), (unsigned long long)drq_stream_reverse(999));
    CHECK_MSG(drq_stream_uniform_delta(0) == 3000 && drq_stream_uniform_delta(999) == 3999,
              "uniform_delta streams %llu, %llu (want 3000, 3999)", (unsigned long long)drq_stream_uniform_delta(0),
              (unsigned long long)drq_stream_uniform_delta(999));

    /* within one (seed, image) every stream of docs/seeds.md has its own key
     * (stream -> key is a bijection for fixed seed and image) */
    {
        enum { NST = 3 + 1000 + 1000 };
        uint64_t *keys = xmalloc(NST * sizeof(uint64_t));
        int nk = 0, dup = 0;
        keys[nk++] = drq_key(3, 17, DRQ_STREAM_FORWARD_EPS);
        keys[nk++] = drq_key(3, 17, DRQ_STREAM_PGD_START);
        keys[nk++] = drq_key(3, 17, DRQ_STREAM_PGD_START_RADIUS);
        for (unsigned i = 0; i < 1000; i++) keys[nk++] = drq_key(3, 17, drq_stream_reverse(i));
        for (unsigned j = 0; j < 1000; j++) keys[nk++] = drq_key(3, 17, drq_stream_uniform_delta(j));
        qsort(keys, (size_t)nk, sizeof keys[0], cmp_u64);
        for (int i = 1; i < nk; i++) dup += keys[i] == keys[i - 1];
        CHECK_EQ_INT(dup, 0);
        free(keys);
    }

    /* drq_block: Philox key {lo, hi}, counter {b lo, b hi, 0, 0} */
    uint64_t key = UINT64_C(0x0123456789abcdef), b = UINT64_C(0x0000000500000007);
    uint32_t a[4], want[4];
    drq_block(key, b, a);
    philox4x32_10((const uint32_t[4]){7, 5, 0, 0}, (const uint32_t[2]){0x89abcdef, 0x01234567}, want);
    CHECK(memcmp(a, want, sizeof a) == 0);
}

static void test_derived(void) {
    /* splitmix64 from state 0: first output 0xe220a8397b1dcdaf (Vigna's splitmix64.c) */
    CHECK_EQ_INT(drq_splitmix64(0), UINT64_C(0xe220a8397b1dcdaf));
    /* regression values from an independent Python transcription of the formula */
    CHECK_EQ_INT(drq_derived_seed(0, 1, 0, 0), UINT64_C(0xd1c0270687984b37));
    CHECK_EQ_INT(drq_derived_seed(42, 2, 5, 3), UINT64_C(0xc96cdeb2aba301d1));
    /* distinct purposes / arguments give distinct seeds, and never the seed itself */
    uint64_t s = 12345, seen[3 * 8 * 4];
    int k = 0, dup = 0;
    for (uint64_t p = 1; p <= 3; p++)
        for (uint64_t a = 0; a < 8; a++)
            for (uint64_t b = 0; b < 4; b++) seen[k++] = drq_derived_seed(s, p, a, b);
    for (int i = 0; i < k; i++) {
        if (seen[i] == s) dup++;
        for (int j = 0; j < i; j++) dup += seen[i] == seen[j];
    }
    CHECK_EQ_INT(dup, 0);
    CHECK_CMP_INT(drq_derived_seed(1, 2, 3, 4), !=, drq_derived_seed(1, 2, 4, 3));
    CHECK_CMP_INT(drq_derived_seed(1, 1, 0, 0), !=, drq_derived_seed(2, 1, 0, 0));
}

static void test_box_muller(void) {
    float z0, z1;
    drq_box_muller(0xffffffffu, 123, &z0, &z1); /* u1 rounds to 1: radius 0 */
    CHECK_MSG(z0 == 0.0f && z1 == 0.0f, "z0 %g, z1 %g (want 0, 0)", z0, z1);
    drq_box_muller(0, 0, &z0, &z1); /* u1 = 2^-32 (never 0): r = sqrt(64 ln 2) */
    CHECK_LE(fabs(z0 - sqrt(64.0 * log(2.0))), 1e-5, "z0 at u1 = 2^-32, u2 = 0");
    CHECK_MSG(isfinite(z0) && fabsf(z1) <= 1e-6f, "z0 %g (want finite), |z1| %g (want <= 1e-6)", z0, fabsf(z1));
    drq_box_muller(0, 0x40000000u, &z0, &z1); /* u2 = 1/4: cos 0, sin 1 */
    CHECK_LE(fabs(z1 - sqrt(64.0 * log(2.0))), 1e-5, "z1 at u2 = 1/4");
    CHECK_LE(fabsf(z0), 1e-5, "z0 at u2 = 1/4");
    drq_box_muller(0x7fffffffu, 0x80000000u, &z0, &z1); /* u1 = 1/2, u2 = 1/2 */
    CHECK_LE(fabs(z0 + sqrt(2.0 * log(2.0))), 1e-6, "z0 at u1 = u2 = 1/2");
}

/* Element layout: elements 4b..4b+3 come from block b, pairs (0,1) and (2,3). */
static void test_layout(void) {
    uint64_t key = drq_key(5, 77, DRQ_STREAM_FORWARD_EPS);
    float z[12], zz[4], u[12];
    drq_normal(key, 12, z);
    drq_uniform(key, 12, -2.0f, 3.0f, u);
    int bad_n = 0, bad_u = 0;
    for (uint64_t b = 0; b < 3; b++) {
        uint32_t x[4];
        drq_block(key, b, x);
        drq_box_muller(x[0], x[1], &zz[0], &zz[1]);
        drq_box_muller(x[2], x[3], &zz[2], &zz[3]);
        for (int j = 0; j < 4; j++) {
            bad_n += memcmp(&z[4 * b + j], &zz[j], sizeof(float)) != 0;
            float uu = fmaf(5.0f, (float)(x[j] >> 8) * 0x1p-24f, -2.0f);
            bad_u += memcmp(&u[4 * b + j], &uu, sizeof(float)) != 0;
        }
    }
    CHECK_EQ_INT(bad_n, 0);
    CHECK_EQ_INT(bad_u, 0);

    /* Golden values from an independent Python implementation (Philox in
     * Python integers, Box–Muller in float64): agreement to float32 level. */
    static const double g1[8] = {1.0491051,   0.332169567, -1.7127412, -1.40857233,
                                 -1.57606513, -0.396046532, 0.67281863, 1.02555891};
    static const double g2[4] = {1.15045523, -1.61006563, 1.12222515, 1.55746199};
    static const double g3[6] = {0.855629325, 0.407623529, 0.184566975,
                                 0.241215348, 0.864199162, -0.26296699};
    float o[8];
    drq_normal(drq_key(0, 0, 1), 8, o);
    for (int i = 0; i < 8; i++) CHECK_LE(fabs(o[i] - g1[i]), 2e-6, "golden normal key(0,0,1)");
    drq_normal(drq_key(3, 17, drq_stream_reverse(5)), 4, o);
    for (int i = 0; i < 4; i++) CHECK_LE(fabs(o[i] - g2[i]), 2e-6, "golden normal key(3,17,1005)");
    drq_uniform(drq_key(3, 17, drq_stream_uniform_delta(2)), 6, -1.0f, 1.0f, o);
    for (int i = 0; i < 6; i++) CHECK_LE(fabs(o[i] - g3[i]), 1e-7, "golden uniform key(3,17,3002)");
}

/* Element e depends only on (key, e): prefixes, offsets, determinism. */
static void test_independence(void) {
    enum { N = 1003 };
    uint64_t key = drq_key(9, 4321, drq_stream_reverse(42));
    float *full = xmalloc(N * sizeof(float)), *part = xmalloc(N * sizeof(float));
    float *ufull = xmalloc(N * sizeof(float));
    drq_normal(key, N, full);
    drq_uniform(key, N, -0.5f, 0.5f, ufull);
    int bad = 0;
    static const size_t ks[] = {0, 1, 2, 3, 4, 5, 6, 7, 9, 13, 64, 777, N};
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        size_t k = ks[t];
        drq_normal(key, k, part);
        bad += k && memcmp(part, full, k * sizeof(float)) != 0;
        drq_uniform(key, k, -0.5f, 0.5f, part);
        bad += k && memcmp(part, ufull, k * sizeof(float)) != 0;
    }
    CHECK_MSG(bad == 0, "prefix of a longer draw differs from the shorter draw (%d cases)", bad);

    /* any slice [first, first+n) generated on its own equals the full draw's slice */
    bad = 0;
    static const size_t firsts[] = {1, 2, 3, 5, 6, 100, 997};
    for (size_t t = 0; t < sizeof firsts / sizeof firsts[0]; t++) {
        size_t f = firsts[t], n = N - f;
        drq_normal_at(key, f, n, part);
        bad += memcmp(part, full + f, n * sizeof(float)) != 0;
        drq_normal_at(key, f, 1, part);
        bad += memcmp(part, full + f, sizeof(float)) != 0;
        drq_uniform_at(key, f, n, -0.5f, 0.5f, part);
        bad += memcmp(part, ufull + f, n * sizeof(float)) != 0;
    }
    CHECK_MSG(bad == 0, "offset slice differs from the full draw (%d cases)", bad);

    /* "batch": images drawn one at a time equal images drawn in any order */
    float a[3][16], b[16];
    for (int img = 0; img < 3; img++) drq_normal(drq_key(9, (uint64_t)img, 1), 16, a[img]);
    drq_normal(drq_key(9, 1, 1), 16, b);
    CHECK(memcmp(a[1], b, sizeof b) == 0);
    CHECK(memcmp(a[0], a[1], sizeof b) != 0 && memcmp(a[1], a[2], sizeof b) != 0);

    /* determinism */
    drq_normal(key, N, part);
    CHECK(memcmp(part, full, N * sizeof(float)) == 0);
    /* a different stream, image or seed gives different numbers */
    drq_normal(drq_key(9, 4321, drq_stream_reverse(43)), N, part);
    int same = 0;
    for (int i = 0; i < N; i++) same += part[i] == full[i];
    CHECK_MSG(same < 5, "%d equal elements between streams 1042 and 1043", same);
    free(full);
    free(part);
    free(ufull);
}

static void test_normal_stats(void) {
    enum { N = 1000000 };
    float *z = xmalloc(N * sizeof(float));
    drq_normal(drq_key(2024, 7, DRQ_STREAM_FORWARD_EPS), N, z);
    double s1 = 0, s2 = 0, s4 = 0, in1 = 0, pair = 0, lag = 0, zmax = 0;
    int nonfinite = 0;
    for (int i = 0; i < N; i++) {
        double v = z[i];
        if (!isfinite(v)) nonfinite++;
        s1 += v;
        s2 += v * v;
        s4 += v * v * v * v;
        in1 += fabs(v) < 1.0;
        if (fabs(v) > zmax) zmax = fabs(v);
        if (i % 2 == 0) pair += v * z[i + 1];  /* the two halves of one Box–Muller pair */
        if (i % 4 == 1) lag += v * z[i + 1];   /* across pairs inside a block */
    }
    double mean = s1 / N, var = s2 / N - mean * mean, kurt = s4 / N / (var * var);
    CHECK_EQ_INT(nonfinite, 0);
    /* standard errors at N = 1e6: mean 1.0e-3, var 1.4e-3, P(|z|<1) 4.7e-4,
     * kurtosis ≈ 1e-2, correlations 1.4e-3 (pairs) / 2e-3 (lag): bounds ≈ 5 s.e. */
    CHECK_LE(fabs(mean), 5e-3, "normal mean");
    CHECK_LE(fabs(var - 1.0), 7e-3, "normal variance - 1");
    CHECK_LE(fabs(in1 / N - 0.682689492), 2.5e-3, "P(|z| < 1) - 0.6827");
    CHECK_LE(fabs(kurt - 3.0), 0.05, "normal kurtosis - 3");
    CHECK_LE(fabs(pair / (N / 2)), 7e-3, "corr(z0, z1) within a pair");
    CHECK_LE(fabs(lag / (N / 4)), 1e-2, "corr(z1, z2) across pairs");
    /* Box–Muller with u1 >= 2^-32 bounds |z| by sqrt(64 ln 2) = 6.6604 */
    CHECK_LE(zmax, 6.6604, "max |z|");
    CHECK_CMP_DBL(zmax, >, 4.0); /* 1e6 normals reach 4σ with overwhelming probability */
    free(z);
}

static void test_uniform_stats(void) {
    enum { N = 1000000 };
    float *u = xmalloc(N * sizeof(float));
    drq_uniform(drq_key(1, 2, drq_stream_uniform_delta(0)), N, 0.0f, 1.0f, u);
    double s1 = 0, s2 = 0, lo = 1, hi = 0;
    int out = 0;
    for (int i = 0; i < N; i++) {
        if (!(u[i] >= 0.0f && u[i] < 1.0f)) out++;
        s1 += u[i];
        s2 += (double)u[i] * u[i];
        if (u[i] < lo) lo = u[i];
        if (u[i] > hi) hi = u[i];
    }
    CHECK_EQ_INT(out, 0);
    double mean = s1 / N, var = s2 / N - mean * mean;
    CHECK_LE(fabs(mean - 0.5), 1.5e-3, "uniform mean - 1/2"); /* s.e. 2.9e-4 */
    CHECK_LE(fabs(var - 1.0 / 12), 1.5e-3, "uniform variance - 1/12");
    CHECK_MSG(lo < 1e-4 && hi > 1 - 1e-4, "lo %.9g (want < 1e-4), hi %.9g (want > 1 - 1e-4)", (double)lo, (double)hi);

    const float eps = 8.0f / 255.0f;
    drq_uniform(drq_key(1, 2, DRQ_STREAM_PGD_START), N, -eps, eps, u);
    out = 0;
    s1 = 0;
    for (int i = 0; i < N; i++) {
        if (!(u[i] >= -eps && u[i] <= eps)) out++;
        s1 += u[i];
    }
    CHECK_EQ_INT(out, 0);
    CHECK_LE(fabs(s1 / N), 5 * eps * 0.58 / 1000, "uniform(-eps, eps) mean");
    free(u);
}

int main(void) {
    test_kat();
    test_key();
    test_derived();
    test_box_muller();
    test_layout();
    test_independence();
    test_normal_stats();
    test_uniform_stats();
    return CHECK_DONE();
}
