/* conv.c — CPU convolution: forward and backward-data (input VJP) on oneDNN.
 *
 * THE RULE: an image's result never depends on the batch size, the thread
 * count or which oneDNN kernel family a CPU of the same instruction set picks
 * (issue 9; docs/seeds.md "What is reproducible").  oneDNN alone does not give
 * that: its "gemm" convolutions (im2col + sgemm) split the reduction by batch
 * and threads, and even its direct kernels choose their channel blocking (the
 * order of each output's sum) from the thread count they see at creation.  So:
 *   1. only implementations with a shape-fixed reduction order are accepted
 *      (impl_accepted: every family but "gemm"; the activations are handed
 *      over in the layout the kernel asks for, format "any", and reordered
 *      from / to the caller's NCHW around it);
 *   2. every primitive is built for ONE image and ONE thread (set_build hides
 *      the threads from oneDNN at creation);
 *   3. one image's convolution is cut into a fixed number of channel groups,
 *      a function of the channel count alone (conv_groups: output channels
 *      forward, input channels backward-data, up to 4 groups of >= 32);
 *   4. the (image, group) pairs are spread over the OpenMP threads (run_set),
 *      each computed whole by one thread.
 * tests/test_batch_invariance.c checks every conv shape of the demo and the
 * CIFAR-10 models at batch 1…13 × 1…4 threads, bit for bit, and CI runs it
 * under ONEDNN_MAX_CPU_ISA=AVX2 too.
 *
 * Speed (docs/bench.md "Same rows on every machine"): at batch 8 the cut
 * costs nothing measurable (the per-image calls keep both cores busy); at
 * batch 1 the channel groups keep the threads busy (without them batch-1
 * passes took 2× as long on 2 threads).  Beyond 4 threads per worker a
 * batch-1 convolution cannot use every thread: run more workers or larger
 * batches there.
 *
 * History (measured 2026-11-25, Xeon Sapphire Rapids, 2 threads; the full
 * table is in docs/bench.md "CPU convolution"): oneDNN's blocked direct
 * kernels ran the 3×3 shapes at 340–420 GF/s against torch's 130–380; the
 * 1×1 and cin < 3 shapes ran faster as nchw gemm:jit (10–25%) — which is
 * what broke batch invariance on AVX2 machines and is now refused; im2col +
 * OpenBLAS was 2–3× slower and is gone.
 *
 * Algorithm: direct; DRQ_CONV_ALG=winograd opts into Winograd for 3×3
 * stride-1 (see op_build).  DRQ_CONV_IMPL=ref selects the plain reference
 * loops below (also the fallback if oneDNN has no accepted implementation
 * for a shape); it is read when a Conv2d's cache is created.
 * DRQ_CONV_VERBOSE=1 (read once per process) prints the oneDNN
 * implementation chosen for each new shape and group.
 *
 * Memory: the reordered activations and scratchpads live in per-thread
 * scratch buffers shared by all convolutions (grown on demand), not per
 * cached shape.  The weight copies (one per layout and group: typically one
 * set for forward, one for backward-data) stay until cpu_conv2d_release.  A
 * Conv2d must not be used by two threads at once (its cache is not locked);
 * different Conv2d may run concurrently.
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

/* ---- process-wide state: engine, per-thread stream and scratch ---------- */
typedef struct {
    dnnl_stream_t stream;
    void *buf[4]; /* reordered input / output activations, the primitive's scratchpad, a batch's inputs */
    size_t cap[4];
} ThreadState;

static dnnl_engine_t g_eng;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_key;
static int g_verbose;

