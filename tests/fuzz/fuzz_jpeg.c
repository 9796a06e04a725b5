/* fuzz_jpeg.c — libFuzzer harness for the ImageNet image path: the input is
 * a JPEG file's bytes, decoded by common/jpeg.c (libjpeg-turbo, errors by
 * longjmp) and, when that succeeds, resized and centre-cropped by
 * common/resample.c (Res256Crop224).  Invariants: a failed decode returns -1
 * with a message naming the input and leaves nothing allocated; a decoded
 * image has w, h ≥ 1; the crop's values are bytes / 255 in [0,1].  Images
 * above 2^22 pixels, and more than 2^25 scan-pixels (8 scans of the largest
 * image), are refused by the decoder here (the product allows Pillow's 179 M
 * and 16 × that) so that one input cannot take seconds.  The crop costs what
 * its window costs whatever the aspect ratio (before, a 1 × 65500 JPEG took
 * 53 s and 13 GB natively; a CI run saved a 19 s input here).
 */
#include <math.h>

#include "common/jpeg.h"
#include "common/resample.h"
#include "tests/fuzz/fuzz_common.h"

#define FUZZ_MAX_PIXELS (1u << 22)
#define FUZZ_MAX_SCAN_PIXELS (1u << 25)

static void fail(const char *what) {
    fprintf(stderr, "jpeg invariant broken: %s\n", what);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *rgb = NULL;
    int w = -1, h = -1;
    drq_err err = {{0}};
    if (drq_jpeg_decode(data, size, "fuzz.jpg", FUZZ_MAX_PIXELS, FUZZ_MAX_SCAN_PIXELS, &rgb, &w, &h, &err) != 0) {
        if (rgb) fail("a failed decode returned pixels");
        if (strncmp(err.msg, "fuzz.jpg: ", 10)) fail("the error does not name the input");
        return 0;
    }
    if (!rgb || w < 1 || h < 1) fail("a decoded image without pixels");
    static float crop[3 * DRQ_CROP224_SIZE * DRQ_CROP224_SIZE];
    drq_res256_crop224(rgb, w, h, crop);
    for (size_t i = 0; i < sizeof crop / sizeof crop[0]; i++) {
        float b = crop[i] * 255.0f;
        if (!(crop[i] >= 0.0f && crop[i] <= 1.0f) || fabsf(b - rintf(b)) > 1e-3f) fail("a crop value is not a byte / 255");
    }
    free(rgb);
    return 0;
}
