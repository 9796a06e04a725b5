/* cuda_test.c — `make test-cuda`: the CUDA backend against the CPU backend.
 *
 *   1. every op, forward and backward_input, on random shapes (incl. the
 *      asymmetric-padding convolution, odd sizes, the ADM UNet's ops and the
 *      purifier's 28 → 32 resize): normalised MSE
 *      Σ(gpu − cpu)² / Σ cpu² ≤ 1e-9 with precision fp32; the convolutions
 *      again with tf32, ≤ 1e-5 (TF32 keeps 10 mantissa bits);
 *   2. seeded noise: normal_fill on the GPU equals the CPU generator within 8
 *      float32 ulp (the Philox integers are the same code, common/philox.h);
 *   3. finite differences of GPU VJPs (convolution, group norm, attention,
 *      both fixture models, the DDPM purifier);
 *   4. both models (fixtures and the full CIFAR-10 configurations on random
 *      weights): forward and VJP against the CPU, fp32 ≤ 1e-8 and tf32 ≤ 1e-4;
 *   5. batch independence on the GPU (an image alone against the same image
 *      in a batch of 2), ≤ 1e-8 (cuDNN may pick another algorithm per batch);
 *   6. no cudaMalloc in a repeated purify forward + backward;
 *   7. a short PGD trajectory (DDIM and DDPM purifiers) against the float64
 *      PyTorch reference fixture and against the CPU run.
 * Every comparison prints its value.  Without a CUDA build, without the CUDA
 * plugin (or a CUDA library it needs) or without a GPU
 * it reports one SKIP with the reason ("RESULT 0 0 1", exit 0): nothing was
 * tested, nothing is claimed — except where /dev/nvidiactl exists (or
 * DRQ_REQUIRE_GPU=1): there a CUDA that cannot start is a failure (exit 1).
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/rng.h"
#include "../common/safetensors.h"
#include "../kernels/device.h"
#include "../kernels/ops.h"
#include "worker/eval/attack.h"
#include "check.h"

#ifndef DRQ_HAVE_CUDA
int main(void) {
    SKIP("cuda_test: this build has no CUDA backend (CUDA=0, or nvcc/cuDNN missing at build time): nothing "
         "tested");
    return CHECK_DONE();
}
#else
/* The CUDA backend is reached through its plugin (build/libdrq-cuda.so,
 * kernels/cuda_plugin.h), as in drq itself: this program links no CUDA
 * library; P is the plugin's table. */
#include "../kernels/cuda_plugin.h"
static const drq_cuda_plugin *P;
#include "rand.h"
#include "fd.h"
#include "fixture_model.h"
#include "pgd_ref.h"

/* ---- inputs (tests/rand.h) and helpers ---------------------------------- */
static float *rnd_vec(size_t n, float scale, float offset) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = offset + scale * nrand();
    return p;
}
/* Device copies of host parameter vectors, freed at exit. */
static float *gpu_params[4096];
static int n_gpu_params;
static const float *gvec(const float *h, size_t n) {
    if (!h) return NULL;
    float *d = drq_dev_alloc(DRQ_CUDA, n);
    drq_dev_copy(d, DRQ_CUDA, h, DRQ_CPU, n * sizeof(float));
    gpu_params[n_gpu_params++] = d;
    return d;
}

/* Σ(g − c)² / Σ c² with g on the GPU, c on the CPU. */
static double nmse(const Tensor *g, const Tensor *c) {
    Tensor h = tensor_clone_on(DRQ_CPU, g);
    double num = 0, den = 0;
    for (size_t i = 0; i < tensor_numel(c); i++) {
        double d = (double)h.data[i] - c->data[i];
        num += d * d, den += (double)c->data[i] * c->data[i];
    }
    tensor_free(&h);
    return num / (den > 1e-300 ? den : 1.0);
}
/* Every comparison prints its value (the first GPU runs calibrate the tolerances). */
#define CHECK_NMSE(name, g, c, tol)                                                          \
    do {                                                                                     \
        char what_[320];                                                                     \
        double v_ = nmse((g), (c));                                                          \
        snprintf(what_, sizeof what_, "%s: normalised MSE gpu vs cpu", (name));             \
        printf("  %-72s %.3e (tol %.0e)\n", what_, v_, (double)(tol));                       \
        CHECK_LE(v_, (tol), what_);                                                          \
    } while (0)

/* fp32 differs from the CPU by accumulation order only (1e-13 … 1e-10);
 * TF32 leaking into fp32 would show at ~1e-7, so fp32 bounds sit below that
 * (the bound is 1e-7).  TF32 keeps 10 mantissa bits. */
static const double TOL_FP32 = 1e-9, TOL_FP32_MODEL = 1e-8, TOL_TF32_OP = 1e-5, TOL_TF32_MODEL = 1e-4;

/* =====================================================================
 * 1. ops against the CPU
 * ===================================================================== */
typedef struct {
    int n, cin, h, w, cout, k, stride, pad, asym, bias;
} conv_case;

