/* test_purify_adm.c — the purifier over the ADM UNet (worker/eval/purify.c,
 * purifier_new_adm): learned variance and the bilinear resizes in and out.
 *   - parity: P(x) and its VJP on the guided_tiny fixture, 28×28 inputs
 *     resized to 32 and back, DDPM t* = 3 with the learned σ, against the
 *     float64 PyTorch reference of tests/ref/gen_purify_adm.py (y ≤ 1e-5,
 *     grad_x ≤ 1e-4 relative; the fixture's generator checks that the σ
 *     path moves grad_x by more than 10× that tolerance);
 *   - the full VJP (through σ, the mean and both resizes) against central
 *     finite differences on a small random ADM UNet, per sampler kind, with
 *     and without resizing, with a learned and a fixed variance;
 *   - ω is per image: a batch of 2 equals two batches of 1.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/safetensors.h"
#include "worker/eval/purify.h"
#include "check.h"
#include "fd.h"
#include "rand.h"

static float centered(void) { return (float)urand() - 0.5f; }

static guided_unet *tiny_adm(int learn_sigma) {
    drq_err err = {{0}};
    guided_unet_config c;
    char cfg[400];
    snprintf(cfg, sizeof cfg,
             "{\"image_size\":8,\"num_channels\":32,\"num_res_blocks\":1,\"channel_mult\":[1,2],"
             "\"attention_resolutions\":[4],\"num_head_channels\":16,\"use_scale_shift_norm\":true,"
             "\"resblock_updown\":true,\"learn_sigma\":%s}", learn_sigma ? "true" : "false");
    guided_unet *m = guided_unet_config_parse(cfg, &c, &err) ? NULL : guided_unet_load(&c, NULL, 21, DRQ_CPU, &err);
    CHECK_MSG(m != NULL, "tiny ADM UNet: %s", err.msg);
    return m;
}

/* ⟨gy, P(x)⟩ for the FD check. */
typedef struct {
    purifier *p;
    const uint64_t *om;
    const int64_t *im;
    const Tensor *gy;
} fd_ctx;

static double loss(void *ctx, const Tensor *x) {
    fd_ctx *c = ctx;
    Tensor y = tensor_new(x->n, x->c, x->h, x->w);
    purifier_forward(c->p, x, c->om, c->im, 0, &y, NULL);
    double s = 0;
    for (size_t i = 0; i < tensor_numel(&y); i++) s += (double)y.data[i] * c->gy->data[i];
    tensor_free(&y);
    return s;
}

static void fd_case(guided_unet *m, const char *name, int size, purify_config c) {
    c.clamp_out = 0; /* FD across the output clamp's kink is meaningless */
    purifier *p = purifier_new_adm(m, &c);
    uint64_t om[2] = {5, 6};
    int64_t im[2] = {10, 11};
    Tensor x = tensor_new(2, 3, size, size), gy = tensor_new(2, 3, size, size), y = tensor_new(2, 3, size, size);
    Tensor gx = tensor_new(2, 3, size, size);
    for (size_t i = 0; i < tensor_numel(&x); i++) x.data[i] = 0.2f + 0.6f * (float)urand(), gy.data[i] = centered();
    purifier_forward(p, &x, om, im, 1, &y, NULL);
    purifier_backward(p, &gy, &gx);
    fd_ctx ctx = {p, om, im, &gy};
    fd_check_directions(name, loss, &ctx, &x, &gx, centered, 3, 2e-2f, 3e-3);
    tensor_free(&x), tensor_free(&gy), tensor_free(&y), tensor_free(&gx);
    purifier_free(p);
}