static void thread_state_free(void *p) {
    ThreadState *ts = p;
    if (ts->stream) dnnl_stream_destroy(ts->stream);
    for (int i = 0; i < 4; i++) free(ts->buf[i]);
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

/* ---- per-Conv2d cache ----------------------------------------------------
 * Every primitive is built for ONE image and ONE thread.  A convolution of
 * one image is cut into a fixed number of channel groups (conv_groups: output
 * channels forward, input channels backward-data), each its own primitive;
 * the (image, group) pairs are spread over the OpenMP threads (run_set).  The
 * cut depends on the shape alone, so no image's sums depend on the batch size
 * or the thread count.  An op holds descriptors, not memory objects, so that
 * threads can run it at once: each call wraps its own pointers and its
 * thread's scratch. */
typedef struct {
    dnnl_primitive_t prim;
    dnnl_memory_desc_t in_user, out_user; /* nchw, one image (out: this group's channels) */
    dnnl_memory_desc_t in_int, out_int;   /* the primitive's layouts */
    size_t in_bytes, out_bytes, pad_bytes; /* in_/out_bytes 0: no reorder; pad_bytes: its scratchpad */
    dnnl_memory_desc_t pad_md;
    dnnl_primitive_t in_re, out_re; /* reorders user -> in_int, out_int -> user */
    dnnl_memory_t wei;              /* owned by the weight store */
    dnnl_memory_t bias;             /* forward with bias only */
} DnnlOp;

#define CONV_MAX_GROUPS 4
typedef struct {
    int state;     /* 0 not built, 1 built, -1 no accepted oneDNN implementation (reference loops) */
    int groups;    /* conv_groups() of the split dimension */
    int shared_in; /* every group takes the same input layout: reorder once per image */
    DnnlOp op[CONV_MAX_GROUPS];
} OpSet;

typedef struct {
    dnnl_memory_desc_t user_md, md; /* the caller's view (oihw, maybe strided) and the primitive's layout */
    const float *src;               /* first weight of the view */
    dnnl_memory_t mem;              /* reordered copy, or a view of the caller's array */
} WeiEntry;

#define CONV_MAX_SHAPES 6
typedef struct {
    int h, w; /* key; h == 0: empty slot */
    unsigned long stamp;
    OpSet fwd, bwd;
} ShapeEntry;

typedef struct {
    int ref;      /* DRQ_CONV_IMPL=ref: the plain loops for every shape */
    int winograd; /* DRQ_CONV_ALG=winograd */
    unsigned long clock;
    ShapeEntry shapes[CONV_MAX_SHAPES];
    WeiEntry *wei;
    int nwei;
} ConvCache;

/* How many channel groups a convolution of one image is cut into along a
 * dimension of C channels: the largest G <= CONV_MAX_GROUPS whose groups hold
 * a multiple of 16 channels, at least 32 (oneDNN's kernels block channels by
 * 8 or 16; smaller groups run slower than they parallelise).  A function of C
 * only: it must never see the batch or the threads. */
static int conv_groups(int C) {
    for (int g = CONV_MAX_GROUPS; g > 1; g--)
        if (C % g == 0 && (C / g) % 16 == 0 && C / g >= 32) return g;
    return 1;
}

static void md4(dnnl_memory_desc_t *md, int a, int b, int c, int d, dnnl_format_tag_t tag) {
    dnnl_dims_t dims = {a, b, c, d};
    DNNL_CHK(dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, tag));
}

/* The weights in layout md, from the caller's array viewed as user_md at src
 * (a group's rows or columns of the oihw array); reordered once and cached. */
