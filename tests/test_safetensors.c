/* test_safetensors.c — safetensors reader/writer: roundtrip, F16/BF16
 * conversion, every dtype of the format (F64, FP8, integers, BOOL, packed
 * F4/F6), what a model accepts (ignored tensors in any dtype, needed ones
 * floating point only), and one malformed file per kind of damage, each of
 * which must give an error naming the file, the tensor and the reason. */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/safetensors.h"
#include "common/util.h"
#include "kernels/tensor.h"
#include "tests/check.h"
#include "worker/models/models.h"

static char g_dir[256];

static const char *tpath(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) DIE("cannot write %s", path);
    if (n && fwrite(p, 1, n, f) != n) DIE("short write %s", path);
    fclose(f);
}

/* A safetensors file with a given header text and DATA_LEN bytes of data
 * (filled with DATA, or a counter pattern when DATA is NULL). */
static void write_st(const char *path, const char *header, const void *data, size_t data_len) {
    size_t hl = strlen(header);
    size_t n = 8 + hl + data_len;
    unsigned char *buf = xmalloc(n);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) buf[8 + hl + i] = data ? ((const unsigned char *)data)[i] : (unsigned char)i;
    write_bytes(path, buf, n);
    free(buf);
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* Loads PATH, expects failure with all the needles (and the path) in the message. */
static void expect_fail(const char *path, const char *n1, const char *n2) {
    st_file f = {7, (st_tensor *)&f};
    drq_err err = {{0}};
    int rc = st_load(path, &f, &err);
    CHECK_MSG(rc == -1, "%s: expected failure, got %d", path, rc);
    printf("  error: %s\n", err.msg);
    CHECK_MSG(f.n == 0 && f.t == NULL, "n %d, t %p (want 0, NULL)", (int)f.n, (void *)f.t);
    CHECK_CONTAINS(err.msg, path);
    if (n1) CHECK_CONTAINS(err.msg, n1);
    if (n2) CHECK_CONTAINS(err.msg, n2);
    if (rc == 0) st_free(&f);
}

static void bad(const char *file, const char *header, size_t data_len, const char *n1, const char *n2) {
    const char *p = tpath(file);
    write_st(p, header, NULL, data_len);
    expect_fail(p, n1, n2);
}

static void test_roundtrip(void) {
    float a[24], v[7], big[24], s = 3.25f;
    for (int i = 0; i < 24; i++) a[i] = (float)i * 0.5f - 3.0f, big[i] = -(float)i / 7.0f;
    for (int i = 0; i < 7; i++) v[i] = (float)i * 1e-30f;
    v[3] = INFINITY;
    v[4] = -0.0f;
    st_out outs[] = {
        {"zeta.weight", 3, {2, 3, 4}, a},
        {"scalar", 0, {0}, &s},
        {"empty", 2, {0, 5}, NULL},
        {"vec", 1, {7}, v},
        {"alpha.big", 8, {1, 2, 1, 2, 1, 2, 1, 3}, big},
        {"empty_again", 1, {0}, NULL},
    };
    int n = (int)(sizeof outs / sizeof outs[0]);
    const char *p = tpath("rt.safetensors");
    drq_err err = {{0}};
    CHECK_EQ_INT(st_save(p, outs, n, &err), 0);
    /* overwriting goes through the same tmp + rename */
    CHECK_EQ_INT(st_save(p, outs, n, &err), 0);

    st_file f;
    int rc = st_load(p, &f, &err);
    CHECK_MSG(rc == 0, "load: %s", err.msg);
    if (rc) return;
    CHECK_EQ_INT(f.n, n);
    for (int i = 0; i < n && i < f.n; i++) {
        const st_tensor *t = &f.t[i];
        CHECK_EQ_STR(t->name, outs[i].name); /* header order = given order */
        CHECK_EQ_INT(t->dtype, ST_F32);
        CHECK_EQ_INT(t->ndim, outs[i].ndim);
        CHECK_MSG(t->data != NULL, "%s: %p", "t->data != NULL", (void *)(t->data));
        CHECK_EQ_INT(t->used, 0);
        size_t numel = 1;
        for (int d = 0; d < outs[i].ndim; d++) {
            CHECK_EQ_INT(t->shape[d], outs[i].shape[d]);
            numel *= (size_t)outs[i].shape[d];
        }
        CHECK_EQ_INT(t->numel, numel);
        int same = 1;
        for (size_t k = 0; k < numel && k < t->numel; k++) same &= same_bits(t->data[k], outs[i].data[k]);
        CHECK_MSG(same, "tensor %s data differs", t->name);
    }
    CHECK_EQ_INT(st_find(&f, "vec"), &f.t[3]);
    CHECK_MSG(st_find(&f, "nope") == NULL, "%s: %p", "st_find(&f, \"nope\") == NULL", (void *)(st_find(&f, "nope")));
    CHECK_MSG(st_find(&f, NULL) == NULL, "%s: %p", "st_find(&f, NULL) == NULL", (void *)(st_find(&f, NULL)));
    st_tensor *m = st_find_mut(&f, "scalar");
    CHECK_EQ_INT(m, &f.t[1]);
    if (m) {
        CHECK_EQ_INT(m->numel, 1);
        CHECK_CMP_DBL(m->data[0], ==, 3.25f);
        m->used = 1;
        CHECK_EQ_INT(f.t[1].used, 1);
    }
    st_free(&f);
    CHECK_MSG(f.n == 0 && f.t == NULL, "n %d, t %p (want 0, NULL)", (int)f.n, (void *)f.t);
    st_free(&f); /* twice is harmless */

    /* layout: header length multiple of 8, padded with spaces, offsets contiguous */
    size_t len;
    char *raw = read_file_all(p, &len, &err);
    CHECK_MSG(raw != NULL, "%s: %p", "raw != NULL", (void *)(raw));
    if (raw) {
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) hl = (hl << 8) | (unsigned char)raw[i];
        CHECK_EQ_INT(hl % 8, 0);
        CHECK_EQ_INT(len, 8 + hl + (24 + 1 + 7 + 24) * 4);
        CHECK_EQ_INT(raw[8], '{');
        size_t last = 8 + hl - 1;
        while (raw[last] == ' ') last--;
        CHECK_EQ_INT(raw[last], '}');
        CHECK_MSG(memchr(raw + 8, '\n', hl) == NULL, "%s: %p", "memchr(raw + 8, '\\n', hl) == NULL", (void *)(memchr(raw + 8, '\n', hl)));
        raw[8 + hl] = 0;
        CHECK_CONTAINS(raw + 8, "\"zeta.weight\":{\"dtype\":\"F32\",\"shape\":[2,3,4],\"data_offsets\":[0,96]}");
        CHECK_CONTAINS(raw + 8, "\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[96,100]}");
        CHECK_CONTAINS(raw + 8, "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[100,100]}");
        CHECK_CONTAINS(raw + 8, "\"vec\":{\"dtype\":\"F32\",\"shape\":[7],\"data_offsets\":[100,128]}");
        free(raw);
    }

    /* no temporary file left behind */
    DIR *d = opendir(g_dir);
    int tmps = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strstr(de->d_name, ".tmp")) tmps++;
    if (d) closedir(d);
    CHECK_EQ_INT(tmps, 0);

    /* an empty file list is a valid file */
    p = tpath("none.safetensors");
    CHECK_EQ_INT(st_save(p, NULL, 0, &err), 0);
    rc = st_load(p, &f, &err);
    CHECK_MSG(rc == 0, "load empty: %s", err.msg);
    CHECK_EQ_INT(f.n, 0);
    st_free(&f);
}

