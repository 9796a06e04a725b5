/* engine.c — see engine.h. */
#include "worker/eval/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/dataset.h"
#include "common/images.h"
#include "common/rng.h"
#include "kernels/device.h"
#include "worker/eval/analyses.h"
#include "worker/eval/attack.h"
#include "worker/eval/compress.h"
#include "worker/eval/metrics.h"

static int g_batch = 8;
void engine_set_batch(int batch) { g_batch = batch > 0 ? batch : 1; }
int engine_batch(void) { return g_batch; }
static size_t g_mem_budget; /* bytes; 0: no checkpointing inside the ADM UNet */
int engine_set_mem_budget(const char *mib, drq_err *err) {
    char *end;
    long v = strtol(mib, &end, 10);
    if (!*mib || *end || v < 0 || v > 1L << 30)
        return drq_errf(err, "--mem-budget: expected mebibytes, an integer in [0, 2^30] (0: no limit), got '%s'", mib);
    g_mem_budget = (size_t)v << 20;
    return 0;
}

static drq_device_sel g_dev; /* cpu unless engine_set_device */

int engine_set_device(const char *device, drq_err *err) { return drq_device_parse(device, &g_dev, err); }

/* Binds the calling thread to the engine's device (CUDA's current device is
 * per thread) and applies the spec's precision. */
static void bind_device(const drq_spec *s) {
    drq_err err;
    if (g_dev.kind == DRQ_CPU) return;
    if (drq_device_bind(&g_dev, &err)) DIE("%s", err.msg);
    drq_device_set_precision(drq_precision_name(s->precision));
}

/* =====================================================================
 * models, cached per thread
 * ===================================================================== */
typedef struct {
    char *key; /* arch|config|weights */
    void *model;
    st_file w; /* the model points into these tensors */
} cached;

static _Thread_local cached t_clf, t_diff;

/* The --config argument of a spec model: a preset / path string as given,
 * or an inline object serialised. */
static char *config_arg(const drq_model_spec *ms) {
    if (!ms->config) /* the arch's preset */
        return xstrdup(!strcmp(ms->arch, "resnet50") ? "imagenet" : !strcmp(ms->arch, "guided-unet") ? "imagenet256" : "cifar10");
    if (json_is_string(ms->config)) return xstrdup(json_string_value(ms->config));
    return json_dumps(ms->config, JSON_COMPACT | JSON_SORT_KEYS);
}

static char *model_key(const drq_model_spec *ms, const char *cfg) {
    size_t n = strlen(ms->arch) + strlen(cfg) + strlen(ms->weights) + 32;
    char *k = xmalloc(n);
    snprintf(k, n, "%s|%s|%s|%d.%d|%s", ms->arch, cfg, ms->weights, (int)g_dev.kind, g_dev.ordinal,
             ms->bf16 ? "bf16" : "fp32");
    return k;
}

/* Frees a cached model (a classifier, or a DDPM / ADM UNet by its key). */
static void cached_release(cached *c, int unet_wanted) {
    if (c->model) {
        if (!unet_wanted) classifier_free(c->model);
        else if (!strncmp(c->key, "guided-unet|", 12)) guided_unet_free(c->model);
        else unet_free(c->model);
    }
    st_free(&c->w);
    free(c->key);
    c->key = NULL, c->model = NULL;
}

/* This thread's cached models, freed when it ends (job_thread_exit). */
static void engine_thread_exit(void) {
    cached_release(&t_clf, 0);
    cached_release(&t_diff, 1);
}

