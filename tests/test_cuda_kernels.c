/* test_cuda_kernels.c — the CUDA backend's own kernels and cuBLAS plans,
 * run on the CPU.
 *
 * kernels/cuda/kern.h holds the body of every own kernel of the CUDA backend
 * and the parameters of every cuBLAS call; ops_cuda.cu only launches them.
 * Here the same bodies run on the CPU: pointwise bodies over every index,
 * reduction phases over a simulated block (each "thread" tid of nt computes
 * its strided partial, the partials are summed, the next phase gets the
 * total), and the GEMM plans through a reference column-major GEMM with
 * cuBLAS's conventions (op, leading dimensions, batch strides).  Results are
 * compared with the CPU backend (kernels/cpu) on the same inputs, so index
 * arithmetic, formulas, transposes and leading dimensions are checked
 * without a GPU.  Block sizes 256 (the real launch) and 7 (odd strides) are
 * both simulated.  The resize's backward is a gather here (no atomics) and a
 * scatter on the CPU: the comparison checks one against the other.  What stays unchecked here is the launch itself
 * (block_reduce's shuffles, grid sizes): `make test-cuda` covers that on a GPU.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/rng.h"
#include "../common/util.h"
#include "../kernels/cuda/kern.h"
#include "../kernels/ops.h"
#include "check.h"
#include "rand.h"

/* ---- inputs (tests/rand.h) and helpers ---------------------------------- */
static Tensor like(const Tensor *t) { return tensor_new(t->n, t->c, t->h, t->w); }

#define CHECK_CLOSE(name, got, ref, tol)                                                  \
    do {                                                                                  \
        char w_[200];                                                                     \
        snprintf(w_, sizeof w_, "%s: relative L2 kernel body vs CPU backend", (name));    \
        CHECK_LE(rel_l2((got)->data, (ref)->data, tensor_numel(ref)), (tol), w_);         \
    } while (0)

static const double TOL = 2e-6; /* float rounding; an index error is O(1) */
static const int BLOCKS[2] = {256, 7};

/* run a pointwise body over [0, n) */
#define RUN_PW(body, args, n)                                   \
    do {                                                        \
        for (size_t i_ = 0, n_ = (n); i_ < n_; i_++) body((args), i_); \
    } while (0)

