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

/* ---- bf16 operands (ops.h): the one place the matmul-class ops round ---- */
void round_bf16_forward_at(const char *file, int line, const Tensor *x, Tensor *y) {
    SAME("round_bf16_forward", x, y);
    const drq_backend *b = backend_of(x);
    if (!b->round_bf16) die_(file, line, "round_bf16_forward: the %s backend has no round_bf16", b->name);
    b->round_bf16(x, y);
}

/* The operand an op computes with: t itself, or with bf16 set, t rounded to
 * bfloat16 in *scratch (a new tensor on t's device; the caller frees it with
 * tensor_free, a no-op on the zeroed scratch of the float32 case).  Allocated
 * per call: bf16 here emulates the numerics, not the speed or memory of bf16
 * arithmetic. */
static const Tensor *bf16_operand(const char *file, int line, int bf16, const Tensor *t, Tensor *scratch) {
    *scratch = (Tensor){0};
    if (!bf16) return t;
    *scratch = tensor_new_on(t->dev, t->n, t->c, t->h, t->w);
    round_bf16_forward_at(file, line, t, scratch);
    return scratch;
}

void conv2d_forward_at(const char *file, int line, Conv2d *c, const Tensor *x, Tensor *y) {
    int oh, ow;
    conv2d_out_hw(c, x->h, x->w, &oh, &ow);
    SAME_DEV("conv2d_forward", x, y);
    REQUIRE(x->c == c->cin && y->n == x->n && y->c == c->cout && y->h == oh && y->w == ow, "conv2d_forward", x, y);
    Tensor xr;
    backend_of(x)->conv2d_forward(c, bf16_operand(file, line, c->bf16, x, &xr), y);
    tensor_free(&xr);
}

void conv2d_backward_input_at(const char *file, int line, Conv2d *c, const Tensor *gy, Tensor *gx) {
    int oh, ow;
    conv2d_out_hw(c, gx->h, gx->w, &oh, &ow);
    SAME_DEV("conv2d_backward_input", gy, gx);
    REQUIRE(gx->c == c->cin && gy->n == gx->n && gy->c == c->cout && gy->h == oh && gy->w == ow,
            "conv2d_backward_input", gy, gx);
    Tensor gr;
    backend_of(gy)->conv2d_backward_input(c, bf16_operand(file, line, c->bf16, gy, &gr), gx);
    tensor_free(&gr);
}

void conv2d_release(Conv2d *c) {
    for (int d = 0; d < DRQ_NUM_DEVICES; d++)
        if (c->impl[d] && backends[d]) backends[d]->conv2d_release(c);
}

void linear_forward_prec_at(const char *file, int line, int bf16, const float *w, const float *b, int in, int out,
                            const Tensor *x, Tensor *y) {
    SAME_DEV("linear_forward", x, y);
    REQUIRE(x->c * x->h * x->w == in && y->n == x->n && y->c * y->h * y->w == out, "linear_forward", x, y);
    Tensor xr;
    backend_of(x)->linear_forward(w, b, in, out, bf16_operand(file, line, bf16, x, &xr), y);
    tensor_free(&xr);
}

void linear_forward_at(const char *file, int line, const float *w, const float *b, int in, int out, const Tensor *x, Tensor *y) {
    linear_forward_prec_at(file, line, 0, w, b, in, out, x, y);
}

void linear_backward_input_prec_at(const char *file, int line, int bf16, const float *w, int in, int out,
                                   const Tensor *gy, Tensor *gx) {
    SAME_DEV("linear_backward_input", gy, gx);
    REQUIRE(gx->c * gx->h * gx->w == in && gy->n == gx->n && gy->c * gy->h * gy->w == out,
            "linear_backward_input", gy, gx);
    Tensor gr;
    backend_of(gy)->linear_backward_input(w, in, out, bf16_operand(file, line, bf16, gy, &gr), gx);
    tensor_free(&gr);
}

