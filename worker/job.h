/* job.h — the job runner: turns one job (purifier × attack × seed × image
 * range) into per-image result rows.  The worker daemon and `drq run` call
 * job_run on their compute thread; everything about queues, leases and the
 * wire stays outside.
 *
 * Attack engines plug in with job_register_runner (one per attack kind).  This
 * build implements kind "noop" itself: the queue-test workload (docs/queue.md),
 * which sleeps ms_per_image per image and returns rows whose metrics are a
 * deterministic hash of (seed, image, purifier, attack) — no model, no dataset,
 * never a scientific number.  A kind without a runner fails the job for good
 * with a clear error; nothing is ever faked.
 *
 * Resumption contract: a runner may call ctx->checkpoint(step, blob) with an
 * opaque state; a later attempt of the same job gets it back in ctx->resume*
 * and must produce rows identical to an uninterrupted run.
 */
#ifndef DRQ_JOB_H
#define DRQ_JOB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/row.h"
#include "common/spec.h"
#include "common/util.h"

typedef struct {
    int64_t id, sweep;
    int attempt;
    const drq_spec *spec;
    int purifier, attack; /* indices into spec */
    int64_t seed;
    int64_t image_start, image_count;
    const char *device; /* "cpu", "cuda:0": copied into rows */
    const char *worker; /* worker name: copied into rows */
} drq_job;

typedef enum {
    JOB_DONE = 0,      /* *rows holds image_count rows */
    JOB_FAILED = 1,    /* err says why; ctx->retryable says whether to try again */
    JOB_CANCELLED = 2, /* ctx->cancel was set */
    JOB_PREEMPTED = 3, /* ctx->preempt was set; a checkpoint was saved first */
} job_status;

typedef struct job_ctx job_ctx;
struct job_ctx {
    void *user;
    /* images finished so far (cheap; call as often as convenient) */
    void (*progress)(job_ctx *ctx, int64_t done, int64_t total);
    /* saves an opaque resumable state reached after `step` steps */
    void (*checkpoint)(job_ctx *ctx, int64_t step, const void *blob, size_t len);
    int checkpoint_every; /* steps between periodic checkpoints; 0: only on preemption */
    /* state of an earlier attempt, or NULL */
    const void *resume;
    size_t resume_len;
    int64_t resume_step;
    const atomic_int *cancel;  /* nonzero: stop now, no checkpoint */
    const atomic_int *preempt; /* nonzero: checkpoint, then stop */
    int retryable;             /* out, with JOB_FAILED */
    int resumed;               /* out: 1 when the resume state was used */
};

typedef job_status (*job_runner)(const drq_job *job, job_ctx *ctx, drq_row **rows, int64_t *nrows, drq_err *err);

/* Installs the runner of an attack kind (the purification engine calls this). */
void job_register_runner(drq_attack_kind kind, job_runner fn);
/* A runner's per-thread state (e.g. the engine's cached models) is released
 * by the hook it installs here; a thread that ran jobs calls
 * job_thread_exit() before it ends. */
void job_register_thread_exit(void (*fn)(void));
void job_thread_exit(void);

/* Runs one job.  On JOB_DONE *rows (drq_rows_free) holds one row per image in
 * image order. */
job_status job_run(const drq_job *job, job_ctx *ctx, drq_row **rows, int64_t *nrows, drq_err *err);

/* The noop workload (exposed for tests). */
job_status job_run_noop(const drq_job *job, job_ctx *ctx, drq_row **rows, int64_t *nrows, drq_err *err);

#endif