static void test_conv(const conv_case *cc, const char *prec, double tol) {
    char nm[160];
    snprintf(nm, sizeof nm, "conv %d>%d k%d s%d p%d%s%s %dx%dx%d [%s]", cc->cin, cc->cout, cc->k, cc->stride,
             cc->pad, cc->asym ? " asym" : "", cc->bias ? " bias" : "", cc->n, cc->h, cc->w, prec);
    P->set_precision(prec);
    float *w = rnd_vec((size_t)cc->cout * cc->cin * cc->k * cc->k, 1.0f / sqrtf((float)cc->cin * cc->k * cc->k), 0);
    float *b = cc->bias ? rnd_vec(cc->cout, 0.1f, 0) : NULL;
    Conv2d c_cpu = conv2d_make(cc->cin, cc->cout, cc->k, cc->stride, cc->pad, w, b);
    Conv2d c_gpu = conv2d_make(cc->cin, cc->cout, cc->k, cc->stride, cc->pad,
                               gvec(w, (size_t)cc->cout * cc->cin * cc->k * cc->k), gvec(b, cc->cout));
    if (cc->asym) c_cpu.pad_t = c_cpu.pad_l = c_gpu.pad_t = c_gpu.pad_l = 0,
                  c_cpu.pad_b = c_cpu.pad_r = c_gpu.pad_b = c_gpu.pad_r = 1;
    int oh, ow;
    conv2d_out_hw(&c_cpu, cc->h, cc->w, &oh, &ow);
    Tensor x = rnd(cc->n, cc->cin, cc->h, cc->w), y = tensor_new(cc->n, cc->cout, oh, ow);
    Tensor gy = rnd(cc->n, cc->cout, oh, ow), gx = tensor_new(cc->n, cc->cin, cc->h, cc->w);
    Tensor xd = tensor_clone_on(DRQ_CUDA, &x), yd = tensor_new_on(DRQ_CUDA, y.n, y.c, y.h, y.w), gyd = tensor_clone_on(DRQ_CUDA, &gy);
    Tensor gxd = tensor_new_on(DRQ_CUDA, gx.n, gx.c, gx.h, gx.w);
    conv2d_forward(&c_cpu, &x, &y), conv2d_forward(&c_gpu, &xd, &yd);
    conv2d_backward_input(&c_cpu, &gy, &gx), conv2d_backward_input(&c_gpu, &gyd, &gxd);
    char k[200];
    snprintf(k, sizeof k, "%s forward", nm); CHECK_NMSE(k, &yd, &y, tol);
    snprintf(k, sizeof k, "%s backward", nm); CHECK_NMSE(k, &gxd, &gx, tol);
    conv2d_release(&c_cpu), conv2d_release(&c_gpu);
    Tensor *ts[] = {&x, &y, &gy, &gx, &xd, &yd, &gyd, &gxd};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_free(ts[i]);
    free(w), free(b);
    P->set_precision("fp32");
}

/* An op case runs the same body on a CPU side and a GPU side.  Inputs are
 * random host tensors copied to each side; params are host vectors (and
 * their device copies); outputs are compared. */
typedef struct {
    Tensor in[4], out[4];
    const float *p[4];
} side;
typedef struct {
    const char *name;
    int in_shape[4][4], out_shape[4][4];
    size_t p_len[4];
    float p_scale[4], p_offset[4];
    void (*run)(side *s);
} op_case;

static void test_op(const op_case *oc) {
    side s[2];
    memset(s, 0, sizeof s);
    float *hp[4] = {0};
    for (int j = 0; j < 4; j++)
        if (oc->p_len[j]) hp[j] = rnd_vec(oc->p_len[j], oc->p_scale[j], oc->p_offset[j]);
    for (int j = 0; j < 4; j++) {
        const int *sh = oc->in_shape[j];
        if (sh[0]) {
            s[0].in[j] = rnd(sh[0], sh[1], sh[2], sh[3]);
            s[1].in[j] = tensor_clone_on(DRQ_CUDA, &s[0].in[j]);
        }
        sh = oc->out_shape[j];
        if (sh[0]) {
            s[0].out[j] = tensor_new(sh[0], sh[1], sh[2], sh[3]);
            s[1].out[j] = tensor_new_on(DRQ_CUDA, sh[0], sh[1], sh[2], sh[3]);
        }
        s[0].p[j] = hp[j];
        s[1].p[j] = gvec(hp[j], oc->p_len[j]);
    }
    oc->run(&s[0]);
    oc->run(&s[1]);
    for (int j = 0; j < 4; j++)
        if (oc->out_shape[j][0]) {
            char k[160];
            snprintf(k, sizeof k, "%s out%d", oc->name, j);
            CHECK_NMSE(k, &s[1].out[j], &s[0].out[j], TOL_FP32);
        }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++) tensor_free(&s[i].in[j]), tensor_free(&s[i].out[j]);
    for (int j = 0; j < 4; j++) free(hp[j]);
}

