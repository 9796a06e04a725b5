/* jpeg.h — decoding a JPEG file to 8-bit RGB with libjpeg-turbo, as Pillow's
 * Image.open(f).convert("RGB") does (torchvision's ImageFolder loader):
 *   - libjpeg's defaults (islow IDCT, fancy upsampling), YCbCr/RGB → RGB;
 *   - greyscale → R = G = B;
 *   - CMYK / YCCK → CMYK, read as stored inverted (Pillow's rawmode
 *     "CMYK;I", which it assumes for every CMYK JPEG: Adobe's convention),
 *     then Pillow's conversion R = (255 − K) − C·(255 − K)/255 (with its
 *     MULDIV255 rounding), likewise G from M and B from Y.
 * Every libjpeg error is returned, never exit()ed: error_exit longjmps back
 * here.  A file that ends early (libjpeg's "Premature end of JPEG file"
 * warning, after which it would fill the rest with grey) is an error too, as
 * in Pillow; libjpeg's other warnings (extraneous bytes before a marker) are
 * ignored, as in Pillow.  Images of more than DRQ_JPEG_MAX_PIXELS pixels
 * are refused before decoding (Pillow's decompression-bomb limit), and a
 * decode stops with an error once scans × pixels passes
 * DRQ_JPEG_MAX_SCAN_PIXELS (a progressive JPEG of thousands of near-empty
 * scans takes minutes otherwise; real ones have about 10 scans, so an image
 * at Pillow's limit may have 16, a 12-megapixel photo 238).
 * tests/test_res256.sh checks all this against Pillow; tests/fuzz/fuzz_jpeg.c
 * fuzzes it.
 */
#ifndef DRQ_JPEG_H
#define DRQ_JPEG_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define DRQ_JPEG_MAX_PIXELS 178956970 /* Pillow: 2 × MAX_IMAGE_PIXELS */
#define DRQ_JPEG_MAX_SCAN_PIXELS (16ull * DRQ_JPEG_MAX_PIXELS)

/* buf (len bytes) → *rgb (w × h × 3, interleaved rows, malloc'd).  what
 * names the input in err ("FILE: ...").  Images of more than max_pixels
 * are refused, and so are more than max_scan_pixels / pixels scans
 * (drq_jpeg_load: DRQ_JPEG_MAX_PIXELS, DRQ_JPEG_MAX_SCAN_PIXELS; the fuzz
 * harness less). */
int drq_jpeg_decode(const uint8_t *buf, size_t len, const char *what, uint64_t max_pixels,
                    uint64_t max_scan_pixels, uint8_t **rgb, int *w, int *h, drq_err *err);
/* The same for the file path. */
int drq_jpeg_load(const char *path, uint8_t **rgb, int *w, int *h, drq_err *err);

#endif
