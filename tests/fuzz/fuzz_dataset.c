/* fuzz_dataset.c — libFuzzer harness for the dataset readers
 * (common/dataset.c: MNIST / Fashion-MNIST IDX, plain or gzip, and CIFAR-10
 * binary).  The readers take paths, so the input becomes files in a temporary
 * directory.
 *
 * Input: a 7-byte header, then the file bytes:
 *   byte 0  mode: bits 0-1  0 IDX directory, 1 IDX images-file path,
 *                           2 CIFAR-10 single .bin file, 3 CIFAR-10 directory
 *                 bit 2     IDX: files named with .gz (the content decides gzip or
 *                           plain); CIFAR-10 directory: the files are in its
 *                           cifar-10-batches-bin/ subdirectory
 *                 bit 3     split "train" (else "test")
 *                 bit 4     kind "fashion-mnist" (else "mnist")
 *   byte 1  start (int8)    byte 2  count (int8; -1 = to the end)
 *   bytes 3-6  L, u32 little-endian: the first L bytes (at most what is left)
 *           are the IDX images file, the rest the IDX labels file.  CIFAR-10:
 *           a single file or test_batch.bin take everything after the header;
 *           the train split takes L bytes as data_batch_1.bin and shares the
 *           rest out as data_batch_2..5.bin (whole 3073-byte records to 2..4,
 *           what is left to 5).
 * A load that succeeds must give n images of c×h×w in [0,1] with labels below
 * num_classes; everything is freed (ASan's leak checker stays on).
 */
#include <sys/stat.h>

#include "common/dataset.h"
#include "tests/fuzz/fuzz_common.h"

#define HDR 7

static void fail(const char *what) {
    fprintf(stderr, "dataset invariant broken: %s\n", what);
    abort();
}

/* Writes the IDX pair under sub/ with the names of split, as plain or .gz names. */
static void write_idx(const char *sub, int train, int gzname, const uint8_t *img, size_t ilen, const uint8_t *lab,
                      size_t llen) {
    const char *pre = train ? "train" : "t10k";
    char rel[128];
    const char *gz[2] = {"", ".gz"};
    /* remove the other spelling so exactly one file of each kind is there */
    for (int g = 0; g < 2; g++) {
        snprintf(rel, sizeof rel, "%s/%s-images-idx3-ubyte%s", sub, pre, gz[g]);
        if (g != gzname) unlink(fz_path(rel));
        else fz_write(fz_path(rel), img, ilen);
        snprintf(rel, sizeof rel, "%s/%s-labels-idx1-ubyte%s", sub, pre, gz[g]);
        if (g != gzname) unlink(fz_path(rel));
        else fz_write(fz_path(rel), lab, llen);
    }
}

/* The CIFAR-10 files of split in dir (see the input format); those of other, the other layout, are removed. */
static void write_cifar(const char *dir, const char *other, int train, const uint8_t *body, size_t blen, size_t l) {
    static const char *const names[] = {"test_batch.bin",   "data_batch_1.bin", "data_batch_2.bin",
                                        "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"};
    char rel[128];
    for (int i = 0; i < 6; i++) {
        snprintf(rel, sizeof rel, "%s/%s", other, names[i]);
        unlink(fz_path(rel));
        snprintf(rel, sizeof rel, "%s/%s", dir, names[i]);
        unlink(fz_path(rel));
    }
    if (!train) {
        snprintf(rel, sizeof rel, "%s/test_batch.bin", dir);
        fz_write(fz_path(rel), body, blen);
        return;
    }
    size_t per = (blen - l) / 3073 / 4 * 3073, off = l;
    snprintf(rel, sizeof rel, "%s/data_batch_1.bin", dir);
    fz_write(fz_path(rel), body, l);
    for (int i = 2; i <= 5; i++) {
        size_t n = i < 5 ? per : blen - off;
        snprintf(rel, sizeof rel, "%s/data_batch_%d.bin", dir, i);
        fz_write(fz_path(rel), body + off, n);
        off += n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int dirs_made;
    if (!dirs_made) {
        mkdir(fz_path("idx"), 0700);
        mkdir(fz_path("cifar"), 0700);
        mkdir(fz_path("cifar/cifar-10-batches-bin"), 0700);
        dirs_made = 1;
    }
    if (size < HDR) return 0;
    int mode = data[0] & 3, gzname = (data[0] >> 2) & 1, train = (data[0] >> 3) & 1;
    const char *kind = (data[0] >> 4) & 1 ? "fashion-mnist" : "mnist";
    long start = (int8_t)data[1], count = (int8_t)data[2];
    size_t l = (size_t)data[3] | (size_t)data[4] << 8 | (size_t)data[5] << 16 | (size_t)data[6] << 24;
    const uint8_t *body = data + HDR;
    size_t blen = size - HDR;
    if (l > blen) l = blen;

    char path[600];
    const char *split = train ? "train" : "test";
    if (mode <= 1) {
        write_idx("idx", train, gzname, body, l, body + l, blen - l);
        if (mode == 0)
            snprintf(path, sizeof path, "%s", fz_path("idx"));
        else
            snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte%s", fz_path("idx"), train ? "train" : "t10k",
                     gzname ? ".gz" : "");
    } else {
        kind = "cifar10";
        if (mode == 2) {
            snprintf(path, sizeof path, "%s", fz_path("c.bin"));
            fz_write(path, body, blen);
        } else {
            write_cifar(gzname ? "cifar/cifar-10-batches-bin" : "cifar", gzname ? "cifar" : "cifar/cifar-10-batches-bin",
                        train, body, blen, l);
            snprintf(path, sizeof path, "%s", fz_path("cifar"));
        }
    }

    drq_dataset d;
    drq_err err;
    err.msg[0] = 0;
    if (dataset_load(kind, path, split, start, count, &d, &err) != 0) {
        if (!err.msg[0]) fail("refused without a message");
        if (d.x || d.y || d.n) fail("a failed load left data behind");
        return 0;
    }
    if (d.n < 0 || (count >= 0 && d.n != count) || d.c < 1 || d.h < 1 || d.w < 1 || d.num_classes < 1 ||
        !d.x || !d.y)
        fail("inconsistent result");
    size_t numel = (size_t)d.n * (size_t)d.c * (size_t)d.h * (size_t)d.w;
    for (size_t i = 0; i < numel; i++)
        if (!(d.x[i] >= 0.0f && d.x[i] <= 1.0f)) fail("pixel outside [0,1]");
    for (int i = 0; i < d.n; i++)
        if (d.y[i] >= d.num_classes) fail("label out of range");
    dataset_free(&d);
    return 0;
}
