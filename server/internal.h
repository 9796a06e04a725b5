/* internal.h — what the coordinator's files share: struct drq_server, the
 * in-memory view of workers, specs, expansions and rates, the server-only
 * limits, and the functions one file calls in another (prefix srv_).
 * Not part of the server's interface (server.h is); included by the server/ sources only.
 *
 * File map (docs/queue.md describes the protocol and the state machine):
 *   server.c   life cycle (new/run/stop/free), sockets, the pump (group commit), handles, signals
 *   outbox.c   the outbox: messages queued in a transaction and sent after its commit; replies
 *   workers.c  the worker registry, dispatch (leases against credit) and the worker protocol
 *   clients.c  the client protocol (status, fetch, cancel, retry, workers) and the rate samples
 *   sweeps.c   the spec cache, SUBMIT off the loop (thread pool) and the expansion into jobs
 *   timers.c   the heartbeat tick (liveness, leases, expiry, rates) and the socket monitors
 *   faults.c   database failures: fatal errors, storage faults and the degraded mode
 *   curve.c    CurveZMQ: the server key, the ZAP handler, authorized keys (SIGHUP), the loopback rule
 *   http.c     the HTTP dashboard, /api/status, /metrics (libmicrohttpd thread, snapshot)
 *   store.c    the SQLite store (store.h), also used by the CLI; faultvfs.c its test VFS
 */
#ifndef DRQ_SERVER_INTERNAL_H
#define DRQ_SERVER_INTERNAL_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "common/proto.h"
#include "common/row.h"
#include "common/spec.h"
#include "server.h"
#include "store.h"

#define BATCH 512            /* worker messages per transaction */
#define CLIENT_BATCH 16      /* client requests per pump */
#define EXPAND_CHUNK STORE_EXPAND_CHUNK_LOOP /* at most this many jobs inserted per pump while a sweep expands, */
#define EXPAND_BUDGET_S 0.05 /* and for at most about this long (then the loop serves others) */
#define EXPAND_SUB 500
#define MAX_LEASE_PER_PUMP 64
#define RATE_SAMPLES 64
#define MAX_FETCH 100000
#define MAX_CREDIT 1000 /* credit a worker may hold (what it announces is capped to it) */

typedef struct {
    int64_t id, done, total;
    int have_job;  /* job below is its row as leased (identity never changes) */
    store_job job;
} held_job;

typedef struct {
    unsigned char rid[DRQ_MAX_RID];
    size_t rid_len;
    char name[DRQ_TAG_MAX];
    char version[64];
    char *devices; /* JSON array text */
    int credit;
    double last_seen; /* monotonic */
    double joined;    /* epoch */
    held_job *jobs;
    int njobs, capjobs;
    int64_t *sweeps_sent;
    int nsent;
    int64_t jobs_done, done_unflushed;
} worker;

typedef struct {
    int64_t sweep;
    json_t *json;
    drq_spec spec;
} spec_entry;

typedef struct {
    unsigned char rid[DRQ_MAX_RID];
    size_t rid_len;
    int to_client;
    drq_msg_type type;
    json_t *body;
    void *bin;
    size_t binlen;
} outmsg;

typedef struct {
    int64_t sweep;
    double t0;
} expansion;

typedef struct {
    int64_t sweep;
    double t[RATE_SAMPLES];
    int64_t done[RATE_SAMPLES], rows[RATE_SAMPLES];
    int n, head; /* ring: head = next slot */
} rate_ring;

