/* workers.c — the worker side of the coordinator: the in-memory registry of
 * workers and the jobs each holds, dispatch (leases against credit, round
 * robin) and the worker protocol (HELLO, READY, HEARTBEAT, RESULT,
 * CHECKPOINT, FAIL, RELEASE).  Everything here runs inside the pump's
 * transaction; replies go through the outbox.  docs/queue.md.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common/analysis_rows.h"
#include "common/images.h"
#include "internal.h"

/* ---- workers ---------------------------------------------------------------- */

worker *srv_worker_by_rid(drq_server *s, const unsigned char *rid, size_t n) {
    for (int i = 0; i < s->nw; i++)
        if (s->w[i]->rid_len == n && !memcmp(s->w[i]->rid, rid, n)) return s->w[i];
    return NULL;
}

/* The registered worker called name, or NULL. */
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

/* The entry of job id in w's list, or NULL. */
static const held_job *worker_find_job(const worker *w, int64_t id) {
    for (int i = 0; i < w->njobs; i++)
        if (w->jobs[i].id == id) return &w->jobs[i];
    return NULL;
}

/* Removes job id from w's list; 1 when it was there. */
static int worker_drop_job(worker *w, int64_t id) {
    for (int i = 0; i < w->njobs; i++)
        if (w->jobs[i].id == id) {
            w->jobs[i] = w->jobs[--w->njobs];
            return 1;
        }
    return 0;
}

