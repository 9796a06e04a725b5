/* resample.c — see resample.h. */
#include "resample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define PRECISION_BITS (32 - 8 - 2) /* Pillow's fixed point for 8-bit images */

/* One axis: for each output index, the first input index (bounds[2i]), the
 * number of taps (bounds[2i+1]) and ksize fixed-point weights. */
typedef struct {
    int ksize;
    int *bounds;
    int32_t *k;
} axis;

static double triangle(double x) {
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

static void axis_make(axis *a, int in, int out) {
    double scale = (double)in / out, fscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * fscale; /* the triangle's support is 1 */
    a->ksize = (int)ceil(support) * 2 + 1;
    a->bounds = xmalloc(sizeof(int) * 2 * out);
    a->k = xcalloc((size_t)out * a->ksize, sizeof(int32_t));
    double *w = xmalloc(sizeof(double) * a->ksize);
    for (int o = 0; o < out; o++) {
        double center = (o + 0.5) * scale, sum = 0.0;
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in) hi = in;
        int n = hi - lo;
        for (int j = 0; j < n; j++) sum += (w[j] = triangle((j + lo - center + 0.5) / fscale));
        for (int j = 0; j < n; j++) {
            double v = sum != 0.0 ? w[j] / sum : w[j];
            /* Pillow rounds half away from zero, by truncation */
            a->k[(size_t)o * a->ksize + j] = (int32_t)(v < 0 ? -0.5 + v * (1 << PRECISION_BITS)
                                                             : 0.5 + v * (1 << PRECISION_BITS));
        }
        a->bounds[2 * o] = lo, a->bounds[2 * o + 1] = n;
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

void drq_resize_bilinear_rgb8(const uint8_t *in, int w, int h, uint8_t *out, int ow, int oh) {
    int need_h = ow != w, need_v = oh != h;
    if (!need_h && !need_v) {
        memcpy(out, in, (size_t)w * h * 3);
        return;
    }
    axis ax = {0}, ay = {0};
    if (need_v) axis_make(&ay, h, oh);
    if (!need_h) {
        pass_vertical(in, w, 0, &ay, out, oh);
        axis_free(&ay);
        return;
    }
    axis_make(&ax, w, ow);
    /* the horizontal pass covers only the rows the vertical one reads */
    int y0 = 0, y1 = h;
    if (need_v) y0 = ay.bounds[0], y1 = ay.bounds[2 * (oh - 1)] + ay.bounds[2 * (oh - 1) + 1];
    if (!need_v) {
        pass_horizontal(in, w, 0, h, &ax, out, ow);
    } else {
        uint8_t *tmp = xmalloc((size_t)ow * (y1 - y0) * 3);
        pass_horizontal(in, w, y0, y1 - y0, &ax, tmp, ow);
        pass_vertical(tmp, ow, y0, &ay, out, oh);
        free(tmp);
    }
    axis_free(&ax), axis_free(&ay);
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
    drq_res256_size(w, h, &ow, &oh);
    uint8_t *r = xmalloc((size_t)ow * oh * 3);
    drq_resize_bilinear_rgb8(rgb, w, h, r, ow, oh);
    int top = crop_offset(oh, DRQ_CROP224_SIZE), left = crop_offset(ow, DRQ_CROP224_SIZE);
    const int S = DRQ_CROP224_SIZE;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
                out[((size_t)c * S + y) * S + x] = r[((size_t)(top + y) * ow + left + x) * 3 + c] / 255.0f;
    free(r);
}
