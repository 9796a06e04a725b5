/* safetensors.c — see safetensors.h.
 *
 * The whole header is validated before any tensor data is read: every entry's
 * dtype, shape and data_offsets, the byte size against shape × dtype size,
 * the bounds of the data section and overlaps between tensors.  Only then is
 * the data read, tensor by tensor, with the file size already known, so a bad
 * file can never make us read past what the header promised.
 */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c reads and writes raw little-endian floats: little-endian hosts only"
#endif

/* The reference implementation refuses headers over 100 MB; so do we. */
#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
/* Largest element count accepted: keeps numel × 4 bytes far from overflow.
 * It also bounds the product of the non-zero dims of an empty tensor, so that
 * no product of a tensor's dims can overflow for whoever computes one. */
#define ST_MAX_NUMEL ((uint64_t)1 << 48)
/* Largest data section st_save writes: offsets must fit a JSON integer (int64). */
#define ST_MAX_DATA ((uint64_t)INT64_MAX)

/* Product of shape[0..ndim) over its non-zero dims into *prod; -1 when it
 * exceeds ST_MAX_NUMEL (checked before each multiplication).  *zero: whether
 * some dim is 0 (then the element count is 0). */
static int shape_product(int ndim, const int64_t *shape, uint64_t *prod, int *zero) {
    uint64_t p = 1;
    *zero = 0;
    for (int i = 0; i < ndim; i++) {
        uint64_t d = (uint64_t)shape[i];
        if (d == 0) {
            *zero = 1;
            continue;
        }
        if (d > ST_MAX_NUMEL || p > ST_MAX_NUMEL / d) return -1;
        p *= d;
    }
    *prod = p;
    return 0;
}

/* Every dtype of the format: name, size in bits, floating point. */
static const struct {
    const char *name;
    int bits, is_float;
} dtypes[ST_NDTYPES] = {
    [ST_F32] = {"F32", 32, 1},         [ST_F16] = {"F16", 16, 1},         [ST_BF16] = {"BF16", 16, 1},
    [ST_F64] = {"F64", 64, 1},         [ST_F8_E4M3] = {"F8_E4M3", 8, 1},  [ST_F8_E5M2] = {"F8_E5M2", 8, 1},
    [ST_F8_E8M0] = {"F8_E8M0", 8, 1},  [ST_F4] = {"F4", 4, 1},            [ST_F6_E2M3] = {"F6_E2M3", 6, 1},
    [ST_F6_E3M2] = {"F6_E3M2", 6, 1},  [ST_I64] = {"I64", 64, 0},         [ST_I32] = {"I32", 32, 0},
    [ST_I16] = {"I16", 16, 0},         [ST_I8] = {"I8", 8, 0},            [ST_U64] = {"U64", 64, 0},
    [ST_U32] = {"U32", 32, 0},         [ST_U16] = {"U16", 16, 0},         [ST_U8] = {"U8", 8, 0},
    [ST_BOOL] = {"BOOL", 8, 0},
};

