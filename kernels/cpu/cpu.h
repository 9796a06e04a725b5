/* cpu.h — the CPU backend's convolution entry points (conv.c), gathered
 * with the rest (ops_cpu.c) into drq_backend_cpu.  Loops are OpenMP-parallel;
 * GEMMs and convolutions go to oneDNN (see conv.c for the measurements). */
#ifndef DRQ_CPU_H
#define DRQ_CPU_H

#include "../ops.h"

void cpu_conv2d_forward(Conv2d *c, const Tensor *x, Tensor *y);
void cpu_conv2d_backward_input(Conv2d *c, const Tensor *gy, Tensor *gx);
void cpu_conv2d_release(Conv2d *c);

/* oneDNN's effective instruction set on this machine ("avx2",
 * "avx512_core", …; lowered by ONEDNN_MAX_CPU_ISA): the kernels, and so the
 * last bits of every result, follow it. */
const char *cpu_isa_name(void);

/* ops_cpu.c built for x86-64-v2, -v3 (AVX2) and -v4 (AVX-512) (the Makefile
 * names each table through CPU_OPS_TABLE); cpu_backend_select returns the
 * one matching oneDNN's instruction set (isa.c). */
extern const drq_backend drq_backend_cpu_base, drq_backend_cpu_avx2, drq_backend_cpu_avx512;
const drq_backend *cpu_backend_select(void);

/* GFLOP/s of oneDNN's sgemm at n × n × n on the current threads, best of
 * `repeat` after a warm-up (peak.c): the machine's measured peak. */
double cpu_sgemm_gflops(int n, int repeat);

#endif
