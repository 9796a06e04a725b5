/* images_export.c — see images_export.h. */
#include "images_export.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/png_write.h"
#include "common/images.h"
#include "common/safetensors.h"

int cli_sweep_data_load(store *st, int64_t sweep, cli_sweep_data *d, drq_err *err, drq_err *ds_err) {
    memset(d, 0, sizeof *d);
    snprintf(ds_err->msg, sizeof ds_err->msg, "not loaded");
    char *text = store_sweep_spec(st, sweep);
    if (!text) return drq_errf(err, "sweep %lld: no spec in the database", (long long)sweep);
    drq_err e;
    int rc = drq_spec_parse_text(text, &d->spec, &e);
    free(text);
    if (rc) return drq_errf(err, "sweep %lld: its spec does not parse: %s", (long long)sweep, e.msg);
    d->have_spec = 1;
    const drq_dataset_spec *ds = &d->spec.dataset;
    if (ds->kind == DS_NONE) {
        snprintf(ds_err->msg, sizeof ds_err->msg, "the sweep has no dataset");
        return 0;
    }
    if (dataset_load(drq_dataset_kind_name(ds->kind), ds->path, "test", (long)ds->start, (long)ds->count, &d->ds,
                     ds_err))
        memset(&d->ds, 0, sizeof d->ds);
    d->start = ds->start;
    return 0;
}

const float *cli_sweep_clean(const cli_sweep_data *d, int64_t image, int c, int h, int w) {
    const drq_dataset *ds = &d->ds;
    if (image < d->start || image - d->start >= ds->n || ds->c != c || ds->h != h || ds->w != w) return NULL;
    return ds->x + (size_t)(image - d->start) * c * h * w;
}

void cli_sweep_data_free(cli_sweep_data *d) {
    if (d->have_spec) drq_spec_free(&d->spec);
    dataset_free(&d->ds);
    memset(d, 0, sizeof *d);
}

void cli_image_to_u8(const float *chw, int c, int h, int w, uint8_t *out) {
    size_t plane = (size_t)h * w;
    for (size_t p = 0; p < plane; p++)
        for (int k = 0; k < c; k++) out[p * c + k] = png_sample(chw[k * plane + p]);
}

/* ---- export ------------------------------------------------------------------- */

/* mkdir -p; -1 + err. */
static int make_dirs(const char *dir, drq_err *err) {
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return drq_errf(err, "%s: path too long", dir);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s) continue;
        char ch = *s;
        *s = 0;
        if (mkdir(p, 0777) && errno != EEXIST) return drq_errf(err, "%s: %s", p, strerror(errno));
        if (!ch) return 0;
        *s = ch;
    }
}

/* A purifier or attack name usable as a folder (what the spec allows, minus
 * "." and ".."; a database could hold anything). */
static int name_ok(const char *s) {
    if (!*s || !strcmp(s, ".") || !strcmp(s, "..")) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '.' || *s == '-'))
            return 0;
    return 1;
}

/* The images of one row being gathered (store_images_foreach gives them
 * kind by kind), written when the next row starts. */
typedef struct {
    const char *dir;
    const cli_sweep_data *sd;
    int64_t sweep, seed, image;
    char pur[DRQ_NAME_MAX], atk[DRQ_NAME_MAX];
    int c, h, w, have;      /* have: a row is gathered */
    float *data[DRQ_IMG_NKINDS];
    int64_t rows, files;
    drq_err err;
    int failed;
} exporter;

/* One PNG of a C×H×W image. */
static int write_png(exporter *x, const char *folder, const char *what, const float *chw) {
    char path[4600];
    snprintf(path, sizeof path, "%s/%06lld_%s.png", folder, (long long)x->image, what);
    uint8_t *pix = xmalloc((size_t)x->c * x->h * x->w);
    cli_image_to_u8(chw, x->c, x->h, x->w, pix);
    int rc = png_write(path, pix, x->w, x->h, x->c == 3 ? 3 : 1, &x->err);
    free(pix);
    x->files += rc == 0;
    return rc;
}

