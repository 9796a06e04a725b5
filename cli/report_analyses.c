/* report_analyses.c — see report_analyses.h and docs/report.md. */
#include "report_analyses.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/report_util.h"
#include "common/analysis_rows.h"
#include "common/logistic.h"
#include "common/util.h"

/* ---- accumulation ------------------------------------------------------------------ */

/* The per-image measurements of a variance row that the report shows. */
enum { V_TOTAL, V_INPUT, V_INTERNAL, V_SNR, V_R_INIT, V_R_OMEGA, V_R_DELTA, V_R_BOTH, V_COS_OMEGA, V_COS_DELTA, V_N };
static const char *const var_cols[V_N] = {"var_total",   "var_input",          "var_internal",       "snr",
                                          "radius_init", "radius_fixed_omega", "radius_fixed_delta", "radius_both",
                                          "cos_same_omega", "cos_same_delta"};
static const char *const var_heads[V_N] = {"total", "input (signal)", "internal (noise)", "SNR",
                                           "radius init", "radius fixed ω", "radius fixed δ", "radius both",
                                           "cos same ω", "cos same δ"};

typedef struct {
    char pur[DRQ_NAME_MAX], name[DRQ_NAME_MAX];
    double *v[V_N]; /* per image, NaN when not available */
    int n, cap;
} var_group;

typedef struct {
    char pur[DRQ_NAME_MAX], name[DRQ_NAME_MAX], at[DRQ_NAME_MAX], ea[32], eb[32];
    st cos;
} gc_group;

typedef struct {
    char pur[DRQ_NAME_MAX], name[DRQ_NAME_MAX];
    st comp;                 /* per-image mean compression rate of uniform δ */
    double clean_ok, clean_n;
} scr_group;

typedef struct {
    char pur[DRQ_NAME_MAX];
    int order, t_star, known;
    drq_purifier_kind kind;
} pur_info;

typedef struct {
    char pur[DRQ_NAME_MAX], atk[DRQ_NAME_MAX];
    double ok, n;
} attacked;

struct report_an {
    var_group *var;
    int nvar;
    gc_group *gc;
    int ngc;
    scr_group *scr;
    int nscr;
    pur_info *pur;
    int npur;
    attacked *atk;
    int natk;
    int64_t sweeps[64];
    int nsweeps;
};

report_an *report_an_new(void) { return xcalloc(1, sizeof(report_an)); }

void report_an_free(report_an *a) {
    if (!a) return;
    for (int i = 0; i < a->nvar; i++)
        for (int k = 0; k < V_N; k++) free(a->var[i].v[k]);
    free(a->var), free(a->gc), free(a->scr), free(a->pur), free(a->atk);
    free(a);
}

int report_an_sweeps(const report_an *a, int64_t *out, int max) {
    int n = a->nsweeps < max ? a->nsweeps : max;
    memcpy(out, a->sweeps, sizeof *out * (size_t)n);
    return n;
}

/* Column c of a table row as a real (NaN for null or absent). */
static double colv(const json_t *row, const char *const *cols, int ncols, const char *name) {
    for (int c = 0; c < ncols; c++)
        if (!strcmp(cols[c], name)) {
            const json_t *v = json_array_get(row, (size_t)c);
            return json_is_number(v) ? json_number_value(v) : NAN;
        }
    return NAN;
}
static const char *cols(const json_t *row, const char *const *cols, int ncols, const char *name) {
    for (int c = 0; c < ncols; c++)
        if (!strcmp(cols[c], name)) {
            const char *s = json_string_value(json_array_get(row, (size_t)c));
            return s ? s : "";
        }
    return "";
}

static void note_sweep(report_an *a, int64_t sweep) {
    for (int i = 0; i < a->nsweeps; i++)
        if (a->sweeps[i] == sweep) return;
    if (a->nsweeps < 64) a->sweeps[a->nsweeps++] = sweep;
}

