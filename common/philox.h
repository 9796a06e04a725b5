/* philox.h — the Philox4x32-10 block function and the Box–Muller pair of
 * drq's noise (common/rng.h), written once for the CPU (rng.c) and the CUDA
 * backend (kernels/cuda/ops_cuda.cu): the same source compiles for both, so
 * the two generators produce the same integers by construction.  The float
 * steps (logf, sqrtf, sinf, cosf) agree within a few float32 ulp; see rng.h.
 */
#ifndef DRQ_PHILOX_H
#define DRQ_PHILOX_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define DRQ_HD __host__ __device__ __forceinline__
#else
#define DRQ_HD static inline
#endif

#define DRQ_PHILOX_M0 0xD2511F53u
#define DRQ_PHILOX_M1 0xCD9E8D57u
#define DRQ_PHILOX_W0 0x9E3779B9u
#define DRQ_PHILOX_W1 0xBB67AE85u
#define DRQ_TWO_PI_F 6.28318530717958647692f /* 2π rounded to float32 (0x40c90fdb) */

/* Philox4x32-10 (Random123 philox4x32_R with R = 10) on counter c, key k. */
DRQ_HD void drq_philox4x32_10(const uint32_t c_in[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = c_in[0], c1 = c_in[1], c2 = c_in[2], c3 = c_in[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        if (r > 0) { /* key bump before every round but the first */
            k0 += DRQ_PHILOX_W0;
            k1 += DRQ_PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)DRQ_PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)DRQ_PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

/* The 4 words of counter block b under a 64-bit drq key (rng.h "Counter"). */
DRQ_HD void drq_philox_block(uint64_t key, uint64_t block, uint32_t out[4]) {
    const uint32_t k[2] = {(uint32_t)key, (uint32_t)(key >> 32)};
    const uint32_t c[4] = {(uint32_t)block, (uint32_t)(block >> 32), 0, 0};
    drq_philox4x32_10(c, k, out);
}

/* Box–Muller of one pair of words (rng.h).  No multiply-add appears, so FMA
 * contraction cannot change the result on either side. */
DRQ_HD void drq_philox_box_muller(uint32_t x1, uint32_t x2, float *z0, float *z1) {
    float u1 = ((float)x1 + 1.0f) * 0x1p-32f;
    float u2 = (float)x2 * 0x1p-32f;
    float r = sqrtf(-2.0f * logf(u1));
    float th = DRQ_TWO_PI_F * u2;
    *z0 = r * cosf(th);
    *z1 = r * sinf(th);
}

#endif
