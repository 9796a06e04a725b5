/* test_analyses.c — the analysis job kinds end to end on the committed
 * fixture models (wrn_small + unet_small, 1×16×16) and a synthetic dataset:
 *   - batch invariance: batch 1 and batch 4 give identical rows (extra too);
 *   - resume: a job preempted after its first batch and resumed from its
 *     checkpoint gives the uninterrupted rows, for each kind;
 *   - variance: the law of total variance on real purifications; under the
 *     identity purifier the internal variance is 0 and the compression radius
 *     is the initial radius;
 *   - gradcorr: under the identity purifier every estimator is the same
 *     gradient (all cosines 1); with DDPM the (fixed, fixed_other) and
 *     (fixed, bpda) cosines equal those of gradients computed here with the
 *     seeds of docs/seeds.md; the fixed estimator's gradient matches finite
 *     differences of the loss along two directions;
 *   - screen: clean prediction and comp_unif equal those of a fixed-ω attack
 *     row with the same eps, norm and n_uniform (one definition, shared).
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/dataset.h"
#include "../common/rng.h"
#include "../common/spec.h"
#include "worker/eval/analysis.h"
#include "worker/eval/attack.h"
#include "worker/eval/engine.h"
#include "blob_dataset.h"
#include "check.h"
#include "job_capture.h"

static char dir[64];
static drq_spec spec;
enum { NIMG = 5 };

static const char *SPEC =
    "{\"name\":\"t\",\"dataset\":{\"kind\":\"mnist\",\"path\":\"%s\",\"start\":0,\"count\":5},"
    "\"classifier\":{\"arch\":\"wrn\",\"config\":\"tests/fixtures/wrn_small.json\","
    "\"weights\":\"tests/fixtures/wrn_small.weights.safetensors\"},"
    "\"diffusion\":{\"arch\":\"ddpm-unet\",\"config\":\"tests/fixtures/unet_small.json\","
    "\"weights\":\"tests/fixtures/unet_small.weights.safetensors\"},"
    "\"purifiers\":[{\"name\":\"ddpm\",\"kind\":\"ddpm\",\"t_star\":2,\"clamp_out\":false},{\"name\":\"none\",\"kind\":\"none\"}],"
    "\"attacks\":[{\"name\":\"pgd\",\"kind\":\"pgd\",\"eps\":0.1,\"steps\":1,\"n_uniform\":3}],"
    "\"analyses\":[{\"name\":\"var\",\"kind\":\"variance\",\"n_delta\":3,\"n_omega\":2,\"eps\":0.1},"
    "{\"name\":\"gc\",\"kind\":\"gradcorr\",\"eot_k\":2},"
    "{\"name\":\"scr\",\"kind\":\"screen\",\"n_uniform\":3,\"eps\":0.1},"
    "{\"name\":\"gc3\",\"kind\":\"gradcorr\",\"estimators\":[\"fixed_other\",\"eot\",\"bpda\"],\"eot_k\":2}],"
    "\"seeds\":[3],\"shard\":{\"images\":5}}";
enum { A_PGD, A_VAR, A_GC, A_SCR, A_GC3 };

/* The job context of a run keeps the last checkpoint (job_capture.h); a
 * preemption comes after `preempt_after` images (0: never). */
static void on_progress(job_ctx *ctx, int64_t done, int64_t total) {
    capture *c = ctx->user;
    if (c->preempt_after && done >= c->preempt_after) atomic_store(&c->preempt, 1);
}

/* Runs (purifier, attack) over the 5 images; NULL unless it ends with `want`. */
static drq_row *run(int purifier, int attack, int batch, capture *cap, job_status want, int64_t *n) {
    drq_job job = {.id = 1, .sweep = 1, .spec = &spec, .purifier = purifier, .attack = attack, .seed = 3,
                   .image_start = 0, .image_count = NIMG, .device = "cpu", .worker = "t"};
    job_ctx ctx = {0};
    if (cap) {
        ctx.user = cap;
        ctx.checkpoint = on_checkpoint;
        ctx.progress = on_progress;
        ctx.preempt = &cap->preempt;
        if (cap->blob && !cap->preempt_after) ctx.resume = cap->blob, ctx.resume_len = cap->len;
    }
    drq_row *rows = NULL;
    drq_err err = {{0}};
    *n = 0;
    engine_set_batch(batch);
    job_status st = job_run(&job, &ctx, &rows, n, &err);
    CHECK_MSG(st == want, "job_run(purifier %d, attack %d): status %d, want %d: %s", purifier, attack, (int)st,
              (int)want, err.msg);
    if (cap && cap->blob && !cap->preempt_after) CHECK_MSG(ctx.resumed, "the checkpoint was not used");
    return st == JOB_DONE ? rows : NULL;
}

