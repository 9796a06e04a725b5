/* job.c — see job.h.  The noop workload is documented in docs/queue.md. */
#include "worker/job.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static job_runner runners[ATK_NKINDS]; /* indexed by drq_attack_kind */

void job_register_runner(drq_attack_kind kind, job_runner fn) {
    if ((unsigned)kind < sizeof runners / sizeof runners[0]) runners[kind] = fn;
}

static void (*thread_exit_hook)(void);

void job_register_thread_exit(void (*fn)(void)) { thread_exit_hook = fn; }

void job_thread_exit(void) {
    if (thread_exit_hook) thread_exit_hook();
}

job_status job_run(const drq_job *job, job_ctx *ctx, drq_row **rows, int64_t *nrows, drq_err *err) {
    *rows = NULL;
    *nrows = 0;
    ctx->retryable = 0;
    ctx->resumed = 0;
    if (job->purifier < 0 || job->purifier >= job->spec->npurifiers || job->attack < 0 ||
        job->attack >= job->spec->nattacks) {
        drq_errf(err, "job %lld: purifier/attack index out of range for its spec", (long long)job->id);
        return JOB_FAILED;
    }
    drq_attack_kind kind = job->spec->attacks[job->attack].kind;
    if (kind == ATK_NOOP) return job_run_noop(job, ctx, rows, nrows, err);
    if ((unsigned)kind < sizeof runners / sizeof runners[0] && runners[kind])
        return runners[kind](job, ctx, rows, nrows, err);
    drq_errf(err, "attack kind '%s' needs the purification engine, which this build does not have yet",
             drq_attack_kind_name(kind));
    return JOB_FAILED;
}

/* ---- noop -------------------------------------------------------------------- */

/* splitmix64 finalizer: a bijective 64-bit mix. */
static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t str_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* A uniform double in [0,1) from the k-th draw of hash h. */
static double u01(uint64_t h, int k) { return (double)(mix64(h + (uint64_t)k * 0x632be59bd9b4e019ull) >> 11) * 0x1p-53; }

/* The row of one image: every metric is a deterministic function of (seed,
 * image, purifier name, attack name); `chain` (the running state over the job's
 * images so far) lands in extra, so a resume that lost its state shows. */
static void noop_row(const drq_job *job, int64_t image, uint64_t chain, drq_row *r) {
    const drq_attack_spec *a = &job->spec->attacks[job->attack];
    const drq_purifier_spec *p = &job->spec->purifiers[job->purifier];
    uint64_t h = mix64((uint64_t)job->seed ^ mix64((uint64_t)image * 0x9e3779b97f4a7c15ull) ^
                       mix64(str_hash(p->name)) ^ mix64(str_hash(a->name) + 1));
    drq_row_init(r);
    r->sweep = job->sweep;
    snprintf(r->purifier, sizeof r->purifier, "%s", p->name);
    snprintf(r->attack, sizeof r->attack, "%s", a->name);
    r->seed = job->seed;
    r->image = image;
    r->label = (int32_t)(h % 10);
    r->clean_correct = u01(h, 1) < 0.86;
    r->clean_pred = r->clean_correct ? r->label : (r->label + 1 + (int32_t)((h >> 8) % 9)) % 10;
    r->robust = r->clean_correct && u01(h, 2) < 0.7;
    r->adv_pred = r->robust ? r->label : (r->label + 1 + (int32_t)((h >> 16) % 9)) % 10;
    int steps = a->steps > 0 ? a->steps : 1;
    r->success_step = r->robust ? -1 : (r->clean_correct ? 1 + (int32_t)((h >> 24) % (uint64_t)steps) : 0);
    r->delta_linf = a->eps * (0.5 + 0.5 * u01(h, 3));
    r->delta_l2 = r->delta_linf * (10.0 + 40.0 * u01(h, 4));
    r->dist_init_l2 = r->delta_l2;
    r->dist_init_linf = r->delta_linf;
    r->dist_max_l2 = 2.0 + 2.0 * u01(h, 5);
    r->dist_max_linf = 0.5 + 0.5 * u01(h, 6);
    r->dist_end_l2 = 1.0 + 3.0 * u01(h, 7);
    r->dist_end_linf = 0.2 + 0.6 * u01(h, 8);
    r->ssim_adv = 0.9 + 0.1 * u01(h, 9);
    r->ssim_pur = 0.6 + 0.3 * u01(h, 10);
    r->comp_adv = u01(h, 11);
    r->comp_unif_mean = 0.1 + 0.3 * u01(h, 12);
    r->comp_unif_std = 0.05 * u01(h, 13);
    r->seconds = a->ms_per_image / 1000.0; /* nominal: rows must not depend on timing */
    r->unet_evals = 0;
    snprintf(r->device, sizeof r->device, "%s", job->device ? job->device : "cpu");
    snprintf(r->worker, sizeof r->worker, "%s", job->worker ? job->worker : "");
    char extra[96];
    snprintf(extra, sizeof extra, "{\"workload\":\"noop\",\"chain\":\"%016llx\"}", (unsigned long long)chain);
    r->extra = xstrdup(extra);
}