static dnnl_memory_t weights_for(ConvCache *cc, const dnnl_memory_desc_t *user_md, const float *src,
                                 const dnnl_memory_desc_t *md) {
    for (int i = 0; i < cc->nwei; i++)
        if (cc->wei[i].src == src && dnnl_memory_desc_equal(&cc->wei[i].md, md) &&
            dnnl_memory_desc_equal(&cc->wei[i].user_md, user_md))
            return cc->wei[i].mem;
    dnnl_memory_t mem;
    if (dnnl_memory_desc_equal(user_md, md)) {
        DNNL_CHK(dnnl_memory_create(&mem, md, g_eng, (void *)src)); /* borrowed */
    } else {
        dnnl_memory_t user;
        dnnl_primitive_desc_t rpd;
        dnnl_primitive_t re;
        DNNL_CHK(dnnl_memory_create(&user, user_md, g_eng, (void *)src));
        DNNL_CHK(dnnl_memory_create(&mem, md, g_eng, DNNL_MEMORY_ALLOCATE));
        DNNL_CHK(dnnl_reorder_primitive_desc_create(&rpd, user_md, g_eng, md, g_eng, NULL));
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
    cc->wei[cc->nwei] = (WeiEntry){.user_md = *user_md, .md = *md, .src = src, .mem = mem};
    cc->nwei++;
    return mem;
}

/* One side of a primitive: the caller's nchw descriptor and, when the
 * primitive wants another layout, that layout, its size and the reorder.
 * to_prim: the data flows user -> primitive (an input). */
static void op_side(const dnnl_memory_desc_t *user_md, const dnnl_memory_desc_t *prim_md, int to_prim,
                    dnnl_memory_desc_t *user, dnnl_memory_desc_t *inter, size_t *bytes, dnnl_primitive_t *re) {
    *user = *user_md, *inter = *prim_md, *re = NULL, *bytes = 0;
    if (dnnl_memory_desc_equal(user_md, prim_md)) return;
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
    if (op->bias) dnnl_memory_destroy(op->bias);
    memset(op, 0, sizeof *op);
}

/* True for the implementations drq accepts: those whose reduction order per
 * output element is fixed by the convolution's shape alone.  oneDNN's
 * "gemm" convolutions (im2col + sgemm) are refused: sgemm blocks and splits
 * its K dimension (cin·kh·kw) by M, N and the thread count, so an image's
 * result would depend on the batch and on the threads (issue 9: 7e-7 apart
 * on AVX2 machines).  The direct kernels (jit:*, jit_1x1:*, brgconv:*, and
 * ref:any) partition only the outputs over threads and images; every output
 * sums cin blocks × kh × kw in one order.  tests/test_batch_invariance.c
 * checks every model shape at batch 1..13 and 1..4 threads. */
static int impl_accepted(const char *name) {
    return name && !strstr(name, "gemm:");
}

/* The first accepted implementation of op_desc (see impl_accepted), or NULL. */
static dnnl_primitive_desc_t first_accepted(const_dnnl_op_desc_t op_desc, const_dnnl_primitive_desc_t hint) {
    dnnl_primitive_attr_t attr; /* the scratchpad is the caller's (per thread), so threads can share a primitive */
    DNNL_CHK(dnnl_primitive_attr_create(&attr));
    DNNL_CHK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    dnnl_primitive_desc_iterator_t it;
    dnnl_status_t st = dnnl_primitive_desc_iterator_create(&it, op_desc, attr, g_eng, hint);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return NULL;
    dnnl_primitive_desc_t found = NULL;
    do {
        dnnl_primitive_desc_t pd = dnnl_primitive_desc_iterator_fetch(it);
        const char *name = NULL;
        if (pd && dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name) == dnnl_success &&
            impl_accepted(name)) {
            found = pd;
            break;
        }
        if (pd) dnnl_primitive_desc_destroy(pd);
    } while (dnnl_primitive_desc_iterator_next(it) == dnnl_success);
    dnnl_primitive_desc_iterator_destroy(it);
    return found;
}

/* Builds the forward (fwd = 1) or backward-data primitive for one input
 * shape.  Activations are handed over in the layout the implementation asks
 * for ("any"), reordered from and to the caller's NCHW around it.  Returns
 * -1 when oneDNN has no accepted implementation for it. */
