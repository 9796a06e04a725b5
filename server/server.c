/* server.c — see server.h and docs/queue.md.
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
#include "server.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include <zmq.h>

#include "common/proto.h"
#include "common/row.h"
#include "common/spec.h"
#include "store.h"

#define BATCH 512            /* worker messages per transaction */
#define CLIENT_BATCH 16      /* client requests per pump */
#define EXPAND_CHUNK 20000   /* at most this many jobs inserted per pump while a sweep expands, */
#define EXPAND_BUDGET_S 0.05 /* and for at most about this long (then the loop serves others) */
#define EXPAND_SUB 500
#define MAX_LEASE_PER_PUMP 64
#define RATE_SAMPLES 64
#define MAX_FETCH 100000

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
};

#define JLOG(s, ...)                                          \
    do {                                                      \
        if (!(s)->o.quiet) log_line("server", __VA_ARGS__); \
    } while (0)

static void pump(drq_server *s);
static void expand_step(drq_server *s);
static void on_idle(uv_idle_t *h);

void drq_server_opts_defaults(drq_server_opts *o) {
    if (!o->max_attempts) o->max_attempts = 3;
    if (!(o->lease_s > 0)) o->lease_s = 30;
    if (!(o->backoff_s > 0)) o->backoff_s = 1;
    if (!(o->heartbeat_s > 0)) o->heartbeat_s = 1;
    if (!o->liveness) o->liveness = 3;
}

/* Printable hex of a routing id, for logs about unknown peers. */
static const char *hexid(const unsigned char *rid, size_t n) {
    static char buf[2 * 32 + 4];
    size_t k = n < 32 ? n : 32, i;
    for (i = 0; i < k; i++) snprintf(buf + 2 * i, 3, "%02x", rid[i]);
    if (n > k) strcpy(buf + 2 * k, "..");
    if (n == 0) strcpy(buf, "-");
    return buf;
}

/* ---- fatal errors: stop the loop, keep what is committed ------------------ */

static void shutdown_loop(drq_server *s);
static void queue_out(drq_server *s, int to_client, const unsigned char *rid, size_t rid_len, drq_msg_type t,
                      json_t *body, void *bin, size_t binlen);
static void flush_out(drq_server *s);
static void drop_out(drq_server *s);
static void worker_remove(drq_server *s, worker *w);

static void fatal_db(drq_server *s, const char *what, const drq_err *e) {
    log_line("server", "fatal: %s: %s; stopping (committed state is safe)", what, e->msg);
    store_rollback(s->st);
    s->fatal = 1;
    shutdown_loop(s);
}

/* A write transaction failed.  A storage fault (disk full, I/O error) puts the
 * coordinator into degraded mode: what the transaction did is rolled back and
 * its replies (ACKs, JOBs) are never sent, so workers keep their results and
 * resend them later; new work is refused until a write succeeds again (see
 * on_tick).  `drq run` (stop_on_storage_fault) stops instead.  Any other
 * database error stops the loop as before. */
static void db_failed(drq_server *s, const char *what, const drq_err *e) {
    const char *msg;
    int rc = store_fault(s->st, &msg);
    store_rollback(s->st);
    drop_out(s);
    if (!store_fault_is_storage(rc)) {
        fatal_db(s, what, e);
        return;
    }
    snprintf(s->fault_msg, sizeof s->fault_msg, "%.600s", *msg ? msg : e->msg);
    if (s->o.stop_on_storage_fault) {
        log_line("server", "storage fault: %s failed: %s; stopping (every committed row is kept)", what,
                 s->fault_msg);
        s->fatal = 2;
        shutdown_loop(s);
        return;
    }
    if (!s->degraded) {
        log_line("server",
                 "storage fault: %s failed: %s; refusing new work (submit, cancel, retry, new jobs) until the "
                 "database can be written again; every committed row is kept, workers keep what is not "
                 "acknowledged and resend it",
                 what, s->fault_msg);
        s->degraded = 1;
        s->degraded_since = s->degraded_logged = now_s();
        s->n_deferred = 0;
    }
    s->dirty = 0;
}

/* Leaves degraded mode after a successful write: every in-memory worker
 * registration may disagree with the rolled-back database, so all of them are
 * dropped and the workers asked to register again (as after a server
 * restart): they list the jobs they hold and resend their unacknowledged
 * messages, which are inserted idempotently. */
static void storage_recovered(drq_server *s) {
    log_line("server", "storage: the database can be written again after %.1f s (%lld worker messages deferred); "
                       "resuming, workers re-register",
             now_s() - s->degraded_since, (long long)s->n_deferred);
    s->degraded = 0;
    s->fault_msg[0] = 0;
    while (s->nw) {
        worker *w = s->w[0];
        queue_out(s, 0, w->rid, w->rid_len, MSG_RESET, json_object(), NULL, 0);
        worker_remove(s, w);
    }
    flush_out(s);
    s->dirty = 1;
}

/* ---- outgoing messages ---------------------------------------------------- */

/* Queues a message to send after the current transaction commits.  Takes
 * ownership of body and bin. */
static void queue_out(drq_server *s, int to_client, const unsigned char *rid, size_t rid_len, drq_msg_type t,
                      json_t *body, void *bin, size_t binlen) {
    if (s->nout == s->capout) {
        s->capout = s->capout ? s->capout * 2 : 256;
        s->out = xrealloc(s->out, (size_t)s->capout * sizeof *s->out);
    }
    outmsg *m = &s->out[s->nout++];
    memcpy(m->rid, rid, rid_len);
    m->rid_len = rid_len;
    m->to_client = to_client;
    m->type = t;
    m->body = body;
    m->bin = bin;
    m->binlen = binlen;
}

static void flush_out(drq_server *s) {
    for (int i = 0; i < s->nout; i++) {
        outmsg *m = &s->out[i];
        if (drq_msg_send(m->to_client ? s->csock : s->wsock, m->rid, m->rid_len, m->type, m->body, m->bin,
                         m->binlen))
            log_line("server", "send %s to %s failed: %s", drq_msg_name(m->type), hexid(m->rid, m->rid_len),
                     zmq_strerror(errno));
        json_decref(m->body);
        free(m->bin);
    }
    s->nout = 0;
}

static void drop_out(drq_server *s) {
    for (int i = 0; i < s->nout; i++) {
        json_decref(s->out[i].body);
        free(s->out[i].bin);
    }
    s->nout = 0;
}

static void reply_error(drq_server *s, const drq_msg *m, int64_t id, const char *fmt, ...) DRQ_PRINTF(4, 5);
static void reply_error(drq_server *s, const drq_msg *m, int64_t id, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    json_t *b = json_object();
    json_object_set_new(b, "id", json_integer(id));
    json_object_set_new(b, "error", json_string(buf));
    queue_out(s, 1, m->rid, m->rid_len, MSG_ERROR, b, NULL, 0);
}

/* Replies to a client request with body r (which gets the request's id) and an
 * optional binary payload. */