/* Loads (or reuses) one model; what = "classifier" / "diffusion". */
static int load_model(const drq_model_spec *ms, const char *what, int unet_wanted, cached *c, drq_err *err) {
    char *cfg = config_arg(ms), *key = model_key(ms, cfg);
    if (c->key && !strcmp(c->key, key)) {
        free(cfg), free(key);
        return 0;
    }
    cached_release(c, unet_wanted);
    int rc = -1, adm = unet_wanted && !strcmp(ms->arch, "guided-unet");
    st_file w = {0};
    drq_err e2;
    if (unet_wanted ? strcmp(ms->arch, "ddpm-unet") != 0 && !adm : !classifier_arch_known(ms->arch)) {
        drq_errf(err, "%s.arch: '%s' is not built in this version (expected %s)", what, ms->arch,
                 unet_wanted ? "ddpm-unet or guided-unet" : "wrn or resnet50");
    } else if (ms->bf16 && !adm) { /* the spec parser refuses this too */
        drq_errf(err, "%s.precision: \"bf16\" is built for arch \"guided-unet\" only", what);
    } else if (st_load(ms->weights, &w, &e2)) {
        drq_errf(err, "%s.weights: %s", what, e2.msg);
    } else if (adm) { /* the ADM UNet (guided-diffusion) */
        guided_unet_config gc;
        if (guided_unet_config_parse(cfg, &gc, &e2)) drq_errf(err, "%s.config: %s", what, e2.msg);
        else if ((gc.bf16 = ms->bf16), !(c->model = guided_unet_load(&gc, &w, 0, g_dev.kind, &e2)))
            drq_errf(err, "%s: %s", what, e2.msg);
        else rc = 0;
    } else if (unet_wanted) {
        unet_config uc;
        if (unet_config_parse(cfg, &uc, &e2)) drq_errf(err, "%s.config: %s", what, e2.msg);
        else if (!(c->model = unet_load_on(&uc, &w, 0, g_dev.kind, &e2))) drq_errf(err, "%s: %s", what, e2.msg);
        else rc = 0;
    } else if (!(c->model = classifier_load(ms->arch, cfg, &w, 0, g_dev.kind, &e2))) {
        drq_errf(err, "%s: %s", what, e2.msg);
    } else {
        rc = 0;
    }
    if (rc == 0) {
        c->key = key;
        c->w = w;
    } else {
        st_free(&w);
        free(key);
    }
    free(cfg);
    return rc;
}

int engine_models_get(const drq_spec *s, int need_classifier, engine_models *m, drq_err *err) {
    memset(m, 0, sizeof *m);
    bind_device(s);
    if (need_classifier) {
        if (!s->classifier.present) return drq_errf(err, "classifier: required for attack jobs");
        if (load_model(&s->classifier, "classifier", 0, &t_clf, err)) return -1;
        m->clf = t_clf.model;
        m->classes = classifier_num_classes(m->clf);
    }
    int needs_unet = 0;
    for (int i = 0; i < s->npurifiers; i++) needs_unet |= s->purifiers[i].kind != PUR_NONE;
    if (needs_unet) {
        if (!s->diffusion.present) return drq_errf(err, "diffusion: required by the diffusion purifiers");
        if (load_model(&s->diffusion, "diffusion", 1, &t_diff, err)) return -1;
        if (!strcmp(s->diffusion.arch, "guided-unet")) m->adm = t_diff.model;
        else m->diff = t_diff.model;
        if (m->adm) guided_unet_set_mem_budget(m->adm, g_mem_budget);
    }
    return 0;
}

purifier *engine_purifier_new(const engine_models *m, const purify_config *c) {
    return m->adm ? purifier_new_adm(m->adm, c) : purifier_new(m->diff, c);
}

purify_config engine_purify_config(const drq_purifier_spec *p) {
    purify_config c = {0};
    c.kind = p->kind == PUR_DDPM ? PURIFY_DDPM : p->kind == PUR_REVERSE ? PURIFY_REVERSE
           : p->kind == PUR_DDIM ? PURIFY_DDIM : PURIFY_NONE;
    c.t_star = p->t_star;
    c.var_small = p->var == VAR_FIXEDSMALL;
    c.stride = p->stride;
    c.no_forward = p->kind == PUR_DDIM && !p->forward;
    c.clamp_x0 = p->clamp_x0;
    c.clamp_out = p->clamp_out;
    return c;
}

