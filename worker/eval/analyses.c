/* analyses.c — see analyses.h.  The three kinds share one runner (batches,
 * rows, checkpoints) and differ in the function that measures one batch. */
#include "worker/eval/analyses.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/dataset.h"
#include "common/rng.h"
#include "kernels/ops.h"
#include "worker/eval/analysis.h"
#include "worker/eval/attack.h"
#include "worker/eval/compress.h"
#include "worker/eval/engine.h"
#include "worker/eval/metrics.h"

/* One batch of a job: its images and where its rows go (identity, label,
 * device and worker already filled in; the kind adds the rest). */
typedef struct {
    const drq_attack_spec *as;
    uint64_t seed;
    attack_models *am;
    const Tensor *x;
    const int *label;
    const int64_t *image;
    drq_row *out;
} batch;

/* A JSON number, or null for NaN / ±inf (JSON has neither). */
static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

/* The extra text of a row: o serialised (and released). */
static char *extra_text(json_t *o) {
    char *t = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(o);
    return t;
}

/* ---- variance ------------------------------------------------------------ */

/* P_jk = P_{ω_k}(x + δ_j) for every image of the batch, δ_j from stream
 * 4000 + j under the job seed, ω_k = drq_derived_seed(seed, 4, k, 0)
 * (docs/seeds.md); then analysis_variance per image.  1 when stopped. */
static int measure_variance(batch *b) {
    const drq_attack_spec *as = b->as;
    const Tensor *x = b->x;
    int n = x->n, nd = as->n_delta, nw = as->n_omega, stopped = 0;
    size_t per = tensor_numel(x) / n;
    float amp = compress_amplitude(as->norm == NORM_L2, as->eps, per);
    float *P = xmalloc(sizeof(float) * (size_t)n * nd * nw * per), *D = xmalloc(sizeof(float) * (size_t)n * nd * per);
    Tensor xu = tensor_new(n, x->c, x->h, x->w), pu = tensor_new(n, x->c, x->h, x->w);
    uint64_t *om = xmalloc(sizeof(uint64_t) * n);
    for (int j = 0; j < nd && !stopped; j++) {
        for (int i = 0; i < n; i++) {
            const float *xi = x->data + i * per;
            float *xj = xu.data + i * per, *dj = D + ((size_t)i * nd + j) * per;
            compress_draw(drq_key(b->seed, (uint64_t)b->image[i], drq_stream_variance_delta((unsigned)j)), xi, per, amp,
                          xj);
            for (size_t e = 0; e < per; e++) dj[e] = xj[e] - xi[e];
        }
        for (int k = 0; k < nw; k++) {
            uint64_t w = drq_derived_seed(b->seed, DRQ_PURPOSE_VARIANCE, (uint64_t)k, 0);
            for (int i = 0; i < n; i++) om[i] = w;
            purifier_forward(b->am->pur, &xu, om, b->image, 0, &pu, NULL);
            if ((stopped = purifier_stopped(b->am->pur))) break;
            for (int i = 0; i < n; i++)
                memcpy(P + (((size_t)i * nd + j) * nw + k) * per, pu.data + i * per, sizeof(float) * per);
        }
    }
    for (int i = 0; i < n && !stopped; i++) {
        variance_stats v;
        analysis_variance(P + (size_t)i * nd * nw * per, D + (size_t)i * nd * per, x->data + i * per, nd, nw, per, &v);
        json_t *o = json_object();
        json_object_set_new(o, "analysis", json_string("variance"));
        json_object_set_new(o, "n_delta", json_integer(nd));
        json_object_set_new(o, "n_omega", json_integer(nw));
        json_object_set_new(o, "var_total", num(v.var_total));
        json_object_set_new(o, "var_input", num(v.var_input));
        json_object_set_new(o, "var_internal", num(v.var_internal));
        json_object_set_new(o, "snr", num(v.snr));
        json_object_set_new(o, "radius_init", num(v.radius_init));
        json_object_set_new(o, "radius_fixed_omega", num(v.radius_fixed_omega));
        json_object_set_new(o, "radius_fixed_delta", num(v.radius_fixed_delta));
        json_object_set_new(o, "radius_both", num(v.radius_both));
        json_object_set_new(o, "cos_same_omega", num(v.cos_same_omega));
        json_object_set_new(o, "cos_same_delta", num(v.cos_same_delta));
        b->out[i].extra = extra_text(o);
    }
    free(P), free(D), free(om);
    tensor_free(&xu), tensor_free(&pu);
    return stopped;
}