/* ---- pointwise ---------------------------------------------------------- */
static void test_pointwise(void) {
    Tensor x = rnd(2, 5, 7, 9), gy = rnd(2, 5, 7, 9), b = rnd(2, 5, 7, 9), v = rnd(2, 5, 1, 1);
    Tensor r = like(&x), k = like(&x);
    size_t n = tensor_numel(&x), hw = 63;
    struct {
        const char *name;
        void (*body)(pw_args, size_t);
        pw_args a;
    } cases[] = {
        {"swish fwd", K_swish_fwd, {x.data, NULL, NULL, k.data, 0, 0, 0}},
        {"swish bwd", K_swish_bwd, {x.data, NULL, gy.data, k.data, 0, 0, 0}},
        {"relu fwd", K_relu_fwd, {x.data, NULL, NULL, k.data, 0, 0, 0}},
        {"relu bwd", K_relu_bwd, {x.data, NULL, gy.data, k.data, 0, 0, 0}},
        {"add", K_add, {x.data, b.data, NULL, k.data, 0, 0, 0}},
        {"add_channel", K_add_channel, {x.data, NULL, v.data, k.data, 0, 0, hw}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        RUN_PW(cases[c].body, cases[c].a, n);
        switch (c) {
        case 0: swish_forward(&x, &r); break;
        case 1: swish_backward_input(&x, &gy, &r); break;
        case 2: relu_forward(&x, &r); break;
        case 3: relu_backward_input(&x, &gy, &r); break;
        case 4: add_forward(&x, &b, &r); break;
        case 5: add_channel_forward(&x, &v, &r); break;
        }
        CHECK_CLOSE(cases[c].name, &k, &r, TOL);
    }
    /* axpy / axpby update y in place */
    memcpy(k.data, b.data, n * sizeof(float)), memcpy(r.data, b.data, n * sizeof(float));
    RUN_PW(K_axpy, ((pw_args){x.data, NULL, NULL, k.data, 0.37f, 0, 0}), n);
    tensor_axpy(0.37f, &x, &r);
    CHECK_CLOSE("axpy", &k, &r, TOL);
    memcpy(k.data, b.data, n * sizeof(float)), memcpy(r.data, b.data, n * sizeof(float));
    RUN_PW(K_axpby, ((pw_args){x.data, NULL, NULL, k.data, -1.5f, 0.25f, 0}), n);
    tensor_axpby(-1.5f, &x, 0.25f, &r);
    CHECK_CLOSE("axpby", &k, &r, TOL);
    /* average pool backward: gy is n × c */
    RUN_PW(K_avgpool_bwd, ((pw_args){NULL, NULL, v.data, k.data, 0, 0, hw}), n);
    avgpool_global_backward_input(&v, &r);
    CHECK_CLOSE("avgpool bwd", &k, &r, TOL);
    /* batch norm as a channel affine, forward and backward */
    float scale[5], shift[5];
    for (int i = 0; i < 5; i++) scale[i] = 1 + 0.3f * nrand(), shift[i] = 0.1f * nrand();
    RUN_PW(K_channel_affine, ((chan_args){x.data, scale, shift, k.data, 5, hw}), n);
    batch_norm_forward(&x, scale, shift, &r);
    CHECK_CLOSE("batch_norm fwd", &k, &r, TOL);
    RUN_PW(K_channel_affine, ((chan_args){gy.data, scale, NULL, k.data, 5, hw}), n);
    batch_norm_backward_input(&gy, scale, &r);
    CHECK_CLOSE("batch_norm bwd", &k, &r, TOL);
    /* sampler arithmetic */
    affine_args af = {x.data, gy.data, k.data, 0.5f, 0.5f, 0.0f, 1.0f};
    RUN_PW(K_affine_fwd, af, n);
    affine_clamp_forward(&x, 0.5f, 0.5f, 0.0f, 1.0f, &r);
    CHECK_CLOSE("affine_clamp fwd", &k, &r, TOL);
    RUN_PW(K_affine_bwd, af, n);
    affine_clamp_backward_input(&x, &gy, 0.5f, 0.5f, 0.0f, 1.0f, &r);
    CHECK_CLOSE("affine_clamp bwd", &k, &r, TOL);
    const sampler_coef ks[2] = {{.a = 1.3f, .b = 0.6f, .clamp_x0 = 1, .cx0 = 0.2f, .cx = 0.9f, .cz = 0.1f},
                                {.a = 1.1f, .b = 0.4f, .clamp_x0 = 0, .cx0 = 0.95f, .ceps = 0.3f}};
    Tensor k2 = like(&x), r2 = like(&x);
    for (int c = 0; c < 2; c++) {
        /* x, eps = b, noise z = gy (DDPM only), upstream gradient g = gy */
        sampler_args sa = {.x = x.data, .eps = b.data, .z = c ? NULL : gy.data, .g = gy.data, .y = k.data, .c = ks[c]};
        RUN_PW(K_sampler_fwd, sa, n);
        sampler_step_forward(&x, &b, c ? NULL : &gy, &ks[c], &r);
        CHECK_CLOSE(c ? "sampler fwd ddim" : "sampler fwd ddpm", &k, &r, TOL);
        sa.gx = k.data, sa.geps = k2.data;
        RUN_PW(K_sampler_bwd, sa, n);
        sampler_step_backward_input(&x, &b, &gy, &ks[c], &r, &r2);
        CHECK_CLOSE(c ? "sampler bwd gx ddim" : "sampler bwd gx ddpm", &k, &r, TOL);
        CHECK_CLOSE(c ? "sampler bwd geps ddim" : "sampler bwd geps ddpm", &k2, &r2, TOL);
    }
    /* linear bias broadcast */
    float bias[9];
    for (int i = 0; i < 9; i++) bias[i] = nrand();
    Tensor yb = tensor_new(4, 9, 1, 1);
    RUN_PW(K_bias_rows, ((bias_args){bias, yb.data, 9}), 36);
    int ok = 1;
    for (int i = 0; i < 36; i++) ok &= yb.data[i] == bias[i % 9];
    CHECK_MSG(ok, "bias_rows: row-major broadcast of the bias");
    Tensor *ts[] = {&x, &gy, &b, &v, &r, &k, &k2, &r2, &yb};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_free(ts[i]);
}

/* ---- resampling, padding, noise, timestep ------------------------------- */
static void test_index_kernels(void) {
    Tensor x = rnd(2, 3, 5, 6), up = tensor_new(2, 3, 10, 12), gy = rnd(2, 3, 10, 12);
    Tensor r = tensor_new(2, 3, 10, 12), g = tensor_new(2, 3, 5, 6), rg = tensor_new(2, 3, 5, 6);
    RUN_PW(K_up_fwd, ((up_args){x.data, up.data, 5, 6}), tensor_numel(&up));
    upsample2x_forward(&x, &r);
    CHECK_CLOSE("upsample fwd", &up, &r, 0);
    RUN_PW(K_up_bwd, ((up_args){gy.data, g.data, 5, 6}), tensor_numel(&g));
    upsample2x_backward_input(&gy, &rg);
    CHECK_CLOSE("upsample bwd", &g, &rg, TOL);
    /* pad (0,0,1,1) as the DDPM downsampler, then crop back */
    Tensor xp = tensor_new(2, 3, 6, 7), back = like(&x);
    RUN_PW(K_pad, ((pad_args){x.data, xp.data, 5, 6, 6, 7, 0, 0}), tensor_numel(&xp));
    int ok = 1;
    for (int p = 0; p < 6; p++)
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 7; j++) {
                float want = i < 5 && j < 6 ? x.data[p * 30 + i * 6 + j] : 0.0f;
                ok &= xp.data[p * 42 + i * 7 + j] == want;
            }
    CHECK_MSG(ok, "pad (0,0,1,1): x at the top-left, zeros at the bottom row and right column");
    RUN_PW(K_crop, ((pad_args){xp.data, back.data, 5, 6, 6, 7, 0, 0}), tensor_numel(&back));
    CHECK_CLOSE("crop(pad(x)) = x", &back, &x, 0);
    Tensor xq = tensor_new(2, 3, 8, 9), back2 = like(&x); /* symmetric (1,1,2,2)-style offsets */
    RUN_PW(K_pad, ((pad_args){x.data, xq.data, 5, 6, 8, 9, 1, 2}), tensor_numel(&xq));
    RUN_PW(K_crop, ((pad_args){xq.data, back2.data, 5, 6, 8, 9, 1, 2}), tensor_numel(&back2));
    CHECK_CLOSE("crop(pad(x)) = x, offset (1, 2)", &back2, &x, 0);
    double border = 0;
    for (int p = 0; p < 6; p++)
        for (int j = 0; j < 9; j++) border += fabs(xq.data[p * 72 + j]) + fabs(xq.data[p * 72 + 7 * 9 + j]);
    CHECK_MSG(border == 0, "pad offset (1, 2): top and bottom rows are zero (sum %g)", border);

    /* noise: the same integers and the same floats as the CPU generator */
    const uint64_t keys[3] = {0, 1, (UINT64_C(1) << 40) + 7};
    Tensor z = tensor_new(3, 3, 7, 5), zr = tensor_new(3, 3, 7, 5);
    size_t per = 105;
    RUN_PW(K_normal, ((normal_args){keys, z.data, per}), 3 * ((per + 3) / 4));
    normal_fill(keys, &zr);
    CHECK_MSG(memcmp(z.data, zr.data, sizeof(float) * 315) == 0, "normal kernel body == CPU generator, bit for bit");

    /* timestep embedding: forward per element, backward as a row reduction */
    const float t[5] = {0.0f, 1.0f, 17.5f, 500.0f, 999.0f};
    Tensor e = tensor_new(5, 64, 1, 1), er = tensor_new(5, 64, 1, 1), ge = rnd(5, 64, 1, 1);
    RUN_PW(K_temb_fwd, ((temb_args){t, NULL, e.data, NULL, 5, 64}), 320);
    timestep_embedding_forward(t, 5, 64, &er);
    CHECK_CLOSE("timestep embedding fwd", &e, &er, TOL);
    float gt_ref[5];
    timestep_embedding_backward_input(t, 5, 64, &ge, gt_ref);
    for (int b = 0; b < 2; b++) {
        float gt[5];
        for (int i = 0; i < 5; i++) {
            double s = 0;
            for (int tid = 0; tid < BLOCKS[b]; tid++) s += KR_temb_bwd((temb_args){t, ge.data, NULL, gt, 5, 64}, i, tid, BLOCKS[b]);
            gt[i] = (float)s;
        }
        CHECK_LE(rel_l2(gt, gt_ref, 5), TOL, "timestep embedding bwd");
    }
    Tensor *ts[] = {&x, &up, &gy, &r, &g, &rg, &xp, &back, &xq, &back2, &z, &zr, &e, &er, &ge};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_free(ts[i]);
}

