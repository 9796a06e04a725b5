/* test_proto.c — wire protocol: encode/decode of every message type over a
 * real inproc ZeroMQ pair, strict rejection of malformed messages (a fuzz of
 * random and mutated frames must never crash), and the packed row format. */
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "check.h"
#include "common/proto.h"
#include "common/row.h"

/* Decodes a two-frame message [type][json]; returns the error text or "". */
static const char *decode2(const char *type, const char *json, int nbin) {
    static drq_err e;
    const void *f[3] = {type, json, "x"};
    size_t l[3] = {strlen(type), strlen(json), 1};
    drq_msg m;
    e.msg[0] = 0;
    if (drq_msg_decode(2 + nbin, f, l, &m, &e) == 0) {
        drq_msg_free(&m);
        return "";
    }
    return e.msg;
}

static void test_valid(void) {
    CHECK_EQ_STR(decode2("HELLO", "{\"v\":1,\"name\":\"w\",\"version\":\"1\",\"devices\":[\"cpu\"],\"held\":[1,2],\"credit\":2}", 0), "");
    CHECK_EQ_STR(decode2("READY", "{\"v\":1,\"credit\":3}", 0), "");
    CHECK_EQ_STR(decode2("HEARTBEAT", "{\"v\":1}", 0), "");
    CHECK_EQ_STR(decode2("HEARTBEAT", "{\"v\":1,\"progress\":[[1,2,3]]}", 0), "");
    CHECK_EQ_STR(decode2("RESULT", "{\"v\":1,\"seq\":1,\"job\":2,\"final\":true,\"n\":0,\"credit\":1}", 1), "");
    CHECK_EQ_STR(decode2("CHECKPOINT", "{\"v\":1,\"seq\":1,\"job\":2,\"step\":3}", 1), "");
    CHECK_EQ_STR(decode2("FAIL", "{\"v\":1,\"seq\":1,\"job\":2,\"error\":\"e\",\"retryable\":false}", 0), "");
    CHECK_EQ_STR(decode2("RELEASE", "{\"v\":1,\"seq\":1,\"job\":2}", 0), "");
    CHECK_EQ_STR(decode2("WELCOME", "{\"v\":1,\"heartbeat_ms\":1000,\"liveness\":3,\"lease_s\":30.5,\"server\":\"s\"}", 0), "");
    CHECK_EQ_STR(decode2("JOB", "{\"v\":1,\"job\":1,\"sweep\":1,\"attempt\":1,\"purifier\":0,\"attack\":0,\"seed\":0,"
                                "\"start\":0,\"count\":10,\"spec\":{}}", 0), "");
    CHECK_EQ_STR(decode2("JOB", "{\"v\":1,\"job\":1,\"sweep\":1,\"attempt\":1,\"purifier\":0,\"attack\":0,\"seed\":0,"
                                "\"start\":0,\"count\":10,\"ckpt_step\":4}", 1), "");
    CHECK_EQ_STR(decode2("ACK", "{\"v\":1,\"seq\":9}", 0), "");
    CHECK_EQ_STR(decode2("CANCEL", "{\"v\":1,\"job\":9,\"reason\":\"r\"}", 0), "");
    CHECK_EQ_STR(decode2("RESET", "{\"v\":1}", 0), "");
    CHECK_EQ_STR(decode2("SUBMIT", "{\"v\":1,\"id\":1,\"spec\":{\"name\":\"x\"}}", 0), "");
    CHECK_EQ_STR(decode2("STATUS", "{\"v\":1,\"id\":1,\"sweep\":2}", 0), "");
    CHECK_EQ_STR(decode2("FETCH", "{\"v\":1,\"id\":1,\"sweep\":2,\"limit\":5,\"after\":[\"p\",\"a\",1,2]}", 0), "");
    CHECK_EQ_STR(decode2("CANCEL_SWEEP", "{\"v\":1,\"id\":1,\"sweep\":2}", 0), "");
    CHECK_EQ_STR(decode2("RETRY", "{\"v\":1,\"id\":1,\"sweep\":2}", 0), "");
    CHECK_EQ_STR(decode2("WORKERS", "{\"v\":1,\"id\":1}", 0), "");
    CHECK_EQ_STR(decode2("REPLY", "{\"v\":1,\"id\":1,\"anything\":[1]}", 0), "");
    CHECK_EQ_STR(decode2("ERROR", "{\"v\":1,\"id\":1,\"error\":\"bad\"}", 0), "");
}