int report_an_add(report_an *a, const drq_row *r) {
    drq_analysis_table t = drq_analysis_of(r);
    if (t == DRQ_AT_NONE) return 0;
    note_sweep(a, r->sweep);
    int nc;
    const char *const *cn = drq_analysis_columns(t, &nc);
    json_t *rows = drq_analysis_rows(r, t);
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        if (t == DRQ_AT_VARIANCE) {
            var_group *g = NULL;
            for (int k = 0; k < a->nvar && !g; k++)
                if (!strcmp(a->var[k].pur, r->purifier) && !strcmp(a->var[k].name, r->attack)) g = &a->var[k];
            if (!g) {
                a->var = xrealloc(a->var, (size_t)(a->nvar + 1) * sizeof *a->var);
                g = &a->var[a->nvar++];
                memset(g, 0, sizeof *g);
                snprintf(g->pur, sizeof g->pur, "%s", r->purifier);
                snprintf(g->name, sizeof g->name, "%s", r->attack);
            }
            if (g->n == g->cap) {
                g->cap = g->cap ? 2 * g->cap : 64;
                for (int k = 0; k < V_N; k++) g->v[k] = xrealloc(g->v[k], sizeof(double) * (size_t)g->cap);
            }
            for (int k = 0; k < V_N; k++) g->v[k][g->n] = colv(row, cn, nc, var_cols[k]);
            g->n++;
        } else if (t == DRQ_AT_GRADCORR) {
            const char *at = cols(row, cn, nc, "at"), *ea = cols(row, cn, nc, "est_a"), *eb = cols(row, cn, nc, "est_b");
            gc_group *g = NULL;
            for (int k = 0; k < a->ngc && !g; k++)
                if (!strcmp(a->gc[k].pur, r->purifier) && !strcmp(a->gc[k].name, r->attack) &&
                    !strcmp(a->gc[k].at, at) && !strcmp(a->gc[k].ea, ea) && !strcmp(a->gc[k].eb, eb))
                    g = &a->gc[k];
            if (!g) {
                a->gc = xrealloc(a->gc, (size_t)(a->ngc + 1) * sizeof *a->gc);
                g = &a->gc[a->ngc++];
                memset(g, 0, sizeof *g);
                snprintf(g->pur, sizeof g->pur, "%s", r->purifier);
                snprintf(g->name, sizeof g->name, "%s", r->attack);
                snprintf(g->at, sizeof g->at, "%s", at);
                snprintf(g->ea, sizeof g->ea, "%s", ea);
                snprintf(g->eb, sizeof g->eb, "%s", eb);
            }
            st_add(&g->cos, colv(row, cn, nc, "cosine"));
        } else {
            scr_group *g = NULL;
            for (int k = 0; k < a->nscr && !g; k++)
                if (!strcmp(a->scr[k].pur, r->purifier) && !strcmp(a->scr[k].name, r->attack)) g = &a->scr[k];
            if (!g) {
                a->scr = xrealloc(a->scr, (size_t)(a->nscr + 1) * sizeof *a->scr);
                g = &a->scr[a->nscr++];
                memset(g, 0, sizeof *g);
                snprintf(g->pur, sizeof g->pur, "%s", r->purifier);
                snprintf(g->name, sizeof g->name, "%s", r->attack);
            }
            st_add(&g->comp, colv(row, cn, nc, "comp_unif_mean"));
            double cc = colv(row, cn, nc, "clean_correct");
            if (!isnan(cc)) g->clean_ok += cc, g->clean_n += 1;
        }
    }
    json_decref(rows);
    return 1;
}

static pur_info *pur_of(report_an *a, const char *name) {
    for (int i = 0; i < a->npur; i++)
        if (!strcmp(a->pur[i].pur, name)) return &a->pur[i];
    a->pur = xrealloc(a->pur, (size_t)(a->npur + 1) * sizeof *a->pur);
    pur_info *p = &a->pur[a->npur];
    memset(p, 0, sizeof *p);
    snprintf(p->pur, sizeof p->pur, "%s", name);
    p->order = 1000000 + a->npur++; /* unknown purifiers after the spec's, first seen first */
    return p;
}

void report_an_purifier(report_an *a, const drq_purifier_spec *ps, int order) {
    pur_info *p = pur_of(a, ps->name);
    p->order = order, p->t_star = ps->kind == PUR_NONE ? 0 : ps->t_star, p->kind = ps->kind, p->known = 1;
}

void report_an_attacked(report_an *a, const char *purifier, const char *attack, double robust_ok, double known) {
    if (!(known > 0)) return;
    a->atk = xrealloc(a->atk, (size_t)(a->natk + 1) * sizeof *a->atk);
    attacked *t = &a->atk[a->natk++];
    snprintf(t->pur, sizeof t->pur, "%s", purifier);
    snprintf(t->atk, sizeof t->atk, "%s", attack);
    t->ok = robust_ok, t->n = known;
}

static int order_of(report_an *a, const char *pur) { return pur_of(a, pur)->order; }

static const char *pkind(drq_purifier_kind k) {
    return k == PUR_DDPM ? "ddpm" : k == PUR_REVERSE ? "reverse" : k == PUR_DDIM ? "ddim" : "none";
}

/* Groups in the spec's purifier order, then by analysis name (first seen
 * first otherwise: qsort_r is not stable, so ties keep their index). */
static int cmp_pur(report_an *a, const char *pa, const char *pb, const char *na, const char *nb) {
    int oa = order_of(a, pa), ob = order_of(a, pb);
    if (oa != ob) return oa < ob ? -1 : 1;
    return strcmp(na, nb);
}
static int by_var(const void *x, const void *y, void *ctx) {
    const var_group *a = x, *b = y;
    int c = cmp_pur(ctx, a->pur, b->pur, a->name, b->name);
    return c ? c : (a < b ? -1 : a > b);
}
static int by_gc(const void *x, const void *y, void *ctx) {
    const gc_group *a = x, *b = y;
    int c = cmp_pur(ctx, a->pur, b->pur, a->name, b->name);
    return c ? c : (a < b ? -1 : a > b);
}

/* ---- Table 5: gradient correlations -------------------------------------------------- */

