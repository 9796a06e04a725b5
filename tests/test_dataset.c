/* test_dataset.c — CIFAR-10 binary and IDX (plain + gzip) readers on small
 * synthetic files: exact pixels/labels/ranges, and one damaged file per kind
 * of defect, each of which must be an error naming the file and the problem.
 * Ends with a check on the real Fashion-MNIST test set when it is installed. */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "common/dataset.h"
#include "common/util.h"
#include "tests/check.h"

static char tmp[256];

static const char *P(const char *rel) { /* path under tmp; a few rotating buffers */
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp, rel);
    return buf[k];
}

static void mkd(const char *rel) {
    if (mkdir(P(rel), 0700) != 0) DIE("mkdir %s failed", P(rel));
}

static void write_file(const char *path, const void *data, size_t n, int gz) {
    if (gz) {
        gzFile f = gzopen(path, "wb");
        if (!f || (n && gzwrite(f, data, (unsigned)n) != (int)n) || gzclose(f) != Z_OK) DIE("gz write %s", path);
    } else {
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) DIE("write %s", path);
    }
}

static void be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* IDX images: magic, n, rows, cols, pixels[n·rows·cols]; *len = total bytes */
static uint8_t *idx_images(uint32_t magic, uint32_t n, uint32_t rows, uint32_t cols, const uint8_t *pix,
                           size_t *len) {
    size_t np = (size_t)n * rows * cols;
    uint8_t *b = xmalloc(16 + np);
    be32(b, magic);
    be32(b + 4, n);
    be32(b + 8, rows);
    be32(b + 12, cols);
    memcpy(b + 16, pix, np);
    *len = 16 + np;
    return b;
}

static uint8_t *idx_labels(uint32_t magic, uint32_t n, const uint8_t *lab, size_t *len) {
    uint8_t *b = xmalloc(8 + n);
    be32(b, magic);
    be32(b + 4, n);
    memcpy(b + 8, lab, n);
    *len = 8 + n;
    return b;
}

/* synthetic data: pixel i of a set, covering 0 and 255 */
static uint8_t pixval(size_t i, int salt) {
    if (i == 0) return 0;
    if (i == 1) return 255;
    return (uint8_t)((i * 37 + 11 + (size_t)salt * 101) & 255);
}

enum { TN = 5, TR = 3, TC = 4, RN = 7, RR = 2, RC = 2 }; /* test 5×3×4, train 7×2×2 */
static uint8_t test_pix[TN * TR * TC], test_lab[TN] = {3, 1, 4, 1, 9};
static uint8_t train_pix[RN * RR * RC], train_lab[RN] = {0, 1, 2, 3, 4, 5, 6};

static void write_mnist_dir(const char *rel, int gz_images, int gz_labels, int dotted) {
    char name[256];
    size_t len;
    uint8_t *b;
    mkd(rel);
    const char *im = dotted ? "images.idx3-ubyte" : "images-idx3-ubyte";
    const char *lb = dotted ? "labels.idx1-ubyte" : "labels-idx1-ubyte";
    const char *gi = gz_images ? ".gz" : "", *gl = gz_labels ? ".gz" : "";
    b = idx_images(0x803, TN, TR, TC, test_pix, &len);
    snprintf(name, sizeof name, "%s/t10k-%s%s", rel, im, gi);
    write_file(P(name), b, len, gz_images);
    free(b);
    b = idx_labels(0x801, TN, test_lab, &len);
    snprintf(name, sizeof name, "%s/t10k-%s%s", rel, lb, gl);
    write_file(P(name), b, len, gz_labels);
    free(b);
    b = idx_images(0x803, RN, RR, RC, train_pix, &len);
    snprintf(name, sizeof name, "%s/train-%s%s", rel, im, gi);
    write_file(P(name), b, len, gz_images);
    free(b);
    b = idx_labels(0x801, RN, train_lab, &len);
    snprintf(name, sizeof name, "%s/train-%s%s", rel, lb, gl);
    write_file(P(name), b, len, gz_labels);
    free(b);
}