static void r_linear(side *s) {
    linear_forward(s->p[0], s->p[1], 37, 29, &s->in[0], &s->out[0]);
    linear_backward_input(s->p[0], 37, 29, &s->in[1], &s->out[1]);
    linear_forward(s->p[0], NULL, 37, 29, &s->in[0], &s->out[2]);
}
static void r_gn(side *s) {
    Tensor st = tensor_new_on(s->in[0].dev, 3, 64, 1, 1);
    group_norm_forward(&s->in[0], 32, 1e-6f, s->p[0], s->p[1], &s->out[0], st.data);
    group_norm_backward_input(&s->in[0], &s->in[1], 32, s->p[0], st.data, &s->out[1]);
    group_norm_forward(&s->in[0], 8, 1e-5f, NULL, NULL, &s->out[2], st.data);
    group_norm_backward_input(&s->in[0], &s->in[1], 8, NULL, st.data, &s->out[3]);
    tensor_free(&st);
}
static void r_gns(side *s) { /* fused group norm + swish; the backward clobbers in[1] (its scratch) */
    Tensor st = tensor_new_on(s->in[0].dev, 3, 64, 1, 1);
    group_norm_swish_forward(&s->in[0], NULL, 32, 1e-6f, s->p[0], s->p[1], &s->out[0], &s->out[1], st.data);
    group_norm_swish_backward_input(&s->in[0], NULL, &s->out[0], &s->in[1], 32, s->p[0], st.data, &s->out[2]);
    tensor_free(&st);
}
static void r_bn(side *s) {
    batch_norm_forward(&s->in[0], s->p[0], s->p[1], &s->out[0]);
    batch_norm_backward_input(&s->in[1], s->p[0], &s->out[1]);
}
static void r_pointwise(side *s) {
    swish_forward(&s->in[0], &s->out[0]);
    swish_backward_input(&s->in[0], &s->in[1], &s->out[1]);
    relu_forward(&s->in[0], &s->out[2]);
    relu_backward_input(&s->in[0], &s->in[1], &s->out[3]);
}
static void r_add(side *s) {
    add_forward(&s->in[0], &s->in[1], &s->out[0]);
    tensor_copy(&s->out[1], &s->in[1]);
    tensor_axpy(0.37f, &s->in[0], &s->out[1]);
    tensor_copy(&s->out[2], &s->in[1]);
    tensor_axpby(-1.5f, &s->in[0], 0.25f, &s->out[2]);
    add_channel_forward(&s->in[0], &s->in[2], &s->out[3]);
}
static void r_addc_bwd(side *s) {
    add_channel_backward_input(&s->in[0], &s->out[0], &s->out[1]);
    add_channel_backward_input(&s->in[0], NULL, &s->out[2]);
}
static void r_attn(side *s) {
    Tensor p = tensor_new_on(s->in[0].dev, s->in[0].n, 64 * 64, 1, 1);
    attention_forward(&s->in[0], &s->in[1], &s->in[2], &p, &s->out[0]);
    attention_backward_input(&s->in[0], &s->in[1], &s->in[2], &p, &s->in[3], &s->out[1], &s->out[2], &s->out[3]);
    tensor_free(&p);
}
static void r_resample(side *s) {
    upsample2x_forward(&s->in[0], &s->out[0]);
    upsample2x_backward_input(&s->in[1], &s->out[1]);
    avgpool_global_forward(&s->in[0], &s->out[2]);
    avgpool_global_backward_input(&s->in[2], &s->out[3]);
}
static void r_maxpool(side *s) { /* the ResNet stem's 3×3 stride 2 pad 1, on an odd 9×8 plane */
    maxpool2d_forward(&s->in[0], 3, 2, 1, &s->out[0]);
    maxpool2d_backward_input(&s->in[0], &s->in[1], 3, 2, 1, &s->out[1]);
}
static void r_concat(side *s) {
    concat_forward(&s->in[0], &s->in[1], &s->out[0]);
    concat_backward_input(&s->in[2], &s->out[1], &s->out[2]);
}
static void r_temb(side *s) {
    const float t[5] = {0.0f, 1.0f, 17.5f, 500.0f, 999.0f};
    timestep_embedding_forward(t, 5, 64, &s->out[0]);
    float gt[5];
    timestep_embedding_backward_input(t, 5, 64, &s->in[0], gt);
    Tensor g = tensor_wrap(gt, 5, 1, 1, 1);
    tensor_copy(&s->out[1], &g);
}
static void r_affine(side *s) {
    affine_clamp_forward(&s->in[0], 0.5f, 0.5f, 0.0f, 1.0f, &s->out[0]);
    affine_clamp_backward_input(&s->in[0], &s->in[1], 0.5f, 0.5f, 0.0f, 1.0f, &s->out[1]);
    affine_clamp_forward(&s->in[0], 2.0f, -1.0f, -INFINITY, INFINITY, &s->out[2]);
    affine_clamp_backward_input(&s->in[0], &s->in[1], 2.0f, -1.0f, -INFINITY, INFINITY, &s->out[3]);
}
static const sampler_coef K_DDPM = {.a = 1.3f, .b = 0.6f, .clamp_x0 = 1, .cx0 = 0.2f, .cx = 0.9f, .cz = 0.1f};
static const sampler_coef K_DDIM = {.a = 1.1f, .b = 0.4f, .clamp_x0 = 0, .cx0 = 0.95f, .ceps = 0.3f};
static void r_sampler(side *s) {
    sampler_step_forward(&s->in[0], &s->in[1], &s->in[2], &K_DDPM, &s->out[0]);
    sampler_step_forward(&s->in[0], &s->in[1], NULL, &K_DDIM, &s->out[1]);
    sampler_step_backward_input(&s->in[0], &s->in[1], &s->in[3], &K_DDPM, &s->out[2], &s->out[3]);
}
static void r_sampler_bwd_ddim(side *s) {
    sampler_step_backward_input(&s->in[0], &s->in[1], &s->in[2], &K_DDIM, &s->out[0], &s->out[1]);
}

/* the ADM UNet's and the ADM purifier's ops */
static void r_pool_resize(side *s) {
    avgpool2x2_forward(&s->in[0], &s->out[0]);
    avgpool2x2_backward_input(&s->in[1], &s->out[1]);
    resize_bilinear_forward(&s->in[2], &s->out[2]); /* 28 → 32: the purifier's 224 → 256 ratio */
    resize_bilinear_backward_input(&s->in[3], &s->out[3]);
}
static void r_scale_shift(side *s) {
    scale_shift_forward(&s->in[0], &s->in[1], &s->out[0]);
    scale_shift_backward_input(&s->in[0], &s->in[1], &s->in[2], &s->out[1], &s->out[2]);
    channel_slice_forward(&s->in[0], 2, &s->out[3]);
}
static void r_lsig_slice(side *s) {
    tensor_copy(&s->out[0], &s->in[2]);
    learned_sigma_forward(&s->in[0], &s->in[1], -9.2f, -4.1f, &s->out[0]);
    learned_sigma_backward_input(&s->in[0], &s->in[1], -9.2f, -4.1f, &s->in[2], &s->out[1]);
    tensor_copy(&s->out[2], &s->in[3]); /* the slice's backward keeps the other channels */
    channel_slice_backward_input(&s->in[0], 4, &s->out[2]);
}
static void heads(side *s, int bf16) {
    drq_device d = s->in[0].dev;
    Tensor q = tensor_new_on(d, 2, 32, 4, 4), k = tensor_new_on(d, 2, 32, 4, 4), v = tensor_new_on(d, 2, 32, 4, 4);
    Tensor gq = tensor_new_on(d, 2, 32, 4, 4), gk = tensor_new_on(d, 2, 32, 4, 4), gv = tensor_new_on(d, 2, 32, 4, 4);
    Tensor p = tensor_new_on(d, 2, 2 * 16 * 16, 1, 1);
    attention_heads_forward(&s->in[0], 2, bf16, &q, &k, &v, &p, &s->out[0]);
    attention_heads_backward_input(&q, &k, &v, &p, &s->in[1], 2, bf16, &gq, &gk, &gv, &s->out[1]);
    Tensor *ts[] = {&q, &k, &v, &gq, &gk, &gv, &p};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_free(ts[i]);
}
static void r_heads(side *s) { heads(s, 0); }
/* bf16 operands (the guided-unet's "precision": "bf16"): the rounding kernel, attention's rounded P and gS */
static void r_heads_bf16(side *s) { heads(s, 1); }
static void r_round_bf16(side *s) { round_bf16_forward(&s->in[0], &s->out[0]); }

