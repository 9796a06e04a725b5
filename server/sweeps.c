/* sweeps.c — sweeps on the coordinator: the cache of parsed specs, SUBMIT
 * (parsed and canonicalised on the libuv thread pool, deduplicated and created
 * on the loop) and the expansion of a new sweep into jobs in bounded chunks per
 * loop turn, so that a large submit never stalls the heartbeats.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- specs ------------------------------------------------------------------ */

/* Adds a parsed spec to the cache (takes ownership of json and sp). */
static spec_entry *spec_put(drq_server *s, int64_t sweep, json_t *json, const drq_spec *sp) {
    s->specs = xrealloc(s->specs, (size_t)(s->nspecs + 1) * sizeof *s->specs);
    spec_entry *se = &s->specs[s->nspecs++];
    se->sweep = sweep;
    se->json = json;
    se->spec = *sp;
    return se;
}

spec_entry *srv_spec_get(drq_server *s, int64_t sweep) {
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
    return spec_put(s, sweep, j, &sp);
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
    /* results of submit_op */
    int duplicate, by_submission;
} submit_req;

/* On a thread-pool thread: parse, check and canonicalise the spec (touches
 * nothing of the server). */
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

/* Frees a request; keep_spec: its parsed spec moved into the spec cache. */
static void submit_free(submit_req *r, int keep_spec) {
    json_decref(r->spec_json);
    if (r->ok && !keep_spec) {
        drq_spec_free(&r->sp);
        json_decref(r->canon_json);
    }
    free(r->canon);
    free(r);
}

/* The REPLY to a SUBMIT (duplicate, note: when nothing was created). */
static void submit_reply(drq_server *s, submit_req *r, int64_t sweep, int64_t njobs, int64_t nrows,
                         const char *duplicate, const char *note) {
    json_t *b = json_object();
    json_object_set_new(b, "id", json_integer(r->id));
    json_object_set_new(b, "sweep", json_integer(sweep));
    json_object_set_new(b, "jobs", json_integer(njobs));
    json_object_set_new(b, "rows", json_integer(nrows));
    if (duplicate) json_object_set_new(b, "duplicate", json_string(duplicate));
    if (note) json_object_set_new(b, "note", json_string(note));
    srv_queue_out(s, 1, r->rid, r->rid_len, MSG_REPLY, b, NULL, 0);
}

/* The SUBMIT's transaction: the sweep this submission or spec already made
 * (nothing written), else a new sweep. */
static int64_t submit_op(drq_server *s, void *arg, int *write, drq_err *e) {
    submit_req *r = arg;
    const char *sub = r->submission[0] ? r->submission : NULL;
    int64_t sid = store_sweep_dedup(s->st, sub, r->canon, r->again, &r->by_submission);
    if (sid > 0) {
        r->duplicate = 1;
        *write = 0;
        return sid;
    }
    return store_sweep_create_ex(s->st, &r->sp, r->canon, sub, &sid, e) ? -1 : sid;
}

/* Back on the loop after submit_work: refuse, answer a duplicate, or create
 * the sweep, cache its spec, queue its expansion and answer at once. */
