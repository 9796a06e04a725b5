/* report_out.c — see report_out.h and docs/report.md. */
#include "report_out.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/report_analyses.h"
#include "cli/report_util.h"
#include "cli/image_grid.h"
#include "common/spec.h"
#include "common/util.h"
#include "server/store.h"

/* ---- accumulation --------------------------------------------------------------- */

typedef struct {
    int64_t seed, clean_ok, clean_known, robust_ok, robust_known;
} seed_acc;

enum { M_INIT_L2, M_MAX_L2, M_END_L2, M_INIT_LINF, M_MAX_LINF, M_END_LINF, M_SSIM_ADV, M_SSIM_PUR,
       M_COMP_ROB, M_COMP_NON, M_COMP_UNIF, M_N };

typedef struct {
    char pur[DRQ_NAME_MAX], atk[DRQ_NAME_MAX];
    int64_t sweep, rows;
    seed_acc *seeds;
    int nseeds;
    st m[M_N];
    /* from the spec, or inferred (rnd_inferred) */
    int rnd, rnd_inferred, grad, kind, norm, has_spec, has_tseed;
    double eps;
    int64_t tseed;
    int pord, aord, first;
} cell;

struct drq_report_out {
    cell *c;
    int n;
    report_an *an; /* the analysis rows (cli/report_analyses.c) */
};

drq_report_out *drq_report_out_new(void) {
    drq_report_out *ro = xcalloc(1, sizeof(drq_report_out));
    ro->an = report_an_new();
    return ro;
}

void drq_report_out_free(drq_report_out *ro) {
    if (!ro) return;
    for (int i = 0; i < ro->n; i++) free(ro->c[i].seeds);
    free(ro->c);
    report_an_free(ro->an);
    free(ro);
}

void drq_report_out_add(drq_report_out *ro, const drq_row *r) {
    if (report_an_add(ro->an, r)) return; /* a variance / gradcorr / screen row */
    cell *c = NULL;
    for (int i = ro->n - 1; i >= 0 && !c; i--) /* rows come grouped: the last cell is the usual hit */
        if (!strcmp(ro->c[i].pur, r->purifier) && !strcmp(ro->c[i].atk, r->attack)) c = &ro->c[i];
    if (!c) {
        ro->c = xrealloc(ro->c, (size_t)(ro->n + 1) * sizeof *ro->c);
        c = &ro->c[ro->n];
        memset(c, 0, sizeof *c);
        snprintf(c->pur, sizeof c->pur, "%s", r->purifier);
        snprintf(c->atk, sizeof c->atk, "%s", r->attack);
        c->sweep = r->sweep;
        c->first = ro->n++;
    }
    seed_acc *s = NULL;
    for (int i = 0; i < c->nseeds && !s; i++)
        if (c->seeds[i].seed == r->seed) s = &c->seeds[i];
    if (!s) {
        c->seeds = xrealloc(c->seeds, (size_t)(c->nseeds + 1) * sizeof *c->seeds);
        s = &c->seeds[c->nseeds++];
        memset(s, 0, sizeof *s);
        s->seed = r->seed;
    }
    if (r->clean_correct != DRQ_NA) s->clean_known++, s->clean_ok += r->clean_correct != 0;
    if (r->robust != DRQ_NA) s->robust_known++, s->robust_ok += r->robust != 0;
    c->rows++;
    st_add(&c->m[M_INIT_L2], r->dist_init_l2);
    st_add(&c->m[M_MAX_L2], r->dist_max_l2);
    st_add(&c->m[M_END_L2], r->dist_end_l2);
    st_add(&c->m[M_INIT_LINF], r->dist_init_linf);
    st_add(&c->m[M_MAX_LINF], r->dist_max_linf);
    st_add(&c->m[M_END_LINF], r->dist_end_linf);
    st_add(&c->m[M_SSIM_ADV], r->ssim_adv);
    st_add(&c->m[M_SSIM_PUR], r->ssim_pur);
    if (r->robust == 1) st_add(&c->m[M_COMP_ROB], r->comp_adv);
    if (r->robust == 0) st_add(&c->m[M_COMP_NON], r->comp_adv);
    st_add(&c->m[M_COMP_UNIF], r->comp_unif_mean);
}

/* Accuracy in percent per seed, then mean ± std over the seeds; which: 0 every
 * seed, 1 only seed s, 2 every seed but s. */
static st accuracy(const cell *c, int robust, int which, int64_t s) {
    st out = {0};
    for (int i = 0; i < c->nseeds; i++) {
        const seed_acc *a = &c->seeds[i];
        if ((which == 1 && a->seed != s) || (which == 2 && a->seed == s)) continue;
        int64_t known = robust ? a->robust_known : a->clean_known, ok = robust ? a->robust_ok : a->clean_ok;
        if (known) st_add(&out, 100.0 * (double)ok / (double)known);
    }
    return out;
}

/* ---- attack attributes: the spec, or the name -------------------------------------- */

static const char *rnd_name(int r) {
    switch (r) {
    case RND_FIXED: return "fixed";
    case RND_FRESH: return "fresh";
    case RND_EOT: return "eot";
    case RND_TRANSFER: return "transfer";
    default: return "unknown";
    }
}
static const char *grad_name(int g) { return g == GRAD_FULL ? "full" : g == GRAD_BPDA ? "bpda" : "unknown"; }