static int op_build_alg(ConvCache *cc, const Conv2d *c, const dnnl_memory_desc_t *wei_user, int n, int h, int w,
                        int oh, int ow, int fwd, dnnl_alg_kind_t alg, DnnlOp *op) {
    dnnl_memory_desc_t src_user, dst_user, src_q, dst_q, wei_q, bias_md;
    md4(&src_user, n, c->cin, h, w, dnnl_nchw);
    md4(&dst_user, n, c->cout, oh, ow, dnnl_nchw);
    md4(&src_q, n, c->cin, h, w, dnnl_format_tag_any);
    md4(&dst_q, n, c->cout, oh, ow, dnnl_format_tag_any);
    md4(&wei_q, c->cout, c->cin, c->kh, c->kw, dnnl_format_tag_any);
    dnnl_dims_t bdims = {c->cout};
    DNNL_CHK(dnnl_memory_desc_init_by_tag(&bias_md, 1, bdims, dnnl_f32, dnnl_a));
    dnnl_dims_t strides = {c->stride, c->stride}, pad_l = {c->pad_t, c->pad_l}, pad_r = {c->pad_b, c->pad_r};

    dnnl_convolution_desc_t fd;
    DNNL_CHK(dnnl_convolution_forward_desc_init(&fd, fwd ? dnnl_forward_inference : dnnl_forward_training,
                                                alg, &src_q, &wei_q,
                                                (fwd && c->b) ? &bias_md : NULL, &dst_q, strides, pad_l, pad_r));
    dnnl_primitive_desc_t pd;
    if (fwd) {
        pd = first_accepted(&fd, NULL);
    } else { /* a forward pd is the required hint */
        dnnl_primitive_desc_t fpd = first_accepted(&fd, NULL);
        if (!fpd) return -1;
        dnnl_convolution_desc_t bd;
        DNNL_CHK(dnnl_convolution_backward_data_desc_init(&bd, alg, &src_q, &wei_q, &dst_q,
                                                          strides, pad_l, pad_r));
        pd = first_accepted(&bd, fpd);
        dnnl_primitive_desc_destroy(fpd);
    }
    if (!pd) return -1;
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
    op->pad_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    op->pad_bytes = dnnl_memory_desc_get_size(&op->pad_md);
    if (fwd) {
        op_side(&src_user, psrc, 1, &op->in_user, &op->in_int, &op->in_bytes, &op->in_re);
        op_side(&dst_user, pdst, 0, &op->out_user, &op->out_int, &op->out_bytes, &op->out_re);
        if (c->b) DNNL_CHK(dnnl_memory_create(&op->bias, &bias_md, g_eng, (void *)c->b));
    } else {
        op_side(&dst_user, pdst, 1, &op->in_user, &op->in_int, &op->in_bytes, &op->in_re);
        op_side(&src_user, psrc, 0, &op->out_user, &op->out_int, &op->out_bytes, &op->out_re);
    }
    op->wei = weights_for(cc, wei_user, c->w, pwei);
    dnnl_primitive_desc_destroy(pd);
    return 0;
}

/* Direct convolution by default; with DRQ_CONV_ALG=winograd, Winograd
 * F(4×4, 3×3) for 3×3 stride-1 convolutions (direct wherever oneDNN has no
 * Winograd kernel).  Measured on the CIFAR-10 UNet, 2 threads (before the
 * one-image primitives): forward at batch 8 0.036 against 0.050 s per image
 * (−28%); relative L2 error against the float64 PyTorch oracle 1.8e-6
 * (forward) / 2.6e-6 (VJP) against 1.0e-6 / 1.3e-6 for direct.  It stays
 * opt-in: its rows are not the default's, and it is not in the invariance
 * tests.  Read when a Conv2d's cache is created, like DRQ_CONV_IMPL.
 *
 * Builds group gi of set for one image: forward, output channels
 * [gi·g, (gi+1)·g) (a contiguous block of oihw rows and of the bias);
 * backward-data, input channels [gi·g, (gi+1)·g) (a strided block of oihw
 * columns). */
