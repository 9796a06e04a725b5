/* test_engine.c — the purification engine end to end on the committed
 * fixture models (wrn_small + unet_small, 1×16×16) and a synthetic IDX
 * dataset written to a temp dir:
 *   - batch invariance: batch 1 and batch 7 give identical rows;
 *   - determinism: two runs give bit-identical rows;
 *   - EOT with K = 1 equals fresh;
 *   - BPDA's gradient equals the classifier's gradient at P(x);
 *   - a run checkpointed mid-attack and resumed gives the uninterrupted rows;
 *   - the metrics hold their definitions (δ within eps, distances, SSIM ≤ 1).
 * Rows are compared on every metric but seconds (wall time).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/spec.h"
#include "worker/eval/attack.h"
#include "worker/eval/engine.h"
#include "blob_dataset.h"
#include "check.h"
#include "job_capture.h"

static char dir[64];

/* 7 images of 16×16: smooth blobs whose class is the blob position. */
static void write_dataset(void) { write_blob_dataset(dir, 7); }

static const char *SPEC =
    "{\"name\":\"t\",\"dataset\":{\"kind\":\"mnist\",\"path\":\"%s\",\"start\":0,\"count\":7},"
    "\"classifier\":{\"arch\":\"wrn\",\"config\":\"tests/fixtures/wrn_small.json\","
    "\"weights\":\"tests/fixtures/wrn_small.weights.safetensors\"},"
    "\"diffusion\":{\"arch\":\"ddpm-unet\",\"config\":\"tests/fixtures/unet_small.json\","
    "\"weights\":\"tests/fixtures/unet_small.weights.safetensors\"},"
    "\"purifiers\":[{\"name\":\"ddpm\",\"kind\":\"ddpm\",\"t_star\":4},{\"name\":\"ddim\",\"kind\":\"ddim\",\"t_star\":6,\"stride\":2},"
    "{\"name\":\"rev\",\"kind\":\"reverse\",\"t_star\":3}],"
    "\"attacks\":[{\"name\":\"pgd\",\"kind\":\"pgd\",\"eps\":0.1,\"steps\":3,\"n_uniform\":2},"
    "{\"name\":\"fresh\",\"kind\":\"pgd\",\"eps\":0.1,\"steps\":3,\"randomness\":\"fresh\",\"votes\":3},"
    "{\"name\":\"eot1\",\"kind\":\"pgd\",\"eps\":0.1,\"steps\":3,\"randomness\":\"eot\",\"eot_k\":1,\"votes\":3},"
    "{\"name\":\"bpda\",\"kind\":\"bpda\",\"eps\":0.1,\"steps\":3},"
    "{\"name\":\"l2\",\"kind\":\"pgd\",\"norm\":\"l2\",\"eps\":0.5,\"steps\":2},"
    "{\"name\":\"tr\",\"kind\":\"pgd\",\"eps\":0.1,\"steps\":3,\"randomness\":\"transfer\",\"transfer_seed\":3}],"
    "\"seeds\":[3,4],\"shard\":{\"images\":7}}";

static drq_spec spec;

static int64_t g_seed = 3; /* the job seed of run() */

static drq_row *run(int purifier, int attack, int batch, int every, capture *cap, const capture *resume,
                    int64_t *n) {
    drq_job job = {.id = 1, .sweep = 1, .spec = &spec, .purifier = purifier, .attack = attack, .seed = g_seed,
                   .image_start = 0, .image_count = 7, .device = "cpu", .worker = "t"};
    job_ctx ctx = {0};
    ctx.user = cap;
    ctx.checkpoint = on_checkpoint;
    ctx.checkpoint_every = every;
    if (resume) ctx.resume = resume->blob, ctx.resume_len = resume->len;
    drq_row *rows = NULL;
    drq_err err = {{0}};
    engine_set_batch(batch);
    job_status st = job_run(&job, &ctx, &rows, n, &err);
    CHECK_MSG(st == JOB_DONE, "job_run: status %d: %s", (int)st, err.msg);
    if (resume) CHECK_MSG(ctx.resumed, "the checkpoint was not used");
    return st == JOB_DONE ? rows : NULL;
}

/* Rows equal on every metric but seconds (and the attack name when asked). */
static int rows_equal(const drq_row *a, const drq_row *b, int64_t n, int same_attack, const char *what) {
    for (int64_t i = 0; i < n; i++) {
        drq_row x = a[i], y = b[i];
        x.seconds = y.seconds = 0;
        x.extra = y.extra = NULL;
        if (!same_attack) memcpy(x.attack, y.attack, sizeof x.attack);
        if (memcmp(&x, &y, sizeof x)) {
            fprintf(stderr, "%s: row %lld differs (robust %d/%d, adv_pred %d/%d, delta_l2 %.9g/%.9g, comp %.9g/%.9g)\n",
                    what, (long long)i, x.robust, y.robust, x.adv_pred, y.adv_pred, x.delta_l2, y.delta_l2,
                    x.comp_adv, y.comp_adv);
            return 0;
        }
    }
    return 1;
}