static void reply_ok(drq_server *s, const drq_msg *m, int64_t id, json_t *r, void *payload, size_t len) {
    json_object_set_new(r, "id", json_integer(id));
    queue_out(s, 1, m->rid, m->rid_len, MSG_REPLY, r, payload, len);
}

/* ---- specs ------------------------------------------------------------------ */

/* The parsed spec of a sweep, loaded from the database on first use. */
static spec_entry *spec_get(drq_server *s, int64_t sweep) {
    for (int i = 0; i < s->nspecs; i++)
        if (s->specs[i].sweep == sweep) return &s->specs[i];
    char *text = store_sweep_spec(s->st, sweep);
    if (!text) return NULL;
    json_t *j = json_loads(text, 0, NULL);
    free(text);
    drq_spec sp;
    drq_err e;
    if (!j || drq_spec_parse(j, &sp, &e)) {
        log_line("server", "sweep %lld: stored spec unreadable: %s", (long long)sweep, j ? e.msg : "bad JSON");
        json_decref(j);
        return NULL;
    }
    s->specs = xrealloc(s->specs, (size_t)(s->nspecs + 1) * sizeof *s->specs);
    spec_entry *se = &s->specs[s->nspecs++];
    se->sweep = sweep;
    se->json = j;
    se->spec = sp;
    return se;
}

/* ---- workers ---------------------------------------------------------------- */

static worker *worker_by_rid(drq_server *s, const unsigned char *rid, size_t n) {
    for (int i = 0; i < s->nw; i++)
        if (s->w[i]->rid_len == n && !memcmp(s->w[i]->rid, rid, n)) return s->w[i];
    return NULL;
}

static worker *worker_by_name(drq_server *s, const char *name) {
    for (int i = 0; i < s->nw; i++)
        if (!strcmp(s->w[i]->name, name)) return s->w[i];
    return NULL;
}

/* Records that w holds job id (j: its row when known, else NULL).  Invariant:
 * a job in a live worker's list is leased to that worker in the database; every
 * path that changes that (cancel, requeue, a failed lease extension) removes it. */
static void worker_add_job(worker *w, int64_t id, const store_job *j) {
    for (int i = 0; i < w->njobs; i++)
        if (w->jobs[i].id == id) return;
    if (w->njobs == w->capjobs) {
        w->capjobs = w->capjobs ? w->capjobs * 2 : 4;
        w->jobs = xrealloc(w->jobs, (size_t)w->capjobs * sizeof *w->jobs);
    }
    held_job *h = &w->jobs[w->njobs++];
    memset(h, 0, sizeof *h);
    h->id = id;
    if (j) {
        h->job = *j;
        h->have_job = 1;
    }
}

static const held_job *worker_find_job(const worker *w, int64_t id) {
    for (int i = 0; i < w->njobs; i++)
        if (w->jobs[i].id == id) return &w->jobs[i];
    return NULL;
}

static int worker_drop_job(worker *w, int64_t id) {
    for (int i = 0; i < w->njobs; i++)
        if (w->jobs[i].id == id) {
            w->jobs[i] = w->jobs[--w->njobs];
            return 1;
        }
    return 0;
}

static void worker_remove(drq_server *s, worker *w) {
    for (int i = 0; i < s->nw; i++)
        if (s->w[i] == w) {
            s->w[i] = s->w[--s->nw];
            break;
        }
    free(w->devices);
    free(w->jobs);
    free(w->sweeps_sent);
    free(w);
}

/* Tells the worker holding job id (if any other than `except`) to drop it. */
static void cancel_on_workers(drq_server *s, int64_t id, const worker *except, const char *reason) {
    for (int i = 0; i < s->nw; i++) {
        worker *w = s->w[i];
        if (w == except || !worker_drop_job(w, id)) continue;
        json_t *b = json_object();
        json_object_set_new(b, "job", json_integer(id));
        json_object_set_new(b, "reason", json_string(reason));
        queue_out(s, 0, w->rid, w->rid_len, MSG_CANCEL, b, NULL, 0);
        JLOG(s, "job %lld: cancel sent to %s (%s)", (long long)id, w->name, reason);
    }
}

/* Requeues (as a failed attempt) everything a lost worker held. */
static void worker_lost(drq_server *s, worker *w, const char *why) {
    log_line("server", "worker %s lost: %s; requeueing %d job(s)", w->name, why, w->njobs);
    double wall = wall_now();
    for (int i = 0; i < w->njobs; i++) {
        store_job j;
        if (store_job_get(s->st, w->jobs[i].id, &j) || strcmp(j.state, "leased") || strcmp(j.lease_owner, w->name))
            continue;
        char msg[256];
        snprintf(msg, sizeof msg, "worker %s lost (%s)", w->name, why);
        int failed = store_job_attempt_failed(s->st, j.id, msg, wall, s->o.max_attempts, s->o.backoff_s);
        log_line("server", "job %lld %s: %s", (long long)j.id, failed ? "failed" : "requeued", msg);
    }
    store_worker_seen(s->st, w->name, NULL, NULL, "lost", w->done_unflushed);
    store_event(s->st, 0, 0, w->name, "worker_lost", "%s", why);
    s->dirty = 1;
    worker_remove(s, w);
}

/* ---- dispatch ----------------------------------------------------------------- */

/* Queues a JOB for a freshly leased job (spec attached on a worker's first job
 * of the sweep, checkpoint attached when one exists). */
static void send_job(drq_server *s, worker *w, const store_job *j) {
    spec_entry *se = spec_get(s, j->sweep);
    if (!se || j->purifier >= se->spec.npurifiers || j->attack >= se->spec.nattacks) {
        store_job_fail(s->st, j->id, "the sweep's stored spec is unreadable");
        return;
    }
    json_t *b = json_object();
    json_object_set_new(b, "job", json_integer(j->id));
    json_object_set_new(b, "sweep", json_integer(j->sweep));
    json_object_set_new(b, "attempt", json_integer(j->attempts + 1));
    json_object_set_new(b, "purifier", json_integer(j->purifier));
    json_object_set_new(b, "attack", json_integer(j->attack));
    json_object_set_new(b, "seed", json_integer(j->seed));
    json_object_set_new(b, "start", json_integer(j->image_start));
    json_object_set_new(b, "count", json_integer(j->image_count));
    int seen = 0;
    for (int i = 0; i < w->nsent; i++) seen |= w->sweeps_sent[i] == j->sweep;
    if (!seen) {
        json_object_set(b, "spec", se->json);
        w->sweeps_sent = xrealloc(w->sweeps_sent, (size_t)(w->nsent + 1) * sizeof *w->sweeps_sent);
        w->sweeps_sent[w->nsent++] = j->sweep;
    }
    int64_t step;
    void *blob = NULL;
    size_t len = 0;
    if (s->ckpt_maybe && store_checkpoint_get(s->st, j->id, &step, &blob, &len)) {
        json_object_set_new(b, "ckpt_step", json_integer(step));
        store_event(s->st, j->sweep, j->id, w->name, "resume", "resumes from checkpoint step %lld",
                    (long long)step);
        log_line("server", "job %lld -> %s resumes from checkpoint step %lld (attempt %d)", (long long)j->id,
                 w->name, (long long)step, j->attempts + 1);
    } else {
        JLOG(s, "job %lld -> %s (attempt %d)", (long long)j->id, w->name, j->attempts + 1);
    }
    queue_out(s, 0, w->rid, w->rid_len, MSG_JOB, b, blob, len);
    worker_add_job(w, j->id, j);
    w->credit--;
}