/* Randomness from a name without a spec: transfer, eot, fresh/random, else fixed. */
static void infer(cell *c) {
    const char *a = c->atk;
    c->rnd = strstr(a, "transfer") ? RND_TRANSFER : strstr(a, "eot") ? RND_EOT
             : (strstr(a, "fresh") || strstr(a, "random")) ? RND_FRESH : RND_FIXED;
    c->rnd_inferred = 1;
    c->grad = strstr(a, "bpda") ? GRAD_BPDA : GRAD_FULL;
    c->kind = -1;
}

typedef struct {
    int64_t sweep;
    int ok;
    drq_spec spec;
    char name[DRQ_NAME_MAX];
} sweep_spec;

/* Reads the specs of the cells' sweeps from db and sets each cell's attributes
 * and order; returns the number of sweeps with a readable spec. */
static int apply_specs(drq_report_out *ro, const char *db, sweep_spec **out, int *nout) {
    sweep_spec *ss = NULL;
    int nss = 0, nok = 0;
    store *stp = NULL;
    if (db) {
        drq_err e;
        stp = store_open(db, 1, &e);
    }
    int64_t an_sweeps[64];
    int nan_sweeps = report_an_sweeps(ro->an, an_sweeps, 64);
    for (int i = 0; i < ro->n + nan_sweeps; i++) {
        cell *c = i < ro->n ? &ro->c[i] : NULL;
        int64_t sweep = c ? c->sweep : an_sweeps[i - ro->n];
        sweep_spec *sp = NULL;
        for (int k = 0; k < nss && !sp; k++)
            if (ss[k].sweep == sweep) sp = &ss[k];
        if (!sp) {
            ss = xrealloc(ss, (size_t)(nss + 1) * sizeof *ss);
            sp = &ss[nss++];
            memset(sp, 0, sizeof *sp);
            sp->sweep = sweep;
            char *text = stp ? store_sweep_spec(stp, sweep) : NULL;
            drq_err e;
            if (text && drq_spec_parse_text(text, &sp->spec, &e) == 0) {
                sp->ok = 1;
                nok++;
                snprintf(sp->name, sizeof sp->name, "%s", sp->spec.name);
                for (int p = 0; p < sp->spec.npurifiers; p++) /* a later sweep's purifiers after an earlier one's */
                    report_an_purifier(ro->an, &sp->spec.purifiers[p], (nss - 1) * DRQ_SPEC_MAX_LIST + p);
            }
            free(text);
        }
        if (!c) continue;
        c->pord = c->aord = -1;
        if (sp->ok) {
            for (int p = 0; p < sp->spec.npurifiers; p++)
                if (!strcmp(sp->spec.purifiers[p].name, c->pur)) c->pord = p;
            for (int a = 0; a < sp->spec.nattacks; a++) {
                const drq_attack_spec *as = &sp->spec.attacks[a];
                if (strcmp(as->name, c->atk)) continue;
                c->aord = a;
                c->has_spec = 1;
                c->rnd = (int)as->randomness;
                c->grad = (int)as->grad;
                c->kind = (int)as->kind;
                c->norm = (int)as->norm;
                c->eps = as->eps;
                c->has_tseed = as->randomness == RND_TRANSFER;
                c->tseed = as->transfer_seed;
            }
        }
        if (!c->has_spec) infer(c);
    }
    if (stp) store_close(stp);
    *out = ss;
    *nout = nss;
    return nok;
}

/* Purifier order: the spec's, else first seen; attack order likewise. */
static int by_order(const void *pa, const void *pb) {
    const cell *a = pa, *b = pb;
    if (a->pord != b->pord) return a->pord < b->pord ? -1 : 1;
    if (a->aord != b->aord) return a->aord < b->aord ? -1 : 1;
    return a->first - b->first;
}

static void order_cells(drq_report_out *ro) {
    /* cells without a spec index take the first-seen index of their name, after those with one */
    int maxp = -1, maxa = -1;
    for (int i = 0; i < ro->n; i++) {
        if (ro->c[i].pord > maxp) maxp = ro->c[i].pord;
        if (ro->c[i].aord > maxa) maxa = ro->c[i].aord;
    }
    for (int i = 0; i < ro->n; i++) {
        cell *c = &ro->c[i];
        for (int pass = 0; pass < 2; pass++) {
            int *o = pass ? &c->aord : &c->pord;
            if (*o >= 0) continue;
            int base = pass ? maxa + 1 : maxp + 1;
            *o = -1;
            for (int k = 0; k < ro->n && *o < 0; k++) /* first cell with that name */
                if (!strcmp(pass ? ro->c[k].atk : ro->c[k].pur, pass ? c->atk : c->pur)) *o = base + k;
        }
    }
    if (ro->n > 1) qsort(ro->c, (size_t)ro->n, sizeof *ro->c, by_order); /* ro->c is NULL in an analyses-only sweep */
}

/* ---- text output --------------------------------------------------------------------- */

/* ---- the tables ---------------------------------------------------------------------- */

static int has_any(const cell *c, int from, int to) {
    for (int k = from; k <= to; k++)
        if (c->m[k].n > 0) return 1;
    return 0;
}