/* d holds exactly images [start, start+n) of (pix, lab) with shape c×h×w */
static int same_images(const drq_dataset *d, const uint8_t *pix, const uint8_t *lab, long start, int n, int c,
                       int h, int w) {
    if (d->n != n || d->c != c || d->h != h || d->w != w || d->num_classes != 10) return 0;
    size_t per = (size_t)c * h * w;
    for (size_t i = 0; i < (size_t)n * per; i++) {
        float want = (float)pix[(size_t)start * per + i] / 255.0f;
        if (memcmp(&d->x[i], &want, sizeof want) != 0) return 0;
    }
    for (int i = 0; i < n; i++)
        if (d->y[i] != lab[start + i]) return 0;
    return 1;
}

static void test_idx_good(void) {
    drq_dataset d;
    drq_err err = {{0}};
    write_mnist_dir("plain", 0, 0, 0);
    write_mnist_dir("gz", 1, 1, 0);
    write_mnist_dir("mixed", 0, 1, 0);
    write_mnist_dir("dotted", 1, 0, 1);

    static const char *const dirs[] = {"plain", "gz", "mixed", "dotted"};
    for (int k = 0; k < 4; k++) {
        int rc = dataset_load("mnist", P(dirs[k]), "test", 0, -1, &d, &err);
        CHECK_MSG(rc == 0, "%s: %s", dirs[k], err.msg);
        CHECK_MSG(rc == 0 && same_images(&d, test_pix, test_lab, 0, TN, 1, TR, TC), "%s test split content", dirs[k]);
        if (rc == 0) CHECK_MSG(d.x[0] == 0.0f && d.x[1] == 1.0f, "x[0] %g (want 0), x[1] %g (want 1)", d.x[0], d.x[1]);
        dataset_free(&d);
        rc = dataset_load("fashion-mnist", P(dirs[k]), "train", 0, -1, &d, &err);
        CHECK_MSG(rc == 0 && same_images(&d, train_pix, train_lab, 0, RN, 1, RR, RC), "%s train split: %s",
                  dirs[k], err.msg);
        dataset_free(&d);
    }
    /* ranges */
    CHECK_EQ_INT(dataset_load("mnist", P("gz"), "test", 1, 3, &d, &err), 0);
    CHECK(same_images(&d, test_pix, test_lab, 1, 3, 1, TR, TC));
    dataset_free(&d);
    CHECK_EQ_INT(dataset_load("mnist", P("plain"), "test", 2, -1, &d, &err), 0);
    CHECK(same_images(&d, test_pix, test_lab, 2, 3, 1, TR, TC));
    dataset_free(&d);
    CHECK_EQ_INT(dataset_load("mnist", P("plain"), "train", 6, 1, &d, &err), 0);
    CHECK(same_images(&d, train_pix, train_lab, 6, 1, 1, RR, RC));
    dataset_free(&d);
    CHECK_EQ_INT(dataset_load("mnist", P("plain"), "test", 5, -1, &d, &err), 0); /* empty range at the end */
    CHECK_EQ_INT(d.n, 0);
    dataset_free(&d);
    /* the images file itself: labels found by the usual name (plain, .gz, and across) */
    CHECK_MSG(dataset_load("mnist", P("plain/t10k-images-idx3-ubyte"), "test", 0, 2, &d, &err) == 0, "%s", err.msg);
    CHECK(same_images(&d, test_pix, test_lab, 0, 2, 1, TR, TC));
    dataset_free(&d);
    CHECK_MSG(dataset_load("mnist", P("gz/train-images-idx3-ubyte.gz"), "train", 3, -1, &d, &err) == 0, "%s",
              err.msg);
    CHECK(same_images(&d, train_pix, train_lab, 3, 4, 1, RR, RC));
    dataset_free(&d);
    CHECK_MSG(dataset_load("mnist", P("mixed/t10k-images-idx3-ubyte"), "test", 4, 1, &d, &err) == 0, "%s", err.msg);
    CHECK(same_images(&d, test_pix, test_lab, 4, 1, 1, TR, TC));
    dataset_free(&d);
    CHECK_MSG(dataset_load("mnist", P("dotted/t10k-images.idx3-ubyte.gz"), "test", 0, -1, &d, &err) == 0, "%s",
              err.msg);
    CHECK(same_images(&d, test_pix, test_lab, 0, TN, 1, TR, TC));
    dataset_free(&d);
}