static void test_rows(void) {
    int64_t n1, n7, nb, ne, nf;
    for (int p = 0; p < 3; p++) {
        drq_row *r1 = run(p, 0, 1, 0, NULL, NULL, &n1), *r7 = run(p, 0, 7, 0, NULL, NULL, &n7);
        drq_row *rb = p == 0 ? run(p, 0, 7, 0, NULL, NULL, &nb) : NULL;
        if (!r1 || !r7) return;
        CHECK_EQ_INT(n1, 7);
        CHECK_MSG(rows_equal(r1, r7, 7, 1, "batch 1 vs 7"), "purifier %d: batch 1 and batch 7 rows differ", p);
        if (rb) CHECK_MSG(rows_equal(r7, rb, 7, 1, "run twice"), "purifier %d: two runs differ", p);
        for (int i = 0; i < 7; i++) {
            const drq_row *r = &r7[i];
            CHECK_LE(r->delta_linf, 0.1 + 1e-6, "pgd linf: ‖δ‖∞ ≤ eps");
            CHECK_CMP_DBL(r->dist_init_l2, ==, r->delta_l2);
            CHECK_MSG(r->ssim_adv <= 1.0 + 1e-9 && r->ssim_pur <= 1.0 + 1e-9, "ssim_adv %.17g, ssim_pur %.17g (want <= 1)",
                      r->ssim_adv, r->ssim_pur);
            CHECK_MSG(r->success_step >= -1 && r->success_step < 3, "success_step %d, want in [-1, 3)", (int)r->success_step);
            CHECK_MSG(r->comp_adv > 0 && r->comp_unif_mean > 0 && r->comp_unif_std >= 0,
                      "comp_adv %g, comp_unif_mean %g (want > 0), comp_unif_std %g (want >= 0)", (double)r->comp_adv,
                      (double)r->comp_unif_mean, (double)r->comp_unif_std);
            CHECK_EQ_INT(r->label, i % 10);
            CHECK_MSG(r->robust == (r->adv_pred == r->label) && r->clean_correct == (r->clean_pred == r->label),
                      "robust %d, adv_pred %d, clean_correct %d, clean_pred %d, label %d", (int)r->robust,
                      (int)r->adv_pred, (int)r->clean_correct, (int)r->clean_pred, (int)r->label);
            if (p == 2) CHECK_LE(fabs(r->dist_max_l2 - r->delta_l2), 1e-6, "reverse-only: max distance = init");
        }
        /* cost: 3 PGD steps × (forward + backward) + 2 predictions + 2 fixed-ω + 2 uniform purifications */
        int steps = p == 1 ? 3 : p == 0 ? 4 : 3;
        CHECK_EQ_INT(r7[0].unet_evals, (long)steps * (3 * 2 + 2 + 2 + 2));
        drq_rows_free(r1, n1), drq_rows_free(r7, n7);
        if (rb) drq_rows_free(rb, nb);
    }
    drq_row *re = run(0, 2, 4, 0, NULL, NULL, &ne), *rf = run(0, 1, 4, 0, NULL, NULL, &nf);
    if (re && rf) CHECK_MSG(rows_equal(re, rf, 7, 0, "eot K=1 vs fresh"), "EOT with K=1 differs from fresh");
    drq_rows_free(re, ne), drq_rows_free(rf, nf);
    drq_row *rl = run(0, 4, 4, 0, NULL, NULL, &ne);
    for (int i = 0; rl && i < 7; i++) CHECK_LE(rl[i].delta_l2, 0.5 + 1e-5, "pgd l2: ‖δ‖₂ ≤ eps");
    drq_rows_free(rl, ne);

    /* transfer 3 → 4: the examples crafted under ω_3 (those of the fixed attack
     * at seed 3), evaluated under ω_4 */
    int64_t nx, nt;
    drq_row *fx = run(1, 0, 7, 0, NULL, NULL, &nx);
    g_seed = 4;
    drq_row *tr = run(1, 5, 7, 0, NULL, NULL, &nt);
    g_seed = 3;
    for (int i = 0; fx && tr && i < 7; i++) {
        CHECK_EQ_INT(tr[i].seed, 4);
        CHECK_MSG(tr[i].delta_l2 == fx[i].delta_l2 && tr[i].success_step == fx[i].success_step &&
                      tr[i].comp_adv == fx[i].comp_adv,
                  "transfer image %d: the examples differ from the source seed's (‖δ‖ %.9g vs %.9g)", i,
                  tr[i].delta_l2, fx[i].delta_l2);
    }
    drq_rows_free(fx, nx), drq_rows_free(tr, nt);
}