/* =====================================================================
 * checkpoints: "DRQA" v2 | next_image i64 | step i32 | n i32 | per i32 |
 * evals i64 | secs f64 | xadv f32[n·per] | success i32[n] | rows_len u64 |
 * packed rows of the images before next_image | images_len u64 | their
 * packed images (common/images.h).  v1 (before "save") ends after the rows.
 * ===================================================================== */
typedef struct {
    int64_t next_image;
    int64_t evals;  /* UNet evaluations already spent on the current batch */
    double secs;    /* seconds already spent on the current batch */
    attack_state st;
    drq_row *rows;
    int64_t nrows;
} resume_state;

static void put(char **p, const void *v, size_t n) {
    memcpy(*p, v, n);
    *p += n;
}

static void save_checkpoint(job_ctx *ctx, int64_t next_image, int64_t evals, double secs, const attack_state *st,
                            size_t per, const drq_row *rows, int64_t nrows) {
    size_t rl = 0, il = 0;
    void *packed = drq_rows_pack(rows, nrows, &rl), *images = drq_images_pack(rows, nrows, &il);
    int32_t step = st->step, n = st->n, pp = (int32_t)per;
    uint64_t rl64 = rl, il64 = il;
    size_t len = 4 + 4 + 8 + 4 * 3 + 16 + sizeof(float) * n * per + 4 * (size_t)n + 8 + rl + 8 + il;
    char *blob = xmalloc(len), *p = blob;
    uint32_t ver = 2;
    put(&p, "DRQA", 4), put(&p, &ver, 4), put(&p, &next_image, 8), put(&p, &step, 4), put(&p, &n, 4);
    put(&p, &pp, 4), put(&p, &evals, 8), put(&p, &secs, 8), put(&p, st->xadv.data, sizeof(float) * n * per);
    for (int i = 0; i < n; i++) {
        int32_t s = st->success_step[i];
        put(&p, &s, 4);
    }
    put(&p, &rl64, 8), put(&p, packed, rl);
    put(&p, &il64, 8), put(&p, images, il);
    ctx->checkpoint(ctx, (int64_t)next_image * 100000 + step, blob, len);
    free(blob), free(packed), free(images);
}

/* Parses a checkpoint for a batch of images of shape c×h×w; -1 when it does
 * not belong to this job (then the job starts over). */
static int load_checkpoint(const job_ctx *ctx, const drq_job *job, int c, int h, int w, resume_state *r) {
    const char *p = ctx->resume, *end = p + ctx->resume_len;
    int32_t step, n, per;
    uint32_t ver;
    uint64_t rl;
    drq_err err;
    memset(r, 0, sizeof *r);
    if (ctx->resume_len < 44 || memcmp(p, "DRQA", 4)) return -1;
    memcpy(&ver, p + 4, 4), memcpy(&r->next_image, p + 8, 8), memcpy(&step, p + 16, 4), memcpy(&n, p + 20, 4);
    memcpy(&per, p + 24, 4), memcpy(&r->evals, p + 28, 8), memcpy(&r->secs, p + 36, 8);
    p += 44;
    if ((ver != 1 && ver != 2) || per != c * h * w || n < 1 || n > 1 << 20 || step < 0 || r->evals < 0 ||
        !(r->secs >= 0) || r->next_image < job->image_start ||
        r->next_image + n > job->image_start + job->image_count)
        return -1;
    size_t need = sizeof(float) * (size_t)n * per + 4 * (size_t)n + 8;
    if ((size_t)(end - p) < need) return -1;
    r->st.n = n, r->st.step = step;
    r->st.xadv = tensor_new(n, c, h, w);
    memcpy(r->st.xadv.data, p, sizeof(float) * (size_t)n * per);
    p += sizeof(float) * (size_t)n * per;
    r->st.success_step = xmalloc(sizeof(int) * n);
    for (int i = 0; i < n; i++, p += 4) {
        int32_t s;
        memcpy(&s, p, 4);
        r->st.success_step[i] = s;
    }
    memcpy(&rl, p, 8);
    p += 8;
    uint64_t il = 0;
    const char *images = end;
    if (ver == 2) { /* the images section follows the rows */
        if ((uint64_t)(end - p) < rl + 8) goto bad;
        memcpy(&il, p + rl, 8);
        images = p + rl + 8;
    }
    if ((uint64_t)(end - p) != rl + (ver == 2 ? 8 + il : 0) ||
        drq_rows_unpack(p, rl, r->next_image - job->image_start, &r->rows, &r->nrows, &err))
        goto bad;
    if (drq_images_unpack(images, il, r->rows, r->nrows, &err)) {
        drq_rows_free(r->rows, r->nrows);
        r->rows = NULL;
        goto bad;
    }
    return 0;
bad:
    attack_state_free(&r->st);
    return -1;
}

