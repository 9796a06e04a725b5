/* test_resnet50.c — the ResNet-50 classifier (worker/models/resnet50.c)
 * through the classifier interface (worker/models/classifier.h):
 *   - the ImageNet parameter count (25,557,032, torchvision's);
 *   - input-VJP against central finite differences on a small random model;
 *   - batch invariance (a batch of 3 equals three batches of 1, bit for bit);
 *   - weight files: a missing, extra or mis-shaped tensor is an error naming
 *     it; RobustBench's prefixed keys (module.model.…) load to the same
 *     logits; its normalize.mean / normalize.std buffers are accepted when
 *     they are ImageNet's and refused, named, otherwise;
 *   - config errors name the key.
 * PyTorch parity (resnet_tiny) lives in tests/test_parity.sh, the full
 * 224×224 model in `make test-ref` (tests/ref/check_full.py).
 */
#include <stdlib.h>
#include <string.h>

#include "../common/safetensors.h"
#include "worker/models/classifier.h"
#include "check.h"
#include "fd.h"
#include "rand.h"

#define FIXTURE "tests/fixtures/resnet_tiny"

static void test_param_count(void) {
    drq_err err = {{0}};
    classifier *c = classifier_load("resnet50", "imagenet", NULL, 1, DRQ_CPU, &err);
    CHECK_MSG(c != NULL, "classifier_load(resnet50, imagenet): %s", err.msg);
    if (!c) return;
    CHECK_EQ_INT(classifier_param_count(c), 25557032);
    CHECK_EQ_INT(classifier_num_classes(c), 1000);
    classifier_free(c);
}

typedef struct {
    classifier *c;
    const Tensor *gy;
} fd_ctx;

static double dotloss(void *ctx, const Tensor *x) {
    fd_ctx *k = ctx;
    Tensor y = tensor_new(k->gy->n, k->gy->c, 1, 1);
    classifier_forward(k->c, x, &y);
    double s = 0;
    for (size_t i = 0; i < tensor_numel(&y); i++) s += (double)y.data[i] * k->gy->data[i];
    tensor_free(&y);
    return s;
}

static void test_fd_and_batch(void) {
    drq_err err = {{0}};
    classifier *c = classifier_load("resnet50", "{\"num_classes\":5,\"layers\":[2,1,1,1],\"width\":4}", NULL, 9,
                                    DRQ_CPU, &err);
    CHECK_MSG(c != NULL, "classifier_load: %s", err.msg);
    if (!c) return;
    int n = 2, hw = 13; /* odd: 13 → 7 → 4 → 2 → 1 → 1 */
    Tensor x = tensor_new(n, 3, hw, hw), gx = tensor_new(n, 3, hw, hw), gy = tensor_new(n, 5, 1, 1),
           y = tensor_new(n, 5, 1, 1);
    for (size_t i = 0; i < tensor_numel(&x); i++) x.data[i] = 0.5f + 0.2f * nrand();
    for (size_t i = 0; i < tensor_numel(&gy); i++) gy.data[i] = nrand();
    classifier_forward(c, &x, &y);
    classifier_backward(c, &gy, &gx);
    fd_ctx ctx = {c, &gy};
    /* float32 differences of a ReLU/max-pool network: as for the WRN
     * (tests/test_models.c), 1e-2; the tight check is the float64 parity */
    fd_check_directions("resnet50", dotloss, &ctx, &x, &gx, nrand, 3, 1e-2f, 1e-2);

    Tensor x3 = tensor_new(3, 3, hw, hw), y3 = tensor_new(3, 5, 1, 1), y1 = tensor_new(1, 5, 1, 1);
    size_t per = (size_t)3 * hw * hw;
    for (size_t i = 0; i < tensor_numel(&x3); i++) x3.data[i] = 0.5f + 0.2f * nrand();
    classifier_forward(c, &x3, &y3);
    for (int i = 0; i < 3; i++) {
        Tensor xi = tensor_wrap(x3.data + i * per, 1, 3, hw, hw);
        classifier_forward(c, &xi, &y1);
        CHECK_MSG(memcmp(y1.data, y3.data + i * 5, 5 * sizeof(float)) == 0,
                  "resnet50 batch-of-1 vs batch-of-3, image %d: not bit-identical", i);
    }
    Tensor *ts[] = {&x, &gx, &gy, &y, &x3, &y3, &y1};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_free(ts[i]);
    classifier_free(c);
}

/* Appends a tensor NAME (shape dims, values v) to f. */
static void add_tensor(st_file *f, const char *name, int ndim, const int64_t *shape, const float *v) {
    f->t = realloc(f->t, sizeof(st_tensor) * (f->n + 1));
    st_tensor *e = &f->t[f->n++];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    e->dtype = ST_F32, e->is_float = 1, e->convertible = 1, e->ndim = ndim, e->numel = 1;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i], e->numel *= (size_t)shape[i];
    e->data = malloc(e->numel * sizeof(float));
    memcpy(e->data, v, e->numel * sizeof(float));
}

/* Logits of the fixture's model with weights f on the fixture's x (n × 10);
 * NULL with err filled when the weights do not load. */