/* Leases dispatchable jobs to workers with credit, round robin.  Runs inside
 * the pump's transaction. */
static void dispatch(drq_server *s) {
    if (!s->dirty || s->nw == 0) return;
    s->dirty = 0;
    double wall = wall_now();
    store_job jobs[MAX_LEASE_PER_PUMP];
    int start = s->rr++;
    for (int k = 0; k < s->nw; k++) {
        worker *w = s->w[(start + k) % s->nw];
        if (w->credit <= 0) continue;
        int want = w->credit < MAX_LEASE_PER_PUMP ? w->credit : MAX_LEASE_PER_PUMP;
        int got = store_lease(s->st, w->name, wall, s->o.lease_s, want, jobs);
        for (int i = 0; i < got; i++) send_job(s, w, &jobs[i]);
        if (got < want) break; /* nothing left to dispatch */
        if (w->credit > 0) s->dirty = 1; /* hit the per-pump cap */
    }
}

/* ---- worker messages ---------------------------------------------------------- */

static void ack(drq_server *s, worker *w, int64_t seq, int64_t job) {
    json_t *b = json_object();
    json_object_set_new(b, "seq", json_integer(seq));
    if (job) json_object_set_new(b, "job", json_integer(job));
    queue_out(s, 0, w->rid, w->rid_len, MSG_ACK, b, NULL, 0);
}

static void add_credit(drq_server *s, worker *w, const json_t *body) {
    int64_t c = drq_jint(body, "credit");
    if (c > 0) {
        w->credit += c > 1000 ? 1000 : (int)c;
        if (w->credit > 1000) w->credit = 1000;
        s->dirty = 1;
    }
}

static void on_hello(drq_server *s, const drq_msg *m) {
    const json_t *b = m->body;
    const char *name = drq_jstr(b, "name");
    if (strlen(name) >= DRQ_TAG_MAX) {
        log_line("server", "workers: HELLO from %s dropped: name longer than %d bytes", hexid(m->rid, m->rid_len),
                 DRQ_TAG_MAX - 1);
        return;
    }
    worker *old = worker_by_rid(s, m->rid, m->rid_len);
    if (!old) old = worker_by_name(s, name);
    json_t *held = json_object_get(b, "held");
    if (old) {
        /* a reconnect: jobs the old registration held but the new one does not
         * list were lost by the worker */
        for (int i = 0; i < old->njobs; i++) {
            int listed = 0;
            size_t k;
            json_t *e;
            json_array_foreach(held, k, e) listed |= json_integer_value(e) == old->jobs[i].id;
            if (!listed) {
                store_job j;
                if (!store_job_get(s->st, old->jobs[i].id, &j) && !strcmp(j.state, "leased") &&
                    !strcmp(j.lease_owner, name)) {
                    char msg[256];
                    snprintf(msg, sizeof msg, "worker %s re-registered without the job", name);
                    store_job_attempt_failed(s->st, j.id, msg, wall_now(), s->o.max_attempts, s->o.backoff_s);
                    s->dirty = 1;
                }
            }
        }
        worker_remove(s, old);
    }
    worker *w = xcalloc(1, sizeof *w);
    memcpy(w->rid, m->rid, m->rid_len);
    w->rid_len = m->rid_len;
    snprintf(w->name, sizeof w->name, "%s", name);
    snprintf(w->version, sizeof w->version, "%s", drq_jstr(b, "version"));
    w->devices = json_dumps(json_object_get(b, "devices"), JSON_COMPACT);
    w->credit = (int)(drq_jint(b, "credit") > 1000 ? 1000 : drq_jint(b, "credit"));
    w->last_seen = now_s();
    w->joined = wall_now();
    s->w = xrealloc(s->w, (size_t)(s->nw + 1) * sizeof *s->w);
    s->w[s->nw++] = w;

    /* re-adopt the jobs it still holds */
    double wall = wall_now();
    size_t k;
    json_t *e;
    int kept = 0, cancelled = 0;
    json_array_foreach(held, k, e) {
        int64_t id = json_integer_value(e);
        store_job j;
        int ok = 0;
        if (!store_job_get(s->st, id, &j)) {
            if (!strcmp(j.state, "leased") && !strcmp(j.lease_owner, name))
                ok = store_extend(s->st, id, name, wall + s->o.lease_s) == 0;
            else if (!strcmp(j.state, "queued"))
                ok = store_lease_one(s->st, id, name, wall, s->o.lease_s) == 0;
        }
        if (ok) {
            worker_add_job(w, id, NULL);
            kept++;
        } else {
            json_t *c = json_object();
            json_object_set_new(c, "job", json_integer(id));
            json_object_set_new(c, "reason", json_string("no longer leased to this worker"));
            queue_out(s, 0, w->rid, w->rid_len, MSG_CANCEL, c, NULL, 0);
            cancelled++;
        }
    }
    store_worker_seen(s->st, w->name, w->devices, w->version, "alive", 0);
    store_event(s->st, 0, 0, w->name, "worker_join", "devices %s, version %s, holds %d job(s)", w->devices,
                w->version, kept);
    log_line("server", "worker %s joined (devices %s, version %s, credit %d, holds %d job(s), %d cancelled)", w->name,
             w->devices, w->version, w->credit, kept, cancelled);
    json_t *r = json_object();
    json_object_set_new(r, "heartbeat_ms", json_integer((json_int_t)(s->o.heartbeat_s * 1000)));
    json_object_set_new(r, "liveness", json_integer(s->o.liveness));
    json_object_set_new(r, "lease_s", json_real(s->o.lease_s));
    json_object_set_new(r, "server", json_string(s->ident));
    queue_out(s, 0, w->rid, w->rid_len, MSG_WELCOME, r, NULL, 0);
    s->dirty = 1;
}

/* Checks result rows against the job they claim to complete. */
static int rows_match_job(const store_job *j, const char *pur, const char *atk, const drq_row *rows, int64_t n,
                          char *why, size_t cap) {
    for (int64_t i = 0; i < n; i++) {
        const drq_row *r = &rows[i];
        if (r->image < j->image_start || r->image >= j->image_start + j->image_count) {
            snprintf(why, cap, "row %lld: image %lld outside the job's range [%lld,%lld)", (long long)i,
                     (long long)r->image, (long long)j->image_start, (long long)(j->image_start + j->image_count));
            return 0;
        }
        if (r->seed != j->seed || r->sweep != j->sweep || strcmp(r->purifier, pur) || strcmp(r->attack, atk)) {
            snprintf(why, cap, "row %lld: identity (sweep %lld, %s, %s, seed %lld) is not the job's", (long long)i,
                     (long long)r->sweep, r->purifier, r->attack, (long long)r->seed);
            return 0;
        }
    }
    return 1;
}