/* ---- max pooling: forward per output, backward as a gather per input ---- */
static void test_maxpool(void) {
    /* (k, stride, pad): the ResNet stem, non-overlapping, stride 1; ties included (rounded inputs) */
    const int geo[3][3] = {{3, 2, 1}, {2, 2, 0}, {3, 1, 1}};
    for (int g = 0; g < 3; g++) {
        int K = geo[g][0], S = geo[g][1], P = geo[g][2], H = 9, W = 8;
        int OH = maxpool2d_out(H, K, S, P), OW = maxpool2d_out(W, K, S, P);
        Tensor x = rnd(2, 3, H, W), gy = rnd(2, 3, OH, OW);
        for (size_t i = 0; i < tensor_numel(&x); i++) x.data[i] = roundf(2 * x.data[i]); /* many ties */
        Tensor y = tensor_new(2, 3, OH, OW), yr = like(&y), gx = like(&x), gxr = like(&x);
        maxpool_args a = {x.data, gy.data, y.data, H, W, OH, OW, K, S, P};
        RUN_PW(K_maxpool_fwd, a, tensor_numel(&y));
        maxpool2d_forward(&x, K, S, P, &yr);
        char nm[80];
        snprintf(nm, sizeof nm, "maxpool fwd k%d s%d p%d", K, S, P);
        CHECK_CLOSE(nm, &y, &yr, 0);
        a.y = gx.data;
        RUN_PW(K_maxpool_bwd, a, tensor_numel(&gx));
        maxpool2d_backward_input(&x, &gy, K, S, P, &gxr);
        snprintf(nm, sizeof nm, "maxpool bwd k%d s%d p%d (gather = scatter, same order)", K, S, P);
        CHECK_CLOSE(nm, &gx, &gxr, 0);
        tensor_free(&x), tensor_free(&gy), tensor_free(&y), tensor_free(&yr), tensor_free(&gx), tensor_free(&gxr);
    }
}

