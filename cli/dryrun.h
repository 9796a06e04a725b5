/* dryrun.h — `drq run --dry-run` / `drq submit --dry-run`: what a sweep will
 * cost, before anything is submitted or written (cli/cmd_dryrun.c). */
#ifndef DRQ_CLI_DRYRUN_H
#define DRQ_CLI_DRYRUN_H

#include <stdio.h>

#include "common/spec.h"

typedef struct {
    int batch;      /* images per batch of a worker */
    int threads;    /* threads of one worker (the timing runs with them) */
    int workers;    /* workers the estimate divides the work among (drq run); 0: per worker (submit) */
    const char *device; /* the --device of drq run ("cpu", "cuda:N"); NULL: cpu */
} dryrun_opts;

/* Prints the counts, the cost and the estimated duration of SP to OUT;
 * measures the CPU rates once and caches them (~/.cache/drq/rates.json).
 * 0, or 1 with a message on stderr. */
int dryrun_print(const drq_spec *sp, const dryrun_opts *o, FILE *out);

#endif
