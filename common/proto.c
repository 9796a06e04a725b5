/* proto.c — see proto.h.
 *
 * Schemas are one string per type: space-separated "name:T" fields, a leading
 * '?' marks a field optional, a trailing "*" allows other keys (replies only).
 * T: i integer in [0, 2^53]   s non-empty string (<= 64 KiB)   b boolean
 *    o object   n finite number >= 0   as array of strings
 *    ai array of integers >= 0   ap array of [job, done, total] integer triples
 *    ac cursor [purifier string, attack string, seed integer, image integer]
 */
#include "proto.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static const struct {
    const char *name;
    const char *schema;
    int min_bin, max_bin;
} types[MSG_NTYPES] = {
    [MSG_HELLO] = {"HELLO", "name:s version:s devices:as held:ai credit:i", 0, 0},
    [MSG_READY] = {"READY", "credit:i", 0, 0},
    [MSG_HEARTBEAT] = {"HEARTBEAT", "?progress:ap", 0, 0},
    [MSG_RESULT] = {"RESULT", "seq:i job:i final:b n:i ?credit:i ?images:i", 1, 1},
    [MSG_CHECKPOINT] = {"CHECKPOINT", "seq:i job:i step:i", 1, 1},
    [MSG_FAIL] = {"FAIL", "seq:i job:i error:s retryable:b ?credit:i", 0, 0},
    [MSG_RELEASE] = {"RELEASE", "seq:i job:i ?credit:i", 0, 0},
    [MSG_WELCOME] = {"WELCOME", "heartbeat_ms:i liveness:i lease_s:n server:s", 0, 0},
    [MSG_JOB] = {"JOB", "job:i sweep:i attempt:i purifier:i attack:i seed:i start:i count:i ?spec:o ?ckpt_step:i", 0, 1},
    [MSG_ACK] = {"ACK", "seq:i ?job:i", 0, 0},
    [MSG_CANCEL] = {"CANCEL", "job:i ?reason:s", 0, 0},
    [MSG_RESET] = {"RESET", "", 0, 0},
    [MSG_SUBMIT] = {"SUBMIT", "id:i spec:o ?submission:s ?again:b", 0, 0},
    [MSG_STATUS] = {"STATUS", "id:i ?sweep:i ?failures:i", 0, 0},
    [MSG_FETCH] = {"FETCH", "id:i sweep:i limit:i ?after:ac ?images:b", 0, 0},
    [MSG_CANCEL_SWEEP] = {"CANCEL_SWEEP", "id:i sweep:i", 0, 0},
    [MSG_RETRY] = {"RETRY", "id:i sweep:i", 0, 0},
    [MSG_WORKERS] = {"WORKERS", "id:i", 0, 0},
    [MSG_REPLY] = {"REPLY", "id:i *", 0, 1},
    [MSG_ERROR] = {"ERROR", "id:i error:s", 0, 0},
};

#define MAX_INT_FIELD (INT64_C(1) << 53)
#define MAX_STR_FIELD (64 * 1024)

const char *drq_msg_name(drq_msg_type t) { return (unsigned)t < MSG_NTYPES ? types[t].name : "?"; }

static int is_uint(const json_t *v) {
    return json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= MAX_INT_FIELD;
}

/* Checks one value against type code T (see the file comment). */
static int check_value(const char *t, const json_t *v) {
    size_t i;
    json_t *e;
    if (!strcmp(t, "i")) return is_uint(v);
    if (!strcmp(t, "s")) return json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) <= MAX_STR_FIELD;
    if (!strcmp(t, "b")) return json_is_boolean(v);
    if (!strcmp(t, "o")) return json_is_object(v);
    if (!strcmp(t, "n")) return json_is_number(v) && isfinite(json_number_value(v)) && json_number_value(v) >= 0;
    if (!strcmp(t, "as")) {
        if (!json_is_array(v)) return 0;
        json_array_foreach(v, i, e) if (!json_is_string(e) || json_string_length(e) > MAX_STR_FIELD) return 0;
        return 1;
    }
    if (!strcmp(t, "ai")) {
        if (!json_is_array(v)) return 0;
        json_array_foreach(v, i, e) if (!is_uint(e)) return 0;
        return 1;
    }
    if (!strcmp(t, "ap")) {
        if (!json_is_array(v)) return 0;
        json_array_foreach(v, i, e) {
            if (!json_is_array(e) || json_array_size(e) != 3) return 0;
            for (size_t k = 0; k < 3; k++)
                if (!is_uint(json_array_get(e, k))) return 0;
        }
        return 1;
    }
    if (!strcmp(t, "ac")) {
        return json_is_array(v) && json_array_size(v) == 4 && json_is_string(json_array_get(v, 0)) &&
               json_is_string(json_array_get(v, 1)) && is_uint(json_array_get(v, 2)) && is_uint(json_array_get(v, 3));
    }
    assert(!"unknown schema type code");
    return 0;
}