static void on_result(drq_server *s, worker *w, const drq_msg *m) {
    const json_t *b = m->body;
    int64_t id = drq_jint(b, "job"), seq = drq_jint(b, "seq"), n = drq_jint(b, "n");
    int final = drq_jbool(b, "final");
    add_credit(s, w, b);
    store_job j;
    const held_job *h = worker_find_job(w, id);
    if (h && h->have_job) {
        j = h->job; /* leased to w: no need to read it back */
    } else if (store_job_get(s->st, id, &j)) {
        log_line("server", "RESULT from %s for unknown job %lld dropped", w->name, (long long)id);
        ack(s, w, seq, id);
        return;
    }
    spec_entry *se = spec_get(s, j.sweep);
    if (!se || j.purifier >= se->spec.npurifiers || j.attack >= se->spec.nattacks) {
        ack(s, w, seq, id);
        return;
    }
    const char *pur = se->spec.purifiers[j.purifier].name, *atk = se->spec.attacks[j.attack].name;
    drq_row *rows = NULL;
    int64_t got = 0;
    drq_err e;
    char why[1200];
    if (drq_rows_unpack(m->bin[0], m->binlen[0], n, &rows, &got, &e)) {
        snprintf(why, sizeof why, "malformed result rows: %s", e.msg);
        goto bad;
    }
    if (!rows_match_job(&j, pur, atk, rows, got, why, sizeof why)) goto bad;
    int64_t added = store_results_insert(s->st, &j, pur, atk, rows, got);
    drq_rows_free(rows, got);
    rows = NULL;
    if (final) {
        worker_drop_job(w, id);
        /* rows are checked to lie in the job's range: when all are new, they cover it */
        int64_t have = added == j.image_count ? added : store_results_count(s->st, &j, pur, atk);
        if (have != j.image_count) {
            snprintf(why, sizeof why, "result incomplete: %lld of %lld rows", (long long)have,
                     (long long)j.image_count);
            goto bad_final;
        }
        if (store_job_done(s->st, id) == 0) {
            w->jobs_done++;
            w->done_unflushed++;
            JLOG(s, "job %lld done by %s (%lld rows, %lld new)", (long long)id, w->name, (long long)got,
                 (long long)added);
            if (strcmp(j.state, "leased") || strcmp(j.lease_owner, w->name)) {
                if (j.state[0] == 'l') cancel_on_workers(s, id, w, "completed by another worker");
                log_line("server", "job %lld: late result from %s accepted (state was %s%s%s)", (long long)id,
                         w->name, j.state, j.lease_owner[0] ? ", owner " : "", j.lease_owner);
            }
            s->dirty = 1; /* a dependency may have become ready */
        } else {
            JLOG(s, "job %lld: duplicate result from %s (%lld new rows, state %s)", (long long)id, w->name,
                 (long long)added, j.state);
        }
    }
    ack(s, w, seq, id);
    return;
bad:
    drq_rows_free(rows, got);
    if (final) worker_drop_job(w, id);
bad_final:
    log_line("server", "job %lld: bad RESULT from %s: %s", (long long)id, w->name, why);
    if (final && !strcmp(j.state, "leased") && !strcmp(j.lease_owner, w->name)) {
        store_job_attempt_failed(s->st, id, why, wall_now(), s->o.max_attempts, s->o.backoff_s);
        s->dirty = 1;
    }
    ack(s, w, seq, id);
}

static int leased_to(drq_server *s, int64_t id, const worker *w, store_job *j) {
    return !store_job_get(s->st, id, j) && !strcmp(j->state, "leased") && !strcmp(j->lease_owner, w->name);
}

static void on_worker_msg(drq_server *s, drq_msg *m) {
    if (m->type == MSG_HELLO) {
        on_hello(s, m);
        return;
    }
    if (m->type > MSG_RELEASE) { /* not a worker -> server type */
        log_line("server", "workers: unexpected %s from %s dropped", drq_msg_name(m->type), hexid(m->rid, m->rid_len));
        return;
    }
    worker *w = worker_by_rid(s, m->rid, m->rid_len);
    if (!w) {
        /* a peer we do not know (we restarted, or it was declared lost) */
        log_line("server", "workers: %s from unregistered peer %s; asking it to re-register", drq_msg_name(m->type),
                 hexid(m->rid, m->rid_len));
        queue_out(s, 0, m->rid, m->rid_len, MSG_RESET, json_object(), NULL, 0);
        return;
    }
    w->last_seen = now_s();
    const json_t *b = m->body;
    store_job j;
    int64_t id = drq_jint(b, "job"), seq = drq_jint(b, "seq");
    switch (m->type) {
    case MSG_READY:
        add_credit(s, w, b);
        break;
    case MSG_HEARTBEAT: {
        json_t *p = json_object_get(b, "progress");
        size_t k;
        json_t *e;
        json_array_foreach(p, k, e) {
            int64_t jid = json_integer_value(json_array_get(e, 0));
            for (int i = 0; i < w->njobs; i++)
                if (w->jobs[i].id == jid) {
                    w->jobs[i].done = json_integer_value(json_array_get(e, 1));
                    w->jobs[i].total = json_integer_value(json_array_get(e, 2));
                }
        }
        break;
    }
    case MSG_RESULT:
        on_result(s, w, m);
        break;
    case MSG_CHECKPOINT:
        if (leased_to(s, id, w, &j)) {
            store_checkpoint_put(s->st, id, drq_jint(b, "step"), m->bin[0], m->binlen[0], w->name);
            s->ckpt_maybe = 1;
            JLOG(s, "job %lld: checkpoint at step %lld from %s (%zu bytes)", (long long)id,
                 (long long)drq_jint(b, "step"), w->name, m->binlen[0]);
        } else {
            log_line("server", "job %lld: checkpoint from %s ignored (not its lease)", (long long)id, w->name);
        }
        ack(s, w, seq, id);
        break;
    case MSG_FAIL: {
        add_credit(s, w, b);
        worker_drop_job(w, id);
        const char *error = drq_jstr(b, "error");
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", error);
        if (leased_to(s, id, w, &j)) {
            if (drq_jbool(b, "retryable")) {
                int failed =
                    store_job_attempt_failed(s->st, id, msg, wall_now(), s->o.max_attempts, s->o.backoff_s);
                log_line("server", "job %lld %s after attempt %d on %s: %s", (long long)id,
                         failed ? "failed" : "requeued", j.attempts + 1, w->name, msg);
            } else {
                store_job_fail(s->st, id, msg);
                log_line("server", "job %lld failed (not retryable) on %s: %s", (long long)id, w->name, msg);
            }
            s->dirty = 1;
        } else {
            log_line("server", "job %lld: FAIL from %s ignored (not its lease): %s", (long long)id, w->name, msg);
        }
        ack(s, w, seq, id);
        break;
    }
    case MSG_RELEASE:
        add_credit(s, w, b);
        worker_drop_job(w, id);
        if (leased_to(s, id, w, &j) && store_job_release(s->st, id) == 0) {
            store_event(s->st, j.sweep, id, w->name, "release", "released by %s", w->name);
            log_line("server", "job %lld released by %s", (long long)id, w->name);
            s->dirty = 1;
        }
        ack(s, w, seq, id);
        break;
    default:
        log_line("server", "workers: unexpected %s from %s dropped", drq_msg_name(m->type), w->name);
    }
}

