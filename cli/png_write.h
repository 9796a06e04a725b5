/* png_write.h — 8-bit PNG files through libpng (Debian's libpng-dev), for
 * `drq results --images` and the report's image grid (docs/report.md §Images). */
#ifndef DRQ_PNG_WRITE_H
#define DRQ_PNG_WRITE_H

#include <stdint.h>

#include "common/util.h"

/* Writes a w×h image of `channels` (1 gray, 3 RGB) 8-bit samples, row-major
 * interleaved (pix[(y·w + x)·channels + k]), to path (via path.tmp and a
 * rename).  -1 + err naming the path. */
int png_write(const char *path, const uint8_t *pix, int w, int h, int channels, drq_err *err);

/* One sample of [0,1] as 8 bits: clamp, then round(v · 255). */
uint8_t png_sample(float v);

#endif