/* ---- the ADM UNet's pool and scale-shift, the purifier's resize and σ ---- */
static void test_adm_kernels(void) {
    char nm[96];
    Tensor x = rnd(2, 3, 6, 10), y = tensor_new(2, 3, 3, 5), yr = tensor_new(2, 3, 3, 5);
    Tensor gy = rnd(2, 3, 3, 5), gx = like(&x), gxr = like(&x);
    RUN_PW(K_pool2_fwd, ((up_args){x.data, y.data, 3, 5}), tensor_numel(&y));
    avgpool2x2_forward(&x, &yr);
    CHECK_CLOSE("avgpool2x2 fwd", &y, &yr, TOL);
    RUN_PW(K_pool2_bwd, ((up_args){gy.data, gx.data, 3, 5}), tensor_numel(&gx));
    avgpool2x2_backward_input(&gy, &gxr);
    CHECK_CLOSE("avgpool2x2 bwd", &gx, &gxr, TOL);
    Tensor *t0[] = {&x, &y, &yr, &gy, &gx, &gxr};
    for (size_t i = 0; i < sizeof t0 / sizeof t0[0]; i++) tensor_free(t0[i]);

    /* resize: the gather backward against the CPU's scatter, at the purifier's 7:8 ratio (28 ↔ 32), ×3 up,
     * a large down ratio, and mixed */
    const int sz[][4] = {{28, 28, 32, 32}, {32, 32, 28, 28}, {4, 5, 12, 15}, {17, 19, 5, 4}, {5, 11, 9, 4}};
    for (size_t c = 0; c < sizeof sz / sizeof sz[0]; c++) {
        int hi = sz[c][0], wi = sz[c][1], ho = sz[c][2], wo = sz[c][3];
        Tensor a = rnd(2, 2, hi, wi), b = tensor_new(2, 2, ho, wo), br = tensor_new(2, 2, ho, wo);
        Tensor g = rnd(2, 2, ho, wo), ga = like(&a), gar = like(&a);
        RUN_PW(K_resize_fwd, ((rs_args){a.data, b.data, hi, wi, ho, wo}), tensor_numel(&b));
        resize_bilinear_forward(&a, &br);
        snprintf(nm, sizeof nm, "resize fwd %dx%d -> %dx%d", hi, wi, ho, wo);
        CHECK_CLOSE(nm, &b, &br, TOL);
        RUN_PW(K_resize_bwd, ((rs_args){g.data, ga.data, hi, wi, ho, wo}), tensor_numel(&ga));
        resize_bilinear_backward_input(&g, &gar);
        snprintf(nm, sizeof nm, "resize bwd %dx%d -> %dx%d", hi, wi, ho, wo);
        CHECK_CLOSE(nm, &ga, &gar, TOL);
        Tensor *t1[] = {&a, &b, &br, &g, &ga, &gar};
        for (size_t i = 0; i < sizeof t1 / sizeof t1[0]; i++) tensor_free(t1[i]);
    }

    /* scale-shift forward, backward and the per-plane sums of its ss gradient */
    Tensor h = rnd(3, 5, 7, 9), ss = rnd(3, 10, 1, 1), o = like(&h), orf = like(&h), g = rnd(3, 5, 7, 9);
    Tensor gss = tensor_new(3, 10, 1, 1), gssr = tensor_new(3, 10, 1, 1);
    ss_args sa = {h.data, ss.data, g.data, o.data, gss.data, 5, 63};
    RUN_PW(K_ss_fwd, sa, tensor_numel(&h));
    scale_shift_forward(&h, &ss, &orf);
    CHECK_CLOSE("scale_shift fwd", &o, &orf, TOL);
    RUN_PW(K_ss_bwd, sa, tensor_numel(&h));
    scale_shift_backward_input(&h, &ss, &g, &orf, &gssr);
    CHECK_CLOSE("scale_shift bwd gx", &o, &orf, TOL);
    for (int bi = 0; bi < 2; bi++) {
        for (int row = 0; row < 15; row++) {
            double sgx = 0, sg = 0, part[2];
            for (int tid = 0; tid < BLOCKS[bi]; tid++) KR_ss_sums(sa, row, tid, BLOCKS[bi], part), sgx += part[0], sg += part[1];
            KR_ss_store(sa, row, sgx, sg);
        }
        snprintf(nm, sizeof nm, "scale_shift bwd gss (block %d)", BLOCKS[bi]);
        CHECK_CLOSE(nm, &gss, &gssr, TOL);
    }

    /* learned σ: y += σ(r)·z, and its r-gradient */
    Tensor r = rnd(3, 5, 7, 9), z = rnd(3, 5, 7, 9);
    memcpy(o.data, g.data, tensor_numel(&g) * sizeof(float)), memcpy(orf.data, g.data, tensor_numel(&g) * sizeof(float));
    lsig_args la = {r.data, z.data, g.data, o.data, -9.2f, -4.1f};
    RUN_PW(K_lsig_fwd, la, tensor_numel(&r));
    learned_sigma_forward(&r, &z, -9.2f, -4.1f, &orf);
    CHECK_CLOSE("learned_sigma fwd", &o, &orf, TOL);
    RUN_PW(K_lsig_bwd, la, tensor_numel(&r));
    learned_sigma_backward_input(&r, &z, -9.2f, -4.1f, &g, &orf);
    CHECK_CLOSE("learned_sigma bwd", &o, &orf, TOL);
    Tensor *t2[] = {&h, &ss, &o, &orf, &g, &gss, &gssr, &r, &z};
    for (size_t i = 0; i < sizeof t2 / sizeof t2[0]; i++) tensor_free(t2[i]);
}