static void test_batch(guided_unet *m) {
    purify_config c = {.kind = PURIFY_DDPM, .t_star = 3, .clamp_out = 1};
    purifier *p = purifier_new_adm(m, &c);
    Tensor x = tensor_new(2, 3, 7, 7), y = tensor_new(2, 3, 7, 7), y1 = tensor_new(1, 3, 7, 7);
    for (size_t i = 0; i < tensor_numel(&x); i++) x.data[i] = (float)urand();
    uint64_t om[2] = {1, 2};
    int64_t im[2] = {100, 101};
    purifier_forward(p, &x, om, im, 0, &y, NULL);
    for (int i = 0; i < 2; i++) {
        Tensor xi = tensor_wrap(x.data + 147 * i, 1, 3, 7, 7);
        purifier_forward(p, &xi, &om[i], &im[i], 0, &y1, NULL);
        CHECK_LE(rel_l2(y1.data, y.data + 147 * i, 147), 1e-6, "ADM purify: batch of 1 vs batch of 2");
    }
    tensor_free(&x), tensor_free(&y), tensor_free(&y1);
    purifier_free(p);
}

/* P and its VJP on the guided_tiny fixture against tests/fixtures/guided_purify.safetensors. */
static void test_parity(void) {
    drq_err err = {{0}};
    st_file w = {0}, ref = {0};
    guided_unet_config gc;
    guided_unet *m = NULL;
    if (!guided_unet_config_parse("tests/fixtures/guided_tiny.json", &gc, &err) &&
        !st_load("tests/fixtures/guided_tiny.weights.safetensors", &w, &err))
        m = guided_unet_load(&gc, &w, 0, DRQ_CPU, &err);
    CHECK_MSG(m != NULL, "fixture guided_tiny: %s", err.msg);
    CHECK_MSG(st_load("tests/fixtures/guided_purify.safetensors", &ref, &err) == 0, "%s", err.msg);
    const st_tensor *tx = st_find(&ref, "x"), *tg = st_find(&ref, "grad_y"), *ty = st_find(&ref, "y"),
                    *tgx = st_find(&ref, "grad_x");
    CHECK_MSG(tx && tg && ty && tgx && tx->numel == 2 * 3 * 28 * 28, "guided_purify.safetensors lacks x/grad_y/y/grad_x");
    if (m && tx && tg && ty && tgx && tx->numel == 2 * 3 * 28 * 28) {
        purify_config c = {.kind = PURIFY_DDPM, .t_star = 3};
        purifier *p = purifier_new_adm(m, &c);
        uint64_t om[2] = {4, 4}; /* the generator's SEED for both images */
        int64_t im[2] = {5, 9};
        Tensor x = tensor_wrap(tx->data, 2, 3, 28, 28), gy = tensor_wrap(tg->data, 2, 3, 28, 28);
        Tensor y = tensor_new(2, 3, 28, 28), gx = tensor_new(2, 3, 28, 28);
        purifier_forward(p, &x, om, im, 1, &y, NULL);
        purifier_backward(p, &gy, &gx);
        CHECK_LE(rel_l2(y.data, ty->data, tensor_numel(&y)), 1e-5, "ADM purifier y vs float64 reference");
        CHECK_LE(rel_l2(gx.data, tgx->data, tensor_numel(&gx)), 1e-4, "ADM purifier grad_x vs float64 reference");
        tensor_free(&y), tensor_free(&gx);
        purifier_free(p);
    }
    guided_unet_free(m);
    st_free(&w), st_free(&ref);
}

int main(void) {
    drq_set_threads(2);
    test_parity();
    guided_unet *m = tiny_adm(1), *f = tiny_adm(0);
    if (!m || !f) return CHECK_DONE();
    fd_case(m, "learned σ, ddpm t*=3, 7→8→7", 7, (purify_config){.kind = PURIFY_DDPM, .t_star = 3});
    fd_case(m, "learned σ, ddpm t*=3, no resize", 8, (purify_config){.kind = PURIFY_DDPM, .t_star = 3});
    fd_case(m, "learned σ, reverse t*=3, 7→8→7", 7, (purify_config){.kind = PURIFY_REVERSE, .t_star = 3});
    fd_case(m, "ddim t*=5 stride 2, 9→8→9", 9, (purify_config){.kind = PURIFY_DDIM, .t_star = 5, .stride = 2});
    fd_case(f, "fixed σ (learn_sigma off), ddpm t*=3, 7→8→7", 7, (purify_config){.kind = PURIFY_DDPM, .t_star = 3});
    test_batch(m);
    guided_unet_free(m), guided_unet_free(f);
    return CHECK_DONE();
}
