/* server.c — the coordinator's life cycle and its event loop: see server.h,
 * internal.h (the file map) and docs/queue.md.
 *
 * Event flow.  Both ROUTER sockets are watched through ZMQ_FD with a uv_poll.
 * That fd is edge-triggered: it only says "ZMQ_EVENTS may have changed", so
 * every wake-up (and every send, which can consume the edge) is followed by
 * draining while ZMQ_EVENTS has ZMQ_POLLIN; when a drain stops early (batch
 * limit) a uv_idle handle re-runs the pump on the next loop turn.
 *
 * Group commit.  A pump reads up to BATCH worker messages, applies them all
 * inside one BEGIN IMMEDIATE transaction, dispatches new leases in the same
 * transaction, commits, and only then sends the ACKs and JOBs it queued.  So
 * every acknowledged state change is durable, and the per-message cost of the
 * commit is shared by the batch.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "internal.h"

void drq_server_opts_defaults(drq_server_opts *o) {
    if (!o->max_attempts) o->max_attempts = 3;
    if (!(o->lease_s > 0)) o->lease_s = 30;
    if (!(o->backoff_s > 0)) o->backoff_s = 1;
    if (!(o->heartbeat_s > 0)) o->heartbeat_s = DRQ_HEARTBEAT_S;
    if (!o->liveness) o->liveness = DRQ_LIVENESS;
}

/* ---- the pump --------------------------------------------------------------------- */

/* A socket fd woke up (edge-triggered): drain both sockets. */
static void on_poll(uv_poll_t *h, int status, int events) {
    drq_server *s = h->data;
    srv_pump(s);
}

/* Runs while a drain stopped early (batch limit, pending expansion). */
static void on_idle(uv_idle_t *h) { srv_pump(h->data); }

static void close_cb(uv_handle_t *h) {}

int srv_has_input(void *sock) {
    int ev = 0;
    size_t sz = sizeof ev;
    if (zmq_getsockopt(sock, ZMQ_EVENTS, &ev, &sz)) return 0;
    return (ev & ZMQ_POLLIN) != 0;
}

/* One turn of the coordinator (the "group commit" above): up to BATCH worker
 * messages and a dispatch in one transaction, then its replies; then up to
 * CLIENT_BATCH client requests, each on its own; then one chunk of a pending
 * expansion.  Re-entry (a callback that pumps from inside a pump) is a no-op. */
void srv_pump(drq_server *s) {
    if (s->stopping || s->in_pump) return;
    s->in_pump = 1;
    drq_err e;
    int in_txn = 0;
    /* 1. worker messages and dispatch: one transaction */
    if (s->degraded) srv_drain_degraded(s);
    for (int i = 0; i < BATCH && !s->degraded && srv_has_input(s->wsock); i++) {
        drq_msg m;
        int rc = drq_msg_recv(s->wsock, 1, ZMQ_DONTWAIT, &m, &e);
        if (rc == 1) break;
        if (rc < 0) {
            log_line("server", "workers: dropped malformed message from %s: %s", srv_hexid(m.rid, m.rid_len), e.msg);
            continue;
        }
        if (!in_txn) {
            if (store_begin(s->st, &e)) {
                /* cannot write now: the peer resends what matters */
                log_line("server", "database busy, %s from %s dropped: %s", drq_msg_name(m.type),
                         srv_hexid(m.rid, m.rid_len), e.msg);
                drq_msg_free(&m);
                break;
            }
            in_txn = 1;
        }
        srv_on_worker_msg(s, &m);
        drq_msg_free(&m);
        s->n_msgs++;
    }
    if (s->dirty && !in_txn && s->nw > 0 && !s->degraded) {
        if (store_begin(s->st, &e) == 0) in_txn = 1;
    }
    s->n_pumps++;
    if (in_txn) {
        s->n_txns++;
        srv_dispatch(s);
        if (store_commit(s->st, &e)) {
            srv_db_failed(s, "commit of worker messages", &e);
            s->in_pump = 0;
            if (s->degraded && !s->stopping) srv_pump(s); /* drain the rest in degraded mode */
            return;
        }
    }
    srv_flush_out(s);
    /* 2. client requests, each on its own */
    for (int i = 0; i < CLIENT_BATCH && s->csock && srv_has_input(s->csock) && !s->stopping; i++) {
        drq_msg m;
        int rc = drq_msg_recv(s->csock, 1, ZMQ_DONTWAIT, &m, &e);
        if (rc == 1) break;
        if (rc < 0) {
            log_line("server", "clients: dropped malformed message from %s: %s", srv_hexid(m.rid, m.rid_len), e.msg);
            continue;
        }
        srv_on_client_msg(s, &m);
        drq_msg_free(&m);
        srv_flush_out(s);
    }
    /* 3. one chunk of a pending expansion */
    if (!s->stopping) {
        srv_expand_step(s);
        srv_flush_out(s);
    }
    s->in_pump = 0;
    if (s->stopping) return;
    /* edge-triggered fds: keep pumping while anything is pending */
    int more = srv_has_input(s->wsock) || (s->csock && srv_has_input(s->csock)) || s->nexp > 0;
    if (more != s->idle_on) {
        if (more)
            uv_idle_start(&s->idle, on_idle);
        else
            uv_idle_stop(&s->idle);
        s->idle_on = more;
    }
}