/* Rows equal on every metric but seconds, extra included. */
static int rows_equal(const drq_row *a, const drq_row *b, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; i++) {
        drq_row x = a[i], y = b[i];
        x.seconds = y.seconds = 0;
        int extra_same = (!x.extra && !y.extra) || (x.extra && y.extra && !strcmp(x.extra, y.extra));
        x.extra = y.extra = NULL;
        if (memcmp(&x, &y, sizeof x) || !extra_same) {
            fprintf(stderr, "%s: row %lld differs: extra %s vs %s\n", what, (long long)i, a[i].extra, b[i].extra);
            return 0;
        }
    }
    return 1;
}

static json_t *extra_of(const drq_row *r) { return json_loads(r->extra ? r->extra : "null", 0, NULL); }

static double xnum(const json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* The cosine of pair (a, b) in a gradcorr row's extra. */
static double pair_cos(const json_t *o, const char *a, const char *b) {
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(o, "pairs"), i, p) {
        if (!strcmp(json_string_value(json_object_get(p, "est_a")), a) &&
            !strcmp(json_string_value(json_object_get(p, "est_b")), b))
            return xnum(p, "cosine");
    }
    return NAN;
}

static void test_batch_and_resume(void) {
    static const int kinds[3] = {A_VAR, A_GC3, A_SCR}; /* gc3: a cheaper gradcorr, every code path */
    for (int ki = 0; ki < 3; ki++) {
        int a = kinds[ki];
        int64_t n1, n4, nr;
        drq_row *r1 = run(0, a, 1, NULL, JOB_DONE, &n1), *r4 = run(0, a, 4, NULL, JOB_DONE, &n4);
        if (r1 && r4) {
            CHECK_EQ_INT(n1, NIMG);
            CHECK_MSG(rows_equal(r1, r4, NIMG, "batch 1 vs 4"), "analysis %d: batch 1 and batch 4 rows differ", a);
        }
        /* preempted after its first batch of 2, then resumed with batch 3 */
        capture cap = {0};
        cap.preempt_after = 2;
        run(0, a, 2, &cap, JOB_PREEMPTED, &nr);
        CHECK_MSG(cap.blob != NULL, "analysis %d: no checkpoint on preemption", a);
        cap.preempt_after = 0;
        atomic_store(&cap.preempt, 0);
        drq_row *rr = cap.blob ? run(0, a, 3, &cap, JOB_DONE, &nr) : NULL;
        if (rr && r4) CHECK_MSG(rows_equal(r4, rr, NIMG, "resume"), "analysis %d: resumed rows differ", a);
        for (int i = 0; r4 && i < NIMG; i++) {
            json_t *o = extra_of(&r4[i]);
            CHECK_EQ_STR(json_string_value(json_object_get(o, "analysis")), a == A_VAR ? "variance" : a == A_GC3 ? "gradcorr" : "screen");
            CHECK_EQ_INT(r4[i].label, i % 10);
            CHECK_CMP_INT(r4[i].unet_evals, >, 0);
            json_decref(o);
        }
        free(cap.blob);
        drq_rows_free(r1, n1), drq_rows_free(r4, n4), drq_rows_free(rr, nr);
    }
}

static void test_variance(void) {
    int64_t nd, nn;
    drq_row *rd = run(0, A_VAR, 4, NULL, JOB_DONE, &nd), *rn = run(1, A_VAR, 4, NULL, JOB_DONE, &nn);
    for (int i = 0; rd && rn && i < NIMG; i++) {
        json_t *o = extra_of(&rd[i]), *q = extra_of(&rn[i]);
        double tot = xnum(o, "var_total"), in = xnum(o, "var_input"), it = xnum(o, "var_internal");
        CHECK_LE(fabs(tot - in - it), 1e-9 * tot, "ddpm: law of total variance");
        CHECK_MSG(it > 0 && in > 0 && xnum(o, "snr") == in / it, "ddpm: input %g, internal %g, snr %g", in, it,
                  xnum(o, "snr"));
        CHECK_MSG(xnum(o, "cos_same_omega") <= 1 && xnum(o, "cos_same_delta") >= -1, "ddpm: cosines %g %g",
                  xnum(o, "cos_same_omega"), xnum(o, "cos_same_delta"));
        /* identity: P_jk = x + δ_j whatever ω */
        CHECK_CMP_DBL(xnum(q, "var_internal"), ==, 0.0);
        CHECK(json_is_null(json_object_get(q, "snr")));
        CHECK_LE(fabs(xnum(q, "radius_fixed_omega") - xnum(q, "radius_init")), 1e-6 * xnum(q, "radius_init"),
                 "identity: compression radius = initial (to float rounding of δ = clip(x + u) − x)");
        CHECK_CMP_DBL(xnum(q, "radius_fixed_delta"), ==, 0.0);
        CHECK_LE(fabs(xnum(q, "cos_same_delta") - 1), 1e-12, "identity: same δ, different ω: cosine 1");
        /* the initial radius does not depend on the purifier */
        CHECK_CMP_DBL(xnum(q, "radius_init"), ==, xnum(o, "radius_init"));
        json_decref(o), json_decref(q);
    }
    drq_rows_free(rd, nd), drq_rows_free(rn, nn);
}

