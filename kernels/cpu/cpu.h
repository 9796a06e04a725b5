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

#endif
