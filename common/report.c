/* report.c — see report.h. */
#include "report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis_rows.h"

/* Running mean and variance (Welford), skipping NaN. */
typedef struct {
    double n, mean, m2;
} stat;

static void stat_add(stat *s, double x) {
    if (isnan(x)) return;
    s->n += 1;
    double d = x - s->mean;
    s->mean += d / s->n;
    s->m2 += d * (x - s->mean);
}
static double stat_mean(const stat *s) { return s->n > 0 ? s->mean : NAN; }
static double stat_std(const stat *s) { return s->n > 1 ? sqrt(s->m2 / (s->n - 1)) : (s->n == 1 ? 0 : NAN); }

typedef struct {
    int64_t seed;
    int64_t n, clean_ok, clean_known, robust_ok, robust_known;
} seed_acc;

typedef struct {
    char purifier[DRQ_NAME_MAX], attack[DRQ_NAME_MAX];
    seed_acc *seeds;
    int nseeds;
    int64_t images;
    stat delta_l2, init_l2, max_l2, end_l2, ssim_adv, ssim_pur, comp_rob, comp_nonrob, comp_unif;
    double seconds;
} group;

struct drq_report {
    group *g;
    int n;
    int64_t analysis_rows[DRQ_AT_N]; /* rows of the analysis kinds: counted, not tabled */
};

drq_report *drq_report_new(void) { return xcalloc(1, sizeof(drq_report)); }

void drq_report_free(drq_report *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) free(r->g[i].seeds);
    free(r->g);
    free(r);
}

void drq_report_add(drq_report *r, const drq_row *row) {
    drq_analysis_table t = drq_analysis_of(row);
    if (t != DRQ_AT_NONE) {
        r->analysis_rows[t]++;
        return;
    }
    group *g = NULL;
    for (int i = 0; i < r->n && !g; i++)
        if (!strcmp(r->g[i].purifier, row->purifier) && !strcmp(r->g[i].attack, row->attack)) g = &r->g[i];
    if (!g) {
        r->g = xrealloc(r->g, (size_t)(r->n + 1) * sizeof *r->g);
        g = &r->g[r->n++];
        memset(g, 0, sizeof *g);
        snprintf(g->purifier, sizeof g->purifier, "%s", row->purifier);
        snprintf(g->attack, sizeof g->attack, "%s", row->attack);
    }
    seed_acc *s = NULL;
    for (int i = 0; i < g->nseeds && !s; i++)
        if (g->seeds[i].seed == row->seed) s = &g->seeds[i];
    if (!s) {
        g->seeds = xrealloc(g->seeds, (size_t)(g->nseeds + 1) * sizeof *g->seeds);
        s = &g->seeds[g->nseeds++];
        memset(s, 0, sizeof *s);
        s->seed = row->seed;
    }
    s->n++;
    if (row->clean_correct != DRQ_NA) {
        s->clean_known++;
        s->clean_ok += row->clean_correct != 0;
    }
    if (row->robust != DRQ_NA) {
        s->robust_known++;
        s->robust_ok += row->robust != 0;
    }
    g->images++;
    stat_add(&g->delta_l2, row->delta_l2);
    stat_add(&g->init_l2, row->dist_init_l2);
    stat_add(&g->max_l2, row->dist_max_l2);
    stat_add(&g->end_l2, row->dist_end_l2);
    stat_add(&g->ssim_adv, row->ssim_adv);
    stat_add(&g->ssim_pur, row->ssim_pur);
    if (row->robust == 1) stat_add(&g->comp_rob, row->comp_adv);
    if (row->robust == 0) stat_add(&g->comp_nonrob, row->comp_adv);
    stat_add(&g->comp_unif, row->comp_unif_mean);
    if (!isnan(row->seconds)) g->seconds += row->seconds;
}

/* Accuracy (percent) per seed, then mean ± std over seeds. */
static void accuracy(const group *g, int robust, stat *out) {
    memset(out, 0, sizeof *out);
    for (int i = 0; i < g->nseeds; i++) {
        const seed_acc *s = &g->seeds[i];
        int64_t known = robust ? s->robust_known : s->clean_known, ok = robust ? s->robust_ok : s->clean_ok;
        if (known) stat_add(out, 100.0 * (double)ok / (double)known);
    }
}

static void pm(char *buf, size_t n, const stat *s, const char *fmt) {
    if (s->n == 0) {
        snprintf(buf, n, "-");
        return;
    }
    char a[24], b[24];
    snprintf(a, sizeof a, fmt, stat_mean(s));
    snprintf(b, sizeof b, fmt, stat_std(s));
    snprintf(buf, n, "%s±%s", a, b);
}