struct drq_server {
    drq_server_opts o;
    uv_loop_t loop;
    uv_poll_t wpoll, cpoll;
    int has_cpoll;
    /* socket monitors: connection-level drops (oversized frames, non-ZMTP bytes) */
    void *mon[2];
    const char *mon_name[2];
    uv_poll_t mpoll[2];
    int nmon;
    uv_timer_t tick;
    uv_idle_t idle;
    int idle_on;
    uv_async_t async_stop;
    uv_signal_t sig_int, sig_term;
    int stopping;
    void *zctx;
    int own_ctx;
    void *wsock, *csock;
    store *st;
    worker **w;
    int nw;
    spec_entry *specs;
    int nspecs;
    outmsg *out;
    int nout, capout;
    expansion *exp;
    int nexp;
    rate_ring *rates;
    int nrates;
    int dirty;      /* a dispatch may find something */
    int ckpt_maybe; /* the checkpoints table may hold something */
    int fatal;
    int rr;
    int in_pump;
    int submits_inflight; /* SUBMITs being parsed on the thread pool */
    double last_tick;     /* monotonic time of the previous tick (loop-stall detector) */
    double max_tick_gap;
    /* storage fault: the database cannot be written (disk full, I/O error) */
    int degraded;
    double degraded_since, degraded_logged;
    int64_t n_deferred; /* worker messages left unacknowledged meanwhile */
    char fault_msg[700];
    int64_t n_pumps, n_txns, n_msgs; /* statistics, logged at shutdown */
    char ident[96];
    /* CurveZMQ (curve.c) */
    void *zap; /* the ZAP handler's REP socket (NULL without CURVE) */
    uv_poll_t zpoll;
    int has_zpoll;
    uv_signal_t sig_hup;
    int has_hup;
    struct srv_keyset *keys[2]; /* admitted public keys: 0 workers, 1 clients */
    struct srv_refusal *refusals; /* recent refusals, for repeat counts in the log */
    int nrefusals;
    int64_t n_zap_ok, n_zap_denied;
    /* HTTP (http.c) */
    struct srv_http *http;
};

/* A per-job log line, unless the server is quiet. */
#define JLOG(s, ...)                                          \
    do {                                                      \
        if (!(s)->o.quiet) log_line("server", __VA_ARGS__); \
    } while (0)

/* ---- outbox.c ---------------------------------------------------------------- */

/* Printable hex of a routing id, for logs about unknown peers (a static
 * buffer: the loop thread only). */
const char *srv_hexid(const unsigned char *rid, size_t n);
/* Queues a message to send after the current transaction commits; takes
 * ownership of body and bin. */
void srv_queue_out(drq_server *s, int to_client, const unsigned char *rid, size_t rid_len, drq_msg_type t,
                   json_t *body, void *bin, size_t binlen);
/* Sends every queued message (after a commit). */
void srv_flush_out(drq_server *s);
/* Discards every queued message (the transaction that queued them failed). */
void srv_drop_out(drq_server *s);
/* ERROR to the client request id of peer rid. */
void srv_reply_error(drq_server *s, const unsigned char *rid, size_t rid_len, int64_t id, const char *fmt, ...)
    DRQ_PRINTF(5, 6);
/* ERROR "WHAT refused: the coordinator cannot write its database (WHY); NOTHING". */
void srv_refuse(drq_server *s, const unsigned char *rid, size_t rid_len, int64_t id, const char *what,
                const char *why, const char *nothing);
/* REPLY to a client request: body r (gets the request's id), optional payload. */
void srv_reply_ok(drq_server *s, const drq_msg *m, int64_t id, json_t *r, void *payload, size_t len);

/* ---- faults.c ------------------------------------------------------------------ */

/* A write transaction failed: roll back, drop its replies, then degraded mode
 * (storage fault) or stop (anything else, or drq run). */
void srv_db_failed(drq_server *s, const char *what, const drq_err *e);
/* The body of a client request's write transaction: returns its result (>= 0)
 * or -1 + e; sets *write = 0 when it wrote nothing (rolled back, not committed). */
typedef int64_t (*srv_txn_op)(drq_server *s, void *arg, int *write, drq_err *e);
/* Runs op in one write transaction for a client request (submit, cancel,
 * retry): BEGIN IMMEDIATE (busy: "database busy" to the client), op (refused,
 * with nothing failed in the database: rolled back, op's message to the
 * client), COMMIT (a failed statement or commit: srv_db_failed and
 * srv_refuse(what, …, nothing)).  0 with op's result in *value, or -1 when the
 * client already got its ERROR. */
int srv_client_txn(drq_server *s, const unsigned char *rid, size_t rid_len, int64_t id, const char *what,
                   const char *nothing, srv_txn_op op, void *arg, int64_t *value);
/* Degraded mode: reads worker messages without applying them. */
void srv_drain_degraded(drq_server *s);
/* Degraded mode: the tick (heartbeats in memory, one probe write). */
void srv_tick_degraded(drq_server *s);

/* ---- workers.c ----------------------------------------------------------------- */

