/* seed_recorder.c — turns the unit tests' own parser inputs into fuzz seeds.
 *
 * tests/fuzz/seeds.sh links tests/test_{spec,safetensors,proto,dataset}.c with
 * this file and -Wl,--wrap=<parser> for the parser entry points below; each
 * wrapper writes its input, in the input format of the matching harness, to
 * $DRQ_FUZZ_SEEDS/<target>/seed-<hash> and then calls the real parser, so the
 * test runs unchanged.  Inputs over 64 KiB are skipped and at most 300 seeds
 * are kept per entry point (test_proto's own mutation loop makes 20000), so
 * the corpora stay small; the tests are deterministic, and so are the seeds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/dataset.h"
#include "common/proto.h"
#include "common/row.h"
#include "common/safetensors.h"
#include "common/spec.h"

#define MAX_SEED (64 << 10)
#define MAX_PER_ENTRY 300

typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}

/* Writes one seed; *count limits the seeds per entry point. */
static void save(const char *target, const void *p, size_t n, int *count) {
    const char *root = getenv("DRQ_FUZZ_SEEDS");
    if (!root || n > MAX_SEED || *count >= MAX_PER_ENTRY) return;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ ((const uint8_t *)p)[i]) * 1099511628211ull;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, target);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/seed-%016llx", root, target, (unsigned long long)h);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    if (n) fwrite(p, 1, n, f);
    fclose(f);
    (*count)++;
}

/* Whole file into b (0), or -1 when missing, not a regular file or too big. */
static int slurp(const char *path, buf *b) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_SEED) return -1;
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    uint8_t tmp[4096];
    size_t r;
    while ((r = fread(tmp, 1, sizeof tmp, f)) > 0) put(b, tmp, r);
    fclose(f);
    return 0;
}

/* ---- spec ---------------------------------------------------------------- */

int __real_drq_spec_parse_text(const char *text, drq_spec *out, drq_err *err);
int __wrap_drq_spec_parse_text(const char *text, drq_spec *out, drq_err *err) {
    static int count;
    if (text) save("spec", text, strlen(text), &count);
    return __real_drq_spec_parse_text(text, out, err);
}

int __real_drq_spec_load(const char *path, drq_spec *out, drq_err *err);
int __wrap_drq_spec_load(const char *path, drq_spec *out, drq_err *err) {
    static int count;
    buf b = {0};
    if (path && slurp(path, &b) == 0) save("spec", b.p, b.n, &count);
    free(b.p);
    return __real_drq_spec_load(path, out, err);
}

/* ---- safetensors --------------------------------------------------------- */

int __real_st_load(const char *path, st_file *out, drq_err *err);
int __wrap_st_load(const char *path, st_file *out, drq_err *err) {
    static int count;
    buf b = {0};
    if (path && slurp(path, &b) == 0) save("safetensors", b.p, b.n, &count);
    free(b.p);
    return __real_st_load(path, out, err);
}

/* ---- proto: TYPE '\n' JSON [ '\0' BINARY ] (see fuzz_proto.c) ------------- */

int __real_drq_msg_decode(int nframes, const void *const *frames, const size_t *lens, drq_msg *m, drq_err *err);
int __wrap_drq_msg_decode(int nframes, const void *const *frames, const size_t *lens, drq_msg *m, drq_err *err) {
    static int count;
    if (nframes >= 1 && nframes <= 3) {
        buf b = {0};
        for (int i = 0; i < nframes; i++) {
            if (i == 1) put(&b, "\n", 1);
            if (i == 2) put(&b, "", 1);
            put(&b, frames[i], lens[i]);
        }
        save("proto", b.p, b.n, &count);
        free(b.p);
    }
    return __real_drq_msg_decode(nframes, frames, lens, m, err);
}

int __real_drq_rows_unpack(const void *p, size_t len, int64_t expect, drq_row **rows, int64_t *n, drq_err *err);
int __wrap_drq_rows_unpack(const void *p, size_t len, int64_t expect, drq_row **rows, int64_t *n, drq_err *err) {
    static int count;
    char head[160];
    /* a RESULT announces its row count; a CHECKPOINT blob holds any number */
    if (expect >= 0)
        snprintf(head, sizeof head, "RESULT\n{\"v\":%d,\"seq\":1,\"job\":1,\"final\":true,\"n\":%lld}", DRQ_PROTO_VERSION,
                 (long long)expect);
    else
        snprintf(head, sizeof head, "CHECKPOINT\n{\"v\":%d,\"seq\":1,\"job\":1,\"step\":1}", DRQ_PROTO_VERSION);
    buf b = {0};
    put(&b, head, strlen(head) + 1); /* with the NUL that starts the binary frame */
    put(&b, p, len);
    save("proto", b.p, b.n, &count);
    free(b.p);
    return __real_drq_rows_unpack(p, len, expect, rows, n, err);
}

/* ---- dataset: 7-byte header + files (see fuzz_dataset.c) ----------------- */

