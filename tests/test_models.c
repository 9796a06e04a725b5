/* test_models.c — the DDPM UNet and the WideResNet as wholes:
 *   - parameter counts of the CIFAR-10 configs (docs/design.md §Models);
 *   - input-VJP against central finite differences on small random models;
 *   - batch invariance (a batch of 3 equals three batches of 1, bit for bit);
 *   - weight files with a missing, extra or mis-shaped tensor are errors
 *     naming it (using the committed fixtures of tests/ref/gen_fixtures.py);
 *   - config errors name the key.
 * PyTorch parity lives in tests/test_parity.sh.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/safetensors.h"
#include "worker/models/models.h"
#include "check.h"
#include "fd.h"
#include "rand.h"


typedef struct {
    unet *u;
    wrn *w;
    int out_c, out_hw;
    const float *t;
} model;

static void fwd(model *m, const Tensor *x, Tensor *y) {
    if (m->u) unet_forward(m->u, x, m->t, y);
    else wrn_forward(m->w, x, y);
}

/* ⟨gy, f(x)⟩ for the FD check; ctx is an fd_ctx. */
typedef struct {
    model *m;
    const Tensor *gy;
} fd_ctx;

static double dotloss(void *ctx, const Tensor *x) {
    fd_ctx *c = ctx;
    Tensor y = tensor_new(c->gy->n, c->gy->c, c->gy->h, c->gy->w);
    fwd(c->m, x, &y);
    double s = 0;
    for (size_t i = 0; i < tensor_numel(&y); i++) s += (double)y.data[i] * c->gy->data[i];
    tensor_free(&y);
    return s;
}

/* The model's VJP at a random x against finite differences (tests/fd.h). */
static void fd_check(model *m, const char *name, int n, int c, int h, int w, float lo, float hi, float step, double tol) {
    Tensor x = tensor_new(n, c, h, w), gx = tensor_new(n, c, h, w);
    Tensor gy = tensor_new(n, m->out_c, m->out_hw, m->out_hw), y = tensor_new(n, m->out_c, m->out_hw, m->out_hw);
    size_t nx = tensor_numel(&x);
    for (size_t i = 0; i < nx; i++) x.data[i] = lo + (hi - lo) * (0.5f + 0.15f * nrand());
    for (size_t i = 0; i < tensor_numel(&gy); i++) gy.data[i] = nrand();
    fwd(m, &x, &y);
    if (m->u) unet_backward(m->u, &gy, &gx);
    else wrn_backward(m->w, &gy, &gx);
    fd_ctx ctx = {m, &gy};
    fd_check_directions(name, dotloss, &ctx, &x, &gx, nrand, 3, step, tol);
    tensor_free(&x), tensor_free(&gx), tensor_free(&gy), tensor_free(&y);
}

static void test_param_counts(void) {
    drq_err err;
    unet_config uc;
    wrn_config wc;
    CHECK_EQ_INT(unet_config_parse("cifar10", &uc, &err), 0);
    unet *u = unet_load(&uc, NULL, 1, &err);
    CHECK_MSG(u != NULL, "%s: %p", "u != NULL", (void *)(u));
    if (u) CHECK_EQ_INT(unet_param_count(u), 35746307);
    unet_free(u);
    CHECK_EQ_INT(wrn_config_parse("cifar10", &wc, &err), 0);
    wrn *w = wrn_load(&wc, NULL, 1, &err);
    CHECK_MSG(w != NULL, "%s: %p", "w != NULL", (void *)(w));
    if (w) CHECK_EQ_INT(wrn_param_count(w), 36479194);
    wrn_free(w);
}