static const op_case OPS[] = {
    {"linear", {{3, 37, 1, 1}, {3, 29, 1, 1}}, {{3, 29, 1, 1}, {3, 37, 1, 1}, {3, 29, 1, 1}}, {37 * 29, 29},
     {0.2f, 0.1f}, {0, 0}, r_linear},
    {"group_norm", {{3, 64, 5, 7}, {3, 64, 5, 7}}, {{3, 64, 5, 7}, {3, 64, 5, 7}, {3, 64, 5, 7}, {3, 64, 5, 7}},
     {64, 64}, {0.2f, 0.1f}, {1.0f, 0}, r_gn},
    {"group_norm_swish", {{3, 64, 5, 7}, {3, 64, 5, 7}}, {{3, 64, 5, 7}, {3, 64, 5, 7}, {3, 64, 5, 7}},
     {64, 64}, {0.2f, 0.1f}, {1.0f, 0}, r_gns},
    {"batch_norm", {{2, 12, 6, 5}, {2, 12, 6, 5}}, {{2, 12, 6, 5}, {2, 12, 6, 5}}, {12, 12}, {0.3f, 0.1f},
     {1.0f, 0}, r_bn},
    {"swish/relu", {{2, 7, 9, 11}, {2, 7, 9, 11}}, {{2, 7, 9, 11}, {2, 7, 9, 11}, {2, 7, 9, 11}, {2, 7, 9, 11}},
     {0}, {0}, {0}, r_pointwise},
    {"add/axpy/axpby/add_channel", {{3, 5, 7, 9}, {3, 5, 7, 9}, {3, 5, 1, 1}},
     {{3, 5, 7, 9}, {3, 5, 7, 9}, {3, 5, 7, 9}, {3, 5, 7, 9}}, {0}, {0}, {0}, r_add},
    {"add_channel backward", {{3, 5, 7, 9}}, {{3, 5, 7, 9}, {3, 5, 1, 1}, {3, 5, 1, 1}}, {0}, {0}, {0}, r_addc_bwd},
    {"attention", {{2, 24, 8, 8}, {2, 24, 8, 8}, {2, 24, 8, 8}, {2, 24, 8, 8}},
     {{2, 24, 8, 8}, {2, 24, 8, 8}, {2, 24, 8, 8}, {2, 24, 8, 8}}, {0}, {0}, {0}, r_attn},
    {"upsample/avgpool", {{2, 3, 5, 6}, {2, 3, 10, 12}, {2, 3, 1, 1}},
     {{2, 3, 10, 12}, {2, 3, 5, 6}, {2, 3, 1, 1}, {2, 3, 5, 6}}, {0}, {0}, {0}, r_resample},
    {"maxpool2d", {{2, 3, 9, 8}, {2, 3, 5, 4}}, {{2, 3, 5, 4}, {2, 3, 9, 8}}, {0}, {0}, {0}, r_maxpool},
    {"concat", {{2, 3, 4, 5}, {2, 6, 4, 5}, {2, 9, 4, 5}}, {{2, 9, 4, 5}, {2, 3, 4, 5}, {2, 6, 4, 5}}, {0}, {0},
     {0}, r_concat},
    {"timestep_embedding", {{5, 64, 1, 1}}, {{5, 64, 1, 1}, {5, 1, 1, 1}}, {0}, {0}, {0}, r_temb},
    {"affine_clamp", {{3, 3, 8, 8}, {3, 3, 8, 8}}, {{3, 3, 8, 8}, {3, 3, 8, 8}, {3, 3, 8, 8}, {3, 3, 8, 8}}, {0},
     {0}, {0}, r_affine},
    {"sampler_step", {{2, 3, 9, 9}, {2, 3, 9, 9}, {2, 3, 9, 9}, {2, 3, 9, 9}},
     {{2, 3, 9, 9}, {2, 3, 9, 9}, {2, 3, 9, 9}, {2, 3, 9, 9}}, {0}, {0}, {0}, r_sampler},
    {"sampler_step ddim backward", {{2, 3, 9, 9}, {2, 3, 9, 9}, {2, 3, 9, 9}}, {{2, 3, 9, 9}, {2, 3, 9, 9}}, {0},
     {0}, {0}, r_sampler_bwd_ddim},
    {"avgpool2x2/resize_bilinear", {{2, 3, 6, 10}, {2, 3, 3, 5}, {2, 3, 28, 28}, {2, 3, 32, 32}},
     {{2, 3, 3, 5}, {2, 3, 6, 10}, {2, 3, 32, 32}, {2, 3, 28, 28}}, {0}, {0}, {0}, r_pool_resize},
    {"scale_shift/channel_slice", {{3, 5, 7, 9}, {3, 10, 1, 1}, {3, 5, 7, 9}},
     {{3, 5, 7, 9}, {3, 5, 7, 9}, {3, 10, 1, 1}, {3, 2, 7, 9}}, {0}, {0}, {0}, r_scale_shift},
    {"learned_sigma/channel_slice backward", {{3, 5, 7, 9}, {3, 5, 7, 9}, {3, 5, 7, 9}, {3, 11, 7, 9}},
     {{3, 5, 7, 9}, {3, 5, 7, 9}, {3, 11, 7, 9}}, {0}, {0}, {0}, r_lsig_slice},
    {"attention_heads", {{2, 96, 4, 4}, {2, 32, 4, 4}}, {{2, 32, 4, 4}, {2, 96, 4, 4}}, {0}, {0}, {0}, r_heads},
    {"attention_heads bf16", {{2, 96, 4, 4}, {2, 32, 4, 4}}, {{2, 32, 4, 4}, {2, 96, 4, 4}}, {0}, {0}, {0},
     r_heads_bf16},
    {"round_bf16", {{3, 5, 7, 9}}, {{3, 5, 7, 9}}, {0}, {0}, {0}, r_round_bf16},
};