static void test_resume(void) {
    int64_t na, nb;
    capture cap = {.keep = 2}; /* the second checkpoint: mid-attack, after the first batch */
    drq_row *full = run(0, 3, 4, 1, &cap, NULL, &na); /* checkpoints after every PGD step */
    CHECK_MSG(cap.count >= 4 && cap.blob, "expected periodic checkpoints, got %d", cap.count);
    if (!full || !cap.blob) return;
    drq_row *resumed = run(0, 3, 4, 0, NULL, &cap, &nb);
    if (resumed) {
        CHECK_EQ_INT(nb, na);
        CHECK_MSG(rows_equal(full, resumed, na, 1, "resume"), "resumed rows differ from the uninterrupted run");
    }
    /* a corrupted checkpoint is ignored (the job starts over), never trusted */
    ((char *)cap.blob)[0] ^= 1;
    job_ctx ctx = {0};
    ctx.resume = cap.blob, ctx.resume_len = cap.len;
    drq_job job = {.id = 1, .sweep = 1, .spec = &spec, .purifier = 0, .attack = 3, .seed = 3, .image_start = 0,
                   .image_count = 7, .device = "cpu", .worker = "t"};
    drq_row *rows = NULL;
    drq_err err;
    CHECK_EQ_INT(job_run(&job, &ctx, &rows, &nb, &err), JOB_DONE);
    CHECK_EQ_INT(ctx.resumed, 0);
    if (rows) CHECK(rows_equal(full, rows, na, 1, "restart after a bad checkpoint"));
    drq_rows_free(rows, nb), drq_rows_free(full, na), drq_rows_free(resumed, nb);
    free(cap.blob);
}

/* BPDA: the attack gradient is the classifier's input gradient at P(x). */
static void test_bpda_gradient(void) {
    engine_models em;
    drq_err err;
    if (engine_models_get(&spec, 1, &em, &err)) { CHECK_MSG(0, "%s", err.msg); return; }
    purify_config pc = engine_purify_config(&spec.purifiers[0]);
    purifier *p = purifier_new(em.diff, &pc);
    attack_models am = {em.clf, p, em.classes, NULL};
    attack_config ac = {.eps = 0.1, .steps = 1, .seed = 5, .bpda = 1};
    Tensor x = tensor_new(2, 1, 16, 16), g = tensor_new(2, 1, 16, 16), px = tensor_new(2, 1, 16, 16);
    Tensor lg = tensor_new(2, 10, 1, 1), gl = tensor_new(2, 10, 1, 1), gref = tensor_new(2, 1, 16, 16);
    for (size_t i = 0; i < tensor_numel(&x); i++) x.data[i] = (float)((i * 37) % 100) / 100.0f;
    int label[2] = {1, 7};
    int64_t image[2] = {0, 1};
    uint64_t om[2] = {5, 5};
    attack_gradient(&ac, &am, &x, label, image, 5, &g, NULL);
    purifier_forward(p, &x, om, image, 0, &px, NULL);
    classifier_forward(em.clf, &px, &lg);
    for (int i = 0; i < 2; i++) {
        double z = 0;
        for (int k = 0; k < 10; k++) z += exp(lg.data[i * 10 + k]);
        for (int k = 0; k < 10; k++) gl.data[i * 10 + k] = (float)(exp(lg.data[i * 10 + k]) / z) - (k == label[i]);
    }
    classifier_backward(em.clf, &gl, &gref);
    CHECK_LE(rel_l2(g.data, gref.data, tensor_numel(&g)), 1e-6, "bpda gradient vs classifier gradient at P(x)");
    tensor_free(&x), tensor_free(&g), tensor_free(&px), tensor_free(&lg), tensor_free(&gl), tensor_free(&gref);
    attack_models_release(&am);
    purifier_free(p);
}

int main(void) {
    drq_set_threads(2);
    snprintf(dir, sizeof dir, "/tmp/drq-engine-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    write_dataset();
    char text[4096];
    drq_err err = {{0}};
    snprintf(text, sizeof text, SPEC, dir);
    CHECK_MSG(drq_spec_parse_text(text, &spec, &err) == 0, "spec: %s", err.msg);
    attack_engine_register();
    test_rows();
    test_resume();
    test_bpda_gradient();
    drq_spec_free(&spec);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return CHECK_DONE();
}