/* CE at P_ω(x) summed over the batch (the loss the fixed estimator differentiates). */
typedef struct {
    attack_models *am;
    const int *label;
    const int64_t *image;
    const uint64_t *om;
} fd_ctx;

static double ce_loss(void *vc, const Tensor *x) {
    fd_ctx *c = vc;
    Tensor px = tensor_new(x->n, x->c, x->h, x->w), lg = tensor_new(x->n, c->am->classes, 1, 1);
    purifier_forward(c->am->pur, x, c->om, c->image, 0, &px, NULL);
    classifier_forward(c->am->clf, &px, &lg);
    double s = 0;
    for (int i = 0; i < x->n; i++) {
        const float *l = lg.data + i * c->am->classes;
        double mx = l[0], z = 0;
        for (int k = 1; k < c->am->classes; k++) mx = fmax(mx, l[k]);
        for (int k = 0; k < c->am->classes; k++) z += exp(l[k] - mx);
        s += mx + log(z) - l[c->label[i]];
    }
    tensor_free(&px), tensor_free(&lg);
    return s;
}

static void test_gradcorr(void) {
    int64_t nn, nd;
    drq_row *rn = run(1, A_GC, 4, NULL, JOB_DONE, &nn), *rd = run(0, A_GC, 4, NULL, JOB_DONE, &nd);
    for (int i = 0; rn && i < NIMG; i++) {
        json_t *o = extra_of(&rn[i]);
        CHECK_EQ_INT(json_array_size(json_object_get(o, "pairs")), 10);
        size_t k;
        json_t *p;
        json_array_foreach(json_object_get(o, "pairs"), k, p)
            CHECK_LE(fabs(xnum(p, "cosine") - 1), 1e-6, "identity purifier: every estimator is the same gradient");
        json_decref(o);
    }
    /* ddpm: recompute two estimators' gradients with the documented seeds */
    engine_models em;
    drq_err err;
    if (engine_models_get(&spec, 1, &em, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        drq_rows_free(rn, nn), drq_rows_free(rd, nd);
        return;
    }
    purify_config pc = engine_purify_config(&spec.purifiers[0]);
    purifier *pur = purifier_new(em.diff, &pc);
    attack_models am = {em.clf, pur, em.classes, NULL};
    drq_dataset ds;
    snprintf(err.msg, sizeof err.msg, "-");
    int n = 2;
    Tensor x = tensor_new(n, 1, 16, 16), gf = tensor_new(n, 1, 16, 16), go = tensor_new(n, 1, 16, 16);
    Tensor gb = tensor_new(n, 1, 16, 16);
    int label[2];
    int64_t image[2] = {0, 1};
    if (dataset_load("mnist", dir, "test", 0, n, &ds, &err) == 0) {
        memcpy(x.data, ds.x, sizeof(float) * tensor_numel(&x));
        label[0] = ds.y[0], label[1] = ds.y[1];
        dataset_free(&ds);
    } else {
        CHECK_MSG(0, "dataset: %s", err.msg);
    }
    attack_config full = {.seed = 3}, bpda = {.seed = 3, .bpda = 1};
    attack_gradient(&full, &am, &x, label, image, 3, &gf, NULL);
    attack_gradient(&full, &am, &x, label, image, drq_derived_seed(3, DRQ_PURPOSE_GRADCORR, 1, 0), &go, NULL);
    attack_gradient(&bpda, &am, &x, label, image, 3, &gb, NULL);
    for (int i = 0; rd && i < n; i++) {
        json_t *o = extra_of(&rd[i]);
        double cfo = analysis_cosine(gf.data + i * 256, go.data + i * 256, 256);
        double cfb = analysis_cosine(gf.data + i * 256, gb.data + i * 256, 256);
        CHECK_LE(fabs(pair_cos(o, "fixed", "fixed_other") - cfo), 1e-12, "ddpm: cos(fixed, fixed_other) as recomputed");
        CHECK_LE(fabs(pair_cos(o, "fixed", "bpda") - cfb), 1e-12, "ddpm: cos(fixed, bpda) as recomputed");
        CHECK_MSG(fabs(cfo) < 1 - 1e-6, "ddpm: two ω must give different gradients (cos %.9g)", cfo);
        CHECK_EQ_INT(rd[i].clean_correct, rd[i].clean_pred == rd[i].label);
        json_decref(o);
    }
    /* the fixed estimator's gradient is the gradient of CE at P_{ω_s}(x) */
    uint64_t om[2] = {3, 3};
    fd_ctx c = {&am, label, image, om};
    /* FD of the loss along two unit directions: the gradient itself (the
     * largest signal over the float32 noise of the loss) and g − g_bpda (where
     * a gradient that skipped the purifier's Jacobian would be off by
     * ‖g − g_bpda‖); the error is measured against ‖g‖ */
    Tensor dirs[2] = {tensor_new(n, 1, 16, 16), tensor_new(n, 1, 16, 16)}, xs = tensor_new(n, 1, 16, 16);
    double gn = 0, dn = 0;
    for (size_t e = 0; e < tensor_numel(&gf); e++) {
        gn += (double)gf.data[e] * gf.data[e];
        dn += ((double)gf.data[e] - gb.data[e]) * ((double)gf.data[e] - gb.data[e]);
    }
    gn = sqrt(gn), dn = sqrt(dn);
    for (size_t e = 0; e < tensor_numel(&gf); e++) {
        dirs[0].data[e] = (float)(gf.data[e] / gn);
        dirs[1].data[e] = (float)((gf.data[e] - gb.data[e]) / dn);
    }
    const double tol = 1e-2;
    CHECK_MSG(dn > 2 * tol * gn, "fixed vs bpda gradients too close for the FD check to tell them apart (%g vs %g)", dn,
              gn);
    for (int d = 0; d < 2; d++) {
        double D[2], an = 0;
        for (size_t e = 0; e < tensor_numel(&gf); e++) an += (double)gf.data[e] * dirs[d].data[e];
        for (int r = 0; r < 2; r++) { /* central differences at h and h/2, Richardson-extrapolated */
            float h = r ? 1e-2f : 2e-2f;
            double l[2];
            for (int sgn = 0; sgn < 2; sgn++) {
                for (size_t e = 0; e < tensor_numel(&x); e++) xs.data[e] = x.data[e] + (sgn ? h : -h) * dirs[d].data[e];
                l[sgn] = ce_loss(&c, &xs);
            }
            D[r] = (l[1] - l[0]) / (2 * h);
        }
        double fd = (4 * D[1] - D[0]) / 3;
        char what[160];
        snprintf(what, sizeof what, "fixed estimator: FD along direction %d (analytic %.6g, fd %.6g, ‖g‖ %.3g, ‖g − g_bpda‖ %.3g)",
                 d, an, fd, gn, dn);
        CHECK_LE(fabs(an - fd) / gn, tol, what);
    }
    tensor_free(&dirs[0]), tensor_free(&dirs[1]), tensor_free(&xs);
    tensor_free(&x), tensor_free(&gf), tensor_free(&go), tensor_free(&gb);
    attack_models_release(&am);
    purifier_free(pur);
    drq_rows_free(rn, nn), drq_rows_free(rd, nd);
}

static void test_screen(void) {
    for (int p = 0; p < 2; p++) {
        int64_t ns, na;
        drq_row *rs = run(p, A_SCR, 4, NULL, JOB_DONE, &ns), *ra = run(p, A_PGD, 4, NULL, JOB_DONE, &na);
        for (int i = 0; rs && ra && i < NIMG; i++) {
            CHECK_EQ_INT(rs[i].clean_pred, ra[i].clean_pred);
            CHECK_CMP_DBL(rs[i].comp_unif_mean, ==, ra[i].comp_unif_mean);
            CHECK_CMP_DBL(rs[i].comp_unif_std, ==, ra[i].comp_unif_std);
            if (p == 1) CHECK_LE(fabs(rs[i].comp_unif_mean - 1), 1e-6, "identity purifier: compression rate 1");
            CHECK_EQ_INT(rs[i].adv_pred, DRQ_NA);
        }
        drq_rows_free(rs, ns), drq_rows_free(ra, na);
    }
}

int main(void) {
    drq_set_threads(2);
    snprintf(dir, sizeof dir, "/tmp/drq-analyses-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    write_blob_dataset(dir, NIMG);
    char text[4096];
    drq_err err = {{0}};
    snprintf(text, sizeof text, SPEC, dir);
    CHECK_MSG(drq_spec_parse_text(text, &spec, &err) == 0, "spec: %s", err.msg);
    attack_engine_register();
    test_batch_and_resume();
    test_variance();
    test_gradcorr();
    test_screen();
    drq_spec_free(&spec);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return CHECK_DONE();
}
