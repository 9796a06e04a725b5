/* cmd_model.c — `drq model run|bench`: running a converted checkpoint on
 * given inputs (users checking a conversion; parity tests), and timing the
 * models on random weights (make bench).
 *
 *   drq model run --arch ddpm-unet|guided-unet|wrn|resnet50 --config cifar10|imagenet|imagenet256|FILE.json|'{json}'
 *                 --weights W.safetensors --in IN.safetensors --out OUT.safetensors [--threads N]
 *   drq model bench --arch ddpm-unet|guided-unet|wrn|resnet50 --config C --batch B [--repeat R] [--vjp] [--threads N] [--res R]
 *   drq model peak [--threads N] [--size N] [--repeat R]
 * bench prints seconds per image and the achieved GFLOP/s (the forward FLOPs
 * of worker/models/flops.c, none yet for the guided-unet; a forward +
 * input-VJP counts as two forwards); classifiers run at --res (default:
 * ResNet-50 224, WRN 32); peak prints oneDNN sgemm's GFLOP/s at size³
 * (default 2048), the machine's measured peak that make bench compares every
 * model with.
 * run and bench take --device cpu|cuda:N and --precision tf32|fp32 (GPU
 * convolutions) or bf16 (guided-unet only: bf16 operands for its
 * convolutions, linear layers and attention matmuls, float32 accumulation,
 * kernels/ops.h "bf16 operands"; the numerics of bf16, not its speed or
 * memory: on a GPU the convolutions still run as float32 cuDNN on rounded
 * operands), and --mem-budget MIB (guided-unet: checkpoint inside the UNet
 * when the batch's block activations would pass MIB mebibytes; 0, the
 * default: never).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/safetensors.h"
#include "../kernels/device.h"
#include "kernels/cpu/cpu.h"
#include "worker/models/classifier.h"
#include "worker/models/models.h"
#include "cli.h"

typedef struct {
    const char *arch, *config, *weights, *in, *out, *device, *precision;
    int threads, batch, repeat, vjp, mem_budget_mib;
    int bf16; /* --precision bf16 (guided-unet) */
    int res, size; /* bench: a classifier's input resolution (0: its default); peak: the GEMM size */
    drq_device_sel dev;
} model_args;

static int usage(void) {
    fprintf(stderr,
            "usage: drq model run --arch ddpm-unet|guided-unet|wrn|resnet50 --config cifar10|imagenet|imagenet256|FILE.json|'{json}'\n"
            "                     --weights W.safetensors --in IN.safetensors --out OUT.safetensors [--threads N]\n"
            "       drq model bench --arch ddpm-unet|guided-unet|wrn|resnet50 --config C --batch B [--repeat R] [--vjp] [--threads N] [--res R]\n"
            "       drq model peak [--threads N] [--size N] [--repeat R]\n"
            "       either: [--device cpu|cuda:N] [--precision tf32|fp32|bf16] [--mem-budget MIB (guided-unet)]\n"
            "--precision tf32|fp32: the GPU's convolutions; bf16 (guided-unet): operands of every convolution,\n"
            "linear layer and attention matmul rounded to bfloat16, float32 accumulation (the numerics of GPU\n"
            "bf16 autocast, not its speed or memory: on a GPU the convolutions still run as float32 cuDNN).\n"
            "IN holds x (N×C×H×W float32), for the UNet also t (N step indices), optionally grad_y;\n"
            "OUT gets y, and grad_x when grad_y was given.\n");
    return 1;
}

