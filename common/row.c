/* row.c — see row.h. */
#include "row.h"

#include <assert.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "images.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "drq's packed row format assumes a little-endian host"
#endif

#define NAME_(n, k) #n,
const char *const drq_row_columns[] = {DRQ_ROW_COLUMNS(NAME_, NAME_)};
#undef NAME_
const int drq_row_ncolumns = (int)(sizeof drq_row_columns / sizeof drq_row_columns[0]);
_Static_assert(sizeof drq_row_columns / sizeof drq_row_columns[0] == DRQ_ROW_NCOLUMNS, "one name per column");

/* Pointers into one row, generated from DRQ_ROW_COLUMNS: the DBL columns and
 * the I32 columns, each in column order. */
#define DBLP_DBL(n) &r->n,
#define I32P_I32(n) &r->n,
#define DBLP_KEY_I64(n)
#define DBLP_KEY_STR(n)
#define DBLP_I32(n)
#define DBLP_I64(n)
#define DBLP_STR(n)
#define DBLP_JSON(n)
#define I32P_KEY_I64(n)
#define I32P_KEY_STR(n)
#define I32P_DBL(n)
#define I32P_I64(n)
#define I32P_STR(n)
#define I32P_JSON(n)
#define DBL_PTR_(n, k) DBLP_##k(n)
#define I32_PTR_(n, k) I32P_##k(n)
#define NDBL DRQ_ROW_NDBL
#define NINT DRQ_ROW_NI32
static double *dbl_fields(drq_row *r, double *out[NDBL]) {
    double *p[NDBL] = {DRQ_ROW_COLUMNS(DBL_PTR_, DBL_PTR_)};
    memcpy(out, p, sizeof p);
    return out[0];
}
static void int_fields(drq_row *r, int32_t *out[NINT]) {
    int32_t *p[NINT] = {DRQ_ROW_COLUMNS(I32_PTR_, I32_PTR_)};
    memcpy(out, p, sizeof p);
}

_Static_assert(DRQ_COL_success_step - DRQ_COL_label + 1 == NINT, "the I32 columns are contiguous");
_Static_assert(DRQ_COL_seconds - DRQ_COL_delta_l2 + 1 == NDBL, "the DBL columns are contiguous");

void drq_row_init(drq_row *r) {
    memset(r, 0, sizeof *r);
    double *d[NDBL];
    int32_t *i[NINT];
    dbl_fields(r, d);
    int_fields(r, i);
    for (int k = 0; k < NDBL; k++) *d[k] = NAN;
    for (int k = 0; k < NINT; k++) *i[k] = DRQ_NA;
    r->unet_evals = 0;
}

void drq_rows_free(drq_row *rows, int64_t n) {
    if (!rows) return;
    for (int64_t i = 0; i < n; i++) {
        free(rows[i].extra);
        drq_row_images_free(rows[i].images);
    }
    free(rows);
}

/* ---- packing ---------------------------------------------------------- */

typedef struct {
    unsigned char *p;
    size_t n, cap;
} wbuf;