/* Expects failure whose message names `file` and contains `what`; *out must be empty. */
#define CHECK_FAILS(kind, path, split, start, count, file, what)                        \
    do {                                                                               \
        drq_dataset d_;                                                                \
        drq_err e_ = {{0}};                                                            \
        memset(&d_, 0x5a, sizeof d_);                                                  \
        int rc_ = dataset_load((kind), (path), (split), (start), (count), &d_, &e_);   \
        CHECK_MSG(rc_ == -1, "%s %s: expected failure, got rc %d", (kind), (path), rc_); \
        if (getenv("VERBOSE")) printf("error: %s\n", e_.msg);                        \
        if (rc_ == 0) dataset_free(&d_);                                               \
        CHECK_CONTAINS(e_.msg, (file));                                                \
        CHECK_CONTAINS(e_.msg, (what));                                                \
        CHECK_MSG(rc_ == 0 || (d_.x == NULL && d_.y == NULL && d_.n == 0),              \
                  "failed load left x %p, y %p, n %d", (void *)d_.x, (void *)d_.y, (int)d_.n); \
    } while (0)

static void write_pair(const char *rel, const uint8_t *img, size_t ilen, const uint8_t *lab, size_t llen, int gz) {
    char name[256];
    mkd(rel);
    snprintf(name, sizeof name, "%s/t10k-images-idx3-ubyte%s", rel, gz ? ".gz" : "");
    if (img) write_file(P(name), img, ilen, gz);
    snprintf(name, sizeof name, "%s/t10k-labels-idx1-ubyte%s", rel, gz ? ".gz" : "");
    if (lab) write_file(P(name), lab, llen, gz);
}