/* Writes the gathered row: a PNG per kind and of the clean x, and one
 * safetensors file holding them all as [C,H,W] float32. */
static int flush_row(exporter *x) {
    if (!x->have) return 0;
    x->have = 0;
    if (!name_ok(x->pur) || !name_ok(x->atk))
        return drq_errf(&x->err, "images: purifier '%s' / attack '%s': not usable as folder names", x->pur, x->atk);
    if (x->c != 1 && x->c != 3)
        return drq_errf(&x->err, "images: %s/%s image %lld: %d channels (PNG export needs 1 or 3)", x->pur, x->atk,
                        (long long)x->image, x->c);
    char folder[4400];
    snprintf(folder, sizeof folder, "%s/sweep%lld/%s/%s/seed%lld", x->dir, (long long)x->sweep, x->pur, x->atk,
             (long long)x->seed);
    if (make_dirs(folder, &x->err)) return -1;
    st_out ts[DRQ_IMG_NKINDS + 1];
    int nt = 0;
    const float *clean = cli_sweep_clean(x->sd, x->image, x->c, x->h, x->w);
    if (clean) {
        if (write_png(x, folder, "x", clean)) return -1;
        ts[nt++] = (st_out){"x", 3, {x->c, x->h, x->w}, clean};
    }
    for (int k = 0; k < DRQ_IMG_NKINDS; k++) {
        if (!x->data[k]) continue;
        if (write_png(x, folder, drq_image_names[k], x->data[k])) return -1;
        ts[nt++] = (st_out){drq_image_names[k], 3, {x->c, x->h, x->w}, x->data[k]};
    }
    char path[4600];
    snprintf(path, sizeof path, "%s/%06lld.safetensors", folder, (long long)x->image);
    if (st_save(path, ts, nt, &x->err)) return -1;
    x->files++;
    x->rows++;
    return 0;
}

static int on_image(void *arg, const store_image *im) {
    exporter *x = arg;
    if (x->have && (im->sweep != x->sweep || strcmp(im->purifier, x->pur) || strcmp(im->attack, x->atk) ||
                    im->seed != x->seed || im->image != x->image || im->c != x->c || im->h != x->h || im->w != x->w)) {
        if (flush_row(x)) return x->failed = 1;
    }
    if (!x->have) {
        snprintf(x->pur, sizeof x->pur, "%s", im->purifier);
        snprintf(x->atk, sizeof x->atk, "%s", im->attack);
        x->sweep = im->sweep, x->seed = im->seed, x->image = im->image, x->c = im->c, x->h = im->h, x->w = im->w;
        for (int k = 0; k < DRQ_IMG_NKINDS; k++) free(x->data[k]), x->data[k] = NULL;
        x->have = 1;
    }
    size_t bytes = sizeof(float) * (size_t)im->c * im->h * im->w;
    x->data[im->what] = xrealloc(x->data[im->what], bytes);
    memcpy(x->data[im->what], im->data, bytes);
    return 0;
}

/* Exports one sweep; -1 after printing why. */
static int export_sweep(store *st, int64_t sweep, const char *dir, int64_t *rows, int64_t *files) {
    cli_sweep_data sd;
    drq_err err, ds_err;
    if (cli_sweep_data_load(st, sweep, &sd, &err, &ds_err)) {
        fprintf(stderr, "drq: results: %s\n", err.msg);
        return -1;
    }
    exporter x = {.dir = dir, .sd = &sd};
    int64_t n = store_images_foreach(st, sweep, NULL, NULL, 0, on_image, &x, &err);
    int rc = 0;
    if (n < 0) {
        fprintf(stderr, "drq: results: %s\n", err.msg);
        rc = -1;
    } else if (x.failed || flush_row(&x)) {
        fprintf(stderr, "drq: results: %s\n", x.err.msg);
        rc = -1;
    } else if (n > 0 && sd.ds.n == 0) {
        fprintf(stderr, "drq: results: warning: sweep %lld: clean images not exported (dataset: %s)\n",
                (long long)sweep, ds_err.msg);
    }
    for (int k = 0; k < DRQ_IMG_NKINDS; k++) free(x.data[k]);
    cli_sweep_data_free(&sd);
    *rows += x.rows, *files += x.files;
    return rc;
}

