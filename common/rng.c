/* rng.c — see rng.h and docs/seeds.md. */
#include "rng.h"

#include <math.h>

#include "philox.h"

void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    drq_philox4x32_10(ctr, key, out);
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

void drq_block(uint64_t key, uint64_t block, uint32_t out[4]) { drq_philox_block(key, block, out); }

void drq_box_muller(uint32_t x1, uint32_t x2, float *z0, float *z1) { drq_philox_box_muller(x1, x2, z0, z1); }

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
