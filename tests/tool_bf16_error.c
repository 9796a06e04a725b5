/* tool_bf16_error — the error of "precision": "bf16" against fp32 for one
 * guided-unet forward and one input-VJP on the CPU (issue 17; the numbers in
 * docs/bench.md "bf16 for the ImageNet UNet"):
 *
 *   tool_bf16_error [CONFIG [T [THREADS [BUDGET_MIB]]]]
 *
 * CONFIG as for drq model --config (default imagenet256), random weights
 * (seed 1234, the same draws for both models; bf16 rounds them at load), one
 * image x uniform in [−1, 1], step index T (default 500), grad_y standard
 * normal; BUDGET_MIB (default 2048) is the model's memory budget
 * (checkpointing inside the UNet, bit-identical results).  The fp32 model runs
 * first and is freed before the bf16 one loads.  Prints the relative L2 error
 * ‖bf16 − fp32‖ / ‖fp32‖ and the largest absolute error of the output (ε and
 * the variance channels separately when learn_sigma) and of grad_x, and the
 * seconds of each pass.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "worker/models/models.h"
#include "rand.h"

static double rel(const float *a, const float *b, size_t n, double *maxabs) {
    double d = 0, r = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)a[i] - b[i];
        d += e * e, r += (double)b[i] * b[i], m = fmax(m, fabs(e));
    }
    *maxabs = m;
    return sqrt(d / r);
}

/* forward and input-VJP; y and gx get the results, secs the two times */
static int run(const guided_unet_config *c, int bf16, size_t budget, const Tensor *x, float t, const Tensor *gy,
               Tensor *y, Tensor *gx, double secs[2]) {
    drq_err err = {{0}};
    guided_unet_config cc = *c;
    cc.bf16 = bf16;
    guided_unet *m = guided_unet_load(&cc, NULL, 1234, DRQ_CPU, &err);
    if (!m) {
        fprintf(stderr, "tool_bf16_error: %s\n", err.msg);
        return 1;
    }
    guided_unet_set_mem_budget(m, budget);
    double t0 = drq_clock_mono();
    guided_unet_forward(m, x, &t, y);
    double t1 = drq_clock_mono();
    guided_unet_backward(m, gy, gx);
    secs[0] = t1 - t0, secs[1] = drq_clock_mono() - t1;
    fprintf(stderr, "%s: %zu parameters, forward %.1f s, input-VJP %.1f s%s\n", bf16 ? "bf16" : "fp32",
            guided_unet_param_count(m), secs[0], secs[1], guided_unet_checkpointed(m) ? " (checkpointed)" : "");
    guided_unet_free(m);
    return 0;
}

int main(int argc, char **argv) {
    const char *cfg = argc > 1 ? argv[1] : "imagenet256";
    float t = argc > 2 ? (float)atof(argv[2]) : 500.0f;
    int threads = argc > 3 ? atoi(argv[3]) : 0;
    size_t budget = (size_t)(argc > 4 ? atol(argv[4]) : 2048) << 20;
    drq_set_threads(threads);
    drq_err err = {{0}};
    guided_unet_config c;
    if (guided_unet_config_parse(cfg, &c, &err)) {
        fprintf(stderr, "tool_bf16_error: %s\n", err.msg);
        return 1;
    }
    int S = c.image_size, oc = c.learn_sigma ? 6 : 3;
    Tensor x = tensor_new(1, 3, S, S), gy = tensor_new(1, oc, S, S);
    for (size_t i = 0; i < tensor_numel(&x); i++) x.data[i] = (float)urand_sym();
    for (size_t i = 0; i < tensor_numel(&gy); i++) gy.data[i] = nrand();
    Tensor y32 = tensor_new(1, oc, S, S), y16 = tensor_new(1, oc, S, S);
    Tensor g32 = tensor_new(1, 3, S, S), g16 = tensor_new(1, 3, S, S);
    double s32[2], s16[2];
    if (run(&c, 0, budget, &x, t, &gy, &y32, &g32, s32) || run(&c, 1, budget, &x, t, &gy, &y16, &g16, s16)) return 1;
    size_t plane = (size_t)S * S, ny = tensor_numel(&y32), nx = tensor_numel(&x);
    printf("config %s, t %g, one image, threads %d\n", cfg, t, drq_get_threads());
    double e, ma;
    e = rel(y16.data, y32.data, ny, &ma);
    printf("output (all %d channels): rel L2 %.3e, max abs %.3e\n", oc, e, ma);
    if (oc == 6) {
        e = rel(y16.data, y32.data, 3 * plane, &ma);
        printf("  eps (channels 0-2):     rel L2 %.3e, max abs %.3e\n", e, ma);
        e = rel(y16.data + 3 * plane, y32.data + 3 * plane, 3 * plane, &ma);
        printf("  variance (channels 3-5): rel L2 %.3e, max abs %.3e\n", e, ma);
    }
    e = rel(g16.data, g32.data, nx, &ma);
    printf("input-VJP grad_x:         rel L2 %.3e, max abs %.3e\n", e, ma);
    printf("seconds: fp32 forward %.1f, VJP %.1f; bf16 forward %.1f, VJP %.1f\n", s32[0], s32[1], s16[0], s16[1]);
    tensor_free(&x), tensor_free(&gy), tensor_free(&y32), tensor_free(&y16), tensor_free(&g32), tensor_free(&g16);
    return 0;
}