static const char *type_words(const char *t) {
    if (!strcmp(t, "i")) return "an integer >= 0";
    if (!strcmp(t, "s")) return "a non-empty string";
    if (!strcmp(t, "b")) return "a boolean";
    if (!strcmp(t, "o")) return "an object";
    if (!strcmp(t, "n")) return "a number >= 0";
    if (!strcmp(t, "as")) return "an array of strings";
    if (!strcmp(t, "ai")) return "an array of integers >= 0";
    if (!strcmp(t, "ap")) return "an array of [job, done, total] triples";
    if (!strcmp(t, "ac")) return "a cursor [purifier, attack, seed, image]";
    return "?";
}

/* The schemas, parsed once: per type a list of fields. */
#define MAX_FIELDS 12
typedef struct {
    char name[24];
    char code[4];
    int optional;
} field;
static struct {
    field f[MAX_FIELDS];
    int n, open;
} parsed[MSG_NTYPES];

static void parse_schemas(void) {
    for (int t = 0; t < MSG_NTYPES; t++) {
        char schema[256];
        snprintf(schema, sizeof schema, "%s", types[t].schema);
        char *save = NULL;
        for (char *tok = strtok_r(schema, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
            if (!strcmp(tok, "*")) {
                parsed[t].open = 1;
                continue;
            }
            assert(parsed[t].n < MAX_FIELDS);
            field *f = &parsed[t].f[parsed[t].n++];
            f->optional = tok[0] == '?';
            char *name = tok + f->optional, *colon = strchr(name, ':');
            assert(colon && colon - name < (long)sizeof f->name && strlen(colon + 1) < sizeof f->code);
            *colon = 0;
            snprintf(f->name, sizeof f->name, "%s", name);
            snprintf(f->code, sizeof f->code, "%s", colon + 1);
        }
    }
}

int drq_msg_validate(drq_msg_type t, const json_t *body, int nbin, drq_err *err) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, parse_schemas);
    if ((unsigned)t >= MSG_NTYPES) return drq_errf(err, "unknown message type %d", (int)t);
    const char *name = types[t].name;
    if (!json_is_object(body)) return drq_errf(err, "%s: body is not a JSON object", name);
    json_t *v = json_object_get(body, "v");
    if (!v || !json_is_integer(v)) return drq_errf(err, "%s: missing protocol version \"v\"", name);
    if (json_integer_value(v) != DRQ_PROTO_VERSION)
        return drq_errf(err, "%s: protocol version %lld not supported (this build speaks %d)", name,
                        (long long)json_integer_value(v), DRQ_PROTO_VERSION);
    if (nbin < types[t].min_bin || nbin > types[t].max_bin)
        return drq_errf(err, "%s: %d binary frames (expected %d..%d)", name, nbin, types[t].min_bin, types[t].max_bin);
    size_t nknown = 1; /* "v" */
    for (int i = 0; i < parsed[t].n; i++) {
        const field *f = &parsed[t].f[i];
        json_t *fv = json_object_get(body, f->name);
        if (!fv) {
            if (!f->optional)
                return drq_errf(err, "%s: missing field \"%s\" (expected %s)", name, f->name, type_words(f->code));
            continue;
        }
        nknown++;
        if (!check_value(f->code, fv))
            return drq_errf(err, "%s: field \"%s\": expected %s", name, f->name, type_words(f->code));
    }
    if (!parsed[t].open && json_object_size(body) != nknown) {
        /* find the culprit for the message */
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)body, key, val) {
            int known = !strcmp(key, "v");
            for (int i = 0; i < parsed[t].n && !known; i++) known = !strcmp(key, parsed[t].f[i].name);
            if (!known) return drq_errf(err, "%s: unknown field \"%s\"", name, key);
        }
        return drq_errf(err, "%s: unknown fields", name);
    }
    /* cross-field rules */
    if (t == MSG_JOB && (json_object_get(body, "ckpt_step") != NULL) != (nbin == 1))
        return drq_errf(err, "JOB: a checkpoint frame goes with ckpt_step, and only with it");
    return 0;
}