static void test_malformed(void) {
    CHECK_CONTAINS(decode2("NOPE", "{\"v\":1}", 0), "unknown message type \"NOPE\"");
    CHECK_CONTAINS(decode2("hello", "{\"v\":1}", 0), "unknown message type");
    CHECK_CONTAINS(decode2("READY", "{\"credit\":1}", 0), "missing protocol version");
    CHECK_CONTAINS(decode2("READY", "{\"v\":2,\"credit\":1}", 0), "protocol version 2 not supported (this build speaks 1)");
    CHECK_CONTAINS(decode2("READY", "{\"v\":\"1\",\"credit\":1}", 0), "missing protocol version");
    CHECK_CONTAINS(decode2("READY", "{\"v\":1,\"credit\":1", 0), "bad JSON");
    CHECK_CONTAINS(decode2("READY", "", 0), "bad JSON");
    CHECK_CONTAINS(decode2("READY", "[1]", 0), "not a JSON object");
    CHECK_CONTAINS(decode2("READY", "{\"v\":1,\"v\":1,\"credit\":1}", 0), "bad JSON");
    CHECK_CONTAINS(decode2("READY", "{\"v\":1}", 0), "missing field \"credit\"");
    CHECK_CONTAINS(decode2("READY", "{\"v\":1,\"credit\":-1}", 0), "field \"credit\": expected an integer >= 0");
    CHECK_CONTAINS(decode2("READY", "{\"v\":1,\"credit\":1.5}", 0), "field \"credit\"");
    CHECK_CONTAINS(decode2("READY", "{\"v\":1,\"credit\":1,\"x\":1}", 0), "unknown field \"x\"");
    CHECK_CONTAINS(decode2("READY", "{\"v\":1,\"credit\":1}", 1), "1 binary frames (expected 0..0)");
    CHECK_CONTAINS(decode2("RESULT", "{\"v\":1,\"seq\":1,\"job\":2,\"final\":true,\"n\":0}", 0), "0 binary frames");
    CHECK_CONTAINS(decode2("RESULT", "{\"v\":1,\"seq\":1,\"job\":2,\"final\":1,\"n\":0}", 1), "field \"final\": expected a boolean");
    /* the images section's length (common/images.h) */
    CHECK_EQ_STR(decode2("RESULT", "{\"v\":1,\"seq\":1,\"job\":2,\"final\":true,\"n\":0,\"images\":20}", 1), "");
    CHECK_CONTAINS(decode2("RESULT", "{\"v\":1,\"seq\":1,\"job\":2,\"final\":true,\"n\":0,\"images\":-1}", 1),
                   "field \"images\": expected");
    CHECK_EQ_STR(decode2("FETCH", "{\"v\":1,\"id\":1,\"sweep\":2,\"limit\":32,\"images\":true}", 0), "");
    CHECK_CONTAINS(decode2("FETCH", "{\"v\":1,\"id\":1,\"sweep\":2,\"limit\":32,\"images\":1}", 0),
                   "field \"images\": expected a boolean");
    CHECK_CONTAINS(decode2("HELLO", "{\"v\":1,\"name\":\"\",\"version\":\"1\",\"devices\":[],\"held\":[],\"credit\":0}", 0),
                   "field \"name\": expected a non-empty string");
    CHECK_CONTAINS(decode2("HELLO", "{\"v\":1,\"name\":\"w\",\"version\":\"1\",\"devices\":[1],\"held\":[],\"credit\":0}", 0),
                   "field \"devices\": expected an array of strings");
    CHECK_CONTAINS(decode2("HELLO", "{\"v\":1,\"name\":\"w\",\"version\":\"1\",\"devices\":[],\"held\":[-1],\"credit\":0}", 0),
                   "field \"held\"");
    CHECK_CONTAINS(decode2("HEARTBEAT", "{\"v\":1,\"progress\":[[1,2]]}", 0), "field \"progress\"");
    CHECK_CONTAINS(decode2("HEARTBEAT", "{\"v\":1,\"progress\":{}}", 0), "field \"progress\"");
    CHECK_CONTAINS(decode2("FETCH", "{\"v\":1,\"id\":1,\"sweep\":2,\"limit\":5,\"after\":[1,2,3,4]}", 0), "field \"after\"");
    CHECK_CONTAINS(decode2("JOB", "{\"v\":1,\"job\":1,\"sweep\":1,\"attempt\":1,\"purifier\":0,\"attack\":0,\"seed\":0,"
                                  "\"start\":0,\"count\":10}", 1), "checkpoint frame goes with ckpt_step");
    CHECK_CONTAINS(decode2("JOB", "{\"v\":1,\"job\":1,\"sweep\":1,\"attempt\":1,\"purifier\":0,\"attack\":0,\"seed\":0,"
                                  "\"start\":0,\"count\":10,\"ckpt_step\":3}", 0), "checkpoint frame goes with ckpt_step");
    CHECK_CONTAINS(decode2("WELCOME", "{\"v\":1,\"heartbeat_ms\":1000,\"liveness\":3,\"lease_s\":-1,\"server\":\"s\"}", 0),
                   "field \"lease_s\"");
    CHECK_CONTAINS(decode2("READY", "{\"v\":1,\"credit\":99999999999999999999}", 0), "bad JSON");
    /* frame counts */
    drq_msg m;
    drq_err e;
    const void *f[5] = {"READY", "{}", "a", "b", "c"};
    size_t l[5] = {5, 2, 1, 1, 1};
    CHECK_EQ_INT(drq_msg_decode(1, f, l, &m, &e), -1);
    CHECK_CONTAINS(e.msg, "1 frames");
    CHECK_EQ_INT(drq_msg_decode(5, f, l, &m, &e), -1);
    CHECK_CONTAINS(e.msg, "5 frames (at most 3)");
}

