/* spec.c — see spec.h and docs/spec.md.
 *
 * Validation is table-free on purpose: each object is read by one function
 * that first rejects unknown keys (drq_json_check_keys, common/json_get.c)
 * and then reads every known key with a typed getter that fills in the
 * default.  To add a field: add its name
 * to the object's key list, read it with a getter, write it in the *_json
 * function, and document it in docs/spec.md.
 */
#include "spec.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/images.h"
#include "common/json_get.h"

/* ---- typed getters ------------------------------------------------------ */

/* Returns 1 and *out when present, 0 when absent (and not required), -1 on error. */
static int get_str(const json_t *obj, const char *path, const char *key, int required, const char **out,
                   drq_err *err) {
    char p[256];
    drq_json_path(p, sizeof p, path, key);
    json_t *v = json_object_get(obj, key);
    if (!v) return required ? drq_errf(err, "%s: required (expected a string)", p) : 0;
    if (!json_is_string(v) || json_string_length(v) == 0)
        return drq_errf(err, "%s: expected a non-empty string", p);
    *out = json_string_value(v);
    return 1;
}

static int get_int32(const json_t *obj, const char *path, const char *key, int lo, int hi, int dflt, int *out,
                     drq_err *err) {
    int64_t v = 0;
    int rc = drq_json_get_int(obj, path, key, 0, lo, hi, dflt, &v, err);
    if (rc >= 0) *out = (int)v;
    return rc;
}

/* A number in the interval (lo,hi] / [lo,hi] (lo_open chooses). */
static int get_num(const json_t *obj, const char *path, const char *key, double lo, int lo_open, double hi,
                   double dflt, double *out, drq_err *err) {
    char p[256];
    drq_json_path(p, sizeof p, path, key);
    json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    double x = json_is_number(v) ? json_number_value(v) : NAN;
    if (!json_is_number(v) || !isfinite(x) || (lo_open ? x <= lo : x < lo) || x > hi)
        return drq_errf(err, "%s: expected a number in %c%g,%g]", p, lo_open ? '(' : '[', lo, hi);
    *out = x;
    return 1;
}

static int get_bool(const json_t *obj, const char *path, const char *key, int dflt, int *out, drq_err *err) {
    char p[256];
    drq_json_path(p, sizeof p, path, key);
    json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v)) return drq_errf(err, "%s: expected true or false", p);
    *out = json_is_true(v);
    return 1;
}

/* One of names[] (NULL-terminated); *out = its index. */
static int get_enum(const json_t *obj, const char *path, const char *key, int required, const char *const *names,
                    int dflt, int *out, drq_err *err) {
    char p[256], list[256] = "";
    drq_json_path(p, sizeof p, path, key);
    for (const char *const *a = names; *a; a++) {
        if (a != names) strncat(list, "|", sizeof list - strlen(list) - 1);
        strncat(list, *a, sizeof list - strlen(list) - 1);
    }
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (required) return drq_errf(err, "%s: required (expected one of %s)", p, list);
        *out = dflt;
        return 0;
    }
    if (json_is_string(v))
        for (int i = 0; names[i]; i++)
            if (!strcmp(names[i], json_string_value(v))) {
                *out = i;
                return 1;
            }
    return drq_errf(err, "%s: expected one of %s", p, list);
}

