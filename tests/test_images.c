/* test_images.c — the images an attack keeps with "save" (common/images.h),
 * from the engine to the database, on the fixture models (wrn_small +
 * unet_small, 1×16×16) and the blob IDX dataset:
 *   - packing: a round trip through the RESULT frame layout (rows, then
 *     images); every truncation inside an entry, an out-of-range or repeated
 *     row index, no or
 *     unknown kinds, a zero or oversized dimension, and a section longer
 *     than the frame are refused without reading out of bounds;
 *   - the engine: every row carries x_adv, P(x), P(x_adv) of 1×16×16; x_adv
 *     reproduces the row's ‖δ‖₂, ‖δ‖∞ and P(x_adv) its end distance to the
 *     bit (they are the engine's own tensors); batch 1 and batch 7 give the
 *     same bits; ddim with forward:false gives the same P(x) at two seeds;
 *   - resume: a job checkpointed mid-attack (rows and their images in the
 *     checkpoint) and resumed gives the uninterrupted images;
 *   - the store: rows inserted twice (a resent result) leave one image per
 *     (row, kind), and the stored bytes equal the engine's.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/images.h"
#include "../common/spec.h"
#include "common/dataset.h"
#include "server/store.h"
#include "worker/eval/engine.h"
#include "worker/eval/metrics.h"
#include "blob_dataset.h"
#include "check.h"
#include "job_capture.h"

static char dir[64];
static drq_spec spec;
static drq_dataset ds;

static const char *SPEC =
    "{\"name\":\"t\",\"dataset\":{\"kind\":\"mnist\",\"path\":\"%s\",\"start\":0,\"count\":7},"
    "\"classifier\":{\"arch\":\"wrn\",\"config\":\"tests/fixtures/wrn_small.json\","
    "\"weights\":\"tests/fixtures/wrn_small.weights.safetensors\"},"
    "\"diffusion\":{\"arch\":\"ddpm-unet\",\"config\":\"tests/fixtures/unet_small.json\","
    "\"weights\":\"tests/fixtures/unet_small.weights.safetensors\"},"
    "\"purifiers\":[{\"name\":\"ddpm\",\"kind\":\"ddpm\",\"t_star\":3},"
    "{\"name\":\"det\",\"kind\":\"ddim\",\"t_star\":4,\"stride\":2,\"forward\":false}],"
    "\"attacks\":[{\"name\":\"pgd\",\"kind\":\"pgd\",\"eps\":0.1,\"steps\":2,\"n_uniform\":1,"
    "\"save\":[\"x_adv\",\"purified\"]}],"
    "\"seeds\":[3,4],\"shard\":{\"images\":7}}";

/* ---- packing ---------------------------------------------------------------- */

/* Three rows; rows 0 and 2 keep images of 1×2×3 (row 0 all kinds, row 2 x_adv only). */
static drq_row *pack_rows(void) {
    drq_row *r = xcalloc(3, sizeof *r);
    for (int i = 0; i < 3; i++) {
        drq_row_init(&r[i]);
        r[i].sweep = 1, r[i].image = i;
        strcpy(r[i].purifier, "p"), strcpy(r[i].attack, "a");
    }
    float px[6];
    r[0].images = drq_row_images_new(1, 2, 3);
    for (int k = 0; k < DRQ_IMG_NKINDS; k++) {
        for (int e = 0; e < 6; e++) px[e] = (float)(k * 10 + e) / 64.0f;
        drq_row_images_set(r[0].images, k, px);
    }
    r[2].images = drq_row_images_new(1, 2, 3);
    for (int e = 0; e < 6; e++) px[e] = -(float)e;
    drq_row_images_set(r[2].images, DRQ_IMG_X_ADV, px);
    return r;
}