void srv_worker_remove(drq_server *s, worker *w) {
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

/* Reads job id into *j and says whether it is leased to the worker called
 * owner: the test before any change a worker asks for (or causes by leaving). */
static int leased_to(drq_server *s, int64_t id, const char *owner, store_job *j) {
    return !store_job_get(s->st, id, j) && store_job_leased_to(j, owner);
}

/* Tells the worker holding job id (if any other than `except`) to drop it. */
void srv_cancel_on_workers(drq_server *s, int64_t id, const worker *except, const char *reason) {
    for (int i = 0; i < s->nw; i++) {
        worker *w = s->w[i];
        if (w == except || !worker_drop_job(w, id)) continue;
        json_t *b = json_object();
        json_object_set_new(b, "job", json_integer(id));
        json_object_set_new(b, "reason", json_string(reason));
        srv_queue_out(s, 0, w->rid, w->rid_len, MSG_CANCEL, b, NULL, 0);
        JLOG(s, "job %lld: cancel sent to %s (%s)", (long long)id, w->name, reason);
    }
}

/* Requeues (as a failed attempt) everything a lost worker held. */
void srv_worker_lost(drq_server *s, worker *w, const char *why) {
    log_line("server", "worker %s lost: %s; requeueing %d job(s)", w->name, why, w->njobs);
    double wall = drq_clock_wall();
    for (int i = 0; i < w->njobs; i++) {
        store_job j;
        if (!leased_to(s, w->jobs[i].id, w->name, &j)) continue;
        char msg[256];
        snprintf(msg, sizeof msg, "worker %s lost (%s)", w->name, why);
        int failed = store_job_attempt_failed(s->st, j.id, msg, wall, s->o.max_attempts, s->o.backoff_s);
        log_line("server", "job %lld %s: %s", (long long)j.id, failed ? "failed" : "requeued", msg);
    }
    store_worker_seen(s->st, w->name, NULL, NULL, "lost", w->done_unflushed);
    store_event(s->st, 0, 0, w->name, "worker_lost", "%s", why);
    s->dirty = 1;
    srv_worker_remove(s, w);
}

/* ---- dispatch ----------------------------------------------------------------- */

/* Queues a JOB for a freshly leased job (spec attached on a worker's first job
 * of the sweep, checkpoint attached when one exists). */
static void send_job(drq_server *s, worker *w, const store_job *j) {
    /* the lease invariant (worker_add_job) and the credit invariant (dispatch) */
    assert(store_job_leased_to(j, w->name));
    assert(w->credit > 0);
    spec_entry *se = srv_spec_get(s, j->sweep);
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
    srv_queue_out(s, 0, w->rid, w->rid_len, MSG_JOB, b, blob, len);
    worker_add_job(w, j->id, j);
    w->credit--;
}

/* Leases dispatchable jobs to workers with credit, round robin.  Runs inside
 * the pump's transaction.  Credit invariant: a worker is sent at most as many
 * jobs as its credit (what it announced it can take), so credit never goes
 * below 0 through dispatch. */
void srv_dispatch(drq_server *s) {
    if (!s->dirty || s->nw == 0) return;
    s->dirty = 0;
    double wall = drq_clock_wall();
    store_job jobs[MAX_LEASE_PER_PUMP];
    int start = s->rr++;
    for (int k = 0; k < s->nw; k++) {
        worker *w = s->w[(start + k) % s->nw];
        if (w->credit <= 0) continue;
        int want = w->credit < MAX_LEASE_PER_PUMP ? w->credit : MAX_LEASE_PER_PUMP;
        int got = store_lease(s->st, w->name, wall, s->o.lease_s, want, jobs);
        assert(got >= 0 && got <= want);
        for (int i = 0; i < got; i++) send_job(s, w, &jobs[i]);
        if (got < want) break; /* nothing left to dispatch */
        if (w->credit > 0) s->dirty = 1; /* hit the per-pump cap */
    }
}

/* ---- worker messages ---------------------------------------------------------- */

/* Queues the ACK of a reliable worker message (seq), releasing it from the
 * worker's outbox; sent only once the transaction that applied it commits. */
static void ack(drq_server *s, worker *w, int64_t seq, int64_t job) {
    json_t *b = json_object();
    json_object_set_new(b, "seq", json_integer(seq));
    if (job) json_object_set_new(b, "job", json_integer(job));
    srv_queue_out(s, 0, w->rid, w->rid_len, MSG_ACK, b, NULL, 0);
}

/* Adds the credit a message carries (jobs that left the worker), capped. */
static void add_credit(drq_server *s, worker *w, const json_t *body) {
    int64_t c = drq_jint(body, "credit");
    if (c > 0) {
        w->credit += c > MAX_CREDIT ? MAX_CREDIT : (int)c;
        if (w->credit > MAX_CREDIT) w->credit = MAX_CREDIT;
        s->dirty = 1;
    }
}

/* HELLO: (re-)registration.  A previous registration of the same peer or name
 * is replaced; jobs it held that the new HELLO does not list were lost by the
 * worker (failed attempts); listed jobs are kept when still leased to it or
 * re-leased when queued, and cancelled otherwise.  Answered with WELCOME. */
static void on_hello(drq_server *s, const drq_msg *m) {
    const json_t *b = m->body;
    const char *name = drq_jstr(b, "name");
    if (strlen(name) >= DRQ_TAG_MAX) {
        log_line("server", "workers: HELLO from %s dropped: name longer than %d bytes", srv_hexid(m->rid, m->rid_len),
                 DRQ_TAG_MAX - 1);
        return;
    }
    worker *old = srv_worker_by_rid(s, m->rid, m->rid_len);
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
                if (leased_to(s, old->jobs[i].id, name, &j)) {
                    char msg[256];
                    snprintf(msg, sizeof msg, "worker %s re-registered without the job", name);
                    store_job_attempt_failed(s->st, j.id, msg, drq_clock_wall(), s->o.max_attempts, s->o.backoff_s);
                    s->dirty = 1;
                }
            }
        }
        srv_worker_remove(s, old);
    }
    worker *w = xcalloc(1, sizeof *w);
    memcpy(w->rid, m->rid, m->rid_len);
    w->rid_len = m->rid_len;
    snprintf(w->name, sizeof w->name, "%s", name);
    snprintf(w->version, sizeof w->version, "%s", drq_jstr(b, "version"));
    w->devices = json_dumps(json_object_get(b, "devices"), JSON_COMPACT);
    w->credit = (int)(drq_jint(b, "credit") > MAX_CREDIT ? MAX_CREDIT : drq_jint(b, "credit"));
    w->last_seen = drq_clock_mono();
    w->joined = drq_clock_wall();
    s->w = xrealloc(s->w, (size_t)(s->nw + 1) * sizeof *s->w);
    s->w[s->nw++] = w;

    /* re-adopt the jobs it still holds */
    double wall = drq_clock_wall();
    size_t k;
    json_t *e;
    int kept = 0, cancelled = 0;
    json_array_foreach(held, k, e) {
        int64_t id = json_integer_value(e);
        store_job j;
        int ok = 0;
        if (!store_job_get(s->st, id, &j)) {
            if (store_job_leased_to(&j, name))
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
            srv_queue_out(s, 0, w->rid, w->rid_len, MSG_CANCEL, c, NULL, 0);
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
    srv_queue_out(s, 0, w->rid, w->rid_len, MSG_WELCOME, r, NULL, 0);
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

/* RESULT: rows of a job, inserted idempotently; a final RESULT completes the
 * job when the results table holds every image of its range (else a failed
 * attempt).  A late result for a job leased elsewhere is accepted and the
 * other holder told to CANCEL.  Always ACKed, so that the worker stops resending it. */
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
    spec_entry *se = srv_spec_get(s, j.sweep);
    if (!se || j.purifier >= se->spec.npurifiers || j.attack >= se->spec.nattacks) {
        ack(s, w, seq, id);
        return;
    }
    const char *pur = se->spec.purifiers[j.purifier].name, *atk = se->spec.attacks[j.attack].name;
    drq_row *rows = NULL;
    int64_t got = 0;
    drq_err e;
    char why[1200];
    /* the frame holds the rows, then "images" bytes of their images (common/images.h) */
    if (drq_images_unpack_rows(m->bin[0], m->binlen[0], (size_t)drq_jint(b, "images"), n, &rows, &got, &e)) {
        snprintf(why, sizeof why, "malformed result rows: %s", e.msg);
        goto bad;
    }
    if (!rows_match_job(&j, pur, atk, rows, got, why, sizeof why)) goto bad;
    if (!drq_analysis_check(se->spec.attacks[j.attack].kind, rows, got, why, sizeof why)) goto bad;
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
            if (!store_job_leased_to(&j, w->name)) {
                if (j.state[0] == 'l') srv_cancel_on_workers(s, id, w, "completed by another worker");
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
    if (final && store_job_leased_to(&j, w->name)) {
        store_job_attempt_failed(s->st, id, why, drq_clock_wall(), s->o.max_attempts, s->o.backoff_s);
        s->dirty = 1;
    }
    ack(s, w, seq, id);
}

/* Routes one message from the workers' socket.  An unregistered peer gets
 * RESET (register again); FAIL, RELEASE and CHECKPOINT act only on a job
 * leased to the sender, and every reliable message is ACKed either way. */
void srv_on_worker_msg(drq_server *s, drq_msg *m) {
    if (m->type == MSG_HELLO) {
        on_hello(s, m);
        return;
    }
    if (m->type > MSG_RELEASE) { /* not a worker -> server type */
        log_line("server", "workers: unexpected %s from %s dropped", drq_msg_name(m->type), srv_hexid(m->rid, m->rid_len));
        return;
    }
    worker *w = srv_worker_by_rid(s, m->rid, m->rid_len);
    if (!w) {
        /* a peer we do not know (we restarted, or it was declared lost) */
        log_line("server", "workers: %s from unregistered peer %s; asking it to re-register", drq_msg_name(m->type),
                 srv_hexid(m->rid, m->rid_len));
        srv_queue_out(s, 0, m->rid, m->rid_len, MSG_RESET, json_object(), NULL, 0);
        return;
    }
    w->last_seen = drq_clock_mono();
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
        if (leased_to(s, id, w->name, &j)) {
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
        if (leased_to(s, id, w->name, &j)) {
            if (drq_jbool(b, "retryable")) {
                int failed =
                    store_job_attempt_failed(s->st, id, msg, drq_clock_wall(), s->o.max_attempts, s->o.backoff_s);
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
        if (leased_to(s, id, w->name, &j) && store_job_release(s->st, id) == 0) {
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