static void test_unet_fd_and_batch(void) {
    drq_err err;
    unet_config c;
    CHECK_EQ_INT(unet_config_parse("{\"resolution\":8,\"in_channels\":2,\"out_ch\":2,\"ch\":32,\"ch_mult\":[1,2],"
                                   "\"num_res_blocks\":1,\"attn_resolutions\":[4]}", &c, &err), 0);
    unet *u = unet_load(&c, NULL, 7, &err);
    if (!u) { CHECK_MSG(0, "unet_load: %s", err.msg); return; }
    float t[3] = {3.0f, 250.5f, 999.0f};
    model m = {.u = u, .out_c = 2, .out_hw = 8, .t = t};
    /* 4e-3: the float32 forward's rounding at this step leaves 0.5–2.1e-3 of
     * noise in the difference, by kernel choice (2.1e-3 under AVX2 kernels,
     * with the same analytic VJP to all digits); the tight check of this VJP
     * is the float64 PyTorch parity (tests/test_parity.sh). */
    fd_check(&m, "unet", 3, 2, 8, 8, -1.0f, 1.0f, 2e-2f, 4e-3);

    /* batch invariance: the batch of 3 against each image alone */
    Tensor x = tensor_new(3, 2, 8, 8), y = tensor_new(3, 2, 8, 8), y1 = tensor_new(1, 2, 8, 8);
    for (size_t i = 0; i < tensor_numel(&x); i++) x.data[i] = nrand();
    unet_forward(u, &x, t, &y);
    size_t per = 2 * 8 * 8;
    for (int i = 0; i < 3; i++) {
        Tensor xi = tensor_wrap(x.data + i * per, 1, 2, 8, 8);
        unet_forward(u, &xi, &t[i], &y1);
        CHECK_MSG(memcmp(y1.data, y.data + i * per, per * sizeof(float)) == 0, "unet batch-of-1 vs batch-of-3: not bit-identical (rel %.3g)", rel_l2(y1.data, y.data + i * per, per));
    }
    tensor_free(&x), tensor_free(&y), tensor_free(&y1);
    unet_free(u);
}

static void test_wrn_fd_and_batch(void) {
    drq_err err;
    wrn_config c;
    CHECK_EQ_INT(wrn_config_parse("{\"depth\":16,\"widen\":1,\"num_classes\":5,\"in_channels\":3}", &c, &err), 0);
    wrn *w = wrn_load(&c, NULL, 9, &err);
    if (!w) { CHECK_MSG(0, "wrn_load: %s", err.msg); return; }
    model m = {.w = w, .out_c = 5, .out_hw = 1};
    /* float32 differences of a ReLU network: a step small enough to rarely
     * cross a kink leaves ~1e-5 of rounding noise, hence 1e-2 here.  The
     * tight check of this VJP is the float64 PyTorch parity (≤ 1e-4). */
    fd_check(&m, "wrn", 2, 3, 8, 8, 0.0f, 1.0f, 1e-2f, 1e-2);
    Tensor x = tensor_new(3, 3, 8, 8), y = tensor_new(3, 5, 1, 1), y1 = tensor_new(1, 5, 1, 1);
    for (size_t i = 0; i < tensor_numel(&x); i++) x.data[i] = 0.5f + 0.2f * nrand();
    wrn_forward(w, &x, &y);
    for (int i = 0; i < 3; i++) {
        Tensor xi = tensor_wrap(x.data + i * 192, 1, 3, 8, 8);
        wrn_forward(w, &xi, &y1);
        CHECK_MSG(memcmp(y1.data, y.data + i * 5, 5 * sizeof(float)) == 0, "wrn batch-of-1 vs batch-of-3: not bit-identical");
    }
    tensor_free(&x), tensor_free(&y), tensor_free(&y1);
    wrn_free(w);
}

/* Loads a fixture's weights, applies MUTATE, and expects unet/wrn_load to
 * fail with a message containing WANT. */
typedef struct {
    const char *fixture, *arch;
    const char *drop;     /* remove this tensor */
    const char *rename;   /* instead of dropping, add a copy of `drop` under this name */
    const char *reshape;  /* make this tensor's first dim one larger */
    const char *want;
} weight_case;