static void put(wbuf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        while (b->n + n > b->cap) b->cap = b->cap ? b->cap * 2 : 1024;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put_str16(wbuf *b, const char *s) {
    size_t n = s ? strlen(s) : 0;
    assert(n < 65536);
    uint16_t l = (uint16_t)n;
    put(b, &l, 2);
    put(b, s, n);
}

void *drq_rows_pack(const drq_row *rows, int64_t n, size_t *len) {
    wbuf b = {0};
    for (int64_t k = 0; k < n; k++) {
        drq_row *r = (drq_row *)&rows[k]; /* dbl_fields takes non-const; we only read */
        int64_t i64[4] = {r->sweep, r->seed, r->image, r->unet_evals};
        put(&b, i64, sizeof i64);
        int32_t *ip[NINT];
        int_fields(r, ip);
        for (int i = 0; i < NINT; i++) put(&b, ip[i], 4);
        double *dp[NDBL];
        dbl_fields(r, dp);
        for (int i = 0; i < NDBL; i++) put(&b, dp[i], 8);
        put_str16(&b, r->purifier);
        put_str16(&b, r->attack);
        put_str16(&b, r->device);
        put_str16(&b, r->worker);
        uint32_t el = r->extra ? (uint32_t)strlen(r->extra) : 0;
        put(&b, &el, 4);
        if (el) put(&b, r->extra, el);
    }
    *len = b.n;
    if (!b.p) b.p = xmalloc(1);
    return b.p;
}

typedef struct {
    const unsigned char *p;
    size_t n, off;
} rbuf;

static int get(rbuf *b, void *dst, size_t n) {
    if (b->n - b->off < n) return -1;
    memcpy(dst, b->p + b->off, n);
    b->off += n;
    return 0;
}
/* Reads a u16-length string into dst[cap]; rejects over-long strings and NULs. */
static int get_str16(rbuf *b, char *dst, size_t cap) {
    uint16_t l;
    if (get(b, &l, 2)) return -1;
    if (l >= cap || b->n - b->off < l) return -1;
    if (memchr(b->p + b->off, 0, l)) return -1;
    memcpy(dst, b->p + b->off, l);
    dst[l] = 0;
    b->off += l;
    return 0;
}

int drq_rows_unpack(const void *buf, size_t len, int64_t expect, drq_row **rows, int64_t *n, drq_err *err) {
    rbuf b = {buf, len, 0};
    int64_t cap = expect >= 0 ? expect : 16, cnt = 0;
    /* each row takes at least 4 int64, the int32 and double metrics, 4 string
     * lengths and the extra's length */
    const size_t min_row = 4 * 8 + NINT * 4 + NDBL * 8 + 4 * 2 + 4;
    if (expect >= 0 && (uint64_t)expect > len / min_row + 1) {
        return drq_errf(err, "rows: %lld rows announced but only %zu bytes", (long long)expect, len);
    }
    drq_row *out = xcalloc((size_t)(cap ? cap : 1), sizeof *out);
    while (b.off < b.n) {
        if (expect >= 0 && cnt >= expect) {
            drq_errf(err, "rows: trailing bytes after %lld rows", (long long)expect);
            goto fail;
        }
        if (cnt == cap) {
            cap *= 2;
            out = xrealloc(out, (size_t)cap * sizeof *out);
        }
        drq_row *r = &out[cnt];
        memset(r, 0, sizeof *r);
        cnt++;
        int64_t i64[4];
        int32_t *ip[NINT];
        double *dp[NDBL];
        int_fields(r, ip);
        dbl_fields(r, dp);
        if (get(&b, i64, sizeof i64)) goto trunc;
        r->sweep = i64[0];
        r->seed = i64[1];
        r->image = i64[2];
        r->unet_evals = i64[3];
        for (int i = 0; i < NINT; i++)
            if (get(&b, ip[i], 4)) goto trunc;
        for (int i = 0; i < NDBL; i++)
            if (get(&b, dp[i], 8)) goto trunc;
        if (get_str16(&b, r->purifier, sizeof r->purifier) || get_str16(&b, r->attack, sizeof r->attack) ||
            get_str16(&b, r->device, sizeof r->device) || get_str16(&b, r->worker, sizeof r->worker)) {
            drq_errf(err, "rows: row %lld: bad or over-long string field", (long long)(cnt - 1));
            goto fail;
        }
        uint32_t el;
        if (get(&b, &el, 4)) goto trunc;
        if (el) {
            if (el > b.n - b.off) goto trunc;
            const char *s = (const char *)b.p + b.off;
            if (memchr(s, 0, el) || s[0] != '{' || s[el - 1] != '}') {
                drq_errf(err, "rows: row %lld: extra is not a JSON object", (long long)(cnt - 1));
                goto fail;
            }
            r->extra = xmalloc(el + 1);
            memcpy(r->extra, s, el);
            r->extra[el] = 0;
            b.off += el;
        }
    }
    if (expect >= 0 && cnt != expect) {
        drq_errf(err, "rows: expected %lld rows, got %lld", (long long)expect, (long long)cnt);
        goto fail;
    }
    *rows = out;
    *n = cnt;
    return 0;
trunc:
    drq_errf(err, "rows: truncated in row %lld", (long long)(cnt - 1));
fail:
    drq_rows_free(out, cnt);
    return -1;
}

/* ---- text export -------------------------------------------------------- */

void drq_csv_str(FILE *f, const char *s) {
    if (!s || !*s) return;
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}
static void csv_int(FILE *f, int32_t v) {
    if (v != DRQ_NA) fprintf(f, "%d", v);
}
static void csv_dbl(FILE *f, double v) {
    if (!isnan(v)) fprintf(f, "%.17g", v);
}

void drq_row_csv_header(FILE *f) {
    for (int i = 0; i < drq_row_ncolumns; i++) fprintf(f, "%s%s", i ? "," : "", drq_row_columns[i]);
    fputc('\n', f);
}

void drq_row_csv(FILE *f, const drq_row *rc) {
    drq_row *r = (drq_row *)rc;
    fprintf(f, "%lld,", (long long)r->sweep);
    drq_csv_str(f, r->purifier);
    fputc(',', f);
    drq_csv_str(f, r->attack);
    fprintf(f, ",%lld,%lld", (long long)r->seed, (long long)r->image);
    int32_t *ip[NINT];
    double *dp[NDBL];
    int_fields(r, ip);
    dbl_fields(r, dp);
    for (int i = 0; i < NINT; i++) {
        fputc(',', f);
        csv_int(f, *ip[i]);
    }
    for (int i = 0; i < NDBL; i++) {
        fputc(',', f);
        csv_dbl(f, *dp[i]);
    }
    fprintf(f, ",%lld,", (long long)r->unet_evals);
    drq_csv_str(f, r->device);
    fputc(',', f);
    drq_csv_str(f, r->worker);
    fputc(',', f);
    drq_csv_str(f, r->extra);
    fputc('\n', f);
}

void drq_row_jsonl(FILE *f, const drq_row *rc) {
    drq_row *r = (drq_row *)rc;
    json_t *o = json_object();
    json_object_set_new(o, "sweep", json_integer(r->sweep));
    json_object_set_new(o, "purifier", json_string(r->purifier));
    json_object_set_new(o, "attack", json_string(r->attack));
    json_object_set_new(o, "seed", json_integer(r->seed));
    json_object_set_new(o, "image", json_integer(r->image));
    int32_t *ip[NINT];
    double *dp[NDBL];
    int_fields(r, ip);
    dbl_fields(r, dp);
    for (int i = 0; i < NINT; i++)
        json_object_set_new(o, drq_row_columns[DRQ_COL_label + i], *ip[i] == DRQ_NA ? json_null() : json_integer(*ip[i]));
    for (int i = 0; i < NDBL; i++)
        json_object_set_new(o, drq_row_columns[DRQ_COL_delta_l2 + i], isnan(*dp[i]) ? json_null() : json_real(*dp[i]));
    json_object_set_new(o, "unet_evals", json_integer(r->unet_evals));
    json_object_set_new(o, "device", json_string(r->device));
    json_object_set_new(o, "worker", json_string(r->worker));
    json_t *extra = r->extra ? json_loads(r->extra, 0, NULL) : NULL;
    if (r->extra && !extra) extra = json_string(r->extra); /* keep unparsable text visible */
    json_object_set_new(o, "extra", extra ? extra : json_null());
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
    fputs(s, f);
    fputc('\n', f);
    free(s);
    json_decref(o);
}