static int parse(int argc, char **argv, model_args *a) {
    memset(a, 0, sizeof *a);
    a->threads = 0, a->batch = 1, a->repeat = 3, a->res = 0, a->size = 2048;
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i];
        const char **dst = !strcmp(k, "--arch") ? &a->arch : !strcmp(k, "--config") ? &a->config
                         : !strcmp(k, "--weights") ? &a->weights : !strcmp(k, "--in") ? &a->in
                         : !strcmp(k, "--out") ? &a->out : !strcmp(k, "--device") ? &a->device
                         : !strcmp(k, "--precision") ? &a->precision : NULL;
        int *idst = !strcmp(k, "--threads") ? &a->threads : !strcmp(k, "--batch") ? &a->batch
                  : !strcmp(k, "--repeat") ? &a->repeat : !strcmp(k, "--res") ? &a->res
                  : !strcmp(k, "--size") ? &a->size : !strcmp(k, "--mem-budget") ? &a->mem_budget_mib : NULL;
        if (!strcmp(k, "--vjp")) {
            a->vjp = 1;
        } else if ((dst || idst) && i + 1 < argc) {
            if (dst) *dst = argv[++i];
            else {
                char *end;
                long v = strtol(argv[++i], &end, 10);
                if (*end || v < 0 || v > 1 << 20) {
                    fprintf(stderr, "drq model: %s: expected a non-negative integer, got '%s'\n", k, argv[i]);
                    return -1;
                }
                *idst = (int)v;
            }
        } else {
            fprintf(stderr, "drq model: unknown or incomplete option '%s'\n", k);
            return -1;
        }
    }
    if (!strcmp(argv[1], "peak")) {
        if (a->size < 1 || a->size > 16384 || a->repeat < 1) {
            fprintf(stderr, "drq model peak: --size must be in 1…16384 and --repeat at least 1\n");
            return -1;
        }
        return 0;
    }
    if (a->res > 4096) { /* 0: the classifier's default */
        fprintf(stderr, "drq model: --res: expected 1…4096, got %d\n", a->res);
        return -1;
    }
    if (!a->arch || !a->config) {
        fprintf(stderr, "drq model: --arch and --config are required\n");
        return -1;
    }
    if (strcmp(a->arch, "ddpm-unet") && strcmp(a->arch, "guided-unet") && !classifier_arch_known(a->arch)) {
        fprintf(stderr, "drq model: --arch: expected ddpm-unet, guided-unet, wrn or resnet50, got '%s'\n", a->arch);
        return -1;
    }
    if (a->mem_budget_mib && strcmp(a->arch, "guided-unet")) {
        fprintf(stderr, "drq model: --mem-budget: only the guided-unet checkpoints inside the model\n");
        return -1;
    }
    drq_err err;
    if (drq_device_parse(a->device ? a->device : "cpu", &a->dev, &err)) {
        fprintf(stderr, "drq model: %s\n", err.msg);
        return -1;
    }
    if (a->precision && strcmp(a->precision, "tf32") && strcmp(a->precision, "fp32") && strcmp(a->precision, "bf16")) {
        fprintf(stderr, "drq model: --precision: expected tf32, fp32 or bf16, got '%s'\n", a->precision);
        return -1;
    }
    a->bf16 = a->precision && !strcmp(a->precision, "bf16");
    if (a->bf16 && strcmp(a->arch, "guided-unet")) {
        fprintf(stderr, "drq model: --precision bf16: built for --arch guided-unet only\n");
        return -1;
    }
    if (a->precision && !a->bf16 && a->dev.kind != DRQ_CPU) drq_device_set_precision(a->precision);
    return 0;
}

/* The DDPM UNet, the ADM UNet or a classifier (worker/models/classifier.h). */
typedef struct {
    unet *u;
    guided_unet *g;
    classifier *c;
    unet_config uc;
    guided_unet_config gc;
    int is_wrn;
} any_model;

static int model_open(const model_args *a, st_file *weights, any_model *m, drq_err *err) {
    memset(m, 0, sizeof *m);
    if (!strcmp(a->arch, "ddpm-unet")) {
        if (unet_config_parse(a->config, &m->uc, err)) return -1;
        m->u = unet_load_on(&m->uc, weights, 1234, a->dev.kind, err);
        return m->u ? 0 : -1;
    }
    if (!strcmp(a->arch, "guided-unet")) {
        if (guided_unet_config_parse(a->config, &m->gc, err)) return -1;
        m->gc.bf16 = a->bf16;
        m->g = guided_unet_load(&m->gc, weights, 1234, a->dev.kind, err);
        if (m->g) guided_unet_set_mem_budget(m->g, (size_t)a->mem_budget_mib << 20);
        return m->g ? 0 : -1;
    }
    m->is_wrn = !strcmp(a->arch, "wrn");
    m->c = classifier_load(a->arch, a->config, weights, 1234, a->dev.kind, err);
    return m->c ? 0 : -1;
}

static void model_close(any_model *m) {
    unet_free(m->u);
    classifier_free(m->c);
    guided_unet_free(m->g);
}

static Tensor out_tensor(const any_model *m, const Tensor *x, drq_device dev) {
    if (m->g) return tensor_new_on(dev, x->n, guided_unet_out_channels(m->g), x->h, x->w);
    return m->u ? tensor_new_on(dev, x->n, m->uc.out_ch, x->h, x->w) : tensor_new_on(dev, x->n, classifier_num_classes(m->c), 1, 1);
}

