/* blob_dataset.h — the small MNIST-format dataset of the engine tests
 * (tests/test_engine.c, tests/test_stop_bound.c): n 16×16 images of a smooth
 * blob whose class is the blob's position, plus a little texture, written as
 * t10k-images-idx3-ubyte / t10k-labels-idx1-ubyte into dir. */
#ifndef DRQ_TEST_BLOB_DATASET_H
#define DRQ_TEST_BLOB_DATASET_H

#include <math.h>
#include <stdio.h>

static inline void write_blob_dataset(const char *dir, int n) {
    char p[256];
    unsigned char hdr[16] = {0, 0, 8, 3, 0, 0, 0, (unsigned char)n, 0, 0, 0, 16, 0, 0, 0, 16};
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte", dir);
    FILE *f = fopen(p, "wb");
    if (!f) return;
    fwrite(hdr, 1, 16, f);
    for (int i = 0; i < n; i++)
        for (int y = 0; y < 16; y++)
            for (int x = 0; x < 16; x++) {
                double cx = 4 + (i % 3) * 4, cy = 4 + (i / 3) * 4;
                double v = 255 * exp(-((x - cx) * (x - cx) + (y - cy) * (y - cy)) / 18.0) + 20 * ((x * 7 + y * 3 + i) % 5);
                fputc(v > 255 ? 255 : (int)v, f);
            }
    fclose(f);
    unsigned char lh[8] = {0, 0, 8, 1, 0, 0, 0, (unsigned char)n};
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte", dir);
    f = fopen(p, "wb");
    if (!f) return;
    fwrite(lh, 1, 8, f);
    for (int i = 0; i < n; i++) fputc(i % 10, f);
    fclose(f);
}

#endif