/* Table 1: distances to x and SSIM per purifier × attack. */
static int table1(const drq_report_out *ro, FILE *md, FILE *csv) {
    int rows = 0;
    static const char *const mcols[] = {"dist_init_l2", "dist_max_l2",  "dist_end_l2", "dist_init_linf",
                                        "dist_max_linf", "dist_end_linf", "ssim_adv",    "ssim_pur"};
    fputs("purifier,attack,randomness,images", csv);
    for (int k = 0; k < 8; k++) fprintf(csv, ",%s_mean,%s_std", mcols[k], mcols[k]);
    fputc('\n', csv);
    fputs("| purifier | attack | images | L2 init | L2 max | L2 end | L∞ init | L∞ max | L∞ end | SSIM adv | SSIM pur |\n"
          "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
          md);
    for (int i = 0; i < ro->n; i++) {
        const cell *c = &ro->c[i];
        if (!has_any(c, M_INIT_L2, M_SSIM_PUR)) continue;
        rows++;
        csv_s(csv, c->pur, 0);
        csv_s(csv, c->atk, 0);
        csv_s(csv, rnd_name(c->rnd), 0);
        fprintf(csv, "%lld", (long long)c->rows);
        for (int k = M_INIT_L2; k <= M_SSIM_PUR; k++) {
            fputc(',', csv);
            if (c->m[k].n > 0)
                fprintf(csv, "%.10g,%.10g", c->m[k].mean, st_sd(&c->m[k]));
            else
                fputc(',', csv);
        }
        fputc('\n', csv);
        fputc('|', md);
        md_s(md, c->pur);
        md_s(md, c->atk);
        fprintf(md, " %lld |", (long long)c->rows);
        for (int k = M_INIT_L2; k <= M_SSIM_PUR; k++) md_st(md, &c->m[k], 3);
        fputc('\n', md);
    }
    return rows;
}

/* Table 3 rows: one per purifier and attack family (the attack without its
 * randomness: kind, gradient, norm, eps from the spec, else the name without
 * "fixed" / "fresh" / "random" / "eot"), a column per randomness mode. */
typedef struct {
    int pord;
    char key[160];
    const cell *m[3]; /* fixed, fresh, eot */
} fam;

static void family_key(const cell *c, char *key, size_t n) {
    if (c->has_spec) {
        snprintf(key, n, "%s|%d|%d|%d|%.9g", c->pur, c->kind, c->grad, c->norm, c->eps);
        return;
    }
    char name[DRQ_NAME_MAX];
    snprintf(name, sizeof name, "%s", c->atk);
    static const char *const words[] = {"fixed", "fresh", "random", "eot"};
    for (int w = 0; w < 4; w++) {
        char *p = strstr(name, words[w]);
        if (p) memmove(p, p + strlen(words[w]), strlen(p + strlen(words[w])) + 1);
    }
    snprintf(key, n, "%s|%s", c->pur, name);
}

static int table3(const drq_report_out *ro, FILE *md, FILE *csv, int present[3]) {
    fam *f = NULL;
    int nf = 0;
    present[0] = present[1] = present[2] = 0;
    for (int i = 0; i < ro->n; i++) {
        const cell *c = &ro->c[i];
        int mode = c->rnd == RND_FIXED ? 0 : c->rnd == RND_FRESH ? 1 : c->rnd == RND_EOT ? 2 : -1;
        if (mode < 0) continue;
        st ra = accuracy(c, 1, 0, 0);
        if (ra.n == 0) continue;
        present[mode] = 1;
        char key[160];
        family_key(c, key, sizeof key);
        fam *h = NULL;
        for (int k = 0; k < nf && !h; k++)
            if (!strcmp(f[k].key, key) && !f[k].m[mode]) h = &f[k];
        if (!h) {
            f = xrealloc(f, (size_t)(nf + 1) * sizeof *f);
            h = &f[nf++];
            memset(h, 0, sizeof *h);
            h->pord = c->pord;
            snprintf(h->key, sizeof h->key, "%s", key);
        }
        h->m[mode] = c;
    }
    static const char *const mname[3] = {"fixed", "fresh", "eot"};
    static const char *const mtitle[3] = {"robust acc % fixed ω", "robust acc % fresh ω", "robust acc % EOT"};
    fputs("purifier,gradient", csv);
    for (int m = 0; m < 3; m++)
        if (present[m]) fprintf(csv, ",attack_%s", mname[m]);
    fputs(",seeds,clean_acc_mean,clean_acc_std", csv);
    for (int m = 0; m < 3; m++)
        if (present[m]) fprintf(csv, ",robust_acc_%s_mean,robust_acc_%s_std", mname[m], mname[m]);
    fputc('\n', csv);
    fputs("| purifier | attacks | gradient | seeds | clean acc % |", md);
    int ncol = 5;
    for (int m = 0; m < 3; m++)
        if (present[m]) fprintf(md, " %s |", mtitle[m]), ncol++;
    fputs("\n| --- | --- | --- | ---: |", md);
    for (int k = 4; k < ncol; k++) fputs(" ---: |", md);
    fputc('\n', md);
    for (int k = 0; k < nf; k++) {
        const cell *first = NULL;
        for (int m = 0; m < 3 && !first; m++) first = f[k].m[m];
        st ca = accuracy(first, 0, 0, 0); /* the fixed attack's when there is one: P_ω_s(x) */
        csv_s(csv, first->pur, 0);
        csv_s(csv, grad_name(first->grad), 0);
        for (int m = 0; m < 3; m++)
            if (present[m]) csv_s(csv, f[k].m[m] ? f[k].m[m]->atk : "", 0);
        fprintf(csv, "%d,", first->nseeds);
        csv_st(csv, &ca);
        int last = 2;
        while (last > 0 && !present[last]) last--;
        for (int m = 0; m < 3; m++) {
            if (!present[m]) continue;
            st ra = f[k].m[m] ? accuracy(f[k].m[m], 1, 0, 0) : (st){0};
            if (ra.n > 0)
                fprintf(csv, "%.10g,%.10g", ra.mean, st_sd(&ra));
            else
                fputc(',', csv);
            fputc(m == last ? '\n' : ',', csv);
        }
        fputc('|', md);
        md_s(md, first->pur);
        char names[3 * DRQ_NAME_MAX + 8] = "";
        for (int m = 0; m < 3; m++)
            if (f[k].m[m]) {
                size_t l = strlen(names);
                snprintf(names + l, sizeof names - l, "%s%s", l ? " / " : "", f[k].m[m]->atk);
            }
        md_s(md, names);
        md_s(md, grad_name(first->grad));
        fprintf(md, " %d |", first->nseeds);
        md_st(md, &ca, 1);
        for (int m = 0; m < 3; m++) {
            if (!present[m]) continue;
            st ra = f[k].m[m] ? accuracy(f[k].m[m], 1, 0, 0) : (st){0};
            md_st(md, &ra, 1);
        }
        fputc('\n', md);
    }
    free(f);
    return nf;
}

