/* test_batch_invariance.c — drq promises per-image results that do not
 * depend on the batch size or the thread count, bit for bit, on any x86-64
 * CPU (docs/seeds.md "What is reproducible").  The risk is in any op whose
 * reduction order a library or a thread split could change: oneDNN's gemm
 * convolutions (refused by kernels/cpu/conv.c), its sgemm (linear and
 * attention), the norms, pooling and channel sums.
 *
 * Part 1, convolutions, one small struct per case: every convolution shape of
 * the demo models (Fashion-MNIST, 1 input channel) and the CIFAR-10 models,
 * plus 2-channel inputs; image 0's forward output and backward-data gradient
 * must be bit-identical at batch 1, 2, 3, 5, 8 and 13 and at 1, 2, 3 and 4
 * threads.
 * Part 2, whole models: the demo UNet and WRN (their real configs, random
 * weights), the CIFAR-10 UNet and WRN-28-10, ImageNet's ResNet-50 at 224×224
 * and a 2-channel UNet, and a small ADM UNet (guided-unet: scale-shift,
 * updown, multi-head attention) in fp32 and with bf16 operands (issue 17:
 * the rounding is elementwise, the GEMMs unchanged); forward
 * and input-VJP of a batch of 3 at 1, 2 and 3 threads against each image
 * alone at 1 thread.  This covers every op and every GEMM shape (M = 1 and
 * M > 1) the models run.
 *
 * CI runs this file twice: at the machine's own ISA and under
 * ONEDNN_MAX_CPU_ISA=AVX2 (.ci/run), so an AVX-512 machine proves the AVX2
 * path too.
 */
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"
#include "../kernels/ops.h"
#include "worker/models/classifier.h"
#include "worker/models/models.h"
#include "check.h"

typedef struct {
    const char *name;
    int cin, cout, k, stride, pad_t, pad_l, pad_b, pad_r, h;
} conv_case;

static const conv_case conv_cases[] = {
    /* CIFAR-10 DDPM UNet (docs/design.md §Models) */
    {"unet conv_in 3>128 @32", 3, 128, 3, 1, 1, 1, 1, 1, 32},
    {"unet 3x3 128 @32", 128, 128, 3, 1, 1, 1, 1, 1, 32},
    {"unet 3x3 128>256 @16", 128, 256, 3, 1, 1, 1, 1, 1, 16},
    {"unet nin 1x1 128>256 @16", 128, 256, 1, 1, 0, 0, 0, 0, 16},
    {"unet 3x3 256 @8", 256, 256, 3, 1, 1, 1, 1, 1, 8},
    {"unet 3x3 256 @4", 256, 256, 3, 1, 1, 1, 1, 1, 4},
    {"unet down 3x3 s2 pad(0,0,1,1) @16", 256, 256, 3, 2, 0, 0, 1, 1, 16},
    {"unet qkv 1x1 256 @16", 256, 256, 1, 1, 0, 0, 0, 0, 16},
    {"unet nin 1x1 384>256 @16", 384, 256, 1, 1, 0, 0, 0, 0, 16},
    {"unet nin 1x1 512>256 @8", 512, 256, 1, 1, 0, 0, 0, 0, 8},
    {"unet up 3x3 384>128 @32", 384, 128, 3, 1, 1, 1, 1, 1, 32},
    {"unet conv_out 128>3 @32", 128, 3, 3, 1, 1, 1, 1, 1, 32},
    /* WRN-28-10 (docs/design.md §Models) */
    {"wrn conv1 3>16 @32", 3, 16, 3, 1, 1, 1, 1, 1, 32},
    {"wrn 3x3 16>160 @32", 16, 160, 3, 1, 1, 1, 1, 1, 32},
    {"wrn shortcut 1x1 16>160 @32", 16, 160, 1, 1, 0, 0, 0, 0, 32},
    {"wrn 3x3 160>320 s2 @32", 160, 320, 3, 2, 1, 1, 1, 1, 32},
    {"wrn shortcut 1x1 s2 160>320 @32", 160, 320, 1, 2, 0, 0, 0, 0, 32},
    {"wrn 3x3 640 @8", 640, 640, 3, 1, 1, 1, 1, 1, 8},
    /* demo models (examples/models: Fashion-MNIST, 28x28, 1 channel) */
    {"demo unet conv_in 1>32 @28", 1, 32, 3, 1, 1, 1, 1, 1, 28},
    {"demo unet conv_out 32>1 @28", 32, 1, 3, 1, 1, 1, 1, 1, 28},
    {"demo unet down 3x3 s2 @28", 32, 32, 3, 2, 0, 0, 1, 1, 28},
    {"demo unet 3x3 64 @7", 64, 64, 3, 1, 1, 1, 1, 1, 7},
    {"demo unet nin 1x1 96>64 @14", 96, 64, 1, 1, 0, 0, 0, 0, 14},
    {"demo wrn conv1 1>16 @28", 1, 16, 3, 1, 1, 1, 1, 1, 28},
    {"demo wrn 3x3 32>64 s2 @28", 32, 64, 3, 2, 1, 1, 1, 1, 28},
    {"demo wrn shortcut 1x1 s2 64>128 @14", 64, 128, 1, 2, 0, 0, 0, 0, 14},
    /* 2 input channels */
    {"conv 2>32 @16", 2, 32, 3, 1, 1, 1, 1, 1, 16},
    {"conv 32>2 @16", 32, 2, 3, 1, 1, 1, 1, 1, 16},
};

