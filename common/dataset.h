/* dataset.h — CIFAR-10 binary and MNIST / Fashion-MNIST IDX readers.
 *
 * Images come out as float32 NCHW in [0,1] (byte / 255.0f), labels as bytes.
 * Only the requested image range is converted and kept; whole files may be
 * read to validate them.  Every defect of an input file (missing, wrong
 * magic, truncated, trailing bytes, label/image count mismatch, label out of
 * range, CIFAR size not a whole number of records, range past the end) is a
 * drq_err naming the file and the problem; nothing is read out of bounds.
 *
 * kind "cifar10": path is a directory holding data_batch_1.bin .. data_batch_5.bin
 *   (split "train", concatenated in that order) and test_batch.bin (split
 *   "test") — or such a directory's parent holding cifar-10-batches-bin/ — or
 *   one .bin file (then split only has to be valid).  A record is 1 label byte
 *   + 3072 pixel bytes (R plane, G plane, B plane, each 32×32 row-major), so the
 *   file size must be a multiple of 3073.  10 classes.  Only the requested
 *   records are read, so labels are checked in the requested range.
 * kind "mnist" / "fashion-mnist": path is a directory holding
 *   {t10k,train}-{images-idx3,labels-idx1}-ubyte (also the "images.idx3-ubyte"
 *   spelling), each plain or with .gz (PATH is tried, then PATH.gz); or the
 *   images file itself, whose labels file is the same name with
 *   images-idx3 → labels-idx1 (plain or .gz).  IDX: big-endian magic
 *   0x00000803 (u8, 3 dims: n, rows, cols) for images, 0x00000801 (u8, 1 dim)
 *   for labels; gzip is read through zlib.  c = 1, 10 classes.  Before
 *   anything is read or allocated, the size each header promises is checked
 *   against the file: a plain file must hold exactly that, a gzip file no more
 *   than deflate's 1032:1 allows -- so a small file claiming up to INT_MAX
 *   items is refused at once.  Both files are then read to the end as a stream
 *   (the sizes must match the headers exactly, every label is checked), and
 *   only the labels and pixels of the requested range are kept.
 * split: "test" or "train".  start >= 0; count >= 0, or -1 for "to the end".
 */
#ifndef DRQ_DATASET_H
#define DRQ_DATASET_H

#include <stdint.h>

#include "common/util.h"

typedef struct {
    int n, c, h, w;
    float *x;   /* n×c×h×w in [0,1] */
    uint16_t *y; /* n labels, each < num_classes (ImageNet: 1000) */
    int num_classes;
} drq_dataset;

/* 0 on success; -1 with err filled (and *out empty) on failure. */
int dataset_load(const char *kind, const char *path, const char *split, long start, long count,
                 drq_dataset *out, drq_err *err);
void dataset_free(drq_dataset *d);

#endif
