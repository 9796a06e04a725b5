/* clients.c — the client protocol: STATUS (with rates and ETA), FETCH (rows
 * in pages after a cursor), CANCEL_SWEEP, RETRY, WORKERS; SUBMIT is handed to
 * sweeps.c.  Each request that writes runs in a transaction of its own.
 */
#include <stdlib.h>
#include <string.h>

#include "common/images.h"
#include "internal.h"

/* ---- client requests ---------------------------------------------------------- */

rate_ring *srv_rate_for(drq_server *s, int64_t sweep) {
    for (int i = 0; i < s->nrates; i++)
        if (s->rates[i].sweep == sweep) return &s->rates[i];
    s->rates = xrealloc(s->rates, (size_t)(s->nrates + 1) * sizeof *s->rates);
    rate_ring *r = &s->rates[s->nrates++];
    memset(r, 0, sizeof *r);
    r->sweep = sweep;
    return r;
}

/* Jobs/s and rows/s over the last 60 s of samples (one a tick), stretched
 * back over the whole ring when the last 60 s hold fewer than 3 finished jobs,
 * so jobs of several seconds give a steady rate, not 0 between completions. */
static void rate_get(drq_server *s, int64_t sweep, double *jobs_s, double *rows_s) {
    *jobs_s = *rows_s = 0;
    rate_ring *r = srv_rate_for(s, sweep);
    if (r->n < 2) return;
    int newest = (r->head + RATE_SAMPLES - 1) % RATE_SAMPLES;
    int oldest = newest;
    for (int k = 1; k < r->n; k++) {
        int i = (newest + RATE_SAMPLES - k) % RATE_SAMPLES;
        if (r->t[newest] - r->t[i] > 60 && r->done[newest] - r->done[oldest] >= 3) break;
        oldest = i;
    }
    double dt = r->t[newest] - r->t[oldest];
    if (dt <= 0) return;
    *jobs_s = (double)(r->done[newest] - r->done[oldest]) / dt;
    *rows_s = (double)(r->rows[newest] - r->rows[oldest]) / dt;
}

/* The WORKERS reply: every registered worker with the jobs it holds and their progress. */
json_t *srv_workers_json(drq_server *s) {
    json_t *arr = json_array();
    double now = drq_clock_mono();
    for (int i = 0; i < s->nw; i++) {
        worker *w = s->w[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(w->name));
        json_t *dev = json_loads(w->devices, 0, NULL);
        json_object_set_new(o, "devices", dev ? dev : json_array());
        json_object_set_new(o, "version", json_string(w->version));
        json_object_set_new(o, "credit", json_integer(w->credit));
        json_object_set_new(o, "last_seen_s", json_real(now - w->last_seen));
        json_object_set_new(o, "joined", json_real(w->joined));
        json_object_set_new(o, "jobs_done", json_integer(w->jobs_done));
        json_t *jobs = json_array();
        for (int k = 0; k < w->njobs; k++) {
            json_t *j = json_object();
            json_object_set_new(j, "job", json_integer(w->jobs[k].id));
            json_object_set_new(j, "done", json_integer(w->jobs[k].done));
            json_object_set_new(j, "total", json_integer(w->jobs[k].total));
            json_array_append_new(jobs, j);
        }
        json_object_set_new(o, "jobs", jobs);
        json_array_append_new(arr, o);
    }
    return arr;
}

json_t *srv_status_json(drq_server *s, int64_t sweep, int nfail) {
    json_t *r = store_status(s->st, sweep, nfail > 100 ? 100 : nfail);
    size_t k;
    json_t *o;
    json_array_foreach(json_object_get(r, "sweeps"), k, o) {
        double js, rs;
        rate_get(s, json_integer_value(json_object_get(o, "id")), &js, &rs);
        json_object_set_new(o, "jobs_per_s", json_real(js));
        json_object_set_new(o, "rows_per_s", json_real(rs));
        int64_t left = json_integer_value(json_object_get(o, "jobs")) - json_integer_value(json_object_get(o, "done")) -
                       json_integer_value(json_object_get(o, "failed")) -
                       json_integer_value(json_object_get(o, "cancelled"));
        json_object_set_new(o, "eta_s", js > 0 && left > 0 ? json_real((double)left / js) : json_null());
        /* timestamps as whole seconds since the epoch (a real prints as 1.79613e9) */
        json_object_set_new(o, "created", json_integer((json_int_t)json_number_value(json_object_get(o, "created"))));
        size_t f;
        json_t *fo;
        json_array_foreach(json_object_get(o, "failures"), f, fo)
            json_object_set_new(fo, "t", json_integer((json_int_t)json_number_value(json_object_get(fo, "t"))));
        /* the state says finished (store has expanding/active/cancelled); "finished": true stays */
        const char *state = json_string_value(json_object_get(o, "state"));
        if (json_is_true(json_object_get(o, "finished")) && (!state || strcmp(state, "cancelled")))
            json_object_set_new(o, "state", json_string("finished"));
    }
    json_object_set_new(r, "workers", json_integer(s->nw));
    json_object_set_new(r, "server", json_string(s->ident));
    if (s->degraded) json_object_set_new(r, "storage_fault", json_string(s->fault_msg));
    return r;
}

/* CANCEL_SWEEP in the transaction: arg is a cancel_arg. */
typedef struct {
    int64_t sweep;
    int64_t *leased; /* jobs that were leased (malloc'd) */
    int nleased;
} cancel_arg;