int drq_msg_decode(int nframes, const void *const *frames, const size_t *lens, drq_msg *m, drq_err *err) {
    memset(m, 0, sizeof *m);
    if (nframes < 2) return drq_errf(err, "message has %d frames (expected [type][json][binary...])", nframes);
    if (nframes > 2 + DRQ_MAX_BIN) return drq_errf(err, "message has %d frames (at most %d)", nframes, 2 + DRQ_MAX_BIN);
    int t = -1;
    for (int i = 0; i < MSG_NTYPES; i++)
        if (lens[0] == strlen(types[i].name) && !memcmp(frames[0], types[i].name, lens[0])) t = i;
    if (t < 0) {
        char shown[40];
        size_t n = lens[0] < 32 ? lens[0] : 32;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = ((const unsigned char *)frames[0])[i];
            shown[i] = c >= 32 && c < 127 ? (char)c : '?';
        }
        shown[n] = 0;
        return drq_errf(err, "unknown message type \"%s\"%s (%zu bytes)", shown, lens[0] > 32 ? "..." : "", lens[0]);
    }
    if (lens[1] > DRQ_MAX_JSON_BYTES)
        return drq_errf(err, "%s: JSON frame of %zu bytes (at most %d)", types[t].name, lens[1], DRQ_MAX_JSON_BYTES);
    json_error_t je;
    json_t *body = json_loadb(frames[1], lens[1], JSON_REJECT_DUPLICATES, &je);
    if (!body) return drq_errf(err, "%s: bad JSON at column %d: %s", types[t].name, je.column, je.text);
    if (drq_msg_validate((drq_msg_type)t, body, nframes - 2, err)) {
        json_decref(body);
        return -1;
    }
    m->type = (drq_msg_type)t;
    m->body = body;
    m->nbin = nframes - 2;
    for (int i = 0; i < m->nbin; i++) {
        m->bin[i] = xmalloc(lens[2 + i] ? lens[2 + i] : 1);
        memcpy(m->bin[i], frames[2 + i], lens[2 + i]);
        m->binlen[i] = lens[2 + i];
    }
    return 0;
}

int drq_msg_recv(void *sock, int router, int flags, drq_msg *m, drq_err *err) {
    enum { MAXF = 2 + DRQ_MAX_BIN + 1 };
    zmq_msg_t parts[MAXF];
    int n = 0, total = 0, more = 1;
    memset(m, 0, sizeof *m);
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, total == 0 ? flags : 0) < 0) {
            int e = errno;
            zmq_msg_close(&part);
            for (int i = 0; i < n; i++) zmq_msg_close(&parts[i]);
            if (total == 0 && (e == EAGAIN || e == EINTR)) return 1;
            return drq_errf(err, "receive failed: %s", zmq_strerror(e));
        }
        total++;
        more = zmq_msg_more(&part);
        if (n < MAXF)
            parts[n++] = part;
        else
            zmq_msg_close(&part); /* too many frames: drain and drop */
    }
    int rc;
    int first = router ? 1 : 0;
    if (total > MAXF) {
        rc = drq_errf(err, "message has %d frames (at most %d)", total - first, 2 + DRQ_MAX_BIN);
    } else if (router && (n < 1 || zmq_msg_size(&parts[0]) == 0 || zmq_msg_size(&parts[0]) > DRQ_MAX_RID)) {
        rc = drq_errf(err, "message without a valid routing id");
    } else {
        const void *fr[MAXF];
        size_t ln[MAXF];
        for (int i = first; i < n; i++) {
            fr[i - first] = zmq_msg_data(&parts[i]);
            ln[i - first] = zmq_msg_size(&parts[i]);
        }
        rc = drq_msg_decode(n - first, fr, ln, m, err);
    }
    if (router && n >= 1 && zmq_msg_size(&parts[0]) <= DRQ_MAX_RID) {
        m->rid_len = zmq_msg_size(&parts[0]);
        memcpy(m->rid, zmq_msg_data(&parts[0]), m->rid_len);
    }
    for (int i = 0; i < n; i++) zmq_msg_close(&parts[i]);
    return rc;
}

int drq_msg_send(void *sock, const void *rid, size_t rid_len, drq_msg_type t, json_t *body, const void *bin,
                 size_t binlen) {
    assert((unsigned)t < MSG_NTYPES);
    json_object_set_new(body, "v", json_integer(DRQ_PROTO_VERSION));
    char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(17));
    assert(text);
    int flags = ZMQ_DONTWAIT;
    int ok = 1;
    if (rid) ok = zmq_send(sock, rid, rid_len, flags | ZMQ_SNDMORE) >= 0;
    if (ok) ok = zmq_send(sock, types[t].name, strlen(types[t].name), flags | ZMQ_SNDMORE) >= 0;
    if (ok) ok = zmq_send(sock, text, strlen(text), flags | (bin ? ZMQ_SNDMORE : 0)) >= 0;
    if (ok && bin) ok = zmq_send(sock, bin, binlen, flags) >= 0;
    free(text);
    return ok ? 0 : -1;
}

