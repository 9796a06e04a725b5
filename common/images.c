/* images.c — see images.h. */
#include "images.h"

#include <stdlib.h>
#include <string.h>

const char *const drq_image_names[DRQ_IMG_NKINDS] = {"x_adv", "purified_clean", "purified_adv"};

int drq_image_kind(const char *s) {
    for (int k = 0; k < DRQ_IMG_NKINDS; k++)
        if (!strcmp(s, drq_image_names[k])) return k;
    return -1;
}

int64_t drq_save_row_bytes(int save, int64_t c, int64_t h, int64_t w) {
    int kinds = ((save & DRQ_SAVE_X_ADV) ? 1 : 0) + ((save & DRQ_SAVE_PURIFIED) ? 2 : 0);
    return kinds * c * h * w * (int64_t)sizeof(float);
}

drq_row_images *drq_row_images_new(int c, int h, int w) {
    drq_row_images *im = xcalloc(1, sizeof *im);
    im->c = c, im->h = h, im->w = w;
    return im;
}

void drq_row_images_set(drq_row_images *im, int k, const float *src) {
    size_t bytes = sizeof(float) * (size_t)im->c * im->h * im->w;
    if (!im->data[k]) im->data[k] = xmalloc(bytes);
    memcpy(im->data[k], src, bytes);
}

void drq_row_images_free(drq_row_images *im) {
    if (!im) return;
    for (int k = 0; k < DRQ_IMG_NKINDS; k++) free(im->data[k]);
    free(im);
}

/* ---- packing ---------------------------------------------------------------- */

void *drq_images_pack(const drq_row *rows, int64_t n, size_t *len) {
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        const drq_row_images *im = rows[i].images;
        if (!im) continue;
        total += 5 * 4;
        for (int k = 0; k < DRQ_IMG_NKINDS; k++)
            if (im->data[k]) total += sizeof(float) * (size_t)im->c * im->h * im->w;
    }
    unsigned char *buf = xmalloc(total ? total : 1), *p = buf;
    for (int64_t i = 0; i < n; i++) {
        const drq_row_images *im = rows[i].images;
        if (!im) continue;
        uint32_t hdr[5] = {(uint32_t)i, 0, (uint32_t)im->c, (uint32_t)im->h, (uint32_t)im->w};
        for (int k = 0; k < DRQ_IMG_NKINDS; k++)
            if (im->data[k]) hdr[1] |= 1u << k;
        memcpy(p, hdr, sizeof hdr);
        p += sizeof hdr;
        size_t bytes = sizeof(float) * (size_t)im->c * im->h * im->w;
        for (int k = 0; k < DRQ_IMG_NKINDS; k++)
            if (im->data[k]) memcpy(p, im->data[k], bytes), p += bytes;
    }
    *len = total;
    return buf;
}

int drq_images_unpack(const void *buf, size_t len, drq_row *rows, int64_t n, drq_err *err) {
    const unsigned char *b = buf;
    size_t off = 0;
    int64_t last = -1;
    while (off < len) {
        uint32_t hdr[5];
        if (len - off < sizeof hdr) {
            drq_errf(err, "images: truncated entry header at byte %zu", off);
            goto fail;
        }
        memcpy(hdr, b + off, sizeof hdr);
        off += sizeof hdr;
        int64_t row = hdr[0];
        uint32_t kinds = hdr[1];
        if (row >= n || row <= last) {
            drq_errf(err, "images: row index %lld out of order or out of range (%lld rows)", (long long)row,
                     (long long)n);
            goto fail;
        }
        if (!kinds || kinds >> DRQ_IMG_NKINDS) {
            drq_errf(err, "images: row %lld: kinds 0x%x (expected 1 to 3 of bits 0-%d)", (long long)row, kinds,
                     DRQ_IMG_NKINDS - 1);
            goto fail;
        }
        int count = 0;
        for (int k = 0; k < DRQ_IMG_NKINDS; k++) count += (kinds >> k) & 1;
        /* each dimension below the cap, so that the product cannot overflow */
        uint64_t c = hdr[2], h = hdr[3], w = hdr[4];
        if (!c || !h || !w || c > DRQ_SAVE_MAX_ROW_BYTES || h > DRQ_SAVE_MAX_ROW_BYTES || w > DRQ_SAVE_MAX_ROW_BYTES ||
            c * h > DRQ_SAVE_MAX_ROW_BYTES || c * h * w * sizeof(float) * (uint64_t)count > DRQ_SAVE_MAX_ROW_BYTES) {
            drq_errf(err, "images: row %lld: %llux%llux%llu images ×%d: zero or more than the cap of %d bytes per row",
                     (long long)row, (unsigned long long)c, (unsigned long long)h, (unsigned long long)w, count,
                     DRQ_SAVE_MAX_ROW_BYTES);
            goto fail;
        }
        size_t bytes = (size_t)(c * h * w) * sizeof(float);
        if ((len - off) / (size_t)count < bytes) {
            drq_errf(err, "images: row %lld: truncated pixel data", (long long)row);
            goto fail;
        }
        if (rows[row].images) {
            drq_errf(err, "images: row %lld already has images", (long long)row);
            goto fail;
        }
        drq_row_images *im = drq_row_images_new((int)c, (int)h, (int)w);
        for (int k = 0; k < DRQ_IMG_NKINDS; k++)
            if ((kinds >> k) & 1) drq_row_images_set(im, k, (const float *)(const void *)(b + off)), off += bytes;
        rows[row].images = im;
        last = row;
    }
    return 0;
fail: /* the rows had no images before: drop those attached so far */
    for (int64_t i = 0; i <= last; i++) {
        drq_row_images_free(rows[i].images);
        rows[i].images = NULL;
    }
    return -1;
}

void *drq_images_pack_rows(const drq_row *rows, int64_t n, size_t *len, size_t *images_len) {
    size_t rl, il;
    unsigned char *packed = drq_rows_pack(rows, n, &rl);
    void *images = drq_images_pack(rows, n, &il);
    if (il) {
        packed = xrealloc(packed, rl + il);
        memcpy(packed + rl, images, il);
    }
    free(images);
    *len = rl + il;
    *images_len = il;
    return packed;
}

int drq_images_unpack_rows(const void *buf, size_t len, size_t images_len, int64_t expect, drq_row **rows,
                           int64_t *n, drq_err *err) {
    if (images_len > len) return drq_errf(err, "images: section of %zu bytes in a frame of %zu", images_len, len);
    size_t rl = len - images_len;
    if (drq_rows_unpack(buf, rl, expect, rows, n, err)) return -1;
    if (drq_images_unpack((const unsigned char *)buf + rl, images_len, *rows, *n, err)) {
        drq_rows_free(*rows, *n);
        *rows = NULL, *n = 0;
        return -1;
    }
    return 0;
}
