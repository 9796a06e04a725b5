/* report_out.h — `drq report SWEEP|FILE.db --out DIR`: the paper-style tables
 * (Markdown and CSV) and plots (PNG and SVG, drawn by gnuplot from a generated
 * script and data file) of a sweep's attack rows.  docs/report.md.
 *
 * Rows are added one by one (any order); drq_report_out_write then reads the
 * sweeps' specs from the database file when there is one (attack randomness,
 * gradient, transfer source seed; purifier order), else infers the randomness
 * from the attack names (a remote sweep: drq-server does not send specs), and
 * writes into DIR (created, with its parents, when missing):
 *   report.md                 every table, links to the CSVs and the images,
 *                             and what is not in this sweep;
 *   table1-distances.{md,csv} distances to x (L2, L∞) init / max / end, SSIM;
 *   table3-fixed-vs-random.{md,csv}  clean and robust accuracy, fixed ω
 *                             against fresh ω and EOT (only the columns the
 *                             sweep has);
 *   tableS2-transfer.{md,csv} transfer across ω (randomness "transfer");
 *   table6-compression.{md,csv} compression rate robust / non-robust / uniform;
 *   fig3-compression-robustness.{png,svg}, fig1c-distances.{png,svg} and the
 *                             .gp scripts and .dat files that drew them;
 *   images-s<sweep>-<purifier>-<attack>.png  the image grid of each cell
 *                             whose attack has "save" (cli/image_grid.h;
 *                             database files only).
 * Each table and plot only when the sweep has its data.  Without gnuplot
 * (or when it fails) the tables are still written, report.md says so and a
 * warning goes to stderr; the exit status stays 0.  $DRQ_GNUPLOT names the
 * gnuplot binary (default: gnuplot on PATH).
 */
#ifndef DRQ_REPORT_OUT_H
#define DRQ_REPORT_OUT_H

#include "common/row.h"

typedef struct drq_report_out drq_report_out;

drq_report_out *drq_report_out_new(void);
void drq_report_out_add(drq_report_out *ro, const drq_row *row);
/* Writes DIR; db is the database file the rows came from (its specs are
 * read), or NULL for rows from drq-server, named by source (e.g. "sweep 3").
 * Returns 0, or 1 after printing "drq: report: …" (DIR not writable). */
int drq_report_out_write(drq_report_out *ro, const char *db, const char *source, const char *dir);
void drq_report_out_free(drq_report_out *ro);

#endif
