/* faults.c — database failures.  A failed write transaction is rolled back
 * and its replies dropped; a storage fault (disk full, I/O error) puts the
 * coordinator into degraded mode (status answers, no new work, workers keep
 * what is unacknowledged) until a probe write commits; any other database
 * error stops the loop.  docs/robustness.md.
 */
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "internal.h"

/* ---- fatal errors: stop the loop, keep what is committed ------------------ */

static void fatal_db(drq_server *s, const char *what, const drq_err *e) {
    log_line("server", "fatal: %s: %s; stopping (committed state is safe)", what, e->msg);
    store_rollback(s->st);
    s->fatal = 1;
    srv_shutdown_loop(s);
}

/* A write transaction failed.  A storage fault (disk full, I/O error) puts the
 * coordinator into degraded mode: what the transaction did is rolled back and
 * its replies (ACKs, JOBs) are never sent, so workers keep their results and
 * resend them later; new work is refused until a write succeeds again (see
 * srv_tick_degraded).  `drq run` (stop_on_storage_fault) stops instead.  Any other
 * database error stops the loop as before. */
void srv_db_failed(drq_server *s, const char *what, const drq_err *e) {
    const char *msg;
    int rc = store_fault(s->st, &msg);
    store_rollback(s->st);
    srv_drop_out(s);
    if (!store_fault_is_storage(rc)) {
        fatal_db(s, what, e);
        return;
    }
    snprintf(s->fault_msg, sizeof s->fault_msg, "%.600s", *msg ? msg : e->msg);
    if (s->o.stop_on_storage_fault) {
        log_line("server", "storage fault: %s failed: %s; stopping (every committed row is kept)", what,
                 s->fault_msg);
        s->fatal = 2;
        srv_shutdown_loop(s);
        return;
    }
    if (!s->degraded) {
        log_line("server",
                 "storage fault: %s failed: %s; refusing new work (submit, cancel, retry, new jobs) until the "
                 "database can be written again; every committed row is kept, workers keep what is not "
                 "acknowledged and resend it",
                 what, s->fault_msg);
        s->degraded = 1;
        s->degraded_since = s->degraded_logged = drq_clock_mono();
        s->n_deferred = 0;
    }
    s->dirty = 0;
}

int srv_client_txn(drq_server *s, const unsigned char *rid, size_t rid_len, int64_t id, const char *what,
                   const char *nothing, srv_txn_op op, void *arg, int64_t *value) {
    drq_err e;
    if (store_begin(s->st, &e)) {
        srv_reply_error(s, rid, rid_len, id, "database busy: %s", e.msg);
        return -1;
    }
    int write = 1;
    int64_t v = op(s, arg, &write, &e);
    if (v < 0 && !store_fault(s->st, NULL)) { /* refused by the request itself ("no sweep 7") */
        store_rollback(s->st);
        srv_reply_error(s, rid, rid_len, id, "%s", e.msg);
        return -1;
    }
    if (v >= 0 && !write) {
        store_rollback(s->st); /* nothing written */
        *value = v;
        return 0;
    }
    if (v < 0 || store_commit(s->st, &e)) {
        srv_db_failed(s, what, &e);
        srv_refuse(s, rid, rid_len, id, what, e.msg, nothing);
        return -1;
    }
    *value = v;
    return 0;
}

/* Leaves degraded mode after a successful write: every in-memory worker
 * registration may disagree with the rolled-back database, so all of them are
 * dropped and the workers asked to register again (as after a server
 * restart): they list the jobs they hold and resend their unacknowledged
 * messages, which are inserted idempotently. */
static void storage_recovered(drq_server *s) {
    log_line("server", "storage: the database can be written again after %.1f s (%lld worker messages deferred); "
                       "resuming, workers re-register",
             drq_clock_mono() - s->degraded_since, (long long)s->n_deferred);
    s->degraded = 0;
    s->fault_msg[0] = 0;
    while (s->nw) {
        worker *w = s->w[0];
        srv_queue_out(s, 0, w->rid, w->rid_len, MSG_RESET, json_object(), NULL, 0);
        srv_worker_remove(s, w);
    }
    srv_flush_out(s);
    s->dirty = 1;
}

/* ---- degraded mode ---------------------------------------------------------- */

/* Degraded mode: worker messages are read but not applied (nothing can be
 * committed, so nothing is acknowledged and the workers resend); they only
 * prove that the worker is alive. */
void srv_drain_degraded(drq_server *s) {
    drq_err e;
    for (int i = 0; i < BATCH && srv_has_input(s->wsock); i++) {
        drq_msg m;
        int rc = drq_msg_recv(s->wsock, 1, ZMQ_DONTWAIT, &m, &e);
        if (rc == 1) break;
        if (rc < 0) continue;
        worker *w = srv_worker_by_rid(s, m.rid, m.rid_len);
        if (w) w->last_seen = drq_clock_mono();
        if (m.type != MSG_HEARTBEAT) s->n_deferred++;
        drq_msg_free(&m);
    }
}

/* The tick in degraded mode: heartbeats only (in memory), then one small
 * write transaction as a probe; when it commits, leases are pushed out so that
 * workers can re-register before they lapse, and work resumes. */
void srv_tick_degraded(drq_server *s) {
    double now = drq_clock_mono();
    double dead_after = s->o.liveness * s->o.heartbeat_s;
    s->last_tick = now;
    for (int i = 0; i < s->nw; i++) {
        worker *w = s->w[i];
        if (now - w->last_seen > dead_after) {
            log_line("server", "worker %s silent for %.1f s (storage fault: its jobs are requeued when their leases "
                               "expire)", w->name, now - w->last_seen);
            srv_worker_remove(s, w);
            i--;
            continue;
        }
        srv_queue_out(s, 0, w->rid, w->rid_len, MSG_HEARTBEAT, json_object(), NULL, 0);
    }
    srv_flush_out(s);
    drq_err e;
    if (store_begin(s->st, &e) == 0) {
        store_event(s->st, 0, 0, NULL, "storage", "database writable again after %.1f s: %s", now - s->degraded_since,
                    s->fault_msg);
        store_extend_all_leases(s->st, drq_clock_wall() + s->o.lease_s);
        if (store_commit(s->st, &e) == 0) {
            storage_recovered(s);
            srv_pump(s);
            return;
        }
    }
    store_rollback(s->st);
    if (now - s->degraded_logged >= 10) {
        log_line("server", "storage fault: still cannot write the database after %.0f s: %s", now - s->degraded_since,
                 e.msg);
        s->degraded_logged = now;
    }
}
