/* conv.c — CPU convolution: forward and backward-data (input VJP) on oneDNN.
 *
 * CHOICE (by measurement, see tests/bench_conv.c and docs/bench.md "CPU convolution"):
 * every convolution goes to oneDNN 2.6.3 (C API, OpenMP runtime, so it follows
 * omp_get_max_threads() / drq_set_threads()).  The activation layout handed to
 * oneDNN depends on the shape class:
 *   - spatial kernels (3×3, any stride/padding) on >= 16 input channels:
 *     format "any" — oneDNN picks its blocked/nhwc layout (brgconv:avx512_core
 *     forward, jit:avx512_core backward-data); the NCHW tensors are reordered in
 *     and out around the primitive (the reorder is included in every number);
 *   - 1×1 kernels (stride 1 or 2) and first layers (cin < 16, e.g. RGB input):
 *     plain nchw — oneDNN runs these as a GEMM (gemm:jit) with no reorder; for
 *     cin = 3 the blocked kernels are 1.3–3× slower (backward-data 51 vs 165 GF/s).
 * Weights are reordered once per layout oneDNN asks for and cached (a plain
 * oihw request borrows c->w); primitives are cached per (n, h, w, threads),
 * CONV_MAX_SHAPES shapes per Conv2d, least recently used evicted.
 *
 * Measured 2026-11-25, Intel Xeon (Sapphire Rapids, AVX-512), 2 threads, nominal
 * GFLOP/s (2·n·cout·oh·ow·cin·kh·kw per call, best of repetitions, best over
 * several runs since the machine was shared) against torch 1.13 with
 * torch.set_num_threads(2) (its conv is oneDNN 2.6.3 too) on the same shapes:
 *
 *                                forward b1/b8         backward-data b1/b8
 *   shape                       drq       torch       drq       torch
 *   DDPM 128>128 3x3 32x32     382/389   376/334     337/337   299/275
 *   DDPM up 256>128 3x3 32     385/366   382/369     346/323   312/238
 *   DDPM 256>256 3x3 16x16     416/372   334/357     388/357   302/348
 *   DDPM 256>256 3x3 8x8       422/428   134/386     401/415    95/349
 *   DDPM 256>256 3x3 4x4       383/338    67/320     414/503    42/290
 *   DDPM down 3x3 s2 (0,0,1,1) 345/367   254/306     312/294   235/267
 *   DDPM nin 256>128 1x1 32    363/326   244/282     373/401   210/110
 *   DDPM q/k/v 256 1x1 16      386/392   239/301     372/373   223/278
 *   DDPM conv_in 3>128 3x3     144/225    84/28      175/180    57/50
 *   DDPM conv_out 128>3 3x3     57/55     41/48       53/55     39/46
 *   WRN 160>320 3x3 s2 p1      361/332   289/340     312/300   244/263
 *   WRN shortcut 1x1 s2        235/289   183/224     276/269   142/183
 *   (torch's weak batch-1 numbers on 8×8 / 4×4 are its native im2col path, which it
 *   picks for inputs under 20480 elements; full table and every variant: docs/bench.md)
 *
 * Candidates measured and dropped (GF/s over the same shapes, batch 1 and 8):
 *   - im2col + OpenBLAS cblas_sgemm (col2im for backward-data; several images
 *     per GEMM when oh·ow < 1024): 110–210 on the 3×3 shapes, 115–290 on 1×1,
 *     never the fastest in any cell; the code is gone.
 *   - oneDNN with plain nchw activations for the 3×3 shapes (gemm:jit inside):
 *     180–330, 10–60 % behind "any" + reorders (284 vs 382 on 128>128 32×32);
 *     kept only for 1×1 and cin < 16.
 *   - oneDNN "any" for 1×1: 180–340, behind nchw gemm:jit (230–400).
 * Algorithm: direct; DRQ_CONV_ALG=winograd opts into Winograd for 3×3
 * stride-1 (faster, but not batch-invariant: see op_build).
 * DRQ_CONV_IMPL=nchw|blocked forces one layout for every shape (to re-measure
 * the rule) and DRQ_CONV_IMPL=ref selects the plain reference loops below (also
 * the fallback if oneDNN has no implementation for a shape); it is read when a
 * Conv2d's cache is created.  DRQ_CONV_VERBOSE=1 (read once per process) prints
 * the oneDNN implementation chosen for each new shape.
 *
 * Memory: the reordered activations live in per-thread scratch buffers shared
 * by all convolutions (grown on demand), not per cached shape.  The weight
 * copies (one per layout: typically one for forward, one for backward-data)
 * stay until cpu_conv2d_release.  A Conv2d must not be used by two threads at
 * once (its cache is not locked); different Conv2d may run concurrently.
 */
