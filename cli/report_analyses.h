/* report_analyses.h — the analysis part of `drq report --out DIR`
 * (docs/report.md): the rows of the variance, gradcorr and screen job kinds
 * (common/analysis_rows.h) become
 *   table5-gradcorr.{md,csv}      cosine between gradient estimators;
 *   table7-screen.{md,csv}        per purifier config: t*, clean accuracy at
 *                                 P_ω(x), uniform compression rate, fixed-ω
 *                                 robust accuracy where attacked, and the
 *                                 robust accuracy the fit predicts;
 *   tableS6-variance.{md,csv}     variance decomposition, SNR, radii, cosines;
 *   fig3-fit.{png,svg}            robust accuracy against compression with
 *                                 the fitted logistic curve and predictions;
 *   fig4-tstar.{png,svg}          compression and robust accuracy over t*;
 *   fig2f-radii.{png,svg}         histograms of the per-image radii;
 * each only when the sweep has its data.  The fit (common/logistic.h) uses,
 * per purifier config, the screen's mean compression rate and the robust
 * count of a fixed-ω full-gradient PGD attack; with fewer than 3 such
 * configs it says it cannot fit.
 */
#ifndef DRQ_CLI_REPORT_ANALYSES_H
#define DRQ_CLI_REPORT_ANALYSES_H

#include <stdint.h>
#include <stdio.h>

#include "common/row.h"
#include "common/spec.h"

typedef struct report_an report_an;

report_an *report_an_new(void);
void report_an_free(report_an *a);

/* Takes r when it is a row of an analysis kind (returns 1), else returns 0. */
int report_an_add(report_an *a, const drq_row *r);
/* Sweeps the analysis rows came from (the report reads their specs). */
int report_an_sweeps(const report_an *a, int64_t *out, int max);

/* What the attack part knows: a purifier of a spec (order, kind, t*), and a
 * fixed-ω full-gradient PGD cell's robust count over all its rows. */
void report_an_purifier(report_an *a, const drq_purifier_spec *p, int order);
void report_an_attacked(report_an *a, const char *purifier, const char *attack, double robust_ok, double known);

/* Writes the tables, plot data and gnuplot scripts into dir (through
 * report_util's outdir), draws the plots with gnuplot (NULL: none, with a
 * note), and appends the report.md sections to md.  Returns the number of
 * tables written; *plots gets the number of plots drawn. */
int report_an_write(report_an *a, const char *dir, void *outdir_, const char *gnuplot, FILE *md, int *plots);

#endif
