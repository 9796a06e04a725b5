/* safetensors.h — reader and writer of the safetensors format.
 *
 * Format: 8-byte little-endian u64 header length N, then N bytes of JSON
 * object mapping tensor name -> {"dtype", "shape", "data_offsets": [begin,
 * end]} (offsets relative to the first byte after the header), an optional
 * "__metadata__" entry (ignored), then the raw little-endian data.
 *
 * The reader accepts every dtype of the format: the floating-point ones
 * (F64, F32, F16, BF16, F8_E4M3, F8_E5M2, F8_E8M0, F4) are converted to
 * float32 (F64 rounded to nearest; a finite value beyond float32's range
 * becomes ±inf and is counted in `overflow`); the integer and boolean ones
 * (I64, I32, I16, I8, U64, U32, U16, U8, BOOL) are read as their values in
 * float32 (exact up to 2^24) and flagged `is_float` = 0, so a model loader
 * can refuse a weight stored as integers (num_batches_tracked, I64 in every
 * state_dict, is ignored).  F6_E2M3 / F6_E3M2 (packed 6-bit) are validated
 * but not decoded: `convertible` = 0 and `data` holds zeros.
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

typedef enum {
    ST_F32 = 0, ST_F16 = 1, ST_BF16 = 2, ST_F64, ST_F8_E4M3, ST_F8_E5M2, ST_F8_E8M0, ST_F4, ST_F6_E2M3, ST_F6_E3M2,
    ST_I64, ST_I32, ST_I16, ST_I8, ST_U64, ST_U32, ST_U16, ST_U8, ST_BOOL, ST_NDTYPES
} st_dtype;
const char *st_dtype_name(st_dtype d);   /* "F32", "I64", … */
int st_dtype_is_float(st_dtype d);       /* a floating-point dtype (weights may use it) */
#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    st_dtype dtype; /* dtype in the file */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t numel;
    float *data; /* converted to float32, owned (never NULL, even for 0 elements) */
    int is_float;    /* the file's dtype is floating point (st_dtype_is_float) */
    int convertible; /* data holds the values (0: F6 types, data is zeros) */
    size_t overflow; /* finite values that became ±inf in float32 (F64 only) */
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