/* Whether rows a and b carry the same images (both none, or equal bits). */
static int same_images(const drq_row *a, const drq_row *b) {
    const drq_row_images *x = a->images, *y = b->images;
    if (!x || !y) return !x && !y;
    if (x->c != y->c || x->h != y->h || x->w != y->w) return 0;
    for (int k = 0; k < DRQ_IMG_NKINDS; k++) {
        if (!x->data[k] != !y->data[k]) return 0;
        if (x->data[k] && memcmp(x->data[k], y->data[k], sizeof(float) * (size_t)x->c * x->h * x->w)) return 0;
    }
    return 1;
}

/* Unpacks an images section of len bytes onto 3 fresh rows; 0 or -1. */
static int try_unpack(const void *sec, size_t len, drq_err *err) {
    drq_row rows[3];
    memset(rows, 0, sizeof rows);
    int rc = drq_images_unpack(sec, len, rows, 3, err);
    for (int i = 0; i < 3; i++) {
        if (rc) CHECK_MSG(rows[i].images == NULL, "a refused section left images on row %d", i);
        drq_row_images_free(rows[i].images);
    }
    return rc;
}

static void test_packing(void) {
    drq_row *r = pack_rows();
    size_t len, il;
    unsigned char *buf = drq_images_pack_rows(r, 3, &len, &il);
    CHECK_EQ_INT((long)il, 2 * 20 + 4 * 6 * 4);
    drq_row *got = NULL;
    int64_t n = 0;
    drq_err err = {{0}};
    CHECK_MSG(drq_images_unpack_rows(buf, len, il, 3, &got, &n, &err) == 0, "round trip: %s", err.msg);
    for (int i = 0; got && i < 3; i++) CHECK_MSG(same_images(&r[i], &got[i]), "row %d: images differ after the round trip", i);
    drq_rows_free(got, n);
    const unsigned char *sec = buf + (len - il);
    /* every truncation of the section is refused, except at the end of an
     * entry (a shorter valid section: the frame's length is authoritative) */
    size_t boundary = 20 + 3 * 6 * 4;
    int refused = 0;
    for (size_t k = 1; k < il; k++) refused += try_unpack(sec, k, &err) != 0;
    CHECK_EQ_INT(refused, (long)il - 2);
    CHECK_EQ_INT(try_unpack(sec, boundary, &err), 0);
    CHECK_EQ_INT(try_unpack(sec, 0, &err), 0);
    /* a section longer than its frame */
    CHECK_EQ_INT(drq_images_unpack_rows(buf, len, len + 1, 3, &got, &n, &err), -1);
    CHECK_CONTAINS(err.msg, "section of");
    /* corrupt header fields of the first entry (u32 row | kinds | c | h | w) */
    unsigned char *bad = xmalloc(il + 8);
    struct {
        int field;
        uint32_t value;
        const char *msg;
    } cases[] = {{0, 3, "out of order or out of range"}, {1, 0, "kinds 0x0"}, {1, 8, "kinds 0x8"},
                 {2, 0, "zero or more than the cap"},    {3, 1u << 20, "zero or more than the cap"},
                 {4, 0xffffffffu, "zero or more than the cap"}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        memcpy(bad, sec, il);
        memcpy(bad + 4 * cases[c].field, &cases[c].value, 4);
        CHECK_EQ_INT(try_unpack(bad, il, &err), -1);
        CHECK_CONTAINS(err.msg, cases[c].msg);
    }
    /* the second entry's row index repeats the first's */
    memcpy(bad, sec, il);
    memset(bad + 20 + 3 * 6 * 4, 0, 4);
    CHECK_EQ_INT(try_unpack(bad, il, &err), -1);
    CHECK_CONTAINS(err.msg, "out of order");
    /* a row of 1×512×512 ×3 kinds is over DRQ_SAVE_MAX_ROW_BYTES */
    uint32_t big[5] = {0, 7, 1, 512, 512};
    memcpy(bad, big, sizeof big);
    CHECK_EQ_INT(try_unpack(bad, il, &err), -1);
    CHECK_CONTAINS(err.msg, "cap of 1048576");
    /* trailing bytes after the last entry */
    memcpy(bad, sec, il);
    memset(bad + il, 0, 8);
    CHECK_EQ_INT(try_unpack(bad, il + 8, &err), -1);
    free(bad), free(buf);
    drq_rows_free(r, 3);
}