void drq_msg_free(drq_msg *m) {
    json_decref(m->body);
    for (int i = 0; i < m->nbin; i++) free(m->bin[i]);
    m->body = NULL;
    m->nbin = 0;
}

int64_t drq_jint(const json_t *body, const char *key) {
    json_t *v = json_object_get(body, key);
    return json_is_integer(v) ? json_integer_value(v) : 0;
}
const char *drq_jstr(const json_t *body, const char *key) { return json_string_value(json_object_get(body, key)); }
int drq_jbool(const json_t *body, const char *key) { return json_is_true(json_object_get(body, key)); }

/* ---- CurveZMQ --------------------------------------------------------------------- */

int drq_z85_key_ok(const char *s) {
    uint8_t bin[32];
    return s && strlen(s) == 40 && zmq_z85_decode(bin, s) != NULL;
}

/* The value of `NAME = "…"` on a line of a zcert file (quotes optional), in
 * out (at most outsz-1 characters); 0 when the line holds it. */
static int cert_value(const char *line, const char *name, char *out, size_t outsz) {
    while (*line == ' ' || *line == '\t') line++;
    size_t n = strlen(name);
    if (strncmp(line, name, n)) return -1;
    line += n;
    while (*line == ' ' || *line == '\t') line++;
    if (*line++ != '=') return -1;
    while (*line == ' ' || *line == '\t') line++;
    int quoted = *line == '"';
    if (quoted) line++;
    size_t k = 0;
    while (*line && *line != '\n' && *line != '\r' && (quoted ? *line != '"' : *line != ' ' && *line != '\t')) {
        if (k + 1 >= outsz) return -1;
        out[k++] = *line++;
    }
    out[k] = 0;
    return 0;
}

int drq_cert_read(const char *path, char pub[DRQ_Z85_LEN], char *sec, drq_err *err) {
    size_t len;
    char *text = read_file_all(path, &len, err);
    if (!text) return -1;
    if (len > 65536 || memchr(text, 0, len)) {
        free(text);
        return drq_errf(err, "%s: not a zcert key file (binary or over 64 KiB)", path);
    }
    char p[64] = "", s[64] = "";
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        char v[64];
        if (cert_value(line, "public-key", v, sizeof v) == 0) snprintf(p, sizeof p, "%s", v);
        if (cert_value(line, "secret-key", v, sizeof v) == 0) snprintf(s, sizeof s, "%s", v);
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    if (!drq_z85_key_ok(p)) return drq_errf(err, "%s: no valid public-key = \"<40 Z85 characters>\" line (zcert format)", path);
    if (sec && !drq_z85_key_ok(s))
        return drq_errf(err, "%s: no valid secret-key line: give the NAME.key_secret file (drq keygen writes it)", path);
    memcpy(pub, p, DRQ_Z85_LEN);
    if (sec) memcpy(sec, s, DRQ_Z85_LEN);
    return 0;
}

static struct {
    int on;
    char server[DRQ_Z85_LEN], pub[DRQ_Z85_LEN], sec[DRQ_Z85_LEN];
} g_curve;

int drq_curve_client_config(const char *server_key, const char *secret, drq_err *err) {
    if (!server_key || !*server_key) server_key = getenv("DRQ_SERVER_KEY");
    if (!secret || !*secret) secret = getenv("DRQ_CURVE_SECRET");
    if (server_key && !*server_key) server_key = NULL;
    if (secret && !*secret) secret = NULL;
    g_curve.on = 0;
    if (!server_key && !secret) return 0;
    if (!server_key || !secret)
        return drq_errf(err, "CURVE needs both the server's public key (--server-key / DRQ_SERVER_KEY) and this "
                             "side's secret key file (--curve-secret / DRQ_CURVE_SECRET); only %s was given",
                        server_key ? "the server key" : "the secret key");
    if (drq_z85_key_ok(server_key)) {
        memcpy(g_curve.server, server_key, DRQ_Z85_LEN);
    } else {
        drq_err e;
        if (drq_cert_read(server_key, g_curve.server, NULL, &e))
            return drq_errf(err, "--server-key: neither a 40-character Z85 key nor a readable key file: %s", e.msg);
    }
    if (drq_cert_read(secret, g_curve.pub, g_curve.sec, err)) return -1;
    g_curve.on = 1;
    return 0;
}

int drq_curve_client_on(void) { return g_curve.on; }

const char *drq_curve_client_public(void) { return g_curve.on ? g_curve.pub : ""; }

int drq_curve_client_apply(void *sock, drq_err *err) {
    if (!g_curve.on) return 0;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, g_curve.server, 40) ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, g_curve.pub, 40) ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, g_curve.sec, 40))
        return drq_errf(err, "CURVE socket options refused: %s (is libzmq built with CURVE?)", zmq_strerror(errno));
    return 0;
}