static void test_save_errors(void) {
    float x[2] = {1, 2};
    drq_err err = {{0}};
    st_out dup[] = {{"a", 1, {2}, x}, {"a", 1, {2}, x}};
    const char *p = tpath("dup_out.safetensors");
    CHECK_EQ_INT(st_save(p, dup, 2, &err), -1);
    CHECK_CONTAINS(err.msg, "duplicate");
    CHECK_CONTAINS(err.msg, "'a'");
    CHECK_CMP_INT(access(p, F_OK), !=, 0);
    st_out noname[] = {{NULL, 1, {2}, x}};
    CHECK_EQ_INT(st_save(p, noname, 1, &err), -1);
    CHECK_CONTAINS(err.msg, "no name");
    st_out neg[] = {{"neg", 2, {2, -1}, x}};
    CHECK_EQ_INT(st_save(p, neg, 1, &err), -1);
    CHECK_CONTAINS(err.msg, "'neg'");
    st_out nodata[] = {{"nodata", 1, {2}, NULL}};
    CHECK_EQ_INT(st_save(p, nodata, 1, &err), -1);
    CHECK_CONTAINS(err.msg, "'nodata'");
    st_out dims[] = {{"dims", 9, {1}, x}};
    CHECK_EQ_INT(st_save(p, dims, 1, &err), -1);
    CHECK_CONTAINS(err.msg, "'dims'");
    st_out ok[] = {{"ok", 1, {2}, x}};
    CHECK_EQ_INT(st_save(tpath("no/such/dir.safetensors"), ok, 1, &err), -1);
    CHECK_CONTAINS(err.msg, "no/such/dir.safetensors");

    /* issue 10: sizes are multiplied only below the limits.  An empty tensor
     * whose other dims multiply past 2^48 is refused like a full one ... */
    st_out zero[] = {{"zero", 3, {0, INT64_C(1) << 40, INT64_C(1) << 40}, x}};
    CHECK_EQ_INT(st_save(p, zero, 1, &err), -1);
    CHECK_CONTAINS(err.msg, "tensor 'zero': too many elements");
    CHECK_CMP_INT(access(p, F_OK), !=, 0);
    /* ... and offsets stop before they pass what a JSON integer holds: 8192
     * tensors of 2^48 floats make 2^63 bytes (refused before anything is
     * written, so the data pointer is never read) */
    enum { NBIG = 8193 };
    st_out *big = xcalloc(NBIG, sizeof *big);
    char(*names)[16] = xcalloc(NBIG, sizeof *names);
    for (int i = 0; i < NBIG; i++) {
        snprintf(names[i], sizeof names[i], "w%d", i);
        big[i] = (st_out){names[i], 2, {INT64_C(1) << 24, INT64_C(1) << 24}, x};
    }
    CHECK_EQ_INT(st_save(p, big, NBIG, &err), -1);
    CHECK_CONTAINS(err.msg, "tensor 'w8191': the data section would pass 9223372036854775807 bytes");
    CHECK_CMP_INT(access(p, F_OK), !=, 0);
    free(big);
    free(names);
}