/* ---- the engine ----------------------------------------------------------------- */

static drq_row *run(int purifier, int64_t seed, int batch, int every, capture *cap, const capture *resume) {
    drq_job job = {.id = 1, .sweep = 1, .spec = &spec, .purifier = purifier, .attack = 0, .seed = seed,
                   .image_start = 0, .image_count = 7, .device = "cpu", .worker = "t"};
    job_ctx ctx = {.user = cap, .checkpoint = on_checkpoint, .checkpoint_every = every};
    if (resume) ctx.resume = resume->blob, ctx.resume_len = resume->len;
    drq_row *rows = NULL;
    int64_t n = 0;
    drq_err err = {{0}};
    engine_set_batch(batch);
    job_status st = job_run(&job, &ctx, &rows, &n, &err);
    CHECK_MSG(st == JOB_DONE && n == 7, "job_run: status %d, %lld rows: %s", (int)st, (long long)n, err.msg);
    if (resume) CHECK_MSG(ctx.resumed, "the checkpoint was not used");
    return st == JOB_DONE ? rows : NULL;
}

static void test_engine_images(drq_row *r7) {
    size_t per = 16 * 16;
    for (int i = 0; i < 7; i++) {
        const drq_row_images *im = r7[i].images;
        CHECK_MSG(im && im->c == 1 && im->h == 16 && im->w == 16, "row %d: images of 1x16x16 expected", i);
        if (!im) continue;
        for (int k = 0; k < DRQ_IMG_NKINDS; k++) CHECK_MSG(im->data[k] != NULL, "row %d: no %s", i, drq_image_names[k]);
        if (!im->data[DRQ_IMG_X_ADV] || !im->data[DRQ_IMG_PURIFIED_ADV]) continue;
        const float *x = ds.x + i * per;
        CHECK_CMP_DBL(metrics_diff_l2(im->data[DRQ_IMG_X_ADV], x, per), ==, r7[i].delta_l2);
        CHECK_CMP_DBL(metrics_diff_linf(im->data[DRQ_IMG_X_ADV], x, per), ==, r7[i].delta_linf);
        CHECK_CMP_DBL(metrics_diff_l2(im->data[DRQ_IMG_PURIFIED_ADV], x, per), ==, r7[i].dist_end_l2);
    }
}

/* The rows' images go through the store: inserted twice, read back once each. */
typedef struct {
    const drq_row *rows;
    int64_t n, bad;
} readback;

static int on_stored(void *arg, const store_image *im) {
    readback *rb = arg;
    rb->n++;
    const drq_row_images *want = im->image >= 0 && im->image < 7 ? rb->rows[im->image].images : NULL;
    if (!want || im->c != want->c || im->h != want->h || im->w != want->w ||
        memcmp(im->data, want->data[im->what], sizeof(float) * (size_t)im->c * im->h * im->w))
        rb->bad++;
    return 0;
}

