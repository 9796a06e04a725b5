/* cpu.h — the CPU backend's entry points, gathered into drq_backend_cpu by
 * kernels/cpu/backend.c.  Convolutions live in conv.c, everything else in
 * ops_cpu.c.  Loops are OpenMP-parallel; GEMMs go to OpenBLAS, convolutions
 * to the library chosen by measurement (see conv.c). */
#ifndef DRQ_CPU_H
#define DRQ_CPU_H

#include "../ops.h"

void cpu_conv2d_forward(Conv2d *c, const Tensor *x, Tensor *y);
void cpu_conv2d_backward_input(Conv2d *c, const Tensor *gy, Tensor *gx);
void cpu_conv2d_release(Conv2d *c);

#endif