static void test_f16_bf16(void) {
    /* F16 bit patterns and their exact values */
    static const uint16_t h[] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x0400, 0x7C00,
                                 0xFC00, 0x7E00, 0x8000, 0x3555, 0x8001, 0x0000, 0x3800};
    const float hv[] = {1.0f, -2.0f, 65504.0f, 5.9604644775390625e-08f, 6.097555160522461e-05f,
                        6.103515625e-05f, INFINITY, -INFINITY, NAN, -0.0f, 0.333251953125f,
                        -5.9604644775390625e-08f, 0.0f, 0.5f};
    enum { NH = sizeof h / sizeof h[0] };
    /* BF16 */
    static const uint16_t b[] = {0x3F80, 0xC040, 0x7F80, 0xFF80, 0x7FC0, 0x0001, 0x4049, 0x8000, 0x3E20};
    const float bv[] = {1.0f, -3.0f, INFINITY, -INFINITY, NAN, 9.183549615799121e-41f, 3.140625f, -0.0f,
                        0.15625f};
    enum { NB = sizeof b / sizeof b[0] };
    float f32[3] = {1.5f, -0.25f, 1e30f};

    unsigned char data[NH * 2 + NB * 2 + 12];
    size_t o = 0;
    for (int i = 0; i < NH; i++) data[o++] = (unsigned char)(h[i] & 0xff), data[o++] = (unsigned char)(h[i] >> 8);
    for (int i = 0; i < NB; i++) data[o++] = (unsigned char)(b[i] & 0xff), data[o++] = (unsigned char)(b[i] >> 8);
    memcpy(data + o, f32, 12);
    char header[512];
    snprintf(header, sizeof header,
             "{\"__metadata__\":{\"format\":\"pt\"},"
             "\"half\":{\"dtype\":\"F16\",\"shape\":[%d],\"data_offsets\":[0,%d]},"
             "\"brain\":{\"dtype\":\"BF16\",\"shape\":[%d,1],\"data_offsets\":[%d,%d]},"
             "\"single\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[%d,%d]},"
             "\"nothing\":{\"dtype\":\"BF16\",\"shape\":[4,0],\"data_offsets\":[4,4]}}   ",
             NH, NH * 2, NB, NH * 2, NH * 2 + NB * 2, NH * 2 + NB * 2, NH * 2 + NB * 2 + 12);
    const char *p = tpath("mixed.safetensors");
    write_st(p, header, data, sizeof data);

    st_file f;
    drq_err err = {{0}};
    int rc = st_load(p, &f, &err);
    CHECK_MSG(rc == 0, "mixed: %s", err.msg);
    if (rc) return;
    CHECK_EQ_INT(f.n, 4);
    const st_tensor *th = st_find(&f, "half"), *tb = st_find(&f, "brain"), *ts = st_find(&f, "single"),
                    *tn = st_find(&f, "nothing");
    CHECK_MSG(st_find(&f, "__metadata__") == NULL, "%s: %p", "st_find(&f, \"__metadata__\") == NULL", (void *)(st_find(&f, "__metadata__")));
    CHECK_MSG(th && tb && ts && tn, "half %p, brain %p, single %p, nothing %p", (void *)th, (void *)tb, (void *)ts,
              (void *)tn);
    if (!(th && tb && ts && tn)) return;
    CHECK_EQ_INT(th->dtype, ST_F16);
    CHECK_EQ_INT(tb->dtype, ST_BF16);
    CHECK_EQ_INT(tb->ndim, 2);
    CHECK_EQ_INT(tn->numel, 0);
    CHECK_MSG(tn->data != NULL, "%s: %p", "tn->data != NULL", (void *)(tn->data));
    for (int i = 0; i < NH; i++) {
        float got = th->data[i];
        if (isnan(hv[i]))
            CHECK_MSG(isnan(got), "F16 0x%04x: %g, expected nan", h[i], got);
        else
            CHECK_MSG(same_bits(got, hv[i]), "F16 0x%04x: %.9g, expected %.9g", h[i], got, hv[i]);
    }
    for (int i = 0; i < NB; i++) {
        float got = tb->data[i];
        if (isnan(bv[i]))
            CHECK_MSG(isnan(got), "BF16 0x%04x: %g, expected nan", b[i], got);
        else
            CHECK_MSG(same_bits(got, bv[i]), "BF16 0x%04x: %.9g, expected %.9g", b[i], got, bv[i]);
    }
    for (int i = 0; i < 3; i++) CHECK(same_bits(ts->data[i], f32[i]));
    st_free(&f);
}