/* ---- gradcorr ------------------------------------------------------------ */

/* The ω of a single-draw estimator (docs/seeds.md, purpose 5 for the new ones). */
static uint64_t estimator_omega(uint64_t seed, drq_estimator e) {
    if (e == EST_FIXED_OTHER) return drq_derived_seed(seed, DRQ_PURPOSE_GRADCORR, 1, 0);
    if (e == EST_FRESH) return drq_derived_seed(seed, DRQ_PURPOSE_GRADCORR, 2, 0);
    return seed; /* fixed, bpda */
}

/* g = the estimator's gradient of CE(clf(P(x)), label) w.r.t. x for the
 * batch; pred (may be NULL) the predictions at P_{ω_s}(x) for fixed and
 * bpda.  1 when stopped. */
static int estimator_gradient(batch *b, drq_estimator e, Tensor *g, int *pred) {
    attack_config ac = {.seed = b->seed, .bpda = e == EST_BPDA};
    if (e != EST_EOT) return attack_gradient(&ac, b->am, b->x, b->label, b->image, estimator_omega(b->seed, e), g, pred);
    const Tensor *x = b->x;
    Tensor gk = tensor_new(x->n, x->c, x->h, x->w);
    memset(g->data, 0, tensor_numel(g) * sizeof(float));
    int stopped = 0;
    for (int k = 0; k < b->as->eot_k && !stopped; k++) {
        uint64_t w = drq_derived_seed(b->seed, DRQ_PURPOSE_GRADCORR, 3, (uint64_t)k);
        if (!(stopped = attack_gradient(&ac, b->am, x, b->label, b->image, w, &gk, NULL)))
            tensor_axpy(1.0f / (float)b->as->eot_k, &gk, g);
    }
    tensor_free(&gk);
    return stopped;
}

/* Every estimator's gradient, then the cosine of every pair (a before b in
 * the spec's list) per image.  1 when stopped. */
static int measure_gradcorr(batch *b) {
    const drq_attack_spec *as = b->as;
    const Tensor *x = b->x;
    int n = x->n, ne = as->nestimators, stopped = 0, have_pred = 0;
    size_t per = tensor_numel(x) / n;
    Tensor *g = xcalloc((size_t)ne, sizeof(Tensor));
    int *pred = xmalloc(sizeof(int) * n);
    for (int e = 0; e < ne && !stopped; e++) {
        g[e] = tensor_new(n, x->c, x->h, x->w);
        int fixed_omega = as->estimators[e] == EST_FIXED || as->estimators[e] == EST_BPDA;
        stopped = estimator_gradient(b, as->estimators[e], &g[e], fixed_omega ? pred : NULL);
        have_pred |= fixed_omega;
    }
    for (int i = 0; i < n && !stopped; i++) {
        drq_row *r = &b->out[i];
        if (have_pred) {
            r->clean_pred = pred[i];
            r->clean_correct = pred[i] == r->label;
        }
        json_t *o = json_object(), *pairs = json_array();
        json_object_set_new(o, "analysis", json_string("gradcorr"));
        json_object_set_new(o, "at", json_string("clean"));
        json_object_set_new(o, "eot_k", json_integer(as->eot_k));
        for (int a = 0; a < ne; a++)
            for (int c = a + 1; c < ne; c++) {
                json_t *p = json_object();
                json_object_set_new(p, "est_a", json_string(drq_estimator_name(as->estimators[a])));
                json_object_set_new(p, "est_b", json_string(drq_estimator_name(as->estimators[c])));
                json_object_set_new(p, "cosine",
                                    num(analysis_cosine(g[a].data + i * per, g[c].data + i * per, per)));
                json_array_append_new(pairs, p);
            }
        json_object_set_new(o, "pairs", pairs);
        r->extra = extra_text(o);
    }
    for (int e = 0; e < ne; e++) tensor_free(&g[e]);
    free(g), free(pred);
    return stopped;
}

/* ---- screen -------------------------------------------------------------- */

/* Clean prediction at P_{ω_s}(x) and the uniform-δ compression rate over
 * n_uniform draws (worker/eval/compress.c, the comp_unif of attack rows).
 * 1 when stopped. */
