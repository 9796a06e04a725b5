/* cuda_bench_pgd.c — `make bench-cuda` helper: time of one full-gradient PGD
 * step (fixed ω, DDPM purifier at t*, CIFAR-10 UNet + WRN-28-10 on random
 * weights) on a device, per image, at a given batch.
 *
 *   cuda_bench_pgd --device cuda:0 --batch B [--tstar 100] [--steps 2] [--precision tf32|fp32]
 *
 * Prints one line: device batch tstar s_per_step_per_image unet_evals_per_step_per_image.
 * The first step warms plans and buffers and is not timed.  tests/ref/bench_cuda.py
 * turns it into images per hour for PGD-40 and achieved TFLOP/s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/device.h"
#include "worker/eval/attack.h"

int main(int argc, char **argv) {
    const char *device = "cpu", *prec = "tf32";
    int batch = 8, tstar = 100, steps = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--device")) device = argv[i + 1];
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--tstar")) tstar = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--precision")) prec = argv[i + 1];
        else {
            fprintf(stderr, "cuda_bench_pgd: unknown option %s\n", argv[i]);
            return 1;
        }
    }
    if (batch < 1 || tstar < 1 || tstar > 1000 || steps < 2) {
        fprintf(stderr, "cuda_bench_pgd: need --batch ≥ 1, --tstar in 1..1000, --steps ≥ 2\n");
        return 1;
    }
    drq_err err = {{0}};
    drq_device_sel d;
    if (drq_device_parse(device, &d, &err)) {
        fprintf(stderr, "cuda_bench_pgd: %s\n", err.msg);
        return 1;
    }
    if (d.kind != DRQ_CPU && drq_device_set_precision(prec)) {
        fprintf(stderr, "cuda_bench_pgd: --precision: expected tf32 or fp32\n");
        return 1;
    }
    unet_config uc;
    wrn_config wc;
    if (unet_config_parse("cifar10", &uc, &err) || wrn_config_parse("cifar10", &wc, &err)) {
        fprintf(stderr, "cuda_bench_pgd: %s\n", err.msg);
        return 1;
    }
    unet *u = unet_load_on(&uc, NULL, 11, d.kind, &err);
    wrn *w = wrn_load_on(&wc, NULL, 12, d.kind, &err);
    if (!u || !w) {
        fprintf(stderr, "cuda_bench_pgd: %s\n", err.msg);
        return 1;
    }
    purify_config pc = {.kind = PURIFY_DDPM, .t_star = tstar, .clamp_out = 1};
    purifier *p = purifier_new(u, &pc);
    classifier *cw = classifier_wrap_wrn(w);
    attack_models am = {cw, p, 10, NULL};
    attack_config ac = {.eps = 8.0 / 255, .steps = steps, .stepsize = 2.0 / 255, .random_start = 1, .seed = 1};
    Tensor x = tensor_new(batch, 3, 32, 32);
    for (size_t i = 0; i < tensor_numel(&x); i++) x.data[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
    int *label = malloc(sizeof(int) * batch);
    int64_t *image = malloc(sizeof(int64_t) * batch);
    for (int i = 0; i < batch; i++) label[i] = i % 10, image[i] = i;
    attack_state st;
    attack_begin(&ac, &x, image, &st);
    attack_step(&ac, &am, &x, label, image, &st); /* warm-up */
    drq_device_sync(&d);
    long ev0 = purifier_unet_evals(p);
    double t0 = drq_clock_mono();
    for (int s = 1; s < steps; s++) attack_step(&ac, &am, &x, label, image, &st);
    drq_device_sync(&d);
    double dt = (drq_clock_mono() - t0) / (steps - 1) / batch;
    double evals = (double)(purifier_unet_evals(p) - ev0) / (steps - 1) / batch;
    char desc[256];
    drq_device_describe(&d, desc, sizeof desc);
    printf("pgd device=\"%s\" batch=%d tstar=%d s_per_step_per_image=%.6g unet_evals_per_step_per_image=%.1f\n", desc,
           batch, tstar, dt, evals);
    attack_state_free(&st);
    attack_models_release(&am);
    purifier_free(p);
    classifier_free(cw), unet_free(u), wrn_free(w);
    tensor_free(&x), free(label), free(image);
    return 0;
}