/* Little-endian bytes of one value of dtype DT from double V into out; its size. */
static size_t put_val(unsigned char *out, const char *dt, double v) {
    if (!strcmp(dt, "F32")) { float x = (float)v; memcpy(out, &x, 4); return 4; }
    if (!strcmp(dt, "F64")) { memcpy(out, &v, 8); return 8; }
    if (!strcmp(dt, "I64")) { int64_t x = (int64_t)v; memcpy(out, &x, 8); return 8; }
    if (!strcmp(dt, "U64")) { uint64_t x = (uint64_t)v; memcpy(out, &x, 8); return 8; }
    if (!strcmp(dt, "I32")) { int32_t x = (int32_t)v; memcpy(out, &x, 4); return 4; }
    if (!strcmp(dt, "U32")) { uint32_t x = (uint32_t)v; memcpy(out, &x, 4); return 4; }
    if (!strcmp(dt, "I16")) { int16_t x = (int16_t)v; memcpy(out, &x, 2); return 2; }
    if (!strcmp(dt, "U16")) { uint16_t x = (uint16_t)v; memcpy(out, &x, 2); return 2; }
    if (!strcmp(dt, "I8")) { int8_t x = (int8_t)v; memcpy(out, &x, 1); return 1; }
    if (!strcmp(dt, "U8") || !strcmp(dt, "BOOL")) { out[0] = (unsigned char)v; return 1; }
    DIE("put_val: %s", dt);
}

/* Every dtype of the format in one file, each tensor converted as documented. */
static void test_all_dtypes(void) {
    static const struct {
        const char *name, *dt;
        int n;
        double v[4];
    } num[] = {
        {"f64", "F64", 4, {0.1, -1e300, 1e-50, 3.0}},  /* rounded, overflow to -inf, underflow to 0 */
        {"i64", "I64", 3, {-5, 1000, 16777217}},      /* 2^24+1 rounds to 2^24 */
        {"u64", "U64", 2, {0, 123456}},
        {"i32", "I32", 2, {-2147483648.0, 7}},
        {"u32", "U32", 1, {4294967295.0}},
        {"i16", "I16", 2, {-32768, 3}},
        {"u16", "U16", 1, {65535}},
        {"i8", "I8", 2, {-128, 127}},
        {"u8", "U8", 2, {0, 255}},
        {"bool", "BOOL", 3, {0, 1, 1}},
    };
    enum { NN = sizeof num / sizeof num[0] };
    /* FP8: bit patterns and their values */
    static const uint8_t e4m3[] = {0x38, 0xB8, 0x7E, 0x7F, 0x01, 0x08, 0x00, 0x80};
    const float e4m3v[] = {1.0f, -1.0f, 448.0f, NAN, 0.001953125f, 0.015625f, 0.0f, -0.0f};
    static const uint8_t e5m2[] = {0x3C, 0xC0, 0x7B, 0x7C, 0x01, 0x7E};
    const float e5m2v[] = {1.0f, -2.0f, 57344.0f, INFINITY, 1.52587890625e-05f, NAN};
    static const uint8_t e8m0[] = {127, 128, 0, 0xff};
    const float e8m0v[] = {1.0f, 2.0f, 5.877471754111438e-39f, NAN};

    unsigned char data[512];
    char header[4096];
    size_t o = 0, hl = 0;
    hl += (size_t)snprintf(header + hl, sizeof header - hl, "{");
    for (int i = 0; i < NN; i++) {
        size_t b = o;
        for (int k = 0; k < num[i].n; k++) o += put_val(data + o, num[i].dt, num[i].v[k]);
        hl += (size_t)snprintf(header + hl, sizeof header - hl,
                               "\"%s\":{\"dtype\":\"%s\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]},", num[i].name,
                               num[i].dt, num[i].n, b, o);
    }
#define PUT8(nm, DT, arr)                                                                                         \
    do {                                                                                                        \
        size_t b = o;                                                                                           \
        memcpy(data + o, arr, sizeof arr), o += sizeof arr;                                                     \
        hl += (size_t)snprintf(header + hl, sizeof header - hl,                                                 \
                               "\"%s\":{\"dtype\":\"%s\",\"shape\":[%zu],\"data_offsets\":[%zu,%zu]},", nm, DT, \
                               sizeof arr, b, o);                                                               \
    } while (0)
    PUT8("e4m3", "F8_E4M3", e4m3);
    PUT8("e5m2", "F8_E5M2", e5m2);
    PUT8("e8m0", "F8_E8M0", e8m0);
#undef PUT8
    /* packed 6- and 4-bit floats: validated (4 × 6 bits = 3 bytes, 2 × 4 bits = 1 byte), not decoded */
    size_t b6 = o;
    memset(data + o, 0x5a, 4), o += 4;
    hl += (size_t)snprintf(header + hl, sizeof header - hl,
                           "\"f6\":{\"dtype\":\"F6_E2M3\",\"shape\":[4],\"data_offsets\":[%zu,%zu]},"
                           "\"f4\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[%zu,%zu]}}",
                           b6, b6 + 3, b6 + 3, b6 + 4);
    const char *p = tpath("alldtypes.safetensors");
    write_st(p, header, data, o);

    st_file f;
    drq_err err = {{0}};
    int rc = st_load(p, &f, &err);
    CHECK_MSG(rc == 0, "all dtypes: %s", err.msg);
    if (rc) return;
    CHECK_EQ_INT(f.n, NN + 5);
    for (int i = 0; i < NN; i++) {
        const st_tensor *t = st_find(&f, num[i].name);
        CHECK_MSG(t != NULL, "tensor %s", num[i].name);
        if (!t) continue;
        CHECK_EQ_STR(st_dtype_name(t->dtype), num[i].dt);
        CHECK_EQ_INT(t->is_float, !strcmp(num[i].dt, "F64"));
        CHECK_EQ_INT(t->convertible, 1);
        for (int k = 0; k < num[i].n; k++)
            CHECK_MSG(same_bits(t->data[k], (float)num[i].v[k]) || (isinf(t->data[k]) && isinf((float)num[i].v[k])),
                      "%s[%d]: %.9g, expected %.9g", num[i].name, k, t->data[k], (float)num[i].v[k]);
    }
    const st_tensor *t64 = st_find(&f, "f64");
    if (t64) {
        CHECK_EQ_INT(t64->overflow, 1); /* -1e300 */
        CHECK(same_bits(t64->data[0], 0.1f) && isinf(t64->data[1]) && t64->data[1] < 0 && t64->data[2] == 0.0f);
    }
    const struct { const char *nm; const float *v; int n; } f8[] = {
        {"e4m3", e4m3v, sizeof e4m3}, {"e5m2", e5m2v, sizeof e5m2}, {"e8m0", e8m0v, sizeof e8m0}};
    for (int i = 0; i < 3; i++) {
        const st_tensor *t = st_find(&f, f8[i].nm);
        CHECK(t && t->is_float && t->convertible && (int)t->numel == f8[i].n);
        for (int k = 0; t && k < f8[i].n; k++) {
            if (isnan(f8[i].v[k]))
                CHECK_MSG(isnan(t->data[k]), "%s[%d]: %g, expected nan", f8[i].nm, k, t->data[k]);
            else
                CHECK_MSG(same_bits(t->data[k], f8[i].v[k]), "%s[%d]: %.9g, expected %.9g", f8[i].nm, k, t->data[k],
                          f8[i].v[k]);
        }
    }
    const st_tensor *t6 = st_find(&f, "f6"), *t4 = st_find(&f, "f4");
    CHECK(t6 && t6->is_float && !t6->convertible && t6->numel == 4 && t6->data && t6->data[3] == 0.0f);
    CHECK(t4 && t4->is_float && !t4->convertible && t4->numel == 2);
    st_free(&f);
}

