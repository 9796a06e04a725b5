/* cmd_devices.c — `drq devices`: what this build and machine can run on
 * (the CPU always; each visible GPU when the CUDA backend is built). */
#include <stdio.h>

#include "../kernels/device.h"
#include "cli.h"
#ifdef DRQ_HAVE_CUDA
#include "../kernels/cuda/cuda.h"
#endif

int cmd_devices(int argc, char **argv) {
    (void)argc, (void)argv;
    char buf[256];
    drq_device_sel cpu = {DRQ_CPU, 0};
    drq_device_describe(&cpu, buf, sizeof buf);
    printf("cpu: %s\n", buf);
#ifdef DRQ_HAVE_CUDA
    int n = drq_cuda_device_count();
    if (!n) printf("cuda: backend built, no GPU visible to this process\n");
    for (int i = 0; i < n; i++) {
        drq_device_sel g = {DRQ_CUDA, i};
        drq_err err;
        if (drq_device_bind(&g, &err)) {
            printf("cuda:%d: %s\n", i, err.msg);
            continue;
        }
        drq_device_describe(&g, buf, sizeof buf);
        printf("cuda:%d: %s\n", i, buf);
    }
#else
    printf("cuda: not built (make CUDA=1 where nvcc and cuDNN are installed)\n");
#endif
    return 0;
}