/* =====================================================================
 * the runner
 * ===================================================================== */
static attack_config make_attack(const drq_attack_spec *a, int64_t seed) {
    attack_config c = {0};
    c.l2 = a->norm == NORM_L2;
    c.eps = a->eps;
    c.steps = a->steps;
    c.stepsize = a->abs_stepsize > 0 ? a->abs_stepsize : a->rel_stepsize * a->eps;
    c.random_start = a->random_start;
    c.mode = a->randomness == RND_FRESH ? OMEGA_FRESH : a->randomness == RND_EOT ? OMEGA_EOT
           : a->randomness == RND_TRANSFER ? OMEGA_TRANSFER : OMEGA_FIXED;
    c.eot_k = a->eot_k > 0 ? a->eot_k : 1;
    c.votes = a->votes > 0 ? a->votes : 1;
    c.seed = (uint64_t)seed;
    if (a->randomness == RND_TRANSFER) {
        /* the job's seed s′ evaluates examples crafted under ω_s, s = transfer_seed
         * (docs/spec.md); recomputing them here reproduces the source job's x_adv
         * exactly, so the job needs nothing from it */
        c.seed = (uint64_t)a->transfer_seed;
        c.transfer_seed = (uint64_t)seed;
    }
    c.bpda = a->kind == ATK_BPDA || a->grad == GRAD_BPDA;
    return c;
}

/* The ω of the final evaluation (attack_evaluate): ω_s (fixed), the job's
 * own seed (transfer), the first vote's draw (fresh, eot). */
static uint64_t eval_omega(const attack_config *ac) {
    if (ac->mode == OMEGA_FIXED) return ac->seed;
    if (ac->mode == OMEGA_TRANSFER) return ac->transfer_seed;
    return drq_derived_seed(ac->seed, DRQ_PURPOSE_FINAL, 0, 0);
}

/* The attack option "save": attaches to rows out[0..n) the images the spec
 * asks for -- x_adv, and P(x), P(x_adv) under the evaluation ω (pa, p0 are
 * those under ω_s, reused when the two are the same).  1 when a stop flag
 * ended it mid-way. */
static int keep_images(const attack_config *ac, attack_models *am, int save, const Tensor *x, const int64_t *image,
                       const attack_state *st, const Tensor *pa, const Tensor *p0, drq_row *out) {
    int n = x->n;
    size_t per = tensor_numel(x) / n;
    Tensor ea = {0}, e0 = {0};
    const Tensor *qa = pa, *q0 = p0;
    uint64_t w = eval_omega(ac);
    if ((save & DRQ_SAVE_PURIFIED) && w != ac->seed) {
        uint64_t *om = xmalloc(sizeof(uint64_t) * n);
        for (int i = 0; i < n; i++) om[i] = w;
        ea = tensor_new(n, x->c, x->h, x->w), e0 = tensor_new(n, x->c, x->h, x->w);
        purifier_forward(am->pur, &st->xadv, om, image, 0, &ea, NULL);
        if (!purifier_stopped(am->pur)) purifier_forward(am->pur, x, om, image, 0, &e0, NULL);
        free(om);
        qa = &ea, q0 = &e0;
    }
    int stopped = purifier_stopped(am->pur);
    for (int i = 0; i < n && !stopped; i++) {
        drq_row_images *im = drq_row_images_new(x->c, x->h, x->w);
        if (save & DRQ_SAVE_X_ADV) drq_row_images_set(im, DRQ_IMG_X_ADV, st->xadv.data + i * per);
        if (save & DRQ_SAVE_PURIFIED) {
            drq_row_images_set(im, DRQ_IMG_PURIFIED_CLEAN, q0->data + i * per);
            drq_row_images_set(im, DRQ_IMG_PURIFIED_ADV, qa->data + i * per);
        }
        out[i].images = im;
    }
    tensor_free(&ea), tensor_free(&e0);
    return stopped;
}