const char *st_dtype_name(st_dtype d) { return (unsigned)d < ST_NDTYPES ? dtypes[d].name : "?"; }
int st_dtype_is_float(st_dtype d) { return (unsigned)d < ST_NDTYPES && dtypes[d].is_float; }
static const char *dtype_name(st_dtype d) { return st_dtype_name(d); }
/* Whether read_data decodes D (packed sub-byte floats are only validated). */
static int dtype_decoded(st_dtype d) { return d != ST_F4 && d != ST_F6_E2M3 && d != ST_F6_E3M2; }

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0) {
        /* zero or subnormal: man · 2^-24, exact in float32 */
        float v = (float)man * 5.9604644775390625e-08f;
        return sign ? -v : v;
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13); /* inf, or nan keeping its payload */
    } else {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* FP8 E4M3 "fn" (PyTorch float8_e4m3fn): bias 7, no infinities, S.1111.111 is NaN. */
static float f8e4m3_to_f32(uint8_t b) {
    int sign = b >> 7, exp = (b >> 3) & 0xf, man = b & 7;
    float v;
    if (exp == 15 && man == 7) v = NAN;
    else if (exp == 0) v = (float)man * 0.001953125f; /* man · 2^-9 */
    else v = ldexpf(1.0f + (float)man / 8.0f, exp - 7);
    return sign ? -v : v;
}

/* FP8 E5M2: the top byte of an IEEE half. */
static float f8e5m2_to_f32(uint8_t b) { return f16_to_f32((uint16_t)((uint16_t)b << 8)); }

/* FP8 E8M0 (an exponent only): 2^(e-127), 0xff is NaN. */
static float f8e8m0_to_f32(uint8_t b) { return b == 0xff ? NAN : ldexpf(1.0f, (int)b - 127); }

/* "[2, 3, 4]" into buf. */
static const char *fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

/* A non-negative JSON integer into *v; 0 if it is something else. */
static int json_u64(const json_t *j, uint64_t *v) {
    if (!json_is_integer(j)) return 0;
    json_int_t x = json_integer_value(j);
    if (x < 0) return 0;
    *v = (uint64_t)x;
    return 1;
}

const st_tensor *st_find(const st_file *f, const char *name) {
    if (!f || !name) return NULL;
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

st_tensor *st_find_mut(st_file *f, const char *name) { return (st_tensor *)st_find(f, name); }

void st_free(st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) {
        free(f->t[i].name);
        free(f->t[i].data);
    }
    free(f->t);
    f->n = 0;
    f->t = NULL;
}

typedef struct {
    uint64_t begin, end;
    int idx;
} st_range;

static int range_cmp(const void *a, const void *b) {
    const st_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Validates one header entry into *t (name already set) and its byte range. */
static int parse_entry(const char *path, const char *name, json_t *v, uint64_t data_len,
                       st_tensor *t, st_range *r, drq_err *err) {
    char sbuf[256];
    if (!json_is_object(v))
        return drq_errf(err, "%s: tensor '%s': header entry is not a JSON object", path, name);

    json_t *jd = json_object_get(v, "dtype");
    if (!jd) return drq_errf(err, "%s: tensor '%s': missing \"dtype\"", path, name);
    if (!json_is_string(jd)) return drq_errf(err, "%s: tensor '%s': \"dtype\" is not a string", path, name);
    const char *ds = json_string_value(jd);
    int found = 0;
    for (int d = 0; d < ST_NDTYPES && !found; d++)
        if (!strcmp(ds, dtypes[d].name)) t->dtype = (st_dtype)d, found = 1;
    if (!found)
        return drq_errf(err,
                        "%s: tensor '%s': unknown dtype \"%s\" (the format's dtypes: F64, F32, F16, BF16, F8_E4M3, "
                        "F8_E5M2, F8_E8M0, F6_E2M3, F6_E3M2, F4, I64, I32, I16, I8, U64, U32, U16, U8, BOOL)",
                        path, name, ds);
    t->is_float = dtypes[t->dtype].is_float;
    t->convertible = dtype_decoded(t->dtype);

    json_t *js = json_object_get(v, "shape");
    if (!js) return drq_errf(err, "%s: tensor '%s': missing \"shape\"", path, name);
    if (!json_is_array(js)) return drq_errf(err, "%s: tensor '%s': \"shape\" is not an array", path, name);
    size_t nd = json_array_size(js);
    if (nd > ST_MAX_DIMS)
        return drq_errf(err, "%s: tensor '%s': shape has %zu dims, more than the %d supported", path, name, nd,
                        ST_MAX_DIMS);
    t->ndim = (int)nd;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (!json_u64(json_array_get(js, i), &d))
            return drq_errf(err, "%s: tensor '%s': shape[%zu] is not a non-negative integer", path, name, i);
        t->shape[i] = (int64_t)d;
    }
    uint64_t numel = 0;
    int zero;
    if (shape_product(t->ndim, t->shape, &numel, &zero))
        return drq_errf(err, "%s: tensor '%s': shape %s overflows (too many elements)", path, name,
                        fmt_shape(sbuf, sizeof sbuf, t->ndim, t->shape));
    if (zero) numel = 0;
    t->numel = (size_t)numel;

    json_t *jo = json_object_get(v, "data_offsets");
    if (!jo) return drq_errf(err, "%s: tensor '%s': missing \"data_offsets\"", path, name);
    uint64_t b, e;
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_u64(json_array_get(jo, 0), &b) ||
        !json_u64(json_array_get(jo, 1), &e))
        return drq_errf(err, "%s: tensor '%s': \"data_offsets\" is not an array of 2 non-negative integers",
                        path, name);
    if (b > e)
        return drq_errf(err, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] has begin > end", path,
                        name, b, e);
    if (e > data_len)
        return drq_errf(err,
                        "%s: tensor '%s': data_offsets end %" PRIu64 " is past the end of the data section (%" PRIu64
                        " bytes): file truncated?",
                        path, name, e, data_len);
    /* numel < 2^48, bits ≤ 64: no overflow.  Sub-byte dtypes must fill whole bytes (as the reference). */
    uint64_t bits = numel * (uint64_t)dtypes[t->dtype].bits;
    if (bits % 8)
        return drq_errf(err, "%s: tensor '%s': %" PRIu64 " elements of %s do not fill a whole number of bytes", path,
                        name, numel, dtype_name(t->dtype));
    uint64_t want = bits / 8;
    if (e - b != want)
        return drq_errf(err,
                        "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] span %" PRIu64
                        " bytes but shape %s of %s needs %" PRIu64 " bytes (byte size mismatch)",
                        path, name, b, e, e - b, fmt_shape(sbuf, sizeof sbuf, t->ndim, t->shape),
                        dtype_name(t->dtype), want);
    r->begin = b;
    r->end = e;
    return 0;
}

