/* safetensors.h — reader and writer of the safetensors format.
 *
 * Format: 8-byte little-endian u64 header length N, then N bytes of JSON
 * object mapping tensor name -> {"dtype", "shape", "data_offsets": [begin,
 * end]} (offsets relative to the first byte after the header), an optional
 * "__metadata__" entry (ignored), then the raw little-endian data.
 *
 * The reader accepts F32, F16 and BF16 and converts everything to float32.
 * Every malformed file is reported through drq_err, naming the file and the
 * tensor; it never crashes nor reads out of bounds.  Sizes are multiplied only
 * below their limits: at most 2^48 elements per tensor, and the non-zero dims
 * of an empty tensor must multiply to no more than that either.  Tensors keep the order
 * of the header.  The writer writes F32 only, in the given order, with
 * contiguous offsets and a header padded with spaces to a multiple of 8,
 * atomically (temporary file + rename).
 */
#ifndef DRQ_SAFETENSORS_H
#define DRQ_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef enum { ST_F32 = 0, ST_F16 = 1, ST_BF16 = 2 } st_dtype;
#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    st_dtype dtype; /* dtype in the file */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t numel;
    float *data; /* converted to float32, owned (never NULL, even for 0 elements) */
    int used;    /* consumers (model loaders) set it, to report extra tensors */
} st_tensor;

typedef struct {
    int n;
    st_tensor *t;
} st_file;

/* Loads every tensor of PATH.  0 on success; -1 with err filled (and *out
 * empty) on failure. */
int st_load(const char *path, st_file *out, drq_err *err);
const st_tensor *st_find(const st_file *f, const char *name); /* NULL if absent */
st_tensor *st_find_mut(st_file *f, const char *name);
void st_free(st_file *f);

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const float *data;
} st_out;

/* Writes N float32 tensors to PATH (via PATH.tmpXXXXXX + rename). */
int st_save(const char *path, const st_out *ts, int n, drq_err *err);

#endif
