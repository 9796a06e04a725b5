/* tool_stcmp — compares the tensors of two safetensors files (llm.c style).
 *
 *   tool_stcmp ACTUAL.safetensors EXPECTED.safetensors
 *              [--tol NAME=TOL ...] [--default-tol TOL] [--only NAME,NAME,...]
 *
 * For every tensor of EXPECTED (or only those named by --only) ACTUAL must
 * hold a tensor of the same name and shape whose relative L2 error
 * ‖a−e‖/‖e‖ (double accumulation; absolute when ‖e‖ = 0) is within the
 * tolerance; NaN or Inf where the expected value is finite fails.  One line
 * per tensor: status, name, shape, relative L2 error, max abs difference and
 * where, tolerance.  Ends with "RESULT <passed> <failed>" (one check per
 * tensor); exit status 0 when all pass, 1 on any failure, 2 on bad usage or
 * unreadable files.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/safetensors.h"
#include "common/util.h"

#define DEFAULT_TOL 1e-5

typedef struct {
    char *name;
    double tol;
} tol_entry;

static tol_entry *tols;
static int ntols;

/* frees the --tol table and returns rc (every exit goes through here) */
static int finish(int rc) {
    for (int k = 0; k < ntols; k++) free(tols[k].name);
    free(tols);
    tols = NULL;
    ntols = 0;
    return rc;
}

static void usage(void) {
    fprintf(stderr,
            "usage: tool_stcmp ACTUAL.safetensors EXPECTED.safetensors [--tol NAME=TOL ...]\n"
            "                  [--default-tol TOL] [--only NAME,NAME,...]\n");
}

static int parse_double(const char *s, double *v) {
    char *end;
    *v = strtod(s, &end);
    return end != s && *end == 0 && *v >= 0 && isfinite(*v);
}

static const char *fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

/* flat index -> "[i,j,k]" */
static const char *fmt_index(char *buf, size_t cap, int ndim, const int64_t *shape, size_t flat) {
    int64_t idx[ST_MAX_DIMS];
    for (int d = ndim - 1; d >= 0; d--) {
        idx[d] = shape[d] ? (int64_t)(flat % (size_t)shape[d]) : 0;
        flat = shape[d] ? flat / (size_t)shape[d] : 0;
    }
    return fmt_shape(buf, cap, ndim, idx);
}