/* ---- reductions --------------------------------------------------------- */
/* k_group_norm_fwd / _bwd on the CPU: each row's phases over nt simulated threads */
static void sim_gn_forward(gn_args a, int rows, int nt) {
    for (int row = 0; row < rows; row++) {
        double s = 0, ss = 0, m = (double)gn_m(a);
        for (int tid = 0; tid < nt; tid++) s += KR_gn_sum(a, row, tid, nt);
        double mean = s / m;
        for (int tid = 0; tid < nt; tid++) ss += KR_gn_sqdev(a, row, mean, tid, nt);
        double rstd = 1.0 / sqrt(ss / m + a.eps);
        for (int tid = 0; tid < nt; tid++) KR_gn_apply(a, row, mean, rstd, tid, nt);
    }
}
static void sim_gn_backward(gn_args a, int rows, int nt) {
    for (int row = 0; row < rows; row++) {
        double sg = 0, sgx = 0, part[2];
        for (int tid = 0; tid < nt; tid++) KR_gn_bwd_sums(a, row, tid, nt, part), sg += part[0], sgx += part[1];
        for (int tid = 0; tid < nt; tid++) KR_gn_bwd_apply(a, row, sg, sgx, tid, nt);
    }
}

static void test_reductions(void) {
    for (int bi = 0; bi < 2; bi++) {
        int nt = BLOCKS[bi];
        char nm[96];
        /* group norm forward + backward, with and without affine */
        for (int aff = 0; aff < 2; aff++) {
            int groups = aff ? 32 : 8;
            Tensor x = rnd(3, 64, 5, 7), gy = rnd(3, 64, 5, 7), y = like(&x), yr = like(&x), gx = like(&x),
                   gxr = like(&x);
            float gamma[64], beta[64], st[3 * 32 * 2], str[3 * 32 * 2];
            for (int i = 0; i < 64; i++) gamma[i] = 1 + 0.2f * nrand(), beta[i] = 0.1f * nrand();
            for (int i = 0; i < 3 * 64; i++) x.data[i] += 3.0f; /* a non-zero mean in some groups */
            gn_args a = {x.data, gy.data, aff ? gamma : NULL, aff ? beta : NULL, st, y.data, st, 64, groups, 35, 1e-6f, NULL, NULL, NULL};
            sim_gn_forward(a, 3 * groups, nt);
            group_norm_forward(&x, groups, 1e-6f, aff ? gamma : NULL, aff ? beta : NULL, &yr, str);
            snprintf(nm, sizeof nm, "group_norm fwd (groups %d, block %d)", groups, nt);
            CHECK_CLOSE(nm, &y, &yr, TOL);
            CHECK_LE(rel_l2(st, str, 3 * groups * 2), TOL, "group_norm saved stats");
            a.y = gx.data, a.stats_in = str;
            sim_gn_backward(a, 3 * groups, nt);
            group_norm_backward_input(&x, &gy, groups, aff ? gamma : NULL, str, &gxr);
            snprintf(nm, sizeof nm, "group_norm bwd (groups %d, block %d)", groups, nt);
            CHECK_CLOSE(nm, &gx, &gxr, TOL);
            /* fused with swish (gn_args.act / .h): against the CPU backend's fused op, and bit for
             * bit against the plain kernels run as a pair (K_swish_fwd / K_swish_bwd) */
            Tensor act = like(&x), hr = like(&x), actr = like(&x), gs = like(&x), gsr = like(&x), sw = like(&x);
            a.y = y.data, a.act = act.data, a.stats = st;
            sim_gn_forward(a, 3 * groups, nt);
            group_norm_swish_forward(&x, NULL, groups, 1e-6f, aff ? gamma : NULL, aff ? beta : NULL, &hr, &actr, str);
            snprintf(nm, sizeof nm, "group_norm_swish fwd (groups %d, block %d)", groups, nt);
            CHECK_CLOSE(nm, &act, &actr, TOL);
            pw_args sp = {0};
            sp.a = y.data, sp.y = sw.data;
            for (size_t i = 0; i < tensor_numel(&x); i++) K_swish_fwd(sp, i);
            CHECK_MSG(!memcmp(sw.data, act.data, tensor_numel(&x) * sizeof(float)),
                      "%s: the fused kernel's swish differs from K_swish_fwd's", nm);
            a.act = NULL, a.h = hr.data, a.y = gs.data, a.stats_in = str;
            sim_gn_backward(a, 3 * groups, nt);
            memcpy(sw.data, gy.data, tensor_numel(&gy) * sizeof(float));
            group_norm_swish_backward_input(&x, NULL, &hr, &sw, groups, aff ? gamma : NULL, str, &gsr);
            snprintf(nm, sizeof nm, "group_norm_swish bwd (groups %d, block %d)", groups, nt);
            CHECK_CLOSE(nm, &gs, &gsr, TOL);
            /* with the time-embedding bias (gn_args.bias) */
            Tensor bias = rnd(3, 64, 1, 1);
            a.bias = bias.data, a.h = NULL, a.act = act.data, a.y = y.data, a.stats = st;
            sim_gn_forward(a, 3 * groups, nt);
            group_norm_swish_forward(&x, &bias, groups, 1e-6f, aff ? gamma : NULL, aff ? beta : NULL, &hr, &actr, str);
            snprintf(nm, sizeof nm, "group_norm_swish + bias fwd (groups %d, block %d)", groups, nt);
            CHECK_CLOSE(nm, &act, &actr, TOL);
            a.act = NULL, a.h = hr.data, a.y = gs.data, a.stats_in = str;
            sim_gn_backward(a, 3 * groups, nt);
            memcpy(sw.data, gy.data, tensor_numel(&gy) * sizeof(float));
            group_norm_swish_backward_input(&x, &bias, &hr, &sw, groups, aff ? gamma : NULL, str, &gsr);
            snprintf(nm, sizeof nm, "group_norm_swish + bias bwd (groups %d, block %d)", groups, nt);
            CHECK_CLOSE(nm, &gs, &gsr, TOL);
            a.bias = NULL;
            tensor_free(&bias);
            Tensor *tf[] = {&act, &hr, &actr, &gs, &gsr, &sw};
            for (size_t i = 0; i < sizeof tf / sizeof tf[0]; i++) tensor_free(tf[i]);
            Tensor *ts[] = {&x, &gy, &y, &yr, &gx, &gxr};
            for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_free(ts[i]);
        }
        /* per-plane sums: add_channel backward and average pool */
        Tensor g = rnd(3, 5, 7, 9), gv = tensor_new(3, 5, 1, 1), gvr = tensor_new(3, 5, 1, 1);
        Tensor pool = tensor_new(3, 5, 1, 1), poolr = tensor_new(3, 5, 1, 1);
        for (int row = 0; row < 15; row++) {
            plane_args pa = {g.data, gv.data, 63, 1.0}, pp = {g.data, pool.data, 63, 1.0 / 63};
            double s = 0;
            for (int tid = 0; tid < nt; tid++) s += KR_plane_sum(pa, row, tid, nt);
            KR_plane_store(pa, row, s), KR_plane_store(pp, row, s);
        }
        add_channel_backward_input(&g, NULL, &gvr);
        avgpool_global_forward(&g, &poolr);
        snprintf(nm, sizeof nm, "add_channel bwd (block %d)", nt); CHECK_CLOSE(nm, &gv, &gvr, TOL);
        snprintf(nm, sizeof nm, "avgpool fwd (block %d)", nt); CHECK_CLOSE(nm, &pool, &poolr, TOL);
        tensor_free(&g), tensor_free(&gv), tensor_free(&gvr), tensor_free(&pool), tensor_free(&poolr);
    }
}