#include <dnnl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../../common/util.h"
#include "cpu.h"

#define DNNL_CHK(call)                                                                   \
    do {                                                                                 \
        dnnl_status_t st_ = (call);                                                      \
        if (st_ != dnnl_success) DIE("oneDNN: %s failed (status %d)", #call, (int)st_); \
    } while (0)

enum { LAYOUT_AUTO = 0, LAYOUT_NCHW, LAYOUT_BLOCKED, LAYOUT_REF };

/* ---- process-wide state: engine, per-thread stream and scratch ---------- */
typedef struct {
    dnnl_stream_t stream;
    void *buf[2]; /* reordered input / output activations */
    size_t cap[2];
} ThreadState;

static dnnl_engine_t g_eng;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_key;
static int g_verbose;

static void thread_state_free(void *p) {
    ThreadState *ts = p;
    if (ts->stream) dnnl_stream_destroy(ts->stream);
    free(ts->buf[0]);
    free(ts->buf[1]);
    free(ts);
}

static void global_init(void) {
    DNNL_CHK(dnnl_engine_create(&g_eng, dnnl_cpu, 0));
    if (pthread_key_create(&g_key, thread_state_free) != 0) DIE("pthread_key_create failed");
    g_verbose = getenv("DRQ_CONV_VERBOSE") != NULL;
}

static ThreadState *thread_state(void) {
    pthread_once(&g_once, global_init);
    ThreadState *ts = pthread_getspecific(g_key);
    if (!ts) {
        ts = xcalloc(1, sizeof *ts);
        DNNL_CHK(dnnl_stream_create(&ts->stream, g_eng, dnnl_stream_default_flags));
        if (pthread_setspecific(g_key, ts) != 0) DIE("pthread_setspecific failed");
    }
    return ts;
}

static void *scratch(ThreadState *ts, int i, size_t bytes) {
    if (bytes > ts->cap[i]) {
        free(ts->buf[i]);
        ts->buf[i] = NULL;
        if (posix_memalign(&ts->buf[i], 64, bytes) != 0)
            DIE("out of memory allocating %zu bytes of convolution scratch (hint: lower the batch size)", bytes);
        ts->cap[i] = bytes;
    }
    return ts->buf[i];
}

/* ---- per-Conv2d cache ---------------------------------------------------- */
typedef struct {
    dnnl_primitive_t prim;
    dnnl_memory_t in_user, out_user; /* nchw views of the caller's tensors */
    dnnl_memory_t in_int, out_int;   /* primitive layouts, on thread scratch; NULL when nchw */
    size_t in_bytes, out_bytes;
    dnnl_primitive_t in_re, out_re; /* reorders user -> in_int, out_int -> user */
    dnnl_memory_t wei;              /* owned by the weight store */
    dnnl_memory_t bias;             /* forward with bias only */
} DnnlOp;

typedef struct {
    dnnl_memory_desc_t md;
    dnnl_memory_t mem; /* reordered copy, or a view of c->w when the layout is oihw */
} WeiEntry;

#define CONV_MAX_SHAPES 6
typedef struct {
    int n, h, w, threads; /* key; n == 0: empty slot */
    unsigned long stamp;
    int fwd_state, bwd_state; /* 0 not built, 1 built, -1 no oneDNN implementation (reference) */
    DnnlOp fwd, bwd;
} ShapeEntry;

typedef struct {
    int layout;   /* LAYOUT_* from DRQ_CONV_IMPL */
    int winograd; /* DRQ_CONV_ALG=winograd */
    unsigned long clock;
    ShapeEntry shapes[CONV_MAX_SHAPES];
    WeiEntry *wei;
    int nwei;
} ConvCache;

static void md4(dnnl_memory_desc_t *md, int a, int b, int c, int d, dnnl_format_tag_t tag) {
    dnnl_dims_t dims = {a, b, c, d};
    DNNL_CHK(dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, tag));
}