void linear_backward_input_at(const char *file, int line, const float *w, int in, int out, const Tensor *gy, Tensor *gx) {
    linear_backward_input_prec_at(file, line, 0, w, in, out, gy, gx);
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
    backend_of(q)->attention_forward(q, k, v, p, h, 0);
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
    backend_of(q)->attention_backward_input(q, k, v, p, gh, gq, gk, gv, 0);
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

/* k, stride, pad and the output size, as ops.h's maxpool2d comment says */
#define MAXPOOL_REQUIRE(op, x, y)                                                                        \
    do {                                                                                                 \
        SAME_DEV(op, x, y);                                                                              \
        REQUIRE(k >= 1 && stride >= 1 && pad >= 0 && 2 * pad <= k && x->h + 2 * pad >= k && x->w + 2 * pad >= k, \
                op, x, y);                                                                               \
        REQUIRE(y->n == x->n && y->c == x->c && y->h == maxpool2d_out(x->h, k, stride, pad) &&           \
                    y->w == maxpool2d_out(x->w, k, stride, pad),                                         \
                op, x, y);                                                                               \
    } while (0)

void maxpool2d_forward_at(const char *file, int line, const Tensor *x, int k, int stride, int pad, Tensor *y) {
    MAXPOOL_REQUIRE("maxpool2d_forward", x, y);
    backend_of(x)->maxpool2d_forward(x, k, stride, pad, y);
}

void maxpool2d_backward_input_at(const char *file, int line, const Tensor *x, const Tensor *gy, int k, int stride,
                                 int pad, Tensor *gx) {
    MAXPOOL_REQUIRE("maxpool2d_backward_input", x, gy);
    SAME("maxpool2d_backward_input", x, gx);
    REQUIRE(gx->data != gy->data, "maxpool2d_backward_input", gy, gx);
    backend_of(x)->maxpool2d_backward_input(x, gy, k, stride, pad, gx);
}

void avgpool2x2_forward_at(const char *file, int line, const Tensor *x, Tensor *y) {
    SAME_DEV("avgpool2x2_forward", x, y);
    REQUIRE(x->h % 2 == 0 && x->w % 2 == 0 && y->n == x->n && y->c == x->c && 2 * y->h == x->h && 2 * y->w == x->w,
            "avgpool2x2_forward", x, y);
    backend_of(x)->avgpool2x2_forward(x, y);
}

void avgpool2x2_backward_input_at(const char *file, int line, const Tensor *gy, Tensor *gx) {
    SAME_DEV("avgpool2x2_backward_input", gy, gx);
    REQUIRE(gy->n == gx->n && gy->c == gx->c && 2 * gy->h == gx->h && 2 * gy->w == gx->w,
            "avgpool2x2_backward_input", gy, gx);
    backend_of(gy)->avgpool2x2_backward_input(gy, gx);
}

void resize_bilinear_forward_at(const char *file, int line, const Tensor *x, Tensor *y) {
    SAME_DEV("resize_bilinear_forward", x, y);
    REQUIRE(y->n == x->n && y->c == x->c && x->h > 0 && x->w > 0 && y->h > 0 && y->w > 0, "resize_bilinear_forward",
            x, y);
    backend_of(x)->resize_bilinear_forward(x, y);
}

void resize_bilinear_backward_input_at(const char *file, int line, const Tensor *gy, Tensor *gx) {
    SAME_DEV("resize_bilinear_backward_input", gy, gx);
    REQUIRE(gy->n == gx->n && gy->c == gx->c && gx->h > 0 && gx->w > 0, "resize_bilinear_backward_input", gy, gx);
    backend_of(gy)->resize_bilinear_backward_input(gy, gx);
}

void scale_shift_forward_at(const char *file, int line, const Tensor *x, const Tensor *ss, Tensor *y) {
    SAME("scale_shift_forward", x, y);
    SAME_DEV("scale_shift_forward", x, ss);
    REQUIRE(ss->n == x->n && ss->c * ss->h * ss->w == 2 * x->c, "scale_shift_forward", x, ss);
    backend_of(x)->scale_shift_forward(x, ss, y);
}

void scale_shift_backward_input_at(const char *file, int line, const Tensor *x, const Tensor *ss, const Tensor *gy,
                                   Tensor *gx, Tensor *gss) {
    SAME("scale_shift_backward_input", x, gy);
    SAME("scale_shift_backward_input", x, gx);
    SAME_DEV("scale_shift_backward_input", x, ss);
    REQUIRE(ss->n == x->n && ss->c * ss->h * ss->w == 2 * x->c, "scale_shift_backward_input", x, ss);
    if (gss) {
        SAME("scale_shift_backward_input", ss, gss);
        REQUIRE(gss->data != gy->data && gss->data != gx->data, "scale_shift_backward_input", gss, gx);
    }
    backend_of(x)->scale_shift_backward_input(x, ss, gy, gx, gss);
}

void channel_slice_forward_at(const char *file, int line, const Tensor *x, int c0, Tensor *y) {
    SAME_DEV("channel_slice_forward", x, y);
    REQUIRE(c0 >= 0 && c0 + y->c <= x->c && y->n == x->n && y->h == x->h && y->w == x->w, "channel_slice_forward", x,
            y);
    backend_of(x)->channel_slice_forward(x, c0, y);
}

void channel_slice_backward_input_at(const char *file, int line, const Tensor *gy, int c0, Tensor *gx) {
    SAME_DEV("channel_slice_backward_input", gy, gx);
    REQUIRE(c0 >= 0 && c0 + gy->c <= gx->c && gy->n == gx->n && gy->h == gx->h && gy->w == gx->w,
            "channel_slice_backward_input", gy, gx);
    backend_of(gy)->channel_slice_backward_input(gy, c0, gx);
}

/* t seen as (n·heads) × (c/heads) × H × W: the per-head view of multi-head attention. */
static Tensor head_view(const Tensor *t, int heads) {
    Tensor v = *t;
    v.owns = 0;
    v.n = t->n * heads, v.c = t->c / heads;
    return v;
}

/* Composed from the backend's channel slices and single-head attention:
 * qkv viewed per head as (n·heads) × 3ch is sliced into q, k, v; p and h
 * viewed per head are the single-head op's. */
void attention_heads_forward_at(const char *file, int line, const Tensor *qkv, int heads, int bf16, Tensor *q,
                                Tensor *k, Tensor *v, Tensor *p, Tensor *h) {
    int L = h->h * h->w;
    SAME("attention_heads_forward", h, q);
    SAME("attention_heads_forward", h, k);
    SAME("attention_heads_forward", h, v);
    SAME_DEV("attention_heads_forward", qkv, h);
    SAME_DEV("attention_heads_forward", qkv, p);
    REQUIRE(heads > 0 && h->c % heads == 0 && qkv->n == h->n && qkv->c == 3 * h->c && qkv->h == h->h &&
                qkv->w == h->w, "attention_heads_forward", qkv, h);
    REQUIRE(p->n == h->n && (size_t)p->c * p->h * p->w == (size_t)heads * L * L, "attention_heads_forward", h, p);
    const drq_backend *b = backend_of(qkv);
    Tensor QKV = head_view(qkv, heads), Q = head_view(q, heads), K = head_view(k, heads), V = head_view(v, heads);
    Tensor H = head_view(h, heads), P = *p;
    P.owns = 0, P.n = h->n * heads, P.c = L * L, P.h = P.w = 1;
    b->channel_slice_forward(&QKV, 0, &Q);
    b->channel_slice_forward(&QKV, Q.c, &K);
    b->channel_slice_forward(&QKV, 2 * Q.c, &V);
    if (bf16) { /* q, k, v are the op's own saved copies: rounded in place, the backward reads them so */
        round_bf16_forward_at(file, line, q, q);
        round_bf16_forward_at(file, line, k, k);
        round_bf16_forward_at(file, line, v, v);
    }
    b->attention_forward(&Q, &K, &V, &P, &H, bf16);
}

void attention_heads_backward_input_at(const char *file, int line, const Tensor *q, const Tensor *k, const Tensor *v,
                                       const Tensor *p, const Tensor *gh, int heads, int bf16, Tensor *gq, Tensor *gk,
                                       Tensor *gv, Tensor *gqkv) {
    int L = q->h * q->w;
    SAME("attention_heads_backward_input", q, k);
    SAME("attention_heads_backward_input", q, v);
    SAME("attention_heads_backward_input", q, gh);
    SAME("attention_heads_backward_input", q, gq);
    SAME("attention_heads_backward_input", q, gk);
    SAME("attention_heads_backward_input", q, gv);
    SAME_DEV("attention_heads_backward_input", q, gqkv);
    REQUIRE(heads > 0 && q->c % heads == 0 && gqkv->n == q->n && gqkv->c == 3 * q->c && gqkv->h == q->h &&
                gqkv->w == q->w, "attention_heads_backward_input", gqkv, q);
    REQUIRE(p->n == q->n && (size_t)p->c * p->h * p->w == (size_t)heads * L * L, "attention_heads_backward_input", q,
            p);
    const drq_backend *b = backend_of(q);
    Tensor ghr;
    Tensor Q = head_view(q, heads), K = head_view(k, heads), V = head_view(v, heads);
    Tensor GH = head_view(bf16_operand(file, line, bf16, gh, &ghr), heads);
    Tensor GQ = head_view(gq, heads), GK = head_view(gk, heads), GV = head_view(gv, heads);
    Tensor GQKV = head_view(gqkv, heads), P = *p;
    P.owns = 0, P.n = q->n * heads, P.c = L * L, P.h = P.w = 1;
    b->attention_backward_input(&Q, &K, &V, &P, &GH, &GQ, &GK, &GV, bf16);
    tensor_free(&ghr);
    b->channel_slice_backward_input(&GQ, 0, &GQKV);
    b->channel_slice_backward_input(&GK, Q.c, &GQKV);
    b->channel_slice_backward_input(&GV, 2 * Q.c, &GQKV);
}

void learned_sigma_forward_at(const char *file, int line, const Tensor *r, const Tensor *z, float lo, float hi,
                              Tensor *y) {
    SAME("learned_sigma_forward", r, z);
    SAME("learned_sigma_forward", r, y);
    backend_of(r)->learned_sigma_forward(r, z, lo, hi, y);
}

void learned_sigma_backward_input_at(const char *file, int line, const Tensor *r, const Tensor *z, float lo, float hi,
                                     const Tensor *gy, Tensor *gr) {
    SAME("learned_sigma_backward_input", r, z);
    SAME("learned_sigma_backward_input", r, gy);
    SAME("learned_sigma_backward_input", r, gr);
    backend_of(r)->learned_sigma_backward_input(r, z, lo, hi, gy, gr);
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
