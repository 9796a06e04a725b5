/* jpeg.c — see jpeg.h. */
#include "jpeg.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

/* libjpeg's error manager, extended with the way back (longjmp) and, for
 * errors of drq's own (the scan budget), own = 1 with the whole message */
typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf back;
    volatile int own; /* set between setjmp and longjmp */
    char msg[JMSG_LENGTH_MAX + 160];
} jerr;

/* The scan budget.  A progressive JPEG may hold any number of scans, each a
 * pass over every block of the image, and a scan of a few bytes (an EOB run)
 * makes the decoder visit them all: 20,000 such scans of 33 bytes on a
 * 4096 × 4096 image took 32 s here (libjpeg-turbo's own answer is its scan
 * limit, djpeg -maxscans).  libjpeg calls the progress monitor once per
 * iMCU row while reading input, so the decode stops within one row once
 * scans × pixels passes the budget. */
typedef struct {
    struct jpeg_progress_mgr pub;
    uint64_t max_scan_pixels;
} scan_budget;

static void on_progress(j_common_ptr c) {
    j_decompress_ptr d = (j_decompress_ptr)c;
    const scan_budget *b = (const scan_budget *)c->progress;
    uint64_t px = (uint64_t)d->image_width * d->image_height;
    if ((uint64_t)d->input_scan_number * px > b->max_scan_pixels) {
        jerr *e = (jerr *)c->err;
        e->own = 1;
        snprintf(e->msg, sizeof e->msg,
                 "more than %llu scans of its %llu pixels (a decoding-time bomb? drq decodes at most %llu "
                 "scan-pixels per JPEG)",
                 (unsigned long long)(b->max_scan_pixels / (px ? px : 1)), (unsigned long long)px,
                 (unsigned long long)b->max_scan_pixels);
        longjmp(e->back, 1);
    }
}

static void on_error(j_common_ptr c) {
    jerr *e = (jerr *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->back, 1);
}

/* Warnings (level −1): a premature end is fatal (the rest would be grey),
 * the others are ignored; trace messages (level ≥ 0) are dropped. */
static void on_message(j_common_ptr c, int level) {
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) on_error(c);
}

static void no_output(j_common_ptr c) { (void)c; }

/* Pillow's MULDIV255: a·b/255 rounded, in integers. */
static int muldiv255(int a, int b) {
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

int drq_jpeg_decode(const uint8_t *buf, size_t len, const char *what, uint64_t max_pixels,
                    uint64_t max_scan_pixels, uint8_t **rgb, int *w, int *h, drq_err *err) {
    struct jpeg_decompress_struct ci;
    jerr e;
    scan_budget budget = {.max_scan_pixels = max_scan_pixels};
    budget.pub.progress_monitor = on_progress;
    e.own = 0;
    /* volatile: modified between setjmp and longjmp */
    uint8_t *volatile out = NULL, *volatile row = NULL;
    *rgb = NULL, *w = *h = 0;
    memset(&ci, 0, sizeof ci);
    ci.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = on_error;
    e.pub.emit_message = on_message;
    e.pub.output_message = no_output;
    if (setjmp(e.back)) {
        jpeg_destroy_decompress(&ci);
        free(out), free(row);
        if (e.own) return drq_errf(err, "%s: %s", what, e.msg);
        return drq_errf(err, "%s: not a readable JPEG file (libjpeg: %s)", what, e.msg);
    }
    jpeg_create_decompress(&ci);
    ci.progress = &budget.pub;
    if (len > 0xFFFFFFFFu) {
        jpeg_destroy_decompress(&ci);
        return drq_errf(err, "%s: file too large for a JPEG (%zu bytes)", what, len);
    }
    jpeg_mem_src(&ci, buf, (unsigned long)len);
    jpeg_read_header(&ci, TRUE);
    if ((uint64_t)ci.image_width * ci.image_height > max_pixels) {
        jpeg_destroy_decompress(&ci);
        return drq_errf(err, "%s: %ux%u pixels is more than the %llu a JPEG may have here (a decompression bomb?)",
                        what, ci.image_width, ci.image_height, (unsigned long long)max_pixels);
    }
    int cmyk = ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK;
    int grey = ci.jpeg_color_space == JCS_GRAYSCALE;
    ci.out_color_space = cmyk ? JCS_CMYK : grey ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&ci);
    int W = (int)ci.output_width, H = (int)ci.output_height, nc = ci.output_components;
    out = xmalloc((size_t)W * H * 3);
    row = xmalloc((size_t)W * nc);
    while (ci.output_scanline < ci.output_height) {
        int y = (int)ci.output_scanline;
        JSAMPROW r = row;
        jpeg_read_scanlines(&ci, &r, 1);
        uint8_t *o = out + (size_t)y * W * 3;
        for (int x = 0; x < W; x++) {
            const uint8_t *p = row + (size_t)x * nc;
            if (grey) {
                o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = p[0];
            } else if (cmyk) {
                int nk = p[3]; /* stored inverted: K = 255 − p[3] */
                for (int c = 0; c < 3; c++) {
                    int r2 = nk - muldiv255(255 - p[c], nk);
                    o[3 * x + c] = (uint8_t)(r2 < 0 ? 0 : r2 > 255 ? 255 : r2);
                }
            } else {
                o[3 * x] = p[0], o[3 * x + 1] = p[1], o[3 * x + 2] = p[2];
            }
        }
    }
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    free(row);
    *rgb = out, *w = W, *h = H;
    return 0;
}

int drq_jpeg_load(const char *path, uint8_t **rgb, int *w, int *h, drq_err *err) {
    size_t len = 0;
    drq_err e2;
    uint8_t *buf = (uint8_t *)read_file_all(path, &len, &e2);
    if (!buf) return drq_errf(err, "%s", e2.msg);
    int rc = drq_jpeg_decode(buf, len, path, DRQ_JPEG_MAX_PIXELS, DRQ_JPEG_MAX_SCAN_PIXELS, rgb, w, h, err);
    free(buf);
    return rc;
}