static dnnl_memory_t weights_for(ConvCache *cc, const Conv2d *c, const dnnl_memory_desc_t *md) {
    for (int i = 0; i < cc->nwei; i++)
        if (dnnl_memory_desc_equal(&cc->wei[i].md, md)) return cc->wei[i].mem;
    dnnl_memory_desc_t user_md;
    md4(&user_md, c->cout, c->cin, c->kh, c->kw, dnnl_oihw);
    dnnl_memory_t mem;
    if (dnnl_memory_desc_equal(&user_md, md)) {
        DNNL_CHK(dnnl_memory_create(&mem, md, g_eng, (void *)c->w)); /* borrowed */
    } else {
        dnnl_memory_t user;
        dnnl_primitive_desc_t rpd;
        dnnl_primitive_t re;
        DNNL_CHK(dnnl_memory_create(&user, &user_md, g_eng, (void *)c->w));
        DNNL_CHK(dnnl_memory_create(&mem, md, g_eng, DNNL_MEMORY_ALLOCATE));
        DNNL_CHK(dnnl_reorder_primitive_desc_create(&rpd, &user_md, g_eng, md, g_eng, NULL));
        DNNL_CHK(dnnl_primitive_create(&re, rpd));
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, mem}};
        dnnl_stream_t s = thread_state()->stream;
        DNNL_CHK(dnnl_primitive_execute(re, s, 2, args));
        DNNL_CHK(dnnl_stream_wait(s));
        dnnl_primitive_destroy(re);
        dnnl_primitive_desc_destroy(rpd);
        dnnl_memory_destroy(user);
    }
    cc->wei = xrealloc(cc->wei, (size_t)(cc->nwei + 1) * sizeof *cc->wei);
    cc->wei[cc->nwei].md = *md;
    cc->wei[cc->nwei].mem = mem;
    cc->nwei++;
    return mem;
}

/* The caller-side (nchw) memory of one primitive argument and, when the
 * primitive wants another layout, a scratch-backed memory plus its reorder.
 * to_prim: the data flows user -> primitive (an input). */
static void op_side(const dnnl_memory_desc_t *user_md, const dnnl_memory_desc_t *prim_md, int to_prim,
                    dnnl_memory_t *user, dnnl_memory_t *inter, size_t *bytes, dnnl_primitive_t *re) {
    DNNL_CHK(dnnl_memory_create(user, user_md, g_eng, DNNL_MEMORY_NONE));
    *inter = NULL, *re = NULL, *bytes = 0;
    if (dnnl_memory_desc_equal(user_md, prim_md)) return;
    DNNL_CHK(dnnl_memory_create(inter, prim_md, g_eng, DNNL_MEMORY_NONE));
    *bytes = dnnl_memory_desc_get_size(prim_md);
    dnnl_primitive_desc_t rpd;
    if (to_prim)
        DNNL_CHK(dnnl_reorder_primitive_desc_create(&rpd, user_md, g_eng, prim_md, g_eng, NULL));
    else
        DNNL_CHK(dnnl_reorder_primitive_desc_create(&rpd, prim_md, g_eng, user_md, g_eng, NULL));
    DNNL_CHK(dnnl_primitive_create(re, rpd));
    dnnl_primitive_desc_destroy(rpd);
}