static void test_idx_bad(void) {
    size_t il, ll;
    uint8_t *img = idx_images(0x803, TN, TR, TC, test_pix, &il);
    uint8_t *lab = idx_labels(0x801, TN, test_lab, &ll);

    /* missing files */
    mkd("empty");
    CHECK_FAILS("mnist", P("empty"), "test", 0, -1, "empty/t10k-images-idx3-ubyte", "missing file");
    write_pair("nolabels", img, il, NULL, 0, 0);
    CHECK_FAILS("mnist", P("nolabels"), "test", 0, -1, "nolabels/t10k-labels-idx1-ubyte", "missing file");
    CHECK_FAILS("mnist", P("nolabels/t10k-images-idx3-ubyte"), "test", 0, -1,
                "nolabels/t10k-labels-idx1-ubyte", "missing labels file");
    CHECK_FAILS("mnist", P("nosuch"), "test", 0, -1, "nosuch", "missing file");
    write_file(P("nolabels/pictures.bin"), img, il, 0);
    CHECK_FAILS("mnist", P("nolabels/pictures.bin"), "test", 0, -1, "pictures.bin",
                "cannot find the labels file");

    /* wrong magic */
    uint8_t *bad = xmalloc(il + 64);
    memcpy(bad, img, il);
    be32(bad, 0x801);
    write_pair("magic1", bad, il, lab, ll, 0);
    CHECK_FAILS("mnist", P("magic1"), "test", 0, -1, "magic1/t10k-images-idx3-ubyte",
                "wrong magic 0x00000801 (that is an IDX labels file)");
    be32(bad, 0x12345678);
    write_pair("magic2", bad, il, lab, ll, 1);
    CHECK_FAILS("mnist", P("magic2"), "test", 0, -1, "magic2/t10k-images-idx3-ubyte.gz", "wrong magic 0x12345678");
    write_pair("magic3", img, il, img, il, 0); /* labels file holds images */
    CHECK_FAILS("mnist", P("magic3"), "test", 0, -1, "magic3/t10k-labels-idx1-ubyte",
                "wrong magic 0x00000803 (that is an IDX images file)");

    /* truncated: data, header, magic; plain and gzip */
    write_pair("trunc1", img, il - 5, lab, ll, 0);
    CHECK_FAILS("mnist", P("trunc1"), "test", 0, 1, "trunc1/t10k-images-idx3-ubyte",
                "truncated: the header promises 5 images of 3×4 (60 pixel bytes) but the file ends after 55");
    write_pair("trunc2", img, il - 1, lab, ll, 1);
    CHECK_FAILS("mnist", P("trunc2"), "test", 0, -1, "trunc2/t10k-images-idx3-ubyte.gz", "truncated");
    write_pair("trunc3", img, il, lab, ll - 2, 0);
    CHECK_FAILS("mnist", P("trunc3"), "test", 0, -1, "trunc3/t10k-labels-idx1-ubyte",
                "truncated: the header promises 5 labels but the file ends after 3");
    write_pair("trunc4", img, 10, lab, ll, 0);
    CHECK_FAILS("mnist", P("trunc4"), "test", 0, -1, "trunc4/t10k-images-idx3-ubyte",
                "truncated header: 10 of 16 bytes");
    write_pair("trunc5", img, 3, lab, ll, 0);
    CHECK_FAILS("mnist", P("trunc5"), "test", 0, -1, "trunc5/t10k-images-idx3-ubyte",
                "shorter than the 4-byte IDX magic");
    { /* a gzip stream cut in the middle */
        mkd("trunc6");
        write_file(P("trunc6/full.gz"), img, il, 1);
        size_t glen;
        drq_err e = {{0}};
        char *g = read_file_all(P("trunc6/full.gz"), &glen, &e);
        CHECK_MSG(g != NULL && glen > 20, "gzip %p of %zu bytes (want > 20)", (void *)g, (size_t)glen);
        if (g) write_file(P("trunc6/t10k-images-idx3-ubyte.gz"), g, glen - 12, 0);
        free(g);
        write_file(P("trunc6/t10k-labels-idx1-ubyte.gz"), lab, ll, 1);
        CHECK_FAILS("mnist", P("trunc6"), "test", 0, -1, "trunc6/t10k-images-idx3-ubyte.gz", "truncated");
    }
    { /* corrupted deflate data */
        mkd("corrupt");
        uint8_t big[4096];
        for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * i * 7 + i / 3);
        size_t bl;
        uint8_t *bimg = idx_images(0x803, 4, 32, 32, big, &bl);
        write_file(P("corrupt/full.gz"), bimg, bl, 1);
        size_t glen;
        drq_err e = {{0}};
        char *g = read_file_all(P("corrupt/full.gz"), &glen, &e);
        CHECK_MSG(g != NULL && glen > 100, "gzip %p of %zu bytes (want > 100)", (void *)g, (size_t)glen);
        if (g) {
            for (size_t i = 40; i < 60 && i < glen; i++) g[i] ^= 0x55;
            write_file(P("corrupt/t10k-images-idx3-ubyte.gz"), g, glen, 0);
        }
        free(g);
        free(bimg);
        uint8_t l4[4] = {0, 1, 2, 3};
        size_t l4len;
        uint8_t *l4b = idx_labels(0x801, 4, l4, &l4len);
        write_file(P("corrupt/t10k-labels-idx1-ubyte"), l4b, l4len, 0);
        free(l4b);
        CHECK_FAILS("mnist", P("corrupt"), "test", 0, -1, "corrupt/t10k-images-idx3-ubyte.gz", ": ");
    }

    /* trailing bytes */
    memcpy(bad, img, il);
    memset(bad + il, 7, 9);
    write_pair("extra", bad, il + 9, lab, ll, 1);
    CHECK_FAILS("mnist", P("extra"), "test", 0, -1, "extra/t10k-images-idx3-ubyte.gz", "9 extra bytes");

    /* count mismatch */
    size_t l4;
    uint8_t *lab4 = idx_labels(0x801, TN - 1, test_lab, &l4);
    write_pair("count", img, il, lab4, l4, 0);
    CHECK_FAILS("mnist", P("count"), "test", 0, -1, "label/image count mismatch", "has 4 labels");
    CHECK_FAILS("mnist", P("count"), "test", 0, -1, "count/t10k-images-idx3-ubyte has 5 images",
                "count/t10k-labels-idx1-ubyte");
    free(lab4);

    /* label out of range */
    memcpy(bad, lab, ll);
    bad[8 + 2] = 10;
    write_pair("label", img, il, bad, ll, 0);
    CHECK_FAILS("mnist", P("label"), "test", 0, 1, "label/t10k-labels-idx1-ubyte",
                "label 10 of image 2 is not below the 10 classes");

    /* ranges */
    CHECK_FAILS("mnist", P("plain"), "test", 3, 5, "plain/t10k-images-idx3-ubyte",
                "start 3 + count 5 exceeds the 5 images of");
    CHECK_FAILS("mnist", P("plain"), "test", 6, -1, "plain/t10k-images-idx3-ubyte", "start 6 is past the end");
    CHECK_FAILS("mnist", P("plain"), "test", -1, 2, "plain/t10k-images-idx3-ubyte", "start -1 is negative");
    CHECK_FAILS("mnist", P("plain"), "test", 0, -2, "plain/t10k-images-idx3-ubyte", "count -2 is invalid");

    /* kind, split */
    CHECK_FAILS("svhn", P("plain"), "test", 0, -1, "\"svhn\"", "unknown dataset kind");
    CHECK_FAILS("mnist", P("plain"), "valid", 0, -1, "\"valid\"", "unknown split");
    free(bad);
    free(img);
    free(lab);
}