/* Random and mutated frames: decode must fail cleanly or succeed, never crash. */
static void test_fuzz(void) {
    unsigned seed = 7;
    const char *valid[] = {"{\"v\":1,\"seq\":1,\"job\":2,\"final\":true,\"n\":0}",
                           "{\"v\":1,\"name\":\"w\",\"version\":\"1\",\"devices\":[\"cpu\"],\"held\":[1,2],\"credit\":2}",
                           "{\"v\":1,\"id\":1,\"sweep\":2,\"limit\":5,\"after\":[\"p\",\"a\",1,2]}"};
    const char *types[] = {"RESULT", "HELLO", "FETCH", "JOB", "ACK"};
    int decoded = 0, rejected = 0;
    for (int it = 0; it < 20000; it++) {
        char buf[512];
        const char *src = valid[it % 3];
        size_t n = strlen(src);
        memcpy(buf, src, n);
        int muts = 1 + rand_r(&seed) % 4;
        for (int k = 0; k < muts; k++) {
            int op = rand_r(&seed) % 3;
            if (n == 0) break;
            size_t pos = (size_t)rand_r(&seed) % n;
            if (op == 0) buf[pos] = (char)rand_r(&seed);
            if (op == 1) n = pos; /* truncate */
            if (op == 2 && n < sizeof buf - 1) buf[n++] = (char)rand_r(&seed);
        }
        const void *f[3] = {types[rand_r(&seed) % 5], buf, buf};
        size_t l[3] = {strlen(f[0]), n, n};
        drq_msg m;
        drq_err e;
        if (drq_msg_decode(2 + rand_r(&seed) % 2, f, l, &m, &e) == 0) {
            decoded++;
            drq_msg_free(&m);
        } else {
            rejected++;
        }
    }
    CHECK_CMP_INT(rejected, >, 10000);
    CHECK_EQ_INT(decoded + rejected, 20000);
}