/* Fills the rows of one finished batch (docs/design.md §Metrics); 1 when a
 * stop flag ended it mid-way (out is then unusable). */
static int measure(const drq_job *job, const attack_config *ac, attack_models *am, const drq_attack_spec *as,
                    const Tensor *x, const int *label, const int64_t *image, const attack_state *st, double t0,
                    long evals0, drq_row *out) {
    /* t0 and evals0 are shifted back by what an earlier attempt spent (resume) */
    int n = x->n;
    size_t per = tensor_numel(x) / n;
    int *clean = xmalloc(sizeof(int) * n), *adv = xmalloc(sizeof(int) * n);
    /* fixed-ω quantities under ω_s */
    Tensor pa = tensor_new(n, x->c, x->h, x->w), p0 = tensor_new(n, x->c, x->h, x->w);
    Tensor xmax = tensor_new(n, x->c, x->h, x->w);
    uint64_t *om = xmalloc(sizeof(uint64_t) * n);
    for (int i = 0; i < n; i++) om[i] = ac->seed;
    int nu = as->n_uniform, stopped = 0;
    double *cu = xmalloc(sizeof(double) * (size_t)(nu > 0 ? nu : 1) * n);
    if (attack_evaluate(ac, am, x, image, clean) || attack_evaluate(ac, am, &st->xadv, image, adv)) goto stop;
    purifier_forward(am->pur, &st->xadv, om, image, 0, &pa, &xmax);
    if (purifier_stopped(am->pur)) goto stop;
    purifier_forward(am->pur, x, om, image, 0, &p0, NULL);
    if (purifier_stopped(am->pur)) goto stop;
    if (compress_uniform(am->pur, x, image, ac->seed, ac->l2, ac->eps, nu, &p0, cu)) goto stop;
    double secs = (drq_clock_mono() - t0) / n;
    long evals = (purifier_unet_evals(am->pur) - evals0) / n;
    for (int i = 0; i < n; i++) {
        drq_row *r = &out[i];
        const float *xi = x->data + i * per, *xa = st->xadv.data + i * per;
        drq_row_init(r);
        r->sweep = job->sweep;
        snprintf(r->purifier, sizeof r->purifier, "%s", job->spec->purifiers[job->purifier].name);
        snprintf(r->attack, sizeof r->attack, "%s", as->name);
        r->seed = job->seed;
        r->image = image[i];
        r->label = label[i];
        r->clean_pred = clean[i];
        r->adv_pred = adv[i];
        r->clean_correct = clean[i] == label[i];
        r->robust = adv[i] == label[i];
        r->success_step = st->success_step[i];
        r->delta_l2 = r->dist_init_l2 = metrics_diff_l2(xa, xi, per);
        r->delta_linf = r->dist_init_linf = metrics_diff_linf(xa, xi, per);
        r->dist_max_l2 = metrics_diff_l2(xmax.data + i * per, xi, per);
        r->dist_max_linf = metrics_diff_linf(xmax.data + i * per, xi, per);
        r->dist_end_l2 = metrics_diff_l2(pa.data + i * per, xi, per);
        r->dist_end_linf = metrics_diff_linf(pa.data + i * per, xi, per);
        r->ssim_adv = metrics_ssim(xa, xi, x->c, x->h, x->w);
        r->ssim_pur = metrics_ssim(pa.data + i * per, xi, x->c, x->h, x->w);
        r->comp_adv = r->delta_l2 > 0 ? metrics_diff_l2(pa.data + i * per, p0.data + i * per, per) / r->delta_l2 : NAN;
        if (nu > 0) metrics_mean_std(cu + (size_t)i * nu, nu, &r->comp_unif_mean, &r->comp_unif_std);
        r->seconds = secs;
        r->unet_evals = evals;
        snprintf(r->device, sizeof r->device, "%s", job->device ? job->device : "cpu");
        snprintf(r->worker, sizeof r->worker, "%s", job->worker ? job->worker : "");
    }
    if (as->save && keep_images(ac, am, as->save, x, image, st, &pa, &p0, out)) {
        for (int i = 0; i < n; i++) drq_row_images_free(out[i].images), out[i].images = NULL;
        goto stop;
    }
    if (0) {
    stop:
        stopped = 1;
    }
    free(clean), free(adv), free(om), free(cu);
    tensor_free(&pa), tensor_free(&p0), tensor_free(&xmax);
    return stopped;
}

