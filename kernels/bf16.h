/* bf16.h — rounding a float32 to the nearest bfloat16, kept as a float32.
 *
 * bfloat16 is float32's upper 16 bits (sign, 8 exponent bits, 7 stored
 * mantissa bits: 8 significant bits).  drq_bf16_round(x) is the float32 whose
 * lower 16 bits are zero nearest to x, ties to even (IEEE round-to-nearest-
 * even, as PyTorch's x.to(torch.bfloat16) and CUDA's __float2bfloat16_rn):
 * subnormals round like any other value (bf16 has float32's exponent range,
 * so they stay subnormal or become 0 / the smallest normal), ±0 and ±inf are
 * kept, a finite value at or above 0x1.ffp127 in magnitude (halfway between
 * bf16's largest finite value 0x1.fep127 and the next step) becomes ±inf,
 * and a NaN stays a NaN (quiet, its sign and upper payload kept).
 *
 * This is the one scalar formula of the round_bf16 op (kernels/ops.h): the
 * CPU backend's loop (kernels/cpu/ops_cpu.c) and the CUDA kernel body
 * (kernels/cuda/kern.h K_round_bf16) both call it, and params.c rounds the
 * weights of a bf16 model with it at load.
 */
#ifndef DRQ_BF16_H
#define DRQ_BF16_H

#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define DRQ_BF16_HD __host__ __device__ __forceinline__
#else
#define DRQ_BF16_HD static inline
#endif

DRQ_BF16_HD float drq_bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) { /* NaN: keep it a NaN (its payload may sit in the low bits only) */
        u = (u | 0x00400000u) & 0xffff0000u;
    } else { /* add half an ulp of bf16 minus one, plus the kept lsb (ties to even), then truncate */
        u += 0x7fffu + ((u >> 16) & 1u);
        u &= 0xffff0000u;
    }
    memcpy(&x, &u, sizeof u);
    return x;
}

#endif
