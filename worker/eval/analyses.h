/* analyses.h — the runners of the analysis job kinds variance, gradcorr and
 * screen (docs/spec.md §analyses, docs/design.md §Analyses): one row per
 * image like an attack, the kind's measurements in the row's extra JSON
 * (which the store copies into variance_results / gradcorr_results /
 * screen_results, schema/003_analyses.sql).
 *
 * Every number is a function of (job seed, image) under docs/seeds.md, so the
 * rows do not depend on the batch size.  A job checkpoints the rows of its
 * finished batches (per-image granularity) after every batch when
 * ctx->checkpoint_every > 0 and always when preempted (a batch cut short is
 * redone); a resumed job gives the rows of an uninterrupted one.
 */
#ifndef DRQ_ANALYSES_H
#define DRQ_ANALYSES_H

#include "worker/job.h"

/* Installs the runners of the three kinds (attack_engine_register calls it). */
void analyses_register(void);

job_status analyses_run(const drq_job *job, job_ctx *ctx, drq_row **rows, int64_t *nrows, drq_err *err);

#endif
