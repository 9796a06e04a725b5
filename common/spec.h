/* spec.h — the sweep spec: parsing, validation, defaults (spec.c), and its
 * expansion into jobs (expand.c).
 *
 * A spec is one JSON object (docs/spec.md).  drq_spec_parse validates every
 * field; each error names the JSON path and what was expected, e.g.
 * "attacks[1].eps: expected a number in (0,1]".  Unknown keys are errors, so
 * a typo never passes silently.  drq_spec_to_json writes the canonical form
 * (every default filled in, keys sorted when dumped with JSON_SORT_KEYS); the
 * canonical form parses back to the same spec and is what the database stores
 * and what workers receive.
 *
 * Expansion: jobs = purifiers × attacks × seeds × image shards, enumerated by a
 * sequence number seq in that nesting order (shard fastest); the analyses
 * count as attacks placed after the spec's attacks.  A job of an attack
 * with randomness "transfer" and a seed other than its transfer_seed depends on
 * the job of the same purifier, attack and shard at the transfer_seed.
 */
#ifndef DRQ_SPEC_H
#define DRQ_SPEC_H

#include <jansson.h>
#include <stdint.h>

#include "row.h"
#include "util.h"

typedef enum { DS_NONE, DS_CIFAR10, DS_MNIST, DS_FASHION_MNIST, DS_IMAGENET } drq_dataset_kind;
typedef enum { PUR_NONE, PUR_DDPM, PUR_REVERSE, PUR_DDIM } drq_purifier_kind;
typedef enum { VAR_FIXEDLARGE, VAR_FIXEDSMALL } drq_var_kind;
/* The analyses (spec key "analyses", docs/spec.md) are kinds of the same
 * enumeration: they share the attack dimension of the expansion. */
typedef enum { ATK_PGD, ATK_BPDA, ATK_NOOP, ATK_VARIANCE, ATK_GRADCORR, ATK_SCREEN, ATK_NKINDS } drq_attack_kind;
/* gradcorr's gradient estimators (docs/spec.md §analyses, docs/seeds.md). */
typedef enum { EST_FIXED, EST_FIXED_OTHER, EST_FRESH, EST_EOT, EST_BPDA, EST_NKINDS } drq_estimator;
typedef enum { NORM_LINF, NORM_L2 } drq_norm;
typedef enum { RND_FIXED, RND_FRESH, RND_EOT, RND_TRANSFER } drq_randomness;
typedef enum { GRAD_FULL, GRAD_BPDA } drq_grad;
/* GPU arithmetic of the sweep (CPU workers compute in float32 either way). */
typedef enum { PREC_TF32, PREC_FP32 } drq_precision;

typedef struct {
    drq_dataset_kind kind;
    char *path; /* NULL for kind none */
    int64_t start, count;
} drq_dataset_spec;

typedef struct {
    int present;
    char *arch;
    json_t *config; /* string or object as given; NULL when absent */
    char *weights;
    int bf16;       /* diffusion only: "precision": "fp32" (default, 0) | "bf16" (1; guided-unet only): bf16
                       operands for the UNet's convolutions, linear layers and attention matmuls (docs/spec.md) */
} drq_model_spec;

typedef struct {
    char name[DRQ_NAME_MAX];
    drq_purifier_kind kind;
    int t_star;
    drq_var_kind var;
    int stride;
    int clamp_x0, clamp_out;
    int forward; /* ddim: noise x to t* first (default 1); 0: the deterministic chain from x */
} drq_purifier_spec;

typedef struct {
    char name[DRQ_NAME_MAX];
    drq_attack_kind kind;
    drq_norm norm;
    double eps;
    int steps;
    double rel_stepsize, abs_stepsize; /* exactly one is > 0 */
    int random_start;
    drq_randomness randomness;
    int eot_k, votes;
    int64_t transfer_seed; /* randomness transfer only */
    int transfer_index;    /* its index in seeds[] (set by the parser) */
    int n_uniform;
    double ms_per_image;   /* noop only */
    drq_grad grad;
    int64_t *fail_images;  /* noop only: images that always fail (poison) */
    int nfail_images;
    /* analyses only (kind variance / gradcorr / screen) */
    int n_delta, n_omega;             /* variance */
    drq_estimator estimators[EST_NKINDS]; /* gradcorr: in spec order, distinct */
    int nestimators;
    int save;              /* "save": DRQ_SAVE_* bits, images stored per row (common/images.h) */
} drq_attack_spec;

typedef struct {
    char name[DRQ_NAME_MAX];
    drq_dataset_spec dataset;
    drq_model_spec classifier, diffusion;
    drq_purifier_spec *purifiers;
    int npurifiers;
    /* attacks[0 .. nattacks − nanalyses) are the spec's "attacks", the last
     * nanalyses entries its "analyses" (kinds variance / gradcorr / screen):
     * jobs = purifiers × (attacks + analyses) × seeds × shards */
    drq_attack_spec *attacks;
    int nattacks;
    int nanalyses;
    int64_t *seeds;
    int nseeds;
    int64_t shard_images;
    drq_precision precision; /* "precision": tf32 (default) | fp32 */
} drq_spec;

/* Size limits of a spec (docs/spec.md): array lengths, and the job count
 * purifiers × attacks × seeds × shards, checked without overflow before the
 * attacks are parsed. */
#define DRQ_SPEC_MAX_SEEDS 100000
#define DRQ_SPEC_MAX_LIST 10000 /* purifiers, attacks */
#define DRQ_SPEC_MAX_JOBS INT64_C(100000000)
/* Largest n_delta, n_omega, n_uniform, eot_k of an analysis: the streams of
 * docs/seeds.md reserve 1000 numbers for the δ draws. */
#define DRQ_ANALYSIS_MAX_DRAWS 1000

/* Validates and parses; 0 or -1 + err naming the JSON path. */
int drq_spec_parse(const json_t *root, drq_spec *out, drq_err *err);
/* Same from text / from a file (JSON syntax errors carry line:column). */
int drq_spec_parse_text(const char *text, drq_spec *out, drq_err *err);
int drq_spec_load(const char *path, drq_spec *out, drq_err *err);
void drq_spec_free(drq_spec *s);

/* Canonical JSON (new reference). */
json_t *drq_spec_to_json(const drq_spec *s);
/* Canonical compact text with sorted keys (malloc'd). */
char *drq_spec_canonical(const drq_spec *s);

/* ---- expansion (common/expand.c) ----------------------------------------
 * One job of the expansion. */
typedef struct {
    int64_t seq;
    int purifier, attack, seed_index;
    int64_t seed;
    int64_t image_start, image_count;
    int64_t depends_on_seq; /* -1: none */
} drq_job_desc;

int64_t drq_spec_shards(const drq_spec *s);
/* The products saturate at INT64_MAX instead of overflowing (a parsed spec
 * has at most DRQ_SPEC_MAX_JOBS jobs, and then fewer than 2^63 rows). */
int64_t drq_spec_njobs(const drq_spec *s);
int64_t drq_spec_nrows(const drq_spec *s); /* result rows of the whole sweep */
/* Fills d for 0 <= seq < njobs. */
void drq_spec_job(const drq_spec *s, int64_t seq, drq_job_desc *d);

const char *drq_attack_kind_name(drq_attack_kind k);
/* Whether a kind is an analysis (variance, gradcorr, screen) rather than an attack. */
int drq_kind_is_analysis(drq_attack_kind k);
const char *drq_estimator_name(drq_estimator e);
const char *drq_dataset_kind_name(drq_dataset_kind k); /* the spec spelling, as dataset_load takes it */

const char *drq_precision_name(drq_precision p);

#endif