/* Table S2: transfer across ω (randomness "transfer"): robust accuracy under
 * ω_s (the source seed, = fixed ω) and under every other seed ω_s′. */
static int tableS2(const drq_report_out *ro, FILE *md, FILE *csv) {
    int rows = 0;
    fputs("purifier,attack,source_seed,target_seeds,clean_acc_mean,clean_acc_std,robust_acc_source_mean,"
          "robust_acc_source_std,robust_acc_transfer_mean,robust_acc_transfer_std\n",
          csv);
    fputs("| purifier | attack | source seed s | target seeds s′ | clean acc % | robust acc % at ω_s (fixed) | "
          "robust acc % at ω_s′ (transfer) |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |\n",
          md);
    for (int i = 0; i < ro->n; i++) {
        const cell *c = &ro->c[i];
        if (c->rnd != RND_TRANSFER) continue;
        st ca = accuracy(c, 0, 0, 0);
        st rs = c->has_tseed ? accuracy(c, 1, 1, c->tseed) : (st){0};
        st rt = c->has_tseed ? accuracy(c, 1, 2, c->tseed) : accuracy(c, 1, 0, 0);
        if (rs.n == 0 && rt.n == 0) continue;
        rows++;
        int targets = 0;
        for (int k = 0; k < c->nseeds; k++) targets += !c->has_tseed || c->seeds[k].seed != c->tseed;
        char src[32] = "";
        if (c->has_tseed) snprintf(src, sizeof src, "%lld", (long long)c->tseed);
        csv_s(csv, c->pur, 0);
        csv_s(csv, c->atk, 0);
        fprintf(csv, "%s,%d,", src, targets);
        csv_st(csv, &ca);
        csv_st(csv, &rs);
        if (rt.n > 0)
            fprintf(csv, "%.10g,%.10g\n", rt.mean, st_sd(&rt));
        else
            fputs(",\n", csv);
        fputc('|', md);
        md_s(md, c->pur);
        md_s(md, c->atk);
        md_s(md, c->has_tseed ? src : "?");
        fprintf(md, " %d |", targets);
        md_st(md, &ca, 1);
        md_st(md, &rs, 1);
        md_st(md, &rt, 1);
        fputc('\n', md);
    }
    return rows;
}

/* Table 6: compression rate of the adversarial δ on robust / non-robust images, and of uniform noise. */
static int table6(const drq_report_out *ro, FILE *md, FILE *csv) {
    int rows = 0;
    fputs("purifier,attack,randomness,robust_images,comp_robust_mean,comp_robust_std,nonrobust_images,"
          "comp_nonrobust_mean,comp_nonrobust_std,uniform_images,comp_uniform_mean,comp_uniform_std\n",
          csv);
    fputs("| purifier | attack | robust images | comp. rate robust | non-robust images | comp. rate non-robust | "
          "comp. rate uniform |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |\n",
          md);
    for (int i = 0; i < ro->n; i++) {
        const cell *c = &ro->c[i];
        if (!has_any(c, M_COMP_ROB, M_COMP_UNIF)) continue;
        rows++;
        csv_s(csv, c->pur, 0);
        csv_s(csv, c->atk, 0);
        csv_s(csv, rnd_name(c->rnd), 0);
        csv_n(csv, c->m[M_COMP_ROB].n, 0);
        csv_st(csv, &c->m[M_COMP_ROB]);
        csv_n(csv, c->m[M_COMP_NON].n, 0);
        csv_st(csv, &c->m[M_COMP_NON]);
        csv_n(csv, c->m[M_COMP_UNIF].n, 0);
        if (c->m[M_COMP_UNIF].n > 0)
            fprintf(csv, "%.10g,%.10g\n", c->m[M_COMP_UNIF].mean, st_sd(&c->m[M_COMP_UNIF]));
        else
            fputs(",\n", csv);
        fputc('|', md);
        md_s(md, c->pur);
        md_s(md, c->atk);
        fprintf(md, " %.0f |", c->m[M_COMP_ROB].n);
        md_st(md, &c->m[M_COMP_ROB], 3);
        fprintf(md, " %.0f |", c->m[M_COMP_NON].n);
        md_st(md, &c->m[M_COMP_NON], 3);
        md_st(md, &c->m[M_COMP_UNIF], 3);
        fputc('\n', md);
    }
    return rows;
}