/* ---- GEMM plans through a column-major reference (cuBLAS conventions) ---- */
static void ref_gemm(const gemm_plan *g, const float *const *buf) {
    /* cuBLAS's argument rules (it refuses the call otherwise) */
    CHECK_MSG(g->m > 0 && g->n > 0 && g->k > 0 && g->batch > 0, "gemm plan sizes %d %d %d ×%d", g->m, g->n, g->k,
              g->batch);
    CHECK_MSG(g->lda >= (g->ta ? g->k : g->m), "gemm plan lda %d < %d", g->lda, g->ta ? g->k : g->m);
    CHECK_MSG(g->ldb >= (g->tb ? g->n : g->k), "gemm plan ldb %d < %d", g->ldb, g->tb ? g->n : g->k);
    CHECK_MSG(g->ldc >= g->m, "gemm plan ldc %d < m %d", g->ldc, g->m);
    const float *A0 = buf[g->a], *B0 = buf[g->b];
    float *C0 = (float *)buf[g->c];
    for (int bt = 0; bt < g->batch; bt++) {
        const float *A = A0 + bt * g->sa, *B = B0 + bt * g->sb;
        float *C = C0 + bt * g->sc;
        for (int i = 0; i < g->m; i++)
            for (int j = 0; j < g->n; j++) {
                double s = 0;
                for (int p = 0; p < g->k; p++) {
                    double a = g->ta ? A[p + (size_t)i * g->lda] : A[i + (size_t)p * g->lda];
                    double b = g->tb ? B[j + (size_t)p * g->ldb] : B[p + (size_t)j * g->ldb];
                    s += a * b;
                }
                float *c = &C[i + (size_t)j * g->ldc];
                *c = (float)(g->alpha * s + (g->beta != 0 ? g->beta * *c : 0.0));
            }
    }
}

