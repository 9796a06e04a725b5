/* cmd_devices.c — `drq devices`: what this build and machine can run on
 * (the CPU always; each visible GPU when the CUDA plugin loads).  Exits 0
 * whatever it finds: a missing plugin or CUDA library is reported, not an
 * error of this command. */
#include <stdio.h>

#include "../kernels/cuda_plugin.h"
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
    drq_err err;
    const drq_cuda_plugin *p = drq_cuda_plugin_load(&err);
    if (!p) {
        printf("cuda: plugin not loadable: %s\n", err.msg);
        return 0;
    }
    printf("cuda: plugin %s loaded\n", drq_cuda_plugin_path());
    int n = p->device_count();
    if (!n) {
        const char *why = p->init_error();
        printf("cuda: no GPU visible to this process%s%s%s\n", why ? " (" : "", why ? why : "", why ? ")" : "");
    }
    for (int i = 0; i < n; i++) {
        drq_device_sel g = {DRQ_CUDA, i};
        if (drq_device_bind(&g, &err)) {
            printf("cuda:%d: %s\n", i, err.msg);
            continue;
        }
        drq_device_describe(&g, buf, sizeof buf);
        printf("cuda:%d: %s\n", i, buf);
    }
    return 0;
}