static int table5(report_an *a, FILE *md, FILE *csv) {
    if (!a->ngc) return 0;
    qsort_r(a->gc, (size_t)a->ngc, sizeof *a->gc, by_gc, a);
    fputs("| purifier | analysis | at | estimator A | estimator B | cosine (mean ± std over images) | images |\n"
          "| --- | --- | --- | --- | --- | --- | ---: |\n",
          md);
    fputs("purifier,analysis,at,est_a,est_b,cosine_mean,cosine_std,images\n", csv);
    for (int i = 0; i < a->ngc; i++) {
        const gc_group *g = &a->gc[i];
        fputc('|', md);
        md_s(md, g->pur), md_s(md, g->name), md_s(md, g->at), md_s(md, g->ea), md_s(md, g->eb);
        md_st(md, &g->cos, 3);
        fprintf(md, " %.0f |\n", g->cos.n);
        csv_s(csv, g->pur, 0), csv_s(csv, g->name, 0), csv_s(csv, g->at, 0), csv_s(csv, g->ea, 0), csv_s(csv, g->eb, 0);
        csv_st(csv, &g->cos);
        csv_n(csv, g->cos.n, 1);
    }
    return a->ngc;
}

/* ---- Table S6: variance decomposition ------------------------------------------------ */

static int tableS6(report_an *a, FILE *md, FILE *csv) {
    if (!a->nvar) return 0;
    qsort_r(a->var, (size_t)a->nvar, sizeof *a->var, by_var, a);
    fputs("| purifier | analysis | images |", md);
    for (int k = 0; k < V_N; k++) fprintf(md, " %s |", var_heads[k]);
    fputs("\n| --- | --- | ---: |", md);
    for (int k = 0; k < V_N; k++) fputs(" --- |", md);
    fputc('\n', md);
    fputs("purifier,analysis,images", csv);
    for (int k = 0; k < V_N; k++) fprintf(csv, ",%s_mean,%s_std", var_cols[k], var_cols[k]);
    fputc('\n', csv);
    for (int i = 0; i < a->nvar; i++) {
        const var_group *g = &a->var[i];
        fputc('|', md);
        md_s(md, g->pur), md_s(md, g->name);
        fprintf(md, " %d |", g->n);
        csv_s(csv, g->pur, 0), csv_s(csv, g->name, 0);
        fprintf(csv, "%d", g->n);
        for (int k = 0; k < V_N; k++) {
            st s = {0};
            for (int j = 0; j < g->n; j++) st_add(&s, g->v[k][j]);
            if (k == V_SNR && s.n > 0 && s.mean < 0.01) {
                if (s.n > 1) fprintf(md, " %.2e ± %.1e |", s.mean, st_sd(&s));
                else fprintf(md, " %.2e |", s.mean);
            } else {
                md_st(md, &s, 3);
            }
            fputc(',', csv);
            if (s.n > 0) fprintf(csv, "%.10g,%.10g", s.mean, st_sd(&s));
            else fputc(',', csv);
        }
        fputc('\n', md);
        fputc('\n', csv);
    }
    return a->nvar;
}

/* ---- Table 7 and the fit ------------------------------------------------------------- */

/* One fit: screen `scr` against attack `atk` (the robust counts of its cells). */
typedef struct {
    char scr[DRQ_NAME_MAX], atk[DRQ_NAME_MAX];
    drq_logistic f;
} fit;

static const attacked *attacked_of(const report_an *a, const char *pur, const char *atk) {
    for (int i = 0; i < a->natk; i++)
        if (!strcmp(a->atk[i].pur, pur) && !strcmp(a->atk[i].atk, atk)) return &a->atk[i];
    return NULL;
}

static int by_pur_order(const void *pa, const void *pb, void *ctx) {
    report_an *a = ctx;
    const scr_group *x = pa, *y = pb;
    int c = strcmp(x->name, y->name);
    if (c) return c;
    int ox = order_of(a, x->pur), oy = order_of(a, y->pur);
    return (ox > oy) - (ox < oy);
}

/* Distinct names: screens (from a->scr) and attacked attacks (a->atk). */
static int distinct(char (*out)[DRQ_NAME_MAX], int max, const char *const *names, int n) {
    int m = 0;
    for (int i = 0; i < n; i++) {
        int seen = 0;
        for (int j = 0; j < m && !seen; j++) seen = !strcmp(out[j], names[i]);
        if (!seen && m < max) snprintf(out[m++], DRQ_NAME_MAX, "%.63s", names[i]);
    }
    return m;
}