static float *logits_with(st_file *f, drq_err *err) {
    classifier *c = classifier_load("resnet50", FIXTURE ".json", f, 0, DRQ_CPU, err);
    if (!c) return NULL;
    st_file io;
    float *out = NULL;
    if (st_load(FIXTURE ".io.safetensors", &io, err) == 0) {
        const st_tensor *tx = st_find(&io, "x");
        Tensor x = tensor_wrap(tx->data, (int)tx->shape[0], 3, (int)tx->shape[2], (int)tx->shape[3]);
        Tensor y = tensor_new(x.n, 10, 1, 1);
        classifier_forward(c, &x, &y);
        out = malloc(tensor_numel(&y) * sizeof(float));
        memcpy(out, y.data, tensor_numel(&y) * sizeof(float));
        tensor_free(&y);
        st_free(&io);
    }
    classifier_free(c);
    return out;
}

static void test_weights(void) {
    static const int64_t s1133[4] = {1, 3, 1, 1};
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f},
                       bad[3] = {0.5f, 0.5f, 0.5f};
    st_file f;
    drq_err err = {{0}};
    if (st_load(FIXTURE ".weights.safetensors", &f, &err)) {
        CHECK_MSG(0, "fixture: %s", err.msg);
        return;
    }
    float *ref = logits_with(&f, &err);
    CHECK_MSG(ref != NULL, "the fixture's weights do not load: %s", err.msg);

    /* RobustBench's layout: every key under module.model., plus the normaliser's buffers */
    for (int i = 0; i < f.n; i++) {
        char nm[256];
        snprintf(nm, sizeof nm, "module.model.%s", f.t[i].name);
        free(f.t[i].name);
        f.t[i].name = strdup(nm);
    }
    add_tensor(&f, "module.normalize.mean", 4, s1133, mean);
    add_tensor(&f, "module.normalize.std", 4, s1133, stdv);
    float *pre = logits_with(&f, &err);
    CHECK_MSG(pre != NULL, "prefixed weights do not load: %s", err.msg);
    if (ref && pre) CHECK_MSG(memcmp(ref, pre, 30 * sizeof(float)) == 0, "prefixed weights: other logits");
    free(pre);
    memcpy(st_find_mut(&f, "module.normalize.mean")->data, bad, sizeof bad);
    pre = logits_with(&f, &err);
    CHECK_MSG(pre == NULL, "a normalize.mean of 0.5 was accepted");
    CHECK_CONTAINS(err.msg, "tensor 'normalize.mean'[0] is 0.5");
    free(pre), free(ref);
    st_free(&f);

    /* missing, extra, mis-shaped: each named */
    static const struct { const char *name, *want; int how; /* 0 drop, 1 extra copy, 2 reshape */ } cases[] = {
        {"layer3.1.bn2.running_mean", "missing tensor 'layer3.1.bn2.running_mean'", 0},
        {"layer2.0.downsample.0.weight", "missing tensor 'layer2.0.downsample.0.weight'", 0},
        {"fc.bias", "unexpected tensor 'fc.bias2'", 1},
        {"layer1.0.conv2.weight", "tensor 'layer1.0.conv2.weight' has shape [9, 8, 3, 3], the config expects [8, 8, 3, 3]", 2},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        if (st_load(FIXTURE ".weights.safetensors", &f, &err)) continue;
        st_tensor *t = st_find_mut(&f, cases[k].name);
        CHECK_MSG(t != NULL, "fixture lacks %s", cases[k].name);
        if (!t) {
            st_free(&f);
            continue;
        }
        if (cases[k].how == 0) free(t->name), t->name = strdup("__dropped__"), t->used = 1;
        else if (cases[k].how == 1) { /* add_tensor reallocates f.t: copy what t points to first */
            int64_t shape[ST_MAX_DIMS];
            memcpy(shape, t->shape, sizeof shape);
            add_tensor(&f, "fc.bias2", t->ndim, shape, t->data);
        }
        else t->shape[0] += 1;
        float *l = logits_with(&f, &err);
        CHECK_MSG(l == NULL, "%s: a bad weight file loaded", cases[k].want);
        CHECK_CONTAINS(err.msg, cases[k].want);
        free(l);
        st_free(&f);
    }
}

static void test_configs(void) {
    static const struct { const char *arg, *want; } cases[] = {
        {"{\"num_classes\":10,\"layers\":[3,4,6]}", "config.layers: expected 4 integers"},
        {"{\"num_classes\":10,\"depth\":50}", "config.depth: unknown key"},
        {"{\"layers\":[3,4,6,3]}", "config.num_classes: missing"},
        {"{\"num_classes\":10,\"width\":0}", "config.width"},
        {"cifar10", "cifar10"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        drq_err err = {{0}};
        resnet50_config c;
        CHECK_EQ_INT(resnet50_config_parse(cases[i].arg, &c, &err), -1);
        CHECK_CONTAINS(err.msg, cases[i].want);
    }
    drq_err err = {{0}};
    resnet50_config c;
    CHECK_EQ_INT(resnet50_config_parse("{\"num_classes\":7}", &c, &err), 0);
    CHECK_MSG(c.layers[0] == 3 && c.layers[1] == 4 && c.layers[2] == 6 && c.layers[3] == 3 && c.width == 64,
              "defaults: layers %d %d %d %d width %d", c.layers[0], c.layers[1], c.layers[2], c.layers[3], c.width);
    CHECK_MSG(classifier_load("vit", "imagenet", NULL, 1, DRQ_CPU, &err) == NULL, "arch vit loaded");
    CHECK_CONTAINS(err.msg, "unknown classifier arch 'vit'");
}

int main(void) {
    drq_set_threads(2);
    test_param_count();
    test_fd_and_batch();
    test_weights();
    test_configs();
    return CHECK_DONE();
}