static void test_store(const drq_row *rows) {
    char db[128];
    snprintf(db, sizeof db, "%s/t.db", dir);
    drq_err err = {{0}};
    store *st = store_open(db, 0, &err);
    CHECK_MSG(st != NULL, "store_open: %s", err.msg);
    if (!st) return;
    char *canon = drq_spec_canonical(&spec);
    int64_t sweep = 0;
    CHECK_EQ_INT(store_sweep_create(st, &spec, canon, &sweep, &err), 0);
    free(canon);
    store_job j = {.sweep = sweep, .seed = 3, .image_start = 0, .image_count = 7};
    for (int round = 0; round < 2; round++) { /* the second: a resent RESULT */
        size_t len, il;
        void *buf = drq_images_pack_rows(rows, 7, &len, &il);
        drq_row *got = NULL;
        int64_t n = 0;
        CHECK_EQ_INT(drq_images_unpack_rows(buf, len, il, 7, &got, &n, &err), 0);
        CHECK_EQ_INT(store_begin(st, &err), 0);
        CHECK_EQ_INT(store_results_insert(st, &j, "ddpm", "pgd", got, n), round == 0 ? 7 : 0);
        CHECK_EQ_INT(store_commit(st, &err), 0);
        drq_rows_free(got, n);
        free(buf);
        readback rb = {rows, 0, 0};
        CHECK_EQ_INT(store_images_foreach(st, sweep, NULL, NULL, 0, on_stored, &rb, &err), 21);
        CHECK_MSG(rb.n == 21 && rb.bad == 0, "round %d: %lld images read back, %lld differ from the engine's", round,
                  (long long)rb.n, (long long)rb.bad);
    }
    readback first = {rows, 0, 0};
    CHECK_EQ_INT(store_images_foreach(st, sweep, "ddpm", "pgd", 2, on_stored, &first, &err), 6);
    CHECK_EQ_INT(store_images_foreach(st, sweep, "ddpm", "other", 0, on_stored, &first, &err), 0);
    store_close(st);
}

static void test_engine(void) {
    drq_row *r7 = run(0, 3, 7, 0, NULL, NULL), *r1 = run(0, 3, 1, 0, NULL, NULL);
    if (!r7 || !r1) return;
    test_engine_images(r7);
    for (int i = 0; i < 7; i++) CHECK_MSG(same_images(&r7[i], &r1[i]), "row %d: batch 1 and batch 7 images differ", i);
    /* ddim forward:false: P(x) does not depend on the seed */
    drq_row *d3 = run(1, 3, 7, 0, NULL, NULL), *d4 = run(1, 4, 7, 0, NULL, NULL);
    for (int i = 0; d3 && d4 && i < 7; i++)
        CHECK_MSG(d3[i].images && d4[i].images &&
                      !memcmp(d3[i].images->data[DRQ_IMG_PURIFIED_CLEAN], d4[i].images->data[DRQ_IMG_PURIFIED_CLEAN],
                              256 * sizeof(float)),
                  "det: image %d: P(x) differs between seeds 3 and 4", i);
    drq_rows_free(d3, 7), drq_rows_free(d4, 7);
    /* resume from a checkpoint that holds 4 finished rows and their images */
    capture cap = {.keep = 2}; /* the second checkpoint: mid-attack, after the first batch */
    drq_row *full = run(0, 3, 4, 1, &cap, NULL);
    CHECK_MSG(cap.blob != NULL, "expected at least 2 checkpoints, got %d", cap.count);
    drq_row *resumed = cap.blob ? run(0, 3, 4, 0, NULL, &cap) : NULL;
    for (int i = 0; full && resumed && i < 7; i++)
        CHECK_MSG(same_images(&full[i], &resumed[i]) && same_images(&full[i], &r7[i]),
                  "row %d: resumed images differ from the uninterrupted run's", i);
    free(cap.blob);
    drq_rows_free(full, 7), drq_rows_free(resumed, 7);
    test_store(r7);
    drq_rows_free(r7, 7), drq_rows_free(r1, 7);
}

int main(void) {
    drq_set_threads(2);
    test_packing();
    snprintf(dir, sizeof dir, "/tmp/drq-images-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    write_blob_dataset(dir, 7);
    char text[4096];
    drq_err err = {{0}};
    snprintf(text, sizeof text, SPEC, dir);
    CHECK_MSG(drq_spec_parse_text(text, &spec, &err) == 0, "spec: %s", err.msg);
    CHECK_MSG(dataset_load("mnist", dir, "test", 0, 7, &ds, &err) == 0, "dataset: %s", err.msg);
    attack_engine_register();
    test_engine();
    dataset_free(&ds);
    drq_spec_free(&spec);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return CHECK_DONE();
}