/* softmax rows / their backward through the kern.h phases (block nt) */
static void rows_softmax(float *s, int rows, int L, int nt) {
    softmax_args a = {NULL, s, L, 1.0f};
    for (int r = 0; r < rows; r++) {
        float mx = -INFINITY;
        double sum = 0;
        for (int t = 0; t < nt; t++) mx = fmaxf(mx, KR_softmax_max(a, r, t, nt));
        for (int t = 0; t < nt; t++) sum += KR_softmax_exp(a, r, mx, t, nt);
        for (int t = 0; t < nt; t++) KR_softmax_scale(a, r, sum, t, nt);
    }
}
static void rows_softmax_bwd(const float *p, float *gs, int rows, int L, float scale, int nt) {
    softmax_args a = {p, gs, L, scale};
    for (int r = 0; r < rows; r++) {
        double dot = 0;
        for (int t = 0; t < nt; t++) dot += KR_softmax_bwd_dot(a, r, t, nt);
        for (int t = 0; t < nt; t++) KR_softmax_bwd_apply(a, r, dot, t, nt);
    }
}

static void test_gemm_plans(void) {
    /* linear, with and without bias, and its backward */
    int n = 3, in = 37, out = 29;
    Tensor x = rnd(n, in, 1, 1), w = rnd(out, in, 1, 1), bias = rnd(1, out, 1, 1), gy = rnd(n, out, 1, 1);
    Tensor y = tensor_new(n, out, 1, 1), yr = tensor_new(n, out, 1, 1), gx = tensor_new(n, in, 1, 1),
           gxr = tensor_new(n, in, 1, 1);
    for (int hb = 0; hb < 2; hb++) {
        if (hb) RUN_PW(K_bias_rows, ((bias_args){bias.data, y.data, out}), (size_t)n * out);
        const float *buf[GB_GV + 1] = {0};
        buf[GB_W] = w.data, buf[GB_X] = x.data, buf[GB_Y] = y.data;
        gemm_plan g = plan_linear_fwd(n, in, out, hb);
        ref_gemm(&g, buf);
        linear_forward(w.data, hb ? bias.data : NULL, in, out, &x, &yr);
        CHECK_CLOSE(hb ? "linear fwd plan (bias)" : "linear fwd plan", &y, &yr, TOL);
    }
    const float *buf[GB_GV + 1] = {0};
    buf[GB_W] = w.data, buf[GB_Y] = gy.data, buf[GB_X] = gx.data;
    gemm_plan g = plan_linear_bwd(n, in, out);
    ref_gemm(&g, buf);
    linear_backward_input(w.data, in, out, &gy, &gxr);
    CHECK_CLOSE("linear bwd plan", &gx, &gxr, TOL);

    /* attention: the calls of ops_cuda.cu in its order */
    int C = 24, H = 4, W = 5, L = H * W;
    n = 2;
    Tensor q = rnd(n, C, H, W), k = rnd(n, C, H, W), v = rnd(n, C, H, W), gh = rnd(n, C, H, W);
    Tensor p = tensor_new(n, L * L, 1, 1), h = like(&q), gs = tensor_new(n, L * L, 1, 1);
    Tensor gq = like(&q), gk = like(&q), gv = like(&q);
    Tensor pr = tensor_new(n, L * L, 1, 1), hr = like(&q), gqr = like(&q), gkr = like(&q), gvr = like(&q);
    for (int bi = 0; bi < 2; bi++) {
        const float *ab[GB_GV + 1] = {0};
        ab[GB_Q] = q.data, ab[GB_K] = k.data, ab[GB_V] = v.data, ab[GB_P] = p.data, ab[GB_H] = h.data;
        ab[GB_GH] = gh.data, ab[GB_GS] = gs.data, ab[GB_GQ] = gq.data, ab[GB_GK] = gk.data, ab[GB_GV] = gv.data;
        gemm_plan g0 = plan_attention(0, n, L, C), g1 = plan_attention(1, n, L, C);
        ref_gemm(&g0, ab);
        rows_softmax(p.data, n * L, L, BLOCKS[bi]);
        ref_gemm(&g1, ab);
        for (int step = 2; step <= 5; step++) {
            gemm_plan gb = plan_attention(step, n, L, C);
            ref_gemm(&gb, ab);
            if (step == 3) rows_softmax_bwd(p.data, gs.data, n * L, L, 1.0f / sqrtf((float)C), BLOCKS[bi]);
        }
        attention_forward(&q, &k, &v, &pr, &hr);
        attention_backward_input(&q, &k, &v, &pr, &gh, &gqr, &gkr, &gvr);
        char nm[80];
        snprintf(nm, sizeof nm, "attention P (block %d)", BLOCKS[bi]); CHECK_CLOSE(nm, &p, &pr, TOL);
        snprintf(nm, sizeof nm, "attention H (block %d)", BLOCKS[bi]); CHECK_CLOSE(nm, &h, &hr, TOL);
        snprintf(nm, sizeof nm, "attention gQ (block %d)", BLOCKS[bi]); CHECK_CLOSE(nm, &gq, &gqr, TOL);
        snprintf(nm, sizeof nm, "attention gK (block %d)", BLOCKS[bi]); CHECK_CLOSE(nm, &gk, &gkr, TOL);
        snprintf(nm, sizeof nm, "attention gV (block %d)", BLOCKS[bi]); CHECK_CLOSE(nm, &gv, &gvr, TOL);
    }
    /* attention with bf16 operands: ops_cuda.cu's sequence (P rounded into its scratch for H and gV, gS
     * rounded after the softmax backward; q, k, v, gh come rounded from ops.c) against the CPU backend's */
    {
        const drq_backend *cpu = drq_backend_for(DRQ_CPU);
        Tensor qb = like(&q), kb = like(&q), vb = like(&q), ghb = like(&q), pb = tensor_new(n, L * L, 1, 1);
        Tensor *src[] = {&q, &k, &v, &gh}, *dst[] = {&qb, &kb, &vb, &ghb};
        for (int i = 0; i < 4; i++)
            RUN_PW(K_round_bf16, ((pw_args){src[i]->data, NULL, NULL, dst[i]->data, 0, 0, 0}), tensor_numel(src[i]));
        const float *ab[GB_GV + 1] = {0};
        ab[GB_Q] = qb.data, ab[GB_K] = kb.data, ab[GB_V] = vb.data, ab[GB_P] = p.data, ab[GB_H] = h.data;
        ab[GB_GH] = ghb.data, ab[GB_GS] = gs.data, ab[GB_GQ] = gq.data, ab[GB_GK] = gk.data, ab[GB_GV] = gv.data;
        gemm_plan g0 = plan_attention(0, n, L, C), g1 = plan_attention(1, n, L, C);
        ref_gemm(&g0, ab);
        rows_softmax(p.data, n * L, L, BLOCKS[0]);
        RUN_PW(K_round_bf16, ((pw_args){p.data, NULL, NULL, pb.data, 0, 0, 0}), tensor_numel(&p));
        ab[GB_P] = pb.data;
        ref_gemm(&g1, ab);
        for (int step = 2; step <= 5; step++) {
            gemm_plan gb = plan_attention(step, n, L, C);
            ref_gemm(&gb, ab);
            if (step == 3) {
                rows_softmax_bwd(p.data, gs.data, n * L, L, 1.0f / sqrtf((float)C), BLOCKS[0]);
                RUN_PW(K_round_bf16, ((pw_args){gs.data, NULL, NULL, gs.data, 0, 0, 0}), tensor_numel(&gs));
            }
        }
        (cpu->attention_forward)(&qb, &kb, &vb, &pr, &hr, 1);
        (cpu->attention_backward_input)(&qb, &kb, &vb, &pr, &ghb, &gqr, &gkr, &gvr, 1);
        CHECK_CLOSE("attention bf16 P", &p, &pr, TOL);
        CHECK_CLOSE("attention bf16 H", &h, &hr, TOL);
        CHECK_CLOSE("attention bf16 gQ", &gq, &gqr, TOL);
        CHECK_CLOSE("attention bf16 gK", &gk, &gkr, TOL);
        CHECK_CLOSE("attention bf16 gV", &gv, &gvr, TOL);
        Tensor *tb[] = {&qb, &kb, &vb, &ghb, &pb};
        for (size_t i = 0; i < sizeof tb / sizeof tb[0]; i++) tensor_free(tb[i]);
    }
    Tensor *ts[] = {&x, &w, &bias, &gy, &y, &yr, &gx, &gxr, &q, &k, &v, &gh, &p, &h, &gs,
                    &gq, &gk, &gv, &pr, &hr, &gqr, &gkr, &gvr};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_free(ts[i]);
}