/* ---- plots -------------------------------------------------------------------------------- */

/* Colour / point type / panel indices: distinct purifier (pidx) and attack
 * (aidx) names in cell order. */
static void name_indices(const drq_report_out *ro, int *pidx, int *aidx) {
    int np = 0, na = 0;
    for (int i = 0; i < ro->n; i++) {
        pidx[i] = aidx[i] = -1;
        for (int j = 0; j < i; j++) {
            if (pidx[i] < 0 && !strcmp(ro->c[j].pur, ro->c[i].pur)) pidx[i] = pidx[j];
            if (aidx[i] < 0 && !strcmp(ro->c[j].atk, ro->c[i].atk)) aidx[i] = aidx[j];
        }
        if (pidx[i] < 0) pidx[i] = np++;
        if (aidx[i] < 0) aidx[i] = na++;
    }
}

/* Fig. 3 style: robust accuracy against the uniform compression rate, a point per purifier × attack. */
static int fig3(const drq_report_out *ro, const int *pidx, const int *aidx, FILE *dat, FILE *gp) {
    int n = 0;
    mem body;
    mem_open(&body);
    FILE *b = body.f;
    fputs("set title \"Robust accuracy against compression rate (a point per purifier × attack; no fit)\"\n"
          "set xlabel \"compression rate of uniform noise ‖P(x+δ)−P(x)‖₂/‖δ‖₂ (mean over images)\"\n"
          "set ylabel \"robust accuracy % (mean ± std over seeds)\"\n"
          "set grid\nset key outside right top\nset yrange [-5:105]\nset offsets graph 0.08, graph 0.08, 0, 0\n"
          "set xrange [*:*]\nplot ",
          b);
    for (int i = 0; i < ro->n; i++) {
        const cell *c = &ro->c[i];
        st ra = accuracy(c, 1, 0, 0);
        if (c->m[M_COMP_UNIF].n == 0 || ra.n == 0) continue;
        fprintf(dat, "# %s / %s\n%.10g %.10g %.10g\n\n\n", c->pur, c->atk, c->m[M_COMP_UNIF].mean, ra.mean, st_sd(&ra));
        int pi = pidx[i], ai = aidx[i];
        char title[2 * DRQ_NAME_MAX + 4];
        snprintf(title, sizeof title, "%s / %s", c->pur, c->atk);
        fprintf(b, "%s\"fig3-compression-robustness.dat\" index %d using 1:2:3 with yerrorbars lw 1.5 lc rgb \"%s\" pt %d ps 1.8 title ",
                n ? ", \\\n     " : "", n, colours[pi % NCOLOURS], open_point_types[ai % 9]);
        gp_str(b, title);
        n++;
    }
    fputc('\n', b);
    mem_close(&body);
    if (n) {
        fprintf(gp, "# drq report: Fig. 3 style (gnuplot fig3-compression-robustness.gp in this folder redraws it)\n"
                    "set encoding utf8\nset terminal pngcairo noenhanced size 1000,600 font \"sans,10\"\n"
                    "set output \"fig3-compression-robustness.png\"\n%s"
                    "set terminal svg noenhanced size 1000,600 dynamic font \"sans,10\"\n"
                    "set output \"fig3-compression-robustness.svg\"\n%s",
                body.buf, body.buf);
    }
    free(body.buf);
    return n;
}