static int read_data(FILE *f, const char *path, uint64_t data_start, const st_range *r, st_tensor *t,
                     drq_err *err) {
    t->data = xcalloc(t->numel ? t->numel : 1, sizeof(float));
    if (t->numel == 0 || !t->convertible) return 0;
    if (fseeko(f, (off_t)(data_start + r->begin), SEEK_SET) != 0)
        return drq_errf(err, "%s: tensor '%s': seek failed: %s", path, t->name, strerror(errno));
    if (t->dtype == ST_F32) {
        if (fread(t->data, sizeof(float), t->numel, f) != t->numel)
            return drq_errf(err, "%s: tensor '%s': short read (file truncated while reading?)", path, t->name);
        return 0;
    }
    size_t es = (size_t)dtypes[t->dtype].bits / 8, n = t->numel;
    unsigned char *tmp = xmalloc(n * es);
    if (fread(tmp, es, n, f) != n) {
        free(tmp);
        return drq_errf(err, "%s: tensor '%s': short read (file truncated while reading?)", path, t->name);
    }
    float *o = t->data;
#define ST_CONVERT(type, expr)                                                                                     \
    for (size_t i = 0; i < n; i++) {                                                                               \
        type v;                                                                                                    \
        memcpy(&v, tmp + i * sizeof(type), sizeof(type));                                                          \
        o[i] = (expr);                                                                                             \
    }
    switch (t->dtype) {
    case ST_F16: ST_CONVERT(uint16_t, f16_to_f32(v)) break;
    case ST_BF16: ST_CONVERT(uint16_t, bf16_to_f32(v)) break;
    case ST_F64:
        for (size_t i = 0; i < n; i++) {
            double v;
            memcpy(&v, tmp + i * 8, 8);
            o[i] = (float)v; /* round to nearest */
            if (isinf(o[i]) && isfinite(v)) t->overflow++;
        }
        break;
    case ST_F8_E4M3: ST_CONVERT(uint8_t, f8e4m3_to_f32(v)) break;
    case ST_F8_E5M2: ST_CONVERT(uint8_t, f8e5m2_to_f32(v)) break;
    case ST_F8_E8M0: ST_CONVERT(uint8_t, f8e8m0_to_f32(v)) break;
    case ST_I64: ST_CONVERT(int64_t, (float)v) break;
    case ST_I32: ST_CONVERT(int32_t, (float)v) break;
    case ST_I16: ST_CONVERT(int16_t, (float)v) break;
    case ST_I8: ST_CONVERT(int8_t, (float)v) break;
    case ST_U64: ST_CONVERT(uint64_t, (float)v) break;
    case ST_U32: ST_CONVERT(uint32_t, (float)v) break;
    case ST_U16: ST_CONVERT(uint16_t, (float)v) break;
    case ST_U8: ST_CONVERT(uint8_t, (float)v) break;
    case ST_BOOL: ST_CONVERT(uint8_t, v ? 1.0f : 0.0f) break;
    default: break; /* F32 above; F4/F6 not decoded */
    }
#undef ST_CONVERT
    free(tmp);
    return 0;
}