/* The caps of "save" (common/images.h) against the dataset's image size,
 * which an IDX dataset only reveals when loaded: per row and per job. */
static int check_save_size(const drq_spec *s, const drq_job *job, const drq_dataset *ds, drq_err *err) {
    const drq_attack_spec *as = &s->attacks[job->attack];
    int64_t row = drq_save_row_bytes(as->save, ds->c, ds->h, ds->w);
    if (row > DRQ_SAVE_MAX_ROW_BYTES)
        return drq_errf(err,
                        "attacks[%d].save: images of %dx%dx%d from %s make %lld bytes per row, more than the cap of %d",
                        job->attack, ds->c, ds->h, ds->w, s->dataset.path, (long long)row, DRQ_SAVE_MAX_ROW_BYTES);
    if (row * s->shard_images > DRQ_SAVE_MAX_JOB_BYTES)
        return drq_errf(err, "attacks[%d].save: %lld images per shard × %lld bytes exceed the cap of %d bytes per job "
                        "(lower shard.images)", job->attack, (long long)s->shard_images, (long long)row,
                        DRQ_SAVE_MAX_JOB_BYTES);
    return 0;
}

job_status engine_run(const drq_job *job, job_ctx *ctx, drq_row **rows, int64_t *nrows, drq_err *err) {
    const drq_spec *s = job->spec;
    const drq_attack_spec *as = &s->attacks[job->attack];
    engine_models em;
    drq_dataset ds = {0};
    ctx->retryable = 0;
    if (s->dataset.kind == DS_NONE) {
        drq_errf(err, "attack '%s' (%s) needs a dataset; dataset.kind is none", as->name, drq_attack_kind_name(as->kind));
        return JOB_FAILED;
    }
    if (engine_models_get(s, 1, &em, err)) return JOB_FAILED;
    drq_err e2;
    if (dataset_load(drq_dataset_kind_name(s->dataset.kind), s->dataset.path, "test", (long)job->image_start,
                     (long)job->image_count, &ds, &e2)) {
        drq_errf(err, "dataset: %s", e2.msg);
        return JOB_FAILED;
    }
    if (as->save && check_save_size(s, job, &ds, err)) {
        dataset_free(&ds);
        return JOB_FAILED;
    }
    purify_config pc = engine_purify_config(&s->purifiers[job->purifier]);
    purifier *pur = engine_purifier_new(&em, &pc);
    /* bounded stop: the purifier polls cancel and preempt between sampler
     * steps (purifier_set_stop); a step or a measurement it abandons is
     * redone from the state before it, so rows do not change */
    purifier_set_stop(pur, ctx->cancel, ctx->preempt);
    attack_models am = {em.clf, pur, em.classes, NULL};
    attack_config ac = make_attack(as, job->seed);
    size_t per = (size_t)ds.c * ds.h * ds.w;
    drq_row *out = xcalloc((size_t)job->image_count + 1, sizeof(drq_row));
    int64_t done = 0;
    resume_state rs = {0};
    int have_resume = ctx->resume && load_checkpoint(ctx, job, ds.c, ds.h, ds.w, &rs) == 0;
    if (have_resume) {
        memcpy(out, rs.rows, sizeof(drq_row) * rs.nrows); /* takes over the rows' extra strings */
        free(rs.rows);
        done = rs.nrows;
        ctx->resumed = 1;
    }
    job_status status = JOB_DONE;
    while (done < job->image_count && status == JOB_DONE) {
        int n = have_resume ? rs.st.n : (int)(job->image_count - done < g_batch ? job->image_count - done : g_batch);
        Tensor x = tensor_wrap(ds.x + (size_t)done * per, n, ds.c, ds.h, ds.w);
        int *label = xmalloc(sizeof(int) * n);
        int64_t *image = xmalloc(sizeof(int64_t) * n);
        for (int i = 0; i < n; i++) label[i] = ds.y[done + i], image[i] = job->image_start + done + i;
        attack_state st;
        double t0 = drq_clock_mono();
        long evals0 = purifier_unet_evals(pur);
        if (have_resume) {
            st = rs.st, have_resume = 0;
            t0 -= rs.secs, evals0 -= (long)rs.evals;
        } else {
            attack_begin(&ac, &x, image, &st);
        }
        /* UNet evaluations at the last completed PGD step: what a checkpoint
         * records, so that an abandoned step's partial work is not counted */
        long evals_mark = purifier_unet_evals(pur);
        int stopped = 0;
        while (st.step < ac.steps && !stopped) {
            if (ctx->cancel && atomic_load(ctx->cancel)) break;
            if (ctx->preempt && atomic_load(ctx->preempt)) break;
            stopped = attack_step(&ac, &am, &x, label, image, &st);
            if (stopped) break;
            evals_mark = purifier_unet_evals(pur);
            if (ctx->checkpoint_every > 0 && st.step % ctx->checkpoint_every == 0 && st.step < ac.steps)
                save_checkpoint(ctx, job->image_start + done, evals_mark - evals0, drq_clock_mono() - t0, &st, per, out, done);
        }
        if (st.step == ac.steps && !(ctx->cancel && atomic_load(ctx->cancel)) &&
            !(ctx->preempt && atomic_load(ctx->preempt))) {
            evals_mark = purifier_unet_evals(pur);
            if (!measure(job, &ac, &am, as, &x, label, image, &st, t0, evals0, out + done)) {
                done += n;
                if (ctx->progress) ctx->progress(ctx, done, job->image_count);
                attack_state_free(&st);
                free(label), free(image);
                continue;
            }
        }
        /* stopped: before a step, mid-step or mid-measurement; st is the last
         * completed PGD step either way */
        if (ctx->cancel && atomic_load(ctx->cancel)) {
            status = JOB_CANCELLED;
        } else {
            save_checkpoint(ctx, job->image_start + done, evals_mark - evals0, drq_clock_mono() - t0, &st, per, out, done);
            status = JOB_PREEMPTED;
        }
        attack_state_free(&st);
        free(label), free(image);
    }
    attack_models_release(&am);
    purifier_free(pur);
    dataset_free(&ds);
    if (status != JOB_DONE) {
        drq_rows_free(out, done);
        return status;
    }
    *rows = out;
    *nrows = done;
    return JOB_DONE;
}

void attack_engine_register(void) {
    job_register_runner(ATK_PGD, engine_run);
    job_register_runner(ATK_BPDA, engine_run);
    job_register_thread_exit(engine_thread_exit);
    analyses_register(); /* variance, gradcorr, screen (worker/eval/analyses.c) */
}
