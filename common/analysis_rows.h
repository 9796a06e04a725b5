/* analysis_rows.h — the rows of the analysis tables (schema/003_analyses.sql)
 * as functions of a results row: a variance, gradcorr or screen job returns
 * one results row per image whose extra JSON carries the kind's measurements
 * (worker/eval/analyses.c); this file is the one mapping from such a row to
 * the rows of variance_results / gradcorr_results / screen_results.  The
 * store inserts what it returns (server/store.c) and `drq results --kind`
 * exports what it returns (cli/cmd_client.c), so the table and the export
 * cannot disagree.
 */
#ifndef DRQ_ANALYSIS_ROWS_H
#define DRQ_ANALYSIS_ROWS_H

#include <jansson.h>
#include <stdio.h>

#include "row.h"
#include "spec.h"

typedef enum { DRQ_AT_NONE = 0, DRQ_AT_VARIANCE, DRQ_AT_GRADCORR, DRQ_AT_SCREEN, DRQ_AT_N } drq_analysis_table;

/* "variance" → DRQ_AT_VARIANCE …; DRQ_AT_NONE for anything else. */
drq_analysis_table drq_analysis_table_parse(const char *kind);
/* "variance_results" … */
const char *drq_analysis_table_name(drq_analysis_table t);
/* The table's columns in order (*n of them). */
const char *const *drq_analysis_columns(drq_analysis_table t, int *n);

/* Which table a results row belongs to (its extra's "analysis"), or DRQ_AT_NONE. */
drq_analysis_table drq_analysis_of(const drq_row *r);

/* The table rows of results row r: a JSON array of arrays, each holding the
 * table's columns in order (integers, reals, strings; null for "not
 * available").  Empty when r is not a row of table t.  Caller decrefs. */
json_t *drq_analysis_rows(const drq_row *r, drq_analysis_table t);

/* Whether n result rows fit a job of this kind: rows of an analysis each map
 * to at least one row of its table, rows of an attack to none (so that no
 * attack row can write into an analysis table).  0 + why naming the row. */
int drq_analysis_check(drq_attack_kind kind, const drq_row *rows, int64_t n, char *why, size_t cap);

/* Export of one table row (an array from drq_analysis_rows): the CSV header
 * / line (RFC 4180 quoting, %.17g), or a JSON object line. */
void drq_analysis_csv_header(FILE *f, drq_analysis_table t);
void drq_analysis_csv(FILE *f, const json_t *values);
void drq_analysis_jsonl(FILE *f, drq_analysis_table t, const json_t *values);

#endif