static int fits_compute(report_an *a, fit **out) {
    const char **sn = xcalloc((size_t)a->nscr + 1, sizeof *sn), **an = xcalloc((size_t)a->natk + 1, sizeof *an);
    for (int i = 0; i < a->nscr; i++) sn[i] = a->scr[i].name;
    for (int i = 0; i < a->natk; i++) an[i] = a->atk[i].atk;
    char screens[16][DRQ_NAME_MAX], attacks[16][DRQ_NAME_MAX];
    int ns = distinct(screens, 16, sn, a->nscr), na = distinct(attacks, 16, an, a->natk);
    free(sn), free(an);
    fit *f = xcalloc((size_t)(ns * na) + 1, sizeof *f);
    int nf = 0;
    for (int s = 0; s < ns; s++)
        for (int t = 0; t < na; t++) {
            double x[256], k[256], n[256];
            int m = 0;
            for (int i = 0; i < a->nscr && m < 256; i++) {
                const scr_group *g = &a->scr[i];
                const attacked *at = strcmp(g->name, screens[s]) ? NULL : attacked_of(a, g->pur, attacks[t]);
                if (!at || g->comp.n == 0) continue;
                x[m] = g->comp.mean, k[m] = at->ok, n[m] = at->n, m++;
            }
            if (!m) continue;
            snprintf(f[nf].scr, sizeof f[nf].scr, "%.63s", screens[s]);
            snprintf(f[nf].atk, sizeof f[nf].atk, "%.63s", attacks[t]);
            f[nf].f = drq_logistic_fit(x, k, n, m);
            nf++;
        }
    *out = f;
    return nf;
}

static int table7(report_an *a, const fit *fits, int nfits, FILE *md, FILE *csv) {
    if (!a->nscr) return 0;
    qsort_r(a->scr, (size_t)a->nscr, sizeof *a->scr, by_pur_order, a);
    fputs("| screen | purifier | kind | t* | images | clean acc % | compression rate (mean ± std over images) |", md);
    fputs("screen,purifier,kind,t_star,images,clean_acc,comp_mean,comp_std", csv);
    for (int j = 0; j < nfits; j++) {
        fprintf(md, " robust %% %s (attacked) | predicted %% [95%%] |", fits[j].atk);
        fprintf(csv, ",robust_%s,predicted_%s,predicted_se_%s,predicted_lo_%s,predicted_hi_%s", fits[j].atk,
                fits[j].atk, fits[j].atk, fits[j].atk, fits[j].atk);
    }
    fputs("\n| --- | --- | --- | ---: | ---: | ---: | --- |", md);
    for (int j = 0; j < nfits; j++) fputs(" ---: | --- |", md);
    fputc('\n', md);
    fputc('\n', csv);
    for (int i = 0; i < a->nscr; i++) {
        const scr_group *g = &a->scr[i];
        pur_info *p = pur_of(a, g->pur);
        fputc('|', md);
        md_s(md, g->name), md_s(md, g->pur);
        fprintf(md, " %s |", p->known ? pkind(p->kind) : "?");
        if (p->known) fprintf(md, " %d |", p->t_star);
        else fputs(" ? |", md);
        fprintf(md, " %.0f |", g->clean_n);
        if (g->clean_n > 0) fprintf(md, " %.1f |", 100 * g->clean_ok / g->clean_n);
        else fputs(" – |", md);
        md_st(md, &g->comp, 3);
        csv_s(csv, g->name, 0), csv_s(csv, g->pur, 0), csv_s(csv, p->known ? pkind(p->kind) : "", 0);
        if (p->known) fprintf(csv, "%d,", p->t_star);
        else fputc(',', csv);
        fprintf(csv, "%.0f,", g->clean_n);
        if (g->clean_n > 0) fprintf(csv, "%.10g,", 100 * g->clean_ok / g->clean_n);
        else fputc(',', csv);
        if (g->comp.n > 0) fprintf(csv, "%.10g,%.10g", g->comp.mean, st_sd(&g->comp));
        else fputc(',', csv);
        for (int j = 0; j < nfits; j++) {
            const attacked *at = strcmp(fits[j].scr, g->name) ? NULL : attacked_of(a, g->pur, fits[j].atk);
            if (at) fprintf(md, " %.1f |", 100 * at->ok / at->n), fprintf(csv, ",%.10g", 100 * at->ok / at->n);
            else fputs(" – |", md), fputc(',', csv);
            if (fits[j].f.ok && !strcmp(fits[j].scr, g->name) && g->comp.n > 0) {
                double pp, se, lo, hi;
                drq_logistic_predict(&fits[j].f, g->comp.mean, &pp, &se, &lo, &hi);
                fprintf(md, " %.1f [%.1f, %.1f] |", 100 * pp, 100 * lo, 100 * hi);
                fprintf(csv, ",%.10g,%.10g,%.10g,%.10g", 100 * pp, 100 * se, 100 * lo, 100 * hi);
            } else {
                fputs(" – |", md);
                fputs(",,,,", csv);
            }
        }
        fputc('\n', md);
        fputc('\n', csv);
    }
    return a->nscr;
}

/* ---- plots ----------------------------------------------------------------------------- */

static void gp_both(FILE *gp, const char *base, int w, int h, const char *body) {
    fprintf(gp, "# drq report (gnuplot %s.gp in this folder redraws it)\n"
                "set encoding utf8\nset terminal pngcairo noenhanced size %d,%d font \"sans,10\"\n"
                "set output \"%s.png\"\n%s"
                "set terminal svg noenhanced size %d,%d dynamic font \"sans,10\"\nset output \"%s.svg\"\n%s",
            base, w, h, base, body, w, h, base, body);
}

