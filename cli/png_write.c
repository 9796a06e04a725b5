/* png_write.c — see png_write.h. */
#include "png_write.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

uint8_t png_sample(float v) {
    if (!(v > 0)) return 0; /* also NaN */
    if (v >= 1) return 255;
    return (uint8_t)lrintf(v * 255.0f);
}

int png_write(const char *path, const uint8_t *pix, int w, int h, int channels, drq_err *err) {
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return drq_errf(err, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return drq_errf(err, "%s: %s", tmp, strerror(errno));
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    /* volatile: read after a longjmp out of libpng */
    volatile int ok = 0;
    if (png && info && !setjmp(png_jmpbuf(png))) {
        png_init_io(png, f);
        int type = channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY;
        png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, type, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_write_info(png, info);
        for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(pix + (size_t)y * w * channels));
        png_write_end(png, NULL);
        ok = 1;
    }
    png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
    if (fclose(f) || !ok) {
        unlink(tmp);
        return drq_errf(err, "%s: writing the PNG failed", path);
    }
    if (rename(tmp, path)) {
        unlink(tmp);
        return drq_errf(err, "%s: %s", path, strerror(errno));
    }
    return 0;
}
