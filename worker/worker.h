/* worker.h — the drq worker: a ZeroMQ DEALER client of the coordinator.
 *
 * Two threads.  The I/O thread (the caller of drq_worker_run) owns the socket:
 * it registers (HELLO), heartbeats every second whatever the compute thread is
 * doing, reconnects with back-off (1 s doubling to 32 s) after 3 silent
 * heartbeats, keeps every RESULT / FAIL / CHECKPOINT / RELEASE until the
 * server ACKs it and re-sends them after a reconnect.  The compute thread runs
 * job_run (worker/job.h) on one job at a time.
 *
 * Stop (SIGTERM in drq-worker, the end of `drq run`): the running job
 * checkpoints, every held job is RELEASEd, and the call returns once those are
 * acknowledged or after stop_grace_s.
 */
#ifndef DRQ_WORKER_H
#define DRQ_WORKER_H

#include <stdatomic.h>

#include "common/util.h"

typedef struct {
    const char *server;   /* endpoint, e.g. tcp://127.0.0.1:5555 or inproc://… */
    const char *name;     /* unique worker name (default host-pid) */
    const char *device;   /* "cpu" or "cuda:N" */
    int checkpoint_every; /* steps between checkpoints (0: only on stop) */
    int prefetch;         /* jobs queued beyond the running one (default 1) */
    void *zctx;           /* context to use (required for inproc), NULL: own */
    double heartbeat_s;   /* default 1 */
    int liveness;         /* default 3 */
    double max_backoff_s; /* default 32 */
    double stop_grace_s;  /* default 5 */
    int quiet;            /* no per-job log lines */
    int threads;          /* OpenMP threads of the job thread (0: those of the calling thread) */
} drq_worker_opts;

/* Runs until *stop becomes nonzero; returns 0 after a clean stop. */
int drq_worker_run(const drq_worker_opts *o, atomic_int *stop);

#endif