static char *join(const char *a, const char *b) {
    char *p = malloc(strlen(a) + strlen(b) + 2);
    if (!p) abort();
    sprintf(p, "%s/%s", a, b);
    return p;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The first of "<dir>/<pre>-<what>" and the .idx spelling, plain or .gz, that slurps; *gz set by its name. */
static int slurp_idx(const char *dir, const char *pre, const char *what, const char *dotted, buf *b, int *gz) {
    const char *names[2] = {what, dotted};
    for (int k = 0; k < 2; k++)
        for (int g = 0; g < 2; g++) {
            char rel[128];
            snprintf(rel, sizeof rel, "%s-%s%s", pre, names[k], g ? ".gz" : "");
            char *p = join(dir, rel);
            int ok = slurp(p, b) == 0;
            free(p);
            if (ok) {
                *gz = g;
                return 0;
            }
        }
    return -1;
}

/* The labels file of an images file path: images-idx3 -> labels-idx1 (and the dotted spelling), plain or .gz. */
static int slurp_labels_of(const char *images, buf *b) {
    static const char *const pats[][2] = {{"images-idx3", "labels-idx1"}, {"images.idx3", "labels.idx1"}};
    const char *base = strrchr(images, '/');
    base = base ? base + 1 : images;
    for (int k = 0; k < 2; k++) {
        const char *at = strstr(base, pats[k][0]);
        if (!at) continue;
        size_t pre = (size_t)(at - images), len = strlen(images);
        char *lab = malloc(len + 8);
        if (!lab) abort();
        memcpy(lab, images, pre);
        strcpy(lab + pre, pats[k][1]);
        strcat(lab, at + strlen(pats[k][0]));
        int ok = slurp(lab, b) == 0;
        if (!ok) {
            size_t l = strlen(lab);
            if (l > 3 && !strcmp(lab + l - 3, ".gz")) lab[l - 3] = 0;
            else strcat(lab, ".gz");
            ok = slurp(lab, b) == 0;
        }
        free(lab);
        return ok ? 0 : -1;
    }
    return -1;
}

int __real_dataset_load(const char *kind, const char *path, const char *split, long start, long count,
                        drq_dataset *out, drq_err *err);
int __wrap_dataset_load(const char *kind, const char *path, const char *split, long start, long count,
                        drq_dataset *out, drq_err *err) {
    static int nseeds;
    if (kind && path && split && start >= -128 && start <= 127 && count >= -128 && count <= 127) {
        int train = !strcmp(split, "train"), fashion = !strcmp(kind, "fashion-mnist"), ok = 0, gz = 0;
        uint8_t h[7] = {0, (uint8_t)(int8_t)start, (uint8_t)(int8_t)count, 0, 0, 0, 0};
        buf img = {0}, lab = {0};
        if (!strcmp(kind, "cifar10")) {
            if (!is_dir(path)) {
                h[0] = 2;
                ok = slurp(path, &img) == 0;
            } else {
                /* the files directly in path, else in its cifar-10-batches-bin/ (mode bit 2) */
                struct stat st;
                char *probe = join(path, train ? "data_batch_1.bin" : "test_batch.bin");
                int sub = stat(probe, &st) != 0;
                free(probe);
                char *dir = sub ? join(path, "cifar-10-batches-bin") : join(path, ".");
                h[0] = (uint8_t)(3 | sub << 2 | train << 3);
                ok = 1;
                for (int i = train ? 1 : 0; i <= (train ? 5 : 0); i++) {
                    char name[32];
                    if (i) snprintf(name, sizeof name, "data_batch_%d.bin", i);
                    else snprintf(name, sizeof name, "test_batch.bin");
                    char *p = join(dir, name);
                    ok &= slurp(p, i <= 1 ? &img : &lab) == 0;
                    free(p);
                }
                free(dir);
            }
        } else if (is_dir(path)) {
            const char *pre = train ? "train" : "t10k";
            ok = slurp_idx(path, pre, "images-idx3-ubyte", "images.idx3-ubyte", &img, &gz) == 0;
            int gl;
            if (ok) (void)slurp_idx(path, pre, "labels-idx1-ubyte", "labels.idx1-ubyte", &lab, &gl);
            h[0] = (uint8_t)(0 | gz << 2 | train << 3 | fashion << 4);
        } else {
            ok = slurp(path, &img) == 0;
            if (ok) (void)slurp_labels_of(path, &lab);
            size_t l = strlen(path);
            gz = l > 3 && !strcmp(path + l - 3, ".gz");
            h[0] = (uint8_t)(1 | gz << 2 | train << 3 | fashion << 4);
        }
        if (ok) {
            uint32_t L = (uint32_t)img.n;
            h[3] = (uint8_t)L, h[4] = (uint8_t)(L >> 8), h[5] = (uint8_t)(L >> 16), h[6] = (uint8_t)(L >> 24);
            buf b = {0};
            put(&b, h, sizeof h);
            put(&b, img.p, img.n);
            put(&b, lab.p, lab.n);
            save("dataset", b.p, b.n, &nseeds);
            free(b.p);
        }
        free(img.p);
        free(lab.p);
    }
    return __real_dataset_load(kind, path, split, start, count, out, err);
}