static void op_destroy(DnnlOp *op) {
    if (op->prim) dnnl_primitive_destroy(op->prim);
    if (op->in_re) dnnl_primitive_destroy(op->in_re);
    if (op->out_re) dnnl_primitive_destroy(op->out_re);
    if (op->in_user) dnnl_memory_destroy(op->in_user);
    if (op->out_user) dnnl_memory_destroy(op->out_user);
    if (op->in_int) dnnl_memory_destroy(op->in_int);
    if (op->out_int) dnnl_memory_destroy(op->out_int);
    if (op->bias) dnnl_memory_destroy(op->bias);
    memset(op, 0, sizeof *op);
}

/* The layout rule (see the top of this file). */
static int blocked_layout(const ConvCache *cc, const Conv2d *c) {
    if (cc->layout == LAYOUT_NCHW) return 0;
    if (cc->layout == LAYOUT_BLOCKED) return 1;
    return (c->kh > 1 || c->kw > 1) && c->cin >= 16;
}

/* Builds the forward (fwd = 1) or backward-data primitive for one input
 * shape.  Returns -1 when oneDNN has no implementation for it. */
static int op_build_alg(ConvCache *cc, const Conv2d *c, int n, int h, int w, int oh, int ow, int fwd,
                        dnnl_alg_kind_t alg, DnnlOp *op) {
    dnnl_format_tag_t act = blocked_layout(cc, c) ? dnnl_format_tag_any : dnnl_nchw;
    dnnl_memory_desc_t src_user, dst_user, src_q, dst_q, wei_q, bias_md;
    md4(&src_user, n, c->cin, h, w, dnnl_nchw);
    md4(&dst_user, n, c->cout, oh, ow, dnnl_nchw);
    md4(&src_q, n, c->cin, h, w, act);
    md4(&dst_q, n, c->cout, oh, ow, act);
    md4(&wei_q, c->cout, c->cin, c->kh, c->kw, dnnl_format_tag_any);
    dnnl_dims_t bdims = {c->cout};
    DNNL_CHK(dnnl_memory_desc_init_by_tag(&bias_md, 1, bdims, dnnl_f32, dnnl_a));
    dnnl_dims_t strides = {c->stride, c->stride}, pad_l = {c->pad_t, c->pad_l}, pad_r = {c->pad_b, c->pad_r};

    dnnl_convolution_desc_t fd;
    DNNL_CHK(dnnl_convolution_forward_desc_init(&fd, fwd ? dnnl_forward_inference : dnnl_forward_training,
                                                alg, &src_q, &wei_q,
                                                (fwd && c->b) ? &bias_md : NULL, &dst_q, strides, pad_l, pad_r));
    dnnl_primitive_desc_t fpd, pd;
    if (dnnl_primitive_desc_create(&fpd, &fd, NULL, g_eng, NULL) != dnnl_success) return -1;
    if (fwd) {
        pd = fpd;
    } else { /* the forward pd is the required hint */
        dnnl_convolution_desc_t bd;
        DNNL_CHK(dnnl_convolution_backward_data_desc_init(&bd, alg, &src_q, &wei_q, &dst_q,
                                                          strides, pad_l, pad_r));
        dnnl_status_t st = dnnl_primitive_desc_create(&pd, &bd, NULL, g_eng, fpd);
        dnnl_primitive_desc_destroy(fpd);
        if (st != dnnl_success) return -1;
    }
    if (g_verbose) {
        const char *name = NULL;
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name);
        fprintf(stderr, "conv %s %d>%d %dx%d s%d n%d %dx%d: %s\n", fwd ? "fwd" : "bwd", c->cin, c->cout, c->kh,
                c->kw, c->stride, n, h, w, name ? name : "?");
    }
    memset(op, 0, sizeof *op);
    DNNL_CHK(dnnl_primitive_create(&op->prim, pd));
    const dnnl_memory_desc_t *psrc = dnnl_primitive_desc_query_md(pd, fwd ? dnnl_query_src_md : dnnl_query_diff_src_md, 0);
    const dnnl_memory_desc_t *pdst = dnnl_primitive_desc_query_md(pd, fwd ? dnnl_query_dst_md : dnnl_query_diff_dst_md, 0);
    const dnnl_memory_desc_t *pwei = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if (fwd) {
        op_side(&src_user, psrc, 1, &op->in_user, &op->in_int, &op->in_bytes, &op->in_re);
        op_side(&dst_user, pdst, 0, &op->out_user, &op->out_int, &op->out_bytes, &op->out_re);
        if (c->b) DNNL_CHK(dnnl_memory_create(&op->bias, &bias_md, g_eng, (void *)c->b));
    } else {
        op_side(&dst_user, pdst, 1, &op->in_user, &op->in_int, &op->in_bytes, &op->in_re);
        op_side(&src_user, psrc, 0, &op->out_user, &op->out_int, &op->out_bytes, &op->out_re);
    }
    op->wei = weights_for(cc, c, pwei);
    dnnl_primitive_desc_destroy(pd);
    return 0;
}