/* ---- headers that promise far more than the file holds (issue 10) ---- */

/* Writes an IDX header (magic, dims[0..ndims)) and `fill` zero bytes as a
 * gzip file at level 1 (fast; zeros still compress about 200:1). */
static void write_idx_gz_zeros(const char *path, uint32_t magic, const uint32_t *dims, int ndims, uint64_t fill) {
    uint8_t h[16];
    be32(h, magic);
    for (int d = 0; d < ndims; d++) be32(h + 4 + 4 * d, dims[d]);
    gzFile f = gzopen(path, "wb1");
    if (!f || gzwrite(f, h, (unsigned)(4 + 4 * ndims)) != 4 + 4 * ndims) DIE("gz write %s", path);
    static uint8_t zeros[1 << 20];
    while (fill) {
        unsigned k = fill < sizeof zeros ? (unsigned)fill : (unsigned)sizeof zeros;
        if (gzwrite(f, zeros, k) != (int)k) DIE("gz write %s", path);
        fill -= k;
    }
    if (gzclose(f) != Z_OK) DIE("gz close %s", path);
}

typedef struct {
    int rc, n;
    uint8_t y0;
    char msg[1024];
} limited_result;

/* dataset_load("mnist", ...) in a child process whose address space may grow
 * by at most `margin` bytes (RLIMIT_AS over its size at the start), so that
 * an allocation sized by what a header claims ends the child (xmalloc exits,
 * ASan aborts) instead of passing unnoticed.  r->rc: 0 / -1 from
 * dataset_load, or 99 when the child did not come back. */