static void test_ops(void) {
    static const conv_case convs[] = {
        {2, 16, 9, 9, 32, 3, 1, 1, 0, 1},   {3, 8, 8, 8, 8, 3, 2, 0, 1, 1},     {2, 24, 7, 7, 12, 1, 1, 0, 0, 1},
        {1, 3, 32, 32, 128, 3, 1, 1, 0, 1}, {2, 64, 16, 16, 64, 3, 1, 1, 0, 1}, {2, 160, 8, 8, 320, 3, 2, 1, 0, 0},
        {2, 160, 8, 8, 320, 1, 2, 0, 0, 0}, {2, 128, 4, 4, 3, 3, 1, 1, 0, 1},
    };
    for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++) test_conv(&convs[i], "fp32", TOL_FP32);
    for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++) test_conv(&convs[i], "tf32", TOL_TF32_OP);
    for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++) test_op(&OPS[i]);
}

/* =====================================================================
 * 2. seeded noise
 * ===================================================================== */
static void test_noise(void) {
    const uint64_t keys[3] = {0, 1, (UINT64_C(1) << 40) + 7};
    Tensor c = tensor_new(3, 3, 32, 33), g = tensor_new_on(DRQ_CUDA, 3, 3, 32, 33);
    normal_fill(keys, &c);
    normal_fill(keys, &g);
    Tensor h = tensor_clone_on(DRQ_CPU, &g);
    double worst = 0;
    size_t at = 0, same = 0, n = tensor_numel(&c);
    for (size_t i = 0; i < n; i++) {
        /* error in float32 ulps of max(1, |value|): docs/seeds.md asks for ulp-level agreement */
        double d = fabs((double)h.data[i] - c.data[i]) / (FLT_EPSILON * fmax(1.0, fabs(c.data[i])));
        same += h.data[i] == c.data[i];
        if (d > worst) worst = d, at = i;
    }
    char what[200];
    snprintf(what, sizeof what, "normal_fill gpu vs cpu in ulps, worst at %zu (%.9g vs %.9g; %zu of %zu identical)", at,
             h.data[at], c.data[at], same, n);
    CHECK_LE(worst, 8.0, what); /* CUDA logf ≤ 1 ulp, sinf/cosf ≤ 2 ulp, sqrtf exact; glibc within 1 ulp */
    tensor_free(&c), tensor_free(&g), tensor_free(&h);

    /* batches over 256 images take the upload path instead of kernel arguments */
    uint64_t many[300];
    float tt[300];
    for (int i = 0; i < 300; i++) many[i] = drq_key(9, (uint64_t)i, 1000 + (uint64_t)i), tt[i] = (float)(i * 3 % 1000);
    c = tensor_new(300, 1, 3, 3), g = tensor_new_on(DRQ_CUDA, 300, 1, 3, 3);
    normal_fill(many, &c), normal_fill(many, &g);
    CHECK_NMSE("normal_fill, 300 images (upload path)", &g, &c, 1e-12);
    tensor_free(&c), tensor_free(&g);
    c = tensor_new(300, 32, 1, 1), g = tensor_new_on(DRQ_CUDA, 300, 32, 1, 1);
    timestep_embedding_forward(tt, 300, 32, &c), timestep_embedding_forward(tt, 300, 32, &g);
    CHECK_NMSE("timestep embedding, 300 images (upload path)", &g, &c, 1e-12);
    tensor_free(&c), tensor_free(&g);
}

/* =====================================================================
 * 3–6. finite differences, models, batch independence, allocations
 * ===================================================================== */
typedef struct {
    unet *u;
    classifier *w;
    const float *t;
    const Tensor *gy;
    purifier *p;
} fd_ctx;

/* ⟨gy, f(x)⟩ with f on the GPU and x, gy on the host. */
static double fd_loss_gpu(void *vc, const Tensor *x) {
    fd_ctx *c = vc;
    Tensor xd = tensor_clone_on(DRQ_CUDA, x), yd = tensor_new_on(DRQ_CUDA, c->gy->n, c->gy->c, c->gy->h, c->gy->w);
    if (c->u) unet_forward(c->u, &xd, c->t, &yd);
    else if (c->w) classifier_forward(c->w, &xd, &yd);
    else {
        uint64_t om[8] = {5, 5, 5, 5, 5, 5, 5, 5};
        int64_t im[8] = {0, 1, 2, 3, 4, 5, 6, 7};
        purifier_forward(c->p, &xd, om, im, 0, &yd, NULL);
    }
    Tensor y = tensor_clone_on(DRQ_CPU, &yd);
    double s = 0;
    for (size_t i = 0; i < tensor_numel(&y); i++) s += (double)c->gy->data[i] * y.data[i];
    tensor_free(&xd), tensor_free(&yd), tensor_free(&y);
    return s;
}

static float frand(void) { return nrand(); } /* fd.h takes a float generator */

typedef struct {
    const char *cfg, *weights, *io; /* weights NULL: random parameters */
    int is_unet;
    const char *arch; /* a classifier's (classifier.h); NULL: wrn */
} model_case;