/* ---- handles and signals --------------------------------------------------------- */

/* Stops the loop: closes every handle, so uv_run returns once the callbacks
 * in flight are done; committed state is safe (idempotent). */
void srv_shutdown_loop(drq_server *s) {
    if (s->stopping) return;
    s->stopping = 1;
    log_line("server", "shutting down (%lld pumps, %lld transactions, %lld worker messages, longest tick gap %.2f s)",
             (long long)s->n_pumps, (long long)s->n_txns, (long long)s->n_msgs, s->max_tick_gap);
    uv_handle_t *hs[] = {(uv_handle_t *)&s->wpoll, (uv_handle_t *)&s->tick, (uv_handle_t *)&s->idle,
                         (uv_handle_t *)&s->async_stop};
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++)
        if (!uv_is_closing(hs[i])) uv_close(hs[i], close_cb);
    if (s->has_cpoll && !uv_is_closing((uv_handle_t *)&s->cpoll)) uv_close((uv_handle_t *)&s->cpoll, close_cb);
    for (int k = 0; k < s->nmon; k++)
        if (!uv_is_closing((uv_handle_t *)&s->mpoll[k])) uv_close((uv_handle_t *)&s->mpoll[k], close_cb);
    if (s->o.handle_signals) {
        uv_close((uv_handle_t *)&s->sig_int, close_cb);
        uv_close((uv_handle_t *)&s->sig_term, close_cb);
    }
    srv_curve_stop(s);
}

static void on_async(uv_async_t *h) { srv_shutdown_loop(h->data); }

static void on_signal(uv_signal_t *h, int signum) {
    drq_server *s = h->data;
    log_line("server", "%s received", signum == SIGINT ? "SIGINT" : "SIGTERM");
    srv_shutdown_loop(s);
}

/* ---- life cycle ------------------------------------------------------------------------ */

/* A ROUTER socket with the server's limits (message size, no linger, high
 * water marks); NULL + err when ZeroMQ refuses any of it. */
static void *router(drq_server *s, const char *name, drq_err *err) {
    void *sock = zmq_socket(s->zctx, ZMQ_ROUTER);
    if (!sock) {
        drq_errf(err, "%s socket: zmq_socket: %s", name, zmq_strerror(errno));
        return NULL;
    }
    int64_t maxsz = DRQ_MAX_MSG_BYTES;
    int linger = 0, hwm = DRQ_ROUTER_HWM;
    if (srv_sockopt(sock, ZMQ_MAXMSGSIZE, "ZMQ_MAXMSGSIZE", &maxsz, sizeof maxsz, name, err) ||
        srv_sockopt(sock, ZMQ_LINGER, "ZMQ_LINGER", &linger, sizeof linger, name, err) ||
        srv_sockopt(sock, ZMQ_SNDHWM, "ZMQ_SNDHWM", &hwm, sizeof hwm, name, err) ||
        srv_sockopt(sock, ZMQ_RCVHWM, "ZMQ_RCVHWM", &hwm, sizeof hwm, name, err)) {
        zmq_close(sock);
        return NULL;
    }
    return sock;
}

