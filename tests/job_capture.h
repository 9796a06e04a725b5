/* job_capture.h — the checkpoint capture of the engine tests' job contexts
 * (test_engine, test_images, test_stop_bound, test_analyses): ctx.user points
 * to a capture, ctx.checkpoint = on_checkpoint.  It counts the checkpoints
 * and keeps a copy of the keep-th (1-based; 0: of the last), which a test
 * then hands back as ctx.resume.  preempt_after / preempt are for tests whose
 * progress callback preempts a job after so many images. */
#ifndef DRQ_TEST_JOB_CAPTURE_H
#define DRQ_TEST_JOB_CAPTURE_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "worker/job.h"

typedef struct {
    void *blob;
    size_t len;
    int count; /* checkpoints seen */
    int keep;  /* which one blob holds: the keep-th, or the last when 0 */
    int64_t preempt_after;
    atomic_int preempt;
} capture;

static void on_checkpoint(job_ctx *ctx, int64_t step, const void *blob, size_t len) {
    (void)step;
    capture *c = ctx->user;
    c->count++;
    if (c->keep && c->count != c->keep) return;
    free(c->blob);
    c->blob = malloc(len);
    memcpy(c->blob, blob, len);
    c->len = len;
}

#endif