static int measure_screen(batch *b) {
    const drq_attack_spec *as = b->as;
    const Tensor *x = b->x;
    int n = x->n, nu = as->n_uniform, stopped = 1;
    attack_config ac = {.mode = OMEGA_FIXED, .seed = b->seed};
    Tensor p0 = tensor_new(n, x->c, x->h, x->w);
    uint64_t *om = xmalloc(sizeof(uint64_t) * n);
    int *pred = xmalloc(sizeof(int) * n);
    double *cu = xmalloc(sizeof(double) * (size_t)n * nu);
    for (int i = 0; i < n; i++) om[i] = b->seed;
    if (attack_evaluate(&ac, b->am, x, b->image, pred)) goto done;
    purifier_forward(b->am->pur, x, om, b->image, 0, &p0, NULL);
    if (purifier_stopped(b->am->pur)) goto done;
    if (compress_uniform(b->am->pur, x, b->image, b->seed, as->norm == NORM_L2, as->eps, nu, &p0, cu)) goto done;
    stopped = 0;
    for (int i = 0; i < n; i++) {
        drq_row *r = &b->out[i];
        r->clean_pred = pred[i];
        r->clean_correct = pred[i] == r->label;
        metrics_mean_std(cu + (size_t)i * nu, nu, &r->comp_unif_mean, &r->comp_unif_std);
        json_t *o = json_object();
        json_object_set_new(o, "analysis", json_string("screen"));
        json_object_set_new(o, "n_uniform", json_integer(nu));
        r->extra = extra_text(o);
    }
done:
    free(om), free(pred), free(cu);
    tensor_free(&p0);
    return stopped;
}

/* ---- checkpoints: "DRQK" | u32 version 1 | i64 job, seed, image_start,
 * image_count, done | u64 rows_len | packed rows of the first `done` images */

static void save_checkpoint(job_ctx *ctx, const drq_job *job, const drq_row *rows, int64_t done) {
    size_t rl = 0;
    void *packed = drq_rows_pack(rows, done, &rl);
    int64_t hdr[5] = {job->id, job->seed, job->image_start, job->image_count, done};
    uint32_t ver = 1;
    uint64_t rl64 = rl;
    size_t len = 4 + 4 + sizeof hdr + 8 + rl;
    char *blob = xmalloc(len);
    memcpy(blob, "DRQK", 4);
    memcpy(blob + 4, &ver, 4);
    memcpy(blob + 8, hdr, sizeof hdr);
    memcpy(blob + 8 + sizeof hdr, &rl64, 8);
    memcpy(blob + 16 + sizeof hdr, packed, rl);
    ctx->checkpoint(ctx, done, blob, len);
    free(blob), free(packed);
}

/* The rows of a checkpoint of this job (*rows, *done); -1 when it is not one
 * (then the job starts over). */
static int load_checkpoint(const job_ctx *ctx, const drq_job *job, drq_row **rows, int64_t *done) {
    const char *p = ctx->resume;
    int64_t hdr[5];
    uint32_t ver;
    uint64_t rl;
    drq_err err;
    size_t head = 8 + sizeof hdr + 8;
    if (ctx->resume_len < head || memcmp(p, "DRQK", 4)) return -1;
    memcpy(&ver, p + 4, 4), memcpy(hdr, p + 8, sizeof hdr), memcpy(&rl, p + 8 + sizeof hdr, 8);
    if (ver != 1 || hdr[0] != job->id || hdr[1] != job->seed || hdr[2] != job->image_start ||
        hdr[3] != job->image_count || hdr[4] < 0 || hdr[4] > job->image_count || rl != ctx->resume_len - head)
        return -1;
    int64_t n = 0;
    if (drq_rows_unpack(p + head, rl, hdr[4], rows, &n, &err)) return -1;
    *done = n;
    return 0;
}

/* ---- the runner ------------------------------------------------------------ */

static int stop_requested(const job_ctx *ctx) {
    return (ctx->cancel && atomic_load(ctx->cancel)) || (ctx->preempt && atomic_load(ctx->preempt));
}