int srv_sockopt(void *sock, int opt, const char *opt_name, const void *val, size_t len, const char *name,
                drq_err *err) {
    if (zmq_setsockopt(sock, opt, val, len) == 0) return 0;
    return drq_errf(err, "%s socket: zmq_setsockopt(%s) failed: %s", name, opt_name, zmq_strerror(errno));
}

drq_server *drq_server_new(const drq_server_opts *o, drq_err *err) {
    /* each batch allocates and frees a few hundred KiB; without this glibc
     * trims the heap after every batch and the page faults dominate */
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    mallopt(M_TOP_PAD, 16 << 20);
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    drq_server *s = xcalloc(1, sizeof *s);
    s->o = *o;
    drq_server_opts_defaults(&s->o);
    char host[64] = "localhost";
    gethostname(host, sizeof host - 1);
    snprintf(s->ident, sizeof s->ident, "%s:%d drq %s", host, (int)getpid(), DRQ_SOFTWARE_VERSION);
    s->st = store_open(o->db_path, 0, err);
    if (!s->st) goto fail;
    if (o->zctx) {
        s->zctx = o->zctx;
    } else {
        s->zctx = zmq_ctx_new();
        s->own_ctx = 1;
    }
    if (srv_curve_init(s, err)) goto fail; /* the loopback rule; CURVE: keys and the ZAP handler (curve.c) */
    s->wsock = router(s, "workers", err);
    if (!s->wsock || srv_curve_router(s, s->wsock, "workers", err)) goto fail;
    for (int i = 0; i < 4 && o->workers_ep[i]; i++)
        if (zmq_bind(s->wsock, o->workers_ep[i])) {
            drq_errf(err, "cannot bind workers socket to %s: %s", o->workers_ep[i], zmq_strerror(errno));
            goto fail;
        }
    if (o->clients_ep) {
        s->csock = router(s, "clients", err);
        if (!s->csock || srv_curve_router(s, s->csock, "clients", err)) goto fail;
        if (zmq_bind(s->csock, o->clients_ep)) {
            drq_errf(err, "cannot bind clients socket to %s: %s", o->clients_ep, zmq_strerror(errno));
            goto fail;
        }
    }
    if (o->http_addr && srv_http_start(s, err)) goto fail; /* the dashboard's own thread (http.c) */
    drq_err e;
    if (store_begin(s->st, &e)) {
        drq_errf(err, "%s: %s", o->db_path, e.msg);
        goto fail;
    }
    if (o->recover_leases) {
        int64_t n = store_requeue_all_leased(s->st);
        if (n) log_line("server", "requeued %lld job(s) leased by a previous run", (long long)n);
    }
    store_event(s->st, 0, 0, NULL, "server_start", "%s", s->ident);
    if (store_commit(s->st, &e)) {
        drq_errf(err, "%s: %s", o->db_path, e.msg);
        goto fail;
    }
    int n;
    int64_t *ids = store_sweeps_expanding(s->st, &n);
    for (int i = 0; i < n; i++) {
        srv_expansion_add(s, ids[i]);
        log_line("server", "sweep %lld: resuming its expansion", (long long)ids[i]);
    }
    free(ids);
    /* parse the specs of unfinished sweeps now, before the loop runs, so that
     * dispatch and expansion never parse a large spec on it */
    ids = store_sweeps_unfinished(s->st, &n);
    for (int i = 0; i < n; i++) srv_spec_get(s, ids[i]);
    free(ids);
    s->dirty = 1;
    s->ckpt_maybe = 1;

    int uvrc = uv_loop_init(&s->loop);
    if (uvrc) {
        drq_errf(err, "uv_loop_init: %s", uv_strerror(uvrc));
        goto fail;
    }
    int fd;
    size_t fdsz = sizeof fd;
    zmq_getsockopt(s->wsock, ZMQ_FD, &fd, &fdsz);
    uv_poll_init(&s->loop, &s->wpoll, fd);
    s->wpoll.data = s;
    uv_poll_start(&s->wpoll, UV_READABLE, on_poll);
    if (s->csock) {
        fdsz = sizeof fd;
        zmq_getsockopt(s->csock, ZMQ_FD, &fd, &fdsz);
        uv_poll_init(&s->loop, &s->cpoll, fd);
        s->cpoll.data = s;
        uv_poll_start(&s->cpoll, UV_READABLE, on_poll);
        s->has_cpoll = 1;
    }
    srv_add_monitor(s, s->wsock, "workers");
    if (s->csock) srv_add_monitor(s, s->csock, "clients");
    uv_timer_init(&s->loop, &s->tick);
    s->tick.data = s;
    uint64_t ms = (uint64_t)(s->o.heartbeat_s * 1000);
    uv_timer_start(&s->tick, srv_on_tick, ms, ms);
    uv_idle_init(&s->loop, &s->idle);
    s->idle.data = s;
    uv_async_init(&s->loop, &s->async_stop, on_async);
    s->async_stop.data = s;
    if (s->o.handle_signals) {
        uv_signal_init(&s->loop, &s->sig_int);
        uv_signal_init(&s->loop, &s->sig_term);
        s->sig_int.data = s->sig_term.data = s;
        uv_signal_start(&s->sig_int, on_signal, SIGINT);
        uv_signal_start(&s->sig_term, on_signal, SIGTERM);
    }
    srv_curve_start(s);
    log_line("server", "drq-server %s on %s (db %s, schema %d, max attempts %d, lease %.0f s)", DRQ_SOFTWARE_VERSION,
             o->workers_ep[0] ? o->workers_ep[0] : "-", o->db_path, store_schema_version(s->st), s->o.max_attempts,
             s->o.lease_s);
    return s;
fail:
    srv_http_free(s);
    if (s->wsock) zmq_close(s->wsock);
    if (s->csock) zmq_close(s->csock);
    srv_curve_free(s);
    if (s->own_ctx) zmq_ctx_term(s->zctx);
    store_close(s->st);
    free(s);
    return NULL;
}