/* ---- client requests ---------------------------------------------------------- */

static rate_ring *rate_for(drq_server *s, int64_t sweep) {
    for (int i = 0; i < s->nrates; i++)
        if (s->rates[i].sweep == sweep) return &s->rates[i];
    s->rates = xrealloc(s->rates, (size_t)(s->nrates + 1) * sizeof *s->rates);
    rate_ring *r = &s->rates[s->nrates++];
    memset(r, 0, sizeof *r);
    r->sweep = sweep;
    return r;
}

/* Jobs/s and rows/s over the last ~30 s of samples. */
static void rate_get(drq_server *s, int64_t sweep, double *jobs_s, double *rows_s) {
    *jobs_s = *rows_s = 0;
    rate_ring *r = rate_for(s, sweep);
    if (r->n < 2) return;
    int newest = (r->head + RATE_SAMPLES - 1) % RATE_SAMPLES;
    int oldest = newest;
    for (int k = 1; k < r->n; k++) {
        int i = (newest + RATE_SAMPLES - k) % RATE_SAMPLES;
        if (r->t[newest] - r->t[i] > 30) break;
        oldest = i;
    }
    double dt = r->t[newest] - r->t[oldest];
    if (dt <= 0) return;
    *jobs_s = (double)(r->done[newest] - r->done[oldest]) / dt;
    *rows_s = (double)(r->rows[newest] - r->rows[oldest]) / dt;
}

static json_t *workers_json(drq_server *s) {
    json_t *arr = json_array();
    double now = now_s();
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

/* ---- submit: parse and expand off the loop ------------------------------------- */

/* A SUBMIT in flight: the spec is parsed, checked and canonicalised on a
 * libuv thread-pool thread (a 100000-seed spec takes long enough to delay
 * every worker's heartbeat), then the sweep is found or created on the loop. */
typedef struct {
    uv_work_t req;
    drq_server *s;
    unsigned char rid[DRQ_MAX_RID];
    size_t rid_len;
    int64_t id;
    json_t *spec_json; /* the request's spec (owned; only the pool thread reads it) */
    char submission[72];
    int again;
    double t0;
    /* results of the pool thread */
    int ok;
    drq_err e;
    drq_spec sp;
    char *canon;
    json_t *canon_json; /* the canonical spec as JSON, for JOB messages */
} submit_req;

static void submit_work(uv_work_t *req) {
    submit_req *r = req->data;
    if (drq_spec_parse(r->spec_json, &r->sp, &r->e)) return;
    r->canon = drq_spec_canonical(&r->sp);
    r->canon_json = json_loads(r->canon, 0, NULL);
    r->ok = r->canon_json != NULL;
    if (!r->ok) {
        drq_errf(&r->e, "internal: canonical spec does not parse");
        drq_spec_free(&r->sp);
    }
}

static void submit_free(submit_req *r, int keep_spec) {
    json_decref(r->spec_json);
    if (r->ok && !keep_spec) {
        drq_spec_free(&r->sp);
        json_decref(r->canon_json);
    }
    free(r->canon);
    free(r);
}

static void submit_reply_error(drq_server *s, submit_req *r, const char *fmt, ...) DRQ_PRINTF(3, 4);
static void submit_reply_error(drq_server *s, submit_req *r, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    json_t *b = json_object();
    json_object_set_new(b, "id", json_integer(r->id));
    json_object_set_new(b, "error", json_string(buf));
    queue_out(s, 1, r->rid, r->rid_len, MSG_ERROR, b, NULL, 0);
}

static void submit_reply(drq_server *s, submit_req *r, int64_t sweep, int64_t njobs, int64_t nrows,
                         const char *duplicate, const char *note) {
    json_t *b = json_object();
    json_object_set_new(b, "id", json_integer(r->id));
    json_object_set_new(b, "sweep", json_integer(sweep));
    json_object_set_new(b, "jobs", json_integer(njobs));
    json_object_set_new(b, "rows", json_integer(nrows));
    if (duplicate) json_object_set_new(b, "duplicate", json_string(duplicate));
    if (note) json_object_set_new(b, "note", json_string(note));
    queue_out(s, 1, r->rid, r->rid_len, MSG_REPLY, b, NULL, 0);
}

static void submit_done(uv_work_t *req, int status) {
    submit_req *r = req->data;
    drq_server *s = r->s;
    s->submits_inflight--;
    if (s->stopping || status) {
        submit_free(r, 0);
        return;
    }
    drq_err e;
    if (r->ok && s->degraded) {
        submit_reply_error(s, r, "submit refused: the coordinator cannot write its database (%s); nothing was "
                                 "created, submit again later",
                           s->fault_msg);
        goto out;
    }
    if (!r->ok) {
        submit_reply_error(s, r, "%s", r->e.msg);
        log_line("server", "submit rejected: %s", r->e.msg);
        goto out;
    }
    if (store_begin(s->st, &e)) {
        submit_reply_error(s, r, "database busy: %s", e.msg);
        goto out;
    }
    int by_submission = 0;
    int64_t sid = store_sweep_dedup(s->st, r->submission[0] ? r->submission : NULL, r->canon, r->again,
                                    &by_submission);
    if (sid > 0) {
        store_rollback(s->st); /* nothing written */
        store_counts c;
        if (store_sweep_counts(s->st, sid, &c)) memset(&c, 0, sizeof c);
        char note[256];
        if (by_submission) {
            snprintf(note, sizeof note, "this submission was already received as sweep %lld", (long long)sid);
            log_line("server", "submit %s: a retry of sweep %lld, nothing created", r->submission, (long long)sid);
        } else {
            snprintf(note, sizeof note, "already submitted as sweep %lld; use --again to run it twice",
                     (long long)sid);
            log_line("server", "submit of \"%s\": the same spec as sweep %lld, nothing created", r->sp.name,
                     (long long)sid);
        }
        submit_reply(s, r, sid, c.njobs, c.nrows, by_submission ? "submission" : "spec", note);
        goto out;
    }
    if (store_sweep_create_ex(s->st, &r->sp, r->canon, r->submission[0] ? r->submission : NULL, &sid, &e) ||
        store_commit(s->st, &e)) {
        db_failed(s, "submit", &e);
        submit_reply_error(s, r, "submit refused: the coordinator cannot write its database (%s); nothing was "
                                 "created, submit again later",
                           e.msg);
        goto out;
    }
    log_line("server", "sweep %lld \"%s\" submitted: %lld jobs, %lld rows (parsed in %.2f s off the loop)",
             (long long)sid, r->sp.name, (long long)drq_spec_njobs(&r->sp), (long long)drq_spec_nrows(&r->sp),
             now_s() - r->t0);
    /* the parsed spec goes into the cache, so expansion and dispatch never parse it on the loop */
    s->specs = xrealloc(s->specs, (size_t)(s->nspecs + 1) * sizeof *s->specs);
    spec_entry *se = &s->specs[s->nspecs++];
    se->sweep = sid;
    se->json = r->canon_json;
    se->spec = r->sp;
    s->exp = xrealloc(s->exp, (size_t)(s->nexp + 1) * sizeof *s->exp);
    expansion *x = &s->exp[s->nexp++];
    memset(x, 0, sizeof *x);
    x->sweep = sid;
    x->t0 = now_s();
    /* reply now; the jobs are inserted in bounded chunks by later pumps (a
     * restarted server resumes the expansion) */
    submit_reply(s, r, sid, drq_spec_njobs(&se->spec), drq_spec_nrows(&se->spec), NULL, NULL);
    flush_out(s);
    submit_free(r, 1);
    pump(s);
    return;
out:
    flush_out(s);
    submit_free(r, 0);
    pump(s);
}

static int submission_ok(const char *id) {
    size_t n = strlen(id);
    if (n < 1 || n > 64) return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)id[i]) || id[i] == '-' || id[i] == '_')) return 0;
    return 1;
}

