/* row.h — one per-image result row (docs/design.md §Metrics), shared by worker, server and CLI.
 *
 * A row is identified by (sweep, purifier, attack, seed, image); everything
 * else is a metric.  "Not available" is NaN for real metrics and DRQ_NA for
 * integer ones; both are stored as SQL NULL and exported as empty CSV cells /
 * JSON null.
 *
 * Rows travel between processes in a packed little-endian binary form
 * (drq_rows_pack / drq_rows_unpack): a RESULT message carries one such frame,
 * and the checkpoint blob of the noop workload embeds one.  Unpacking
 * validates every length and never reads out of bounds.
 */
#ifndef DRQ_ROW_H
#define DRQ_ROW_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util.h"

#define DRQ_NA INT32_MIN     /* missing integer metric */
#define DRQ_NAME_MAX 64      /* purifier / attack / sweep names, with the NUL */
#define DRQ_TAG_MAX 128      /* device and worker strings, with the NUL */

typedef struct {
    /* identity */
    int64_t sweep;
    char purifier[DRQ_NAME_MAX];
    char attack[DRQ_NAME_MAX];
    int64_t seed;
    int64_t image;
    /* labels and predictions */
    int32_t label, clean_pred, adv_pred;
    int32_t clean_correct, robust; /* 0/1 */
    int32_t success_step;          /* first PGD step misclassified, -1 never */
    /* perturbation and distances, [0,1] pixels */
    double delta_l2, delta_linf;
    double dist_init_l2, dist_init_linf;
    double dist_max_l2, dist_max_linf;
    double dist_end_l2, dist_end_linf;
    double ssim_adv, ssim_pur;
    double comp_adv, comp_unif_mean, comp_unif_std;
    /* cost */
    double seconds;
    int64_t unet_evals;
    char device[DRQ_TAG_MAX];
    char worker[DRQ_TAG_MAX];
    char *extra; /* JSON object text or NULL; owned (drq_rows_free) */
    /* images kept by the attack option "save" (common/images.h) or NULL;
     * owned; not a column and not in the packed row: they travel in a
     * section of their own (drq_images_pack) */
    struct drq_row_images *images;
} drq_row;

/* Every column of a row in export order (CSV header, JSON keys, the SQL
 * columns of the results table, server/store.c), as X(name, kind) for every
 * column but the last and L(name, kind) for the last (extra), so that a list
 * can be built without a trailing separator.  kind says how it is stored:
 *   KEY_I64, KEY_STR  identity (sweep, seed, image; purifier, attack)
 *   I32               integer metric, DRQ_NA when not available
 *   DBL               real metric, NaN when not available
 *   I64               unet_evals
 *   STR               device, worker
 *   JSON              extra (JSON object text or NULL)
 * The packed form (drq_rows_pack) keeps its own fixed order. */
#define DRQ_ROW_COLUMNS(X, L)                                                                                 \
    X(sweep, KEY_I64) X(purifier, KEY_STR) X(attack, KEY_STR) X(seed, KEY_I64) X(image, KEY_I64)             \
    X(label, I32) X(clean_pred, I32) X(adv_pred, I32) X(clean_correct, I32) X(robust, I32)                   \
    X(success_step, I32)                                                                                      \
    X(delta_l2, DBL) X(delta_linf, DBL) X(dist_init_l2, DBL) X(dist_init_linf, DBL) X(dist_max_l2, DBL)      \
    X(dist_max_linf, DBL) X(dist_end_l2, DBL) X(dist_end_linf, DBL) X(ssim_adv, DBL) X(ssim_pur, DBL)        \
    X(comp_adv, DBL) X(comp_unif_mean, DBL) X(comp_unif_std, DBL) X(seconds, DBL)                           \
    X(unet_evals, I64) X(device, STR) X(worker, STR) L(extra, JSON)

/* Column indices (DRQ_COL_sweep … DRQ_COL_extra) and counts per kind. */
#define DRQ_ROW_COL_ENUM_(n, k) DRQ_COL_##n,
enum { DRQ_ROW_COLUMNS(DRQ_ROW_COL_ENUM_, DRQ_ROW_COL_ENUM_) DRQ_ROW_NCOLUMNS };
#define DRQ_ROW_IS_I32_KEY_I64 0
#define DRQ_ROW_IS_I32_KEY_STR 0
#define DRQ_ROW_IS_I32_I32 1
#define DRQ_ROW_IS_I32_DBL 0
#define DRQ_ROW_IS_I32_I64 0
#define DRQ_ROW_IS_I32_STR 0
#define DRQ_ROW_IS_I32_JSON 0
#define DRQ_ROW_IS_DBL_KEY_I64 0
#define DRQ_ROW_IS_DBL_KEY_STR 0
#define DRQ_ROW_IS_DBL_I32 0
#define DRQ_ROW_IS_DBL_DBL 1
#define DRQ_ROW_IS_DBL_I64 0
#define DRQ_ROW_IS_DBL_STR 0
#define DRQ_ROW_IS_DBL_JSON 0
#define DRQ_ROW_COUNT_I32_(n, k) +DRQ_ROW_IS_I32_##k
#define DRQ_ROW_COUNT_DBL_(n, k) +DRQ_ROW_IS_DBL_##k
enum {
    DRQ_ROW_NI32 = 0 DRQ_ROW_COLUMNS(DRQ_ROW_COUNT_I32_, DRQ_ROW_COUNT_I32_), /* integer metrics (6) */
    DRQ_ROW_NDBL = 0 DRQ_ROW_COLUMNS(DRQ_ROW_COUNT_DBL_, DRQ_ROW_COUNT_DBL_)  /* real metrics (14) */
};

/* Column names in export order (CSV header, JSON keys, SQL columns). */
extern const char *const drq_row_columns[];
extern const int drq_row_ncolumns;

/* A row with every metric "not available" and no extra. */
void drq_row_init(drq_row *r);

/* Frees the extra strings and images of n rows, then the array itself. */
void drq_rows_free(drq_row *rows, int64_t n);

/* Packs n rows into a fresh buffer (*len bytes). */
void *drq_rows_pack(const drq_row *rows, int64_t n, size_t *len);
/* Unpacks exactly `expect` rows (or any number when expect < 0) from buf;
 * any truncation, trailing byte, over-long string or invalid extra → -1 + err. */
int drq_rows_unpack(const void *buf, size_t len, int64_t expect, drq_row **rows, int64_t *n, drq_err *err);

/* One CSV field: s as it is, or quoted (RFC 4180) when it holds a comma, a
 * quote or a line break; nothing for NULL or "". */
void drq_csv_str(FILE *f, const char *s);
/* Writes the CSV header line / one CSV line (RFC 4180 quoting, %.17g). */
void drq_row_csv_header(FILE *f);
void drq_row_csv(FILE *f, const drq_row *r);
/* Writes one JSON object line (jsonl). */
void drq_row_jsonl(FILE *f, const drq_row *r);

#endif