static int64_t cancel_op(drq_server *s, void *arg, int *write, drq_err *e) {
    cancel_arg *a = arg;
    return store_sweep_cancel(s->st, a->sweep, &a->leased, &a->nleased, e);
}

/* RETRY in the transaction: arg points to the sweep id. */
static int64_t retry_op(drq_server *s, void *arg, int *write, drq_err *e) {
    return store_sweep_retry(s->st, *(int64_t *)arg, e);
}

/* Answers one client request; SUBMIT goes on in sweeps.c.  In degraded mode
 * the requests that write are refused at once. */
void srv_on_client_msg(drq_server *s, drq_msg *m) {
    const json_t *b = m->body;
    int64_t id = drq_jint(b, "id"), sweep = drq_jint(b, "sweep");
    if (s->degraded && (m->type == MSG_SUBMIT || m->type == MSG_CANCEL_SWEEP || m->type == MSG_RETRY)) {
        srv_refuse(s, m->rid, m->rid_len, id,
                   m->type == MSG_SUBMIT ? "submit" : m->type == MSG_RETRY ? "retry" : "cancel", s->fault_msg,
                   "nothing was changed, try again when the disk has space");
        return;
    }
    switch (m->type) {
    case MSG_SUBMIT:
        srv_submit_start(s, m, id);
        return;
    case MSG_STATUS: {
        int nfail = json_object_get(b, "failures") ? (int)drq_jint(b, "failures") : 5;
        json_t *r = srv_status_json(s, sweep, nfail);
        if (sweep > 0 && json_array_size(json_object_get(r, "sweeps")) == 0) {
            json_decref(r);
            srv_reply_error(s, m->rid, m->rid_len, id, "no sweep %lld", (long long)sweep);
            return;
        }
        srv_reply_ok(s, m, id, r, NULL, 0);
        return;
    }
    case MSG_FETCH: {
        store_counts c;
        if (store_sweep_counts(s->st, sweep, &c)) {
            srv_reply_error(s, m->rid, m->rid_len, id, "no sweep %lld", (long long)sweep);
            return;
        }
        int64_t limit = drq_jint(b, "limit");
        int images = drq_jbool(b, "images"); /* rows with their saved images (common/images.h) */
        if (limit < 1) limit = 1;
        if (limit > MAX_FETCH) limit = MAX_FETCH;
        if (images && limit > DRQ_SAVE_FETCH_ROWS) limit = DRQ_SAVE_FETCH_ROWS;
        json_t *after = json_object_get(b, "after");
        drq_row *rows;
        int64_t n = store_results_fetch(s->st, sweep, after ? json_string_value(json_array_get(after, 0)) : NULL,
                                        after ? json_string_value(json_array_get(after, 1)) : NULL,
                                        after ? json_integer_value(json_array_get(after, 2)) : 0,
                                        after ? json_integer_value(json_array_get(after, 3)) : 0, limit, &rows);
        size_t len, il = 0;
        if (images) store_images_attach(s->st, rows, n);
        void *packed = images ? drq_images_pack_rows(rows, n, &len, &il) : drq_rows_pack(rows, n, &len);
        json_t *r = json_object();
        json_object_set_new(r, "n", json_integer(n));
        if (il) json_object_set_new(r, "images", json_integer((json_int_t)il));
        if (n == limit) {
            const drq_row *l = &rows[n - 1];
            json_object_set_new(r, "next", json_pack("[s,s,I,I]", l->purifier, l->attack, (json_int_t)l->seed,
                                                     (json_int_t)l->image));
        }
        drq_rows_free(rows, n);
        srv_reply_ok(s, m, id, r, packed, len);
        return;
    }
    case MSG_CANCEL_SWEEP: {
        cancel_arg a = {.sweep = sweep};
        int64_t n;
        int rc = srv_client_txn(s, m->rid, m->rid_len, id, "cancel", "nothing was changed", cancel_op, &a, &n);
        if (rc == 0)
            for (int i = 0; i < a.nleased; i++) srv_cancel_on_workers(s, a.leased[i], NULL, "sweep cancelled");
        free(a.leased);
        if (rc) return;
        for (int i = 0; i < s->nexp; i++)
            if (s->exp[i].sweep == sweep) s->exp[i--] = s->exp[--s->nexp];
        log_line("server", "sweep %lld cancelled: %lld jobs", (long long)sweep, (long long)n);
        json_t *r = json_object();
        json_object_set_new(r, "cancelled", json_integer(n));
        srv_reply_ok(s, m, id, r, NULL, 0);
        return;
    }
    case MSG_RETRY: {
        int64_t n;
        if (srv_client_txn(s, m->rid, m->rid_len, id, "retry", "nothing was changed", retry_op, &sweep, &n)) return;
        s->dirty = 1;
        log_line("server", "sweep %lld: %lld failed jobs requeued", (long long)sweep, (long long)n);
        json_t *r = json_object();
        json_object_set_new(r, "requeued", json_integer(n));
        srv_reply_ok(s, m, id, r, NULL, 0);
        return;
    }
    case MSG_WORKERS: {
        json_t *r = json_object();
        json_object_set_new(r, "workers", srv_workers_json(s));
        srv_reply_ok(s, m, id, r, NULL, 0);
        return;
    }
    default:
        log_line("server", "clients: unexpected %s from %s dropped", drq_msg_name(m->type), srv_hexid(m->rid, m->rid_len));
    }
}