/* Fig. 1c style: L2 distance to x at init / max / end, a panel per attack, a line per purifier. */
static int fig1c(const drq_report_out *ro, const int *pidx, const int *aidx, FILE *dat, FILE *gp) {
    int npur = 0, natk = 0;
    for (int i = 0; i < ro->n; i++) {
        if (pidx[i] + 1 > npur) npur = pidx[i] + 1;
        if (aidx[i] + 1 > natk) natk = aidx[i] + 1;
    }
    int *block = xcalloc((size_t)ro->n + 1, sizeof *block);
    int nb = 0;
    double ymax = 0;
    for (int i = 0; i < ro->n; i++) {
        const cell *c = &ro->c[i];
        block[i] = -1;
        if (c->m[M_INIT_L2].n == 0 && c->m[M_END_L2].n == 0) continue;
        int pi = pidx[i];
        double off = npur > 1 ? (pi - (npur - 1) / 2.0) * 0.15 / (npur - 1) : 0;
        fprintf(dat, "# %s / %s: stage, mean, std of the L2 distance to x\n", c->pur, c->atk);
        for (int k = 0; k < 3; k++) {
            const st *s = &c->m[M_INIT_L2 + k];
            if (s->n > 0) {
                fprintf(dat, "%.4f %.10g %.10g\n", k + off, s->mean, st_sd(s));
                if (s->mean + st_sd(s) > ymax) ymax = s->mean + st_sd(s);
            } else {
                fprintf(dat, "%.4f NaN NaN\n", k + off);
            }
        }
        fputs("\n\n", dat);
        block[i] = nb++;
    }
    if (nb) {
        /* panels: only attacks that have a block */
        int *panel_has = xcalloc((size_t)natk, sizeof *panel_has);
        for (int i = 0; i < ro->n; i++)
            if (block[i] >= 0) panel_has[aidx[i]] = 1;
        int np = 0;
        for (int a = 0; a < natk; a++) np += panel_has[a];
        int cols = np == 4 ? 2 : np < 3 ? np : 3, rows = (np + cols - 1) / cols; /* 4 panels: 2 × 2 */
        mem body;
        mem_open(&body);
        FILE *b = body.f;
        fprintf(b, "set multiplot layout %d,%d title \"L2 distance to the clean image x: init x_adv, max (forward-noised), end P(x_adv)\"\n"
                   "set xrange [-0.4:2.4]\nset xtics (\"init\" 0, \"max\" 1, \"end\" 2)\nset yrange [0:%.6g]\n"
                   "set ylabel \"‖· − x‖₂ (mean ± std over images)\"\nset grid ytics\nset key top left font \",9\"\n",
                rows, cols, ymax > 0 ? ymax * 1.25 : 1.0);
        for (int a = 0; a < natk; a++) {
            if (!panel_has[a]) continue;
            int first = 1;
            for (int i = 0; i < ro->n; i++) {
                if (block[i] < 0 || aidx[i] != a) continue;
                const cell *c = &ro->c[i];
                if (first) {
                    fputs("set title ", b);
                    gp_str(b, c->atk);
                    fputs("\nplot ", b);
                }
                int pi = pidx[i];
                fprintf(b, "%s\"fig1c-distances.dat\" index %d using 1:2:3 with yerrorlines lw 2 lc rgb \"%s\" pt %d title ",
                        first ? "" : ", \\\n     ", block[i], colours[pi % NCOLOURS], point_types[pi % NPT]);
                gp_str(b, c->pur);
                first = 0;
            }
            fputc('\n', b);
        }
        fputs("unset multiplot\n", b);
        mem_close(&body);
        int w = 430 * cols, h = 360 * rows + 40;
        fprintf(gp, "# drq report: Fig. 1c style (gnuplot fig1c-distances.gp in this folder redraws it)\n"
                    "set encoding utf8\nset terminal pngcairo noenhanced size %d,%d font \"sans,10\"\n"
                    "set output \"fig1c-distances.png\"\n%s"
                    "set terminal svg noenhanced size %d,%d dynamic font \"sans,10\"\n"
                    "set output \"fig1c-distances.svg\"\n%s",
                w, h, body.buf, w, h, body.buf);
        free(body.buf);
        free(panel_has);
    }
    free(block);
    return nb;
}

/* ---- image grids ------------------------------------------------------------------------ */

/* The "Images" section: a grid (cli/image_grid.h) per purifier × attack
 * that saved images, from the database file; returns the grids drawn. */
static int images_section(FILE *r, const drq_report_out *ro, const char *db, const char *dir) {
    fputs("\n## Images — clean x, P(x), x_adv, P(x_adv) and the amplified δ\n\n", r);
    if (!db) {
        fputs("Not drawn: images are read from the database file (run `drq report FILE.db --out DIR`).\n", r);
        return 0;
    }
    drq_err err;
    store *sdb = store_open(db, 1, &err);
    if (!sdb) {
        fprintf(r, "Not drawn: %s\n", err.msg);
        return 0;
    }
    int drawn = 0;
    for (int i = 0; i < ro->n; i++) {
        const cell *c = &ro->c[i];
        char name[256], path[4400];
        snprintf(name, sizeof name, "images-s%lld-%s-%s.png", (long long)c->sweep, c->pur, c->atk);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        int rc = report_image_grid(sdb, c->sweep, c->pur, c->atk, 4, path, &err);
        if (rc == REPORT_GRID_NONE) continue;
        if (!drawn++)
            fputs("Per row one image (the first by index, at the lowest seed); columns: clean x, P(x), x_adv, "
                  "P(x_adv) under the evaluation ω, and δ = x_adv − x amplified to 0.5 + δ·0.5/eps (docs/report.md "
                  "§Images).\n",
                  r);
        fprintf(r, "\n**%s × %s**", c->pur, c->atk);
        if (rc == 0)
            fprintf(r, "\n\n![%s × %s](%s)\n", c->pur, c->atk, name);
        else
            fprintf(r, ": not drawn: %s\n", err.msg);
    }
    if (!drawn) fputs("Not in this sweep: no attack has \"save\" (docs/spec.md).\n", r);
    store_close(sdb);
    return drawn;
}

/* ---- report.md ------------------------------------------------------------------------- */