int st_load(const char *path, st_file *out, drq_err *err) {
    out->n = 0;
    out->t = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return drq_errf(err, "%s: cannot open: %s", path, strerror(errno));

    st_file res = {0, NULL};
    st_range *ranges = NULL;
    char *hdr = NULL;
    json_t *root = NULL;
    int rc = -1;

    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        drq_errf(err, "%s: not a regular file", path);
        goto done;
    }
    uint64_t fsize = (uint64_t)sb.st_size;
    unsigned char lb[8];
    if (fsize < 8 || fread(lb, 1, 8, f) != 8) {
        drq_errf(err, "%s: file is %" PRIu64 " bytes, shorter than the 8-byte header length: not a safetensors file",
                 path, fsize);
        goto done;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | lb[i];
    if (hlen > ST_MAX_HEADER) {
        drq_errf(err, "%s: header length %" PRIu64 " is absurd (limit %" PRIu64 " bytes): not a safetensors file?",
                 path, hlen, ST_MAX_HEADER);
        goto done;
    }
    if (hlen > fsize - 8) {
        drq_errf(err, "%s: header length %" PRIu64 " runs past the end of the file (%" PRIu64 " bytes): truncated?",
                 path, hlen, fsize);
        goto done;
    }
    hdr = xmalloc((size_t)hlen + 1);
    if (fread(hdr, 1, (size_t)hlen, f) != (size_t)hlen) {
        drq_errf(err, "%s: short read of the %" PRIu64 "-byte header", path, hlen);
        goto done;
    }
    uint64_t data_start = 8 + hlen, data_len = fsize - data_start;

    json_error_t jerr;
    root = json_loadb(hdr, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_duplicate_key)
            drq_errf(err, "%s: header has a duplicate key (duplicate tensor name?): %s", path, jerr.text);
        else
            drq_errf(err, "%s: header is not valid JSON: %s (line %d, column %d)", path, jerr.text, jerr.line,
                     jerr.column);
        goto done;
    }
    if (!json_is_object(root)) {
        drq_errf(err, "%s: header is not a JSON object", path);
        goto done;
    }

    size_t cap = json_object_size(root);
    res.t = xcalloc(cap ? cap : 1, sizeof(st_tensor));
    ranges = xcalloc(cap ? cap : 1, sizeof(st_range));
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) continue;
        st_tensor *t = &res.t[res.n];
        t->name = xstrdup(key);
        res.n++;
        ranges[res.n - 1].idx = res.n - 1;
        if (parse_entry(path, key, val, data_len, t, &ranges[res.n - 1], err)) goto done;
    }

    /* Overlaps: sort the non-empty ranges by start; each must begin at or
     * after the end of the one before. */
    st_range *sorted = xmalloc((res.n ? (size_t)res.n : 1) * sizeof(st_range));
    int ns = 0;
    for (int i = 0; i < res.n; i++)
        if (ranges[i].end > ranges[i].begin) sorted[ns++] = ranges[i];
    qsort(sorted, (size_t)ns, sizeof(st_range), range_cmp);
    for (int i = 1; i < ns; i++) {
        if (sorted[i].begin < sorted[i - 1].end) {
            const st_range *a = &sorted[i - 1], *b = &sorted[i];
            drq_errf(err,
                     "%s: tensors '%s' and '%s' have overlapping data ranges [%" PRIu64 ", %" PRIu64 ") and [%" PRIu64
                     ", %" PRIu64 ")",
                     path, res.t[a->idx].name, res.t[b->idx].name, a->begin, a->end, b->begin, b->end);
            free(sorted);
            goto done;
        }
    }
    free(sorted);

    for (int i = 0; i < res.n; i++)
        if (read_data(f, path, data_start, &ranges[i], &res.t[i], err)) goto done;
    rc = 0;

done:
    if (rc == 0) {
        *out = res;
    } else {
        st_free(&res);
    }
    free(ranges);
    free(hdr);
    json_decref(root);
    fclose(f);
    return rc;
}