/* Forward + VJP of one model on both devices; FD on the GPU for fixtures. */
static void test_model(const model_case *mc, const char *prec, double tol, int fd) {
    drq_err err = {{0}};
    st_file wf = {0};
    char nm[200];
    const char *arch = mc->is_unet ? "unet" : mc->arch ? mc->arch : "wrn";
    snprintf(nm, sizeof nm, "%s %s [%s]", arch, mc->cfg, prec);
    P->set_precision(prec);
    if (mc->weights && st_load(mc->weights, &wf, &err)) {
        CHECK_MSG(0, "%s: %s", nm, err.msg);
        return;
    }
    unet_config uc;
    unet *uh = NULL, *ud = NULL;
    classifier *wh = NULL, *wd = NULL;
    int cin, res, cout;
    if (mc->is_unet) {
        CHECK_MSG(unet_config_parse(mc->cfg, &uc, &err) == 0, "%s", err.msg);
        uh = unet_load(&uc, mc->weights ? &wf : NULL, 7, &err);
        ud = unet_load_on(&uc, mc->weights ? &wf : NULL, 7, DRQ_CUDA, &err);
        cin = uc.in_channels, res = uc.resolution, cout = uc.out_ch;
    } else {
        wh = classifier_load(arch, mc->cfg, mc->weights ? &wf : NULL, 7, DRQ_CPU, &err);
        wd = classifier_load(arch, mc->cfg, mc->weights ? &wf : NULL, 7, DRQ_CUDA, &err);
        /* the classifier's dataset size: CIFAR-10 32, ImageNet 224 */
        cin = wh ? classifier_in_channels(wh) : 3, res = strcmp(arch, "wrn") ? 224 : 32;
        cout = wh ? classifier_num_classes(wh) : 1;
    }
    CHECK_MSG((uh && ud) || (wh && wd), "%s: load: %s", nm, err.msg);
    if (!(uh && ud) && !(wh && wd)) return;
    int n = 2;
    Tensor x = rnd(n, cin, res, res), gy = mc->is_unet ? rnd(n, cout, res, res) : rnd(n, cout, 1, 1);
    if (!mc->is_unet)
        for (size_t i = 0; i < tensor_numel(&x); i++) x.data[i] = (float)urand(); /* images in [0,1] */
    float t[2] = {3.0f, 871.0f};
    Tensor y = tensor_new(gy.n, gy.c, gy.h, gy.w), gx = tensor_new(n, cin, res, res);
    Tensor xd = tensor_clone_on(DRQ_CUDA, &x), gyd = tensor_clone_on(DRQ_CUDA, &gy), yd = tensor_new_on(DRQ_CUDA, y.n, y.c, y.h, y.w);
    Tensor gxd = tensor_new_on(DRQ_CUDA, n, cin, res, res);
    if (uh) {
        unet_forward(uh, &x, t, &y), unet_backward(uh, &gy, &gx);
        unet_forward(ud, &xd, t, &yd), unet_backward(ud, &gyd, &gxd);
    } else {
        classifier_forward(wh, &x, &y), classifier_backward(wh, &gy, &gx);
        classifier_forward(wd, &xd, &yd), classifier_backward(wd, &gyd, &gxd);
    }
    char k[240];
    snprintf(k, sizeof k, "%s forward", nm); CHECK_NMSE(k, &yd, &y, tol);
    snprintf(k, sizeof k, "%s vjp", nm); CHECK_NMSE(k, &gxd, &gx, tol);
    if (fd) {
        Tensor gxh = tensor_clone_on(DRQ_CPU, &gxd);
        fd_ctx c = {ud, wd, t, &gy, NULL};
        fd_check_directions(nm, fd_loss_gpu, &c, &x, &gxh, frand, 3, 1e-2f, 2e-2);
        tensor_free(&gxh);
    }
    if (uh && !strcmp(prec, "fp32")) { /* batch independence: image 1 alone equals image 1 of the batch */
        Tensor x1 = tensor_new_on(DRQ_CUDA, 1, cin, res, res), y1 = tensor_new_on(DRQ_CUDA, 1, cout, res, res);
        size_t per = (size_t)cin * res * res;
        drq_dev_copy(x1.data, DRQ_CUDA, xd.data + per, DRQ_CUDA, per * sizeof(float));
        unet_forward(ud, &x1, t + 1, &y1);
        Tensor ref = tensor_new(1, cout, res, res), got = tensor_clone_on(DRQ_CPU, &yd);
        memcpy(ref.data, got.data + (size_t)cout * res * res, sizeof(float) * cout * res * res);
        snprintf(k, sizeof k, "%s batch 1 vs batch 2 on the gpu", nm); CHECK_NMSE(k, &y1, &ref, 1e-8);
        tensor_free(&x1), tensor_free(&y1), tensor_free(&ref), tensor_free(&got);
    }
    Tensor *ts[] = {&x, &gy, &y, &gx, &xd, &gyd, &yd, &gxd};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_free(ts[i]);
    unet_free(uh), unet_free(ud), classifier_free(wh), classifier_free(wd);
    st_free(&wf);
    P->set_precision("fp32");
}

/* FD of single GPU ops through their public interface. */
typedef struct {
    Conv2d *conv;
    const Tensor *gy;
    int kind; /* 0 conv, 1 group norm, 2 attention (q varies) */
    const float *gamma, *beta;
    const Tensor *k, *v;
} op_fd_ctx;

static double op_loss(void *vc, const Tensor *x) {
    op_fd_ctx *c = vc;
    Tensor xd = tensor_clone_on(DRQ_CUDA, x), yd = tensor_new_on(DRQ_CUDA, c->gy->n, c->gy->c, c->gy->h, c->gy->w);
    if (c->kind == 0) conv2d_forward(c->conv, &xd, &yd);
    if (c->kind == 1) {
        Tensor st = tensor_new_on(DRQ_CUDA, x->n, 64, 1, 1);
        group_norm_forward(&xd, 32, 1e-6f, c->gamma, c->beta, &yd, st.data);
        tensor_free(&st);
    }
    if (c->kind == 2) {
        Tensor p = tensor_new_on(DRQ_CUDA, x->n, x->h * x->w * x->h * x->w, 1, 1);
        attention_forward(&xd, c->k, c->v, &p, &yd);
        tensor_free(&p);
    }
    Tensor y = tensor_clone_on(DRQ_CPU, &yd);
    double s = 0;
    for (size_t i = 0; i < tensor_numel(&y); i++) s += (double)c->gy->data[i] * y.data[i];
    tensor_free(&xd), tensor_free(&yd), tensor_free(&y);
    return s;
}