int drq_report_out_write(drq_report_out *ro, const char *db, const char *source, const char *dir) {
    if (rep_make_dir(dir)) return 1;
    sweep_spec *ss = NULL;
    int nss = 0;
    int nspec = apply_specs(ro, db, &ss, &nss);
    order_cells(ro);
    outdir od = {.dir = dir};
    /* what the compression → robustness fit takes from the attacks: every
     * fixed-ω full-gradient PGD cell's robust count over all its rows */
    for (int i = 0; i < ro->n; i++) {
        const cell *c = &ro->c[i];
        if (c->rnd != RND_FIXED || c->grad != GRAD_FULL || (c->kind != ATK_PGD && c->kind != -1)) continue;
        double ok = 0, known = 0;
        for (int k = 0; k < c->nseeds; k++) ok += (double)c->seeds[k].robust_ok, known += (double)c->seeds[k].robust_known;
        report_an_attacked(ro->an, c->pur, c->atk, ok, known);
    }

    /* tables */
    mem md[4], csv[4];
    for (int t = 0; t < 4; t++) mem_open(&md[t]), mem_open(&csv[t]);
    int present[3];
    int n1 = table1(ro, md[0].f, csv[0].f);
    int n3 = table3(ro, md[1].f, csv[1].f, present);
    int nS2 = tableS2(ro, md[2].f, csv[2].f);
    int n6 = table6(ro, md[3].f, csv[3].f);
    int nrows[4] = {n1, n3, nS2, n6};
    static const char *const base[4] = {"table1-distances", "table3-fixed-vs-random", "tableS2-transfer",
                                        "table6-compression"};
    for (int t = 0; t < 4; t++) {
        mem_close(&md[t]);
        mem_close(&csv[t]);
        if (!nrows[t]) continue;
        char name[64];
        snprintf(name, sizeof name, "%s.md", base[t]);
        rep_write_file(&od, name, md[t].buf, md[t].len);
        snprintf(name, sizeof name, "%s.csv", base[t]);
        rep_write_file(&od, name, csv[t].buf, csv[t].len);
    }

    /* plot data and scripts */
    mem d3, g3, d1, g1;
    mem_open(&d3), mem_open(&g3), mem_open(&d1), mem_open(&g1);
    int *pidx = xcalloc((size_t)ro->n + 1, sizeof *pidx), *aidx = xcalloc((size_t)ro->n + 1, sizeof *aidx);
    name_indices(ro, pidx, aidx);
    int p3 = fig3(ro, pidx, aidx, d3.f, g3.f), p1 = fig1c(ro, pidx, aidx, d1.f, g1.f);
    free(pidx), free(aidx);
    mem_close(&d3), mem_close(&g3), mem_close(&d1), mem_close(&g1);
    if (p3) {
        rep_write_file(&od, "fig3-compression-robustness.dat", d3.buf, d3.len);
        rep_write_file(&od, "fig3-compression-robustness.gp", g3.buf, g3.len);
    }
    if (p1) {
        rep_write_file(&od, "fig1c-distances.dat", d1.buf, d1.len);
        rep_write_file(&od, "fig1c-distances.gp", g1.buf, g1.len);
    }
    free(d3.buf), free(g3.buf), free(d1.buf), free(g1.buf);

    /* draw */
    char *gpx = od.failed ? NULL : rep_find_gnuplot();
    int ok1 = 0, ok3 = 0;
    const char *plot_note = NULL;
    if (!od.failed && (p1 || p3)) {
        char logp[4200];
        snprintf(logp, sizeof logp, "%s/gnuplot.log", dir);
        unlink(logp);
        if (!gpx) {
            plot_note = "gnuplot was not found, so no image was drawn (install Debian's gnuplot-nox: "
                        "deploy/install-deps.sh); the scripts and data are here: run `gnuplot fig3-compression-robustness.gp` "
                        "and `gnuplot fig1c-distances.gp` in this folder.";
            fprintf(stderr, "drq: report: warning: gnuplot not found (install gnuplot-nox); tables written, no plots\n");
        } else {
            if (p3) ok3 = rep_run_gnuplot(gpx, dir, "fig3-compression-robustness.gp") == 0 &&
                          rep_nonempty(dir, "fig3-compression-robustness.png") && rep_nonempty(dir, "fig3-compression-robustness.svg");
            if (p1) ok1 = rep_run_gnuplot(gpx, dir, "fig1c-distances.gp") == 0 && rep_nonempty(dir, "fig1c-distances.png") &&
                          rep_nonempty(dir, "fig1c-distances.svg");
            if ((p3 && !ok3) || (p1 && !ok1)) {
                plot_note = "gnuplot failed on a plot (see gnuplot.log in this folder); the tables are complete.";
                fprintf(stderr, "drq: report: warning: gnuplot failed (%s); tables written\n", logp);
            } else {
                struct stat sb;
                if (stat(logp, &sb) == 0 && sb.st_size == 0) unlink(logp);
            }
        }
    }

    /* report.md */
    mem rep;
    mem_open(&rep);
    FILE *r = rep.f;
    fprintf(r, "# drq report: %s%s\n\n", db ? "" : "sweep ", source);
    int64_t total = 0;
    for (int i = 0; i < ro->n; i++) total += ro->c[i].rows;
    if (nss) {
        fputs("Sweep", r);
        fputs(nss > 1 ? "s " : " ", r);
        for (int k = 0; k < nss; k++)
            fprintf(r, "%s%lld%s%s%s", k ? ", " : "", (long long)ss[k].sweep, ss[k].ok ? " \"" : "",
                    ss[k].ok ? ss[k].name : "", ss[k].ok ? "\"" : "");
        fputs(": ", r);
    }
    fprintf(r, "%lld attack rows, %d purifier × attack cells.\n", (long long)total, ro->n);
    if (ro->n) {
        fputs("\n| purifier | attack | randomness | gradient | seeds | images (rows) |\n| --- | --- | --- | --- | ---: | ---: |\n", r);
        for (int i = 0; i < ro->n; i++) {
            const cell *c = &ro->c[i];
            fputc('|', r);
            md_s(r, c->pur);
            md_s(r, c->atk);
            fprintf(r, " %s%s |", rnd_name(c->rnd), c->rnd_inferred ? " (from the name)" : "");
            md_s(r, grad_name(c->grad));
            fprintf(r, " %d | %lld |\n", c->nseeds, (long long)c->rows);
        }
    }
    if (nspec < nss || !nss)
        fputs("\nThe sweep's spec was not available (rows from drq-server, or an unreadable spec), so each attack's "
              "randomness and gradient are inferred from its name (\"transfer\", \"eot\", \"fresh\"/\"random\", "
              "\"bpda\"; otherwise fixed ω and the full gradient). Run `drq report` on the database file for the "
              "spec's values.\n",
              r);
    fputs("\nMeans are over images (and seeds); ± is the standard deviation over images for distances, SSIM and "
          "compression rates, and over seeds for accuracies (per-seed accuracy first, as `drq report`). "
          "Definitions: docs/design.md §Metrics; docs/report.md.\n",
          r);
    rep_section(r, "Table 1 — distances to the clean image and SSIM",
            "Distances from x in [0,1] pixels: init = x_adv − x, max = the forward-noised state (mapped back to [0,1]) − x, "
            "end = P(x_adv) − x; SSIM(x_adv, x) and SSIM(P(x_adv), x).",
            n1, base[0], &md[0], "no row has distances or SSIM");
    if (n3) {
        char what[512] = "Clean accuracy at P_ω(x) and robust accuracy, % (mean ± std over seeds), under fixed ω (the "
                         "same ω_s for every step and the evaluation) against random ω (a fresh ω at every step and "
                         "evaluation; EOT: the mean gradient over K fresh ω).";
        if (!present[1] && !present[2])
            snprintf(what + strlen(what), sizeof what - strlen(what),
                     " Random ω (fresh, EOT): not in this sweep (no attack with randomness \"fresh\" or \"eot\").");
        else if (!present[1] || !present[2])
            snprintf(what + strlen(what), sizeof what - strlen(what), " %s: not in this sweep.",
                     !present[1] ? "Fresh ω" : "EOT");
        if (!present[0])
            snprintf(what + strlen(what), sizeof what - strlen(what), " Fixed ω: not in this sweep.");
        rep_section(r, "Table 3 — clean and robust accuracy, fixed ω against random ω", what, n3, base[1], &md[1], "");
    } else {
        rep_section(r, "Table 3 — clean and robust accuracy, fixed ω against random ω", "", 0, base[1], &md[1],
                "no attack row with a robust prediction");
    }
    rep_section(r, "Table S2 — transfer across ω",
            "Adversarial examples made under ω_s (the attack's transfer_seed) and evaluated under ω_s′ for every "
            "other seed s′; the column at ω_s is the same attack evaluated under its own ω (fixed ω).",
            nS2, base[2], &md[2], "no attack with randomness \"transfer\"");
    rep_section(r, "Table 6 — compression rate",
            "Compression rate c = ‖P_ω(x+δ) − P_ω(x)‖₂ / ‖δ‖₂ under one fixed ω: of the adversarial δ on the images "
            "that stayed robust and on those that did not, and of uniform noise δ ~ U[−eps, eps]^d (per-image mean "
            "over the attack's n_uniform draws).",
            n6, base[3], &md[3], "no row has a compression rate");

    fputs("\n## Figure 1c — distance to the clean image\n\n", r);
    if (!p1)
        fputs("Not in this sweep: no row has distances.\n", r);
    else if (ok1)
        fputs("L2 distance to x at init (x_adv), max (the forward-noised state) and end (P(x_adv)), a panel per "
              "attack, a line per purifier (mean ± std over images).\n\n"
              "![Fig. 1c: distance to the clean image](fig1c-distances.png)\n\n"
              "[SVG](fig1c-distances.svg) · script [fig1c-distances.gp](fig1c-distances.gp) · data "
              "[fig1c-distances.dat](fig1c-distances.dat)\n",
              r);
    else
        fprintf(r, "%s\n", plot_note ? plot_note : "not drawn.");
    fputs("\n## Figure 3 — compression rate against robust accuracy\n\n", r);
    if (!p3)
        fputs("Not in this sweep: no purifier × attack cell has both a uniform compression rate and a robust "
              "accuracy.\n",
              r);
    else if (ok3)
        fputs("Robust accuracy (mean ± std over seeds) against the mean compression rate of uniform noise, a point per "
              "purifier (colour) × attack (symbol). The paper's fitted sigmoid is not drawn: the compression → "
              "robustness fit is drawn below (Figure 3 — the fit), from the screen analyses.\n\n"
              "![Fig. 3: compression rate against robust accuracy](fig3-compression-robustness.png)\n\n"
              "[SVG](fig3-compression-robustness.svg) · script "
              "[fig3-compression-robustness.gp](fig3-compression-robustness.gp) · data "
              "[fig3-compression-robustness.dat](fig3-compression-robustness.dat)\n",
              r);
    else
        fprintf(r, "%s\n", plot_note ? plot_note : "not drawn.");

    int an_plots = 0, an_tables = report_an_write(ro->an, dir, &od, od.failed ? NULL : gpx, r, &an_plots);
    free(gpx);
    images_section(r, ro, db, dir);
    mem_close(&rep);
    rep_write_file(&od, "report.md", rep.buf, rep.len);
    free(rep.buf);
    for (int t = 0; t < 4; t++) free(md[t].buf), free(csv[t].buf);
    for (int k = 0; k < nss; k++)
        if (ss[k].ok) drq_spec_free(&ss[k].spec);
    free(ss);
    if (od.failed) return 1;
    fprintf(stderr, "drq: report written to %s/report.md (%d tables, %d plots)\n", dir,
            (n1 > 0) + (n3 > 0) + (nS2 > 0) + (n6 > 0) + an_tables, ok1 + ok3 + an_plots);
    return 0;
}