/* A typed safetensors file from float data: N tensors NAMES of shapes
 * (ndim, dims) with values DATA, each written in dtype DTS[i]. */
static void write_typed(const char *path, int n, const char *const *names, const int *ndims, const int64_t (*dims)[4],
                        const float *const *data, const char *const *dts) {
    size_t cap = 1 << 16, hl = 0, o = 0, dcap = 0;
    char *header = xmalloc(cap);
    for (int i = 0; i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < ndims[i]; d++) numel *= (size_t)dims[i][d];
        dcap += numel * 8;
    }
    unsigned char *buf = xmalloc(dcap + 1);
    hl += (size_t)snprintf(header + hl, cap - hl, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        size_t numel = 1, b = o;
        for (int d = 0; d < ndims[i]; d++) numel *= (size_t)dims[i][d];
        for (size_t k = 0; k < numel; k++) o += put_val(buf + o, dts[i], data[i][k]);
        hl += (size_t)snprintf(header + hl, cap - hl, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", names[i], dts[i]);
        for (int d = 0; d < ndims[i]; d++)
            hl += (size_t)snprintf(header + hl, cap - hl, "%s%lld", d ? "," : "", (long long)dims[i][d]);
        hl += (size_t)snprintf(header + hl, cap - hl, "],\"data_offsets\":[%zu,%zu]}", b, o);
    }
    hl += (size_t)snprintf(header + hl, cap - hl, "}");
    while (hl % 8) header[hl++] = ' ';
    header[hl] = 0;
    if (hl + 64 > cap) DIE("write_typed: header too long");
    write_st(path, header, buf, o);
    free(header);
    free(buf);
}

/* The WRN fixture rewritten with one tensor's dtype changed (OVERRIDE_NAME →
 * OVERRIDE_DT; all others F32 or ALL_DT), plus an I64 num_batches_tracked per
 * BatchNorm when WITH_NBT; returns the load result and fills err. */