worker *srv_worker_by_rid(drq_server *s, const unsigned char *rid, size_t n);
/* Forgets a worker (no database change). */
void srv_worker_remove(drq_server *s, worker *w);
/* Tells the worker holding job id (if any other than except) to drop it. */
void srv_cancel_on_workers(drq_server *s, int64_t id, const worker *except, const char *reason);
/* Requeues (as failed attempts) the jobs of a silent worker and forgets it. */
void srv_worker_lost(drq_server *s, worker *w, const char *why);
/* Leases dispatchable jobs to workers with credit (inside a transaction). */
void srv_dispatch(drq_server *s);
/* Applies one worker message (inside the pump's transaction). */
void srv_on_worker_msg(drq_server *s, drq_msg *m);

/* ---- clients.c ----------------------------------------------------------------- */

/* Answers one client request (each in a transaction of its own when it writes). */
void srv_on_client_msg(drq_server *s, drq_msg *m);
/* The rate ring of a sweep (created empty on first use). */
rate_ring *srv_rate_for(drq_server *s, int64_t sweep);

/* ---- sweeps.c ------------------------------------------------------------------ */

/* The parsed spec of a sweep, from the cache or the database; NULL when unreadable. */
spec_entry *srv_spec_get(drq_server *s, int64_t sweep);
/* Starts a SUBMIT: parsed on the thread pool, answered on the loop. */
void srv_submit_start(drq_server *s, drq_msg *m, int64_t id);
/* Queues the expansion of a sweep (its jobs inserted by later pumps). */
void srv_expansion_add(drq_server *s, int64_t sweep);
/* Inserts one bounded chunk of the first pending expansion. */
void srv_expand_step(drq_server *s);

/* ---- timers.c ------------------------------------------------------------------ */

void srv_on_tick(uv_timer_t *t);
/* Starts a socket monitor on sock, watched by the loop. */
void srv_add_monitor(drq_server *s, void *sock, const char *name);

/* ---- curve.c ------------------------------------------------------------------- */

/* Before the sockets: checks the loopback rule and, with CURVE, reads the
 * server key and the authorized keys and binds the ZAP handler; -1 + err. */
int srv_curve_init(drq_server *s, drq_err *err);
/* Sets the CURVE server options on a ROUTER (domain "workers" / "clients"); 0 without CURVE. */
int srv_curve_router(drq_server *s, void *sock, const char *domain, drq_err *err);
/* Starts the ZAP handler's poll and the SIGHUP reload on the loop. */
void srv_curve_start(drq_server *s);
/* Answers every waiting ZAP request (the loop; also from the tick). */
void srv_zap_drain(drq_server *s);
/* Closes the ZAP handles (srv_shutdown_loop). */
void srv_curve_stop(drq_server *s);
/* Frees the ZAP socket and the key sets. */
void srv_curve_free(drq_server *s);
/* Whether a ZeroMQ endpoint is loopback-only (tcp://127.x, ::1, localhost; ipc, inproc). */
int srv_ep_is_loopback(const char *ep);

/* ---- http.c -------------------------------------------------------------------- */

/* Starts the HTTP server (opts.http_addr) on its own thread; -1 + err. */
int srv_http_start(drq_server *s, drq_err *err);
/* Publishes a fresh snapshot for it (the loop, every tick). */
void srv_http_publish(drq_server *s);
/* Stops and frees it. */
void srv_http_free(drq_server *s);
/* The STATUS body that `drq status --json` prints (sweeps with rates, ETA, workers, server). */
json_t *srv_status_json(drq_server *s, int64_t sweep, int nfail);
/* The WORKERS array. */
json_t *srv_workers_json(drq_server *s);

/* ---- server.c ------------------------------------------------------------------ */

/* Reads and applies what is waiting on both sockets (see server.c). */
void srv_pump(drq_server *s);
/* Whether a ZeroMQ socket has a message waiting (ZMQ_EVENTS). */
int srv_has_input(void *sock);
/* zmq_setsockopt, checked: -1 + err "NAME socket: zmq_setsockopt(OPT) failed: …". */
int srv_sockopt(void *sock, int opt, const char *opt_name, const void *val, size_t len, const char *name,
                drq_err *err);
/* Closes every handle so that uv_run returns (idempotent). */
void srv_shutdown_loop(drq_server *s);

#endif
