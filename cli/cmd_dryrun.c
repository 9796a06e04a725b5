/* cmd_dryrun.c — see dryrun.h.
 *
 * Counts (exact, from the engine's loops, worker/eval/attack.c and engine.c),
 * per result row (one image under one purifier, attack and seed), with S the
 * purifier's sampler steps (⌈t_star / stride⌉, 0 for none), G = steps × (eot_k for
 * eot, else 1) gradients, V = votes for fresh/eot (else 1), U = n_uniform:
 *   UNet forwards   G·S·(2 full | 1 bpda)   attack (forward + recompute)
 *                   + 2·V·S                 clean and adversarial predictions
 *                   + (2 + U)·S             fixed-ω purifications of the metrics
 *   UNet input-VJPs G·S (full gradients only)
 *   classifier      forwards G + 2V, input-VJPs G
 * FLOPs: each model's forward counted layer by layer (2 per multiply-add;
 * convolutions, linears, attention products), an input-VJP as one forward.
 * Rates: seconds per image of a forward and of an input-VJP of each model at
 * the batch and thread count, measured on random weights (speed does not
 * depend on the values, so missing weights files do not matter) and cached
 * in ~/.cache/drq/rates.json under arch|config|batch|threads|ISA. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/dryrun.h"
#include "common/images.h"
#include "kernels/cpu/cpu.h"
#include "kernels/tensor.h"
#include "worker/models/classifier.h"
#include "worker/models/models.h"

/* ---- rates: measured once, cached ---------------------------------------- */
typedef struct {
    double fwd, vjp; /* seconds per image: a forward, an input-VJP alone */
    double peak;     /* bytes: resident growth while the model ran (weights + tape) */
    int cached;
} rate;

static char *cache_path(void) {
    const char *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    char buf[4096];
    if (x && *x) snprintf(buf, sizeof buf, "%s/drq", x);
    else snprintf(buf, sizeof buf, "%s/.cache/drq", h && *h ? h : "/tmp");
    /* mkdir -p of the last two levels */
    char *slash = strrchr(buf, '/');
    if (slash) {
        *slash = 0;
        mkdir(buf, 0755);
        *slash = '/';
    }
    mkdir(buf, 0755);
    size_t n = strlen(buf) + 16;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/rates.json", buf);
    return p;
}

static long rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
        fclose(f);
    }
    return res * sysconf(_SC_PAGESIZE);
}

/* Times a forward and forward + input-VJP of one model at batch b on random
 * weights.  The ADM UNet (guided-unet) is timed at batch 1 with checkpointing
 * inside the UNet above 4 GiB (a 256×256 image's activations alone are
 * ~8 GiB): its rate per image is the batch-1 rate. */
