/* fuzz_proto.c — libFuzzer harness for the wire-message decoder
 * (common/proto.c: drq_msg_decode, drq_msg_validate) together with the
 * packed-row unpacker and the row exports (common/row.c).
 *
 * Input: one multipart message as   TYPE '\n' JSON [ '\0' BINARY ]
 *   no '\n'       -> 1 frame  [TYPE]
 *   no '\0' after -> 2 frames [TYPE][JSON]
 *   else          -> 3 frames [TYPE][JSON][BINARY]
 * Each frame is copied into a buffer of its exact size, so that any read past
 * a frame is caught by ASan.  A binary frame is then unpacked as result rows
 * (exactly "n" rows for a decoded RESULT, any number otherwise — the noop
 * workload's checkpoint blob embeds rows too); rows that unpack must pack
 * back to the same bytes and export as CSV and JSON lines.  A decoded
 * RESULT's frame is also split as rows + "images" bytes of their images
 * (common/images.h); a frame that is not a valid message is also tried as
 * an images section of 4 rows.  Images that unpack must pack back to the
 * same bytes.
 */
#include "common/images.h"
#include "common/proto.h"
#include "common/row.h"
#include "tests/fuzz/fuzz_common.h"

static void *dup_frame(const uint8_t *p, size_t n) {
    void *q = malloc(n ? n : 1);
    if (!q) abort();
    if (n) memcpy(q, p, n);
    return q;
}

static FILE *devnull(void) {
    static FILE *f;
    if (!f) f = fopen("/dev/null", "w");
    if (!f) abort();
    return f;
}

static void rows(const void *bin, size_t len, int64_t expect) {
    drq_row *r = NULL;
    int64_t n = -1;
    drq_err err;
    err.msg[0] = 0;
    if (drq_rows_unpack(bin, len, expect, &r, &n, &err) != 0) {
        if (!err.msg[0]) {
            fprintf(stderr, "drq_rows_unpack failed without a message\n");
            abort();
        }
        return;
    }
    if (n < 0 || (expect >= 0 && n != expect)) {
        fprintf(stderr, "drq_rows_unpack: %lld rows, expected %lld\n", (long long)n, (long long)expect);
        abort();
    }
    size_t plen;
    void *packed = drq_rows_pack(r, n, &plen);
    if (plen != len || (len && memcmp(packed, bin, len) != 0)) {
        fprintf(stderr, "rows do not pack back to the same %zu bytes (got %zu)\n", len, plen);
        abort();
    }
    free(packed);
    FILE *f = devnull();
    drq_row_csv_header(f);
    for (int64_t i = 0; i < n; i++) {
        drq_row_csv(f, &r[i]);
        drq_row_jsonl(f, &r[i]);
    }
    drq_rows_free(r, n);
}

/* A RESULT frame of rows and images_len bytes of their images. */
static void result_images(const void *bin, size_t len, size_t images_len, int64_t expect) {
    drq_row *r = NULL;
    int64_t n = -1;
    drq_err err;
    err.msg[0] = 0;
    if (drq_images_unpack_rows(bin, len, images_len, expect, &r, &n, &err) != 0) {
        if (!err.msg[0]) {
            fprintf(stderr, "drq_images_unpack_rows failed without a message\n");
            abort();
        }
        return;
    }
    size_t plen, il;
    void *packed = drq_images_pack_rows(r, n, &plen, &il);
    if (plen != len || il != images_len || (len && memcmp(packed, bin, len) != 0)) {
        fprintf(stderr, "rows and images do not pack back to the same %zu bytes (got %zu)\n", len, plen);
        abort();
    }
    free(packed);
    drq_rows_free(r, n);
}

/* A bare images section onto 4 rows without images. */
static void images_section(const void *bin, size_t len) {
    drq_row r[4];
    memset(r, 0, sizeof r);
    drq_err err;
    err.msg[0] = 0;
    if (drq_images_unpack(bin, len, r, 4, &err) != 0) {
        for (int i = 0; i < 4; i++)
            if (r[i].images) {
                fprintf(stderr, "drq_images_unpack failed but left images on row %d\n", i);
                abort();
            }
        if (!err.msg[0]) {
            fprintf(stderr, "drq_images_unpack failed without a message\n");
            abort();
        }
        return;
    }
    size_t plen;
    void *packed = drq_images_pack(r, 4, &plen);
    if (plen != len || (len && memcmp(packed, bin, len) != 0)) {
        fprintf(stderr, "images do not pack back to the same %zu bytes (got %zu)\n", len, plen);
        abort();
    }
    free(packed);
    for (int i = 0; i < 4; i++) drq_row_images_free(r[i].images);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const void *frames[3] = {NULL, NULL, NULL};
    size_t lens[3] = {0, 0, 0};
    int nframes;
    const uint8_t *nl = memchr(data, '\n', size);
    if (!nl) {
        nframes = 1;
        lens[0] = size;
    } else {
        lens[0] = (size_t)(nl - data);
        const uint8_t *rest = nl + 1, *end = data + size;
        const uint8_t *nul = memchr(rest, 0, (size_t)(end - rest));
        if (!nul) {
            nframes = 2;
            lens[1] = (size_t)(end - rest);
        } else {
            nframes = 3;
            lens[1] = (size_t)(nul - rest);
            lens[2] = (size_t)(end - nul - 1);
        }
    }
    size_t off = 0;
    for (int i = 0; i < nframes; i++) {
        frames[i] = dup_frame(data + off, lens[i]);
        off += lens[i] + 1;
    }
    drq_msg m;
    drq_err err;
    err.msg[0] = 0;
    if (drq_msg_decode(nframes, frames, lens, &m, &err) == 0) {
        if (!m.body || m.nbin != nframes - 2 || (m.nbin && m.binlen[0] != lens[2]) ||
            (m.nbin && lens[2] && memcmp(m.bin[0], frames[2], lens[2]) != 0)) {
            fprintf(stderr, "decoded message does not match its frames\n");
            abort();
        }
        (void)drq_msg_name(m.type);
        if (m.nbin) rows(m.bin[0], m.binlen[0], m.type == MSG_RESULT ? drq_jint(m.body, "n") : -1);
        if (m.type == MSG_RESULT)
            result_images(m.bin[0], m.binlen[0], (size_t)drq_jint(m.body, "images"), drq_jint(m.body, "n"));
        drq_msg_free(&m);
    } else {
        if (!err.msg[0]) {
            fprintf(stderr, "drq_msg_decode failed without a message\n");
            abort();
        }
        if (nframes == 3) rows(frames[2], lens[2], -1), images_section(frames[2], lens[2]);
    }
    for (int i = 0; i < nframes; i++) free((void *)frames[i]);
    return 0;
}