static int wrn_variant(const char *file, const char *all_dt, const char *override_name, const char *override_dt,
                       int with_nbt, float *logits, drq_err *err) {
    st_file src;
    if (st_load("tests/fixtures/wrn_tiny.weights.safetensors", &src, err)) return -1;
    int cap = 2 * src.n, n = 0;
    const char **names = xcalloc((size_t)cap, sizeof *names), **dts = xcalloc((size_t)cap, sizeof *dts);
    int *ndims = xcalloc((size_t)cap, sizeof *ndims);
    int64_t(*dims)[4] = xcalloc((size_t)cap, sizeof *dims);
    const float **data = xcalloc((size_t)cap, sizeof *data);
    char **owned = xcalloc((size_t)cap, sizeof *owned);
    static const float nbt = 196.0f;
    for (int i = 0; i < src.n; i++) {
        const st_tensor *t = &src.t[i];
        names[n] = t->name, ndims[n] = t->ndim, data[n] = t->data;
        for (int d = 0; d < t->ndim; d++) dims[n][d] = t->shape[d];
        dts[n] = override_name && !strcmp(t->name, override_name) ? override_dt : all_dt;
        n++;
        size_t l = strlen(t->name);
        if (with_nbt && l > 13 && !strcmp(t->name + l - 13, ".running_mean")) {
            owned[n] = xmalloc(l + 16);
            snprintf(owned[n], l + 16, "%.*s.num_batches_tracked", (int)(l - 13), t->name);
            names[n] = owned[n], ndims[n] = 0, data[n] = &nbt, dts[n] = "I64";
            n++;
        }
    }
    const char *p = tpath(file);
    write_typed(p, n, names, ndims, (const int64_t(*)[4])dims, data, dts);
    for (int i = 0; i < cap; i++) free(owned[i]);
    free(owned), free(names), free(dts), free(ndims), free(dims), free(data);
    st_free(&src);

    wrn_config wc;
    st_file w;
    if (wrn_config_parse("tests/fixtures/wrn_tiny.json", &wc, err) || st_load(p, &w, err)) return -1;
    wrn *m = wrn_load(&wc, &w, 0, err);
    int rc = m ? 0 : -1;
    if (m && logits) {
        Tensor x = {0}, y = {0};
        tensor_ensure(&x, 2, 3, 8, 8);
        tensor_ensure(&y, 2, 10, 1, 1);
        for (size_t i = 0; i < tensor_numel(&x); i++) x.data[i] = (float)((i * 37) % 101) / 100.0f;
        wrn_forward(m, &x, &y);
        memcpy(logits, y.data, 2 * 10 * sizeof(float));
        tensor_free(&x), tensor_free(&y);
    }
    if (m) wrn_free(m);
    st_free(&w);
    return rc;
}

/* What a model does with the dtypes: tensors it ignores may have any dtype,
 * needed ones must be floating point; F64 is rounded to float32. */
static void test_model_dtypes(void) {
    float ref[20], got[20];
    drq_err err = {{0}};
    int rc = wrn_variant("wrn_f32.safetensors", "F32", NULL, NULL, 0, ref, &err);
    CHECK_MSG(rc == 0, "wrn F32: %s", err.msg);
    /* I64 num_batches_tracked beside every BatchNorm: loads, same logits */
    rc = wrn_variant("wrn_nbt.safetensors", "F32", NULL, NULL, 1, got, &err);
    CHECK_MSG(rc == 0, "wrn with I64 num_batches_tracked: %s", err.msg);
    CHECK(rc == 0 && memcmp(ref, got, sizeof ref) == 0);
    /* F64 everywhere: converted (the values are floats, so exactly), same logits */
    rc = wrn_variant("wrn_f64.safetensors", "F64", NULL, NULL, 1, got, &err);
    CHECK_MSG(rc == 0, "wrn F64: %s", err.msg);
    CHECK(rc == 0 && memcmp(ref, got, sizeof ref) == 0);
    /* a needed tensor as I64, BOOL, U8: refused, naming tensor and dtype */
    static const char *const bad_dt[][2] = {{"fc.bias", "I64"}, {"bn1.running_var", "BOOL"}, {"conv1.weight", "U8"},
                                            {"block1.layer.0.bn1.weight", "I32"}};
    for (int i = 0; i < 4; i++) {
        memset(&err, 0, sizeof err);
        rc = wrn_variant("wrn_bad.safetensors", "F32", bad_dt[i][0], bad_dt[i][1], 1, NULL, &err);
        CHECK_MSG(rc == -1, "wrn with %s as %s loaded", bad_dt[i][0], bad_dt[i][1]);
        printf("  error: %s\n", err.msg);
        char want[128];
        snprintf(want, sizeof want, "tensor '%s' has dtype %s", bad_dt[i][0], bad_dt[i][1]);
        CHECK_CONTAINS(err.msg, want);
    }
}