static int op_build(ConvCache *cc, const Conv2d *c, int h, int w, int oh, int ow, int fwd, int groups, int gi,
                    DnnlOp *op) {
    Conv2d sub = *c;
    dnnl_memory_desc_t wei_user;
    size_t khw = (size_t)c->kh * c->kw;
    if (fwd) {
        sub.cout = c->cout / groups;
        sub.w = c->w + (size_t)gi * sub.cout * c->cin * khw;
        sub.b = c->b ? c->b + (size_t)gi * sub.cout : NULL;
        md4(&wei_user, sub.cout, c->cin, c->kh, c->kw, dnnl_oihw);
    } else {
        sub.cin = c->cin / groups;
        sub.w = c->w + (size_t)gi * sub.cin * khw;
        dnnl_dims_t dims = {c->cout, sub.cin, c->kh, c->kw};
        dnnl_dims_t strides = {(dnnl_dim_t)(c->cin * khw), (dnnl_dim_t)khw, c->kw, 1};
        DNNL_CHK(dnnl_memory_desc_init_by_strides(&wei_user, 4, dims, dnnl_f32, strides));
    }
    int rc = -1;
    if (cc->winograd && c->kh == 3 && c->kw == 3 && c->stride == 1)
        rc = op_build_alg(cc, &sub, &wei_user, 1, h, w, oh, ow, fwd, dnnl_convolution_winograd, op);
    if (rc != 0) rc = op_build_alg(cc, &sub, &wei_user, 1, h, w, oh, ow, fwd, dnnl_convolution_direct, op);
    return rc;
}

/* Builds every group of a forward or backward-data set for one image shape.
 * oneDNN chooses its blocking (and so the order of each output's sum) from
 * the thread count it sees at creation, so the threads are hidden from it
 * here and given to the (image, group) pairs instead (run_set). */
static void set_build(ConvCache *cc, const Conv2d *c, int h, int w, int oh, int ow, int fwd, OpSet *set) {
#ifdef _OPENMP
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
    set->groups = conv_groups(fwd ? c->cout : c->cin);
    set->state = 1;
    for (int gi = 0; gi < set->groups && set->state > 0; gi++)
        if (op_build(cc, c, h, w, oh, ow, fwd, set->groups, gi, &set->op[gi])) set->state = -1;
    if (set->state < 0)
        for (int gi = 0; gi < set->groups; gi++) op_destroy(&set->op[gi]);
    set->shared_in = set->state > 0 && set->op[0].in_re != NULL;
    for (int gi = 1; gi < set->groups && set->shared_in; gi++)
        set->shared_in = dnnl_memory_desc_equal(&set->op[gi].in_int, &set->op[0].in_int);
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
}

static void set_destroy(OpSet *set) {
    for (int gi = 0; gi < CONV_MAX_GROUPS; gi++) op_destroy(&set->op[gi]);
    memset(set, 0, sizeof *set);
}

/* Wraps ptr (NULL: none) as a memory object of md. */
static dnnl_memory_t wrap(const dnnl_memory_desc_t *md, void *ptr) {
    dnnl_memory_t m;
    DNNL_CHK(dnnl_memory_create(&m, md, g_eng, ptr));
    return m;
}

/* Runs a one-image primitive on the calling thread: in points at one image's
 * nchw planes, or pre (not NULL) at that image already in the primitive's
 * layout; out at this group's output planes.  Reorders and scratchpad use
 * this thread's scratch. */