static void forward(any_model *m, const Tensor *x, const float *t, Tensor *y) {
    if (m->u) unet_forward(m->u, x, t, y);
    else if (m->g) guided_unet_forward(m->g, x, t, y);
    else classifier_forward(m->c, x, y);
}

static void backward(any_model *m, const Tensor *gy, Tensor *gx) {
    if (m->u) unet_backward(m->u, gy, gx);
    else if (m->g) guided_unet_backward(m->g, gy, gx);
    else classifier_backward(m->c, gy, gx);
}

/* Checks IN's tensors against the model: x is N×C×H×W with the model's
 * channels (and resolution for the UNet), t has N entries, grad_y has the
 * output's shape. */
static int check_inputs(const any_model *m, const st_tensor *x, const st_tensor *t, const st_tensor *gy,
                        const char *path, drq_err *err) {
    if (!x) return drq_errf(err, "%s: no tensor 'x'", path);
    int cin = m->u ? m->uc.in_channels : m->g ? 3 : classifier_in_channels(m->c);
    int res = m->u ? m->uc.resolution : m->g ? m->gc.image_size : 0; /* 0: any size */
    if (x->ndim != 4 || x->shape[1] != cin || x->shape[0] < 1 || x->shape[2] < 1 || x->shape[3] < 1)
        return drq_errf(err, "%s: tensor 'x' must be N×%d×H×W", path, cin);
    if (res && (x->shape[2] != res || x->shape[3] != res))
        return drq_errf(err, "%s: tensor 'x' must be N×%d×%d×%d for this config", path, cin, res, res);
    if (m->is_wrn && (x->shape[2] < 4 || x->shape[3] < 4))
        return drq_errf(err, "%s: tensor 'x' is too small for the WRN (H, W ≥ 4)", path);
    if (res && (!t || t->numel != (size_t)x->shape[0]))
        return drq_errf(err, "%s: the UNet needs tensor 't' with %lld step indices", path, (long long)x->shape[0]);
    if (gy) {
        size_t oc = m->u ? (size_t)m->uc.out_ch : m->g ? (size_t)guided_unet_out_channels(m->g) : 0;
        size_t want = (size_t)x->shape[0] * (res ? oc * x->shape[2] * x->shape[3] : (size_t)classifier_num_classes(m->c));
        if (gy->numel != want || gy->shape[0] != x->shape[0])
            return drq_errf(err, "%s: tensor 'grad_y' must have the output's shape (%zu values)", path, want);
    }
    return 0;
}

static int run(const model_args *a) {
    drq_err err = {{0}};
    st_file w = {0}, in = {0};
    any_model m = {0};
    int rc = 1;
    if (!a->weights || !a->in || !a->out) return usage();
    if (st_load(a->weights, &w, &err) || st_load(a->in, &in, &err) || model_open(a, &w, &m, &err)) goto fail;
    const st_tensor *tx = st_find(&in, "x"), *tt = st_find(&in, "t"), *tg = st_find(&in, "grad_y");
    if (check_inputs(&m, tx, tt, tg, a->in, &err)) goto fail;
    drq_device dev = a->dev.kind;
    Tensor xh = tensor_wrap(tx->data, (int)tx->shape[0], (int)tx->shape[1], (int)tx->shape[2], (int)tx->shape[3]);
    Tensor x = tensor_clone_on(dev, &xh), yd = out_tensor(&m, &x, dev), y = out_tensor(&m, &x, DRQ_CPU), gx = {0};
    forward(&m, &x, tt ? tt->data : NULL, &yd);
    tensor_copy(&y, &yd);
    st_out outs[2] = {{"y", 4, {y.n, y.c, y.h, y.w}, y.data}};
    if (m.c) outs[0].ndim = 2;
    int nout = 1;
    if (tg) {
        Tensor gyh = tensor_wrap(tg->data, y.n, y.c, y.h, y.w), gy = tensor_clone_on(dev, &gyh);
        Tensor gxd = tensor_new_on(dev, x.n, x.c, x.h, x.w);
        backward(&m, &gy, &gxd);
        gx = tensor_clone_on(DRQ_CPU, &gxd);
        tensor_free(&gy), tensor_free(&gxd);
        outs[nout++] = (st_out){"grad_x", 4, {gx.n, gx.c, gx.h, gx.w}, gx.data};
    }
    rc = st_save(a->out, outs, nout, &err) ? 1 : 0;
    tensor_free(&x), tensor_free(&yd), tensor_free(&y), tensor_free(&gx);
    if (rc) goto fail;
    model_close(&m), st_free(&w), st_free(&in);
    return 0;
fail:
    fprintf(stderr, "drq model run: %s\n", err.msg);
    model_close(&m), st_free(&w), st_free(&in);
    return 1;
}

