/* curve.c — CurveZMQ on the coordinator's sockets (docs/security.md).
 *
 * With opts.curve_secret both ROUTER sockets are CURVE servers holding the
 * server's secret key.  libzmq then asks the ZAP handler (RFC 27) bound at
 * inproc://zeromq.zap.01 in the same context about every handshake; without
 * a handler it would encrypt and admit everyone.  Ours is a REP socket watched
 * by the loop like the others: it admits a client public key only when a
 * *.key file in the directory of the socket's domain ("workers" or
 * "clients") holds it.  SIGHUP re-reads the directories, so deleting a key
 * file revokes it for every later handshake (a connection already
 * authenticated stays until it drops).  Each refusal is logged with the peer
 * address and key; repeats of the same key and address within
 * REFUSAL_QUIET_S are counted and reported with the next line.
 *
 * Without CURVE the sockets stay plain, and binding anything but a loopback
 * address needs opts.insecure (logged as a warning).
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "internal.h"

#define ZAP_EP "inproc://zeromq.zap.01"
#define REFUSAL_QUIET_S 10.0
#define MAX_REFUSALS 64
#define MAX_KEYS 100000

typedef struct {
    uint8_t key[32];
    char file[128]; /* the key file's name, the ZAP user id */
} srv_key;

struct srv_keyset {
    const char *dir;
    srv_key *k;
    int n;
};

struct srv_refusal {
    uint8_t key[32];
    char addr[64];
    int domain;
    double last_log;
    int64_t repeats; /* since last_log */
};

static char g_server_pub[DRQ_Z85_LEN], g_server_sec[DRQ_Z85_LEN];

/* ---- the loopback rule ------------------------------------------------------------- */

int srv_ep_is_loopback(const char *ep) {
    if (!strncmp(ep, "inproc://", 9) || !strncmp(ep, "ipc://", 6)) return 1;
    if (strncmp(ep, "tcp://", 6)) return 0;
    const char *h = ep + 6;
    const char *semi = strchr(h, ';'); /* tcp://SOURCE;HOST:PORT is a connect form: judge the host */
    if (semi) h = semi + 1;
    char host[256];
    const char *end = strrchr(h, ':');
    size_t n = end ? (size_t)(end - h) : strlen(h);
    if (n >= sizeof host) return 0;
    memcpy(host, h, n);
    host[n] = 0;
    if (!strncmp(host, "127.", 4)) {
        for (const char *p = host; *p; p++)
            if (!(*p == '.' || (*p >= '0' && *p <= '9'))) return 0;
        return 1;
    }
    return !strcmp(host, "localhost") || !strcmp(host, "[::1]") || !strcmp(host, "::1") || !strcmp(host, "lo");
}

static int check_binds(drq_server *s, drq_err *err) {
    const char *eps[6];
    int n = 0;
    for (int i = 0; i < 4 && s->o.workers_ep[i]; i++) eps[n++] = s->o.workers_ep[i];
    if (s->o.clients_ep) eps[n++] = s->o.clients_ep;
    for (int i = 0; i < n; i++) {
        if (srv_ep_is_loopback(eps[i])) continue;
        if (!s->o.insecure)
            return drq_errf(err,
                            "refusing to bind %s without CURVE: anyone who reaches it could register a worker or "
                            "cancel a sweep; give --curve-secret and --authorized-keys (docs/security.md), or "
                            "--insecure to accept that",
                            eps[i]);
        log_line("server", "WARNING: --insecure: %s is bound without CURVE; anyone who reaches it can register a "
                           "worker, read results or cancel sweeps",
                 eps[i]);
    }
    return 0;
}

/* ---- authorized keys ---------------------------------------------------------------- */

/* Reads every public key file of dir (names not ending in _secret; files
 * that are no key file are logged and skipped).  NULL + err when dir cannot be read. */
static struct srv_keyset *keyset_load(const char *dir, drq_err *err) {
    DIR *d = opendir(dir);
    if (!d) {
        drq_errf(err, "authorized keys %s: %s", dir, strerror(errno));
        return NULL;
    }
    struct srv_keyset *ks = xcalloc(1, sizeof *ks);
    ks->dir = dir;
    int cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) && ks->n < MAX_KEYS) {
        const char *nm = de->d_name;
        size_t l = strlen(nm);
        if (nm[0] == '.' || (l >= 7 && !strcmp(nm + l - 7, "_secret"))) continue;
        char path[4096], pub[DRQ_Z85_LEN];
        snprintf(path, sizeof path, "%s/%s", dir, nm);
        drq_err e;
        if (drq_cert_read(path, pub, NULL, &e)) {
            log_line("server", "curve: skipping %s", e.msg);
            continue;
        }
        if (ks->n == cap) {
            cap = cap ? 2 * cap : 16;
            ks->k = xrealloc(ks->k, (size_t)cap * sizeof *ks->k);
        }
        zmq_z85_decode(ks->k[ks->n].key, pub);
        snprintf(ks->k[ks->n].file, sizeof ks->k[ks->n].file, "%.*s", (int)sizeof ks->k[ks->n].file - 1, nm); /* a long name is logged cut */
        ks->n++;
    }
    closedir(d);
    return ks;
}