static void op_run(const DnnlOp *op, int fwd, const float *in, const void *pre, float *out) {
    ThreadState *ts = thread_state();
    dnnl_stream_t s = ts->stream;
    dnnl_memory_t in_user = NULL, out_user = wrap(&op->out_user, out);
    dnnl_memory_t pin, pout = out_user, in_int = NULL, out_int = NULL, pad = NULL;
    if (pre) {
        in_int = pin = wrap(&op->in_int, (void *)pre);
    } else {
        in_user = pin = wrap(&op->in_user, (void *)in);
        if (op->in_re) {
            in_int = pin = wrap(&op->in_int, scratch(ts, 0, op->in_bytes));
            dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, in_user}, {DNNL_ARG_TO, in_int}};
            DNNL_CHK(dnnl_primitive_execute(op->in_re, s, 2, a));
        }
    }
    if (op->out_re) out_int = pout = wrap(&op->out_int, scratch(ts, 1, op->out_bytes));
    dnnl_exec_arg_t a[5];
    int na = 0;
    a[na++] = (dnnl_exec_arg_t){fwd ? DNNL_ARG_SRC : DNNL_ARG_DIFF_DST, pin};
    a[na++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, op->wei};
    a[na++] = (dnnl_exec_arg_t){fwd ? DNNL_ARG_DST : DNNL_ARG_DIFF_SRC, pout};
    if (op->bias) a[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, op->bias};
    if (op->pad_bytes) {
        pad = wrap(&op->pad_md, scratch(ts, 2, op->pad_bytes));
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, pad};
    }
    DNNL_CHK(dnnl_primitive_execute(op->prim, s, na, a));
    if (op->out_re) {
        dnnl_exec_arg_t b[2] = {{DNNL_ARG_FROM, out_int}, {DNNL_ARG_TO, out_user}};
        DNNL_CHK(dnnl_primitive_execute(op->out_re, s, 2, b));
    }
    DNNL_CHK(dnnl_stream_wait(s));
    dnnl_memory_t all[5] = {in_user, out_user, in_int, out_int, pad};
    for (int i = 0; i < 5; i++)
        if (all[i]) dnnl_memory_destroy(all[i]);
}

/* Reorders image i of in (nchw) into pre, in op's input layout. */
static void pre_reorder(const DnnlOp *op, const float *in, void *pre) {
    ThreadState *ts = thread_state();
    dnnl_memory_t from = wrap(&op->in_user, (void *)in), to = wrap(&op->in_int, pre);
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    DNNL_CHK(dnnl_primitive_execute(op->in_re, ts->stream, 2, a));
    DNNL_CHK(dnnl_stream_wait(ts->stream));
    dnnl_memory_destroy(from);
    dnnl_memory_destroy(to);
}

/* Runs a built set on n images: in_per / out_per floats per image, each
 * group writing out_per / groups of them.  When the groups share an input
 * layout, each image is reordered once into the calling thread's scratch
 * first.  Static schedules: every (image, group) is computed whole by one
 * thread, so neither the batch size nor the thread count changes a result. */
static void run_set(const OpSet *set, int fwd, int n, const float *in, size_t in_per, float *out, size_t out_per) {
    const int G = set->groups;
    char *pre = NULL;
    size_t pre_per = set->op[0].in_bytes;
    if (set->shared_in) {
        pre = scratch(thread_state(), 3, pre_per * (size_t)n);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++) pre_reorder(&set->op[0], in + (size_t)i * in_per, pre + (size_t)i * pre_per);
    }
    size_t gout = out_per / (size_t)G;
#pragma omp parallel for schedule(static)
    for (int k = 0; k < n * G; k++) {
        int i = k / G, gi = k % G;
        op_run(&set->op[gi], fwd, in + (size_t)i * in_per, pre ? pre + (size_t)i * pre_per : NULL,
               out + (size_t)i * out_per + (size_t)gi * gout);
    }
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
        if (e && *e && strcmp(e, "auto") && strcmp(e, "ref")) DIE("DRQ_CONV_IMPL=%s: expected auto or ref", e);
        cc->ref = e && !strcmp(e, "ref");
        c->impl[DRQ_CPU] = cc;
    }
    return cc;
}