/* Send and receive over a real ZeroMQ ROUTER/DEALER pair. */
static void test_roundtrip(void) {
    void *ctx = zmq_ctx_new();
    void *r = zmq_socket(ctx, ZMQ_ROUTER), *d = zmq_socket(ctx, ZMQ_DEALER);
    CHECK_EQ_INT(zmq_bind(r, "inproc://proto-test"), 0);
    CHECK_EQ_INT(zmq_connect(d, "inproc://proto-test"), 0);
    json_t *b = json_object();
    json_object_set_new(b, "seq", json_integer(5));
    json_object_set_new(b, "job", json_integer(77));
    json_object_set_new(b, "step", json_integer(3));
    CHECK_EQ_INT(drq_msg_send(d, NULL, 0, MSG_CHECKPOINT, b, "blob", 4), 0);
    json_decref(b);
    drq_msg m;
    drq_err e;
    CHECK_EQ_INT(drq_msg_recv(r, 1, 0, &m, &e), 0);
    CHECK_EQ_INT(m.type, MSG_CHECKPOINT);
    CHECK_EQ_INT(drq_jint(m.body, "job"), 77);
    CHECK_EQ_INT(drq_jint(m.body, "v"), DRQ_PROTO_VERSION);
    CHECK_EQ_INT(m.nbin, 1);
    CHECK_MSG(m.binlen[0] == 4 && !memcmp(m.bin[0], "blob", 4), "binary frame of %zu bytes \"%.*s\", want \"blob\"",
              (size_t)m.binlen[0], (int)(m.binlen[0] < 16 ? m.binlen[0] : 16), (const char *)m.bin[0]);
    CHECK_CMP_INT(m.rid_len, >, 0);
    /* reply over the routing id */
    json_t *a = json_object();
    json_object_set_new(a, "seq", json_integer(5));
    CHECK_EQ_INT(drq_msg_send(r, m.rid, m.rid_len, MSG_ACK, a, NULL, 0), 0);
    json_decref(a);
    drq_msg_free(&m);
    drq_msg m2;
    CHECK_EQ_INT(drq_msg_recv(d, 0, 0, &m2, &e), 0);
    CHECK_EQ_INT(m2.type, MSG_ACK);
    CHECK_EQ_INT(drq_jint(m2.body, "seq"), 5);
    drq_msg_free(&m2);
    /* nothing waiting: 1 */
    CHECK_EQ_INT(drq_msg_recv(d, 0, ZMQ_DONTWAIT, &m2, &e), 1);
    /* garbage over the wire: consumed, reported, the socket still works */
    zmq_send(d, "x", 1, ZMQ_SNDMORE);
    zmq_send(d, "y", 1, ZMQ_SNDMORE);
    zmq_send(d, "z", 1, 0);
    CHECK_EQ_INT(drq_msg_recv(r, 1, 0, &m, &e), -1);
    CHECK_CONTAINS(e.msg, "unknown message type");
    for (int i = 0; i < 6; i++) zmq_send(d, "READY", 5, i < 5 ? ZMQ_SNDMORE : 0);
    CHECK_EQ_INT(drq_msg_recv(r, 1, 0, &m, &e), -1);
    CHECK_CONTAINS(e.msg, "6 frames");
    b = json_object();
    json_object_set_new(b, "credit", json_integer(1));
    drq_msg_send(d, NULL, 0, MSG_READY, b, NULL, 0);
    json_decref(b);
    CHECK_EQ_INT(drq_msg_recv(r, 1, 0, &m, &e), 0);
    CHECK_EQ_INT(m.type, MSG_READY);
    drq_msg_free(&m);
    zmq_close(d);
    zmq_close(r);
    zmq_ctx_term(ctx);
}

