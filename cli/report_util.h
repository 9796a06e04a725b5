/* report_util.h — what the writers of `drq report --out` share
 * (report_out.c: attack tables and plots; report_analyses.c: the analysis
 * tables, the fit and their plots): running statistics, in-memory text,
 * CSV / Markdown cells, atomic file writes, and gnuplot. */
#ifndef DRQ_CLI_REPORT_UTIL_H
#define DRQ_CLI_REPORT_UTIL_H

#include <stddef.h>
#include <stdio.h>

typedef struct {
    double n, mean, m2;
} st; /* Welford, NaN skipped */

void st_add(st *s, double x);
double st_sd(const st *s);

/* A text buffer written through a FILE (open_memstream). */
typedef struct {
    FILE *f;
    char *buf;
    size_t len;
} mem;

void mem_open(mem *m);
void mem_close(mem *m);

/* CSV cells: a quoted string, "mean,std," (empty when no data), a count;
 * `last` ends the line. */
void csv_s(FILE *f, const char *s, int last);
void csv_st(FILE *f, const st *s);
void csv_n(FILE *f, double n, int last);
/* Markdown cells: "mean ± std" (std when n > 1, "–" when no data); text with '|' escaped. */
void md_st(FILE *f, const st *s, int prec);
void md_s(FILE *f, const char *s);

/* The output folder; after the first failed write every later one is skipped. */
typedef struct {
    const char *dir;
    int failed;
} outdir;

/* Writes DIR/name atomically (a .tmp file renamed); -1 after a message. */
int rep_write_file(outdir *od, const char *name, const char *text, size_t len);
/* mkdir -p DIR and check it is writable; 0 or -1 after a message. */
int rep_make_dir(const char *dir);

/* ---- gnuplot ---- */
/* A gnuplot string literal. */
void gp_str(FILE *f, const char *s);
extern const int point_types[15], open_point_types[9];
extern const char *const colours[10];
#define NCOLOURS 10
#define NPT 15
/* $DRQ_GNUPLOT, else gnuplot on PATH; NULL when not found (malloc'd). */
char *rep_find_gnuplot(void);
/* Runs gnuplot SCRIPT in dir (its output appended to dir/gnuplot.log); 0 ok. */
int rep_run_gnuplot(const char *exe, const char *dir, const char *script);
/* 1 when dir/name exists and is not empty. */
int rep_nonempty(const char *dir, const char *name);

/* A report.md section: the title, then "Not in this sweep: ABSENT." when rows
 * is 0, else WHAT, the table's Markdown and links to BASE.csv / BASE.md. */
void rep_section(FILE *r, const char *title, const char *what, int rows, const char *base, const mem *md,
                 const char *absent);

#endif