static void one(char *buf, size_t n, const stat *s, const char *fmt) {
    if (s->n == 0)
        snprintf(buf, n, "-");
    else
        snprintf(buf, n, fmt, stat_mean(s));
}

void drq_report_print(const drq_report *r, FILE *f) {
    fprintf(f, "%-12s %-12s %5s %7s %12s %12s %7s %-20s %-17s %-13s %6s %9s\n", "purifier", "attack", "seeds",
            "images", "clean acc %", "robust acc %", "|d|_2", "L2 init/max/end", "SSIM adv/pur", "comp rob/non",
            "unif", "time s");
    for (int i = 0; i < r->n; i++) {
        const group *g = &r->g[i];
        stat ca, ra;
        accuracy(g, 0, &ca);
        accuracy(g, 1, &ra);
        char cs[64], rs[64], d[16], i1[16], m1[16], e1[16], sa[16], sp[16], cr[16], cn[16], cu[16], dist[48], ssim[40],
            comp[40];
        pm(cs, sizeof cs, &ca, "%.1f");
        pm(rs, sizeof rs, &ra, "%.1f");
        one(d, sizeof d, &g->delta_l2, "%.3f");
        one(i1, sizeof i1, &g->init_l2, "%.2f");
        one(m1, sizeof m1, &g->max_l2, "%.2f");
        one(e1, sizeof e1, &g->end_l2, "%.2f");
        snprintf(dist, sizeof dist, "%s/%s/%s", i1, m1, e1);
        one(sa, sizeof sa, &g->ssim_adv, "%.3f");
        one(sp, sizeof sp, &g->ssim_pur, "%.3f");
        snprintf(ssim, sizeof ssim, "%s/%s", sa, sp);
        one(cr, sizeof cr, &g->comp_rob, "%.3f");
        one(cn, sizeof cn, &g->comp_nonrob, "%.3f");
        snprintf(comp, sizeof comp, "%s/%s", cr, cn);
        one(cu, sizeof cu, &g->comp_unif, "%.3f");
        fprintf(f, "%-12s %-12s %5d %7lld %12s %12s %7s %-20s %-17s %-13s %6s %9.1f\n", g->purifier, g->attack,
                g->nseeds, (long long)g->images, cs, rs, d, dist, ssim, comp, cu, g->seconds);
    }
    int64_t an = 0;
    for (int t = 1; t < DRQ_AT_N; t++) an += r->analysis_rows[t];
    if (r->n == 0 && !an) fprintf(f, "(no result rows)\n");
    if (an) {
        fputs("analysis rows:", f);
        for (int t = 1; t < DRQ_AT_N; t++)
            if (r->analysis_rows[t])
                fprintf(f, " %lld %s", (long long)r->analysis_rows[t], drq_analysis_table_name((drq_analysis_table)t));
        fputs(" (drq results --kind, drq report --out)\n", f);
    }
}

static json_t *jstat(const stat *s) {
    json_t *o = json_object();
    json_object_set_new(o, "mean", s->n ? json_real(stat_mean(s)) : json_null());
    json_object_set_new(o, "std", s->n ? json_real(stat_std(s)) : json_null());
    json_object_set_new(o, "n", json_integer((json_int_t)s->n));
    return o;
}

json_t *drq_report_json(const drq_report *r) {
    json_t *arr = json_array();
    for (int i = 0; i < r->n; i++) {
        const group *g = &r->g[i];
        stat ca, ra;
        accuracy(g, 0, &ca);
        accuracy(g, 1, &ra);
        json_t *o = json_object();
        json_object_set_new(o, "purifier", json_string(g->purifier));
        json_object_set_new(o, "attack", json_string(g->attack));
        json_object_set_new(o, "seeds", json_integer(g->nseeds));
        json_object_set_new(o, "images", json_integer(g->images));
        json_object_set_new(o, "clean_acc", jstat(&ca));
        json_object_set_new(o, "robust_acc", jstat(&ra));
        json_object_set_new(o, "delta_l2", jstat(&g->delta_l2));
        json_object_set_new(o, "dist_init_l2", jstat(&g->init_l2));
        json_object_set_new(o, "dist_max_l2", jstat(&g->max_l2));
        json_object_set_new(o, "dist_end_l2", jstat(&g->end_l2));
        json_object_set_new(o, "ssim_adv", jstat(&g->ssim_adv));
        json_object_set_new(o, "ssim_pur", jstat(&g->ssim_pur));
        json_object_set_new(o, "comp_robust", jstat(&g->comp_rob));
        json_object_set_new(o, "comp_nonrobust", jstat(&g->comp_nonrob));
        json_object_set_new(o, "comp_uniform", jstat(&g->comp_unif));
        json_object_set_new(o, "seconds", json_real(g->seconds));
        json_array_append_new(arr, o);
    }
    return arr;
}