/* Fig. 3 with the fit: attacked configs (filled, binomial standard error),
 * the fitted curve, and the predictions for every screened config (open, 95%). */
static int fig3fit(report_an *a, const fit *fits, int nfits, FILE *dat, FILE *gp) {
    mem body;
    mem_open(&body);
    FILE *b = body.f;
    int blocks = 0, first = 1;
    fputs("set title \"Fixed-ω robust accuracy against the uniform compression rate, with the logistic fit\"\n"
          "set xlabel \"compression rate of uniform noise (screen; mean over images)\"\n"
          "set ylabel \"robust accuracy %\"\nset grid\nset key outside right top\nset yrange [-5:105]\n"
          "set offsets graph 0.05, graph 0.05, 0, 0\nset samples 200\nplot ",
          b);
    for (int j = 0; j < nfits; j++) {
        const fit *F = &fits[j];
        if (!F->f.ok) continue;
        double xmin = INFINITY, xmax = -INFINITY;
        fprintf(dat, "# attacked configs of %s / %s: compression, robust %%, standard error %%\n", F->scr, F->atk);
        for (int i = 0; i < a->nscr; i++) {
            const scr_group *g = &a->scr[i];
            const attacked *at = strcmp(g->name, F->scr) ? NULL : attacked_of(a, g->pur, F->atk);
            if (!g->comp.n || strcmp(g->name, F->scr)) continue;
            xmin = fmin(xmin, g->comp.mean), xmax = fmax(xmax, g->comp.mean);
            if (!at) continue;
            double p = at->ok / at->n;
            fprintf(dat, "%.10g %.10g %.10g\n", g->comp.mean, 100 * p, 100 * sqrt(p * (1 - p) / at->n));
        }
        fputs("\n\n", dat);
        fprintf(dat, "# predictions of %s / %s: compression, predicted %%, 95%% low, 95%% high\n", F->scr, F->atk);
        for (int i = 0; i < a->nscr; i++) {
            const scr_group *g = &a->scr[i];
            if (!g->comp.n || strcmp(g->name, F->scr)) continue;
            double p, se, lo, hi;
            drq_logistic_predict(&F->f, g->comp.mean, &p, &se, &lo, &hi);
            fprintf(dat, "%.10g %.10g %.10g %.10g\n", g->comp.mean, 100 * p, 100 * lo, 100 * hi);
        }
        fputs("\n\n", dat);
        double pad = 0.1 * (xmax - xmin);
        const char *col = colours[j % NCOLOURS];
        fprintf(b, "%s[%.6g:%.6g] 100/(1+exp(-(%.10g + %.10g*x))) with lines lw 2 lc rgb \"%s\" title ",
                first ? "" : ", \\\n     ", xmin - pad, xmax + pad, F->f.a, F->f.b, col);
        char t[3 * DRQ_NAME_MAX];
        snprintf(t, sizeof t, "fit %s (RMSE %.1f%%)", F->atk, 100 * F->f.rmse);
        gp_str(b, t);
        fprintf(b, ", \\\n     \"fig3-fit.dat\" index %d using 1:2:3 with yerrorbars pt 7 ps 1.5 lc rgb \"%s\" title ",
                blocks, col);
        snprintf(t, sizeof t, "%s attacked", F->atk);
        gp_str(b, t);
        fprintf(b, ", \\\n     \"fig3-fit.dat\" index %d using 1:2:3:4 with yerrorbars pt 6 ps 1.5 lc rgb \"%s\" title ",
                blocks + 1, col);
        snprintf(t, sizeof t, "%s predicted (95%%)", F->atk);
        gp_str(b, t);
        blocks += 2, first = 0;
    }
    fputc('\n', b);
    mem_close(&body);
    if (blocks) gp_both(gp, "fig3-fit", 1000, 600, body.buf);
    free(body.buf);
    return blocks;
}

/* Fig. 4: compression (left axis) and robust accuracy (right axis) over t*, a line per purifier kind. */
/* Screen groups by name, then t* (a line over t* must not zigzag in the specs' order). */
static int by_tstar(const void *pa, const void *pb, void *ctx) {
    report_an *a = ctx;
    const scr_group *x = pa, *y = pb;
    int c = strcmp(x->name, y->name);
    if (c) return c;
    int tx = pur_of(a, x->pur)->t_star, ty = pur_of(a, y->pur)->t_star;
    return tx != ty ? (tx < ty ? -1 : 1) : by_pur_order(pa, pb, ctx);
}

