/* cmd_purify.c — `drq purify SPEC.json --purifier NAME --seed S --in IN --out OUT`:
 * writes y = P_ω(x) (ω = the seed's noise, keyed per image by its index in
 * IN: 0…N−1 plus --image-offset) and, when IN has grad_y, the full VJP
 * grad_x, on the CPU or a GPU (--device; the tensors stay in host memory,
 * the purifier copies them).  For users' debugging and for tests.  The last
 * line on stderr gives the process's peak resident set (VmHWM of
 * /proc/self/status: this program's own, whatever its parent used), which
 * make bench reports for the full-gradient pass; with it the wall seconds of
 * the forward and of the backward (forward_s=, backward_s=).  --mem-budget MIB
 * is drq run's: checkpointing inside the ADM UNet (engine_set_mem_budget). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/safetensors.h"
#include "../common/spec.h"
#include "worker/eval/engine.h"
#include "cli.h"

/* VmHWM in KiB, or -1 where /proc does not tell. */
static long peak_rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kib = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kib;
}

static int usage(void) {
    fprintf(stderr, "usage: drq purify SPEC.json --purifier NAME --seed S --in IN.safetensors --out OUT.safetensors\n"
                    "                  [--image-offset K] [--threads N] [--device cpu|cuda:N] [--mem-budget MIB]\n"
                    "IN holds x (N×C×H×W in [0,1]) and optionally grad_y; OUT gets y and, with grad_y, grad_x.\n");
    return 1;
}

int cmd_purify(int argc, char **argv) {
    const char *spec_path = NULL, *name = NULL, *in = NULL, *out = NULL, *device = "cpu";
    long long seed = -1, offset = 0;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (i + 1 < argc && !strcmp(k, "--purifier")) name = argv[++i];
        else if (i + 1 < argc && !strcmp(k, "--seed")) seed = strtoll(argv[++i], NULL, 10);
        else if (i + 1 < argc && !strcmp(k, "--in")) in = argv[++i];
        else if (i + 1 < argc && !strcmp(k, "--out")) out = argv[++i];
        else if (i + 1 < argc && !strcmp(k, "--image-offset")) offset = strtoll(argv[++i], NULL, 10);
        else if (i + 1 < argc && !strcmp(k, "--threads")) threads = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(k, "--device")) device = argv[++i];
        else if (i + 1 < argc && !strcmp(k, "--mem-budget")) {
            drq_err merr;
            if (engine_set_mem_budget(argv[++i], &merr)) {
                fprintf(stderr, "drq purify: %s\n", merr.msg);
                return 1;
            }
        }
        else if (k[0] != '-' && !spec_path) spec_path = k;
        else return usage();
    }
    if (!spec_path || !name || !in || !out || seed < 0) return usage();
    drq_set_threads(threads);
    drq_err err = {{0}};
    drq_spec spec = {0};
    st_file fin = {0};
    engine_models em;
    int rc = 1, pi = -1;
    if (engine_set_device(device, &err) || drq_spec_load(spec_path, &spec, &err)) goto fail;
    for (int i = 0; i < spec.npurifiers; i++)
        if (!strcmp(spec.purifiers[i].name, name)) pi = i;
    if (pi < 0) {
        drq_errf(&err, "--purifier: no purifier named '%s' in %s", name, spec_path);
        goto fail;
    }
    if (engine_models_get(&spec, 0, &em, &err) || st_load(in, &fin, &err)) goto fail;
    const st_tensor *tx = st_find(&fin, "x"), *tg = st_find(&fin, "grad_y");
    if (!tx || tx->ndim != 4 || tx->shape[0] < 1) {
        drq_errf(&err, "%s: needs a tensor 'x' of shape N×C×H×W", in);
        goto fail;
    }
    if (tg && (tg->ndim != 4 || tg->numel != tx->numel)) {
        drq_errf(&err, "%s: 'grad_y' must have the shape of 'x'", in);
        goto fail;
    }
    int n = (int)tx->shape[0];
    Tensor x = tensor_wrap(tx->data, n, (int)tx->shape[1], (int)tx->shape[2], (int)tx->shape[3]);
    purify_config pc = engine_purify_config(&spec.purifiers[pi]);
    purifier *p = engine_purifier_new(&em, &pc);
    uint64_t *om = xmalloc(sizeof(uint64_t) * n);
    int64_t *im = xmalloc(sizeof(int64_t) * n);
    for (int i = 0; i < n; i++) om[i] = (uint64_t)seed, im[i] = offset + i;
    Tensor y = tensor_new(x.n, x.c, x.h, x.w), gx = {0};
    double t0 = drq_clock_mono();
    purifier_forward(p, &x, om, im, tg != NULL, &y, NULL);
    double t1 = drq_clock_mono(), t2 = t1;
    st_out outs[2] = {{"y", 4, {x.n, x.c, x.h, x.w}, y.data}};
    int nout = 1;
    if (tg) {
        gx = tensor_new(x.n, x.c, x.h, x.w);
        Tensor gy = tensor_wrap(tg->data, x.n, x.c, x.h, x.w);
        purifier_backward(p, &gy, &gx);
        t2 = drq_clock_mono();
        outs[nout++] = (st_out){"grad_x", 4, {x.n, x.c, x.h, x.w}, gx.data};
    }
    rc = st_save(out, outs, nout, &err) ? 1 : 0;
    purifier_free(p);
    free(om), free(im);
    tensor_free(&y), tensor_free(&gx);
    if (rc) goto fail;
    st_free(&fin);
    drq_spec_free(&spec);
    fprintf(stderr, "drq purify: forward_s=%.3f backward_s=%.3f\n", t1 - t0, t2 - t1);
    fprintf(stderr, "drq purify: peak_rss_kib=%ld\n", peak_rss_kib());
    return 0;
fail:
    fprintf(stderr, "drq purify: %s\n", err.msg);
    st_free(&fin);
    drq_spec_free(&spec);
    return 1;
}
