/* report.h — aggregates per-image result rows into the summary table of a
 * sweep (docs/design.md §Metrics "Aggregates"), one line per purifier × attack:
 *   clean and robust accuracy, mean ± std over seeds;
 *   mean ‖δ‖₂; distances to the clean image (L2) init / max / end, mean ± std;
 *   SSIM of x_adv and of P(x_adv), mean ± std;
 *   compression rate of the adversarial δ split by robust / non-robust images,
 *   and of uniform noise;
 *   compute time (sum of per-image seconds).
 * Rows of the analysis kinds (common/analysis_rows.h) are only counted: the
 * table ends with a line naming them.  Used by `drq run` and by a later
 * `drq report`; rows can come in any order.
 */
#ifndef DRQ_REPORT_H
#define DRQ_REPORT_H

#include <jansson.h>
#include <stdio.h>

#include "row.h"

typedef struct drq_report drq_report;

drq_report *drq_report_new(void);
void drq_report_add(drq_report *r, const drq_row *row);
/* Aligned text table. */
void drq_report_print(const drq_report *r, FILE *f);
/* The same numbers as JSON: [{"purifier", "attack", "clean_acc": {mean,std}, …}]. */
json_t *drq_report_json(const drq_report *r);
void drq_report_free(drq_report *r);

#endif