static void submit_done(uv_work_t *req, int status) {
    submit_req *r = req->data;
    drq_server *s = r->s;
    s->submits_inflight--;
    if (s->stopping || status) {
        submit_free(r, 0);
        return;
    }
    static const char nothing[] = "nothing was created, submit again later";
    if (r->ok && s->degraded) {
        srv_refuse(s, r->rid, r->rid_len, r->id, "submit", s->fault_msg, nothing);
        goto out;
    }
    if (!r->ok) {
        srv_reply_error(s, r->rid, r->rid_len, r->id, "%s", r->e.msg);
        log_line("server", "submit rejected: %s", r->e.msg);
        goto out;
    }
    int64_t sid;
    if (srv_client_txn(s, r->rid, r->rid_len, r->id, "submit", nothing, submit_op, r, &sid)) goto out;
    int by_submission = r->by_submission;
    if (r->duplicate) {
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
    log_line("server", "sweep %lld \"%s\" submitted: %lld jobs, %lld rows (parsed in %.2f s off the loop)",
             (long long)sid, r->sp.name, (long long)drq_spec_njobs(&r->sp), (long long)drq_spec_nrows(&r->sp),
             drq_clock_mono() - r->t0);
    /* the parsed spec goes into the cache, so expansion and dispatch never parse it on the loop */
    spec_entry *se = spec_put(s, sid, r->canon_json, &r->sp);
    srv_expansion_add(s, sid);
    /* reply now; the jobs are inserted in bounded chunks by later pumps (a
     * restarted server resumes the expansion) */
    submit_reply(s, r, sid, drq_spec_njobs(&se->spec), drq_spec_nrows(&se->spec), NULL, NULL);
    srv_flush_out(s);
    submit_free(r, 1);
    srv_pump(s);
    return;
out:
    srv_flush_out(s);
    submit_free(r, 0);
    srv_pump(s);
}

/* A client's submission id: 1 to 64 of [A-Za-z0-9_-]. */
static int submission_ok(const char *id) {
    size_t n = strlen(id);
    if (n < 1 || n > 64) return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)id[i]) || id[i] == '-' || id[i] == '_')) return 0;
    return 1;
}

void srv_submit_start(drq_server *s, drq_msg *m, int64_t id) {
    const char *sub = drq_jstr(m->body, "submission");
    if (sub && !submission_ok(sub)) {
        srv_reply_error(s, m->rid, m->rid_len, id, "submission id: expected 1 to 64 letters, digits, '-' or '_'");
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
    r->t0 = drq_clock_mono();
    /* the message body goes with the request: nothing else may touch the spec */
    json_object_del(m->body, "spec");
    s->submits_inflight++;
    uv_queue_work(&s->loop, &r->req, submit_work, submit_done);
}
/* ---- expansion ------------------------------------------------------------------ */

void srv_expansion_add(drq_server *s, int64_t sweep) {
    s->exp = xrealloc(s->exp, (size_t)(s->nexp + 1) * sizeof *s->exp);
    expansion *x = &s->exp[s->nexp++];
    memset(x, 0, sizeof *x);
    x->sweep = sweep;
    x->t0 = drq_clock_mono();
}

/* Inserts one chunk of the first pending expansion; replies to its client
 * once the sweep is complete. */
void srv_expand_step(drq_server *s) {
    if (s->nexp == 0 || s->degraded) return;
    expansion *x = &s->exp[0];
    drq_err e;
    spec_entry *se = srv_spec_get(s, x->sweep);
    if (!se) {
        log_line("server", "sweep %lld: cannot expand, spec unreadable", (long long)x->sweep);
        s->exp[0] = s->exp[--s->nexp];
        return;
    }
    if (store_begin(s->st, &e)) return; /* busy: try again next pump */
    /* bounded work per loop turn: sub-chunks until EXPAND_CHUNK jobs or EXPAND_BUDGET_S */
    double t0 = drq_clock_mono();
    int64_t left, done = 0;
    do {
        left = store_sweep_expand(s->st, x->sweep, &se->spec, EXPAND_SUB, &e);
        done += EXPAND_SUB;
    } while (left > 0 && done < EXPAND_CHUNK && drq_clock_mono() - t0 < EXPAND_BUDGET_S);
    if (left < 0 && store_fault_is_storage(store_fault(s->st, NULL))) {
        srv_db_failed(s, "expansion", &e); /* kept: carries on when writes succeed again */
        return;
    }
    if (left < 0) {
        store_rollback(s->st);
        log_line("server", "sweep %lld: expansion failed: %s", (long long)x->sweep, e.msg);
        s->exp[0] = s->exp[--s->nexp];
        return;
    }
    if (store_commit(s->st, &e)) {
        srv_db_failed(s, "expansion", &e);
        return;
    }
    s->dirty = 1;
    if (left > 0) return;
    double secs = drq_clock_mono() - x->t0;
    log_line("server", "sweep %lld: %lld jobs queued (%.2f s)", (long long)x->sweep,
             (long long)drq_spec_njobs(&se->spec), secs);
    memmove(&s->exp[0], &s->exp[1], (size_t)(s->nexp - 1) * sizeof *s->exp);
    s->nexp--;
}
