/* analysis_rows.c — see analysis_rows.h. */
#include "analysis_rows.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const kinds[DRQ_AT_N] = {NULL, "variance", "gradcorr", "screen"};
static const char *const tables[DRQ_AT_N] = {NULL, "variance_results", "gradcorr_results", "screen_results"};

/* Identity first (sweep, purifier, analysis, seed, image), as in schema/003_analyses.sql. */
static const char *const variance_cols[] = {
    "sweep",     "purifier",     "analysis", "seed",        "image",              "label",
    "n_delta",   "n_omega",      "var_total", "var_input",  "var_internal",       "snr",
    "radius_init", "radius_fixed_omega", "radius_fixed_delta", "radius_both", "cos_same_omega", "cos_same_delta"};
static const char *const gradcorr_cols[] = {"sweep", "purifier", "analysis", "seed", "image",
                                            "at",    "est_a",    "est_b",    "cosine"};
static const char *const screen_cols[] = {"sweep",         "purifier",      "analysis",       "seed",
                                          "image",         "label",         "clean_pred",     "clean_correct",
                                          "comp_unif_mean", "comp_unif_std", "n_uniform"};
#define NCOLS(a) ((int)(sizeof a / sizeof a[0]))

drq_analysis_table drq_analysis_table_parse(const char *kind) {
    for (int t = 1; t < DRQ_AT_N; t++)
        if (kind && !strcmp(kind, kinds[t])) return (drq_analysis_table)t;
    return DRQ_AT_NONE;
}

const char *drq_analysis_table_name(drq_analysis_table t) { return tables[t]; }

const char *const *drq_analysis_columns(drq_analysis_table t, int *n) {
    switch (t) {
    case DRQ_AT_VARIANCE: *n = NCOLS(variance_cols); return variance_cols;
    case DRQ_AT_GRADCORR: *n = NCOLS(gradcorr_cols); return gradcorr_cols;
    case DRQ_AT_SCREEN: *n = NCOLS(screen_cols); return screen_cols;
    default: *n = 0; return NULL;
    }
}

drq_analysis_table drq_analysis_of(const drq_row *r) {
    if (!r->extra || !strstr(r->extra, "\"analysis\"")) return DRQ_AT_NONE; /* cheap for every other row */
    json_t *o = json_loads(r->extra, 0, NULL);
    drq_analysis_table t = drq_analysis_table_parse(json_string_value(json_object_get(o, "analysis")));
    json_decref(o);
    return t;
}

/* Row metrics as JSON values, "not available" as null. */
static json_t *jint(int32_t v) { return v == DRQ_NA ? json_null() : json_integer(v); }
static json_t *jdbl(double v) { return isfinite(v) ? json_real(v) : json_null(); }

/* Extra field k as a JSON value of the right kind: a number (reals may come
 * back as integers from the JSON text), an integer, a string, else null. */
static json_t *xnum(const json_t *o, const char *k) {
    const json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_real(json_number_value(v)) : json_null();
}
static json_t *xint(const json_t *o, const char *k) {
    const json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? json_integer(json_integer_value(v)) : json_null();
}
static json_t *xstr(const json_t *o, const char *k) {
    const json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string(json_string_value(v)) : json_null();
}

/* A new array holding the identity columns of r. */
static json_t *identity(const drq_row *r) {
    return json_pack("[I, s, s, I, I]", (json_int_t)r->sweep, r->purifier, r->attack, (json_int_t)r->seed,
                     (json_int_t)r->image);
}

json_t *drq_analysis_rows(const drq_row *r, drq_analysis_table t) {
    json_t *out = json_array();
    json_t *o = r->extra ? json_loads(r->extra, 0, NULL) : NULL;
    if (!json_is_object(o) || drq_analysis_table_parse(json_string_value(json_object_get(o, "analysis"))) != t) {
        json_decref(o);
        return out;
    }
    if (t == DRQ_AT_VARIANCE) {
        json_t *v = identity(r);
        json_array_append_new(v, jint(r->label));
        json_array_append_new(v, xint(o, "n_delta"));
        json_array_append_new(v, xint(o, "n_omega"));
        for (int c = 8; c < NCOLS(variance_cols); c++) json_array_append_new(v, xnum(o, variance_cols[c]));
        json_array_append_new(out, v);
    } else if (t == DRQ_AT_SCREEN) {
        json_t *v = identity(r);
        json_array_append_new(v, jint(r->label));
        json_array_append_new(v, jint(r->clean_pred));
        json_array_append_new(v, jint(r->clean_correct));
        json_array_append_new(v, jdbl(r->comp_unif_mean));
        json_array_append_new(v, jdbl(r->comp_unif_std));
        json_array_append_new(v, xint(o, "n_uniform"));
        json_array_append_new(out, v);
    } else {
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(o, "pairs"), i, p) {
            if (!json_is_string(json_object_get(p, "est_a")) || !json_is_string(json_object_get(p, "est_b"))) continue;
            json_t *v = identity(r);
            json_array_append_new(v, xstr(o, "at"));
            json_array_append_new(v, xstr(p, "est_a"));
            json_array_append_new(v, xstr(p, "est_b"));
            json_array_append_new(v, xnum(p, "cosine"));
            json_array_append_new(out, v);
        }
    }
    json_decref(o);
    return out;
}

int drq_analysis_check(drq_attack_kind kind, const drq_row *rows, int64_t n, char *why, size_t cap) {
    drq_analysis_table want = kind == ATK_VARIANCE ? DRQ_AT_VARIANCE
                            : kind == ATK_GRADCORR ? DRQ_AT_GRADCORR
                            : kind == ATK_SCREEN   ? DRQ_AT_SCREEN : DRQ_AT_NONE;
    for (int64_t i = 0; i < n; i++) {
        drq_analysis_table t = drq_analysis_of(&rows[i]);
        if (t != want) {
            snprintf(why, cap, "row %lld: extra's analysis is %s, the job's kind is %s", (long long)i,
                     t ? kinds[t] : "none", drq_attack_kind_name(kind));
            return 0;
        }
        if (!want) continue;
        json_t *tr = drq_analysis_rows(&rows[i], t);
        size_t got = json_array_size(tr);
        json_decref(tr);
        if (!got) {
            snprintf(why, cap, "row %lld: a %s row without measurements in its extra", (long long)i, kinds[t]);
            return 0;
        }
    }
    return 1;
}

void drq_analysis_csv_header(FILE *f, drq_analysis_table t) {
    int n;
    const char *const *cols = drq_analysis_columns(t, &n);
    for (int c = 0; c < n; c++) fprintf(f, "%s%s", c ? "," : "", cols[c]);
    fputc('\n', f);
}

void drq_analysis_csv(FILE *f, const json_t *values) {
    size_t i;
    json_t *v;
    json_array_foreach(values, i, v) {
        if (i) fputc(',', f);
        if (json_is_integer(v)) {
            fprintf(f, "%lld", (long long)json_integer_value(v));
        } else if (json_is_real(v)) {
            fprintf(f, "%.17g", json_real_value(v));
        } else if (json_is_string(v)) {
            drq_csv_str(f, json_string_value(v));
        }
    }
    fputc('\n', f);
}

void drq_analysis_jsonl(FILE *f, drq_analysis_table t, const json_t *values) {
    int n;
    const char *const *cols = drq_analysis_columns(t, &n);
    json_t *o = json_object();
    for (int c = 0; c < n; c++) json_object_set(o, cols[c], json_array_get(values, (size_t)c));
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
    fputs(s, f);
    fputc('\n', f);
    free(s);
    json_decref(o);
}
