/* cmd_devices.c — `drq devices`: what this build and machine can run on
 * (the CPU always; each visible GPU when the CUDA backend is built). */
#include <stdio.h>

#include "../kernels/device.h"
#include "cli.h"

int cmd_devices(int argc, char **argv) {
    (void)argc, (void)argv;
    char buf[256];
    drq_device_sel cpu = {DRQ_CPU, 0};
    drq_device_describe(&cpu, buf, sizeof buf);
    printf("cpu: %s\n", buf);
    if (!drq_device_cuda_built()) {
        printf("cuda: not built (make CUDA=1 where nvcc and cuDNN are installed)\n");
        return 0;
    }
    int n = drq_device_gpu_count();
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
    return 0;
}