static ShapeEntry *shape_entry(ConvCache *cc, int h, int w) {
    ShapeEntry *lru = &cc->shapes[0];
    cc->clock++;
    for (int i = 0; i < CONV_MAX_SHAPES; i++) {
        ShapeEntry *e = &cc->shapes[i];
        if (e->h == h && e->w == w) {
            e->stamp = cc->clock;
            return e;
        }
        if (e->stamp < lru->stamp) lru = e;
    }
    set_destroy(&lru->fwd);
    set_destroy(&lru->bwd);
    memset(lru, 0, sizeof *lru);
    lru->h = h, lru->w = w, lru->stamp = cc->clock;
    return lru;
}

static void check_shapes(const Conv2d *c, const Tensor *x, const Tensor *y, const char *fn) {
    int oh = (x->h + c->pad_t + c->pad_b - c->kh) / c->stride + 1;
    int ow = (x->w + c->pad_l + c->pad_r - c->kw) / c->stride + 1;
    if (x->c != c->cin || y->c != c->cout || y->n != x->n || y->h != oh || y->w != ow || oh < 1 || ow < 1)
        DIE("%s: conv %d>%d k%dx%d s%d: input %dx%dx%dx%d and output %dx%dx%dx%d do not match", fn, c->cin,
            c->cout, c->kh, c->kw, c->stride, x->n, x->c, x->h, x->w, y->n, y->c, y->h, y->w);
}

static void fallback_note(const Conv2d *c, const char *what, int h, int w) {
    log_line("conv", "oneDNN has no accepted %s implementation for %d>%d k%dx%d s%d on %dx%d; using the reference loops",
             what, c->cin, c->cout, c->kh, c->kw, c->stride, h, w);
}

void cpu_conv2d_forward(Conv2d *c, const Tensor *x, Tensor *y) {
    check_shapes(c, x, y, "cpu_conv2d_forward");
    if (x->n == 0) return;
    ConvCache *cc = cache_of(c);
    if (cc->ref) {
        ref_forward(c, x, y);
        return;
    }
    ShapeEntry *e = shape_entry(cc, x->h, x->w);
    if (!e->fwd.state) {
        set_build(cc, c, x->h, x->w, y->h, y->w, 1, &e->fwd);
        if (e->fwd.state < 0) fallback_note(c, "forward", x->h, x->w);
    }
    if (e->fwd.state < 0)
        ref_forward(c, x, y);
    else
        run_set(&e->fwd, 1, x->n, x->data, (size_t)x->c * x->h * x->w, y->data, (size_t)y->c * y->h * y->w);
}

void cpu_conv2d_backward_input(Conv2d *c, const Tensor *gy, Tensor *gx) {
    check_shapes(c, gx, gy, "cpu_conv2d_backward_input");
    if (gx->n == 0) return;
    ConvCache *cc = cache_of(c);
    if (cc->ref) {
        ref_backward(c, gy, gx);
        return;
    }
    ShapeEntry *e = shape_entry(cc, gx->h, gx->w);
    if (!e->bwd.state) {
        set_build(cc, c, gx->h, gx->w, gy->h, gy->w, 0, &e->bwd);
        if (e->bwd.state < 0) fallback_note(c, "backward-data", gx->h, gx->w);
    }
    if (e->bwd.state < 0)
        ref_backward(c, gy, gx);
    else
        run_set(&e->bwd, 0, gx->n, gy->data, (size_t)gy->c * gy->h * gy->w, gx->data,
                   (size_t)gx->c * gx->h * gx->w);
}

void cpu_conv2d_release(Conv2d *c) {
    ConvCache *cc = c->impl[DRQ_CPU];
    if (!cc) return;
    for (int i = 0; i < CONV_MAX_SHAPES; i++) {
        set_destroy(&cc->shapes[i].fwd);
        set_destroy(&cc->shapes[i].bwd);
    }
    for (int i = 0; i < cc->nwei; i++) dnnl_memory_destroy(cc->wei[i].mem);
    free(cc->wei);
    free(cc);
    c->impl[DRQ_CPU] = NULL;
}