static void test_malformed(void) {
    /* file shorter than 8 bytes, and empty */
    const char *p = tpath("short.safetensors");
    write_bytes(p, "\x10\0\0\0\0", 5);
    expect_fail(p, "shorter than the 8-byte", NULL);
    p = tpath("empty.safetensors");
    write_bytes(p, "", 0);
    expect_fail(p, "shorter than the 8-byte", NULL);

    /* header length past EOF */
    p = tpath("hlen_eof.safetensors");
    write_bytes(p, "\x40\0\0\0\0\0\0\0{}", 10);
    expect_fail(p, "header length 64", "past the end of the file");
    /* absurd header length */
    p = tpath("hlen_absurd.safetensors");
    write_bytes(p, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
    expect_fail(p, "header length", "absurd");

    /* header not JSON / not an object */
    bad("notjson.safetensors", "{\"w\": {\"dtype\": ", 0, "not valid JSON", NULL);
    bad("garbage.safetensors", "\x01\x02garbage", 0, "not valid JSON", NULL);
    bad("array.safetensors", "[1, 2, 3]", 0, "not a JSON object", NULL);
    bad("nul.safetensors", "{\"w\\u0000x\": 1}", 0, "not valid JSON", NULL);

    /* entry not an object */
    bad("entry.safetensors", "{\"w.entry\": [1, 2]}", 0, "tensor 'w.entry'", "not a JSON object");
    /* dtype: missing, not a string, unsupported */
    bad("nodtype.safetensors", "{\"w.nodtype\": {\"shape\": [2], \"data_offsets\": [0, 8]}}", 8,
        "tensor 'w.nodtype'", "missing \"dtype\"");
    bad("dtypenum.safetensors", "{\"w.dtypenum\": {\"dtype\": 32, \"shape\": [2], \"data_offsets\": [0, 8]}}", 8,
        "tensor 'w.dtypenum'", "\"dtype\" is not a string");
    bad("unknown.safetensors", "{\"steps\": {\"dtype\": \"I128\", \"shape\": [1], \"data_offsets\": [0, 16]}}",
        16, "tensor 'steps'", "unknown dtype \"I128\"");
    bad("lower.safetensors", "{\"w.f64\": {\"dtype\": \"f64\", \"shape\": [1], \"data_offsets\": [0, 8]}}", 8,
        "tensor 'w.f64'", "unknown dtype \"f64\"");
    /* the byte size follows the dtype: I64 [2] is 16 bytes, F4 [3] is not a whole number of bytes */
    bad("i64size.safetensors", "{\"steps\": {\"dtype\": \"I64\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8,
        "tensor 'steps'", "byte size mismatch");
    bad("f4odd.safetensors", "{\"w.f4\": {\"dtype\": \"F4\", \"shape\": [3], \"data_offsets\": [0, 2]}}", 2,
        "tensor 'w.f4'", "whole number of bytes");

    /* shape */
    bad("noshape.safetensors", "{\"w.noshape\": {\"dtype\": \"F32\", \"data_offsets\": [0, 8]}}", 8,
        "tensor 'w.noshape'", "missing \"shape\"");
    bad("shapeobj.safetensors", "{\"w.shapeobj\": {\"dtype\": \"F32\", \"shape\": 2, \"data_offsets\": [0, 8]}}",
        8, "tensor 'w.shapeobj'", "\"shape\" is not an array");
    bad("shapeneg.safetensors",
        "{\"w.shapeneg\": {\"dtype\": \"F32\", \"shape\": [2, -1], \"data_offsets\": [0, 8]}}", 8,
        "tensor 'w.shapeneg'", "shape[1] is not a non-negative integer");
    bad("shapereal.safetensors",
        "{\"w.shapereal\": {\"dtype\": \"F32\", \"shape\": [2.0], \"data_offsets\": [0, 8]}}", 8,
        "tensor 'w.shapereal'", "shape[0] is not a non-negative integer");
    bad("shapestr.safetensors",
        "{\"w.shapestr\": {\"dtype\": \"F32\", \"shape\": [\"2\"], \"data_offsets\": [0, 8]}}", 8,
        "tensor 'w.shapestr'", "shape[0] is not a non-negative integer");
    bad("dims.safetensors",
        "{\"w.dims\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,2], \"data_offsets\": [0, 8]}}", 8,
        "tensor 'w.dims'", "9 dims");
    bad("overflow.safetensors",
        "{\"w.overflow\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 16], \"data_offsets\": [0, "
        "0]}}",
        0, "tensor 'w.overflow'", "overflows");
    bad("overflow2.safetensors",
        "{\"w.overflow2\": {\"dtype\": \"F16\", \"shape\": [9223372036854775807], \"data_offsets\": [0, 0]}}", 0,
        "tensor 'w.overflow2'", "overflows");
    /* issue 10: an empty tensor (a 0 dim) with dims that multiply past the limit */
    bad("overflow3.safetensors",
        "{\"w.overflow3\": {\"dtype\": \"F32\", \"shape\": [0, 9223372036854775807], \"data_offsets\": [0, 0]}}",
        0, "tensor 'w.overflow3'", "shape [0, 9223372036854775807] overflows");
    bad("overflow4.safetensors",
        "{\"w.overflow4\": {\"dtype\": \"F32\", \"shape\": [4294967296, 0, 4294967296], \"data_offsets\": [0, "
        "0]}}",
        0, "tensor 'w.overflow4'", "overflows");

    /* data_offsets */
    bad("nooff.safetensors", "{\"w.nooff\": {\"dtype\": \"F32\", \"shape\": [2]}}", 8, "tensor 'w.nooff'",
        "missing \"data_offsets\"");
    bad("off1.safetensors", "{\"w.off1\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8]}}", 8,
        "tensor 'w.off1'", "\"data_offsets\" is not an array of 2");
    bad("off3.safetensors", "{\"w.off3\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8, 16]}}",
        16, "tensor 'w.off3'", "\"data_offsets\" is not an array of 2");
    bad("offstr.safetensors",
        "{\"w.offstr\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": \"0-8\"}}", 8, "tensor 'w.offstr'",
        "\"data_offsets\" is not an array of 2");
    bad("offneg.safetensors", "{\"w.offneg\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [-8, 0]}}",
        8, "tensor 'w.offneg'", "\"data_offsets\" is not an array of 2");
    bad("offreal.safetensors",
        "{\"w.offreal\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8.0]}}", 8,
        "tensor 'w.offreal'", "\"data_offsets\" is not an array of 2");
    bad("offorder.safetensors",
        "{\"w.offorder\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 0]}}", 8,
        "tensor 'w.offorder'", "begin > end");
    bad("offpast.safetensors",
        "{\"w.offpast\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 12,
        "tensor 'w.offpast'", "past the end of the data section");
    bad("offhuge.safetensors",
        "{\"w.offhuge\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [9223372036854775800, "
        "9223372036854775807]}}",
        8, "tensor 'w.offhuge'", "past the end of the data section");

    /* byte size != numel × dtype size */
    bad("size.safetensors", "{\"w.size\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 12]}}",
        24, "tensor 'w.size'", "byte size mismatch");
    bad("size16.safetensors",
        "{\"w.size16\": {\"dtype\": \"BF16\", \"shape\": [2, 3], \"data_offsets\": [0, 24]}}", 24,
        "tensor 'w.size16'", "needs 12 bytes");
    bad("sizescalar.safetensors",
        "{\"w.sizescalar\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [0, 0]}}", 8,
        "tensor 'w.sizescalar'", "byte size mismatch");

    /* overlapping ranges */
    bad("overlap.safetensors",
        "{\"a.first\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
        " \"b.second\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [24, 32]},"
        " \"c.third\": {\"dtype\": \"F16\", \"shape\": [4], \"data_offsets\": [12, 20]}}",
        32, "tensors 'a.first' and 'c.third'", "overlapping");
    bad("same.safetensors",
        "{\"same.x\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
        " \"same.y\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
        8, "same.x", "overlapping");

    /* duplicate names */
    bad("dupname.safetensors",
        "{\"dup.weight\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
        " \"dup.weight\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
        8, "duplicate", "dup.weight");

    /* a truncated copy of a good file */
    {
        float x[64];
        for (int i = 0; i < 64; i++) x[i] = (float)i;
        st_out o[] = {{"trunc.a", 2, {8, 4}, x}, {"trunc.b", 1, {32}, x + 32}};
        const char *good = tpath("good.safetensors");
        drq_err err = {{0}};
        CHECK_EQ_INT(st_save(good, o, 2, &err), 0);
        size_t len;
        char *raw = read_file_all(good, &len, &err);
        CHECK_MSG(raw != NULL, "%s: %p", "raw != NULL", (void *)(raw));
        if (raw) {
            p = tpath("trunc.safetensors");
            write_bytes(p, raw, len - 4);
            expect_fail(p, "tensor 'trunc.b'", "truncated");
            p = tpath("trunc_header.safetensors");
            write_bytes(p, raw, 40);
            expect_fail(p, "past the end of the file", NULL);
            free(raw);
        }
    }

    /* missing file, directory */
    expect_fail(tpath("does_not_exist.safetensors"), "cannot open", NULL);
    expect_fail(g_dir, "not a regular file", NULL);

    /* things that are fine: zero-element tensors sharing an offset, inside another
     * tensor's range, gaps, extra entry fields, padding whitespace */
    {
        p = tpath("fine.safetensors");
        write_st(p,
                 "{\"e1\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]},"
                 " \"e2\": {\"dtype\": \"F16\", \"shape\": [3, 0], \"data_offsets\": [4, 4]},"
                 " \"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12], \"extra\": 1},"
                 " \"__metadata__\": {\"k\": \"v\"}}    \n  ",
                 NULL, 16);
        st_file f;
        drq_err err = {{0}};
        int rc = st_load(p, &f, &err);
        CHECK_MSG(rc == 0, "fine: %s", err.msg);
        if (rc == 0) {
            CHECK_EQ_INT(f.n, 3);
            const st_tensor *w = st_find(&f, "w");
            CHECK_MSG(w && w->numel == 1, "tensor w %p with %lld elements (want 1)", (void *)w, w ? (long long)w->numel : -1LL);
            if (w) {
                uint32_t bits = 8u | 9u << 8 | 10u << 16 | 11u << 24;
                float want;
                memcpy(&want, &bits, 4);
                CHECK(same_bits(w->data[0], want));
            }
            st_free(&f);
        }
    }
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "%s/drq_st_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_dir)) DIE("mkdtemp failed");
    test_roundtrip();
    test_save_errors();
    test_f16_bf16();
    test_all_dtypes();
    test_model_dtypes();
    test_malformed();

    /* clean up */
    DIR *d = opendir(g_dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        unlink(tpath(de->d_name));
    }
    if (d) closedir(d);
    CHECK_EQ_INT(rmdir(g_dir), 0);
    return CHECK_DONE();
}