static void test_op_fd(void) {
    P->set_precision("fp32");
    /* asymmetric-padding stride-2 conv (the DDPM downsampler) */
    float *w = rnd_vec(8 * 6 * 9, 0.15f, 0), *b = rnd_vec(8, 0.1f, 0);
    Conv2d c = conv2d_make(6, 8, 3, 2, 0, gvec(w, 8 * 6 * 9), gvec(b, 8));
    c.pad_b = c.pad_r = 1;
    Tensor x = rnd(2, 6, 8, 8), gy = rnd(2, 8, 4, 4), gyd = tensor_clone_on(DRQ_CUDA, &gy), gxd = tensor_new_on(DRQ_CUDA, 2, 6, 8, 8);
    conv2d_backward_input(&c, &gyd, &gxd);
    Tensor gx = tensor_clone_on(DRQ_CPU, &gxd);
    op_fd_ctx oc = {.conv = &c, .gy = &gy, .kind = 0};
    fd_check_directions("gpu conv asym-pad s2", op_loss, &oc, &x, &gx, frand, 3, 1e-2f, 1e-3);
    conv2d_release(&c);
    tensor_free(&x), tensor_free(&gy), tensor_free(&gyd), tensor_free(&gxd), tensor_free(&gx), free(w), free(b);

    /* group norm */
    float *gm = rnd_vec(64, 0.2f, 1.0f), *bt = rnd_vec(64, 0.1f, 0);
    x = rnd(2, 64, 3, 5), gy = rnd(2, 64, 3, 5);
    Tensor xd = tensor_clone_on(DRQ_CUDA, &x), yd = tensor_new_on(DRQ_CUDA, 2, 64, 3, 5), st = tensor_new_on(DRQ_CUDA, 2, 64, 1, 1);
    gyd = tensor_clone_on(DRQ_CUDA, &gy), gxd = tensor_new_on(DRQ_CUDA, 2, 64, 3, 5);
    const float *gmd = gvec(gm, 64), *btd = gvec(bt, 64);
    group_norm_forward(&xd, 32, 1e-6f, gmd, btd, &yd, st.data);
    group_norm_backward_input(&xd, &gyd, 32, gmd, st.data, &gxd);
    gx = tensor_clone_on(DRQ_CPU, &gxd);
    oc = (op_fd_ctx){.gy = &gy, .kind = 1, .gamma = gmd, .beta = btd};
    fd_check_directions("gpu group_norm", op_loss, &oc, &x, &gx, frand, 3, 1e-2f, 1e-3);
    Tensor *ts[] = {&x, &gy, &xd, &yd, &st, &gyd, &gxd, &gx};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_free(ts[i]);
    free(gm), free(bt);

    /* attention, gradient with respect to q */
    Tensor q = rnd(2, 16, 4, 4), kk = rnd(2, 16, 4, 4), vv = rnd(2, 16, 4, 4), gh = rnd(2, 16, 4, 4);
    Tensor qd = tensor_clone_on(DRQ_CUDA, &q), kd = tensor_clone_on(DRQ_CUDA, &kk), vd = tensor_clone_on(DRQ_CUDA, &vv), ghd = tensor_clone_on(DRQ_CUDA, &gh);
    Tensor p = tensor_new_on(DRQ_CUDA, 2, 256, 1, 1), h = tensor_new_on(DRQ_CUDA, 2, 16, 4, 4);
    Tensor gq = tensor_new_on(DRQ_CUDA, 2, 16, 4, 4), gk = tensor_new_on(DRQ_CUDA, 2, 16, 4, 4),
           gv = tensor_new_on(DRQ_CUDA, 2, 16, 4, 4);
    attention_forward(&qd, &kd, &vd, &p, &h);
    attention_backward_input(&qd, &kd, &vd, &p, &ghd, &gq, &gk, &gv);
    Tensor gqh = tensor_clone_on(DRQ_CPU, &gq);
    oc = (op_fd_ctx){.gy = &gh, .kind = 2, .k = &kd, .v = &vd};
    fd_check_directions("gpu attention dq", op_loss, &oc, &q, &gqh, frand, 3, 1e-2f, 1e-3);
    Tensor *as[] = {&q, &kk, &vv, &gh, &qd, &kd, &vd, &ghd, &p, &h, &gq, &gk, &gv, &gqh};
    for (size_t i = 0; i < sizeof as / sizeof as[0]; i++) tensor_free(as[i]);
}

/* The DDPM purifier's VJP on the GPU by finite differences, and a repeated
 * forward + backward that must not allocate device memory. */
static void test_purifier(void) {
    P->set_precision("fp32");
    st_file wu = {0};
    unet *u = fixture_model("unet_small", 1, &wu, DRQ_CUDA);
    if (!u) return;
    purify_config pc = {.kind = PURIFY_DDPM, .t_star = 3, .clamp_out = 0};
    purifier *p = purifier_new(u, &pc);
    Tensor x = tensor_new(2, 1, 16, 16), gy = rnd(2, 1, 16, 16), y = tensor_new(2, 1, 16, 16);
    for (size_t i = 0; i < tensor_numel(&x); i++) x.data[i] = (float)urand();
    uint64_t om[2] = {5, 5};
    int64_t im[2] = {0, 1};
    Tensor gx = tensor_new(2, 1, 16, 16);
    purifier_forward(p, &x, om, im, 1, &y, NULL);
    purifier_backward(p, &gy, &gx);
    fd_ctx c = {NULL, NULL, NULL, &gy, p};
    fd_check_directions("gpu ddpm purifier t*=3", fd_loss_gpu, &c, &x, &gx, frand, 3, 1e-2f, 2e-2);
    size_t free0 = 0, free1 = 0, total = 0;
    purifier_forward(p, &x, om, im, 1, &y, NULL), purifier_backward(p, &gy, &gx); /* warm: buffers at this shape */
    P->synchronize();
    long a0 = P->alloc_count();
    P->mem_info(&free0, &total);
    for (int r = 0; r < 3; r++) purifier_forward(p, &x, om, im, 1, &y, NULL), purifier_backward(p, &gy, &gx);
    P->synchronize();
    P->mem_info(&free1, &total);
    CHECK_MSG(P->alloc_count() == a0, "cudaMalloc calls during 3 repeated purify forward+backward: %ld",
              P->alloc_count() - a0);
    printf("  device memory free before / after the repeated calls: %zu / %zu bytes (information)\n", free0, free1);
    purifier_free(p);
    unet_free(u);
    st_free(&wu);
    tensor_free(&x), tensor_free(&gy), tensor_free(&y), tensor_free(&gx);
}

