/* isa.c — the instruction set the CPU backend computes with.
 *
 * oneDNN picks its kernels at run time by the CPU (lowered by
 * ONEDNN_MAX_CPU_ISA).  drq's own loops (kernels/cpu/ops_cpu.c) are built
 * three times — x86-64-v2 (SSE4.2), x86-64-v3 (AVX2) and x86-64-v4
 * (AVX-512) — and cpu_backend_select takes the build that matches oneDNN's
 * choice, so the binary is portable (the Makefile's default ARCH is
 * x86-64-v2) and ONEDNN_MAX_CPU_ISA=AVX2 on an AVX-512 machine runs exactly
 * what an AVX2 machine runs, in drq's loops as in oneDNN's.
 */
#include <dnnl.h>

#include "cpu.h"

const char *cpu_isa_name(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "x86_64";
    }
}

const drq_backend *cpu_backend_select(void) {
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    /* the values are bit sets: each ISA includes the ones below it */
    if ((isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core) return &drq_backend_cpu_avx512;
    if ((isa & dnnl_cpu_isa_avx2) == dnnl_cpu_isa_avx2) return &drq_backend_cpu_avx2;
    return &drq_backend_cpu_base;
}
