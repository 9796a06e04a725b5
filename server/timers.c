/* timers.c — the heartbeat tick (lost workers, lease extension, expired
 * leases, checkpoint GC, rate samples, dispatch of elapsed back-offs) and the
 * ZeroMQ socket monitors that turn connection-level drops into log lines.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "internal.h"

/* ---- the tick ------------------------------------------------------------------------ */

static void on_monitor(uv_poll_t *h, int status, int events);

/* Every heartbeat period, in one transaction: workers silent for `liveness`
 * periods are lost (their jobs requeued), the leases of the others extended
 * and a HEARTBEAT queued to each, expired leases requeued (owners that never
 * came back after a restart), checkpoints of finished jobs deleted, rate
 * samples taken, and dispatch re-run for back-offs that elapsed. */
void srv_on_tick(uv_timer_t *t) {
    drq_server *s = t->data;
    if (s->stopping) return;
    for (int k = 0; k < s->nmon; k++) on_monitor(&s->mpoll[k], 0, 0); /* edge-triggered fd: drain anyway */
    srv_zap_drain(s);    /* the same for the ZAP handler (curve.c) */
    srv_http_publish(s); /* a fresh snapshot for the dashboard (http.c) */
    drq_err e;
    if (s->degraded) {
        srv_tick_degraded(s);
        return;
    }
    if (store_begin(s->st, &e)) {
        log_line("server", "tick skipped, database busy: %s", e.msg);
        return;
    }
    double now = drq_clock_mono(), wall = drq_clock_wall();
    double dead_after = s->o.liveness * s->o.heartbeat_s;
    /* a loop that was kept busy delays every heartbeat: say so */
    if (s->last_tick > 0) {
        double gap = now - s->last_tick;
        if (gap > s->max_tick_gap) s->max_tick_gap = gap;
        if (gap > 2 * s->o.heartbeat_s)
            log_line("server", "event loop stalled: tick %.2f s after the previous one (period %.2f s)", gap,
                     s->o.heartbeat_s);
    }
    s->last_tick = now;
    /* lost workers */
    for (int i = 0; i < s->nw; i++) {
        worker *w = s->w[i];
        if (now - w->last_seen > dead_after) {
            char why[96];
            snprintf(why, sizeof why, "no heartbeat for %.1f s", now - w->last_seen);
            srv_worker_lost(s, w, why);
            i--;
        }
    }
    /* heartbeats extend the leases of live workers */
    for (int i = 0; i < s->nw; i++) {
        worker *w = s->w[i];
        for (int k = 0; k < w->njobs; k++) {
            if (store_extend(s->st, w->jobs[k].id, w->name, wall + s->o.lease_s)) {
                int64_t id = w->jobs[k].id;
                srv_cancel_on_workers(s, id, NULL, "no longer leased to this worker");
                k--;
            }
        }
        store_worker_seen(s->st, w->name, NULL, NULL, "alive", w->done_unflushed);
        w->done_unflushed = 0;
        srv_queue_out(s, 0, w->rid, w->rid_len, MSG_HEARTBEAT, json_object(), NULL, 0);
    }
    /* expired leases (owners that never came back after a restart) */
    int n;
    int64_t *ids = store_expired_leases(s->st, wall, &n);
    for (int i = 0; i < n; i++) {
        store_job j;
        if (store_job_get(s->st, ids[i], &j)) continue;
        char msg[256];
        snprintf(msg, sizeof msg, "lease expired (owner %s)", j.lease_owner);
        int failed = store_job_attempt_failed(s->st, ids[i], msg, wall, s->o.max_attempts, s->o.backoff_s);
        log_line("server", "job %lld %s: %s", (long long)ids[i], failed ? "failed" : "requeued", msg);
    }
    free(ids);
    s->ckpt_maybe = store_checkpoints_gc(s->st) > 0;
    /* rate samples */
    json_t *st = store_status(s->st, 0, 0);
    size_t k;
    json_t *o;
    json_array_foreach(json_object_get(st, "sweeps"), k, o) {
        if (json_is_true(json_object_get(o, "finished"))) continue;
        rate_ring *r = srv_rate_for(s, json_integer_value(json_object_get(o, "id")));
        r->t[r->head] = now;
        r->done[r->head] = json_integer_value(json_object_get(o, "done"));
        r->rows[r->head] = json_integer_value(json_object_get(o, "rows_done"));
        r->head = (r->head + 1) % RATE_SAMPLES;
        if (r->n < RATE_SAMPLES) r->n++;
    }
    json_decref(st);
    s->dirty = 1; /* back-offs may have elapsed */
    srv_dispatch(s);
    if (store_commit(s->st, &e)) {
        srv_db_failed(s, "commit of the heartbeat tick", &e);
        return;
    }
    srv_flush_out(s);
    srv_pump(s);
}