/* =====================================================================
 * 7. PGD trajectory: GPU against the float64 reference and the CPU
 * ===================================================================== */
static void pgd_run(drq_device dev, purify_config pc, const Tensor *x, const int *label, Tensor out[3]) {
    st_file wu = {0}, ww = {0};
    unet *u = fixture_model("unet_small", 1, &wu, dev);
    wrn *w = fixture_model("wrn_small", 0, &ww, dev);
    if (!u || !w) return;
    purifier *p = purifier_new(u, &pc);
    classifier *cw = classifier_wrap_wrn(w);
    attack_models am = {cw, p, 10, NULL};
    attack_config ac = pgd_ref_attack();
    attack_state st;
    int64_t image[2] = {0, 1};
    attack_begin(&ac, x, image, &st);
    for (int k = 0; k < 3; k++) {
        attack_step(&ac, &am, x, label, image, &st);
        out[k] = tensor_clone_on(DRQ_CPU, &st.xadv);
    }
    attack_state_free(&st);
    attack_models_release(&am);
    purifier_free(p);
    classifier_free(cw), unet_free(u), wrn_free(w);
    st_free(&wu), st_free(&ww);
}

static void test_pgd(void) {
    P->set_precision("fp32");
    drq_err err = {{0}};
    st_file ref = {0};
    CHECK_MSG(st_load("tests/fixtures/pgd_ref.safetensors", &ref, &err) == 0, "%s", err.msg);
    const st_tensor *tx = st_find(&ref, "x"), *tl = st_find(&ref, "label");
    if (!tx || !tl) return;
    Tensor x = tensor_wrap(tx->data, 2, 1, 16, 16);
    int label[2] = {(int)tl->data[0], (int)tl->data[1]};
    for (int c = 0; c < PGD_REF_NCASES; c++) {
        Tensor g[3] = {{0}}, h[3] = {{0}};
        const pgd_ref_case *pc = &PGD_REF_CASES[c];
        pgd_run(DRQ_CUDA, pc->pc, &x, label, g);
        pgd_run(DRQ_CPU, pc->pc, &x, label, h);
        for (int k = 0; k < 3 && g[k].data && h[k].data; k++) {
            char nm[64], what[160];
            snprintf(nm, sizeof nm, "xadv_%s_%d", pc->name, k + 1);
            const st_tensor *tr = st_find(&ref, nm);
            CHECK_MSG(tr != NULL, "fixture lacks %s", nm);
            snprintf(what, sizeof what, "pgd %s step %d gpu vs float64 reference", pc->name, k + 1);
            if (tr) pgd_ref_compare(what, g[k].data, tr->data, x.data);
            snprintf(what, sizeof what, "pgd %s step %d gpu vs cpu", pc->name, k + 1);
            pgd_ref_compare(what, g[k].data, h[k].data, x.data);
        }
        for (int k = 0; k < 3; k++) tensor_free(&g[k]), tensor_free(&h[k]);
    }
    st_free(&ref);
}

int main(void) {
    drq_err perr;
    P = drq_cuda_plugin_load(&perr);
    int n = P ? P->device_count() : 0;
    if (n < 1) {
        const char *why = P ? P->init_error() : perr.msg, *req = getenv("DRQ_REQUIRE_GPU");
        /* a machine with an NVIDIA device node where CUDA cannot start is a failure, not a skip */
        if (access("/dev/nvidiactl", F_OK) == 0 || (req && !strcmp(req, "1"))) {
            CHECK_MSG(0, "cuda_test: no GPU visible (%s), but a GPU was expected here (/dev/nvidiactl exists or "
                         "DRQ_REQUIRE_GPU=1)", why ? why : "0 devices");
            return CHECK_DONE();
        }
        SKIP("cuda_test: no GPU visible to this process (%s): nothing tested", why ? why : "0 devices");
        return CHECK_DONE();
    }
    drq_err err;
    drq_device_sel d = {DRQ_CUDA, 0};
    if (drq_device_bind(&d, &err)) {
        printf("cuda_test: %s\n", err.msg);
        return 1;
    }
    char desc[256];
    drq_device_describe(&d, desc, sizeof desc);
    printf("cuda_test on %s\n", desc);
    drq_set_threads(0);
    test_ops();
    test_noise();
    test_op_fd();
    static const model_case models[] = {
        {"tests/fixtures/unet_tiny.json", "tests/fixtures/unet_tiny.weights.safetensors", NULL, 1, NULL},
        {"tests/fixtures/unet_small.json", "tests/fixtures/unet_small.weights.safetensors", NULL, 1, NULL},
        {"tests/fixtures/wrn_small.json", "tests/fixtures/wrn_small.weights.safetensors", NULL, 0, NULL},
        {"cifar10", NULL, NULL, 1, NULL},
        {"cifar10", NULL, NULL, 0, NULL},
        {"tests/fixtures/resnet_tiny.json", "tests/fixtures/resnet_tiny.weights.safetensors", NULL, 0, "resnet50"},
        {"imagenet", NULL, NULL, 0, "resnet50"},
    };
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        int fixture = models[i].weights != NULL;
        test_model(&models[i], "fp32", TOL_FP32_MODEL, fixture);
        test_model(&models[i], "tf32", TOL_TF32_MODEL, 0);
    }
    test_purifier();
    test_pgd();
    for (int i = 0; i < n_gpu_params; i++) drq_dev_free(DRQ_CUDA, gpu_params[i]);
    return CHECK_DONE();
}
#endif
