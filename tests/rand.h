/* rand.h — the deterministic random inputs of the C tests: xorshift64*
 * uniforms, Box–Muller normals and random tensors.  One state per test
 * program (each includes this once); tests set rand_state to vary it.
 * Every C test draws its random inputs here (no private generators). */
#ifndef DRQ_TEST_RAND_H
#define DRQ_TEST_RAND_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "../kernels/tensor.h"

static uint64_t rand_state = 0x9E3779B97F4A7C15ull;

/* uniform in [0, 1) */
static inline double urand(void) {
    rand_state ^= rand_state >> 12, rand_state ^= rand_state << 25, rand_state ^= rand_state >> 27;
    return (double)((rand_state * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}
/* uniform in [-1, 1) */
static inline double urand_sym(void) { return 2 * urand() - 1; }
/* standard normal */
static inline float nrand(void) {
    return (float)(sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()));
}
/* a CPU tensor of standard normals */
static inline Tensor rnd(int n, int c, int h, int w) {
    Tensor t = tensor_new(n, c, h, w);
    for (size_t i = 0; i < tensor_numel(&t); i++) t.data[i] = nrand();
    return t;
}

#endif