/* FLOPs of one forward per image at res (worker/models/flops.c); NaN when the
 * config does not parse (it did once, in model_open). */
static double model_flops(const model_args *a, const any_model *m, int res) {
    drq_err e;
    if (m->u) return unet_forward_flops(&m->uc);
    if (m->g) return NAN; /* no FLOP count of the ADM UNet yet */
    if (m->is_wrn) {
        wrn_config wc;
        return wrn_config_parse(a->config, &wc, &e) ? NAN : wrn_forward_flops(&wc, res);
    }
    resnet50_config rc;
    return resnet50_config_parse(a->config, &rc, &e) ? NAN : resnet50_forward_flops(&rc, res);
}

/* Times forward (and forward + input-VJP with --vjp) on random weights;
 * prints one line: arch config batch threads mode s_per_image params. */
static int bench(const model_args *a) {
    drq_err err = {{0}};
    any_model m;
    if (a->batch < 1) return usage();
    if (model_open(a, NULL, &m, &err)) {
        fprintf(stderr, "drq model bench: %s\n", err.msg);
        return 1;
    }
    /* classifiers at --res, by default their dataset's size: ResNet-50 224 (ImageNet), WRN 32 (CIFAR-10) */
    int res = m.u ? m.uc.resolution : m.g ? m.gc.image_size : a->res ? a->res : m.is_wrn ? 32 : 224;
    int cin = m.u ? m.uc.in_channels : m.g ? 3 : classifier_in_channels(m.c);
    drq_device dev = a->dev.kind;
    Tensor xh = tensor_new(a->batch, cin, res, res);
    for (size_t i = 0; i < tensor_numel(&xh); i++) xh.data[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
    float *t = xmalloc(sizeof(float) * a->batch);
    for (int i = 0; i < a->batch; i++) t[i] = 99.0f - i;
    Tensor gyh = out_tensor(&m, &xh, DRQ_CPU);
    for (size_t i = 0; i < tensor_numel(&gyh); i++) gyh.data[i] = 1e-2f * (float)(i % 7);
    Tensor x = tensor_clone_on(dev, &xh), gy = tensor_clone_on(dev, &gyh), y = out_tensor(&m, &x, dev);
    Tensor gx = tensor_new_on(dev, a->batch, cin, res, res);
    double best = 1e30;
    for (int r = 0; r < a->repeat + 1; r++) { /* first round warms caches and plans */
        drq_device_sync(&a->dev);
        double t0 = drq_clock_mono();
        forward(&m, &x, t, &y);
        if (a->vjp) backward(&m, &gy, &gx);
        drq_device_sync(&a->dev);
        double dt = drq_clock_mono() - t0;
        if (r && dt < best) best = dt;
    }
    char desc[256];
    drq_device_describe(&a->dev, desc, sizeof desc);
    double flops = (a->vjp ? 2 : 1) * model_flops(a, &m, res);
    printf("drq %s %s batch=%d threads=%d mode=%s s_per_image=%.6g gflops=%.4g params=%zu device=\"%s\"\n", a->arch,
           a->config, a->batch, drq_get_threads(), a->vjp ? "fwd+vjp" : "fwd", best / a->batch,
           flops * a->batch / best / 1e9,
           m.u ? unet_param_count(m.u) : m.g ? guided_unet_param_count(m.g) : classifier_param_count(m.c), desc);
    tensor_free(&xh), tensor_free(&gyh), tensor_free(&x), tensor_free(&gx), tensor_free(&y), tensor_free(&gy), free(t);
    model_close(&m);
    return 0;
}

int cmd_model(int argc, char **argv) {
    model_args a;
    if (argc < 2) return usage();
    int is_run = !strcmp(argv[1], "run"), is_bench = !strcmp(argv[1], "bench"), is_peak = !strcmp(argv[1], "peak");
    if (!is_run && !is_bench && !is_peak) return usage();
    if (parse(argc, argv, &a)) return usage();
    drq_set_threads(a.threads);
    if (is_peak) {
        printf("drq sgemm size=%d threads=%d gflops=%.4g isa=%s\n", a.size, drq_get_threads(),
               cpu_sgemm_gflops(a.size, a.repeat), cpu_isa_name());
        return 0;
    }
    return is_run ? run(&a) : bench(&a);
}
