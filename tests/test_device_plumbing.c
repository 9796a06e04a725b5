/* test_device_plumbing.c — models, purifiers and attacks on a second device,
 * without a GPU.
 *
 * A stand-in backend takes the DRQ_CUDA slot (drq_backend_install): its
 * memory is host memory it allocates and tracks, its ops are the CPU
 * backend's, and before every op it checks that each tensor is tagged with
 * its device and lives in memory it allocated, that every parameter pointer
 * (weights, biases, norm affines, group-norm statistics) is its memory too,
 * and that the host arrays (timesteps, noise keys) are not.  A device
 * pointer the code forgot to allocate on the device, or a host pointer
 * handed to a device op, fails here as it would crash or misbehave on a GPU.
 * Results must equal the CPU run bit for bit (same kernels underneath), so
 * every copy between devices is exercised and checked:
 *   models (UNet and WRN fixtures) forward and VJP; every purifier kind with
 *   host and device inputs; PGD steps (fixed, eot, bpda) and the evaluation
 *   with votes through attack.c.
 */
#include <stdlib.h>
#include <string.h>

#define DRQ_OPS_BACKEND /* a stand-in backend: CPU.NAME(...) are table calls (kernels/ops.h) */
#include "../common/safetensors.h"
#include "../common/util.h"
#include "../kernels/ops.h"
#include "worker/eval/attack.h"
#include "check.h"
#include "fixture_model.h"
#include "rand.h"

/* =====================================================================
 * the stand-in device: tracked host memory, checked CPU ops
 * ===================================================================== */
typedef struct {
    char *p;
    size_t bytes;
} block;
static block *blocks;
static int nblocks, capblocks;
static long violations, device_ops;

static float *sd_alloc(size_t n) {
    size_t bytes = (n ? n : 1) * sizeof(float);
    float *p = calloc(1, bytes);
    if (nblocks == capblocks) blocks = realloc(blocks, sizeof(block) * (capblocks = capblocks ? 2 * capblocks : 256));
    blocks[nblocks++] = (block){(char *)p, bytes};
    return p;
}
static void sd_release(float *p) {
    for (int i = 0; i < nblocks; i++)
        if (blocks[i].p == (char *)p) {
            blocks[i] = blocks[--nblocks];
            free(p);
            return;
        }
    violations++;
    fprintf(stderr, "stand-in device: release of memory it did not allocate (%p)\n", (void *)p);
}
static int owned(const void *p) {
    for (int i = 0; i < nblocks; i++)
        if ((const char *)p >= blocks[i].p && (const char *)p < blocks[i].p + blocks[i].bytes) return 1;
    return 0;
}
static void sd_copy(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }

static void bad(const char *op, const char *what) {
    violations++;
    if (violations <= 20) fprintf(stderr, "stand-in device: %s: %s\n", op, what);
}
/* t must be a device tensor in device memory (NULL allowed where the op allows it) */
static void dt(const char *op, const Tensor *t, const char *name) {
    char m[160];
    snprintf(m, sizeof m, "tensor %s is not device memory", name);
    if (t && (t->dev != DRQ_CUDA || !owned(t->data))) bad(op, m);
}
/* p must be device memory (or NULL) / host memory */
static void dp(const char *op, const void *p, const char *name, int want_device) {
    char m[160];
    snprintf(m, sizeof m, "%s %s is %s memory", want_device ? "parameter" : "host array", name,
             want_device ? "host" : "device");
    if (p && owned(p) != want_device) bad(op, m);
}
#define DT(op, t) dt(op, t, #t)
#define DP(op, p) dp(op, p, #p, 1)
#define HP(op, p) dp(op, p, #p, 0)
#define CPU (*drq_backend_for(DRQ_CPU))