/* Checkpoint blob of noop: magic, job identity, next image offset, chain,
 * then the packed rows of the images before it. */
typedef struct {
    char magic[8]; /* "drqnoop1" */
    int64_t job, seed, image_start, image_count;
    int64_t next;
    uint64_t chain;
} noop_state;

static void *noop_pack(const drq_job *job, int64_t next, uint64_t chain, const drq_row *rows, size_t *len) {
    size_t rl;
    void *packed = drq_rows_pack(rows, next, &rl);
    noop_state hdr = {.job = job->id, .seed = job->seed, .image_start = job->image_start,
                      .image_count = job->image_count, .next = next, .chain = chain};
    memcpy(hdr.magic, "drqnoop1", 8);
    unsigned char *blob = xmalloc(sizeof hdr + rl);
    memcpy(blob, &hdr, sizeof hdr);
    memcpy(blob + sizeof hdr, packed, rl);
    free(packed);
    *len = sizeof hdr + rl;
    return blob;
}

/* Restores a checkpoint; 0 ok, -1 when it does not belong to this job. */
static int noop_unpack(const drq_job *job, const void *blob, size_t len, int64_t *next, uint64_t *chain,
                       drq_row *rows) {
    noop_state hdr;
    if (len < sizeof hdr) return -1;
    memcpy(&hdr, blob, sizeof hdr);
    if (memcmp(hdr.magic, "drqnoop1", 8) || hdr.job != job->id || hdr.seed != job->seed ||
        hdr.image_start != job->image_start || hdr.image_count != job->image_count || hdr.next < 0 ||
        hdr.next > job->image_count)
        return -1;
    drq_row *got = NULL;
    int64_t n = 0;
    drq_err e;
    if (drq_rows_unpack((const char *)blob + sizeof hdr, len - sizeof hdr, hdr.next, &got, &n, &e)) return -1;
    memcpy(rows, got, (size_t)n * sizeof *rows); /* extra pointers move over */
    free(got);
    *next = hdr.next;
    *chain = hdr.chain;
    return 0;
}

static void sleep_ms(double ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(fmod(ms, 1000.0) * 1e6)};
    nanosleep(&ts, NULL);
}

job_status job_run_noop(const drq_job *job, job_ctx *ctx, drq_row **rows_out, int64_t *nrows, drq_err *err) {
    const drq_attack_spec *a = &job->spec->attacks[job->attack];
    int64_t n = job->image_count;
    drq_row *rows = xcalloc((size_t)(n ? n : 1), sizeof *rows);
    int64_t next = 0;
    uint64_t chain = mix64((uint64_t)job->seed ^ mix64((uint64_t)job->image_start) ^
                           mix64(str_hash(job->spec->purifiers[job->purifier].name)) ^ mix64(str_hash(a->name) + 1));
    if (ctx->resume) {
        if (noop_unpack(job, ctx->resume, ctx->resume_len, &next, &chain, rows) == 0) {
            ctx->resumed = 1;
        } else {
            log_line("job", "job %lld: checkpoint does not match the job; starting over", (long long)job->id);
            next = 0;
        }
    }
    int64_t since_ckpt = 0;
    for (int64_t i = next; i < n; i++) {
        int64_t image = job->image_start + i;
        /* sleep in slices so cancel and preemption act mid-image */
        double left = a->ms_per_image;
        for (;;) {
            if (ctx->cancel && atomic_load(ctx->cancel)) {
                drq_rows_free(rows, i);
                return JOB_CANCELLED;
            }
            if (ctx->preempt && atomic_load(ctx->preempt)) {
                size_t len;
                void *blob = noop_pack(job, i, chain, rows, &len);
                if (ctx->checkpoint) ctx->checkpoint(ctx, i, blob, len);
                free(blob);
                drq_rows_free(rows, i);
                return JOB_PREEMPTED;
            }
            if (left <= 0) break;
            double slice = left < 10 ? left : 10;
            sleep_ms(slice);
            left -= slice;
        }
        for (int k = 0; k < a->nfail_images; k++)
            if (a->fail_images[k] == image) {
                drq_rows_free(rows, i);
                ctx->retryable = 1;
                drq_errf(err, "noop: image %lld is listed in fail_images (poison job)", (long long)image);
                return JOB_FAILED;
            }
        uint64_t h = mix64(chain ^ (uint64_t)image);
        chain = h;
        noop_row(job, image, chain, &rows[i]);
        if (ctx->progress) ctx->progress(ctx, i + 1, n);
        since_ckpt++;
        if (ctx->checkpoint_every > 0 && since_ckpt >= ctx->checkpoint_every && i + 1 < n) {
            size_t len;
            void *blob = noop_pack(job, i + 1, chain, rows, &len);
            if (ctx->checkpoint) ctx->checkpoint(ctx, i + 1, blob, len);
            free(blob);
            since_ckpt = 0;
        }
    }
    *rows_out = rows;
    *nrows = n;
    return JOB_DONE;
}