job_status analyses_run(const drq_job *job, job_ctx *ctx, drq_row **rows, int64_t *nrows, drq_err *err) {
    const drq_spec *s = job->spec;
    const drq_attack_spec *as = &s->attacks[job->attack];
    int (*measure)(batch *) = as->kind == ATK_VARIANCE ? measure_variance
                            : as->kind == ATK_GRADCORR ? measure_gradcorr : measure_screen;
    engine_models em;
    drq_dataset ds = {0};
    drq_err e2;
    ctx->retryable = 0;
    if (s->dataset.kind == DS_NONE) {
        drq_errf(err, "analysis '%s' (%s) needs a dataset; dataset.kind is none", as->name,
                 drq_attack_kind_name(as->kind));
        return JOB_FAILED;
    }
    if (engine_models_get(s, as->kind != ATK_VARIANCE, &em, err)) return JOB_FAILED;
    if (dataset_load(drq_dataset_kind_name(s->dataset.kind), s->dataset.path, "test", (long)job->image_start,
                     (long)job->image_count, &ds, &e2)) {
        drq_errf(err, "dataset: %s", e2.msg);
        return JOB_FAILED;
    }
    purify_config pc = engine_purify_config(&s->purifiers[job->purifier]);
    purifier *pur = purifier_new(em.diff, &pc);
    purifier_set_stop(pur, ctx->cancel, ctx->preempt);
    attack_models am = {em.clf, pur, em.classes, NULL};
    size_t per = (size_t)ds.c * ds.h * ds.w;
    drq_row *out = xcalloc((size_t)job->image_count + 1, sizeof(drq_row));
    int64_t done = 0;
    drq_row *kept = NULL;
    if (ctx->resume && load_checkpoint(ctx, job, &kept, &done) == 0) {
        memcpy(out, kept, sizeof(drq_row) * done); /* takes over the rows' extra strings */
        ctx->resumed = 1;
    }
    free(kept);
    job_status status = JOB_DONE;
    while (done < job->image_count) {
        if (stop_requested(ctx)) {
            status = JOB_PREEMPTED;
            break;
        }
        int64_t left = job->image_count - done;
        int n = left < engine_batch() ? (int)left : engine_batch();
        Tensor x = tensor_wrap(ds.x + (size_t)done * per, n, ds.c, ds.h, ds.w);
        int *label = xmalloc(sizeof(int) * n);
        int64_t *image = xmalloc(sizeof(int64_t) * n);
        for (int i = 0; i < n; i++) {
            drq_row *r = &out[done + i];
            label[i] = ds.y[done + i], image[i] = job->image_start + done + i;
            drq_row_init(r);
            r->sweep = job->sweep;
            snprintf(r->purifier, sizeof r->purifier, "%s", s->purifiers[job->purifier].name);
            snprintf(r->attack, sizeof r->attack, "%s", as->name);
            r->seed = job->seed;
            r->image = image[i];
            r->label = label[i];
            snprintf(r->device, sizeof r->device, "%s", job->device ? job->device : "cpu");
            snprintf(r->worker, sizeof r->worker, "%s", job->worker ? job->worker : "");
        }
        batch b = {as, (uint64_t)job->seed, &am, &x, label, image, out + done};
        double t0 = drq_clock_mono();
        long evals0 = purifier_unet_evals(pur);
        int stopped = measure(&b);
        double secs = (drq_clock_mono() - t0) / n;
        long evals = (purifier_unet_evals(pur) - evals0) / n;
        for (int i = 0; i < n; i++) out[done + i].seconds = secs, out[done + i].unet_evals = evals;
        free(label), free(image);
        if (stopped) { /* the batch's partial work is dropped; its rows hold no extra yet */
            status = JOB_PREEMPTED;
            break;
        }
        done += n;
        if (ctx->progress) ctx->progress(ctx, done, job->image_count);
        if (ctx->checkpoint_every > 0 && ctx->checkpoint && done < job->image_count)
            save_checkpoint(ctx, job, out, done);
    }
    if (status != JOB_DONE && ctx->cancel && atomic_load(ctx->cancel)) status = JOB_CANCELLED;
    else if (status != JOB_DONE && ctx->checkpoint) save_checkpoint(ctx, job, out, done);
    attack_models_release(&am);
    purifier_free(pur);
    dataset_free(&ds);
    if (status != JOB_DONE) {
        drq_rows_free(out, job->image_count);
        return status;
    }
    *rows = out;
    *nrows = done;
    return JOB_DONE;
}

void analyses_register(void) {
    job_register_runner(ATK_VARIANCE, analyses_run);
    job_register_runner(ATK_GRADCORR, analyses_run);
    job_register_runner(ATK_SCREEN, analyses_run);
}