static void test_rows(void) {
    drq_row rows[3];
    for (int i = 0; i < 3; i++) {
        drq_row_init(&rows[i]);
        rows[i].sweep = 4;
        strcpy(rows[i].purifier, "ddpm");
        strcpy(rows[i].attack, "pgd");
        rows[i].seed = 9;
        rows[i].image = 100 + i;
        rows[i].label = i;
        rows[i].delta_l2 = 0.5 * i;
        rows[i].seconds = 1.25;
        strcpy(rows[i].device, "cuda:0");
        strcpy(rows[i].worker, "w");
        rows[i].extra = i == 1 ? strdup("{\"k\":1}") : NULL;
    }
    size_t len;
    void *p = drq_rows_pack(rows, 3, &len);
    drq_row *back;
    int64_t n;
    drq_err e;
    CHECK_EQ_INT(drq_rows_unpack(p, len, 3, &back, &n, &e), 0);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(back[2].image, 102);
    CHECK_EQ_STR(back[1].extra, "{\"k\":1}");
    CHECK_MSG(back[0].extra == NULL, "%s: %p", "back[0].extra == NULL", (void *)(back[0].extra));
    CHECK_MSG(isnan(back[0].ssim_adv) && back[0].robust == DRQ_NA, "ssim_adv %g (want nan), robust %d (want %d)",
              back[0].ssim_adv, (int)back[0].robust, (int)DRQ_NA);
    CHECK_MSG(back[2].delta_l2 == 1.0 && back[1].seconds == 1.25, "delta_l2 %.17g (want 1), seconds %.17g (want 1.25)",
              back[2].delta_l2, back[1].seconds);
    CHECK_EQ_STR(back[2].device, "cuda:0");
    drq_rows_free(back, n);
    /* wrong count, every truncation, trailing bytes */
    CHECK_EQ_INT(drq_rows_unpack(p, len, 2, &back, &n, &e), -1);
    CHECK_CONTAINS(e.msg, "trailing");
    CHECK_EQ_INT(drq_rows_unpack(p, len, 4, &back, &n, &e), -1);
    int all_fail = 1;
    for (size_t cut = 1; cut < len; cut++) {
        if (drq_rows_unpack(p, cut, -1, &back, &n, &e) == 0) {
            all_fail &= n < 3; /* a cut at a row boundary is a valid shorter list */
            drq_rows_free(back, n);
        }
    }
    CHECK_MSG(all_fail, "every truncation is rejected");
    CHECK_EQ_INT(drq_rows_unpack(p, len, 1000000000, &back, &n, &e), -1);
    /* issue 10: a row count from the wire is checked against the bytes before anything is sized by it */
    CHECK_EQ_INT(drq_rows_unpack(p, len, INT64_MAX, &back, &n, &e), -1);
    CHECK_CONTAINS(e.msg, "9223372036854775807 rows announced but only");
    free(p);
    for (int i = 0; i < 3; i++) free(rows[i].extra);
    /* an extra that is not a JSON object */
    drq_row one;
    drq_row_init(&one);
    strcpy(one.purifier, "p");
    strcpy(one.attack, "a");
    one.extra = strdup("{}");
    p = drq_rows_pack(&one, 1, &len);
    ((unsigned char *)p)[len - 2] = 'x';
    CHECK_EQ_INT(drq_rows_unpack(p, len, 1, &back, &n, &e), -1);
    CHECK_CONTAINS(e.msg, "extra is not a JSON object");
    free(p);
    free(one.extra);
    /* CSV quoting */
    drq_row r;
    drq_row_init(&r);
    strcpy(r.purifier, "p");
    strcpy(r.attack, "a");
    r.extra = strdup("{\"a\":1,\"b\":\"x\"}");
    char *buf = NULL;
    size_t blen = 0;
    FILE *f = open_memstream(&buf, &blen);
    drq_row_csv(f, &r);
    drq_row_jsonl(f, &r);
    fclose(f);
    CHECK_CONTAINS(buf, "\"{\"\"a\"\":1,\"\"b\"\":\"\"x\"\"}\"");
    CHECK_CONTAINS(buf, "\"extra\":{\"a\":1,\"b\":\"x\"}");
    CHECK_CONTAINS(buf, "\"robust\":null");
    free(buf);
    free(r.extra);
}

int main(void) {
    test_valid();
    test_malformed();
    test_fuzz();
    test_roundtrip();
    test_rows();
    return CHECK_DONE();
}