/* A name: 1-63 characters from [A-Za-z0-9_.-]. */
static int get_name(const json_t *obj, const char *path, const char *key, char out[DRQ_NAME_MAX], drq_err *err) {
    const char *s = NULL;
    int rc = get_str(obj, path, key, 1, &s, err);
    if (rc < 0) return -1;
    char p[256];
    drq_json_path(p, sizeof p, path, key);
    size_t n = strlen(s);
    int ok = n >= 1 && n < DRQ_NAME_MAX;
    for (size_t i = 0; ok && i < n; i++) {
        char c = s[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
             c == '-';
    }
    if (!ok) return drq_errf(err, "%s: expected a name of 1-63 characters from A-Z a-z 0-9 _ . -", p);
    memcpy(out, s, n + 1);
    return 1;
}

static int need_object(const json_t *v, const char *path, drq_err *err) {
    if (!json_is_object(v)) return drq_errf(err, "%s: expected an object", path && *path ? path : "spec");
    return 0;
}

/* ---- uniqueness in O(n log n) ------------------------------------------- */

/* One element of a list whose entries must be distinct: a seed (s NULL) or a
 * name, and its index in the spec's array. */
typedef struct {
    int64_t v;
    const char *s;
    int idx;
} key_ref;

/* By key, then by index, so that equal keys sit together in spec order. */
static int key_cmp(const void *pa, const void *pb) {
    const key_ref *a = pa, *b = pb;
    int c = a->s ? strcmp(a->s, b->s) : (a->v > b->v) - (a->v < b->v);
    return c ? c : (a->idx > b->idx) - (a->idx < b->idx);
}

static int key_same(const key_ref *a, const key_ref *b) { return a->s ? !strcmp(a->s, b->s) : a->v == b->v; }

/* Sorts refs[0..n) and finds the first duplicate in spec order, i.e. the
 * smallest index i whose key also occurs at some j < i -- the entry a
 * pairwise scan in spec order would report.  Returns i and sets *first to the
 * smallest such j, or returns -1 when all keys are distinct. */
static int first_duplicate(key_ref *refs, int n, int *first) {
    qsort(refs, (size_t)n, sizeof *refs, key_cmp);
    int dup = -1;
    for (int k = 1; k < n; k++)
        /* the second entry of a run of equal keys is its earliest duplicate */
        if (key_same(&refs[k], &refs[k - 1]) && (k < 2 || !key_same(&refs[k - 1], &refs[k - 2])) &&
            (dup < 0 || refs[k].idx < dup)) {
            dup = refs[k].idx;
            *first = refs[k - 1].idx;
        }
    return dup;
}

/* ---- objects ------------------------------------------------------------ */

static const char *const dataset_kinds[] = {"none", "cifar10", "mnist", "fashion-mnist", "imagenet", NULL};
static const char *const purifier_kinds[] = {"none", "ddpm", "reverse", "ddim", NULL};
static const char *const var_kinds[] = {"fixedlarge", "fixedsmall", NULL};
static const char *const attack_kinds[] = {"pgd", "bpda", "noop", NULL}; /* accepted in attacks[] */
/* every drq_attack_kind by its value; the last three are accepted in analyses[] */
static const char *const kind_names[] = {"pgd", "bpda", "noop", "variance", "gradcorr", "screen", NULL};
static const char *const analysis_kinds[] = {"variance", "gradcorr", "screen", NULL};
static const char *const estimator_names[] = {"fixed", "fixed_other", "fresh", "eot", "bpda", NULL};
static const char *const norms[] = {"linf", "l2", NULL};
static const char *const randomness_kinds[] = {"fixed", "fresh", "eot", "transfer", NULL};
static const char *const grads[] = {"full", "bpda", NULL};
static const char *const precisions[] = {"tf32", "fp32", NULL};

const char *drq_precision_name(drq_precision p) { return precisions[p]; }

const char *drq_attack_kind_name(drq_attack_kind k) { return kind_names[k]; }
int drq_kind_is_analysis(drq_attack_kind k) { return k == ATK_VARIANCE || k == ATK_GRADCORR || k == ATK_SCREEN; }
const char *drq_estimator_name(drq_estimator e) { return estimator_names[e]; }
const char *drq_dataset_kind_name(drq_dataset_kind k) { return dataset_kinds[k]; }

/* Test-split sizes, the default image count of a real dataset (ImageNet:
 * the validation set). */
#define DATASET_DEFAULT_SIZE 10000
#define DATASET_IMAGENET_SIZE 50000

static int parse_dataset(const json_t *v, drq_dataset_spec *d, drq_err *err) {
    static const char *const keys[] = {"kind", "path", "start", "count", NULL};
    const char *path = "dataset";
    if (need_object(v, path, err) || drq_json_check_keys(v, path, keys, err)) return -1;
    int kind;
    if (get_enum(v, path, "kind", 1, dataset_kinds, 0, &kind, err) < 0) return -1;
    d->kind = (drq_dataset_kind)kind;
    const char *p = NULL;
    int rc = get_str(v, path, "path", d->kind != DS_NONE, &p, err);
    if (rc < 0) return -1;
    if (rc && d->kind == DS_NONE) return drq_errf(err, "dataset.path: not allowed for dataset kind \"none\"");
    d->path = p ? xstrdup(p) : NULL;
    if (drq_json_get_int(v, path, "start", 0, 0, INT64_C(1000000000), 0, &d->start, err) < 0) return -1;
    int64_t size = d->kind == DS_IMAGENET ? DATASET_IMAGENET_SIZE : DATASET_DEFAULT_SIZE;
    if (drq_json_get_int(v, path, "count", d->kind == DS_NONE, 1, INT64_C(1000000000),
                d->start < size ? size - d->start : 1, &d->count, err) < 0)
        return -1;
    return 0;
}

/* The architectures the engine builds (worker/models/models.h), per role. */
static const char *const classifier_archs[] = {"wrn", "resnet50", NULL};
static const char *const diffusion_archs[] = {"ddpm-unet", "guided-unet", NULL};

/* diffusion.precision: the UNet's matmul-class operands (docs/spec.md) */
static const char *const model_precisions[] = {"fp32", "bf16", NULL};

/* with_precision: the model takes "precision" (the diffusion model). */
static int parse_model(const json_t *root, const char *key, int required, const char *why,
                       const char *const *archs, int with_precision, drq_model_spec *m, drq_err *err) {
    static const char *const keys[] = {"arch", "config", "weights", NULL};
    static const char *const keys_prec[] = {"arch", "config", "weights", "precision", NULL};
    json_t *v = json_object_get(root, key);
    if (!v) {
        if (required) return drq_errf(err, "%s: required (%s)", key, why);
        return 0;
    }
    if (need_object(v, key, err) || drq_json_check_keys(v, key, with_precision ? keys_prec : keys, err)) return -1;
    const char *weights = NULL;
    int a, prec = 0;
    if (get_enum(v, key, "arch", 1, archs, 0, &a, err) < 0) return -1;
    if (get_str(v, key, "weights", 1, &weights, err) < 0) return -1;
    if (with_precision && get_enum(v, key, "precision", 0, model_precisions, 0, &prec, err) < 0) return -1;
    if (prec && strcmp(archs[a], "guided-unet")) {
        char q[256];
        drq_json_path(q, sizeof q, key, "precision");
        return drq_errf(err, "%s: \"bf16\" is built for arch \"guided-unet\" only (\"%s\" runs in fp32)", q, archs[a]);
    }
    m->bf16 = prec;
    json_t *cfg = json_object_get(v, "config");
    if (cfg && !json_is_string(cfg) && !json_is_object(cfg))
        return drq_errf(err, "%s.config: expected a string (path) or an object", key);
    m->present = 1;
    m->arch = xstrdup(archs[a]);
    m->weights = xstrdup(weights);
    m->config = cfg ? json_deep_copy(cfg) : NULL;
    return 0;
}

static int parse_purifier(const json_t *v, const char *path, drq_purifier_spec *p, drq_err *err) {
    static const char *const keys[] = {"name",     "kind",      "t_star",  "var", "stride",
                                       "clamp_x0", "clamp_out", "forward", NULL};
    if (need_object(v, path, err) || drq_json_check_keys(v, path, keys, err)) return -1;
    int k;
    if (get_name(v, path, "name", p->name, err) < 0) return -1;
    if (get_enum(v, path, "kind", 1, purifier_kinds, 0, &k, err) < 0) return -1;
    p->kind = (drq_purifier_kind)k;
    if (get_int32(v, path, "t_star", 1, 1000, 100, &p->t_star, err) < 0) return -1;
    if (get_enum(v, path, "var", 0, var_kinds, VAR_FIXEDLARGE, &k, err) < 0) return -1;
    p->var = (drq_var_kind)k;
    if (get_int32(v, path, "stride", 1, 1000, 1, &p->stride, err) < 0) return -1;
    if (get_bool(v, path, "clamp_x0", 0, &p->clamp_x0, err) < 0) return -1;
    if (get_bool(v, path, "clamp_out", 1, &p->clamp_out, err) < 0) return -1;
    if (p->stride > 1 && p->kind != PUR_DDIM) {
        char q[256];
        drq_json_path(q, sizeof q, path, "stride");
        return drq_errf(err, "%s: only valid for kind \"ddim\"", q);
    }
    int rc = get_bool(v, path, "forward", 1, &p->forward, err);
    if (rc < 0) return -1;
    if (rc && p->kind != PUR_DDIM) {
        char q[256];
        drq_json_path(q, sizeof q, path, "forward");
        return drq_errf(err, "%s: only valid for kind \"ddim\"", q);
    }
    return 0;
}

/* The names of the attack option "save", in DRQ_SAVE_* bit order. */
static const char *const save_names[] = {"x_adv", "purified", NULL};

/* "save": an array of distinct names from save_names → DRQ_SAVE_* bits.
 * On datasets whose image size the kind fixes, the images of one row must
 * fit DRQ_SAVE_MAX_ROW_BYTES (other sizes are checked when the engine loads
 * the dataset, common/images.h). */
static int parse_save(const json_t *v, const char *path, const drq_spec *s, drq_attack_spec *a, drq_err *err) {
    char q[256];
    json_t *sv = json_object_get(v, "save");
    a->save = 0;
    if (!sv) return 0;
    drq_json_path(q, sizeof q, path, "save");
    if (!json_is_array(sv)) return drq_errf(err, "%s: expected an array of \"x_adv\" and \"purified\"", q);
    size_t i;
    json_t *e;
    json_array_foreach(sv, i, e) {
        int bit = -1;
        for (int k = 0; json_is_string(e) && save_names[k]; k++)
            if (!strcmp(json_string_value(e), save_names[k])) bit = 1 << k;
        if (bit < 0) return drq_errf(err, "%s[%zu]: expected \"x_adv\" or \"purified\"", q, i);
        if (a->save & bit) return drq_errf(err, "%s[%zu]: \"%s\" given twice", q, i, json_string_value(e));
        a->save |= bit;
    }
    if (a->save && a->kind == ATK_NOOP) return drq_errf(err, "%s: not valid for kind \"noop\" (it has no images)", q);
    if (s->dataset.kind == DS_CIFAR10) {
        int64_t bytes = drq_save_row_bytes(a->save, 3, 32, 32);
        if (bytes > DRQ_SAVE_MAX_ROW_BYTES)
            return drq_errf(err, "%s: %lld bytes of images per row, more than the cap of %d", q, (long long)bytes,
                            DRQ_SAVE_MAX_ROW_BYTES);
        if (bytes * s->shard_images > DRQ_SAVE_MAX_JOB_BYTES)
            return drq_errf(err, "%s: %lld images per shard × %lld bytes exceed the cap of %d bytes per job (lower "
                            "shard.images)", q, (long long)s->shard_images, (long long)bytes, DRQ_SAVE_MAX_JOB_BYTES);
    }
    return 0;
}

/* seeds: the spec's seeds sorted by key_cmp (to find transfer_seed by bisection). */
static int parse_attack(const json_t *v, const char *path, const drq_spec *s, const key_ref *seeds,
                        drq_attack_spec *a, drq_err *err) {
    static const char *const keys[] = {"name",        "kind",    "norm",          "eps",       "steps",
                                       "rel_stepsize", "abs_stepsize", "random_start", "randomness", "eot_k",
                                       "votes",       "transfer_seed", "n_uniform", "ms_per_image", "grad",
                                       "fail_images", "save", NULL};
    char q[256];
    if (need_object(v, path, err) || drq_json_check_keys(v, path, keys, err)) return -1;
    int k;
    if (get_name(v, path, "name", a->name, err) < 0) return -1;
    if (get_enum(v, path, "kind", 1, attack_kinds, 0, &k, err) < 0) return -1;
    a->kind = (drq_attack_kind)k;
    if (get_enum(v, path, "norm", 0, norms, NORM_LINF, &k, err) < 0) return -1;
    a->norm = (drq_norm)k;
    if (a->norm == NORM_LINF) {
        if (get_num(v, path, "eps", 0, 1, 1.0, 8.0 / 255.0, &a->eps, err) < 0) return -1;
    } else {
        if (get_num(v, path, "eps", 0, 1, 1000.0, 0.5, &a->eps, err) < 0) return -1;
    }
    if (get_int32(v, path, "steps", 0, 100000, 40, &a->steps, err) < 0) return -1;
    int has_rel = json_object_get(v, "rel_stepsize") != NULL, has_abs = json_object_get(v, "abs_stepsize") != NULL;
    if (has_rel && has_abs) {
        drq_json_path(q, sizeof q, path, "abs_stepsize");
        return drq_errf(err, "%s: give rel_stepsize or abs_stepsize, not both", q);
    }
    if (get_num(v, path, "rel_stepsize", 0, 1, 1000.0, has_abs ? 0 : 0.01 / 0.3, &a->rel_stepsize, err) < 0)
        return -1;
    if (get_num(v, path, "abs_stepsize", 0, 1, 1000.0, 0, &a->abs_stepsize, err) < 0) return -1;
    if (get_bool(v, path, "random_start", 1, &a->random_start, err) < 0) return -1;
    if (get_enum(v, path, "randomness", 0, randomness_kinds, RND_FIXED, &k, err) < 0) return -1;
    a->randomness = (drq_randomness)k;
    if (get_int32(v, path, "eot_k", 1, 100000, 15, &a->eot_k, err) < 0) return -1;
    if (get_int32(v, path, "votes", 1, 100000, 1, &a->votes, err) < 0) return -1;
    int rc = drq_json_get_int(v, path, "transfer_seed", 0, 0, INT64_MAX, -1, &a->transfer_seed, err);
    if (rc < 0) return -1;
    drq_json_path(q, sizeof q, path, "transfer_seed");
    if (a->randomness == RND_TRANSFER && !rc) return drq_errf(err, "%s: required with randomness \"transfer\"", q);
    if (a->randomness != RND_TRANSFER && rc) return drq_errf(err, "%s: only valid with randomness \"transfer\"", q);
    if (rc) {
        key_ref want = {a->transfer_seed, NULL, -1};
        int lo = 0, hi = s->nseeds; /* first ref >= (transfer_seed, index -1) */
        while (lo < hi) {
            int mid = lo + (hi - lo) / 2;
            if (key_cmp(&seeds[mid], &want) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == s->nseeds || seeds[lo].v != a->transfer_seed)
            return drq_errf(err, "%s: expected one of the sweep's seeds", q);
        a->transfer_index = seeds[lo].idx;
    }
    if (get_int32(v, path, "n_uniform", 0, 100000, 1, &a->n_uniform, err) < 0) return -1;
    rc = get_num(v, path, "ms_per_image", 0, 0, 3600000.0, 0, &a->ms_per_image, err);
    if (rc < 0) return -1;
    drq_json_path(q, sizeof q, path, "ms_per_image");
    if (rc && a->kind != ATK_NOOP) return drq_errf(err, "%s: only valid for kind \"noop\"", q);
    rc = get_enum(v, path, "grad", 0, grads, a->kind == ATK_BPDA ? GRAD_BPDA : GRAD_FULL, &k, err);
    if (rc < 0) return -1;
    a->grad = (drq_grad)k;
    drq_json_path(q, sizeof q, path, "grad");
    if (a->kind == ATK_BPDA && a->grad != GRAD_BPDA) return drq_errf(err, "%s: kind \"bpda\" implies grad \"bpda\"", q);
    json_t *fi = json_object_get(v, "fail_images");
    drq_json_path(q, sizeof q, path, "fail_images");
    if (fi) {
        if (a->kind != ATK_NOOP) return drq_errf(err, "%s: only valid for kind \"noop\"", q);
        if (!json_is_array(fi)) return drq_errf(err, "%s: expected an array of image indices", q);
        a->nfail_images = (int)json_array_size(fi);
        a->fail_images = xcalloc((size_t)a->nfail_images + 1, sizeof *a->fail_images);
        size_t i;
        json_t *e;
        json_array_foreach(fi, i, e) {
            int64_t lo = s->dataset.start, hi = s->dataset.start + s->dataset.count - 1;
            if (!json_is_integer(e) || json_integer_value(e) < lo || json_integer_value(e) > hi)
                return drq_errf(err, "%s[%zu]: expected an image index in [%lld,%lld]", q, i, (long long)lo,
                                (long long)hi);
            a->fail_images[i] = json_integer_value(e);
        }
    }
    if (parse_save(v, path, s, a, err)) return -1;
    if (a->kind != ATK_NOOP && s->dataset.kind == DS_NONE) {
        drq_json_path(q, sizeof q, path, "kind");
        return drq_errf(err, "%s: \"%s\" needs a dataset (dataset.kind is \"none\")", q, attack_kinds[a->kind]);
    }
    return 0;
}

/* ---- analyses (docs/spec.md §analyses) ------------------------------------ */

/* The keys each analysis kind takes besides name and kind, indexed by kind − ATK_VARIANCE. */
static const char *const analysis_keys[3][5] = {
    {"n_delta", "n_omega", "norm", "eps", NULL},
    {"estimators", "eot_k", "at", NULL},
    {"n_uniform", "norm", "eps", NULL},
};

/* The norm and eps of a variance or screen entry: the attacks' keys and defaults. */
static int parse_ball(const json_t *v, const char *path, drq_attack_spec *a, drq_err *err) {
    int k;
    if (get_enum(v, path, "norm", 0, norms, NORM_LINF, &k, err) < 0) return -1;
    a->norm = (drq_norm)k;
    if (a->norm == NORM_LINF) return get_num(v, path, "eps", 0, 1, 1.0, 8.0 / 255.0, &a->eps, err) < 0 ? -1 : 0;
    return get_num(v, path, "eps", 0, 1, 1000.0, 0.5, &a->eps, err) < 0 ? -1 : 0;
}

/* gradcorr's estimators: at least 2 distinct names of estimator_names
 * (default: all five in that order). */
static int parse_estimators(const json_t *v, const char *path, drq_attack_spec *a, drq_err *err) {
    char q[256];
    drq_json_path(q, sizeof q, path, "estimators");
    json_t *es = json_object_get(v, "estimators");
    if (!es) {
        for (int i = 0; i < EST_NKINDS; i++) a->estimators[i] = (drq_estimator)i;
        a->nestimators = EST_NKINDS;
        return 0;
    }
    if (!json_is_array(es) || json_array_size(es) < 2 || json_array_size(es) > EST_NKINDS)
        return drq_errf(err, "%s: expected an array of 2 to %d distinct names from fixed|fixed_other|fresh|eot|bpda", q,
                        EST_NKINDS);
    size_t i;
    json_t *e;
    json_array_foreach(es, i, e) {
        int found = -1;
        for (int k = 0; estimator_names[k] && json_is_string(e); k++)
            if (!strcmp(estimator_names[k], json_string_value(e))) found = k;
        if (found < 0) return drq_errf(err, "%s[%zu]: expected one of fixed|fixed_other|fresh|eot|bpda", q, i);
        for (size_t j = 0; j < i; j++)
            if ((int)a->estimators[j] == found)
                return drq_errf(err, "%s[%zu]: duplicate estimator \"%s\" (same as %s[%zu])", q, i,
                                estimator_names[found], q, j);
        a->estimators[i] = (drq_estimator)found;
    }
    a->nestimators = (int)json_array_size(es);
    return 0;
}

/* One entry of analyses[]: a job kind of the attack dimension that measures
 * instead of attacking.  Fields an analysis does not use keep the values of
 * a plain fixed-ω attack without steps. */
static int parse_analysis(const json_t *v, const char *path, const drq_spec *s, drq_attack_spec *a, drq_err *err) {
    static const char *const keys[] = {"name", "kind", "n_delta", "n_omega", "norm", "eps", "estimators",
                                       "eot_k", "at", "n_uniform", NULL};
    char q[256];
    if (need_object(v, path, err) || drq_json_check_keys(v, path, keys, err)) return -1;
    int k;
    if (get_name(v, path, "name", a->name, err) < 0) return -1;
    if (get_enum(v, path, "kind", 1, analysis_kinds, 0, &k, err) < 0) return -1;
    a->kind = (drq_attack_kind)(ATK_VARIANCE + k);
    /* a key of another analysis kind is an error, not silently ignored */
    for (const char *const *key = keys + 2; *key; key++) {
        int mine = 0;
        for (const char *const *m = analysis_keys[k]; *m; m++) mine |= !strcmp(*m, *key);
        if (!mine && json_object_get(v, *key)) {
            drq_json_path(q, sizeof q, path, *key);
            return drq_errf(err, "%s: not a key of kind \"%s\"", q, analysis_kinds[k]);
        }
    }
    a->steps = 0;
    a->rel_stepsize = 0.01 / 0.3;
    a->randomness = RND_FIXED;
    a->votes = 1;
    a->eot_k = 1;
    a->transfer_seed = -1;
    a->grad = GRAD_FULL;
    a->norm = NORM_LINF;
    a->eps = 8.0 / 255.0;
    if (a->kind == ATK_VARIANCE) {
        if (get_int32(v, path, "n_delta", 1, DRQ_ANALYSIS_MAX_DRAWS, 50, &a->n_delta, err) < 0) return -1;
        if (get_int32(v, path, "n_omega", 2, DRQ_ANALYSIS_MAX_DRAWS, 50, &a->n_omega, err) < 0) return -1;
        if (parse_ball(v, path, a, err)) return -1;
    } else if (a->kind == ATK_GRADCORR) {
        if (parse_estimators(v, path, a, err)) return -1;
        if (get_int32(v, path, "eot_k", 1, DRQ_ANALYSIS_MAX_DRAWS, 15, &a->eot_k, err) < 0) return -1;
        const char *at = "clean";
        if (get_str(v, path, "at", 0, &at, err) < 0) return -1;
        if (strcmp(at, "clean")) {
            drq_json_path(q, sizeof q, path, "at");
            return drq_errf(err,
                            "%s: only \"clean\" is supported (this build keeps no adversarial examples to measure "
                            "at)",
                            q);
        }
    } else {
        if (get_int32(v, path, "n_uniform", 1, DRQ_ANALYSIS_MAX_DRAWS, 16, &a->n_uniform, err) < 0) return -1;
        if (parse_ball(v, path, a, err)) return -1;
    }
    if (s->dataset.kind == DS_NONE) {
        drq_json_path(q, sizeof q, path, "kind");
        return drq_errf(err, "%s: \"%s\" needs a dataset (dataset.kind is \"none\")", q, analysis_kinds[k]);
    }
    return 0;
}

/* Reads seeds[]: every entry an integer >= 0, all distinct.  The error is the
 * one a scan in array order meets first (a bad entry or a repeat), found in
 * O(n log n).  *sorted: the seeds as key_refs sorted by key_cmp (the caller
 * frees it), for parse_attack's transfer_seed lookup. */
static int parse_seeds(const json_t *seeds, drq_spec *s, key_ref **sorted, drq_err *err) {
    if (!json_is_array(seeds) || json_array_size(seeds) == 0 || json_array_size(seeds) > DRQ_SPEC_MAX_SEEDS)
        return drq_errf(err, "seeds: expected a non-empty array of at most %d distinct integers >= 0",
                        DRQ_SPEC_MAX_SEEDS);
    s->nseeds = (int)json_array_size(seeds);
    s->seeds = xcalloc((size_t)s->nseeds, sizeof *s->seeds);
    key_ref *refs = xcalloc((size_t)s->nseeds, sizeof *refs);
    *sorted = refs;
    int bad = s->nseeds; /* first entry that is not an integer >= 0 */
    for (int i = 0; i < s->nseeds && bad == s->nseeds; i++) {
        json_t *e = json_array_get(seeds, (size_t)i);
        if (!json_is_integer(e) || json_integer_value(e) < 0) {
            bad = i;
        } else {
            s->seeds[i] = refs[i].v = json_integer_value(e);
            refs[i].idx = i;
        }
    }
    int first, dup = first_duplicate(refs, bad, &first);
    if (dup >= 0)
        return drq_errf(err, "seeds[%d]: duplicate seed %lld (same as seeds[%d])", dup, (long long)s->seeds[dup],
                        first);
    if (bad < s->nseeds) return drq_errf(err, "seeds[%d]: expected an integer >= 0", bad);
    return 0;
}

/* After entries [0, nparsed) of purifiers[] or attacks[] parsed (nparsed < n:
 * entry nparsed failed and err holds why): reports the first repeated name if
 * it comes before that failure, in the words of a scan in array order.  Name
 * i is the string at names + i·stride. */
static int check_names(const char *what, const char *names, size_t stride, int nparsed, int n, drq_err *err) {
    key_ref *refs = xcalloc((size_t)(nparsed ? nparsed : 1), sizeof *refs);
    for (int i = 0; i < nparsed; i++) {
        refs[i].s = names + (size_t)i * stride;
        refs[i].idx = i;
    }
    int first, dup = first_duplicate(refs, nparsed, &first);
    free(refs);
    if (dup >= 0)
        return drq_errf(err, "%s[%d].name: duplicate name \"%s\" (same as %s[%d].name)", what, dup,
                        names + (size_t)dup * stride, what, first);
    return nparsed < n ? -1 : 0;
}

/* Parses analyses[] (NULL: none) into s->attacks[natk ..]; an analysis may
 * not share a name with another analysis or with an attack (rows are keyed by
 * that name). */
static int parse_analyses(const json_t *ana, drq_spec *s, int natk, drq_err *err) {
    char q[256];
    int i = 0;
    for (; i < s->nanalyses; i++) {
        snprintf(q, sizeof q, "analyses[%d]", i);
        if (parse_analysis(json_array_get(ana, (size_t)i), q, s, &s->attacks[natk + i], err)) break;
    }
    if (check_names("analyses", (const char *)(s->attacks + natk) + offsetof(drq_attack_spec, name),
                    sizeof *s->attacks, i, s->nanalyses, err))
        return -1;
    /* both lists are free of repeats now: a repeat in the whole is an analysis named like an attack */
    key_ref *refs = xcalloc((size_t)s->nattacks, sizeof *refs);
    for (int i = 0; i < s->nattacks; i++) refs[i].s = s->attacks[i].name, refs[i].idx = i;
    int first, dup = first_duplicate(refs, s->nattacks, &first);
    free(refs);
    if (dup >= 0)
        return drq_errf(err, "analyses[%d].name: duplicate name \"%s\" (same as attacks[%d].name)", dup - natk,
                        s->attacks[dup].name, first);
    return 0;
}

int drq_spec_parse(const json_t *root, drq_spec *s, drq_err *err) {
    static const char *const keys[] = {"name",   "dataset", "classifier", "diffusion", "purifiers",
                                       "attacks", "seeds",  "shard",      "precision", "analyses", NULL};
    memset(s, 0, sizeof *s);
    key_ref *sorted_seeds = NULL;
    char q[256];
    if (need_object(root, "", err) || drq_json_check_keys(root, "", keys, err)) goto fail;
    if (get_name(root, "", "name", s->name, err) < 0) goto fail;
    json_t *ds = json_object_get(root, "dataset");
    if (!ds) {
        drq_errf(err, "dataset: required (expected an object with kind none|cifar10|mnist|fashion-mnist)");
        goto fail;
    }
    if (parse_dataset(ds, &s->dataset, err)) goto fail;

    /* seeds first: attacks refer to them */
    json_t *seeds = json_object_get(root, "seeds");
    if (seeds) {
        if (parse_seeds(seeds, s, &sorted_seeds, err)) goto fail;
    } else {
        s->nseeds = 1;
        s->seeds = xcalloc(1, sizeof *s->seeds);
        sorted_seeds = xcalloc(1, sizeof *sorted_seeds);
    }

    int prec;
    if (get_enum(root, "", "precision", 0, precisions, PREC_TF32, &prec, err) < 0) goto fail;
    s->precision = (drq_precision)prec;

    json_t *sh = json_object_get(root, "shard");
    s->shard_images = 10;
    if (sh) {
        static const char *const shard_keys[] = {"images", NULL};
        if (need_object(sh, "shard", err) || drq_json_check_keys(sh, "shard", shard_keys, err)) goto fail;
        if (drq_json_get_int(sh, "shard", "images", 0, 1, INT64_C(1000000000), 10, &s->shard_images, err) < 0) goto fail;
    }

    json_t *pur = json_object_get(root, "purifiers");
    if (pur) {
        if (!json_is_array(pur) || json_array_size(pur) == 0 || json_array_size(pur) > DRQ_SPEC_MAX_LIST) {
            drq_errf(err, "purifiers: expected a non-empty array of at most %d objects", DRQ_SPEC_MAX_LIST);
            goto fail;
        }
        s->npurifiers = (int)json_array_size(pur);
        s->purifiers = xcalloc((size_t)s->npurifiers, sizeof *s->purifiers);
        int i = 0;
        for (; i < s->npurifiers; i++) {
            snprintf(q, sizeof q, "purifiers[%d]", i);
            if (parse_purifier(json_array_get(pur, (size_t)i), q, &s->purifiers[i], err)) break;
        }
        if (check_names("purifiers", (const char *)s->purifiers + offsetof(drq_purifier_spec, name),
                        sizeof *s->purifiers, i, s->npurifiers, err))
            goto fail;
    } else {
        s->npurifiers = 1;
        s->purifiers = xcalloc(1, sizeof *s->purifiers);
        strcpy(s->purifiers[0].name, "none");
        s->purifiers[0].kind = PUR_NONE;
        s->purifiers[0].t_star = 100;
        s->purifiers[0].stride = 1;
        s->purifiers[0].clamp_out = 1;
        s->purifiers[0].forward = 1;
    }

    int any_diffusion = 0;
    for (int i = 0; i < s->npurifiers; i++) any_diffusion |= s->purifiers[i].kind != PUR_NONE;
    if (parse_model(root, "classifier", s->dataset.kind != DS_NONE, "a dataset other than \"none\" needs a classifier",
                    classifier_archs, 0, &s->classifier, err))
        goto fail;
    if (parse_model(root, "diffusion", any_diffusion, "a purifier of kind other than \"none\" needs a diffusion model",
                    diffusion_archs, 1, &s->diffusion, err))
        goto fail;

    json_t *atk = json_object_get(root, "attacks"), *ana = json_object_get(root, "analyses");
    if (!atk && !ana) {
        drq_errf(err, "attacks: required (expected a non-empty array of objects)");
        goto fail;
    }
    if (atk && (!json_is_array(atk) || json_array_size(atk) == 0 || json_array_size(atk) > DRQ_SPEC_MAX_LIST)) {
        drq_errf(err, "attacks: expected a non-empty array of at most %d objects", DRQ_SPEC_MAX_LIST);
        goto fail;
    }
    if (ana && (!json_is_array(ana) || json_array_size(ana) == 0 || json_array_size(ana) > DRQ_SPEC_MAX_LIST)) {
        drq_errf(err, "analyses: expected a non-empty array of at most %d objects", DRQ_SPEC_MAX_LIST);
        goto fail;
    }
    int natk = atk ? (int)json_array_size(atk) : 0;
    s->nanalyses = ana ? (int)json_array_size(ana) : 0;
    s->nattacks = natk + s->nanalyses;
    /* The job count is known now: refuse a sweep that is too large before
     * parsing its attacks.  drq_spec_njobs (common/expand.c) saturates instead
     * of wrapping around. */
    int64_t njobs = drq_spec_njobs(s);
    if (njobs > DRQ_SPEC_MAX_JOBS) {
        char total[64];
        if (njobs == INT64_MAX)
            snprintf(total, sizeof total, "more than %lld", (long long)INT64_MAX);
        else
            snprintf(total, sizeof total, "%lld", (long long)njobs);
        drq_errf(err,
                 "spec: %d purifiers × %d attacks × %d seeds × %lld shards of %lld images make %s jobs, more than "
                 "the limit of %lld jobs (raise shard.images, or split the sweep)",
                 s->npurifiers, s->nattacks, s->nseeds, (long long)drq_spec_shards(s), (long long)s->shard_images,
                 total, (long long)DRQ_SPEC_MAX_JOBS);
        goto fail;
    }
    s->attacks = xcalloc((size_t)s->nattacks, sizeof *s->attacks);
    int i = 0;
    for (; i < natk; i++) {
        snprintf(q, sizeof q, "attacks[%d]", i);
        if (parse_attack(json_array_get(atk, (size_t)i), q, s, sorted_seeds, &s->attacks[i], err)) break;
    }
    if (check_names("attacks", (const char *)s->attacks + offsetof(drq_attack_spec, name), sizeof *s->attacks, i,
                    natk, err))
        goto fail;
    if (parse_analyses(ana, s, natk, err)) goto fail;
    free(sorted_seeds);
    return 0;
fail:
    free(sorted_seeds);
    drq_spec_free(s);
    return -1;
}

int drq_spec_parse_text(const char *text, drq_spec *out, drq_err *err) {
    json_error_t je;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        memset(out, 0, sizeof *out);
        return drq_errf(err, "spec: invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
    }
    int rc = drq_spec_parse(root, out, err);
    json_decref(root);
    return rc;
}

int drq_spec_load(const char *path, drq_spec *out, drq_err *err) {
    char *text = read_file_all(path, NULL, err);
    if (!text) {
        memset(out, 0, sizeof *out);
        return -1;
    }
    drq_err e2;
    int rc = drq_spec_parse_text(text, out, &e2);
    free(text);
    if (rc) drq_errf(err, "%s: %s", path, e2.msg);
    return rc;
}

void drq_spec_free(drq_spec *s) {
    free(s->dataset.path);
    free(s->classifier.arch);
    free(s->classifier.weights);
    json_decref(s->classifier.config);
    free(s->diffusion.arch);
    free(s->diffusion.weights);
    json_decref(s->diffusion.config);
    free(s->purifiers);
    if (s->attacks)
        for (int i = 0; i < s->nattacks; i++) free(s->attacks[i].fail_images);
    free(s->attacks);
    free(s->seeds);
    memset(s, 0, sizeof *s);
}

/* ---- canonical JSON ----------------------------------------------------- */

static json_t *model_json(const drq_model_spec *m) {
    json_t *o = json_object();
    json_object_set_new(o, "arch", json_string(m->arch));
    json_object_set_new(o, "weights", json_string(m->weights));
    if (m->config) json_object_set(o, "config", m->config);
    if (m->bf16) json_object_set_new(o, "precision", json_string(model_precisions[1])); /* fp32: not written */
    return o;
}

/* The canonical analyses[]: every key of its kind, defaults filled in. */
static json_t *analyses_json(const drq_spec *s) {
    json_t *arr = json_array();
    for (int i = s->nattacks - s->nanalyses; i < s->nattacks; i++) {
        const drq_attack_spec *a = &s->attacks[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(a->name));
        json_object_set_new(o, "kind", json_string(kind_names[a->kind]));
        if (a->kind == ATK_VARIANCE) {
            json_object_set_new(o, "n_delta", json_integer(a->n_delta));
            json_object_set_new(o, "n_omega", json_integer(a->n_omega));
        } else if (a->kind == ATK_GRADCORR) {
            json_t *es = json_array();
            for (int k = 0; k < a->nestimators; k++) json_array_append_new(es, json_string(estimator_names[a->estimators[k]]));
            json_object_set_new(o, "estimators", es);
            json_object_set_new(o, "eot_k", json_integer(a->eot_k));
            json_object_set_new(o, "at", json_string("clean"));
        } else {
            json_object_set_new(o, "n_uniform", json_integer(a->n_uniform));
        }
        if (a->kind != ATK_GRADCORR) {
            json_object_set_new(o, "norm", json_string(norms[a->norm]));
            json_object_set_new(o, "eps", json_real(a->eps));
        }
        json_array_append_new(arr, o);
    }
    return arr;
}

json_t *drq_spec_to_json(const drq_spec *s) {
    json_t *root = json_object();
    json_object_set_new(root, "name", json_string(s->name));
    json_t *ds = json_object();
    json_object_set_new(ds, "kind", json_string(dataset_kinds[s->dataset.kind]));
    if (s->dataset.path) json_object_set_new(ds, "path", json_string(s->dataset.path));
    json_object_set_new(ds, "start", json_integer(s->dataset.start));
    json_object_set_new(ds, "count", json_integer(s->dataset.count));
    json_object_set_new(root, "dataset", ds);
    if (s->classifier.present) json_object_set_new(root, "classifier", model_json(&s->classifier));
    if (s->diffusion.present) json_object_set_new(root, "diffusion", model_json(&s->diffusion));
    json_t *pa = json_array();
    for (int i = 0; i < s->npurifiers; i++) {
        const drq_purifier_spec *p = &s->purifiers[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(p->name));
        json_object_set_new(o, "kind", json_string(purifier_kinds[p->kind]));
        json_object_set_new(o, "t_star", json_integer(p->t_star));
        json_object_set_new(o, "var", json_string(var_kinds[p->var]));
        json_object_set_new(o, "stride", json_integer(p->stride));
        json_object_set_new(o, "clamp_x0", json_boolean(p->clamp_x0));
        json_object_set_new(o, "clamp_out", json_boolean(p->clamp_out));
        /* written only when not the default, so that older specs keep their canonical form */
        if (!p->forward) json_object_set_new(o, "forward", json_false());
        json_array_append_new(pa, o);
    }
    json_object_set_new(root, "purifiers", pa);
    json_t *aa = json_array();
    for (int i = 0; i < s->nattacks - s->nanalyses; i++) {
        const drq_attack_spec *a = &s->attacks[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(a->name));
        json_object_set_new(o, "kind", json_string(attack_kinds[a->kind]));
        json_object_set_new(o, "norm", json_string(norms[a->norm]));
        json_object_set_new(o, "eps", json_real(a->eps));
        json_object_set_new(o, "steps", json_integer(a->steps));
        if (a->abs_stepsize > 0)
            json_object_set_new(o, "abs_stepsize", json_real(a->abs_stepsize));
        else
            json_object_set_new(o, "rel_stepsize", json_real(a->rel_stepsize));
        json_object_set_new(o, "random_start", json_boolean(a->random_start));
        json_object_set_new(o, "randomness", json_string(randomness_kinds[a->randomness]));
        json_object_set_new(o, "eot_k", json_integer(a->eot_k));
        json_object_set_new(o, "votes", json_integer(a->votes));
        if (a->randomness == RND_TRANSFER) json_object_set_new(o, "transfer_seed", json_integer(a->transfer_seed));
        json_object_set_new(o, "n_uniform", json_integer(a->n_uniform));
        if (a->kind == ATK_NOOP) json_object_set_new(o, "ms_per_image", json_real(a->ms_per_image));
        json_object_set_new(o, "grad", json_string(grads[a->grad]));
        if (a->fail_images) {
            json_t *fi = json_array();
            for (int k = 0; k < a->nfail_images; k++) json_array_append_new(fi, json_integer(a->fail_images[k]));
            json_object_set_new(o, "fail_images", fi);
        }
        if (a->save) { /* only when set, like "forward" */
            json_t *sv = json_array();
            for (int k = 0; save_names[k]; k++)
                if (a->save & (1 << k)) json_array_append_new(sv, json_string(save_names[k]));
            json_object_set_new(o, "save", sv);
        }
        json_array_append_new(aa, o);
    }
    /* without attacks (an analyses-only sweep) the key is left out: [] would not parse back */
    if (json_array_size(aa)) json_object_set_new(root, "attacks", aa);
    else json_decref(aa);
    if (s->nanalyses) json_object_set_new(root, "analyses", analyses_json(s));
    json_t *sa = json_array();
    for (int i = 0; i < s->nseeds; i++) json_array_append_new(sa, json_integer(s->seeds[i]));
    json_object_set_new(root, "seeds", sa);
    json_t *sh = json_object();
    json_object_set_new(sh, "images", json_integer(s->shard_images));
    json_object_set_new(root, "shard", sh);
    /* written only when not the default, so that specs from before the key keep their canonical form */
    if (s->precision != PREC_TF32) json_object_set_new(root, "precision", json_string(precisions[s->precision]));
    return root;
}

char *drq_spec_canonical(const drq_spec *s) {
    json_t *j = drq_spec_to_json(s);
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    json_decref(j);
    assert(text);
    return text;
}
