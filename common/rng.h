/* rng.h — seeded, counter-based noise: Philox4x32-10, per-image keys, Box–Muller.
 *
 * Every random number drq draws is a pure function of (seed, image index,
 * stream, element index).  Nothing depends on the batch an image sits in, on
 * the shard, on the worker, or on how many numbers were drawn before — see
 * docs/seeds.md for the whole scheme and docs/design.md §Seeds.
 *
 * Generator.  Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random
 * numbers: as easy as 1, 2, 3", SC'11; Random123), checked against the
 * Random123 known-answer vectors in tests/test_rng.c.
 *
 * Key.  key = drq_key(seed, image_index, stream)
 *           = (seed·83492791) XOR (image_index·73856093) XOR (stream·19349663)
 * in uint64 arithmetic (wrap-around); the Philox key is {key & 0xffffffff, key >> 32}.
 *
 * Counter.  Element e of a noise tensor (flattened NCHW index inside one
 * image) lives in counter block b = e / 4, lane j = e % 4:
 *     ctr = { (uint32)b, (uint32)(b >> 32), 0, 0 }
 *     x[0..3] = philox4x32_10(ctr, key)
 * Words 2 and 3 of the counter are always 0 (reserved).
 *   - uniform element 4b+j uses x[j];
 *   - normal elements 4b, 4b+1 are Box–Muller of the pair (x[0], x[1]),
 *     elements 4b+2, 4b+3 of the pair (x[2], x[3]).
 * So element e depends only on (key, e): a prefix of a longer draw equals
 * the shorter draw, and any slice can be generated on its own.
 *
 * Box–Muller (float32, identical formula on CPU and CUDA):
 *     u1 = ((float)x1 + 1.0f) * 0x1p-32f        in (0, 1], never 0
 *     u2 =  (float)x2         * 0x1p-32f        in [0, 1]
 *     r  = sqrtf(-2.0f * logf(u1))
 *     z0 = r * cosf(DRQ_TWO_PI_F * u2),  z1 = r * sinf(DRQ_TWO_PI_F * u2)
 * (uint32→float conversions round to nearest on both sides: plain casts in C,
 * __uint2float_rn on CUDA.)  logf, sqrtf, sinf, cosf exist under the same
 * names in CUDA device code; build the CUDA side WITHOUT --use_fast_math
 * (sqrtf then rounds correctly; logf/sinf/cosf are within 1–2 ulp of glibc),
 * so CPU and CUDA agree bit for bit on the integers and within a few float32
 * ulp on the normals.  No expression above contains a multiply-add, so FMA
 * contraction cannot change it.
 *
 * Uniform: u = (float)(x >> 8) * 0x1p-24f, exactly representable, in [0, 1);
 * drq_uniform returns fmaf(hi - lo, u, lo) (fmaf: one rounding on both CPU
 * and CUDA), which lies in [lo, hi] (hi itself only through rounding).
 */
#ifndef DRQ_RNG_H
#define DRQ_RNG_H

#include <stddef.h>
#include <stdint.h>

#include "philox.h" /* the generator itself, shared with the CUDA backend */

/* ---- stream numbers (the third argument of drq_key) ----------------------
 * Each use of randomness has its own number; never reuse one for another
 * purpose.  Table and rationale: docs/seeds.md.  Stream 0 is reserved. */
#define DRQ_STREAM_FORWARD_EPS      1u    /* forward noising ε to t* (normal) */
#define DRQ_STREAM_PGD_START        2u    /* PGD random start (Linf: uniform; L2: normal direction) */
#define DRQ_STREAM_PGD_START_RADIUS 4u    /* PGD L2 random start: radius (uniform element 0) */
#define DRQ_STREAM_REVERSE_BASE     1000u /* reverse step i noise z_i: 1000 + i, i in 0..999 */
#define DRQ_STREAM_UNIFORM_DELTA    3000u /* compression-rate uniform δ sample j: 3000 + j, j in 0..999 */
#define DRQ_STREAM_VARIANCE_DELTA   4000u /* variance analysis: uniform δ_j, 4000 + j, j in 0..999 */

static inline uint64_t drq_stream_reverse(unsigned step) { return DRQ_STREAM_REVERSE_BASE + step; }
static inline uint64_t drq_stream_uniform_delta(unsigned j) { return DRQ_STREAM_UNIFORM_DELTA + j; }
static inline uint64_t drq_stream_variance_delta(unsigned j) { return DRQ_STREAM_VARIANCE_DELTA + j; }

/* ---- derived seeds (purposes for drq_derived_seed) -----------------------
 * A "new ω" is a new *seed*, fed to drq_key in place of the job seed; all
 * streams above are then drawn under it. */
#define DRQ_PURPOSE_FRESH     1u /* fresh mode: ω at PGD step s          (a = s, b = 0) */
#define DRQ_PURPOSE_EOT       2u /* reserved: EOT draw k at step s uses DRQ_PURPOSE_FRESH (a = s, b = k) */
#define DRQ_PURPOSE_FINAL     3u /* final evaluation vote m (random modes) (a = m, b = 0) */
#define DRQ_PURPOSE_VARIANCE  4u /* variance analysis: ω_k              (a = k, b = 0) */
#define DRQ_PURPOSE_GRADCORR  5u /* gradcorr: a = 1 fixed_other, 2 fresh (b = 0); a = 3 eot draw b */

/* Philox4x32-10 block function (Random123 philox4x32_R with R = 10). */
void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* Per-image noise key (docs/design.md §Seeds): (seed·83492791) ^ (image·73856093) ^ (stream·19349663). */
uint64_t drq_key(uint64_t seed, uint64_t image_index, uint64_t stream);

/* splitmix64 finalizer (Steele, Lea, Flood 2014; Vigna's splitmix64.c):
 * z += 0x9e3779b97f4a7c15; z = (z^(z>>30))·0xbf58476d1ce4e5b9;
 * z = (z^(z>>27))·0x94d049bb133111eb; return z^(z>>31). */
uint64_t drq_splitmix64(uint64_t z);

/* A new seed derived from a job seed for one purpose:
 *   drq_splitmix64(drq_splitmix64(drq_splitmix64(drq_splitmix64(seed) ^ purpose) ^ a) ^ b)
 * For fixed (purpose, a, b) it is a bijection of seed. */
uint64_t drq_derived_seed(uint64_t seed, uint64_t purpose, uint64_t a, uint64_t b);

/* The 4 raw words of counter block b under key (see "Counter" above). */
void drq_block(uint64_t key, uint64_t block, uint32_t out[4]);

/* Box–Muller of one pair of words (see above). */
void drq_box_muller(uint32_t x1, uint32_t x2, float *z0, float *z1);

/* out[i] = standard normal element (first + i) of key, i < n. */
void drq_normal_at(uint64_t key, uint64_t first, size_t n, float *out);
/* out[i] = uniform element (first + i) of key in [lo, hi], i < n. */
void drq_uniform_at(uint64_t key, uint64_t first, size_t n, float lo, float hi, float *out);

/* Elements 0..n-1. */
void drq_normal(uint64_t key, size_t n, float *out);
void drq_uniform(uint64_t key, size_t n, float lo, float hi, float *out);

#endif