static void submit_start(drq_server *s, drq_msg *m, int64_t id) {
    const char *sub = drq_jstr(m->body, "submission");
    if (sub && !submission_ok(sub)) {
        reply_error(s, m, id, "submission id: expected 1 to 64 letters, digits, '-' or '_'");
        return;
    }
    submit_req *r = xcalloc(1, sizeof *r);
    r->req.data = r;
    r->s = s;
    memcpy(r->rid, m->rid, m->rid_len);
    r->rid_len = m->rid_len;
    r->id = id;
    r->again = drq_jbool(m->body, "again");
    if (sub) snprintf(r->submission, sizeof r->submission, "%s", sub);
    r->spec_json = json_incref(json_object_get(m->body, "spec"));
    r->t0 = now_s();
    /* the message body goes with the request: nothing else may touch the spec */
    json_object_del(m->body, "spec");
    s->submits_inflight++;
    uv_queue_work(&s->loop, &r->req, submit_work, submit_done);
}

static void on_client_msg(drq_server *s, drq_msg *m) {
    const json_t *b = m->body;
    int64_t id = drq_jint(b, "id"), sweep = drq_jint(b, "sweep");
    drq_err e;
    if (s->degraded && (m->type == MSG_SUBMIT || m->type == MSG_CANCEL_SWEEP || m->type == MSG_RETRY)) {
        reply_error(s, m, id,
                    "%s refused: the coordinator cannot write its database (%s); nothing was changed, try again "
                    "when the disk has space",
                    m->type == MSG_SUBMIT ? "submit" : m->type == MSG_RETRY ? "retry" : "cancel", s->fault_msg);
        return;
    }
    switch (m->type) {
    case MSG_SUBMIT:
        submit_start(s, m, id);
        return;
    case MSG_STATUS: {
        int nfail = json_object_get(b, "failures") ? (int)drq_jint(b, "failures") : 5;
        json_t *r = store_status(s->st, sweep, nfail > 100 ? 100 : nfail);
        json_t *sw = json_object_get(r, "sweeps");
        if (sweep > 0 && json_array_size(sw) == 0) {
            json_decref(r);
            reply_error(s, m, id, "no sweep %lld", (long long)sweep);
            return;
        }
        size_t k;
        json_t *o;
        json_array_foreach(sw, k, o) {
            double js, rs;
            rate_get(s, json_integer_value(json_object_get(o, "id")), &js, &rs);
            json_object_set_new(o, "jobs_per_s", json_real(js));
            json_object_set_new(o, "rows_per_s", json_real(rs));
            int64_t left = json_integer_value(json_object_get(o, "jobs")) -
                           json_integer_value(json_object_get(o, "done")) -
                           json_integer_value(json_object_get(o, "failed")) -
                           json_integer_value(json_object_get(o, "cancelled"));
            json_object_set_new(o, "eta_s", js > 0 && left > 0 ? json_real((double)left / js) : json_null());
        }
        json_object_set_new(r, "workers", json_integer(s->nw));
        json_object_set_new(r, "server", json_string(s->ident));
        if (s->degraded) json_object_set_new(r, "storage_fault", json_string(s->fault_msg));
        reply_ok(s, m, id, r, NULL, 0);
        return;
    }
    case MSG_FETCH: {
        store_counts c;
        if (store_sweep_counts(s->st, sweep, &c)) {
            reply_error(s, m, id, "no sweep %lld", (long long)sweep);
            return;
        }
        int64_t limit = drq_jint(b, "limit");
        if (limit < 1) limit = 1;
        if (limit > MAX_FETCH) limit = MAX_FETCH;
        json_t *after = json_object_get(b, "after");
        drq_row *rows;
        int64_t n = store_results_fetch(s->st, sweep, after ? json_string_value(json_array_get(after, 0)) : NULL,
                                        after ? json_string_value(json_array_get(after, 1)) : NULL,
                                        after ? json_integer_value(json_array_get(after, 2)) : 0,
                                        after ? json_integer_value(json_array_get(after, 3)) : 0, limit, &rows);
        size_t len;
        void *packed = drq_rows_pack(rows, n, &len);
        json_t *r = json_object();
        json_object_set_new(r, "n", json_integer(n));
        if (n == limit) {
            const drq_row *l = &rows[n - 1];
            json_object_set_new(r, "next", json_pack("[s,s,I,I]", l->purifier, l->attack, (json_int_t)l->seed,
                                                     (json_int_t)l->image));
        }
        drq_rows_free(rows, n);
        reply_ok(s, m, id, r, packed, len);
        return;
    }
    case MSG_CANCEL_SWEEP: {
        int64_t *leased = NULL;
        int nl = 0;
        if (store_begin(s->st, &e)) {
            reply_error(s, m, id, "database busy: %s", e.msg);
            return;
        }
        int64_t n = store_sweep_cancel(s->st, sweep, &leased, &nl, &e);
        if (n < 0) {
            store_rollback(s->st);
            reply_error(s, m, id, "%s", e.msg);
            return;
        }
        if (store_commit(s->st, &e)) {
            db_failed(s, "cancel", &e);
            reply_error(s, m, id, "cancel refused: the coordinator cannot write its database (%s); nothing was "
                                  "changed", e.msg);
            free(leased);
            return;
        }
        for (int i = 0; i < nl; i++) cancel_on_workers(s, leased[i], NULL, "sweep cancelled");
        free(leased);
        for (int i = 0; i < s->nexp; i++)
            if (s->exp[i].sweep == sweep) s->exp[i--] = s->exp[--s->nexp];
        log_line("server", "sweep %lld cancelled: %lld jobs", (long long)sweep, (long long)n);
        json_t *r = json_object();
        json_object_set_new(r, "cancelled", json_integer(n));
        reply_ok(s, m, id, r, NULL, 0);
        return;
    }
    case MSG_RETRY: {
        if (store_begin(s->st, &e)) {
            reply_error(s, m, id, "database busy: %s", e.msg);
            return;
        }
        int64_t n = store_sweep_retry(s->st, sweep, &e);
        if (n < 0) {
            store_rollback(s->st);
            reply_error(s, m, id, "%s", e.msg);
            return;
        }
        if (store_commit(s->st, &e)) {
            db_failed(s, "retry", &e);
            reply_error(s, m, id, "retry refused: the coordinator cannot write its database (%s); nothing was "
                                  "changed", e.msg);
            return;
        }
        s->dirty = 1;
        log_line("server", "sweep %lld: %lld failed jobs requeued", (long long)sweep, (long long)n);
        json_t *r = json_object();
        json_object_set_new(r, "requeued", json_integer(n));
        reply_ok(s, m, id, r, NULL, 0);
        return;
    }
    case MSG_WORKERS: {
        json_t *r = json_object();
        json_object_set_new(r, "workers", workers_json(s));
        reply_ok(s, m, id, r, NULL, 0);
        return;
    }
    default:
        log_line("server", "clients: unexpected %s from %s dropped", drq_msg_name(m->type), hexid(m->rid, m->rid_len));
    }
}