static const int batches[] = {1, 2, 3, 5, 8, 13};
static const int thread_counts[] = {1, 2, 3, 4};
#define NB (int)(sizeof batches / sizeof batches[0])
#define NT (int)(sizeof thread_counts / sizeof thread_counts[0])

static void conv_case_run(const conv_case *sh) {
    size_t nw = (size_t)sh->cout * sh->cin * sh->k * sh->k;
    float *w = xmalloc(nw * sizeof(float)), *b = xmalloc(sh->cout * sizeof(float));
    for (size_t i = 0; i < nw; i++) w[i] = (float)((int)(i * 7919 % 1001) - 500) / 8000.0f;
    for (int i = 0; i < sh->cout; i++) b[i] = 0.01f * (float)i;
    Conv2d c = conv2d_make(sh->cin, sh->cout, sh->k, sh->stride, 0, w, b);
    c.pad_t = sh->pad_t, c.pad_l = sh->pad_l, c.pad_b = sh->pad_b, c.pad_r = sh->pad_r;
    int oh, ow;
    conv2d_out_hw(&c, sh->h, sh->h, &oh, &ow);
    Tensor x = tensor_new(13, sh->cin, sh->h, sh->h), gy = tensor_new(13, sh->cout, oh, ow);
    for (size_t i = 0; i < tensor_numel(&x); i++) x.data[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
    for (size_t i = 0; i < tensor_numel(&gy); i++) gy.data[i] = (float)((i * 40503u) % 997) / 997.0f - 0.5f;
    size_t pery = (size_t)sh->cout * oh * ow, perx = (size_t)sh->cin * sh->h * sh->h;
    float *y1 = xmalloc(pery * sizeof(float)), *g1 = xmalloc(perx * sizeof(float));
    int bad_fwd = 0, bad_bwd = 0;
    char where_f[64] = "", where_b[64] = "";
    for (int ti = 0; ti < NT; ti++) {
        drq_set_threads(thread_counts[ti]);
        for (int k = 0; k < NB; k++) {
            int n = batches[k];
            Tensor xn = tensor_wrap(x.data, n, sh->cin, sh->h, sh->h), gyn = tensor_wrap(gy.data, n, sh->cout, oh, ow);
            Tensor y = tensor_new(n, sh->cout, oh, ow), gx = tensor_new(n, sh->cin, sh->h, sh->h);
            conv2d_forward(&c, &xn, &y);
            conv2d_backward_input(&c, &gyn, &gx);
            if (ti == 0 && n == 1) { /* the reference: batch 1, 1 thread */
                memcpy(y1, y.data, pery * sizeof(float));
                memcpy(g1, gx.data, perx * sizeof(float));
            } else {
                if (memcmp(y1, y.data, pery * sizeof(float)) && !bad_fwd++)
                    snprintf(where_f, sizeof where_f, "batch %d, %d threads (rel %.3g)", n, thread_counts[ti],
                             rel_l2(y.data, y1, pery));
                if (memcmp(g1, gx.data, perx * sizeof(float)) && !bad_bwd++)
                    snprintf(where_b, sizeof where_b, "batch %d, %d threads (rel %.3g)", n, thread_counts[ti],
                             rel_l2(gx.data, g1, perx));
            }
            tensor_free(&y), tensor_free(&gx);
        }
    }
    CHECK_MSG(!bad_fwd, "%s: forward of image 0 differs from batch 1 / 1 thread in %d of %d runs, first at %s",
              sh->name, bad_fwd, NB * NT - 1, where_f);
    CHECK_MSG(!bad_bwd, "%s: backward-data of image 0 differs from batch 1 / 1 thread in %d of %d runs, first at %s",
              sh->name, bad_bwd, NB * NT - 1, where_b);
    conv2d_release(&c);
    tensor_free(&x), tensor_free(&gy);
    free(w), free(b), free(y1), free(g1);
}

/* ---- whole models --------------------------------------------------------- */
typedef struct {
    const char *name, *arch, *config; /* arch "unet" or a classifier's; config as for drq model --config */
    int in_c, hw;
} model_case;

static const model_case model_cases[] = {
    {"demo unet", "unet", "examples/models/fmnist-ddpm.json", 1, 28},
    {"demo wrn-16-2", "wrn", "examples/models/fmnist-wrn.json", 1, 28},
    {"cifar10 unet", "unet", "cifar10", 3, 32},
    {"cifar10 wrn-28-10", "wrn", "cifar10", 3, 32},
    {"imagenet resnet50", "resnet50", "imagenet", 3, 224},
    {"2-channel unet", "unet",
     "{\"resolution\":16,\"in_channels\":2,\"out_ch\":2,\"ch\":32,\"ch_mult\":[1,2],\"num_res_blocks\":1,"
     "\"attn_resolutions\":[8]}",
     2, 16},
    {"guided-unet tiny", "guided", "tests/fixtures/guided_tiny.json", 3, 32},
    {"guided-unet tiny bf16", "guided-bf16", "tests/fixtures/guided_tiny.json", 3, 32},
};

typedef struct {
    unet *u;
    classifier *w;
    guided_unet *g;
    int out_c, out_hw;
} net;

/* y = f(x) and gx = VJP(gy) for n images starting at image i0. */
static void net_run(net *m, const Tensor *x, const float *t, const Tensor *gy, int i0, int n, float *y, float *gx) {
    size_t perx = (size_t)x->c * x->h * x->w, pery = (size_t)m->out_c * m->out_hw * m->out_hw;
    Tensor xn = tensor_wrap(x->data + i0 * perx, n, x->c, x->h, x->w);
    Tensor gyn = tensor_wrap(gy->data + i0 * pery, n, m->out_c, m->out_hw, m->out_hw);
    Tensor yn = tensor_wrap(y, n, m->out_c, m->out_hw, m->out_hw), gxn = tensor_wrap(gx, n, x->c, x->h, x->w);
    if (m->u) {
        unet_forward(m->u, &xn, t + i0, &yn);
        unet_backward(m->u, &gyn, &gxn);
    } else if (m->g) {
        guided_unet_forward(m->g, &xn, t + i0, &yn);
        guided_unet_backward(m->g, &gyn, &gxn);
    } else {
        classifier_forward(m->w, &xn, &yn);
        classifier_backward(m->w, &gyn, &gxn);
    }
}

static void model_case_run(const model_case *mc) {
    drq_err err;
    net m = {0};
    if (!strcmp(mc->arch, "unet")) {
        unet_config c;
        if (unet_config_parse(mc->config, &c, &err)) { CHECK_MSG(0, "%s: %s", mc->name, err.msg); return; }
        m.u = unet_load(&c, NULL, 11, &err);
        m.out_c = c.out_ch, m.out_hw = c.resolution;
    } else if (!strncmp(mc->arch, "guided", 6)) {
        guided_unet_config c;
        if (guided_unet_config_parse(mc->config, &c, &err)) { CHECK_MSG(0, "%s: %s", mc->name, err.msg); return; }
        c.bf16 = !strcmp(mc->arch, "guided-bf16");
        m.g = guided_unet_load(&c, NULL, 17, DRQ_CPU, &err);
        m.out_c = c.learn_sigma ? 6 : 3, m.out_hw = c.image_size;
    } else {
        m.w = classifier_load(mc->arch, mc->config, NULL, 13, DRQ_CPU, &err);
        m.out_c = m.w ? classifier_num_classes(m.w) : 0, m.out_hw = 1;
    }
    if (!m.u && !m.w && !m.g) { CHECK_MSG(0, "%s: load: %s", mc->name, err.msg); return; }
    enum { N = 3 };
    float t[N] = {3.0f, 250.5f, 999.0f};
    Tensor x = tensor_new(N, mc->in_c, mc->hw, mc->hw), gy = tensor_new(N, m.out_c, m.out_hw, m.out_hw);
    for (size_t i = 0; i < tensor_numel(&x); i++) x.data[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
    for (size_t i = 0; i < tensor_numel(&gy); i++) gy.data[i] = (float)((i * 40503u) % 997) / 997.0f - 0.5f;
    size_t ny = tensor_numel(&gy), nx = tensor_numel(&x), pery = ny / N, perx = nx / N;
    float *y1 = xmalloc(ny * sizeof(float)), *g1 = xmalloc(nx * sizeof(float));
    float *yb = xmalloc(ny * sizeof(float)), *gb = xmalloc(nx * sizeof(float));
    drq_set_threads(1);
    for (int i = 0; i < N; i++) net_run(&m, &x, t, &gy, i, 1, y1 + i * pery, g1 + i * perx);
    static const int threads[] = {1, 2, 3};
    for (size_t k = 0; k < sizeof threads / sizeof threads[0]; k++) {
        drq_set_threads(threads[k]);
        net_run(&m, &x, t, &gy, 0, N, yb, gb);
        CHECK_MSG(!memcmp(y1, yb, ny * sizeof(float)),
                  "%s: forward of a batch of 3 at %d threads differs from each image alone at 1 thread (rel %.3g)",
                  mc->name, threads[k], rel_l2(yb, y1, ny));
        CHECK_MSG(!memcmp(g1, gb, nx * sizeof(float)),
                  "%s: input-VJP of a batch of 3 at %d threads differs from each image alone at 1 thread (rel %.3g)",
                  mc->name, threads[k], rel_l2(gb, g1, nx));
    }
    tensor_free(&x), tensor_free(&gy);
    free(y1), free(g1), free(yb), free(gb);
    if (m.u) unet_free(m.u);
    guided_unet_free(m.g);
    classifier_free(m.w);
}

int main(void) {
    for (size_t s = 0; s < sizeof conv_cases / sizeof conv_cases[0]; s++) conv_case_run(&conv_cases[s]);
    for (size_t s = 0; s < sizeof model_cases / sizeof model_cases[0]; s++) model_case_run(&model_cases[s]);
    return CHECK_DONE();
}
