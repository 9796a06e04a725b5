/* images.h — the images a row keeps when its attack has "save" (docs/spec.md):
 * the final adversarial example x_adv and the purified images P(x), P(x_adv),
 * each float32 C×H×W in [0,1] (docs/report.md §Images).
 *
 * A row owns at most one drq_row_images (drq_row.images, freed by
 * drq_rows_free).  They travel beside the packed rows, never inside them:
 * drq_images_pack writes the images of an array of rows as a section of their
 * own, which a RESULT frame, a FETCH reply and an engine checkpoint append
 * after the packed rows (their JSON says how many bytes the section holds,
 * docs/queue.md), and drq_images_unpack attaches them to the unpacked rows.
 * Unpacking validates every length, index and size and never reads out of
 * bounds.
 *
 * Packed section, little-endian, one entry per row that has images, in
 * increasing row order:
 *   u32 row index | u32 kinds (bit k: DRQ_IMG_k present) | u32 c | u32 h | u32 w
 *   | c·h·w float32 per present kind, in kind order
 */
#ifndef DRQ_IMAGES_H
#define DRQ_IMAGES_H

#include <stddef.h>
#include <stdint.h>

#include "row.h"
#include "util.h"

/* The images of a row, also the `what` of the images table (server/store.c)
 * and the tensor names of the exported safetensors files. */
enum { DRQ_IMG_X_ADV, DRQ_IMG_PURIFIED_CLEAN, DRQ_IMG_PURIFIED_ADV, DRQ_IMG_NKINDS };
extern const char *const drq_image_names[DRQ_IMG_NKINDS]; /* "x_adv", "purified_clean", "purified_adv" */
/* The kind named s, or -1. */
int drq_image_kind(const char *s);

/* The attack option "save" (drq_attack_spec.save), as bits. */
enum { DRQ_SAVE_X_ADV = 1, DRQ_SAVE_PURIFIED = 2 };

/* Cap on the bytes of images one row may keep (all its kinds together):
 * 1 MiB, i.e. a 3×256×256 image up to twice, a 3×32×32 one 21 times.  A
 * spec whose dataset has a fixed size (cifar10) is checked when parsed;
 * IDX datasets (any H×W) when the engine loads them, before any work. */
#define DRQ_SAVE_MAX_ROW_BYTES (1 << 20)
/* Cap on the image bytes of one job (one RESULT message, well under
 * DRQ_MAX_MSG_BYTES): shard.images × the row's bytes. */
#define DRQ_SAVE_MAX_JOB_BYTES (32 << 20)

/* Rows per FETCH page when the client asks for images (drq results SWEEP
 * --images): DRQ_SAVE_MAX_JOB_BYTES / DRQ_SAVE_MAX_ROW_BYTES, so that a
 * page stays within the size of one RESULT. */
#define DRQ_SAVE_FETCH_ROWS (DRQ_SAVE_MAX_JOB_BYTES / DRQ_SAVE_MAX_ROW_BYTES)

/* Bytes of images per row for the spec's "save" bits (DRQ_SAVE_*) and an
 * image of c×h×w: x_adv once, "purified" twice (P(x) and P(x_adv)). */
int64_t drq_save_row_bytes(int save, int64_t c, int64_t h, int64_t w);

typedef struct drq_row_images {
    int c, h, w;
    float *data[DRQ_IMG_NKINDS]; /* c·h·w floats each, or NULL when not kept */
} drq_row_images;

/* A row's images of c×h×w with nothing kept yet. */
drq_row_images *drq_row_images_new(int c, int h, int w);
/* Keeps a copy of kind k (c·h·w floats). */
void drq_row_images_set(drq_row_images *im, int k, const float *src);
void drq_row_images_free(drq_row_images *im);

/* Packs the images of rows[0..n) (section above) into a fresh buffer of *len
 * bytes; *len = 0 (and a 1-byte buffer) when no row has images. */
void *drq_images_pack(const drq_row *rows, int64_t n, size_t *len);
/* Attaches the images of a packed section to rows[0..n) (which must have
 * none yet).  -1 + err on any defect: truncation, trailing bytes, a row index
 * out of range or repeated, no or unknown kinds, a zero dimension, a row
 * over DRQ_SAVE_MAX_ROW_BYTES; the rows then keep no images. */
int drq_images_unpack(const void *buf, size_t len, drq_row *rows, int64_t n, drq_err *err);

/* A message's binary frame with rows and their images: the packed rows
 * followed by their images section; *images_len = the section's bytes (0:
 * none), which the message's JSON carries as "images". */
void *drq_images_pack_rows(const drq_row *rows, int64_t n, size_t *len, size_t *images_len);
/* The inverse: unpacks exactly `expect` rows (any number when expect < 0)
 * from the first len − images_len bytes and attaches the images of the rest.
 * -1 + err when images_len > len or either part is malformed. */
int drq_images_unpack_rows(const void *buf, size_t len, size_t images_len, int64_t expect, drq_row **rows,
                           int64_t *n, drq_err *err);

#endif