/* ---- expansion ------------------------------------------------------------------ */

/* Inserts one chunk of the first pending expansion; replies to its client
 * once the sweep is complete. */
static void expand_step(drq_server *s) {
    if (s->nexp == 0 || s->degraded) return;
    expansion *x = &s->exp[0];
    drq_err e;
    spec_entry *se = spec_get(s, x->sweep);
    if (!se) {
        log_line("server", "sweep %lld: cannot expand, spec unreadable", (long long)x->sweep);
        s->exp[0] = s->exp[--s->nexp];
        return;
    }
    if (store_begin(s->st, &e)) return; /* busy: try again next pump */
    /* bounded work per loop turn: sub-chunks until EXPAND_CHUNK jobs or EXPAND_BUDGET_S */
    double t0 = now_s();
    int64_t left, done = 0;
    do {
        left = store_sweep_expand(s->st, x->sweep, &se->spec, EXPAND_SUB, &e);
        done += EXPAND_SUB;
    } while (left > 0 && done < EXPAND_CHUNK && now_s() - t0 < EXPAND_BUDGET_S);
    if (left < 0 && store_fault_is_storage(store_fault(s->st, NULL))) {
        db_failed(s, "expansion", &e); /* kept: carries on when writes succeed again */
        return;
    }
    if (left < 0) {
        store_rollback(s->st);
        log_line("server", "sweep %lld: expansion failed: %s", (long long)x->sweep, e.msg);
        s->exp[0] = s->exp[--s->nexp];
        return;
    }
    if (store_commit(s->st, &e)) {
        db_failed(s, "expansion", &e);
        return;
    }
    s->dirty = 1;
    if (left > 0) return;
    double secs = now_s() - x->t0;
    log_line("server", "sweep %lld: %lld jobs queued (%.2f s)", (long long)x->sweep,
             (long long)drq_spec_njobs(&se->spec), secs);
    memmove(&s->exp[0], &s->exp[1], (size_t)(s->nexp - 1) * sizeof *s->exp);
    s->nexp--;
}

/* ---- the pump --------------------------------------------------------------------- */

static int has_input(void *sock) {
    int ev = 0;
    size_t sz = sizeof ev;
    if (zmq_getsockopt(sock, ZMQ_EVENTS, &ev, &sz)) return 0;
    return (ev & ZMQ_POLLIN) != 0;
}

/* Degraded mode: worker messages are read but not applied (nothing can be
 * committed, so nothing is acknowledged and the workers resend); they only
 * prove that the worker is alive. */
static void drain_degraded(drq_server *s) {
    drq_err e;
    for (int i = 0; i < BATCH && has_input(s->wsock); i++) {
        drq_msg m;
        int rc = drq_msg_recv(s->wsock, 1, ZMQ_DONTWAIT, &m, &e);
        if (rc == 1) break;
        if (rc < 0) continue;
        worker *w = worker_by_rid(s, m.rid, m.rid_len);
        if (w) w->last_seen = now_s();
        if (m.type != MSG_HEARTBEAT) s->n_deferred++;
        drq_msg_free(&m);
    }
}

static void pump(drq_server *s) {
    if (s->stopping || s->in_pump) return;
    s->in_pump = 1;
    drq_err e;
    int in_txn = 0;
    /* 1. worker messages and dispatch: one transaction */
    if (s->degraded) drain_degraded(s);
    for (int i = 0; i < BATCH && !s->degraded && has_input(s->wsock); i++) {
        drq_msg m;
        int rc = drq_msg_recv(s->wsock, 1, ZMQ_DONTWAIT, &m, &e);
        if (rc == 1) break;
        if (rc < 0) {
            log_line("server", "workers: dropped malformed message from %s: %s", hexid(m.rid, m.rid_len), e.msg);
            continue;
        }
        if (!in_txn) {
            if (store_begin(s->st, &e)) {
                /* cannot write now: the peer resends what matters */
                log_line("server", "database busy, %s from %s dropped: %s", drq_msg_name(m.type),
                         hexid(m.rid, m.rid_len), e.msg);
                drq_msg_free(&m);
                break;
            }
            in_txn = 1;
        }
        on_worker_msg(s, &m);
        drq_msg_free(&m);
        s->n_msgs++;
    }
    if (s->dirty && !in_txn && s->nw > 0 && !s->degraded) {
        if (store_begin(s->st, &e) == 0) in_txn = 1;
    }
    s->n_pumps++;
    if (in_txn) {
        s->n_txns++;
        dispatch(s);
        if (store_commit(s->st, &e)) {
            db_failed(s, "commit of worker messages", &e);
            s->in_pump = 0;
            if (s->degraded && !s->stopping) pump(s); /* drain the rest in degraded mode */
            return;
        }
    }
    flush_out(s);
    /* 2. client requests, each on its own */
    for (int i = 0; i < CLIENT_BATCH && s->csock && has_input(s->csock) && !s->stopping; i++) {
        drq_msg m;
        int rc = drq_msg_recv(s->csock, 1, ZMQ_DONTWAIT, &m, &e);
        if (rc == 1) break;
        if (rc < 0) {
            log_line("server", "clients: dropped malformed message from %s: %s", hexid(m.rid, m.rid_len), e.msg);
            continue;
        }
        on_client_msg(s, &m);
        drq_msg_free(&m);
        flush_out(s);
    }
    /* 3. one chunk of a pending expansion */
    if (!s->stopping) {
        expand_step(s);
        flush_out(s);
    }
    s->in_pump = 0;
    if (s->stopping) return;
    /* edge-triggered fds: keep pumping while anything is pending */
    int more = has_input(s->wsock) || (s->csock && has_input(s->csock)) || s->nexp > 0;
    if (more != s->idle_on) {
        if (more)
            uv_idle_start(&s->idle, on_idle);
        else
            uv_idle_stop(&s->idle);
        s->idle_on = more;
    }
}

/* ---- timers and handles ------------------------------------------------------------ */

static void on_monitor(uv_poll_t *h, int status, int events);