/* Direct convolution by default; with DRQ_CONV_ALG=winograd, Winograd
 * F(4×4, 3×3) for 3×3 stride-1 convolutions in the blocked layout (direct
 * wherever oneDNN has no Winograd kernel).  Measured on the CIFAR-10 UNet,
 * 2 threads: forward at batch 8 0.036 against 0.050 s per image (−28%);
 * relative L2 error against the float64 PyTorch oracle 1.8e-6 (forward) /
 * 2.6e-6 (VJP) against 1.0e-6 / 1.3e-6 for direct.  It is not the default
 * because oneDNN's Winograd batches tiles across images: an image's output
 * then depends on the batch size at the 1e-6 level, and drq promises rows
 * that are bit-identical for any batch size (tests/test_engine.c).  Read
 * when a Conv2d's cache is created, like DRQ_CONV_IMPL. */
static int op_build(ConvCache *cc, const Conv2d *c, int n, int h, int w, int oh, int ow, int fwd, DnnlOp *op) {
    if (cc->winograd && c->kh == 3 && c->kw == 3 && c->stride == 1 && blocked_layout(cc, c) &&
        op_build_alg(cc, c, n, h, w, oh, ow, fwd, dnnl_convolution_winograd, op) == 0)
        return 0;
    return op_build_alg(cc, c, n, h, w, oh, ow, fwd, dnnl_convolution_direct, op);
}

static void op_run(DnnlOp *op, int fwd, const float *in, float *out) {
    ThreadState *ts = thread_state();
    dnnl_stream_t s = ts->stream;
    DNNL_CHK(dnnl_memory_set_data_handle(op->in_user, (void *)in));
    DNNL_CHK(dnnl_memory_set_data_handle(op->out_user, out));
    dnnl_memory_t pin = op->in_user, pout = op->out_user;
    if (op->in_re) {
        DNNL_CHK(dnnl_memory_set_data_handle(op->in_int, scratch(ts, 0, op->in_bytes)));
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, op->in_user}, {DNNL_ARG_TO, op->in_int}};
        DNNL_CHK(dnnl_primitive_execute(op->in_re, s, 2, a));
        pin = op->in_int;
    }
    if (op->out_re) {
        DNNL_CHK(dnnl_memory_set_data_handle(op->out_int, scratch(ts, 1, op->out_bytes)));
        pout = op->out_int;
    }
    dnnl_exec_arg_t a[4];
    int na = 0;
    a[na++] = (dnnl_exec_arg_t){fwd ? DNNL_ARG_SRC : DNNL_ARG_DIFF_DST, pin};
    a[na++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, op->wei};
    a[na++] = (dnnl_exec_arg_t){fwd ? DNNL_ARG_DST : DNNL_ARG_DIFF_SRC, pout};
    if (op->bias) a[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, op->bias};
    DNNL_CHK(dnnl_primitive_execute(op->prim, s, na, a));
    if (op->out_re) {
        dnnl_exec_arg_t b[2] = {{DNNL_ARG_FROM, op->out_int}, {DNNL_ARG_TO, op->out_user}};
        DNNL_CHK(dnnl_primitive_execute(op->out_re, s, 2, b));
    }
    DNNL_CHK(dnnl_stream_wait(s));
}