static int fig4(report_an *a, const fit *fits, int nfits, FILE *dat, FILE *gp) {
    if (a->nscr > 1) qsort_r(a->scr, (size_t)a->nscr, sizeof *a->scr, by_tstar, a); /* a->scr may be NULL */
    mem body;
    mem_open(&body);
    FILE *b = body.f;
    int blocks = 0;
    fputs("set title \"Compression rate (left) and fixed-ω robust accuracy (right) over t*\"\n"
          "set xlabel \"t*\"\nset ylabel \"compression rate of uniform noise\"\nset y2label \"robust accuracy %\"\n"
          "set y2range [-5:105]\nset ytics nomirror\nset y2tics\nset grid\nset key outside right top\nplot ",
          b);
    static const drq_purifier_kind kinds[3] = {PUR_DDPM, PUR_REVERSE, PUR_DDIM};
    char screens[16][DRQ_NAME_MAX];
    const char **sn = xcalloc((size_t)a->nscr + 1, sizeof *sn);
    for (int i = 0; i < a->nscr; i++) sn[i] = a->scr[i].name;
    int ns = distinct(screens, 16, sn, a->nscr);
    free(sn);
    for (int s = 0; s < ns; s++)
        for (int k = 0; k < 3; k++) {
            int m = 0;
            for (int i = 0; i < a->nscr; i++) {
                const scr_group *g = &a->scr[i];
                pur_info *p = pur_of(a, g->pur);
                if (strcmp(g->name, screens[s]) || !p->known || p->kind != kinds[k] || !g->comp.n) continue;
                if (!m) fprintf(dat, "# %s, %s: t*, compression mean, std\n", screens[s], pkind(kinds[k]));
                fprintf(dat, "%d %.10g %.10g\n", p->t_star, g->comp.mean, st_sd(&g->comp));
                m++;
            }
            if (!m) continue;
            fputs("\n\n", dat);
            char t[2 * DRQ_NAME_MAX + 32];
            snprintf(t, sizeof t, "%s compression (%.63s)", pkind(kinds[k]), screens[s]);
            fprintf(b, "%s\"fig4-tstar.dat\" index %d using 1:2:3 with yerrorlines lw 2 pt 7 lc rgb \"%s\" title ",
                    blocks ? ", \\\n     " : "", blocks, colours[k % NCOLOURS]);
            gp_str(b, t);
            blocks++;
            for (int j = 0; j < nfits; j++) {
                if (strcmp(fits[j].scr, screens[s])) continue;
                int mm = 0;
                for (int i = 0; i < a->nscr; i++) {
                    const scr_group *g = &a->scr[i];
                    pur_info *p = pur_of(a, g->pur);
                    if (strcmp(g->name, screens[s]) || !p->known || p->kind != kinds[k] || !g->comp.n) continue;
                    const attacked *at = attacked_of(a, g->pur, fits[j].atk);
                    double pp = NAN, se, lo = NAN, hi = NAN;
                    if (fits[j].f.ok) drq_logistic_predict(&fits[j].f, g->comp.mean, &pp, &se, &lo, &hi);
                    if (!at && isnan(pp)) continue;
                    if (!mm) fprintf(dat, "# %s, %s, %s: t*, robust %% (attacked or NaN), predicted %%, low, high\n",
                                     screens[s], pkind(kinds[k]), fits[j].atk);
                    fprintf(dat, "%d %.10g %.10g %.10g %.10g\n", p->t_star, at ? 100 * at->ok / at->n : NAN, 100 * pp,
                            100 * lo, 100 * hi);
                    mm++;
                }
                if (!mm) continue;
                fputs("\n\n", dat);
                snprintf(t, sizeof t, "%s robust %s", pkind(kinds[k]), fits[j].atk);
                fprintf(b, ", \\\n     \"fig4-tstar.dat\" index %d using 1:2 axes x1y2 with linespoints lw 2 dt 2 pt 5 "
                           "lc rgb \"%s\" title ",
                        blocks, colours[k % NCOLOURS]);
                gp_str(b, t);
                if (fits[j].f.ok) {
                    snprintf(t, sizeof t, "%s predicted %s (95%%)", pkind(kinds[k]), fits[j].atk);
                    fprintf(b, ", \\\n     \"fig4-tstar.dat\" index %d using 1:3:4:5 axes x1y2 with yerrorbars pt 4 "
                               "lc rgb \"%s\" title ",
                            blocks, colours[k % NCOLOURS]);
                    gp_str(b, t);
                }
                blocks++;
            }
        }
    fputc('\n', b);
    mem_close(&body);
    if (blocks) gp_both(gp, "fig4-tstar", 1000, 600, body.buf);
    free(body.buf);
    return blocks;
}

/* Fig. 2f: histograms of the per-image radii (fixed ω, fixed δ, both), a panel
 * each, a line per purifier × variance analysis; 20 bins over the panel's range. */
