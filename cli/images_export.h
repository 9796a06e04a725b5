/* images_export.h — `drq results SWEEP|FILE.db --images DIR`: the images that
 * attacks with "save" kept (common/images.h, the images table) as 8-bit PNG
 * and safetensors files, with the clean x from the sweep's dataset beside
 * them; and the sweep data the report's image grid shares (cli/image_grid.c).
 * Naming scheme: docs/report.md §Images.
 */
#ifndef DRQ_IMAGES_EXPORT_H
#define DRQ_IMAGES_EXPORT_H

#include <stdint.h>

#include "common/dataset.h"
#include "common/spec.h"
#include "server/store.h"

/* Exports the images of one sweep (0: every sweep) of the database file db
 * into dir (created with its parents).  Returns 0 (also when there are no
 * images: it says so on stderr), or 1 after printing "drq: …". */
int cli_images_export(const char *db, int64_t sweep, const char *dir);

/* The same for the rows of a sweep fetched from drq-server with their
 * images (FETCH "images": true): new (NULL after printing why: DIR cannot be
 * made), add each page (-1 after printing why), end (flushes, prints the
 * summary, frees; 0, or 1 when failed or writing failed).  No clean x:
 * drq-server sends no spec. */
typedef struct cli_images_sink cli_images_sink;
cli_images_sink *cli_images_sink_new(const char *dir);
int cli_images_sink_add(cli_images_sink *k, const drq_row *rows, int64_t n);
int cli_images_sink_end(cli_images_sink *k, const char *source, int failed);

/* A sweep's spec and the clean images of its dataset range. */
typedef struct {
    drq_spec spec;
    int have_spec;
    drq_dataset ds; /* ds.n == 0 when the dataset could not be read */
    int64_t start;  /* dataset index of ds.x[0] */
} cli_sweep_data;

/* Reads the sweep's spec from st and loads its dataset range.  -1 + err
 * when the spec is missing or does not parse; a dataset that cannot be read
 * is not an error here (ds.n stays 0; *ds_err says why). */
int cli_sweep_data_load(store *st, int64_t sweep, cli_sweep_data *d, drq_err *err, drq_err *ds_err);
/* The clean image of dataset index `image` when it is loaded and of c×h×w, else NULL. */
const float *cli_sweep_clean(const cli_sweep_data *d, int64_t image, int c, int h, int w);
void cli_sweep_data_free(cli_sweep_data *d);

/* 8-bit samples of a C×H×W image in [0,1] (c = 1 or 3), interleaved per pixel (png_write). */
void cli_image_to_u8(const float *chw, int c, int h, int w, uint8_t *out);

#endif
