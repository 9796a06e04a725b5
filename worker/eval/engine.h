/* engine.h — the purification engine: runs pgd / bpda jobs (job.h's
 * runner interface) by loading the spec's dataset and models, attacking
 * the job's images in batches and measuring every metric of docs/design.md §Metrics.
 *
 * Models are loaded once per thread and reused while the spec's model
 * files stay the same.  Images are attacked in batches (engine_set_batch);
 * noise is keyed per image, so rows do not depend on the batch size.
 *
 * Resumption: with ctx->checkpoint_every = K the engine saves, every K PGD
 * steps, the rows finished so far plus the current batch's iterate, step and
 * success steps; a later attempt restores them and continues exactly.
 */
#ifndef DRQ_ENGINE_H
#define DRQ_ENGINE_H

#include "worker/job.h"
#include "worker/models/classifier.h"
#include "worker/models/models.h"
#include "worker/eval/purify.h"

void attack_engine_register(void); /* installs the pgd and bpda runners, and the analyses' */
void engine_set_batch(int batch);  /* images per batch (default 8) */
int engine_batch(void);            /* the current images per batch */
/* A guided-unet diffusion model checkpoints inside the UNet when one call's
 * block activations would pass mib mebibytes (guided_unet_set_mem_budget;
 * 0, the default: never).  The DDPM UNet ignores it. */
/* Sets it from a command-line value (MIB, an integer in [0, 2^30]); -1 with
 * the reason in err (for "PROGRAM: --mem-budget: …") when it is not one. */
int engine_set_mem_budget(const char *mib, drq_err *err);
/* Where models run: "cpu" (default) or "cuda:N".  -1 with a message in err
 * when the device does not exist or this build has no CUDA backend.  Every
 * thread that runs jobs binds itself to the device on its next job; the
 * spec's "precision" applies to the GPU's convolutions per job. */
int engine_set_device(const char *device, drq_err *err);

/* The spec's models, loaded (or reused) for this thread: the classifier when
 * asked for, the UNet when a purifier needs one (else NULL). */
typedef struct {
    classifier *clf;
    unet *diff;        /* the diffusion model: a DDPM UNet (diff) or the ADM UNet (adm), per diffusion.arch */
    guided_unet *adm;
    int classes;
} engine_models;
int engine_models_get(const drq_spec *s, int need_classifier, engine_models *m, drq_err *err);
/* A purifier over whichever diffusion model m holds (purifier_new / purifier_new_adm). */
purifier *engine_purifier_new(const engine_models *m, const purify_config *c);
/* The purifier config of spec purifier i. */
purify_config engine_purify_config(const drq_purifier_spec *p);

job_status engine_run(const drq_job *job, job_ctx *ctx, drq_row **rows, int64_t *nrows, drq_err *err);

#endif