/* ---- socket monitors ------------------------------------------------------------------ */

/* Logs the connection events of a socket monitor: ZeroMQ closes a connection
 * that sends a frame above ZMQ_MAXMSGSIZE or bytes that are not ZMTP before
 * any message reaches us, and this is where such drops become log lines. */
static void on_monitor(uv_poll_t *h, int status, int events) {
    drq_server *s = h->data;
    int k = h == &s->mpoll[0] ? 0 : 1;
    for (;;) {
        int ev = 0;
        size_t sz = sizeof ev;
        if (zmq_getsockopt(s->mon[k], ZMQ_EVENTS, &ev, &sz) || !(ev & ZMQ_POLLIN)) break;
        zmq_msg_t a, b;
        zmq_msg_init(&a);
        zmq_msg_init(&b);
        if (zmq_msg_recv(&a, s->mon[k], ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&a);
            zmq_msg_close(&b);
            break;
        }
        int more = zmq_msg_more(&a);
        if (more) zmq_msg_recv(&b, s->mon[k], ZMQ_DONTWAIT);
        if (zmq_msg_size(&a) >= 6) {
            uint16_t id;
            uint32_t value;
            memcpy(&id, zmq_msg_data(&a), 2);
            memcpy(&value, (char *)zmq_msg_data(&a) + 2, 4);
            const char *what = id == ZMQ_EVENT_DISCONNECTED                 ? "a connection closed"
                               : id == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL  ? "a handshake failed (protocol error)"
                               : id == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL ? "a handshake failed"
                                                                            : "connection event";
            log_line("server", "%s: %s (event 0x%x, value %u)", s->mon_name[k], what, id, value);
        }
        zmq_msg_close(&a);
        zmq_msg_close(&b);
    }
}

/* Starts a monitor on sock, watched by the loop. */
void srv_add_monitor(drq_server *s, void *sock, const char *name) {
    int k = s->nmon;
    char ep[96];
    snprintf(ep, sizeof ep, "inproc://drq-monitor-%p-%d", (void *)s, k);
    if (zmq_socket_monitor(sock, ep,
                           ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)) {
        log_line("server", "%s: no socket monitor: %s", name, zmq_strerror(errno));
        return;
    }
    s->mon[k] = zmq_socket(s->zctx, ZMQ_PAIR);
    int linger = 0;
    drq_err e;
    if (!s->mon[k]) {
        log_line("server", "%s: no socket monitor: zmq_socket: %s", name, zmq_strerror(errno));
        return;
    }
    if (srv_sockopt(s->mon[k], ZMQ_LINGER, "ZMQ_LINGER", &linger, sizeof linger, "monitor", &e)) {
        log_line("server", "%s: no socket monitor: %s", name, e.msg);
        zmq_close(s->mon[k]);
        return;
    }
    if (zmq_connect(s->mon[k], ep)) {
        zmq_close(s->mon[k]);
        return;
    }
    s->mon_name[k] = name;
    int fd;
    size_t fdsz = sizeof fd;
    zmq_getsockopt(s->mon[k], ZMQ_FD, &fd, &fdsz);
    uv_poll_init(&s->loop, &s->mpoll[k], fd);
    s->mpoll[k].data = s;
    uv_poll_start(&s->mpoll[k], UV_READABLE, on_monitor);
    s->nmon++;
    on_monitor(&s->mpoll[k], 0, 0); /* consume a pending edge */
}