static int fig2f(report_an *a, FILE *dat, FILE *gp) {
    if (!a->nvar) return 0;
    static const int panels[3] = {V_R_OMEGA, V_R_DELTA, V_R_BOTH};
    static const char *const titles[3] = {"fixed ω, δ varying (compression)", "fixed δ, ω varying (expansion)",
                                          "both varying"};
    mem body;
    mem_open(&body);
    FILE *b = body.f;
    fputs("set multiplot layout 1,3 title \"Radii: mean distance of P(x+δ) to its centroid, per image\"\n"
          "set style fill transparent solid 0.35\nset grid ytics\nset key top right font \",9\"\n"
          "set ylabel \"images\"\n",
          b);
    int block = 0;
    for (int q = 0; q < 3; q++) {
        int k = panels[q];
        double lo = INFINITY, hi = -INFINITY;
        for (int i = 0; i < a->nvar; i++)
            for (int j = 0; j < a->var[i].n; j++)
                if (!isnan(a->var[i].v[k][j])) lo = fmin(lo, a->var[i].v[k][j]), hi = fmax(hi, a->var[i].v[k][j]);
        fputs("set title ", b);
        gp_str(b, titles[q]);
        fputs("\nset xlabel \"radius (L2, [0,1] pixels)\"\n", b);
        if (!(hi >= lo)) {
            fputs("unset key\nplot NaN notitle\nset key\n", b);
            continue;
        }
        double w = hi > lo ? (hi - lo) / 20 : fmax(1e-3, fabs(lo) * 0.05);
        fprintf(b, "set boxwidth %.10g\nplot ", w);
        for (int i = 0; i < a->nvar; i++) {
            int cnt[21] = {0};
            for (int j = 0; j < a->var[i].n; j++) {
                double v = a->var[i].v[k][j];
                if (isnan(v)) continue;
                int bin = (int)((v - lo) / w);
                cnt[bin < 0 ? 0 : bin > 20 ? 20 : bin]++;
            }
            fprintf(dat, "# %s / %s, %s: bin centre, images\n", a->var[i].pur, a->var[i].name, var_cols[k]);
            for (int c = 0; c <= 20; c++)
                if (c < 20 || cnt[c]) fprintf(dat, "%.10g %d\n", lo + (c + 0.5) * w, cnt[c]);
            fputs("\n\n", dat);
            char t[2 * DRQ_NAME_MAX + 4];
            snprintf(t, sizeof t, "%s / %s", a->var[i].pur, a->var[i].name);
            fprintf(b, "%s\"fig2f-radii.dat\" index %d using 1:2 with boxes lc rgb \"%s\" title ", i ? ", \\\n     " : "",
                    block++, colours[i % NCOLOURS]);
            gp_str(b, t);
        }
        fputc('\n', b);
    }
    fputs("unset multiplot\n", b);
    mem_close(&body);
    gp_both(gp, "fig2f-radii", 1300, 420, body.buf);
    free(body.buf);
    return block;
}

/* ---- writing ------------------------------------------------------------------------------ */

/* Writes name.md and name.csv from two buffers when rows > 0. */
static void write_table(outdir *od, const char *base, int rows, const mem *md, const mem *csv) {
    if (!rows) return;
    char name[96];
    snprintf(name, sizeof name, "%s.md", base);
    rep_write_file(od, name, md->buf, md->len);
    snprintf(name, sizeof name, "%s.csv", base);
    rep_write_file(od, name, csv->buf, csv->len);
}

/* Writes base.dat / base.gp and draws them; 1 when both images exist. */
static int draw(outdir *od, const char *gnuplot, const char *base, const mem *dat, const mem *gp) {
    char name[96];
    snprintf(name, sizeof name, "%s.dat", base);
    rep_write_file(od, name, dat->buf, dat->len);
    snprintf(name, sizeof name, "%s.gp", base);
    rep_write_file(od, name, gp->buf, gp->len);
    if (od->failed || !gnuplot || rep_run_gnuplot(gnuplot, od->dir, name)) return 0;
    char png[96], svg[96];
    snprintf(png, sizeof png, "%s.png", base);
    snprintf(svg, sizeof svg, "%s.svg", base);
    return rep_nonempty(od->dir, png) && rep_nonempty(od->dir, svg);
}

static void figure_section(FILE *r, const char *title, int have, int drawn, const char *base, const char *what,
                           const char *absent, const char *gnuplot) {
    fprintf(r, "\n## %s\n\n", title);
    if (!have)
        fprintf(r, "Not in this sweep: %s.\n", absent);
    else if (drawn)
        fprintf(r, "%s\n\n![%s](%s.png)\n\n[SVG](%s.svg) · script [%s.gp](%s.gp) · data [%s.dat](%s.dat)\n", what,
                title, base, base, base, base, base, base);
    else
        fprintf(r, "%s\n\nNot drawn: %s; the script %s.gp and data %s.dat are in this folder.\n", what,
                gnuplot ? "gnuplot failed (see gnuplot.log)" : "gnuplot was not found (install gnuplot-nox)", base,
                base);
}