/* ---- plain reference (direct loops; DRQ_CONV_IMPL=ref and fallback) ----- */
static void ref_forward(const Conv2d *c, const Tensor *x, Tensor *y) {
    const int n = x->n, h = x->h, w = x->w, oh = y->h, ow = y->w;
    const int cin = c->cin, cout = c->cout, kh = c->kh, kw = c->kw, s = c->stride;
#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < n; i++)
        for (int co = 0; co < cout; co++) {
            float *yp = y->data + ((size_t)i * cout + co) * oh * ow;
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    float acc = c->b ? c->b[co] : 0.0f;
                    for (int ci = 0; ci < cin; ci++) {
                        const float *xp = x->data + ((size_t)i * cin + ci) * h * w;
                        const float *wp = c->w + ((size_t)co * cin + ci) * kh * kw;
                        for (int ky = 0; ky < kh; ky++) {
                            int iy = oy * s - c->pad_t + ky;
                            if (iy < 0 || iy >= h) continue;
                            for (int kx = 0; kx < kw; kx++) {
                                int ix = ox * s - c->pad_l + kx;
                                if (ix < 0 || ix >= w) continue;
                                acc += wp[ky * kw + kx] * xp[(size_t)iy * w + ix];
                            }
                        }
                    }
                    yp[(size_t)oy * ow + ox] = acc;
                }
        }
}

/* Gather form: each gx element sums the outputs its pixel contributed to. */
static void ref_backward(const Conv2d *c, const Tensor *gy, Tensor *gx) {
    const int n = gx->n, h = gx->h, w = gx->w, oh = gy->h, ow = gy->w;
    const int cin = c->cin, cout = c->cout, kh = c->kh, kw = c->kw, s = c->stride;
#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < n; i++)
        for (int ci = 0; ci < cin; ci++) {
            float *gp = gx->data + ((size_t)i * cin + ci) * h * w;
            for (int iy = 0; iy < h; iy++)
                for (int ix = 0; ix < w; ix++) {
                    float acc = 0.0f;
                    for (int ky = 0; ky < kh; ky++) {
                        int ty = iy + c->pad_t - ky;
                        if (ty < 0 || ty % s || ty / s >= oh) continue;
                        for (int kx = 0; kx < kw; kx++) {
                            int tx = ix + c->pad_l - kx;
                            if (tx < 0 || tx % s || tx / s >= ow) continue;
                            const float *gyp = gy->data + (size_t)i * cout * oh * ow + (size_t)(ty / s) * ow + tx / s;
                            const float *wp = c->w + ((size_t)ci * kh + ky) * kw + kx;
                            for (int co = 0; co < cout; co++)
                                acc += wp[(size_t)co * cin * kh * kw] * gyp[(size_t)co * oh * ow];
                        }
                    }
                    gp[(size_t)iy * w + ix] = acc;
                }
        }
}

/* ---- cache and entry points -------------------------------------------- */
static ConvCache *cache_of(Conv2d *c) {
    ConvCache *cc = c->impl[DRQ_CPU];
    if (!cc) {
        pthread_once(&g_once, global_init);
        cc = xcalloc(1, sizeof *cc);
        const char *alg = getenv("DRQ_CONV_ALG");
        cc->winograd = alg && !strcmp(alg, "winograd");
        const char *e = getenv("DRQ_CONV_IMPL");
        cc->layout = !e || !*e || !strcmp(e, "auto") ? LAYOUT_AUTO
                     : !strcmp(e, "nchw")            ? LAYOUT_NCHW
                     : !strcmp(e, "blocked")         ? LAYOUT_BLOCKED
                     : !strcmp(e, "ref")             ? LAYOUT_REF
                                                     : -1;
        if (cc->layout < 0) DIE("DRQ_CONV_IMPL=%s: expected auto, nchw, blocked or ref", e);
        c->impl[DRQ_CPU] = cc;
    }
    return cc;
}

