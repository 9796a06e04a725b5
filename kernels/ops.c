/* ops.c — shape/device validation and the one dispatch point of the op
 * interface.  A shape mismatch here is a programming error in a model, so it
 * dies with file:line of the caller's op and both shapes: each checked op is
 * defined as NAME_at(file, line, ...), and ops.h's macro NAME(...) passes the
 * call site (as llm.c's cudaCheck does). */
#define DRQ_OPS_BACKEND /* the table members keep the op names: no call-site macros here */
#include "ops.h"

#include <math.h>

#include "../common/util.h"
#include "cpu/cpu.h"

static const drq_backend *backends[DRQ_NUM_DEVICES] = {
    [DRQ_CPU] = &drq_backend_cpu_base, /* replaced before main by pick_cpu_backend */
    /* [DRQ_CUDA]: installed by kernels/cuda_load.c when the CUDA plugin loads */
};

/* The CPU slot follows oneDNN's instruction set (ONEDNN_MAX_CPU_ISA
 * included); chosen once, before main, so no op call pays for it. */
__attribute__((constructor)) static void pick_cpu_backend(void) { backends[DRQ_CPU] = cpu_backend_select(); }

const drq_backend *drq_backend_for(drq_device dev) { return (unsigned)dev < DRQ_NUM_DEVICES ? backends[dev] : NULL; }

const drq_backend *drq_backend_install(drq_device dev, const drq_backend *b) {
    if ((unsigned)dev >= DRQ_NUM_DEVICES || dev == DRQ_CPU) DIE("drq_backend_install: device %d cannot be replaced", (int)dev);
    const drq_backend *old = backends[dev];
    backends[dev] = b;
    return old;
}

/* The backend that owns t's device; dies if the build has none for it. */
static const drq_backend *backend_of(const Tensor *t) {
    const drq_backend *b = (unsigned)t->dev < DRQ_NUM_DEVICES ? backends[t->dev] : NULL;
    if (!b) DIE("no backend for device %d in this build (hint: a CUDA device must be selected first, which loads the CUDA plugin; build with CUDA=1 where nvcc and cuDNN are installed)", (int)t->dev);
    return b;
}