static void load_limited(const char *path, long start, long count, size_t margin, limited_result *r) {
    memset(r, 0, sizeof *r);
    int fd[2];
    if (pipe(fd) != 0) DIE("pipe");
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) DIE("fork");
    if (pid == 0) {
        close(fd[0]);
        limited_result c = {0};
        unsigned long pages = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (!f || fscanf(f, "%lu", &pages) != 1) _exit(98);
        fclose(f);
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + margin;
        if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(98);
        drq_dataset d;
        drq_err e = {{0}};
        c.rc = dataset_load("mnist", path, "test", start, count, &d, &e);
        c.n = d.n;
        c.y0 = c.rc == 0 && d.n > 0 ? d.y[0] : 255;
        snprintf(c.msg, sizeof c.msg, "%s", e.msg);
        dataset_free(&d);
        _exit(write(fd[1], &c, sizeof c) == (ssize_t)sizeof c ? 0 : 97);
    }
    close(fd[1]);
    size_t got = 0;
    while (got < sizeof *r) {
        ssize_t k = read(fd[0], (char *)r + got, sizeof *r - got);
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (got != sizeof *r || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        r->rc = 99;
        snprintf(r->msg, sizeof r->msg, "child %s %d", WIFEXITED(st) ? "exited with" : "killed by signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    }
}

/* A header allows up to INT_MAX items.  The readers used to read every label
 * into memory before looking at the images, so ~1 MB of gzip holding 200M
 * labels cost 200 MB; now the headers are checked against the file sizes
 * first (exactly for a plain file, at most 1032:1 for gzip), the labels are
 * streamed, and only the requested range is kept.  Each load runs with 48 MB
 * of address space to spare. */
static void test_idx_huge_header(void) {
    enum { HUGE = 200000000 };
    const size_t margin = 48u << 20;
    limited_result r;
    mkd("huge");
    mkd("huge1");
    mkd("claims");
    /* 200M real labels (about 1 MB of gzip), shared by huge/ and huge1/ */
    uint32_t nl = HUGE;
    write_idx_gz_zeros(P("huge/t10k-labels-idx1-ubyte.gz"), 0x801, &nl, 1, HUGE);
    if (symlink(P("huge/t10k-labels-idx1-ubyte.gz"), P("huge1/t10k-labels-idx1-ubyte.gz")) != 0) DIE("symlink");

    /* images of 28×28 claimed, a few bytes present: refused before a label is read */
    uint32_t di[3] = {HUGE, 28, 28};
    write_idx_gz_zeros(P("huge/t10k-images-idx3-ubyte.gz"), 0x803, di, 3, 1000);
    double t0 = drq_clock_mono();
    load_limited(P("huge"), 0, 10, margin, &r);
    printf("huge header refused in %.3f s: %s\n", drq_clock_mono() - t0, r.msg);
    CHECK_EQ_INT(r.rc, -1);
    CHECK_CONTAINS(r.msg, "huge/t10k-images-idx3-ubyte.gz: truncated or not an IDX file: the header promises "
                          "200000000 images of 28×28 (156800000000 bytes) but a ");
    CHECK_CONTAINS(r.msg, "-byte gzip file holds at most");

    /* both files complete (200M images of 1×1): 10 images asked for, 10 kept */
    uint32_t d1[3] = {HUGE, 1, 1};
    write_idx_gz_zeros(P("huge1/t10k-images-idx3-ubyte.gz"), 0x803, d1, 3, HUGE);
    t0 = drq_clock_mono();
    load_limited(P("huge1"), 5, 10, margin, &r);
    printf("10 of 200M images loaded in %.3f s: rc %d %s\n", drq_clock_mono() - t0, r.rc, r.msg);
    CHECK_MSG(r.rc == 0, "a valid 200M-image file, 10 images asked for: %s", r.msg);
    CHECK_EQ_INT(r.n, 10);
    CHECK_EQ_INT(r.y0, 0);

    /* both headers claim 200M, the gzip files hold 100 bytes: the labels file is named */
    write_idx_gz_zeros(P("claims/t10k-labels-idx1-ubyte.gz"), 0x801, &nl, 1, 100);
    write_idx_gz_zeros(P("claims/t10k-images-idx3-ubyte.gz"), 0x803, d1, 3, 100);
    load_limited(P("claims"), 0, 10, margin, &r);
    CHECK_EQ_INT(r.rc, -1);
    CHECK_CONTAINS(r.msg, "claims/t10k-labels-idx1-ubyte.gz: truncated or not an IDX file: the header promises "
                          "200000000 labels (200000000 bytes)");
    /* the same as plain files: the sizes must match exactly */
    uint8_t lab[8 + 5] = {0}, img[16 + 5] = {0};
    be32(lab, 0x801), be32(lab + 4, HUGE);
    be32(img, 0x803), be32(img + 4, HUGE), be32(img + 8, 1), be32(img + 12, 1);
    write_pair("claimp", img, sizeof img, lab, sizeof lab, 0);
    load_limited(P("claimp"), 0, 10, margin, &r);
    CHECK_EQ_INT(r.rc, -1);
    CHECK_CONTAINS(r.msg, "claimp/t10k-labels-idx1-ubyte: truncated: the header promises 200000000 labels but the "
                          "file ends after 5");
    /* and a plain file longer than its header says */
    uint8_t lab3[8 + 5] = {0};
    be32(lab3, 0x801), be32(lab3 + 4, 3);
    uint8_t img3[16 + 3] = {0};
    be32(img3, 0x803), be32(img3 + 4, 3), be32(img3 + 8, 1), be32(img3 + 12, 1);
    write_pair("claimx", img3, sizeof img3, lab3, sizeof lab3, 0);
    CHECK_FAILS("mnist", P("claimx"), "test", 0, -1, "claimx/t10k-labels-idx1-ubyte",
                "2 extra bytes after the data the IDX header promises");
}

/* ---- CIFAR-10 ---- */

enum { REC = 3073 };
static uint8_t cifar_label(int g) { return (uint8_t)((g * 3 + 1) % 10); }
static uint8_t cifar_pix(int g, int k) { return (uint8_t)((k * 7 + g * 13 + k / 1024 * 5) & 255); }

/* records g0 .. g0+n-1 of the global synthetic sequence */
static uint8_t *cifar_records(int g0, int n) {
    uint8_t *b = xmalloc((size_t)n * REC);
    for (int r = 0; r < n; r++) {
        b[(size_t)r * REC] = cifar_label(g0 + r);
        for (int k = 0; k < 3072; k++) b[(size_t)r * REC + 1 + k] = cifar_pix(g0 + r, k);
    }
    return b;
}

/* d holds global records [g0, g0+n) */
static int cifar_same(const drq_dataset *d, int g0, int n) {
    if (d->n != n || d->c != 3 || d->h != 32 || d->w != 32 || d->num_classes != 10) return 0;
    for (int i = 0; i < n; i++) {
        if (d->y[i] != cifar_label(g0 + i)) return 0;
        for (int ch = 0; ch < 3; ch++)
            for (int yx = 0; yx < 1024; yx++) {
                /* R plane, G plane, B plane, each 32×32 row-major → NCHW */
                float want = (float)cifar_pix(g0 + i, ch * 1024 + yx) / 255.0f;
                if (memcmp(&d->x[((size_t)i * 3 + ch) * 1024 + yx], &want, sizeof want) != 0) return 0;
            }
    }
    return 1;
}

/* test_batch: globals 100..102; data_batch_i: 2 records each, globals 0..9 */
static void write_cifar_dir(const char *rel) {
    char name[256];
    mkd(rel);
    uint8_t *b = cifar_records(100, 3);
    snprintf(name, sizeof name, "%s/test_batch.bin", rel);
    write_file(P(name), b, 3 * REC, 0);
    free(b);
    for (int i = 1; i <= 5; i++) {
        b = cifar_records(2 * (i - 1), 2);
        snprintf(name, sizeof name, "%s/data_batch_%d.bin", rel, i);
        write_file(P(name), b, 2 * REC, 0);
        free(b);
    }
}

static void test_cifar(void) {
    drq_dataset d;
    drq_err err = {{0}};
    write_cifar_dir("cifar");
    mkd("cifarparent");
    write_cifar_dir("cifarparent/cifar-10-batches-bin");

    CHECK_MSG(dataset_load("cifar10", P("cifar"), "test", 0, -1, &d, &err) == 0, "%s", err.msg);
    CHECK(cifar_same(&d, 100, 3));
    dataset_free(&d);
    CHECK_EQ_INT(dataset_load("cifar10", P("cifar"), "test", 1, 2, &d, &err), 0);
    CHECK(cifar_same(&d, 101, 2));
    dataset_free(&d);
    CHECK_MSG(dataset_load("cifar10", P("cifar"), "train", 0, -1, &d, &err) == 0, "%s", err.msg);
    CHECK(cifar_same(&d, 0, 10));
    dataset_free(&d);
    CHECK_EQ_INT(dataset_load("cifar10", P("cifar"), "train", 1, 6, &d, &err), 0); /* spans files 1..4 */
    CHECK(cifar_same(&d, 1, 6));
    dataset_free(&d);
    CHECK_EQ_INT(dataset_load("cifar10", P("cifar"), "train", 9, 1, &d, &err), 0);
    CHECK(cifar_same(&d, 9, 1));
    dataset_free(&d);
    CHECK_MSG(dataset_load("cifar10", P("cifarparent"), "train", 4, -1, &d, &err) == 0, "%s", err.msg);
    CHECK(cifar_same(&d, 4, 6));
    dataset_free(&d);
    CHECK_MSG(dataset_load("cifar10", P("cifar/data_batch_3.bin"), "test", 0, -1, &d, &err) == 0, "%s", err.msg);
    CHECK(cifar_same(&d, 4, 2));
    dataset_free(&d);

    /* damaged */
    uint8_t *b = cifar_records(0, 3);
    mkd("cbad");
    write_file(P("cbad/short.bin"), b, 3 * REC - 1, 0);
    CHECK_FAILS("cifar10", P("cbad/short.bin"), "test", 0, -1, "cbad/short.bin",
                "record size wrong: file size 9218 is not a multiple of the 3073-byte");
    b[REC] = 10; /* record 1 */
    write_file(P("cbad/label.bin"), b, 3 * REC, 0);
    CHECK_FAILS("cifar10", P("cbad/label.bin"), "test", 0, -1, "cbad/label.bin",
                "label 10 in record 1 (byte offset 3073) is not below the 10 classes");
    CHECK_FAILS("cifar10", P("cbad/none.bin"), "test", 0, -1, "cbad/none.bin", "missing file");
    write_cifar_dir("cmiss");
    CHECK_EQ_INT(unlink(P("cmiss/data_batch_3.bin")), 0);
    CHECK_FAILS("cifar10", P("cmiss"), "train", 0, 1, "cmiss/data_batch_3.bin", "missing file");
    CHECK_EQ_INT(dataset_load("cifar10", P("cmiss"), "test", 0, -1, &d, &err), 0); /* test split unaffected */
    dataset_free(&d);
    CHECK_EQ_INT(unlink(P("cmiss/test_batch.bin")), 0);
    CHECK_FAILS("cifar10", P("cmiss"), "test", 0, -1, "cmiss/test_batch.bin", "missing file");
    CHECK_FAILS("cifar10", P("cifar"), "test", 2, 2, "cifar/test_batch.bin",
                "start 2 + count 2 exceeds the 3 images of");
    CHECK_FAILS("cifar10", P("cifar"), "train", 8, 3, "cifar/data_batch_{1..5}.bin",
                "start 8 + count 3 exceeds the 10 images of");
    free(b);
}

/* ---- real data ---- */

static void test_fashion_mnist(void) {
    const char *dir = "/usr/share/datasets/fashion-mnist";
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        SKIP("%s absent: real Fashion-MNIST check not run", dir);
        return;
    }
    drq_dataset d;
    drq_err err = {{0}};
    int rc = dataset_load("fashion-mnist", dir, "test", 0, 100, &d, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc) return;
    CHECK_MSG(d.n == 100 && d.c == 1 && d.h == 28 && d.w == 28 && d.num_classes == 10,
                  "n %d c %d h %d w %d classes %d, want 100 1 28 28 10", (int)d.n, (int)d.c, (int)d.h, (int)d.w,
                  (int)d.num_classes);
    int out = 0, badlab = 0;
    double sum0 = 0;
    for (size_t i = 0; i < (size_t)100 * 784; i++) out += !(d.x[i] >= 0.0f && d.x[i] <= 1.0f);
    for (int i = 0; i < 100; i++) badlab += d.y[i] >= 10;
    for (int i = 0; i < 784; i++) sum0 += d.x[i] * 255.0;
    CHECK_EQ_INT(out, 0);
    CHECK_EQ_INT(badlab, 0);
    /* first labels and image 0's pixel sum, read independently with Python's gzip module */
    static const uint16_t first[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
    CHECK(memcmp(d.y, first, sizeof first) == 0);
    CHECK_LE(fabs(sum0 - 33456.0), 1e-2, "image 0 pixel sum - 33456");
    dataset_free(&d);
    CHECK_FAILS("fashion-mnist", dir, "test", 9990, 20, "t10k-images-idx3-ubyte.gz",
                "start 9990 + count 20 exceeds the 10000 images of");
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/drq_test_dataset_XXXXXX");
    if (!mkdtemp(tmp)) DIE("mkdtemp failed");
    for (size_t i = 0; i < sizeof test_pix; i++) test_pix[i] = pixval(i, 0);
    for (size_t i = 0; i < sizeof train_pix; i++) train_pix[i] = pixval(i, 1);
    test_idx_good();
    test_idx_bad();
    test_idx_huge_header();
    test_cifar();
    test_fashion_mnist();
    nftw(tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return CHECK_DONE();
}