int cli_images_export(const char *db, int64_t sweep, const char *dir) {
    drq_err err;
    store *st = store_open(db, 1, &err);
    if (!st) {
        fprintf(stderr, "drq: %s\n", err.msg);
        return 1;
    }
    json_t *status = store_status(st, sweep, 0);
    json_t *sweeps = json_object_get(status, "sweeps");
    int rc = 0;
    int64_t rows = 0, files = 0;
    if (sweep && json_array_size(sweeps) == 0) {
        fprintf(stderr, "drq: %s: no sweep %lld\n", db, (long long)sweep);
        rc = 1;
    } else if (make_dirs(dir, &err)) {
        fprintf(stderr, "drq: results: %s\n", err.msg);
        rc = 1;
    }
    size_t i;
    json_t *o;
    json_array_foreach(sweeps, i, o) {
        if (rc) break;
        if (export_sweep(st, json_integer_value(json_object_get(o, "id")), dir, &rows, &files)) rc = 1;
    }
    json_decref(status);
    store_close(st);
    if (!rc && rows == 0)
        fprintf(stderr, "drq: results: no saved images in %s (an attack keeps them with \"save\": docs/spec.md)\n", db);
    else if (!rc)
        fprintf(stderr, "drq: %lld rows of images exported to %s (%lld files)\n", (long long)rows, dir,
                (long long)files);
    return rc;
}

/* ---- rows from drq-server ------------------------------------------------------- */

struct cli_images_sink {
    exporter x;
    cli_sweep_data none; /* no clean images: drq-server sends no spec */
    int64_t images;
};

cli_images_sink *cli_images_sink_new(const char *dir) {
    drq_err err;
    if (make_dirs(dir, &err)) {
        fprintf(stderr, "drq: results: %s\n", err.msg);
        return NULL;
    }
    cli_images_sink *k = xcalloc(1, sizeof *k);
    k->x.dir = dir;
    k->x.sd = &k->none;
    return k;
}

int cli_images_sink_add(cli_images_sink *k, const drq_row *rows, int64_t n) {
    for (int64_t i = 0; i < n && !k->x.failed; i++) {
        const drq_row *r = &rows[i];
        if (!r->images) continue;
        store_image im = {.sweep = r->sweep, .seed = r->seed, .image = r->image, .c = r->images->c,
                          .h = r->images->h, .w = r->images->w};
        snprintf(im.purifier, sizeof im.purifier, "%s", r->purifier);
        snprintf(im.attack, sizeof im.attack, "%s", r->attack);
        for (int kind = 0; kind < DRQ_IMG_NKINDS && !k->x.failed; kind++) {
            if (!r->images->data[kind]) continue;
            im.what = kind, im.data = r->images->data[kind];
            on_image(&k->x, &im);
            k->images++;
        }
    }
    if (k->x.failed) fprintf(stderr, "drq: results: %s\n", k->x.err.msg);
    return k->x.failed ? -1 : 0;
}

int cli_images_sink_end(cli_images_sink *k, const char *source, int failed) {
    if (!k) return 1;
    int rc = failed || k->x.failed;
    if (!rc && flush_row(&k->x)) {
        fprintf(stderr, "drq: results: %s\n", k->x.err.msg);
        rc = 1;
    }
    if (!rc && k->x.rows == 0)
        fprintf(stderr, "drq: results: no saved images in sweep %s (an attack keeps them with \"save\": "
                        "docs/spec.md)\n", source);
    else if (!rc)
        fprintf(stderr, "drq: %lld rows of images exported to %s (%lld files; the clean x only from a database file: "
                        "drq-server sends no spec)\n", (long long)k->x.rows, k->x.dir, (long long)k->x.files);
    for (int i = 0; i < DRQ_IMG_NKINDS; i++) free(k->x.data[i]);
    free(k);
    return rc;
}