static int measure(const char *arch, const char *cfg, int b, int res, rate *r, drq_err *err) {
    unet_config uc;
    guided_unet_config gc;
    int is_unet = !strcmp(arch, "ddpm-unet"), is_adm = !strcmp(arch, "guided-unet");
    if (is_unet && unet_config_parse(cfg, &uc, err)) return -1;
    if (is_adm && guided_unet_config_parse(cfg, &gc, err)) return -1;
    if (is_adm) b = 1;
    long base = rss_bytes();
    unet *u = is_unet ? unet_load(&uc, NULL, 1, err) : NULL;
    guided_unet *g = is_adm ? guided_unet_load(&gc, NULL, 1, DRQ_CPU, err) : NULL;
    classifier *w = is_unet || is_adm ? NULL : classifier_load(arch, cfg, NULL, 1, DRQ_CPU, err);
    if (!u && !w && !g) return -1;
    if (g) guided_unet_set_mem_budget(g, (size_t)4 << 30);
    int cin = is_unet ? uc.in_channels : g ? 3 : classifier_in_channels(w);
    int hw = is_unet ? uc.resolution : g ? gc.image_size : res;
    Tensor x = tensor_new(b, cin, hw, hw), gx = tensor_new(b, cin, hw, hw);
    Tensor y = is_unet ? tensor_new(b, uc.out_ch, hw, hw)
             : g       ? tensor_new(b, guided_unet_out_channels(g), hw, hw)
                       : tensor_new(b, classifier_num_classes(w), 1, 1);
    Tensor gy = tensor_new(y.n, y.c, y.h, y.w);
    for (size_t i = 0; i < tensor_numel(&x); i++) x.data[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
    for (size_t i = 0; i < tensor_numel(&gy); i++) gy.data[i] = 1e-2f * (float)(i % 7);
    float *t = xmalloc(sizeof(float) * (size_t)b);
    for (int i = 0; i < b; i++) t[i] = 99.0f - (float)(i % 99);
    double tf = 1e30, tv = 1e30;
    long top = 0; /* resident size after the forward and after the VJP (the tape is held until the model is freed) */
    for (int rep = 0; rep < 2; rep++) { /* the first round plans and warms caches */
        double t0 = drq_clock_mono();
        if (u) unet_forward(u, &x, t, &y);
        else if (g) guided_unet_forward(g, &x, t, &y);
        else classifier_forward(w, &x, &y);
        double t1 = drq_clock_mono();
        if (u) unet_backward(u, &gy, &gx);
        else if (g) guided_unet_backward(g, &gy, &gx);
        else classifier_backward(w, &gy, &gx);
        double t2 = drq_clock_mono();
        long now = rss_bytes();
        if (now > top) top = now;
        if (rep) tf = t1 - t0, tv = t2 - t1;
    }
    r->fwd = tf / b, r->vjp = tv / b;
    long grown = top - base;
    r->peak = grown > 0 ? (double)grown : 0;
    tensor_free(&x), tensor_free(&gx), tensor_free(&y), tensor_free(&gy), free(t);
    if (u) unet_free(u);
    guided_unet_free(g);
    classifier_free(w);
    return 0;
}

static int get_rate(json_t *cache, int *dirty, const char *arch, const char *cfg, int b, int threads, int res, rate *r,
                    drq_err *err) {
    char key[8192];
    snprintf(key, sizeof key, "%s|%s|res%d|batch%d|threads%d|cpu:%s", arch, cfg, res, b, threads, cpu_isa_name());
    json_t *e = json_object_get(cache, key);
    if (e && json_is_number(json_object_get(e, "fwd_s")) && json_is_number(json_object_get(e, "vjp_s"))) {
        r->fwd = json_number_value(json_object_get(e, "fwd_s"));
        r->vjp = json_number_value(json_object_get(e, "vjp_s"));
        r->peak = json_number_value(json_object_get(e, "peak_bytes"));
        r->cached = 1;
        return 0;
    }
    if (measure(arch, cfg, b, res, r, err)) return -1;
    r->cached = 0;
    json_object_set_new(cache, key,
                        json_pack("{s:f, s:f, s:f}", "fwd_s", r->fwd, "vjp_s", r->vjp, "peak_bytes", r->peak));
    *dirty = 1;
    return 0;
}

/* ---- the report ------------------------------------------------------------ */
static char *config_arg(const drq_model_spec *ms) {
    if (!ms->config) /* the arch's preset */
        return xstrdup(!strcmp(ms->arch, "resnet50") ? "imagenet" : !strcmp(ms->arch, "guided-unet") ? "imagenet256" : "cifar10");
    if (json_is_string(ms->config)) return xstrdup(json_string_value(ms->config));
    return json_dumps(ms->config, JSON_COMPACT | JSON_SORT_KEYS);
}

static const char *human(double v, char *buf, size_t n) {
    static const char *const suf[] = {"", "k", "M", "G", "T", "P", "E"};
    int k = 0;
    while (fabs(v) >= 1000 && k < 6) v /= 1000, k++;
    snprintf(buf, n, k ? "%.3g%s" : "%.0f%s", v, suf[k]);
    return buf;
}

static const char *duration(double s, char *buf, size_t n) {
    if (s < 120) snprintf(buf, n, "%.0f s", s);
    else if (s < 7200) snprintf(buf, n, "%.1f min", s / 60);
    else if (s < 3 * 86400) snprintf(buf, n, "%.1f h", s / 3600);
    else snprintf(buf, n, "%.1f days (%.0f h)", s / 86400, s / 3600);
    return buf;
}

/* Adds the UNet and classifier passes of n images of an analysis
 * (worker/eval/analyses.c) with S sampler steps per purification: variance
 * purifies N_δ·N_ω times; gradcorr takes one gradient per estimator (K for
 * eot; a full one costs S forwards, S recomputations and S VJPs, a BPDA one
 * S forwards); screen purifies 2 + n_uniform times and classifies once. */
static void analysis_cost(const drq_attack_spec *as, double n, int S, double *ufwd, double *uvjp, double *cfwd,
                          double *cvjp) {
    if (as->kind == ATK_VARIANCE) {
        *ufwd += n * as->n_delta * as->n_omega * S;
    } else if (as->kind == ATK_GRADCORR) {
        for (int e = 0; e < as->nestimators; e++) {
            int bpda = as->estimators[e] == EST_BPDA;
            double G = as->estimators[e] == EST_EOT ? as->eot_k : 1;
            *ufwd += n * G * S * (bpda ? 1 : 2);
            *uvjp += n * G * (bpda ? 0 : S);
            *cfwd += n * G;
            *cvjp += n * G;
        }
    } else {
        *ufwd += n * (2.0 + as->n_uniform) * S;
        *cfwd += n;
    }
}

int dryrun_print(const drq_spec *sp, const dryrun_opts *o, FILE *out) {
    drq_err err = {{0}};
    int64_t shards = drq_spec_shards(sp), jobs = drq_spec_njobs(sp), rows = drq_spec_nrows(sp);
    int64_t per_cell = rows / ((int64_t)sp->npurifiers * sp->nattacks * sp->nseeds); /* images */
    int res = sp->dataset.kind == DS_CIFAR10 ? 32 : sp->dataset.kind == DS_IMAGENET ? 224 : 28;
    double ufwd = 0, uvjp = 0, cfwd = 0, cvjp = 0, noop_s = 0;
    int max_s = 0;
    for (int p = 0; p < sp->npurifiers; p++) {
        const drq_purifier_spec *ps = &sp->purifiers[p];
        int S = ps->kind == PUR_NONE ? 0 : (ps->t_star + ps->stride - 1) / ps->stride;
        if (S > max_s) max_s = S;
        for (int a = 0; a < sp->nattacks; a++) {
            const drq_attack_spec *as = &sp->attacks[a];
            double n = (double)per_cell * sp->nseeds;
            if (as->kind == ATK_NOOP) {
                noop_s += n * as->ms_per_image / 1000.0;
                continue;
            }
            if (drq_kind_is_analysis(as->kind)) {
                analysis_cost(as, n, S, &ufwd, &uvjp, &cfwd, &cvjp);
                continue;
            }
            int full = !(as->kind == ATK_BPDA || as->grad == GRAD_BPDA);
            int rnd = as->randomness == RND_FRESH || as->randomness == RND_EOT;
            double G = (double)as->steps * (as->randomness == RND_EOT ? as->eot_k : 1);
            double V = rnd ? as->votes : 1, U = as->n_uniform;
            ufwd += n * (G * S * (full ? 2 : 1) + 2 * V * S + (2 + U) * S);
            uvjp += n * (full ? G * S : 0);
            cfwd += n * (G + 2 * V);
            cvjp += n * G;
        }
    }
    unet_config uc;
    wrn_config wc;
    resnet50_config rc50;
    int ccin = 1; /* the classifier's input channels */
    char *ucfg = sp->diffusion.present ? config_arg(&sp->diffusion) : NULL;
    char *ccfg = sp->classifier.present ? config_arg(&sp->classifier) : NULL;
    double uf = 0, cf = 0;
    int rc = 1;
    char *cpath = NULL;
    json_t *cache = NULL;
    if (ucfg && !strcmp(sp->diffusion.arch, "guided-unet")) {
        guided_unet_config gc;
        if (guided_unet_config_parse(ucfg, &gc, &err)) goto fail;
        uf = guided_unet_forward_flops(&gc);
    } else if (ucfg) {
        if (unet_config_parse(ucfg, &uc, &err)) goto fail;
        uf = unet_forward_flops(&uc);
    }
    if (ccfg && !strcmp(sp->classifier.arch, "resnet50")) {
        if (resnet50_config_parse(ccfg, &rc50, &err)) goto fail;
        cf = resnet50_forward_flops(&rc50, res), ccin = 3;
    } else if (ccfg) {
        if (wrn_config_parse(ccfg, &wc, &err)) goto fail;
        cf = wrn_forward_flops(&wc, res), ccin = wc.in_channels;
    }
    char b1[64], b2[64], b3[64];
    fprintf(out, "dry run of sweep '%s': nothing submitted, no database written\n", sp->name);
    fprintf(out, "jobs: %lld (%d purifiers x %d attacks x %d seeds x %lld shards of %lld images)\n", (long long)jobs,
            sp->npurifiers, sp->nattacks, sp->nseeds, (long long)shards, (long long)sp->shard_images);
    if (sp->nanalyses) fprintf(out, "  (the %d attacks include %d analyses)\n", sp->nattacks, sp->nanalyses);
    fprintf(out, "rows: %lld\n", (long long)rows);
    double saved = 0; /* the attack option "save": bytes of the images table (common/images.h) */
    for (int a = 0; a < sp->nattacks; a++)
        saved += (double)per_cell * sp->nseeds * sp->npurifiers *
                 (double)drq_save_row_bytes(sp->attacks[a].save, sp->dataset.kind == DS_CIFAR10 ? 3 : 1, res, res);
    if (saved > 0)
        fprintf(out, "saved_images: %.0f bytes (%sB in the database; %s)\n", saved, human(saved, b1, sizeof b1),
                sp->dataset.kind == DS_CIFAR10 ? "3x32x32 images" : "IDX images taken as 1x28x28");
    fprintf(out, "unet_forward: %.0f\nunet_vjp: %.0f\nclassifier_forward: %.0f\nclassifier_vjp: %.0f\n", ufwd, uvjp, cfwd,
            cvjp);
    double flops = (ufwd + uvjp) * uf + (cfwd + cvjp) * cf;
    fprintf(out, "flops: %.4g (%sFLOP; UNet forward %sFLOP/image, classifier forward %sFLOP/image, an input-VJP "
                 "counted as one forward)\n",
            flops, human(flops, b1, sizeof b1), human(uf, b2, sizeof b2), human(cf, b3, sizeof b3));
    for (int k = 0; k < 2; k++) {
        const drq_model_spec *ms = k ? &sp->diffusion : &sp->classifier;
        if (ms->present && ms->weights)
            fprintf(out, "weights: %s %s\n", ms->weights,
                    access(ms->weights, R_OK) ? "MISSING (the timing uses random weights: speed does not depend on them)"
                                              : "present (the timing uses random weights all the same)");
    }

    /* rates */
    int is_cpu = !o->device || !strncmp(o->device, "cpu", 3), b = o->batch > 0 ? o->batch : 8;
    int thr = o->threads > 0 ? o->threads : 1, workers = o->workers > 0 ? o->workers : 1;
    rate ur = {0}, cr = {0};
    cpath = cache_path();
    json_error_t je;
    cache = json_load_file(cpath, 0, &je);
    if (!json_is_object(cache)) json_decref(cache), cache = json_object();
    int dirty = 0, saved_threads = drq_get_threads();
    drq_set_threads(thr);
    if (ucfg && (ufwd > 0 || uvjp > 0) && get_rate(cache, &dirty, sp->diffusion.arch, ucfg, b, thr, res, &ur, &err)) goto fail_rates;
    if (ccfg && (cfwd > 0 || cvjp > 0) && get_rate(cache, &dirty, sp->classifier.arch, ccfg, b, thr, res, &cr, &err)) goto fail_rates;
    drq_set_threads(saved_threads);
    if (dirty) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp%d", cpath, (int)getpid());
        if (json_dump_file(cache, tmp, JSON_INDENT(1) | JSON_SORT_KEYS) == 0) rename(tmp, cpath);
        else unlink(tmp);
    }
    double states = (double)(max_s + 4) * b * ccin * res * res * 4;
    double data = sp->dataset.kind == DS_NONE ? 0 : (double)sp->dataset.count * res * res * 4 * 3;
    double peak = ur.peak + cr.peak + states + data;
    fprintf(out, "peak_memory_per_worker: %.0f bytes (%.2f GiB at batch %d: models and tapes measured %.2f GiB, "
                 "sampler states %.2f GiB, dataset %.2f GiB)\n",
            peak, peak / 1073741824.0, b, (ur.peak + cr.peak) / 1073741824.0, states / 1073741824.0,
            data / 1073741824.0);
    double secs = ufwd * (ur.fwd) + uvjp * ur.vjp + cfwd * cr.fwd + cvjp * cr.vjp + noop_s;
    if (ucfg || ccfg)
        fprintf(out, "rates (cpu:%s, %d thread%s, batch %d, %s): UNet %.4g s forward + %.4g s input-VJP per image, "
                     "classifier %.4g s + %.4g s\n",
                cpu_isa_name(), thr, thr > 1 ? "s" : "", b,
                (ur.cached || !ucfg) && (cr.cached || !ccfg) ? "cached in" : "measured now, cached in", ur.fwd, ur.vjp,
                cr.fwd, cr.vjp);
    if (ucfg || ccfg) fprintf(out, "  %s\n", cpath);
    if (o->workers > 0)
        fprintf(out, "estimate cpu: %s with %d worker%s of %d thread%s (%.0f s of one worker)%s\n",
                duration(secs / workers, b1, sizeof b1), workers, workers > 1 ? "s" : "", thr, thr > 1 ? "s" : "", secs,
                is_cpu ? "" : " [the run asked for a GPU]");
    else
        fprintf(out, "estimate cpu: %s per worker of %d thread%s (divide by the number of such workers)\n",
                duration(secs, b1, sizeof b1), thr, thr > 1 ? "s" : "");
    fprintf(out, "estimate cuda: unknown (no bench-cuda figures for these models on this machine; run make bench-cuda on "
                 "a GPU)\n");
    rc = 0;
    goto done;
fail_rates:
    drq_set_threads(saved_threads);
fail:
    fprintf(stderr, "drq: dry run: %s\n", err.msg);
done:
    json_decref(cache);
    free(cpath), free(ucfg), free(ccfg);
    return rc;
}