int st_save(const char *path, const st_out *ts, int n, drq_err *err) {
    if (n < 0 || (n > 0 && !ts)) return drq_errf(err, "%s: st_save: bad tensor list", path);
    json_t *root = json_object();
    uint64_t off = 0;
    char *hdr = NULL, *tmp = NULL;
    FILE *f = NULL;
    int rc = -1;
    for (int i = 0; i < n; i++) {
        const st_out *o = &ts[i];
        if (!o->name) {
            drq_errf(err, "%s: tensor #%d has no name", path, i);
            goto done;
        }
        if (!strcmp(o->name, "__metadata__")) {
            drq_errf(err, "%s: tensor name '__metadata__' is reserved", path);
            goto done;
        }
        if (o->ndim < 0 || o->ndim > ST_MAX_DIMS) {
            drq_errf(err, "%s: tensor '%s': %d dims (0..%d supported)", path, o->name, o->ndim, ST_MAX_DIMS);
            goto done;
        }
        uint64_t numel = 1;
        int zero = 0;
        for (int d = 0; d < o->ndim; d++) {
            if (o->shape[d] < 0) {
                drq_errf(err, "%s: tensor '%s': negative dim %" PRId64, path, o->name, o->shape[d]);
                goto done;
            }
        }
        if (shape_product(o->ndim, o->shape, &numel, &zero)) {
            drq_errf(err, "%s: tensor '%s': too many elements", path, o->name);
            goto done;
        }
        if (zero) numel = 0;
        if (numel * 4 > ST_MAX_DATA - off) {
            drq_errf(err, "%s: tensor '%s': the data section would pass %" PRIu64 " bytes", path, o->name,
                     ST_MAX_DATA);
            goto done;
        }
        if (numel && !o->data) {
            drq_errf(err, "%s: tensor '%s': no data", path, o->name);
            goto done;
        }
        if (json_object_get(root, o->name)) {
            drq_errf(err, "%s: duplicate tensor name '%s'", path, o->name);
            goto done;
        }
        json_t *shape = json_array();
        for (int d = 0; d < o->ndim; d++) json_array_append_new(shape, json_integer((json_int_t)o->shape[d]));
        json_t *ent = json_pack("{s:s, s:o, s:[I,I]}", "dtype", "F32", "shape", shape, "data_offsets",
                                (json_int_t)off, (json_int_t)(off + numel * 4));
        if (!ent || json_object_set_new(root, o->name, ent) != 0) {
            drq_errf(err, "%s: tensor '%s': cannot encode the header entry (name not UTF-8?)", path, o->name);
            goto done;
        }
        off += numel * 4;
    }
    hdr = json_dumps(root, JSON_COMPACT);
    if (!hdr) {
        drq_errf(err, "%s: cannot encode the header", path);
        goto done;
    }
    size_t hl = strlen(hdr), padded = (hl + 7) & ~(size_t)7;

    size_t pl = strlen(path);
    tmp = xmalloc(pl + 16);
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmpXXXXXX", 11);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        drq_errf(err, "%s: cannot create a temporary file: %s", path, strerror(errno));
        free(tmp);
        tmp = NULL;
        goto done;
    }
    (void)fchmod(fd, 0644);
    f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        drq_errf(err, "%s: fdopen: %s", path, strerror(errno));
        goto done;
    }
    unsigned char lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(lb, 1, 8, f) == 8 && fwrite(hdr, 1, hl, f) == hl;
    for (size_t i = hl; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
    for (int i = 0; ok && i < n; i++) {
        uint64_t numel = 0;
        int zero = 1;
        shape_product(ts[i].ndim, ts[i].shape, &numel, &zero); /* checked above */
        if (numel && !zero) ok = fwrite(ts[i].data, sizeof(float), (size_t)numel, f) == (size_t)numel;
    }
    if (ok) ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (fclose(f) != 0) ok = 0;
    f = NULL;
    if (!ok) {
        drq_errf(err, "%s: write failed: %s", path, strerror(errno));
        goto done;
    }
    if (rename(tmp, path) != 0) {
        drq_errf(err, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        goto done;
    }
    rc = 0;

done:
    if (rc != 0 && tmp) unlink(tmp);
    free(tmp);
    free(hdr);
    json_decref(root);
    return rc;
}