/* The tick in degraded mode: heartbeats only (in memory), then one small
 * write transaction as a probe; when it commits, leases are pushed out so that
 * workers can re-register before they lapse, and work resumes. */
static void tick_degraded(drq_server *s) {
    double now = now_s();
    double dead_after = s->o.liveness * s->o.heartbeat_s;
    s->last_tick = now;
    for (int i = 0; i < s->nw; i++) {
        worker *w = s->w[i];
        if (now - w->last_seen > dead_after) {
            log_line("server", "worker %s silent for %.1f s (storage fault: its jobs are requeued when their leases "
                               "expire)", w->name, now - w->last_seen);
            worker_remove(s, w);
            i--;
            continue;
        }
        queue_out(s, 0, w->rid, w->rid_len, MSG_HEARTBEAT, json_object(), NULL, 0);
    }
    flush_out(s);
    drq_err e;
    if (store_begin(s->st, &e) == 0) {
        store_event(s->st, 0, 0, NULL, "storage", "database writable again after %.1f s: %s", now - s->degraded_since,
                    s->fault_msg);
        store_extend_all_leases(s->st, wall_now() + s->o.lease_s);
        if (store_commit(s->st, &e) == 0) {
            storage_recovered(s);
            pump(s);
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

static void on_tick(uv_timer_t *t) {
    drq_server *s = t->data;
    if (s->stopping) return;
    for (int k = 0; k < s->nmon; k++) on_monitor(&s->mpoll[k], 0, 0); /* edge-triggered fd: drain anyway */
    drq_err e;
    if (s->degraded) {
        tick_degraded(s);
        return;
    }
    if (store_begin(s->st, &e)) {
        log_line("server", "tick skipped, database busy: %s", e.msg);
        return;
    }
    double now = now_s(), wall = wall_now();
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
            worker_lost(s, w, why);
            i--;
        }
    }
    /* heartbeats extend the leases of live workers */
    for (int i = 0; i < s->nw; i++) {
        worker *w = s->w[i];
        for (int k = 0; k < w->njobs; k++) {
            if (store_extend(s->st, w->jobs[k].id, w->name, wall + s->o.lease_s)) {
                int64_t id = w->jobs[k].id;
                cancel_on_workers(s, id, NULL, "no longer leased to this worker");
                k--;
            }
        }
        store_worker_seen(s->st, w->name, NULL, NULL, "alive", w->done_unflushed);
        w->done_unflushed = 0;
        queue_out(s, 0, w->rid, w->rid_len, MSG_HEARTBEAT, json_object(), NULL, 0);
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
        rate_ring *r = rate_for(s, json_integer_value(json_object_get(o, "id")));
        r->t[r->head] = now;
        r->done[r->head] = json_integer_value(json_object_get(o, "done"));
        r->rows[r->head] = json_integer_value(json_object_get(o, "rows_done"));
        r->head = (r->head + 1) % RATE_SAMPLES;
        if (r->n < RATE_SAMPLES) r->n++;
    }
    json_decref(st);
    s->dirty = 1; /* back-offs may have elapsed */
    dispatch(s);
    if (store_commit(s->st, &e)) {
        db_failed(s, "commit of the heartbeat tick", &e);
        return;
    }
    flush_out(s);
    pump(s);
}

static void on_poll(uv_poll_t *h, int status, int events) {
    drq_server *s = h->data;
    pump(s);
}

static void on_idle(uv_idle_t *h) { pump(h->data); }

static void close_cb(uv_handle_t *h) {}

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
static void add_monitor(drq_server *s, void *sock, const char *name) {
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
    zmq_setsockopt(s->mon[k], ZMQ_LINGER, &linger, sizeof linger);
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

static void shutdown_loop(drq_server *s) {
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
}

static void on_async(uv_async_t *h) { shutdown_loop(h->data); }

static void on_signal(uv_signal_t *h, int signum) {
    drq_server *s = h->data;
    log_line("server", "%s received", signum == SIGINT ? "SIGINT" : "SIGTERM");
    shutdown_loop(s);
}

/* ---- life cycle ------------------------------------------------------------------------ */

static void *router(drq_server *s, drq_err *err) {
    void *sock = zmq_socket(s->zctx, ZMQ_ROUTER);
    if (!sock) {
        drq_errf(err, "zmq_socket: %s", zmq_strerror(errno));
        return NULL;
    }
    int64_t maxsz = DRQ_MAX_MSG_BYTES;
    int linger = 0, hwm = 200000;
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxsz, sizeof maxsz);
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    return sock;
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
    s->wsock = router(s, err);
    if (!s->wsock) goto fail;
    for (int i = 0; i < 4 && o->workers_ep[i]; i++)
        if (zmq_bind(s->wsock, o->workers_ep[i])) {
            drq_errf(err, "cannot bind workers socket to %s: %s", o->workers_ep[i], zmq_strerror(errno));
            goto fail;
        }
    if (o->clients_ep) {
        s->csock = router(s, err);
        if (!s->csock) goto fail;
        if (zmq_bind(s->csock, o->clients_ep)) {
            drq_errf(err, "cannot bind clients socket to %s: %s", o->clients_ep, zmq_strerror(errno));
            goto fail;
        }
    }
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
        s->exp = xrealloc(s->exp, (size_t)(s->nexp + 1) * sizeof *s->exp);
        memset(&s->exp[s->nexp], 0, sizeof s->exp[0]);
        s->exp[s->nexp].sweep = ids[i];
        s->exp[s->nexp].t0 = now_s();
        s->nexp++;
        log_line("server", "sweep %lld: resuming its expansion", (long long)ids[i]);
    }
    free(ids);
    /* parse the specs of unfinished sweeps now, before the loop runs, so that
     * dispatch and expansion never parse a large spec on it */
    ids = store_sweeps_unfinished(s->st, &n);
    for (int i = 0; i < n; i++) spec_get(s, ids[i]);
    free(ids);
    s->dirty = 1;
    s->ckpt_maybe = 1;

    uv_loop_init(&s->loop);
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
    add_monitor(s, s->wsock, "workers");
    if (s->csock) add_monitor(s, s->csock, "clients");
    uv_timer_init(&s->loop, &s->tick);
    s->tick.data = s;
    uint64_t ms = (uint64_t)(s->o.heartbeat_s * 1000);
    uv_timer_start(&s->tick, on_tick, ms, ms);
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
    log_line("server", "drq-server %s on %s (db %s, schema %d, max attempts %d, lease %.0f s)", DRQ_SOFTWARE_VERSION,
             o->workers_ep[0] ? o->workers_ep[0] : "-", o->db_path, store_schema_version(s->st), s->o.max_attempts,
             s->o.lease_s);
    return s;
fail:
    if (s->wsock) zmq_close(s->wsock);
    if (s->csock) zmq_close(s->csock);
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
    uv_loop_close(&s->loop);
    drop_out(s);
    free(s->out);
    while (s->nw) worker_remove(s, s->w[0]);
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
    if (s->own_ctx) zmq_ctx_term(s->zctx);
    store_close(s->st);
    free(s);
}