int report_an_write(report_an *a, const char *dir, void *outdir_, const char *gnuplot, FILE *r, int *plots) {
    outdir *od = outdir_;
    (void)dir;
    fit *fits = NULL;
    int nfits = fits_compute(a, &fits);
    mem md[3], csv[3];
    for (int t = 0; t < 3; t++) mem_open(&md[t]), mem_open(&csv[t]);
    int n5 = table5(a, md[0].f, csv[0].f);
    int n7 = table7(a, fits, nfits, md[1].f, csv[1].f);
    int nS6 = tableS6(a, md[2].f, csv[2].f);
    for (int t = 0; t < 3; t++) mem_close(&md[t]), mem_close(&csv[t]);
    write_table(od, "table5-gradcorr", n5, &md[0], &csv[0]);
    write_table(od, "table7-screen", n7, &md[1], &csv[1]);
    write_table(od, "tableS6-variance", nS6, &md[2], &csv[2]);

    mem d[3], g[3];
    for (int t = 0; t < 3; t++) mem_open(&d[t]), mem_open(&g[t]);
    int h3 = fig3fit(a, fits, nfits, d[0].f, g[0].f), h4 = fig4(a, fits, nfits, d[1].f, g[1].f),
        h2 = fig2f(a, d[2].f, g[2].f);
    for (int t = 0; t < 3; t++) mem_close(&d[t]), mem_close(&g[t]);
    int ok3 = h3 && draw(od, gnuplot, "fig3-fit", &d[0], &g[0]);
    int ok4 = h4 && draw(od, gnuplot, "fig4-tstar", &d[1], &g[1]);
    int ok2 = h2 && draw(od, gnuplot, "fig2f-radii", &d[2], &g[2]);
    *plots = ok2 + ok3 + ok4;

    rep_section(r, "Table 5 — gradient correlations",
                "Cosine between two gradient estimators of the classifier's loss through the purifier, at the same "
                "input (gradcorr analyses; estimators in docs/spec.md §analyses).",
                n5, "table5-gradcorr", &md[0], "no gradcorr analysis");
    fputs("\n## Compression → robustness fit\n\n", r);
    if (!a->nscr) {
        fputs("Not in this sweep: no screen analysis.\n", r);
    } else if (!nfits) {
        fputs("Cannot fit: no purifier config was both screened and attacked with a fixed-ω full-gradient PGD "
              "attack.\n",
              r);
    } else {
        fputs("Logistic fit p(c) = 1 / (1 + exp(−(a + b·c))) of the fixed-ω robust accuracy on the screen's mean "
              "uniform compression rate c, over the configs both screened and attacked (binomial maximum likelihood; "
              "± are standard errors from the Fisher information; RMSE of observed − fitted accuracy over those "
              "configs). Table 7 holds the predictions for every screened config with a 95% interval.\n\n"
              "| screen | attack | configs | a | b | RMSE % | deviance |\n| --- | --- | ---: | --- | --- | ---: | ---: |\n",
              r);
        for (int j = 0; j < nfits; j++) {
            const drq_logistic *f = &fits[j].f;
            fputc('|', r);
            md_s(r, fits[j].scr), md_s(r, fits[j].atk);
            if (f->ok)
                fprintf(r, " %d | %.3f ± %.3f | %.3f ± %.3f | %.2f | %.3f |\n", f->points, f->a, sqrt(f->cov[0]), f->b,
                        sqrt(f->cov[2]), 100 * f->rmse, f->deviance);
            else
                fprintf(r, " %d | cannot fit: %s | | | |\n", f->points, f->why);
        }
    }
    rep_section(r, "Table 7 — compression and robust accuracy over the purifier configs",
                "Forward-only screen per purifier config: clean accuracy at P_ω(x) and the compression rate of uniform "
                "noise ‖P_ω(x+δ) − P_ω(x)‖₂ / ‖δ‖₂ (mean ± std over images of the per-image mean over draws); the "
                "fixed-ω robust accuracy where the config was also attacked; the fit's prediction.",
                n7, "table7-screen", &md[1], "no screen analysis");
    rep_section(r, "Table S6 — variance decomposition, SNR and radii",
                "Per image over N_δ uniform δ × N_ω seeds (DESIGN §8): total = input + internal variance of P(x+δ) "
                "(squared L2, [0,1] pixels), SNR = input / internal, the four radii (mean distance to the "
                "centroid) and the cosines of the purification directions P − x for pairs with the same ω (different "
                "δ) and the same δ (different ω); mean ± std over images.",
                nS6, "tableS6-variance", &md[2], "no variance analysis");
    figure_section(r, "Figure 3 — the fit", h3, ok3, "fig3-fit",
                   "Fixed-ω robust accuracy (filled, ± binomial standard error) against the screen's compression rate, "
                   "the fitted logistic curve, and its predictions for every screened config (open, 95% interval).",
                   a->nscr ? "no successful fit (see above)" : "no screen analysis", gnuplot);
    figure_section(r, "Figure 4 — compression and robust accuracy over t*", h4, ok4, "fig4-tstar",
                   "Compression rate of uniform noise (left axis) and fixed-ω robust accuracy, attacked (squares, "
                   "dashed) and predicted (open, 95%), right axis; a colour per purifier kind.",
                   "no screen analysis over purifiers with a known t* (the spec is read from a database file)", gnuplot);
    figure_section(r, "Figure 2f — histograms of radii", h2, ok2, "fig2f-radii",
                   "Per-image radii of the variance analyses: fixed ω with δ varying (compression), fixed δ with ω "
                   "varying (expansion), both varying.",
                   "no variance analysis", gnuplot);
    for (int t = 0; t < 3; t++) free(md[t].buf), free(csv[t].buf), free(d[t].buf), free(g[t].buf);
    free(fits);
    return (n5 > 0) + (n7 > 0) + (nS6 > 0);
}