/* round_bf16: the kernel body against the CPU backend, bit for bit, on special values
 * (ties, subnormals, ±0, ±inf, NaNs with low payloads, the overflow boundary) and random bit patterns */
static void test_round_bf16(void) {
    static const uint32_t special[] = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u,
                                       0xff80ffffu, 0x7f7f7fffu, 0x7f7f8000u, 0x7f7fffffu, 0xff7f8000u, 0x00008000u,
                                       0x00018000u, 0x007fffffu, 0x3f808000u, 0x3f818000u, 0xbf807fffu};
    size_t ns = sizeof special / sizeof special[0], n = ns + 50000;
    Tensor x = tensor_new(1, 1, 1, (int)n), r = like(&x), kk = like(&x);
    for (size_t i = 0; i < n; i++) {
        uint32_t u = i < ns ? special[i] : (uint32_t)(urand() * 4294967296.0);
        if (i >= ns && i % 3 == 1) u = (u & 0xffff0000u) | 0x8000u; /* ties */
        memcpy(&x.data[i], &u, sizeof u);
    }
    round_bf16_forward(&x, &r);
    RUN_PW(K_round_bf16, ((pw_args){x.data, NULL, NULL, kk.data, 0, 0, 0}), n);
    CHECK_MSG(!memcmp(r.data, kk.data, n * sizeof(float)), "round_bf16: kernel body differs from the CPU backend");
    tensor_free(&x), tensor_free(&r), tensor_free(&kk);
}

int main(void) {
    drq_set_threads(1);
    test_pointwise();
    test_index_kernels();
    test_maxpool();
    test_adm_kernels();
    test_reductions();
    test_gemm_plans();
    test_round_bf16();
    return CHECK_DONE();
}
