/* proto.h — the drq wire protocol (docs/design.md §Protocol, docs/queue.md).
 *
 * Every message is a ZeroMQ multipart message [type][json][binary…]:
 *   type   the message name in ASCII ("HELLO", "JOB", …);
 *   json   one JSON object that always holds "v": DRQ_PROTO_VERSION;
 *   binary 0 or 1 opaque frames (packed result rows, checkpoint blobs).
 * On ROUTER sockets a routing-id frame comes first.
 *
 * Decoding is strict: an unknown type, a wrong version, a missing, unknown or
 * mistyped field, bad JSON, a wrong number of frames or an oversized frame is
 * an error with a message saying which, never a crash.  Field schemas per type
 * are listed in proto.c (one line each) and in docs/queue.md.
 */
#ifndef DRQ_PROTO_H
#define DRQ_PROTO_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define DRQ_PROTO_VERSION 1
#define DRQ_SOFTWARE_VERSION "0.1.0"
#define DRQ_MAX_MSG_BYTES (64 << 20) /* ZMQ_MAXMSGSIZE of the server's sockets */
#define DRQ_MAX_JSON_BYTES (8 << 20)
#define DRQ_MAX_BIN 1
#define DRQ_MAX_RID 256

/* Defaults and limits both sides share (drq-server, drq-worker, drq run, the
 * client commands); docs/queue.md. */
#define DRQ_WORKERS_PORT "5555" /* drq-server's workers socket */
#define DRQ_CLIENTS_PORT "5556" /* drq-server's clients socket */
#define DRQ_DEFAULT_WORKERS_EP "tcp://127.0.0.1:" DRQ_WORKERS_PORT
#define DRQ_DEFAULT_CLIENTS_EP "tcp://127.0.0.1:" DRQ_CLIENTS_PORT
#define DRQ_HEARTBEAT_S 1.0 /* heartbeat period, both ways (the server's WELCOME tells the worker) */
#define DRQ_LIVENESS 3      /* heartbeat periods of silence after which the peer counts as dead */
/* ZeroMQ high water marks: a server ROUTER carries every worker's traffic,
 * a worker's DEALER only its own */
#define DRQ_ROUTER_HWM 200000
#define DRQ_DEALER_HWM 100000

typedef enum {
    /* worker -> server */
    MSG_HELLO,
    MSG_READY,
    MSG_HEARTBEAT, /* both ways */
    MSG_RESULT,
    MSG_CHECKPOINT,
    MSG_FAIL,
    MSG_RELEASE,
    /* server -> worker */
    MSG_WELCOME,
    MSG_JOB,
    MSG_ACK,
    MSG_CANCEL,
    MSG_RESET,
    /* client -> server */
    MSG_SUBMIT,
    MSG_STATUS,
    MSG_FETCH,
    MSG_CANCEL_SWEEP,
    MSG_RETRY,
    MSG_WORKERS,
    /* server -> client */
    MSG_REPLY,
    MSG_ERROR,
    MSG_NTYPES
} drq_msg_type;

typedef struct {
    drq_msg_type type;
    json_t *body; /* validated object (owned) */
    int nbin;
    void *bin[DRQ_MAX_BIN]; /* owned */
    size_t binlen[DRQ_MAX_BIN];
    unsigned char rid[DRQ_MAX_RID]; /* routing id (ROUTER sockets only) */
    size_t rid_len;
} drq_msg;

const char *drq_msg_name(drq_msg_type t);

/* Checks a body against the schema of type t and the binary frame count. */
int drq_msg_validate(drq_msg_type t, const json_t *body, int nbin, drq_err *err);

/* Decodes frames (type, json, binaries) into m; -1 + err on anything malformed. */
int drq_msg_decode(int nframes, const void *const *frames, const size_t *lens, drq_msg *m, drq_err *err);

/* Receives one whole multipart message from sock (router: expects a routing-id
 * frame first).  flags: 0 or ZMQ_DONTWAIT.  Returns 0 with m filled, 1 when no
 * message is waiting (or interrupted/timeout), -1 + err when the message was
 * malformed (it is consumed entirely and dropped). */
int drq_msg_recv(void *sock, int router, int flags, drq_msg *m, drq_err *err);

/* Sends [rid][type][json][bin]; rid NULL on DEALER sockets.  Adds "v" to body
 * (which stays owned by the caller).  Never blocks (ZMQ_DONTWAIT); returns 0,
 * or -1 when the socket would block or failed. */
int drq_msg_send(void *sock, const void *rid, size_t rid_len, drq_msg_type t, json_t *body, const void *bin,
                 size_t binlen);

void drq_msg_free(drq_msg *m);

/* Validated-field getters (valid only on a body that passed validation). */
int64_t drq_jint(const json_t *body, const char *key);   /* 0 when absent */
const char *drq_jstr(const json_t *body, const char *key); /* NULL when absent */
int drq_jbool(const json_t *body, const char *key);

/* ---- CurveZMQ (docs/security.md) -------------------------------------------------
 * Keys are Z85 text (40 characters + NUL); certificates are files in the zcert
 * text format: NAME.key holds `public-key = "…"`, NAME.key_secret holds both
 * `public-key` and `secret-key` (mode 0600). */
#define DRQ_Z85_LEN 41

/* Reads a zcert file: its public key, and its secret key when sec is not NULL
 * (then a file without one is an error).  -1 + err. */
int drq_cert_read(const char *path, char pub[DRQ_Z85_LEN], char *sec, drq_err *err);
/* Whether s is a 40-character Z85 key. */
int drq_z85_key_ok(const char *s);

/* The CURVE settings of this process as a client of drq-server (drq-worker,
 * the drq client commands): server_key is the server's public key (a Z85
 * string or a certificate file), secret the path of this side's
 * NAME.key_secret; NULL takes $DRQ_SERVER_KEY / $DRQ_CURVE_SECRET.  Neither
 * given: CURVE stays off (0).  Only one of the two, or an unreadable key:
 * -1 + err.  Call once, before any socket is opened. */
int drq_curve_client_config(const char *server_key, const char *secret, drq_err *err);
/* Whether drq_curve_client_config turned CURVE on. */
int drq_curve_client_on(void);
/* The public key this process presents ("" when CURVE is off). */
const char *drq_curve_client_public(void);
/* Sets the CURVE client options on a socket before it connects (nothing when
 * CURVE is off).  -1 + err when ZeroMQ refuses them. */
int drq_curve_client_apply(void *sock, drq_err *err);

#endif