int drq_server_run(drq_server *s) {
    /* the idle handle starts the first pump (work may be waiting already) */
    uv_idle_start(&s->idle, on_idle);
    s->idle_on = 1;
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return s->fatal;
}

void drq_server_stop(drq_server *s) { uv_async_send(&s->async_stop); }

const char *drq_server_fault(drq_server *s) { return s->fault_msg; }

void drq_server_free(drq_server *s) {
    if (!s) return;
    srv_http_free(s); /* its thread reads s->http only */
    int rc = uv_loop_close(&s->loop);
    if (rc) log_line("server", "uv_loop_close: %s (a handle is still open)", uv_strerror(rc));
    srv_drop_out(s);
    free(s->out);
    while (s->nw) srv_worker_remove(s, s->w[0]);
    free(s->w);
    for (int i = 0; i < s->nspecs; i++) {
        json_decref(s->specs[i].json);
        drq_spec_free(&s->specs[i].spec);
    }
    free(s->specs);
    free(s->exp);
    free(s->rates);
    for (int k = 0; k < s->nmon; k++) zmq_close(s->mon[k]);
    zmq_socket_monitor(s->wsock, NULL, 0);
    if (s->csock) zmq_socket_monitor(s->csock, NULL, 0);
    zmq_close(s->wsock);
    if (s->csock) zmq_close(s->csock);
    srv_curve_free(s);
    if (s->own_ctx) zmq_ctx_term(s->zctx);
    store_close(s->st);
    free(s);
}