static void test_bad_weights(void) {
    static const weight_case cases[] = {
        {"unet_tiny", "ddpm-unet", "down.0.block.0.conv1.weight", NULL, NULL, "missing tensor 'down.0.block.0.conv1.weight'"},
        {"unet_tiny", "ddpm-unet", "mid.attn_1.q.bias", "mid.attn_1.qq.bias", NULL, "unexpected tensor 'mid.attn_1.qq.bias'"},
        {"unet_tiny", "ddpm-unet", NULL, NULL, "temb.dense.1.weight", "tensor 'temb.dense.1.weight' has shape [129, 128]"},
        {"wrn_tiny", "wrn", "block2.layer.0.convShortcut.weight", NULL, NULL, "missing tensor 'block2.layer.0.convShortcut.weight'"},
        {"wrn_tiny", "wrn", "fc.bias", "fc.bias2", NULL, "unexpected tensor 'fc.bias2'"},
        {"wrn_tiny", "wrn", NULL, NULL, "bn1.running_var", "tensor 'bn1.running_var' has shape"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const weight_case *k = &cases[i];
        char path[256], cfg[256];
        drq_err err = {{0}};
        st_file f;
        snprintf(path, sizeof path, "tests/fixtures/%s.weights.safetensors", k->fixture);
        snprintf(cfg, sizeof cfg, "tests/fixtures/%s.json", k->fixture);
        if (st_load(path, &f, &err)) {
            CHECK_MSG(0, "fixture %s: %s", path, err.msg);
            continue;
        }
        if (k->drop) {
            st_tensor *t = st_find_mut(&f, k->drop);
            CHECK_MSG(t != NULL, "fixture lacks %s", k->drop);
            if (t && k->rename) { /* append a copy under another name: an extra tensor */
                f.t = realloc(f.t, sizeof(st_tensor) * (f.n + 1));
                t = st_find_mut(&f, k->drop);
                st_tensor *e = &f.t[f.n++];
                *e = *t;
                e->name = strdup(k->rename);
                e->data = malloc(t->numel * sizeof(float) + 1);
                memcpy(e->data, t->data, t->numel * sizeof(float));
            } else if (t) {
                free(t->name);
                t->name = strdup("__dropped__"); /* then hide it: mark it used */
                t->used = 1;
            }
        }
        if (k->reshape) {
            st_tensor *t = st_find_mut(&f, k->reshape);
            CHECK_MSG(t != NULL, "fixture lacks %s", k->reshape);
            if (t) t->shape[0] += 1;
        }
        int ok;
        if (!strcmp(k->arch, "ddpm-unet")) {
            unet_config c;
            CHECK_EQ_INT(unet_config_parse(cfg, &c, &err), 0);
            unet *u = unet_load(&c, &f, 0, &err);
            ok = u == NULL;
            unet_free(u);
        } else {
            wrn_config c;
            CHECK_EQ_INT(wrn_config_parse(cfg, &c, &err), 0);
            wrn *w = wrn_load(&c, &f, 0, &err);
            ok = w == NULL;
            wrn_free(w);
        }
        CHECK_MSG(ok, "%s: a bad weight file loaded", k->want);
        CHECK_CONTAINS(err.msg, k->want);
        st_free(&f);
    }
}

static void test_bad_configs(void) {
    static const struct { const char *arg, *want; int unet; } cases[] = {
        {"{\"resolution\":32,\"in_channels\":3,\"out_ch\":3,\"ch\":128,\"ch_mult\":[1,2],\"num_res_blocks\":2,"
         "\"attn_resolutions\":[16],\"dropout\":0.1}", "config.dropout: unknown key", 1},
        {"{\"resolution\":32,\"in_channels\":3,\"out_ch\":3,\"ch\":100,\"ch_mult\":[1,2],\"num_res_blocks\":2,"
         "\"attn_resolutions\":[]}", "config.ch: 100 is not a multiple of 32", 1},
        {"{\"resolution\":32,\"in_channels\":3,\"out_ch\":3,\"ch\":128,\"ch_mult\":[1,\"2\"],\"num_res_blocks\":2,"
         "\"attn_resolutions\":[]}", "config.ch_mult[1]: expected an integer", 1},
        {"{\"resolution\":32", "(inline JSON)", 1},
        {"/nonexistent/cfg.json", "/nonexistent/cfg.json", 1},
        {"{\"depth\":27,\"widen\":10,\"num_classes\":10,\"in_channels\":3}", "config.depth: 27 is not 6n+4", 0},
        {"{\"depth\":28,\"num_classes\":10,\"in_channels\":3}", "config.widen: missing", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        drq_err err = {{0}};
        unet_config uc;
        wrn_config wc;
        int rc = cases[i].unet ? unet_config_parse(cases[i].arg, &uc, &err) : wrn_config_parse(cases[i].arg, &wc, &err);
        CHECK_EQ_INT(rc, -1);
        CHECK_CONTAINS(err.msg, cases[i].want);
    }
}

int main(void) {
    drq_set_threads(2);
    test_param_counts();
    test_unet_fd_and_batch();
    test_wrn_fd_and_batch();
    test_bad_weights();
    test_bad_configs();
    return CHECK_DONE();
}
