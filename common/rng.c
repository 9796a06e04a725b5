/* rng.c — see rng.h and docs/seeds.md. */
#include "rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        if (r > 0) { /* key bump before every round but the first */
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

uint64_t drq_key(uint64_t seed, uint64_t image_index, uint64_t stream) {
    return (seed * UINT64_C(83492791)) ^ (image_index * UINT64_C(73856093)) ^
           (stream * UINT64_C(19349663));
}

uint64_t drq_splitmix64(uint64_t z) {
    z += UINT64_C(0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

uint64_t drq_derived_seed(uint64_t seed, uint64_t purpose, uint64_t a, uint64_t b) {
    uint64_t h = drq_splitmix64(seed);
    h = drq_splitmix64(h ^ purpose);
    h = drq_splitmix64(h ^ a);
    return drq_splitmix64(h ^ b);
}

void drq_block(uint64_t key, uint64_t block, uint32_t out[4]) {
    const uint32_t k[2] = {(uint32_t)key, (uint32_t)(key >> 32)};
    const uint32_t c[4] = {(uint32_t)block, (uint32_t)(block >> 32), 0, 0};
    philox4x32_10(c, k, out);
}

void drq_box_muller(uint32_t x1, uint32_t x2, float *z0, float *z1) {
    float u1 = ((float)x1 + 1.0f) * 0x1p-32f;
    float u2 = (float)x2 * 0x1p-32f;
    float r = sqrtf(-2.0f * logf(u1));
    float th = DRQ_TWO_PI_F * u2;
    *z0 = r * cosf(th);
    *z1 = r * sinf(th);
}

void drq_normal_at(uint64_t key, uint64_t first, size_t n, float *out) {
    size_t i = 0;
    while (i < n) {
        uint64_t e = first + i;
        unsigned j = (unsigned)(e % 4);
        uint32_t x[4];
        float z[4];
        drq_block(key, e / 4, x);
        drq_box_muller(x[0], x[1], &z[0], &z[1]);
        drq_box_muller(x[2], x[3], &z[2], &z[3]);
        for (; j < 4 && i < n; j++, i++) out[i] = z[j];
    }
}

void drq_uniform_at(uint64_t key, uint64_t first, size_t n, float lo, float hi, float *out) {
    const float span = hi - lo;
    size_t i = 0;
    while (i < n) {
        uint64_t e = first + i;
        unsigned j = (unsigned)(e % 4);
        uint32_t x[4];
        drq_block(key, e / 4, x);
        for (; j < 4 && i < n; j++, i++) {
            float u = (float)(x[j] >> 8) * 0x1p-24f;
            out[i] = fmaf(span, u, lo);
        }
    }
}

void drq_normal(uint64_t key, size_t n, float *out) { drq_normal_at(key, 0, n, out); }

void drq_uniform(uint64_t key, size_t n, float lo, float hi, float *out) {
    drq_uniform_at(key, 0, n, lo, hi, out);
}