static void keyset_free(struct srv_keyset *ks) {
    if (!ks) return;
    free(ks->k);
    free(ks);
}

static const srv_key *keyset_find(const struct srv_keyset *ks, const uint8_t key[32]) {
    for (int i = 0; ks && i < ks->n; i++)
        if (!memcmp(ks->k[i].key, key, 32)) return &ks->k[i];
    return NULL;
}

static const char *domain_name(int d) { return d ? "clients" : "workers"; }

/* (Re)reads both directories; at start a failure is an error, on reload the
 * socket's set becomes empty (fail closed) and the failure is logged. */
static int load_keys(drq_server *s, int reload, drq_err *err) {
    const char *dirs[2] = {s->o.auth_workers_dir, s->o.auth_clients_dir};
    for (int d = 0; d < 2; d++) {
        drq_err e;
        struct srv_keyset *ks = keyset_load(dirs[d], &e);
        if (!ks) {
            if (!reload) return drq_errf(err, "%s", e.msg);
            log_line("server", "curve: %s; admitting no %s until it can be read (SIGHUP again)", e.msg,
                     domain_name(d));
            ks = xcalloc(1, sizeof *ks);
            ks->dir = dirs[d];
        }
        keyset_free(s->keys[d]);
        s->keys[d] = ks;
        log_line("server", "curve: %d authorized %s key(s) in %s%s", ks->n, domain_name(d), dirs[d],
                 reload ? " (reloaded)" : "");
    }
    return 0;
}

/* ---- set-up --------------------------------------------------------------------------- */

int srv_curve_init(drq_server *s, drq_err *err) {
    if (!s->o.curve_secret) {
        if (s->o.auth_workers_dir || s->o.auth_clients_dir)
            return drq_errf(err, "authorized keys given without --curve-secret (the server's NAME.key_secret)");
        return check_binds(s, err);
    }
    if (!zmq_has("curve")) return drq_errf(err, "--curve-secret: this libzmq is built without CURVE (libsodium)");
    if (!s->o.auth_workers_dir || !s->o.auth_clients_dir)
        return drq_errf(err, "--curve-secret needs --authorized-keys DIR (or both --authorized-workers DIR and "
                             "--authorized-clients DIR): without a list of keys nobody could connect");
    if (drq_cert_read(s->o.curve_secret, g_server_pub, g_server_sec, err)) return -1;
    if (load_keys(s, 0, err)) return -1;
    s->zap = zmq_socket(s->zctx, ZMQ_REP);
    if (!s->zap) return drq_errf(err, "ZAP handler: zmq_socket: %s", zmq_strerror(errno));
    int linger = 0;
    zmq_setsockopt(s->zap, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(s->zap, ZAP_EP))
        return drq_errf(err, "ZAP handler: cannot bind %s: %s (another CURVE server in this process?)", ZAP_EP,
                        zmq_strerror(errno));
    log_line("server", "curve: on (server public key %s)", g_server_pub);
    return 0;
}

int srv_curve_router(drq_server *s, void *sock, const char *domain, drq_err *err) {
    if (!s->zap) return 0;
    int one = 1;
    if (srv_sockopt(sock, ZMQ_CURVE_SERVER, "ZMQ_CURVE_SERVER", &one, sizeof one, domain, err) ||
        srv_sockopt(sock, ZMQ_CURVE_SECRETKEY, "ZMQ_CURVE_SECRETKEY", g_server_sec, 40, domain, err) ||
        srv_sockopt(sock, ZMQ_ZAP_DOMAIN, "ZMQ_ZAP_DOMAIN", domain, strlen(domain), domain, err))
        return -1;
    return 0;
}

/* ---- the ZAP handler ---------------------------------------------------------------- */

static void log_refusal(drq_server *s, int domain, const char *addr, const uint8_t key[32], const char *why) {
    char z85[DRQ_Z85_LEN] = "-";
    if (key) zmq_z85_encode(z85, key, 32);
    double now = drq_clock_mono();
    struct srv_refusal *r = NULL;
    for (int i = 0; key && i < s->nrefusals; i++)
        if (s->refusals[i].domain == domain && !memcmp(s->refusals[i].key, key, 32) &&
            !strcmp(s->refusals[i].addr, addr))
            r = &s->refusals[i];
    if (r && now - r->last_log < REFUSAL_QUIET_S) {
        r->repeats++;
        return;
    }
    int64_t repeats = r ? r->repeats : 0;
    if (!r && key) {
        if (!s->refusals) s->refusals = xcalloc(MAX_REFUSALS, sizeof *s->refusals);
        int slot = 0;
        if (s->nrefusals < MAX_REFUSALS) {
            slot = s->nrefusals++;
        } else {
            for (int i = 1; i < MAX_REFUSALS; i++)
                if (s->refusals[i].last_log < s->refusals[slot].last_log) slot = i;
        }
        r = &s->refusals[slot];
        memcpy(r->key, key, 32);
        snprintf(r->addr, sizeof r->addr, "%s", addr);
        r->domain = domain;
    }
    if (r) {
        r->last_log = now;
        r->repeats = 0;
    }
    char more[64] = "";
    if (repeats) snprintf(more, sizeof more, " (and %lld times before, unlogged)", (long long)repeats);
    log_line("server", "curve: refused %s connection from %s, key %s: %s%s", domain_name(domain), addr, z85, why,
             more);
}

