/* params.c — see params.h. */
#include "worker/models/params.h"

#include "worker/models/diffusers_names.h"
#include "kernels/bf16.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void params_init(params *p, st_file *file, uint64_t seed, const char *what, drq_err *err) {
    memset(p, 0, sizeof *p);
    p->file = file, p->seed = seed, p->what = what, p->err = err;
}

/* splitmix64 → uniform in [-1, 1) */
static float rand_sym(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) / 4503599627370496.0 - 1.0);
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *s64, const int *s32) {
    size_t o = snprintf(buf, n, "[");
    for (int i = 0; i < ndim && o < n; i++)
        o += snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", s64 ? (long long)s64[i] : (long long)s32[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

static const float dummy[1] = {0};

/* Hands d (malloc'd) to p: freed by params_free. */
static float *params_own(params *p, float *d) {
    p->owned = xrealloc(p->owned, sizeof(float *) * (p->n_owned + 1));
    return p->owned[p->n_owned++] = d;
}

/* Builds the original-name table of a diffusers-layout UNet file (first get). */
static int bind_names(params *p) {
    p->names_ready = 1;
    int is_unet = p->what && !strcmp(p->what, "ddpm-unet");
    if (!is_unet || p->format == PARAMS_ORIGINAL) return 0;
    if (p->format != PARAMS_DIFFUSERS && !diffusers_detect(p->file)) return 0;
    const st_file *f = p->file;
    int L = diffusers_levels(f);
    p->diffusers = 1;
    p->alias = xcalloc(f->n ? (size_t)f->n : 1, sizeof(char *));
    p->linear_attn = xcalloc(f->n ? (size_t)f->n : 1, 1);
    p->n_alias = f->n;
    for (int i = 0; i < f->n; i++) {
        char nm[256];
        int lin = 0;
        if (diffusers_to_original(f->t[i].name, L, nm, sizeof nm, &lin)) continue; /* reported as unexpected */
        for (int j = 0; j < i; j++)
            if (p->alias[j] && !strcmp(p->alias[j], nm)) {
                p->failed = 1;
                return drq_errf(p->err, "%s weights: tensors '%s' and '%s' both stand for '%s' (diffusers names)",
                                p->what, f->t[j].name, f->t[i].name, nm);
            }
        p->alias[i] = xstrdup(nm);
        p->linear_attn[i] = (unsigned char)lin;
    }
    return 0;
}

/* NAME in the file, else the first of p->prefixes + NAME that is. */
static st_tensor *find_prefixed(params *p, const char *name) {
    st_tensor *t = st_find_mut(p->file, name);
    for (int k = 0; !t && p->prefixes && p->prefixes[k]; k++) {
        char full[300];
        snprintf(full, sizeof full, "%s%s", p->prefixes[k], name);
        t = st_find_mut(p->file, full);
    }
    return t;
}

int params_has(params *p, const char *name) { return p->file && find_prefixed(p, name) != NULL; }

/* The host tensor NAME (see params_get); *numel gets its size. */
static const float *get_host(params *p, param_init init, int ndim, const int *shape, const char *name, size_t *numel_out) {
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= (size_t)shape[i];
    *numel_out = numel;
    if (p->failed) return dummy;
    p->count += numel;

    if (!p->file) {
        float *d = xmalloc(numel * sizeof(float));
        uint64_t s = p->seed ^ (0x632BE59BD9B4E019ull * (uint64_t)(p->n_owned + 1));
        size_t fan_in = ndim > 1 ? numel / (size_t)shape[0] : numel;
        float bound = 1.0f / sqrtf((float)fan_in);
        for (size_t i = 0; i < numel; i++) {
            float r = rand_sym(&s);
            d[i] = init == P_WEIGHT ? bound * r : init == P_BIAS ? 0.1f * r : init == P_ONE ? 1.0f + 0.1f * r
                 : init == P_VAR ? 1.0f + 0.4f * r : 0.1f * r;
        }
        return params_own(p, d);
    }

    if (!p->names_ready && bind_names(p)) return dummy;
    st_tensor *t = NULL;
    int linear = 0;
    if (p->diffusers) {
        for (int i = 0; i < p->file->n && !t; i++)
            if (p->alias[i] && !strcmp(p->alias[i], name)) t = &p->file->t[i], linear = p->linear_attn[i];
    } else {
        t = find_prefixed(p, name);
    }
    char want[96], got[96];
    if (!t) {
        p->failed = 1;
        shape_str(want, sizeof want, ndim, NULL, shape);
        drq_errf(p->err, "%s weights: missing tensor '%s' (expected shape %s)%s", p->what, name, want,
                 p->diffusers ? " (the file has diffusers names; this is the original name it maps to)" : "");
        return dummy;
    }
    /* diffusers' attention Linear [C, C] is the original 1×1 conv [C, C, 1, 1] */
    int ok = t->ndim == ndim || (linear && t->ndim == 2 && ndim == 4 && shape[2] == 1 && shape[3] == 1);
    for (int i = 0; ok && i < t->ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        p->failed = 1;
        shape_str(want, sizeof want, ndim, NULL, shape);
        shape_str(got, sizeof got, t->ndim, t->shape, NULL);
        drq_errf(p->err, "%s weights: tensor '%s' has shape %s, the config expects %s", p->what, t->name, got, want);
        return dummy;
    }
    if (!t->is_float || !t->convertible || t->overflow) {
        p->failed = 1;
        const char *why = !t->is_float ? "integer/boolean values are not weights"
                        : !t->convertible ? "drq does not decode packed sub-byte floats"
                                          : "an F64 value is beyond float32's range";
        drq_errf(p->err,
                 "%s weights: tensor '%s' has dtype %s, which drq cannot use as a weight (%s); store it as F32, F16, "
                 "BF16 or F64",
                 p->what, t->name, st_dtype_name(t->dtype), why);
        return dummy;
    }
    t->used = 1;
    return t->data;
}

const float *params_on_device(params *p, const float *host, size_t n) {
    if (p->dev == DRQ_CPU || p->failed) return host;
    float *d = drq_dev_alloc(p->dev, n);
    drq_dev_copy(d, p->dev, host, DRQ_CPU, n * sizeof(float));
    p->dev_owned = xrealloc(p->dev_owned, sizeof(float *) * (p->n_dev + 1));
    p->dev_owned[p->n_dev++] = d;
    return d;
}

/* get_host with a printf-formatted name; to_device: copy to p->dev. */
static const float *get_fmt(params *p, param_init init, int ndim, const int *shape, int to_device, const char *fmt,
                            va_list ap) {
    char name[256];
    size_t numel;
    vsnprintf(name, sizeof name, fmt, ap);
    const float *h = get_host(p, init, ndim, shape, name, &numel);
    if (p->bf16 && init == P_WEIGHT && h != dummy) { /* bf16 weights: rounded once, in a copy the params own */
        float *r = p->file ? params_own(p, xmalloc(numel * sizeof(float))) : (float *)h; /* random: h is ours */
        for (size_t i = 0; i < numel; i++) r[i] = drq_bf16_round(h[i]);
        h = r;
    }
    return to_device && h != dummy ? params_on_device(p, h, numel) : h;
}

const float *params_get(params *p, param_init init, int ndim, const int *shape, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const float *r = get_fmt(p, init, ndim, shape, 1, fmt, ap);
    va_end(ap);
    return r;
}

const float *params_get_host(params *p, param_init init, int ndim, const int *shape, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const float *r = get_fmt(p, init, ndim, shape, 0, fmt, ap);
    va_end(ap);
    return r;
}

int params_finish(params *p) {
    if (p->failed) return -1;
    if (!p->file) return 0;
    for (int i = 0; i < p->file->n; i++) {
        const char *nm = p->file->t[i].name;
        size_t l = strlen(nm), sl = strlen("num_batches_tracked");
        if (p->file->t[i].used || (l >= sl && !strcmp(nm + l - sl, "num_batches_tracked"))) continue;
        p->failed = 1;
        return drq_errf(p->err, "%s weights: unexpected tensor '%s' (not part of this config; wrong --arch or --config?%s)",
                        p->what, nm, p->diffusers ? " the file has diffusers names" : "");
    }
    return 0;
}

void params_free(params *p) {
    for (int i = 0; p->alias && i < p->n_alias; i++) free(p->alias[i]);
    free(p->alias);
    free(p->linear_attn);
    p->alias = NULL, p->linear_attn = NULL, p->n_alias = 0, p->names_ready = 0, p->diffusers = 0;
    for (int i = 0; i < p->n_owned; i++) free(p->owned[i]);
    free(p->owned);
    p->owned = NULL, p->n_owned = 0;
    for (int i = 0; i < p->n_dev; i++) drq_dev_free(p->dev, p->dev_owned[i]);
    free(p->dev_owned);
    p->dev_owned = NULL, p->n_dev = 0;
}
