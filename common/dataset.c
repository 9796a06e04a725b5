/* dataset.c — see dataset.h. */
#include "dataset_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define CIFAR_PIX 3072
#define CIFAR_REC (1 + CIFAR_PIX)
#define NUM_CLASSES 10
#define IDX_IMAGES 0x00000803u
#define IDX_LABELS 0x00000801u
#define CHUNK (1 << 16)
/* Deflate expands at most 1032:1 (zlib's documented limit), so a gzip file of
 * S bytes decompresses to fewer than (S + 1) · 1032 bytes. */
#define GZ_MAX_RATIO 1032

/* ---- small helpers ------------------------------------------------------ */

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = xmalloc(a + b + 2);
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

static char *str_cat(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *p = xmalloc(la + lb + 1);
    memcpy(p, a, la);
    memcpy(p + la, b, lb + 1);
    return p;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Checks start/count against total; sets *n to the number of images. */
int dataset_resolve_range(long start, long count, long total, const char *what, long *n, drq_err *err) {
    if (start < 0) return drq_errf(err, "start %ld is negative (%s)", start, what);
    if (count < -1) return drq_errf(err, "count %ld is invalid: use -1 for \"to the end\" (%s)", count, what);
    if (start > total)
        return drq_errf(err, "start %ld is past the end of the %ld images of %s", start, total, what);
    if (count == -1) count = total - start;
    if (count > total - start)
        return drq_errf(err, "start %ld + count %ld exceeds the %ld images of %s", start, count, total, what);
    if (count > INT_MAX) return drq_errf(err, "count %ld is too large (%s)", count, what);
    *n = count;
    return 0;
}

static void to_float(const uint8_t *src, size_t n, float *dst) {
    for (size_t i = 0; i < n; i++) dst[i] = (float)src[i] / 255.0f;
}

/* ---- IDX (plain or gzip, through zlib) ---------------------------------- */

typedef struct {
    gzFile f;
    const char *path;
    uint32_t magic;
    uint32_t dims[3];
    int gz;             /* gzip stream (else a plain file, read directly) */
    uint64_t file_size; /* bytes on disk */
    uint64_t data_max;  /* bytes after the header: exact for a plain file, an upper bound for gzip */
} idx_file;

/* zlib's error text for f ("" if none), without the "path: " zlib puts in front. */
static const char *gz_msg(gzFile f, const char *path) {
    int code = Z_OK;
    const char *m = gzerror(f, &code);
    if (code == Z_OK || !m) return "";
    size_t n = strlen(path);
    if (strncmp(m, path, n) == 0 && m[n] == ':' && m[n + 1] == ' ') m += n + 2;
    return m;
}

/* Reads exactly n bytes into buf (buf NULL: skip them).  Returns the number read. */
static size_t gz_read_n(gzFile f, uint8_t *buf, size_t n, int *ioerr) {
    uint8_t *scratch = buf ? NULL : xmalloc(CHUNK);
    size_t done = 0;
    *ioerr = 0;
    while (done < n) {
        size_t want = n - done;
        if (!buf && want > CHUNK) want = CHUNK;
        if (want > (1u << 30)) want = 1u << 30;
        int r = gzread(f, buf ? buf + done : scratch, (unsigned)want);
        if (r < 0) {
            *ioerr = 1;
            break;
        }
        if (r == 0) break;
        done += (size_t)r;
    }
    free(scratch);
    return done;
}

/* Reads up to n bytes into a buffer that grows with the data actually read,
 * so a header promising more than the file holds cannot force a huge
 * allocation.  *got: bytes read. */
static uint8_t *gz_read_alloc(gzFile f, size_t n, size_t *got, int *ioerr) {
    size_t cap = n < (1u << 20) ? n : (1u << 20), done = 0;
    uint8_t *buf = xmalloc(cap + 1);
    *ioerr = 0;
    while (done < n) {
        if (done == cap) {
            cap = cap * 2 < n ? cap * 2 : n;
            buf = xrealloc(buf, cap + 1);
        }
        size_t r = gz_read_n(f, buf + done, cap - done, ioerr);
        done += r;
        if (*ioerr || done < cap) break;
    }
    *got = done;
    return buf;
}

/* After all promised bytes: the file must end here. */
static int idx_expect_end(idx_file *ix, drq_err *err) {
    uint8_t b[64];
    int r = gzread(ix->f, b, sizeof b);
    if (r < 0) return drq_errf(err, "%s: read error after the data: %s", ix->path, gz_msg(ix->f, ix->path));
    if (r > 0) {
        size_t extra = (size_t)r;
        int e;
        extra += gz_read_n(ix->f, NULL, SIZE_MAX / 2, &e);
        return drq_errf(err, "%s: %zu extra bytes after the data the IDX header promises (not an IDX file of this shape?)",
                        ix->path, extra);
    }
    return 0;
}

static int idx_open(const char *path, uint32_t want_magic, idx_file *ix, drq_err *err) {
    memset(ix, 0, sizeof *ix);
    ix->path = path;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return drq_errf(err, "%s: no such file", path);
    ix->file_size = (uint64_t)st.st_size;
    ix->f = gzopen(path, "rb");
    if (!ix->f) return drq_errf(err, "%s: cannot open: %s", path, strerror(errno ? errno : ENOMEM));
    gzbuffer(ix->f, 1 << 17);
    uint8_t h[16];
    int ndims = want_magic == IDX_IMAGES ? 3 : 1;
    size_t hlen = 4 + 4 * (size_t)ndims;
    int ioerr;
    size_t got = gz_read_n(ix->f, h, 4, &ioerr);
    if (ioerr) return drq_errf(err, "%s: read error (gzip/zlib): %s", path, gz_msg(ix->f, ix->path));
    if (got < 4) return drq_errf(err, "%s: truncated: %zu bytes, shorter than the 4-byte IDX magic", path, got);
    ix->magic = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    if (ix->magic != want_magic) {
        const char *what = want_magic == IDX_IMAGES ? "IDX images (u8, 3 dimensions)" : "IDX labels (u8, 1 dimension)";
        const char *is = ix->magic == IDX_IMAGES ? " (that is an IDX images file)"
                         : ix->magic == IDX_LABELS ? " (that is an IDX labels file)"
                                                   : "";
        return drq_errf(err, "%s: wrong magic 0x%08x%s, expected 0x%08x for %s", path, ix->magic, is,
                        want_magic, what);
    }
    got = gz_read_n(ix->f, h + 4, hlen - 4, &ioerr);
    if (ioerr) return drq_errf(err, "%s: read error (gzip/zlib): %s", path, gz_msg(ix->f, ix->path));
    if (got < hlen - 4)
        return drq_errf(err, "%s: truncated header: %zu of %zu bytes", path, 4 + got, hlen);
    for (int d = 0; d < ndims; d++) {
        const uint8_t *p = h + 4 + 4 * d;
        ix->dims[d] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    }
    if (ix->dims[0] > INT_MAX) return drq_errf(err, "%s: implausible item count %u", path, ix->dims[0]);
    if (ndims == 3 && (ix->dims[1] == 0 || ix->dims[2] == 0 || ix->dims[1] > 65535 || ix->dims[2] > 65535))
        return drq_errf(err, "%s: implausible image size %u×%u", path, ix->dims[1], ix->dims[2]);
    /* gzdirect is reliable once data has been read */
    ix->gz = !gzdirect(ix->f);
    if (!ix->gz)
        ix->data_max = ix->file_size > hlen ? ix->file_size - hlen : 0;
    else if (__builtin_mul_overflow(ix->file_size + 1, (uint64_t)GZ_MAX_RATIO, &ix->data_max))
        ix->data_max = UINT64_MAX;
    return 0;
}

/* Checks the data size the header promises -- the item count (dims[0]) times
 * item_bytes -- against what the file can hold, before anything is allocated
 * for it: a plain file must hold exactly that many bytes, a gzip file at most
 * GZ_MAX_RATIO times its size.  what: "labels" or "images". */
static int idx_check_size(const idx_file *ix, uint64_t item_bytes, const char *what, drq_err *err) {
    uint64_t need;
    char promise[128];
    if (ix->magic == IDX_IMAGES)
        snprintf(promise, sizeof promise, "%u images of %u×%u", ix->dims[0], ix->dims[1], ix->dims[2]);
    else
        snprintf(promise, sizeof promise, "%u %s", ix->dims[0], what);
    if (__builtin_mul_overflow((uint64_t)ix->dims[0], item_bytes, &need))
        return drq_errf(err, "%s: the header promises %s: too large", ix->path, promise);
    if (ix->gz) {
        if (need > ix->data_max)
            return drq_errf(err,
                            "%s: truncated or not an IDX file: the header promises %s (%llu bytes) but a %llu-byte "
                            "gzip file holds at most %llu (deflate expands at most %d:1)",
                            ix->path, promise, (unsigned long long)need, (unsigned long long)ix->file_size,
                            (unsigned long long)ix->data_max, GZ_MAX_RATIO);
        return 0;
    }
    if (need > ix->data_max) {
        if (ix->magic == IDX_IMAGES)
            return drq_errf(err, "%s: truncated: the header promises %s (%llu pixel bytes) but the file ends after %llu",
                            ix->path, promise, (unsigned long long)need, (unsigned long long)ix->data_max);
        return drq_errf(err, "%s: truncated: the header promises %s but the file ends after %llu", ix->path, promise,
                        (unsigned long long)ix->data_max);
    }
    if (need < ix->data_max)
        return drq_errf(err, "%s: %llu extra bytes after the data the IDX header promises (not an IDX file of this shape?)",
                        ix->path, (unsigned long long)(ix->data_max - need));
    return 0;
}

static void idx_close(idx_file *ix) {
    if (ix->f) gzclose(ix->f);
    ix->f = NULL;
}

/* Finds "<dir>/<name>" or "<dir>/<name>.gz" for one of the spellings; NULL if none. */
static char *find_idx(const char *dir, const char *const *names) {
    for (int i = 0; names[i]; i++) {
        char *p = path_join(dir, names[i]);
        if (is_file(p)) return p;
        char *g = str_cat(p, ".gz");
        free(p);
        if (is_file(g)) return g;
        free(g);
    }
    return NULL;
}

/* The labels file that goes with an images file path (NULL: name not recognised). */
static char *labels_for_images(const char *images, char **tried) {
    static const char *const pats[][2] = {{"images-idx3", "labels-idx1"}, {"images.idx3", "labels.idx1"}};
    const char *base = strrchr(images, '/');
    base = base ? base + 1 : images;
    *tried = NULL;
    for (int k = 0; k < 2; k++) {
        const char *at = strstr(base, pats[k][0]);
        if (!at) continue;
        size_t pre = (size_t)(at - images), len = strlen(images);
        char *lab = xmalloc(len + 1);
        memcpy(lab, images, pre);
        memcpy(lab + pre, pats[k][1], strlen(pats[k][1]));
        memcpy(lab + pre + strlen(pats[k][1]), at + strlen(pats[k][0]), len - pre - strlen(pats[k][0]) + 1);
        if (is_file(lab)) return lab;
        char *alt;
        if (ends_with(lab, ".gz")) {
            alt = xstrdup(lab);
            alt[strlen(alt) - 3] = 0;
        } else {
            alt = str_cat(lab, ".gz");
        }
        if (is_file(alt)) {
            free(lab);
            return alt;
        }
        free(alt);
        *tried = lab;
        return NULL;
    }
    return NULL;
}

static int load_idx(const char *kind, const char *path, const char *split, long start, long count,
                    drq_dataset *out, drq_err *err) {
    char *img_path = NULL, *lab_path = NULL;
    idx_file im = {0}, lb = {0};
    uint8_t *pix = NULL, *labels = NULL;
    int rc = -1, ioerr;

    if (is_dir(path)) {
        int test = strcmp(split, "test") == 0;
        const char *const img_names[] = {test ? "t10k-images-idx3-ubyte" : "train-images-idx3-ubyte",
                                         test ? "t10k-images.idx3-ubyte" : "train-images.idx3-ubyte", NULL};
        const char *const lab_names[] = {test ? "t10k-labels-idx1-ubyte" : "train-labels-idx1-ubyte",
                                         test ? "t10k-labels.idx1-ubyte" : "train-labels.idx1-ubyte", NULL};
        img_path = find_idx(path, img_names);
        if (!img_path) {
            char *p = path_join(path, img_names[0]);
            drq_errf(err, "%s %s images: missing file %s (nor %s.gz)", kind, split, p, p);
            free(p);
            goto done;
        }
        lab_path = find_idx(path, lab_names);
        if (!lab_path) {
            char *p = path_join(path, lab_names[0]);
            drq_errf(err, "%s %s labels: missing file %s (nor %s.gz)", kind, split, p, p);
            free(p);
            goto done;
        }
    } else {
        if (!is_file(path)) {
            drq_errf(err, "%s: missing file (expected a %s directory or an IDX images file)", path, kind);
            goto done;
        }
        img_path = xstrdup(path);
        char *tried = NULL;
        lab_path = labels_for_images(path, &tried);
        if (!lab_path) {
            if (tried)
                drq_errf(err, "%s: missing labels file (tried with and without .gz) for the images file %s", tried, path);
            else
                drq_errf(err, "%s: cannot find the labels file: the name contains neither images-idx3 nor images.idx3",
                         path);
            free(tried);
            goto done;
        }
    }

    if (idx_open(img_path, IDX_IMAGES, &im, err)) goto done;
    if (idx_open(lab_path, IDX_LABELS, &lb, err)) goto done;
    long total = (long)im.dims[0];
    if (lb.dims[0] != im.dims[0]) {
        drq_errf(err, "label/image count mismatch: %s has %u labels but %s has %u images", lab_path, lb.dims[0],
                 img_path, im.dims[0]);
        goto done;
    }
    /* what the headers promise must fit in the files before anything is read or allocated */
    size_t hw = (size_t)im.dims[1] * im.dims[2];
    if (idx_check_size(&lb, 1, "labels", err) || idx_check_size(&im, hw, "images", err)) goto done;
    long n;
    if (dataset_resolve_range(start, count, total, img_path, &n, err)) goto done;

    /* labels: check every one, keep those of the range */
    labels = xmalloc((size_t)n + 1);
    size_t got = 0;
    uint8_t *chunk = xmalloc(CHUNK);
    while (got < (size_t)total) {
        size_t want = (size_t)total - got < CHUNK ? (size_t)total - got : CHUNK;
        size_t r = gz_read_n(lb.f, chunk, want, &ioerr);
        for (size_t k = 0; k < r; k++) {
            size_t i = got + k;
            if (chunk[k] >= NUM_CLASSES) {
                drq_errf(err, "%s: label %u of image %zu is not below the %d classes", lab_path, chunk[k], i,
                         NUM_CLASSES);
                free(chunk);
                goto done;
            }
            if (i >= (size_t)start && i < (size_t)(start + n)) labels[i - (size_t)start] = chunk[k];
        }
        got += r;
        if (ioerr || r < want) break;
    }
    free(chunk);
    if (ioerr) {
        drq_errf(err, "%s: read error (gzip/zlib): %s", lab_path, gz_msg(lb.f, lab_path));
        goto done;
    }
    if (got < (size_t)total) {
        const char *m = gz_msg(lb.f, lab_path);
        drq_errf(err, "%s: truncated: the header promises %ld labels but the file ends after %zu%s%s", lab_path, total,
                 got, *m ? ": " : "", m);
        goto done;
    }
    if (idx_expect_end(&lb, err)) goto done;

    /* images: skip to start, read the range, then the rest to validate the size */
    size_t skip = (size_t)start * hw, want = (size_t)n * hw, rest = (size_t)(total - start - n) * hw;
    size_t expect = (size_t)total * hw;
    got = gz_read_n(im.f, NULL, skip, &ioerr);
    if (!ioerr && got == skip) {
        size_t g;
        pix = gz_read_alloc(im.f, want, &g, &ioerr);
        got += g;
    }
    if (!ioerr && got == skip + want) got += gz_read_n(im.f, NULL, rest, &ioerr);
    if (ioerr) {
        drq_errf(err, "%s: read error (gzip/zlib): %s", img_path, gz_msg(im.f, img_path));
        goto done;
    }
    if (got < expect) {
        const char *m = gz_msg(im.f, img_path);
        drq_errf(err, "%s: truncated: the header promises %ld images of %u×%u (%zu pixel bytes) but the file ends after %zu%s%s",
                 img_path, total, im.dims[1], im.dims[2], expect, got, *m ? ": " : "", m);
        goto done;
    }
    if (idx_expect_end(&im, err)) goto done;

    out->n = (int)n;
    out->c = 1;
    out->h = (int)im.dims[1];
    out->w = (int)im.dims[2];
    out->num_classes = NUM_CLASSES;
    out->x = xmalloc(want * sizeof(float));
    out->y = xmalloc(((size_t)n + 1) * sizeof *out->y);
    to_float(pix, want, out->x);
    for (long i = 0; i < n; i++) out->y[i] = labels[i];
    rc = 0;
done:
    idx_close(&im);
    idx_close(&lb);
    free(pix);
    free(labels);
    free(img_path);
    free(lab_path);
    return rc;
}

/* ---- CIFAR-10 binary ---------------------------------------------------- */

static int load_cifar(const char *path, const char *split, long start, long count, drq_dataset *out,
                      drq_err *err) {
    char *files[5] = {0};
    long recs[5] = {0};
    int nf = 0, rc = -1;
    char *dir = NULL, *what = NULL;
    uint8_t *buf = NULL;
    FILE *f = NULL;

    if (is_dir(path)) {
        int test = strcmp(split, "test") == 0;
        const char *probe = test ? "test_batch.bin" : "data_batch_1.bin";
        char *p = path_join(path, probe);
        char *sub = path_join(path, "cifar-10-batches-bin");
        char *q = path_join(sub, probe);
        dir = (!is_file(p) && is_file(q)) ? xstrdup(sub) : xstrdup(path);
        free(p);
        free(sub);
        free(q);
        if (test) {
            files[nf++] = path_join(dir, "test_batch.bin");
            what = xstrdup(files[0]);
        } else {
            for (int i = 1; i <= 5; i++) {
                char name[32];
                snprintf(name, sizeof name, "data_batch_%d.bin", i);
                files[nf++] = path_join(dir, name);
            }
            what = path_join(dir, "data_batch_{1..5}.bin");
        }
    } else {
        files[nf++] = xstrdup(path);
        what = xstrdup(path);
    }

    long total = 0;
    for (int i = 0; i < nf; i++) {
        struct stat st;
        if (stat(files[i], &st) != 0 || !S_ISREG(st.st_mode)) {
            drq_errf(err, "%s: missing file (CIFAR-10 %s split)", files[i], split);
            goto done;
        }
        if (st.st_size % CIFAR_REC != 0) {
            drq_errf(err, "%s: record size wrong: file size %lld is not a multiple of the %d-byte CIFAR-10 record "
                          "(1 label + 3072 pixels); truncated or not a CIFAR-10 binary file",
                     files[i], (long long)st.st_size, CIFAR_REC);
            goto done;
        }
        recs[i] = (long)(st.st_size / CIFAR_REC);
        total += recs[i];
    }
    long n;
    if (dataset_resolve_range(start, count, total, what, &n, err)) goto done;

    out->x = xmalloc((size_t)n * CIFAR_PIX * sizeof(float));
    out->y = xmalloc(((size_t)n + 1) * sizeof *out->y);
    buf = xmalloc(CIFAR_REC * 256);
    long base = 0, k = 0; /* base: global index of files[i]'s first record; k: images filled */
    for (int i = 0; i < nf && k < n; base += recs[i], i++) {
        long lo = start + k - base; /* first record wanted from this file */
        if (lo >= recs[i]) continue;
        long take = recs[i] - lo < n - k ? recs[i] - lo : n - k;
        f = fopen(files[i], "rb");
        if (!f) {
            drq_errf(err, "%s: cannot open: %s", files[i], strerror(errno));
            goto done;
        }
        if (fseeko(f, (off_t)lo * CIFAR_REC, SEEK_SET) != 0) {
            drq_errf(err, "%s: cannot seek to record %ld: %s", files[i], lo, strerror(errno));
            goto done;
        }
        for (long r = 0; r < take;) {
            long m = take - r < 256 ? take - r : 256;
            size_t got = fread(buf, CIFAR_REC, (size_t)m, f);
            if (got < (size_t)m) {
                drq_errf(err, "%s: truncated: record %ld could not be read (the file shrank while reading?)", files[i],
                         lo + r + (long)got);
                goto done;
            }
            for (long q = 0; q < m; q++) {
                const uint8_t *rec = buf + (size_t)q * CIFAR_REC;
                if (rec[0] >= NUM_CLASSES) {
                    drq_errf(err, "%s: label %u in record %ld (byte offset %lld) is not below the %d classes", files[i],
                             rec[0], lo + r + q, (long long)(lo + r + q) * CIFAR_REC, NUM_CLASSES);
                    goto done;
                }
                out->y[k] = rec[0];
                to_float(rec + 1, CIFAR_PIX, out->x + (size_t)k * CIFAR_PIX);
                k++;
            }
            r += m;
        }
        fclose(f);
        f = NULL;
    }
    out->n = (int)n;
    out->c = 3;
    out->h = 32;
    out->w = 32;
    out->num_classes = NUM_CLASSES;
    rc = 0;
done:
    if (f) fclose(f);
    for (int i = 0; i < nf; i++) free(files[i]);
    free(dir);
    free(what);
    free(buf);
    return rc;
}

/* ---- entry points ------------------------------------------------------- */

int dataset_load(const char *kind, const char *path, const char *split, long start, long count,
                 drq_dataset *out, drq_err *err) {
    memset(out, 0, sizeof *out);
    if (!kind || !path || !split) return drq_errf(err, "dataset_load: kind, path and split are required");
    if (strcmp(split, "test") != 0 && strcmp(split, "train") != 0)
        return drq_errf(err, "unknown split \"%s\" (expected \"test\" or \"train\")", split);
    int rc;
    if (strcmp(kind, "cifar10") == 0)
        rc = load_cifar(path, split, start, count, out, err);
    else if (strcmp(kind, "mnist") == 0 || strcmp(kind, "fashion-mnist") == 0)
        rc = load_idx(kind, path, split, start, count, out, err);
    else if (strcmp(kind, "imagenet") == 0)
        rc = dataset_load_imagenet(path, split, start, count, out, err);
    else
        return drq_errf(err, "unknown dataset kind \"%s\" (expected cifar10, mnist, fashion-mnist or imagenet)", kind);
    if (rc) dataset_free(out);
    return rc;
}

void dataset_free(drq_dataset *d) {
    if (!d) return;
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}