/* One ZAP request: frames version, request id, domain, address, identity,
 * mechanism, credentials; the reply: version, request id, status, text,
 * user id, metadata. */
static void zap_one(drq_server *s) {
    zmq_msg_t f[8];
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s->zap, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < 8)
            f[n++] = m;
        else
            zmq_msg_close(&m);
    }
    if (n < 2) { /* cannot even answer it */
        for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
        return;
    }
    char domain[32] = "", addr[64] = "?", mech[16] = "";
#define FSTR(i, buf)                                                                 \
    do {                                                                             \
        if (n > (i)) {                                                               \
            size_t l = zmq_msg_size(&f[i]);                                          \
            if (l >= sizeof(buf)) l = sizeof(buf) - 1;                               \
            memcpy(buf, zmq_msg_data(&f[i]), l);                                     \
            buf[l] = 0;                                                              \
        }                                                                            \
    } while (0)
    FSTR(2, domain);
    FSTR(3, addr);
    FSTR(5, mech);
#undef FSTR
    int d = !strcmp(domain, "workers") ? 0 : !strcmp(domain, "clients") ? 1 : -1;
    const uint8_t *key = n >= 7 && zmq_msg_size(&f[6]) == 32 ? zmq_msg_data(&f[6]) : NULL;
    const srv_key *found = NULL;
    const char *status = "400", *text = "not authorized";
    if (d < 0) {
        log_refusal(s, 1, addr, key, "unknown ZAP domain");
    } else if (strcmp(mech, "CURVE") || !key) {
        log_refusal(s, d, addr, key, "not a CURVE handshake");
    } else if (!(found = keyset_find(s->keys[d], key))) {
        char why[4200];
        snprintf(why, sizeof why, "key not in %s", s->keys[d] ? s->keys[d]->dir : "-");
        log_refusal(s, d, addr, key, why);
    } else {
        status = "200", text = "OK";
        if (!s->o.quiet) {
            char z85[DRQ_Z85_LEN];
            zmq_z85_encode(z85, key, 32);
            log_line("server", "curve: admitted %s connection from %s, key %s (%s)", domain_name(d), addr, z85,
                     found->file);
        }
    }
    if (found)
        s->n_zap_ok++;
    else
        s->n_zap_denied++;
    const char *user = found ? found->file : "";
    zmq_send(s->zap, "1.0", 3, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(s->zap, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(s->zap, status, 3, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(s->zap, text, strlen(text), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(s->zap, user, strlen(user), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(s->zap, "", 0, ZMQ_DONTWAIT);
    for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
}

void srv_zap_drain(drq_server *s) {
    for (int i = 0; s->zap && i < 10000 && srv_has_input(s->zap); i++) zap_one(s);
}

static void on_zap(uv_poll_t *h, int status, int events) { srv_zap_drain(h->data); }

static void on_hup(uv_signal_t *h, int signum) {
    drq_server *s = h->data;
    log_line("server", "SIGHUP received: re-reading the authorized keys");
    drq_err e;
    load_keys(s, 1, &e);
}

void srv_curve_start(drq_server *s) {
    if (!s->zap) return;
    int fd;
    size_t fdsz = sizeof fd;
    zmq_getsockopt(s->zap, ZMQ_FD, &fd, &fdsz);
    uv_poll_init(&s->loop, &s->zpoll, fd);
    s->zpoll.data = s;
    uv_poll_start(&s->zpoll, UV_READABLE, on_zap);
    s->has_zpoll = 1;
    uv_signal_init(&s->loop, &s->sig_hup);
    s->sig_hup.data = s;
    uv_signal_start(&s->sig_hup, on_hup, SIGHUP);
    s->has_hup = 1;
    srv_zap_drain(s);
}

static void close_cb(uv_handle_t *h) {}

void srv_curve_stop(drq_server *s) {
    if (s->has_zpoll && !uv_is_closing((uv_handle_t *)&s->zpoll)) uv_close((uv_handle_t *)&s->zpoll, close_cb);
    if (s->has_hup && !uv_is_closing((uv_handle_t *)&s->sig_hup)) uv_close((uv_handle_t *)&s->sig_hup, close_cb);
}

void srv_curve_free(drq_server *s) {
    if (s->zap) zmq_close(s->zap);
    s->zap = NULL;
    keyset_free(s->keys[0]);
    keyset_free(s->keys[1]);
    s->keys[0] = s->keys[1] = NULL;
    free(s->refusals);
    s->refusals = NULL;
}