static ShapeEntry *shape_entry(ConvCache *cc, int n, int h, int w) {
#ifdef _OPENMP
    int threads = omp_get_max_threads();
#else
    int threads = 1;
#endif
    ShapeEntry *lru = &cc->shapes[0];
    cc->clock++;
    for (int i = 0; i < CONV_MAX_SHAPES; i++) {
        ShapeEntry *e = &cc->shapes[i];
        if (e->n == n && e->h == h && e->w == w && e->threads == threads) {
            e->stamp = cc->clock;
            return e;
        }
        if (e->stamp < lru->stamp) lru = e;
    }
    op_destroy(&lru->fwd);
    op_destroy(&lru->bwd);
    memset(lru, 0, sizeof *lru);
    lru->n = n, lru->h = h, lru->w = w, lru->threads = threads, lru->stamp = cc->clock;
    return lru;
}

static void check_shapes(const Conv2d *c, const Tensor *x, const Tensor *y, const char *fn) {
    int oh = (x->h + c->pad_t + c->pad_b - c->kh) / c->stride + 1;
    int ow = (x->w + c->pad_l + c->pad_r - c->kw) / c->stride + 1;
    if (x->c != c->cin || y->c != c->cout || y->n != x->n || y->h != oh || y->w != ow || oh < 1 || ow < 1)
        DIE("%s: conv %d>%d k%dx%d s%d: input %dx%dx%dx%d and output %dx%dx%dx%d do not match", fn, c->cin,
            c->cout, c->kh, c->kw, c->stride, x->n, x->c, x->h, x->w, y->n, y->c, y->h, y->w);
}

static void fallback_note(const Conv2d *c, const char *what, int n, int h, int w) {
    log_line("conv", "oneDNN has no %s implementation for %d>%d k%dx%d s%d on %dx%dx%d; using the reference loops",
             what, c->cin, c->cout, c->kh, c->kw, c->stride, n, h, w);
}

void cpu_conv2d_forward(Conv2d *c, const Tensor *x, Tensor *y) {
    check_shapes(c, x, y, "cpu_conv2d_forward");
    if (x->n == 0) return;
    ConvCache *cc = cache_of(c);
    if (cc->layout == LAYOUT_REF) {
        ref_forward(c, x, y);
        return;
    }
    ShapeEntry *e = shape_entry(cc, x->n, x->h, x->w);
    if (!e->fwd_state) {
        e->fwd_state = op_build(cc, c, x->n, x->h, x->w, y->h, y->w, 1, &e->fwd) == 0 ? 1 : -1;
        if (e->fwd_state < 0) fallback_note(c, "forward", x->n, x->h, x->w);
    }
    if (e->fwd_state < 0)
        ref_forward(c, x, y);
    else
        op_run(&e->fwd, 1, x->data, y->data);
}

void cpu_conv2d_backward_input(Conv2d *c, const Tensor *gy, Tensor *gx) {
    check_shapes(c, gx, gy, "cpu_conv2d_backward_input");
    if (gx->n == 0) return;
    ConvCache *cc = cache_of(c);
    if (cc->layout == LAYOUT_REF) {
        ref_backward(c, gy, gx);
        return;
    }
    ShapeEntry *e = shape_entry(cc, gx->n, gx->h, gx->w);
    if (!e->bwd_state) {
        e->bwd_state = op_build(cc, c, gx->n, gx->h, gx->w, gy->h, gy->w, 0, &e->bwd) == 0 ? 1 : -1;
        if (e->bwd_state < 0) fallback_note(c, "backward-data", gx->n, gx->h, gx->w);
    }
    if (e->bwd_state < 0)
        ref_backward(c, gy, gx);
    else
        op_run(&e->bwd, 0, gy->data, gx->data);
}

void cpu_conv2d_release(Conv2d *c) {
    ConvCache *cc = c->impl[DRQ_CPU];
    if (!cc) return;
    for (int i = 0; i < CONV_MAX_SHAPES; i++) {
        op_destroy(&cc->shapes[i].fwd);
        op_destroy(&cc->shapes[i].bwd);
    }
    for (int i = 0; i < cc->nwei; i++) dnnl_memory_destroy(cc->wei[i].mem);
    free(cc->wei);
    free(cc);
    c->impl[DRQ_CPU] = NULL;
}