static void s_conv_f(Conv2d *c, const Tensor *x, Tensor *y) {
    device_ops++, DT("conv", x), DT("conv", y), DP("conv", c->w), DP("conv", c->b);
    CPU.conv2d_forward(c, x, y);
}
static void s_conv_b(Conv2d *c, const Tensor *gy, Tensor *gx) {
    device_ops++, DT("conv bwd", gy), DT("conv bwd", gx), DP("conv bwd", c->w);
    CPU.conv2d_backward_input(c, gy, gx);
}
static void s_conv_r(Conv2d *c) { CPU.conv2d_release(c); }
static void s_lin_f(const float *w, const float *b, int in, int out, const Tensor *x, Tensor *y) {
    device_ops++, DP("linear", w), DP("linear", b), DT("linear", x), DT("linear", y);
    CPU.linear_forward(w, b, in, out, x, y);
}
static void s_lin_b(const float *w, int in, int out, const Tensor *gy, Tensor *gx) {
    device_ops++, DP("linear bwd", w), DT("linear bwd", gy), DT("linear bwd", gx);
    CPU.linear_backward_input(w, in, out, gy, gx);
}
static void s_gn_f(const Tensor *x, int g, float eps, const float *gm, const float *bt, Tensor *y, float *st) {
    device_ops++, DT("group_norm", x), DT("group_norm", y), DP("group_norm", gm), DP("group_norm", bt);
    DP("group_norm", st);
    CPU.group_norm_forward(x, g, eps, gm, bt, y, st);
}
static void s_gn_b(const Tensor *x, const Tensor *gy, int g, const float *gm, const float *st, Tensor *gx) {
    device_ops++, DT("group_norm bwd", x), DT("group_norm bwd", gy), DT("group_norm bwd", gx);
    DP("group_norm bwd", gm), DP("group_norm bwd", st);
    CPU.group_norm_backward_input(x, gy, g, gm, st, gx);
}
static void s_bn_f(const Tensor *x, const float *sc, const float *sh, Tensor *y) {
    device_ops++, DT("batch_norm", x), DT("batch_norm", y), DP("batch_norm", sc), DP("batch_norm", sh);
    CPU.batch_norm_forward(x, sc, sh, y);
}
static void s_bn_b(const Tensor *gy, const float *sc, Tensor *gx) {
    device_ops++, DT("batch_norm bwd", gy), DT("batch_norm bwd", gx), DP("batch_norm bwd", sc);
    CPU.batch_norm_backward_input(gy, sc, gx);
}
#define UNARY(name, fn)                                  \
    static void name(const Tensor *x, Tensor *y) {       \
        device_ops++, DT(#fn, x), DT(#fn, y);            \
        CPU.fn(x, y);                                    \
    }
#define BINARY(name, fn)                                              \
    static void name(const Tensor *a, const Tensor *b, Tensor *y) {   \
        device_ops++, DT(#fn, a), DT(#fn, b), DT(#fn, y);             \
        CPU.fn(a, b, y);                                              \
    }
UNARY(s_swish_f, swish_forward)
BINARY(s_swish_b, swish_backward_input)
UNARY(s_relu_f, relu_forward)
BINARY(s_relu_b, relu_backward_input)
BINARY(s_add, add_forward)
BINARY(s_addc_f, add_channel_forward)
UNARY(s_up_f, upsample2x_forward)
UNARY(s_up_b, upsample2x_backward_input)
UNARY(s_pool_f, avgpool_global_forward)
UNARY(s_pool_b, avgpool_global_backward_input)
BINARY(s_cat_f, concat_forward)
static void s_addc_b(const Tensor *gy, Tensor *gx, Tensor *gv) {
    device_ops++, DT("add_channel bwd", gy), DT("add_channel bwd", gx), DT("add_channel bwd", gv);
    CPU.add_channel_backward_input(gy, gx, gv);
}
static void s_axpy(float a, const Tensor *x, Tensor *y) {
    device_ops++, DT("axpy", x), DT("axpy", y);
    CPU.axpy(a, x, y);
}
static void s_att_f(const Tensor *q, const Tensor *k, const Tensor *v, Tensor *p, Tensor *h, int bf16) {
    device_ops++, DT("attention", q), DT("attention", k), DT("attention", v), DT("attention", p), DT("attention", h);
    CPU.attention_forward(q, k, v, p, h, bf16);
}
static void s_att_b(const Tensor *q, const Tensor *k, const Tensor *v, const Tensor *p, const Tensor *gh, Tensor *gq,
                    Tensor *gk, Tensor *gv, int bf16) {
    device_ops++, DT("attention bwd", q), DT("attention bwd", k), DT("attention bwd", v), DT("attention bwd", p);
    DT("attention bwd", gh), DT("attention bwd", gq), DT("attention bwd", gk), DT("attention bwd", gv);
    CPU.attention_backward_input(q, k, v, p, gh, gq, gk, gv, bf16);
}
static void s_round(const Tensor *x, Tensor *y) {
    device_ops++, DT("round_bf16", x), DT("round_bf16", y);
    CPU.round_bf16(x, y);
}
static void s_cat_b(const Tensor *gy, Tensor *ga, Tensor *gb) {
    device_ops++, DT("concat bwd", gy), DT("concat bwd", ga), DT("concat bwd", gb);
    CPU.concat_backward_input(gy, ga, gb);
}
static void s_temb_f(const float *t, int n, int dim, Tensor *y) {
    device_ops++, HP("timestep_embedding", t), DT("timestep_embedding", y);
    CPU.timestep_embedding_forward(t, n, dim, y);
}
static void s_temb_b(const float *t, int n, int dim, const Tensor *gy, float *gt) {
    device_ops++, HP("timestep_embedding bwd", t), DT("timestep_embedding bwd", gy), HP("timestep_embedding bwd", gt);
    CPU.timestep_embedding_backward_input(t, n, dim, gy, gt);
}
static void s_aff_f(const Tensor *x, float a, float b, float lo, float hi, Tensor *y) {
    device_ops++, DT("affine_clamp", x), DT("affine_clamp", y);
    CPU.affine_clamp_forward(x, a, b, lo, hi, y);
}
static void s_aff_b(const Tensor *x, const Tensor *gy, float a, float b, float lo, float hi, Tensor *gx) {
    device_ops++, DT("affine_clamp bwd", x), DT("affine_clamp bwd", gy), DT("affine_clamp bwd", gx);
    CPU.affine_clamp_backward_input(x, gy, a, b, lo, hi, gx);
}
static void s_axpby(float a, const Tensor *x, float b, Tensor *y) {
    device_ops++, DT("axpby", x), DT("axpby", y);
    CPU.axpby(a, x, b, y);
}
static void s_samp_f(const Tensor *x, const Tensor *eps, const Tensor *z, const sampler_coef *k, Tensor *y) {
    device_ops++, DT("sampler_step", x), DT("sampler_step", eps), DT("sampler_step", z), DT("sampler_step", y);
    CPU.sampler_step_forward(x, eps, z, k, y);
}
static void s_samp_b(const Tensor *x, const Tensor *eps, const Tensor *g, const sampler_coef *k, Tensor *gx,
                     Tensor *geps) {
    device_ops++, DT("sampler_step bwd", x), DT("sampler_step bwd", eps), DT("sampler_step bwd", g);
    DT("sampler_step bwd", gx), DT("sampler_step bwd", geps);
    CPU.sampler_step_backward_input(x, eps, g, k, gx, geps);
}
static void s_normal(const uint64_t *keys, Tensor *y) {
    device_ops++, HP("normal_fill", keys), DT("normal_fill", y);
    CPU.normal_fill(keys, y);
}

static const drq_backend standin = {
    .name = "stand-in",
    .alloc = sd_alloc, .release = sd_release, .copy = sd_copy,
    .conv2d_forward = s_conv_f, .conv2d_backward_input = s_conv_b, .conv2d_release = s_conv_r,
    .linear_forward = s_lin_f, .linear_backward_input = s_lin_b,
    .group_norm_forward = s_gn_f, .group_norm_backward_input = s_gn_b,
    .batch_norm_forward = s_bn_f, .batch_norm_backward_input = s_bn_b,
    .swish_forward = s_swish_f, .swish_backward_input = s_swish_b,
    .relu_forward = s_relu_f, .relu_backward_input = s_relu_b,
    .add_forward = s_add, .add_channel_forward = s_addc_f, .add_channel_backward_input = s_addc_b, .axpy = s_axpy,
    .attention_forward = s_att_f, .attention_backward_input = s_att_b,
    .upsample2x_forward = s_up_f, .upsample2x_backward_input = s_up_b,
    .avgpool_global_forward = s_pool_f, .avgpool_global_backward_input = s_pool_b,
    .concat_forward = s_cat_f, .concat_backward_input = s_cat_b,
    .timestep_embedding_forward = s_temb_f, .timestep_embedding_backward_input = s_temb_b,
    .affine_clamp_forward = s_aff_f, .affine_clamp_backward_input = s_aff_b, .axpby = s_axpby,
    .sampler_step_forward = s_samp_f, .sampler_step_backward_input = s_samp_b, .normal_fill = s_normal,
    .round_bf16 = s_round,
};

/* =====================================================================
 * the checks: the stand-in device against the CPU, bit for bit
 * ===================================================================== */
static int same_bits(const Tensor *a, const Tensor *b) {
    Tensor ha = tensor_clone_on(DRQ_CPU, a), hb = tensor_clone_on(DRQ_CPU, b);
    int eq = tensor_numel(a) == tensor_numel(b) && !memcmp(ha.data, hb.data, tensor_numel(a) * sizeof(float));
    tensor_free(&ha), tensor_free(&hb);
    return eq;
}

static void test_models(unet *uc, unet *ud, wrn *wc, wrn *wd) {
    Tensor x = rnd(2, 1, 16, 16), gy = rnd(2, 1, 16, 16), gl = rnd(2, 10, 1, 1);
    float t[2] = {3, 17};
    Tensor xd = tensor_clone_on(DRQ_CUDA, &x), gyd = tensor_clone_on(DRQ_CUDA, &gy), gld = tensor_clone_on(DRQ_CUDA, &gl);
    Tensor y = tensor_new(2, 1, 16, 16), yd = tensor_new_on(DRQ_CUDA, 2, 1, 16, 16);
    Tensor g = tensor_new(2, 1, 16, 16), gd = tensor_new_on(DRQ_CUDA, 2, 1, 16, 16);
    unet_forward(uc, &x, t, &y), unet_forward(ud, &xd, t, &yd);
    unet_backward(uc, &gy, &g), unet_backward(ud, &gyd, &gd);
    CHECK_MSG(same_bits(&y, &yd), "unet forward on the stand-in device differs from the cpu");
    CHECK_MSG(same_bits(&g, &gd), "unet vjp on the stand-in device differs from the cpu");
    Tensor l = tensor_new(2, 10, 1, 1), ld = tensor_new_on(DRQ_CUDA, 2, 10, 1, 1);
    for (size_t i = 0; i < tensor_numel(&x); i++) x.data[i] = (float)urand();
    tensor_copy(&xd, &x);
    wrn_forward(wc, &x, &l), wrn_forward(wd, &xd, &ld);
    wrn_backward(wc, &gl, &g), wrn_backward(wd, &gld, &gd);
    CHECK_MSG(same_bits(&l, &ld), "wrn forward on the stand-in device differs from the cpu");
    CHECK_MSG(same_bits(&g, &gd), "wrn vjp on the stand-in device differs from the cpu");
    Tensor *ts[] = {&x, &gy, &gl, &xd, &gyd, &gld, &y, &yd, &g, &gd, &l, &ld};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_free(ts[i]);
}

/* Every purifier: host in/out (the engine's measure path) and device in/out
 * (the attack path), forward with xmax and backward. */
static void test_purifiers(unet *uc, unet *ud) {
    const purify_config pcs[] = {
        {.kind = PURIFY_DDPM, .t_star = 3, .clamp_out = 1},
        {.kind = PURIFY_DDPM, .t_star = 3, .var_small = 1, .clamp_x0 = 1, .clamp_out = 1},
        {.kind = PURIFY_REVERSE, .t_star = 2, .clamp_out = 0},
        {.kind = PURIFY_DDIM, .t_star = 5, .stride = 2, .clamp_out = 1},
        {.kind = PURIFY_NONE},
    };
    Tensor x = tensor_new(2, 1, 16, 16), gy = rnd(2, 1, 16, 16);
    for (size_t i = 0; i < tensor_numel(&x); i++) x.data[i] = (float)urand();
    uint64_t om[2] = {7, 7};
    int64_t im[2] = {3, 4};
    for (size_t c = 0; c < sizeof pcs / sizeof pcs[0]; c++) {
        purifier *pc = purifier_new(pcs[c].kind == PURIFY_NONE ? NULL : uc, &pcs[c]);
        purifier *pd = purifier_new(pcs[c].kind == PURIFY_NONE ? NULL : ud, &pcs[c]);
        Tensor y = tensor_new(2, 1, 16, 16), xm = tensor_new(2, 1, 16, 16), g = tensor_new(2, 1, 16, 16);
        Tensor y2 = tensor_new(2, 1, 16, 16), xm2 = tensor_new(2, 1, 16, 16), g2 = tensor_new(2, 1, 16, 16);
        purifier_forward(pc, &x, om, im, 1, &y, &xm), purifier_backward(pc, &gy, &g);
        purifier_forward(pd, &x, om, im, 1, &y2, &xm2), purifier_backward(pd, &gy, &g2); /* host tensors in and out */
        CHECK_MSG(same_bits(&y, &y2) && same_bits(&xm, &xm2) && same_bits(&g, &g2),
                  "purifier %zu (kind %d), host tensors: stand-in device differs from the cpu", c, (int)pcs[c].kind);
        Tensor xd = tensor_clone_on(DRQ_CUDA, &x), gyd = tensor_clone_on(DRQ_CUDA, &gy), yd = tensor_new_on(DRQ_CUDA, 2, 1, 16, 16);
        Tensor gd = tensor_new_on(DRQ_CUDA, 2, 1, 16, 16);
        purifier_forward(pd, &xd, om, im, 1, &yd, NULL), purifier_backward(pd, &gyd, &gd); /* device tensors */
        CHECK_MSG(same_bits(&y, &yd) && same_bits(&g, &gd),
                  "purifier %zu (kind %d), device tensors: stand-in device differs from the cpu", c, (int)pcs[c].kind);
        Tensor *ts[] = {&y, &xm, &g, &y2, &xm2, &g2, &xd, &gyd, &yd, &gd};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_free(ts[i]);
        purifier_free(pc), purifier_free(pd);
    }
    tensor_free(&x), tensor_free(&gy);
}

/* PGD through attack.c: fixed (2 steps), eot (K = 2), bpda; evaluation with votes. */
static void test_attacks(unet *uc, unet *ud, wrn *wc, wrn *wd) {
    Tensor x = tensor_new(2, 1, 16, 16);
    for (size_t i = 0; i < tensor_numel(&x); i++) x.data[i] = (float)urand();
    int label[2] = {3, 8};
    int64_t image[2] = {10, 11};
    purify_config pcfg = {.kind = PURIFY_DDPM, .t_star = 2, .clamp_out = 1};
    const attack_config acs[] = {
        {.eps = 0.1, .steps = 2, .stepsize = 0.03, .random_start = 1, .mode = OMEGA_FIXED, .seed = 4},
        {.l2 = 1, .eps = 1.0, .steps = 1, .stepsize = 0.3, .random_start = 1, .mode = OMEGA_EOT, .eot_k = 2,
         .votes = 3, .seed = 5},
        {.eps = 0.1, .steps = 1, .stepsize = 0.03, .mode = OMEGA_FRESH, .votes = 2, .seed = 6, .bpda = 1},
    };
    classifier *cc = classifier_wrap_wrn(wc), *cd = classifier_wrap_wrn(wd);
    for (size_t c = 0; c < sizeof acs / sizeof acs[0]; c++) {
        purifier *pc = purifier_new(uc, &pcfg), *pd = purifier_new(ud, &pcfg);
        attack_models mc = {cc, pc, 10, NULL}, md = {cd, pd, 10, NULL};
        attack_state sc, sd;
        attack_begin(&acs[c], &x, image, &sc), attack_begin(&acs[c], &x, image, &sd);
        for (int k = 0; k < acs[c].steps; k++)
            attack_step(&acs[c], &mc, &x, label, image, &sc), attack_step(&acs[c], &md, &x, label, image, &sd);
        CHECK_MSG(same_bits(&sc.xadv, &sd.xadv), "attack %zu: iterate on the stand-in device differs from the cpu", c);
        CHECK_MSG(!memcmp(sc.success_step, sd.success_step, sizeof(int) * 2), "attack %zu: success steps differ", c);
        int pa[2], pb[2];
        attack_evaluate(&acs[c], &mc, &sc.xadv, image, pa), attack_evaluate(&acs[c], &md, &sd.xadv, image, pb);
        CHECK_MSG(pa[0] == pb[0] && pa[1] == pb[1], "attack %zu: predictions %d %d vs %d %d", c, pa[0], pa[1], pb[0],
                  pb[1]);
        attack_state_free(&sc), attack_state_free(&sd);
        attack_models_release(&mc), attack_models_release(&md);
        purifier_free(pc), purifier_free(pd);
    }
    classifier_free(cc), classifier_free(cd);
    tensor_free(&x);
}

int main(void) {
    drq_set_threads(2);
    const drq_backend *prev = drq_backend_install(DRQ_CUDA, &standin);
    st_file w1 = {0}, w2 = {0}, w3 = {0}, w4 = {0};
    unet *uc = fixture_model("unet_small", 1, &w1, DRQ_CPU), *ud = fixture_model("unet_small", 1, &w2, DRQ_CUDA);
    wrn *wc = fixture_model("wrn_small", 0, &w3, DRQ_CPU), *wd = fixture_model("wrn_small", 0, &w4, DRQ_CUDA);
    if (uc && ud && wc && wd) {
        test_models(uc, ud, wc, wd);
        test_purifiers(uc, ud);
        test_attacks(uc, ud, wc, wd);
    }
    unet_free(uc), unet_free(ud), wrn_free(wc), wrn_free(wd);
    st_free(&w1), st_free(&w2), st_free(&w3), st_free(&w4);
    CHECK_MSG(violations == 0, "%ld ops on the stand-in device got host memory (first ones above)", violations);
    CHECK_MSG(device_ops > 1000, "only %ld ops ran on the stand-in device", device_ops);
    CHECK_MSG(nblocks == 0, "%d device allocations were never freed", nblocks);
    printf("stand-in device: %ld ops checked\n", device_ops);
    free(blocks);
    drq_backend_install(DRQ_CUDA, prev);
    return CHECK_DONE();
}
