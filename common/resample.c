/* resample.c — see resample.h. */
#include "resample.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define PRECISION_BITS (32 - 8 - 2) /* Pillow's fixed point for 8-bit images */

/* One axis, for the output indices [o0, o0 + n): for each, the first input
 * index (bounds[2i]), the number of taps (bounds[2i+1]) and ksize fixed-point
 * weights.  An output index's taps depend on nothing but the index, so a
 * window of the output costs only its own weights. */
typedef struct {
    int ksize;
    int *bounds;
    int32_t *k;
} axis;

static double triangle(double x) {
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

static void axis_make(axis *a, int in, int out, int o0, int n_out) {
    double scale = (double)in / out, fscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * fscale; /* the triangle's support is 1 */
    a->ksize = (int)ceil(support) * 2 + 1;
    a->bounds = xmalloc(sizeof(int) * 2 * n_out);
    a->k = xcalloc((size_t)n_out * a->ksize, sizeof(int32_t));
    double *w = xmalloc(sizeof(double) * a->ksize);
    for (int i = 0; i < n_out; i++) {
        double center = (o0 + i + 0.5) * scale, sum = 0.0;
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in) hi = in;
        int n = hi - lo;
        for (int j = 0; j < n; j++) sum += (w[j] = triangle((j + lo - center + 0.5) / fscale));
        for (int j = 0; j < n; j++) {
            double v = sum != 0.0 ? w[j] / sum : w[j];
            /* Pillow rounds half away from zero, by truncation */
            a->k[(size_t)i * a->ksize + j] = (int32_t)(v < 0 ? -0.5 + v * (1 << PRECISION_BITS)
                                                             : 0.5 + v * (1 << PRECISION_BITS));
        }
        a->bounds[2 * i] = lo, a->bounds[2 * i + 1] = n;
    }
    free(w);
}

static void axis_free(axis *a) { free(a->bounds), free(a->k); }

static uint8_t clip8(int32_t s) {
    s >>= PRECISION_BITS;
    return (uint8_t)(s < 0 ? 0 : s > 255 ? 255 : s);
}

/* rows [y0, y0 + rows) of in (w wide) → out (ow wide, rows rows) */
static void pass_horizontal(const uint8_t *in, int w, int y0, int rows, const axis *a, uint8_t *out, int ow) {
    for (int y = 0; y < rows; y++) {
        const uint8_t *src = in + (size_t)(y0 + y) * w * 3;
        uint8_t *dst = out + (size_t)y * ow * 3;
        for (int x = 0; x < ow; x++) {
            const int32_t *k = a->k + (size_t)x * a->ksize;
            int lo = a->bounds[2 * x], n = a->bounds[2 * x + 1];
            int32_t s[3] = {1 << (PRECISION_BITS - 1), 1 << (PRECISION_BITS - 1), 1 << (PRECISION_BITS - 1)};
            for (int j = 0; j < n; j++)
                for (int c = 0; c < 3; c++) s[c] += src[(size_t)(lo + j) * 3 + c] * k[j];
            for (int c = 0; c < 3; c++) dst[(size_t)x * 3 + c] = clip8(s[c]);
        }
    }
}

/* in (w × any rows, its row 0 = bounds' row y_shift) → out (w × oh) */
static void pass_vertical(const uint8_t *in, int w, int y_shift, const axis *a, uint8_t *out, int oh) {
    for (int y = 0; y < oh; y++) {
        const int32_t *k = a->k + (size_t)y * a->ksize;
        int lo = a->bounds[2 * y] - y_shift, n = a->bounds[2 * y + 1];
        uint8_t *dst = out + (size_t)y * w * 3;
        for (int x = 0; x < w * 3; x++) {
            int32_t s = 1 << (PRECISION_BITS - 1);
            for (int j = 0; j < n; j++) s += in[(size_t)(lo + j) * w * 3 + x] * k[j];
            dst[x] = clip8(s);
        }
    }
}

void drq_resize_window_rgb8(const uint8_t *in, int w, int h, int ow, int oh, int x0, int y0, int cw, int ch,
                            uint8_t *out) {
    assert(x0 >= 0 && y0 >= 0 && cw >= 1 && ch >= 1 && x0 + cw <= ow && y0 + ch <= oh);
    int need_h = ow != w, need_v = oh != h; /* Pillow skips a pass whose size does not change */
    axis ax = {0}, ay = {0};
    /* the input rows the vertical pass reads (taps move monotonically) */
    int r0 = y0, r1 = y0 + ch;
    if (need_v) {
        axis_make(&ay, h, oh, y0, ch);
        r0 = ay.bounds[0], r1 = ay.bounds[2 * (ch - 1)] + ay.bounds[2 * (ch - 1) + 1];
    }
    /* the horizontal pass covers only those rows and the window's columns */
    uint8_t *tmp = xmalloc((size_t)cw * (r1 - r0) * 3);
    if (need_h) {
        axis_make(&ax, w, ow, x0, cw);
        pass_horizontal(in, w, r0, r1 - r0, &ax, tmp, cw);
    } else {
        for (int y = r0; y < r1; y++) memcpy(tmp + (size_t)(y - r0) * cw * 3, in + ((size_t)y * w + x0) * 3, (size_t)cw * 3);
    }
    if (need_v) pass_vertical(tmp, cw, r0, &ay, out, ch);
    else memcpy(out, tmp, (size_t)cw * ch * 3);
    free(tmp);
    axis_free(&ax), axis_free(&ay);
}

void drq_resize_bilinear_rgb8(const uint8_t *in, int w, int h, uint8_t *out, int ow, int oh) {
    drq_resize_window_rgb8(in, w, h, ow, oh, 0, 0, ow, oh, out);
}

void drq_res256_size(int w, int h, int *ow, int *oh) {
    /* torchvision: the short side to 256, the long one to int(256 · long / short) */
    if (w <= h) *ow = DRQ_RES256_SIZE, *oh = (int)((int64_t)DRQ_RES256_SIZE * h / w);
    else *oh = DRQ_RES256_SIZE, *ow = (int)((int64_t)DRQ_RES256_SIZE * w / h);
}

/* round((size − crop) / 2) with Python's round: halves go to the even integer */
static int crop_offset(int size, int crop) {
    int d = size - crop, q = d / 2;
    return d % 2 == 0 ? q : q % 2 == 0 ? q : q + 1;
}

void drq_res256_crop224(const uint8_t *rgb, int w, int h, float *out) {
    int ow, oh;
    const int S = DRQ_CROP224_SIZE;
    drq_res256_size(w, h, &ow, &oh);
    int top = crop_offset(oh, S), left = crop_offset(ow, S);
    /* only the window: a 1 × 65535 JPEG resizes to 256 × 16,776,960 pixels (12.9 GB) */
    uint8_t *r = xmalloc((size_t)S * S * 3);
    drq_resize_window_rgb8(rgb, w, h, ow, oh, left, top, S, S, r);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) out[((size_t)c * S + y) * S + x] = r[((size_t)y * S + x) * 3 + c] / 255.0f;
    free(r);
}