#define SHAPE_FMT "%dx%dx%dx%d"
#define SHAPE(t) (t)->n, (t)->c, (t)->h, (t)->w
/* file, line: the caller's, passed by the macros of ops.h */
#define REQUIRE(cond, op, a, b)                                                                          \
    do {                                                                                                 \
        if (!(cond))                                                                                     \
            die_(file, line, "%s: bad shapes " SHAPE_FMT " vs " SHAPE_FMT " (%s)", op, SHAPE(a), SHAPE(b), \
                 #cond);                                                                                 \
    } while (0)
#define SAME_DEV(op, a, b) REQUIRE((a)->dev == (b)->dev, op, a, b)
#define SAME(op, a, b)              \
    do {                            \
        SAME_DEV(op, a, b);         \
        REQUIRE(tensor_same_shape(a, b), op, a, b); \
    } while (0)

void conv2d_forward_at(const char *file, int line, Conv2d *c, const Tensor *x, Tensor *y) {
    int oh, ow;
    conv2d_out_hw(c, x->h, x->w, &oh, &ow);
    SAME_DEV("conv2d_forward", x, y);
    REQUIRE(x->c == c->cin && y->n == x->n && y->c == c->cout && y->h == oh && y->w == ow, "conv2d_forward", x, y);
    backend_of(x)->conv2d_forward(c, x, y);
}

void conv2d_backward_input_at(const char *file, int line, Conv2d *c, const Tensor *gy, Tensor *gx) {
    int oh, ow;
    conv2d_out_hw(c, gx->h, gx->w, &oh, &ow);
    SAME_DEV("conv2d_backward_input", gy, gx);
    REQUIRE(gx->c == c->cin && gy->n == gx->n && gy->c == c->cout && gy->h == oh && gy->w == ow,
            "conv2d_backward_input", gy, gx);
    backend_of(gy)->conv2d_backward_input(c, gy, gx);
}

void conv2d_release(Conv2d *c) {
    for (int d = 0; d < DRQ_NUM_DEVICES; d++)
        if (c->impl[d] && backends[d]) backends[d]->conv2d_release(c);
}

void linear_forward_at(const char *file, int line, const float *w, const float *b, int in, int out, const Tensor *x, Tensor *y) {
    SAME_DEV("linear_forward", x, y);
    REQUIRE(x->c * x->h * x->w == in && y->n == x->n && y->c * y->h * y->w == out, "linear_forward", x, y);
    backend_of(x)->linear_forward(w, b, in, out, x, y);
}

void linear_backward_input_at(const char *file, int line, const float *w, int in, int out, const Tensor *gy, Tensor *gx) {
    SAME_DEV("linear_backward_input", gy, gx);
    REQUIRE(gx->c * gx->h * gx->w == in && gy->n == gx->n && gy->c * gy->h * gy->w == out,
            "linear_backward_input", gy, gx);
    backend_of(gy)->linear_backward_input(w, in, out, gy, gx);
}

void group_norm_forward_at(const char *file, int line, const Tensor *x, int groups, float eps, const float *gamma, const float *beta, Tensor *y,
                        float *stats) {
    SAME("group_norm_forward", x, y);
    REQUIRE(groups > 0 && x->c % groups == 0, "group_norm_forward", x, y);
    backend_of(x)->group_norm_forward(x, groups, eps, gamma, beta, y, stats);
}

void group_norm_backward_input_at(const char *file, int line, const Tensor *x, const Tensor *gy, int groups, const float *gamma, const float *stats,
                               Tensor *gx) {
    SAME("group_norm_backward_input", x, gy);
    SAME("group_norm_backward_input", x, gx);
    REQUIRE(groups > 0 && x->c % groups == 0, "group_norm_backward_input", x, gx);
    backend_of(x)->group_norm_backward_input(x, gy, groups, gamma, stats, gx);
}

/* bias: NULL, or n × C × 1 × 1 on x's device */
#define GN_BIAS_OK(x, bias)                                                                                           \
    (!(bias) || ((bias)->dev == (x)->dev && (bias)->n == (x)->n && (bias)->c == (x)->c && (bias)->h == 1 &&           \
                 (bias)->w == 1))

void group_norm_swish_forward_at(const char *file, int line, const Tensor *x, const Tensor *bias, int groups,
                                 float eps, const float *gamma, const float *beta, Tensor *h, Tensor *y,
                                 float *stats) {
    SAME("group_norm_swish_forward", x, h);
    SAME("group_norm_swish_forward", x, y);
    REQUIRE(groups > 0 && x->c % groups == 0, "group_norm_swish_forward", x, y);
    REQUIRE(GN_BIAS_OK(x, bias), "group_norm_swish_forward (bias: n × C × 1 × 1)", x, bias ? bias : x);
    const drq_backend *b = backend_of(x);
    if (b->group_norm_swish_forward) {
        b->group_norm_swish_forward(x, bias, groups, eps, gamma, beta, h, y, stats);
    } else if (bias) { /* x + bias into h, then the norm in place (the CPU and CUDA norms read each
                        * element before writing it, after the group's statistics) */
        b->add_channel_forward(x, bias, h);
        b->group_norm_forward(h, groups, eps, gamma, beta, h, stats);
        b->swish_forward(h, y);
    } else {
        b->group_norm_forward(x, groups, eps, gamma, beta, h, stats);
        b->swish_forward(h, y);
    }
}

void group_norm_swish_backward_input_at(const char *file, int line, const Tensor *x, const Tensor *bias,
                                        const Tensor *h, const Tensor *gy, int groups, const float *gamma,
                                        const float *stats, Tensor *gx) {
    SAME("group_norm_swish_backward_input", x, h);
    SAME("group_norm_swish_backward_input", x, gy);
    SAME("group_norm_swish_backward_input", x, gx);
    REQUIRE(groups > 0 && x->c % groups == 0, "group_norm_swish_backward_input", x, gx);
    REQUIRE(gx->data != x->data && gx->data != h->data && gx->data != gy->data, "group_norm_swish_backward_input", x,
            gx);
    REQUIRE(GN_BIAS_OK(x, bias), "group_norm_swish_backward_input (bias: n × C × 1 × 1)", x, bias ? bias : x);
    const drq_backend *b = backend_of(x);
    if (b->group_norm_swish_backward_input) {
        b->group_norm_swish_backward_input(x, bias, h, gy, groups, gamma, stats, gx);
    } else { /* swish's gradient goes into gy (the caller's scratch), then the norm's */
        b->swish_backward_input(h, gy, (Tensor *)gy);
        if (bias) { /* at x + bias, built in gx and overwritten in place as above */
            b->add_channel_forward(x, bias, gx);
            b->group_norm_backward_input(gx, gy, groups, gamma, stats, gx);
        } else {
            b->group_norm_backward_input(x, gy, groups, gamma, stats, gx);
        }
    }
}

void batch_norm_fold(int c, const float *weight, const float *bias, const float *mean, const float *var, float eps,
                     float *scale, float *shift) {
    for (int i = 0; i < c; i++) {
        double s = (double)weight[i] / sqrt((double)var[i] + eps);
        scale[i] = (float)s;
        shift[i] = (float)((double)bias[i] - (double)mean[i] * s);
    }
}

void batch_norm_forward_at(const char *file, int line, const Tensor *x, const float *scale, const float *shift, Tensor *y) {
    SAME("batch_norm_forward", x, y);
    backend_of(x)->batch_norm_forward(x, scale, shift, y);
}

void batch_norm_backward_input_at(const char *file, int line, const Tensor *gy, const float *scale, Tensor *gx) {
    SAME("batch_norm_backward_input", gy, gx);
    backend_of(gy)->batch_norm_backward_input(gy, scale, gx);
}

void swish_forward_at(const char *file, int line, const Tensor *x, Tensor *y) {
    SAME("swish_forward", x, y);
    backend_of(x)->swish_forward(x, y);
}

void swish_backward_input_at(const char *file, int line, const Tensor *x, const Tensor *gy, Tensor *gx) {
    SAME("swish_backward_input", x, gy);
    SAME("swish_backward_input", x, gx);
    backend_of(x)->swish_backward_input(x, gy, gx);
}

void relu_forward_at(const char *file, int line, const Tensor *x, Tensor *y) {
    SAME("relu_forward", x, y);
    backend_of(x)->relu_forward(x, y);
}

void relu_backward_input_at(const char *file, int line, const Tensor *x, const Tensor *gy, Tensor *gx) {
    SAME("relu_backward_input", x, gy);
    SAME("relu_backward_input", x, gx);
    backend_of(x)->relu_backward_input(x, gy, gx);
}

void add_forward_at(const char *file, int line, const Tensor *a, const Tensor *b, Tensor *y) {
    SAME("add_forward", a, b);
    SAME("add_forward", a, y);
    backend_of(a)->add_forward(a, b, y);
}

void add_channel_forward_at(const char *file, int line, const Tensor *x, const Tensor *v, Tensor *y) {
    SAME("add_channel_forward", x, y);
    SAME_DEV("add_channel_forward", x, v);
    REQUIRE(v->n == x->n && v->c * v->h * v->w == x->c, "add_channel_forward", x, v);
    backend_of(x)->add_channel_forward(x, v, y);
}

void add_channel_backward_input_at(const char *file, int line, const Tensor *gy, Tensor *gx, Tensor *gv) {
    if (gx) SAME("add_channel_backward_input", gy, gx);
    if (gv) {
        SAME_DEV("add_channel_backward_input", gy, gv);
        REQUIRE(gv->n == gy->n && gv->c * gv->h * gv->w == gy->c, "add_channel_backward_input", gy, gv);
    }
    backend_of(gy)->add_channel_backward_input(gy, gx, gv);
}

void tensor_axpy_at(const char *file, int line, float a, const Tensor *x, Tensor *y) {
    SAME("axpy", x, y);
    backend_of(x)->axpy(a, x, y);
}

void attention_forward_at(const char *file, int line, const Tensor *q, const Tensor *k, const Tensor *v, Tensor *p, Tensor *h) {
    int L = q->h * q->w;
    SAME("attention_forward", q, k);
    SAME("attention_forward", q, v);
    SAME("attention_forward", q, h);
    SAME_DEV("attention_forward", q, p);
    REQUIRE(p->n == q->n && (size_t)p->c * p->h * p->w == (size_t)L * L, "attention_forward", q, p);
    backend_of(q)->attention_forward(q, k, v, p, h);
}

void attention_backward_input_at(const char *file, int line, const Tensor *q, const Tensor *k, const Tensor *v, const Tensor *p, const Tensor *gh,
                              Tensor *gq, Tensor *gk, Tensor *gv) {
    int L = q->h * q->w;
    SAME("attention_backward_input", q, k);
    SAME("attention_backward_input", q, v);
    SAME("attention_backward_input", q, gh);
    SAME("attention_backward_input", q, gq);
    SAME("attention_backward_input", q, gk);
    SAME("attention_backward_input", q, gv);
    REQUIRE(p->n == q->n && (size_t)p->c * p->h * p->w == (size_t)L * L, "attention_backward_input", q, p);
    backend_of(q)->attention_backward_input(q, k, v, p, gh, gq, gk, gv);
}

void upsample2x_forward_at(const char *file, int line, const Tensor *x, Tensor *y) {
    SAME_DEV("upsample2x_forward", x, y);
    REQUIRE(y->n == x->n && y->c == x->c && y->h == 2 * x->h && y->w == 2 * x->w, "upsample2x_forward", x, y);
    backend_of(x)->upsample2x_forward(x, y);
}

void upsample2x_backward_input_at(const char *file, int line, const Tensor *gy, Tensor *gx) {
    SAME_DEV("upsample2x_backward_input", gy, gx);
    REQUIRE(gy->n == gx->n && gy->c == gx->c && gy->h == 2 * gx->h && gy->w == 2 * gx->w,
            "upsample2x_backward_input", gy, gx);
    backend_of(gy)->upsample2x_backward_input(gy, gx);
}

void avgpool_global_forward_at(const char *file, int line, const Tensor *x, Tensor *y) {
    SAME_DEV("avgpool_global_forward", x, y);
    REQUIRE(y->n == x->n && y->c == x->c && y->h == 1 && y->w == 1, "avgpool_global_forward", x, y);
    backend_of(x)->avgpool_global_forward(x, y);
}

void avgpool_global_backward_input_at(const char *file, int line, const Tensor *gy, Tensor *gx) {
    SAME_DEV("avgpool_global_backward_input", gy, gx);
    REQUIRE(gy->n == gx->n && gy->c == gx->c && gy->h == 1 && gy->w == 1, "avgpool_global_backward_input", gy, gx);
    backend_of(gy)->avgpool_global_backward_input(gy, gx);
}

void concat_forward_at(const char *file, int line, const Tensor *a, const Tensor *b, Tensor *y) {
    SAME_DEV("concat_forward", a, b);
    SAME_DEV("concat_forward", a, y);
    REQUIRE(a->n == b->n && a->h == b->h && a->w == b->w, "concat_forward", a, b);
    REQUIRE(y->n == a->n && y->c == a->c + b->c && y->h == a->h && y->w == a->w, "concat_forward", a, y);
    backend_of(a)->concat_forward(a, b, y);
}

void concat_backward_input_at(const char *file, int line, const Tensor *gy, Tensor *ga, Tensor *gb) {
    SAME_DEV("concat_backward_input", gy, ga);
    SAME_DEV("concat_backward_input", gy, gb);
    REQUIRE(ga->n == gb->n && ga->h == gb->h && ga->w == gb->w, "concat_backward_input", ga, gb);
    REQUIRE(gy->n == ga->n && gy->c == ga->c + gb->c && gy->h == ga->h && gy->w == ga->w, "concat_backward_input",
            gy, ga);
    backend_of(gy)->concat_backward_input(gy, ga, gb);
}

void timestep_embedding_forward_at(const char *file, int line, const float *t, int n, int dim, Tensor *y) {
    REQUIRE(y->n == n && y->c * y->h * y->w == dim && dim >= 4, "timestep_embedding_forward", y, y);
    backend_of(y)->timestep_embedding_forward(t, n, dim, y);
}

void timestep_embedding_backward_input_at(const char *file, int line, const float *t, int n, int dim, const Tensor *gy, float *gt) {
    REQUIRE(gy->n == n && gy->c * gy->h * gy->w == dim && dim >= 4, "timestep_embedding_backward_input", gy, gy);
    backend_of(gy)->timestep_embedding_backward_input(t, n, dim, gy, gt);
}

void affine_clamp_forward_at(const char *file, int line, const Tensor *x, float a, float b, float lo, float hi, Tensor *y) {
    SAME("affine_clamp_forward", x, y);
    backend_of(x)->affine_clamp_forward(x, a, b, lo, hi, y);
}

void affine_clamp_backward_input_at(const char *file, int line, const Tensor *x, const Tensor *gy, float a, float b, float lo, float hi, Tensor *gx) {
    SAME("affine_clamp_backward_input", x, gy);
    SAME("affine_clamp_backward_input", x, gx);
    backend_of(x)->affine_clamp_backward_input(x, gy, a, b, lo, hi, gx);
}

void tensor_axpby_at(const char *file, int line, float a, const Tensor *x, float b, Tensor *y) {
    SAME("axpby", x, y);
    backend_of(x)->axpby(a, x, b, y);
}

void sampler_step_forward_at(const char *file, int line, const Tensor *x, const Tensor *eps, const Tensor *z, const sampler_coef *k, Tensor *y) {
    SAME("sampler_step_forward", x, eps);
    SAME("sampler_step_forward", x, y);
    if (z) SAME("sampler_step_forward", x, z);
    backend_of(x)->sampler_step_forward(x, eps, z, k, y);
}

void sampler_step_backward_input_at(const char *file, int line, const Tensor *x, const Tensor *eps, const Tensor *g, const sampler_coef *k, Tensor *gx,
                                 Tensor *geps) {
    SAME("sampler_step_backward_input", x, eps);
    SAME("sampler_step_backward_input", x, g);
    SAME("sampler_step_backward_input", x, gx);
    SAME("sampler_step_backward_input", x, geps);
    backend_of(x)->sampler_step_backward_input(x, eps, g, k, gx, geps);
}

void normal_fill(const uint64_t *keys, Tensor *y) { backend_of(y)->normal_fill(keys, y); }