static int name_in_list(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return 1;
        if (!c) break;
        p = c + 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *paths[2] = {NULL, NULL};
    int npaths = 0;
    double default_tol = DEFAULT_TOL;
    const char *only = NULL;
    tols = xcalloc((size_t)argc, sizeof(tol_entry));

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return finish(0);
        } else if (!strcmp(a, "--tol") && i + 1 < argc) {
            const char *spec = argv[++i], *eq = strrchr(spec, '=');
            double v;
            if (!eq || eq == spec || !parse_double(eq + 1, &v)) {
                fprintf(stderr, "tool_stcmp: bad --tol '%s' (want NAME=TOL)\n", spec);
                return finish(2);
            }
            tols[ntols].name = xmalloc((size_t)(eq - spec) + 1);
            memcpy(tols[ntols].name, spec, (size_t)(eq - spec));
            tols[ntols].name[eq - spec] = 0;
            tols[ntols++].tol = v;
        } else if (!strcmp(a, "--default-tol") && i + 1 < argc) {
            if (!parse_double(argv[++i], &default_tol)) {
                fprintf(stderr, "tool_stcmp: bad --default-tol '%s'\n", argv[i]);
                return finish(2);
            }
        } else if (!strcmp(a, "--only") && i + 1 < argc) {
            only = argv[++i];
        } else if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "tool_stcmp: unknown or incomplete option '%s'\n", a);
            usage();
            return finish(2);
        } else if (npaths < 2) {
            paths[npaths++] = a;
        } else {
            usage();
            return finish(2);
        }
    }
    if (npaths != 2) {
        usage();
        return finish(2);
    }

    st_file act, exp;
    drq_err err;
    if (st_load(paths[0], &act, &err) != 0) {
        fprintf(stderr, "tool_stcmp: actual: %s\n", err.msg);
        printf("RESULT 0 1\n");
        return finish(2);
    }
    if (st_load(paths[1], &exp, &err) != 0) {
        fprintf(stderr, "tool_stcmp: expected: %s\n", err.msg);
        st_free(&act);
        printf("RESULT 0 1\n");
        return finish(2);
    }

    int passed = 0, failed = 0;
    printf("%-4s %-40s %-18s %10s %10s  %-18s %8s\n", "", "tensor", "shape", "rel_l2", "max_abs", "at", "tol");

    /* names in --only that EXPECTED lacks are failures too */
    if (only) {
        char *copy = xstrdup(only), *save = NULL;
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            if (!st_find(&exp, tok)) {
                printf("FAIL %-40s not in expected file %s\n", tok, paths[1]);
                failed++;
            }
        }
        free(copy);
    }

    for (int i = 0; i < exp.n; i++) {
        const st_tensor *e = &exp.t[i];
        if (only && !name_in_list(only, e->name)) continue;
        double tol = default_tol;
        for (int k = 0; k < ntols; k++)
            if (!strcmp(tols[k].name, e->name)) tol = tols[k].tol;
        char sbuf[128], sbuf2[128], ibuf[128];
        fmt_shape(sbuf, sizeof sbuf, e->ndim, e->shape);
        const st_tensor *a = st_find(&act, e->name);
        if (!a) {
            printf("FAIL %-40s %-18s missing from actual file %s\n", e->name, sbuf, paths[0]);
            failed++;
            continue;
        }
        int same = a->ndim == e->ndim;
        for (int d = 0; same && d < e->ndim; d++) same = a->shape[d] == e->shape[d];
        if (!same) {
            printf("FAIL %-40s %-18s actual shape %s\n", e->name, sbuf,
                   fmt_shape(sbuf2, sizeof sbuf2, a->ndim, a->shape));
            failed++;
            continue;
        }
        double num = 0, den = 0, maxd = 0;
        size_t maxi = 0, nonfinite = 0;
        for (size_t j = 0; j < e->numel; j++) {
            double x = a->data[j], y = e->data[j], d = fabs(x - y);
            if (!isfinite(x) && isfinite(y)) nonfinite++;
            if (isfinite(d)) {
                num += d * d;
                if (d > maxd) maxd = d, maxi = j;
            } else if (!(x == y) && !(isnan(x) && isnan(y))) { /* nan vs number, or differing infinities */
                num = INFINITY;
                if (maxd != INFINITY) maxd = INFINITY, maxi = j;
            }
            if (isfinite(y)) den += y * y;
        }
        double rel = sqrt(num) / (den > 1e-300 ? sqrt(den) : 1.0);
        int ok = rel <= tol && nonfinite == 0;
        fmt_index(ibuf, sizeof ibuf, e->ndim, e->shape, maxi);
        printf("%-4s %-40s %-18s %10.3e %10.3e  %-18s %8.1e", ok ? "ok" : "FAIL", e->name, sbuf, rel, maxd,
               e->numel ? ibuf : "-", tol);
        if (nonfinite) printf("  (%zu non-finite values)", nonfinite);
        if (e->numel && maxd > 0)
            printf("  actual %.9g expected %.9g", (double)a->data[maxi], (double)e->data[maxi]);
        printf("\n");
        if (ok) passed++;
        else failed++;
    }
    if (passed + failed == 0) {
        printf("FAIL nothing compared (expected file %s has no selected tensor)\n", paths[1]);
        failed++;
    }
    printf("RESULT %d %d\n", passed, failed);
    st_free(&act);
    st_free(&exp);
    return finish(failed ? 1 : 0);
}
