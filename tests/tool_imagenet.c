/* tool_imagenet — drq's ImageNet image path, step by step, for the Pillow
 * comparison of tests/test_res256.sh (tests/ref/check_res256.py):
 *
 *   tool_imagenet decode IN.jpg OUT.rgb            W H, then the RGB bytes
 *   tool_imagenet resize IN.rgb W H OW OH OUT.rgb  Pillow-style bilinear
 *   tool_imagenet crop IN.jpg OUT.rgb              Res256Crop224: planar
 *                                                  3×224×224 bytes (the
 *                                                  floats × 255, exact)
 *   tool_imagenet dataset PATH START COUNT OUT.rgb dataset_load("imagenet"):
 *                                                  one label per line on
 *                                                  stdout, the crops to OUT
 * decode prints "W H" on stdout.  Errors go to stderr, exit status 1.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dataset.h"
#include "common/jpeg.h"
#include "common/resample.h"

static int write_all(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) {
        fprintf(stderr, "tool_imagenet: cannot write %s\n", path);
        if (f) fclose(f);
        return 1;
    }
    return fclose(f) ? 1 : 0;
}

/* floats in [0,1] that are bytes / 255 → the bytes */
static void to_bytes(const float *x, size_t n, uint8_t *b) {
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)lrintf(x[i] * 255.0f);
}

int main(int argc, char **argv) {
    drq_err err = {{0}};
    if (argc == 4 && !strcmp(argv[1], "decode")) {
        uint8_t *rgb;
        int w, h;
        if (drq_jpeg_load(argv[2], &rgb, &w, &h, &err)) goto fail;
        printf("%d %d\n", w, h);
        int rc = write_all(argv[3], rgb, (size_t)w * h * 3);
        free(rgb);
        return rc;
    }
    if (argc == 8 && !strcmp(argv[1], "resize")) {
        int w = atoi(argv[3]), h = atoi(argv[4]), ow = atoi(argv[5]), oh = atoi(argv[6]);
        size_t len;
        uint8_t *in = (uint8_t *)read_file_all(argv[2], &len, &err);
        if (!in) goto fail;
        if (w < 1 || h < 1 || ow < 1 || oh < 1 || len != (size_t)w * h * 3) {
            fprintf(stderr, "tool_imagenet resize: %s holds %zu bytes, not %dx%dx3\n", argv[2], len, w, h);
            return 1;
        }
        uint8_t *out = malloc((size_t)ow * oh * 3);
        drq_resize_bilinear_rgb8(in, w, h, out, ow, oh);
        int rc = write_all(argv[7], out, (size_t)ow * oh * 3);
        free(in), free(out);
        return rc;
    }
    if (argc == 4 && !strcmp(argv[1], "crop")) {
        uint8_t *rgb;
        int w, h;
        if (drq_jpeg_load(argv[2], &rgb, &w, &h, &err)) goto fail;
        size_t n = (size_t)3 * DRQ_CROP224_SIZE * DRQ_CROP224_SIZE;
        float *x = malloc(n * sizeof(float));
        uint8_t *b = malloc(n);
        drq_res256_crop224(rgb, w, h, x);
        to_bytes(x, n, b);
        int rc = write_all(argv[3], b, n);
        free(rgb), free(x), free(b);
        return rc;
    }
    if (argc == 6 && !strcmp(argv[1], "dataset")) {
        drq_dataset d;
        if (dataset_load("imagenet", argv[2], "test", atol(argv[3]), atol(argv[4]), &d, &err)) goto fail;
        size_t n = (size_t)d.n * d.c * d.h * d.w;
        uint8_t *b = malloc(n ? n : 1);
        to_bytes(d.x, n, b);
        for (int i = 0; i < d.n; i++) printf("%d\n", d.y[i]);
        int rc = write_all(argv[5], b, n);
        free(b);
        dataset_free(&d);
        return rc;
    }
    fprintf(stderr, "usage: tool_imagenet decode IN.jpg OUT.rgb | resize IN.rgb W H OW OH OUT.rgb | crop IN.jpg OUT.rgb "
                    "| dataset PATH START COUNT OUT.rgb\n");
    return 2;
fail:
    fprintf(stderr, "%s\n", err.msg);
    return 1;
}
