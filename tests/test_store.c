/* test_store.c — the SQLite store: migrations (fresh, re-open, newer-version
 * refusal, not-a-database), the job state machine (lease, back-off, max
 * attempts, dependencies, release, idempotent results, per-sweep counters),
 * result paging; and the noop job runner (checkpoint, preemption, resume with
 * identical rows; other kinds refuse clearly); idempotent submit and the
 * upgrade of a version-1 database; storage faults (full disk, I/O error)
 * through the fault VFS. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "common/spec.h"
#include "server/faultvfs.h"
#include "server/store.h"
#include "worker/job.h"

static char dir[] = "/tmp/drq-test-store.XXXXXX";

static void path_of(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", dir, name); }

static int sh(const char *cmd) { return system(cmd); }

static void test_migrations(void) {
    char db[256], cmd[600];
    drq_err e;
    path_of(db, sizeof db, "m.db");
    store *st = store_open(db, 0, &e);
    CHECK_MSG(st != NULL, "%s: %p", "st != NULL", (void *)(st));
    CHECK_EQ_INT(store_schema_version(st), store_schema_latest());
    CHECK_CMP_INT(store_schema_latest(), >=, 1);
    store_close(st);
    /* re-open: nothing re-applied */
    st = store_open(db, 0, &e);
    CHECK_MSG(st != NULL, "%s: %p", "st != NULL", (void *)(st));
    CHECK_EQ_INT(store_schema_version(st), store_schema_latest());
    store_close(st);
    snprintf(cmd, sizeof cmd, "test \"$(sqlite3 %s 'select count(*) from schema_version')\" = %d", db,
             store_schema_latest());
    CHECK_EQ_INT(sh(cmd), 0);
    /* read-only open works on a current db */
    st = store_open(db, 1, &e);
    CHECK_MSG(st != NULL, "%s: %p", "st != NULL", (void *)(st));
    store_close(st);
    /* a newer schema than this build knows: refused, read-write and read-only */
    snprintf(cmd, sizeof cmd, "sqlite3 %s 'insert into schema_version values(%d, 0)'", db, store_schema_latest() + 7);
    CHECK_EQ_INT(sh(cmd), 0);
    st = store_open(db, 0, &e);
    CHECK_MSG(st == NULL, "%s: %p", "st == NULL", (void *)(st));
    CHECK_CONTAINS(e.msg, "is newer than this drq build knows");
    st = store_open(db, 1, &e);
    CHECK_MSG(st == NULL, "%s: %p", "st == NULL", (void *)(st));
    CHECK_CONTAINS(e.msg, "newer");
    /* not a database */
    char junk[256];
    path_of(junk, sizeof junk, "junk.db");
    FILE *f = fopen(junk, "w");
    fputs("this is not an SQLite database, it is a text file of some length......................", f);
    fclose(f);
    st = store_open(junk, 0, &e);
    CHECK_MSG(st == NULL, "%s: %p", "st == NULL", (void *)(st));
    CHECK_CMP_INT(strlen(e.msg), >, 0);
    /* read-only on a missing file */
    char none[256];
    path_of(none, sizeof none, "missing.db");
    st = store_open(none, 1, &e);
    CHECK_MSG(st == NULL, "%s: %p", "st == NULL", (void *)(st));
}

static const char *spec_text =
    "{\"name\":\"s\",\"dataset\":{\"kind\":\"none\",\"count\":30},\"seeds\":[0,1],"
    "\"attacks\":[{\"name\":\"a\",\"kind\":\"noop\"},{\"name\":\"t\",\"kind\":\"noop\",\"randomness\":\"transfer\","
    "\"transfer_seed\":0}],\"shard\":{\"images\":10}}";

static store *fresh(const char *name, drq_spec *sp, int64_t *sweep) {
    char db[256];
    drq_err e;
    path_of(db, sizeof db, name);
    store *st = store_open(db, 0, &e);
    CHECK_MSG(st != NULL, "%s: %p", "st != NULL", (void *)(st));
    CHECK_EQ_INT(drq_spec_parse_text(spec_text, sp, &e), 0);
    char *canon = drq_spec_canonical(sp);
    CHECK_EQ_INT(store_begin(st, &e), 0);
    CHECK_EQ_INT(store_sweep_create(st, sp, canon, sweep, &e), 0);
    CHECK_EQ_INT(store_sweep_expand(st, *sweep, sp, 5, &e), 7); /* chunked */
    CHECK_EQ_INT(store_sweep_expand(st, *sweep, sp, 100, &e), 0);
    CHECK_EQ_INT(store_commit(st, &e), 0);
    CHECK_EQ_INT(store_sweep_find(st, "s", canon, &e), *sweep);
    CHECK_EQ_INT(store_sweep_find(st, "s", "{\"other\":1}", &e), -1);
    CHECK_CONTAINS(e.msg, "different spec");
    free(canon);
    return st;
}

static void test_state_machine(void) {
    drq_spec sp;
    int64_t sw;
    drq_err e;
    store *st = fresh("sm.db", &sp, &sw);
    store_counts c;
    CHECK_EQ_INT(store_sweep_counts(st, sw, &c), 0);
    CHECK_EQ_INT(c.njobs, 12);
    CHECK_EQ_INT(c.queued, 12);
    CHECK_EQ_STR(c.state, "active");
    store_job jobs[64];
    double now = drq_clock_wall();
    store_begin(st, &e);
    /* the 3 transfer jobs of seed 1 wait for their seed-0 sources */
    int n = store_lease(st, "w", now, 30, 64, jobs);
    CHECK_EQ_INT(n, 9);
    int waiting_leased = 0;
    for (int i = 0; i < n; i++) waiting_leased += jobs[i].depends_on != 0;
    CHECK_EQ_INT(waiting_leased, 0);
    store_sweep_counts(st, sw, &c);
    CHECK_EQ_INT(c.leased, 9);
    CHECK_EQ_INT(c.queued, 3);
    /* finish the transfer sources (attack 1, seed 0): their dependents become leasable */
    for (int i = 0; i < n; i++)
        if (jobs[i].attack == 1) CHECK_EQ_INT(store_job_done(st, jobs[i].id), 0);
    store_job more[8];
    CHECK_EQ_INT(store_lease(st, "w2", now, 30, 8, more), 3);
    /* a failed attempt: back-off, then failure after max attempts; dependents too */
    store_job victim = jobs[0];
    CHECK_EQ_INT(store_job_attempt_failed(st, victim.id, "boom", now, 3, 1.0), 0);
    store_job j;
    store_job_get(st, victim.id, &j);
    CHECK_EQ_STR(j.state, "queued");
    CHECK_EQ_INT(j.attempts, 1);
    CHECK_CMP_DBL(j.not_before, >=, now + 0.99);
    CHECK_EQ_INT(store_lease(st, "w", now, 30, 8, more), 0); /* backing off */
    CHECK_EQ_INT(store_lease(st, "w", now + 1.01, 30, 8, more), 1);
    CHECK_EQ_INT(store_job_attempt_failed(st, victim.id, "boom", now, 3, 1.0), 0);
    store_job_get(st, victim.id, &j);
    CHECK_CMP_DBL(j.not_before, >=, now + 1.99); /* doubled */
    CHECK_EQ_INT(store_job_attempt_failed(st, victim.id, "boom", now, 3, 1.0), 1);
    store_job_get(st, victim.id, &j);
    CHECK_EQ_STR(j.state, "failed");
    CHECK_EQ_INT(j.attempts, 3);
    /* release: back to queued, no attempt counted */
    store_job r = jobs[1];
    CHECK_EQ_INT(store_job_release(st, r.id), 0);
    store_job_get(st, r.id, &j);
    CHECK_EQ_STR(j.state, "queued");
    CHECK_EQ_INT(j.attempts, 0);
    CHECK_EQ_INT(store_job_release(st, r.id), -1); /* not leased any more */
    /* expired leases */
    int ne;
    int64_t *exp = store_expired_leases(st, now + 31, &ne);
    CHECK_CMP_INT(ne, >=, 5);
    free(exp);
    store_commit(st, &e);
    /* counters always equal real counts */
    char cmd[1400];
    snprintf(cmd, sizeof cmd,
             "test \"$(sqlite3 %s/sm.db \"select (select count(*) from jobs where state='queued') = n_queued and "
             "(select count(*) from jobs where state='leased') = n_leased and (select count(*) from jobs where "
             "state='done') = n_done and (select count(*) from jobs where state='failed') = n_failed from sweeps\")\" = 1",
             dir);
    CHECK_EQ_INT(sh(cmd), 0);
    /* retry: failed -> queued */
    store_begin(st, &e);
    CHECK_EQ_INT(store_sweep_retry(st, sw, &e), 1);
    store_commit(st, &e);
    store_job_get(st, victim.id, &j);
    CHECK_EQ_STR(j.state, "queued");
    CHECK_EQ_INT(j.attempts, 0);
    /* the transfer sources finished above are done; requeueing leases leaves them alone */
    store_begin(st, &e);
    store_requeue_all_leased(st);
    store_job src;
    int64_t src_id = 0, dep_id = 0;
    for (int64_t id = 1; id <= 12; id++) {
        store_job_get(st, id, &src);
        if (src.depends_on) {
            dep_id = id;
            src_id = src.depends_on;
            break;
        }
    }
    CHECK_CMP_INT(dep_id, >, 0);
    store_job_get(st, src_id, &src);
    CHECK_EQ_STR(src.state, "done");
    store_commit(st, &e);
    drq_spec_free(&sp);
    store_close(st);

    /* a fresh sweep where the source fails before the dependent ran */
    st = fresh("dep.db", &sp, &sw);
    store_begin(st, &e);
    int64_t s_id = 0, d_id = 0;
    for (int64_t id = 1; id <= 12; id++) {
        store_job_get(st, id, &src);
        if (src.depends_on && !d_id) {
            d_id = id;
            s_id = src.depends_on;
        }
    }
    store_lease_one(st, s_id, "w", now, 30);
    store_job_fail(st, s_id, "source broke");
    store_job_get(st, d_id, &j);
    CHECK_EQ_STR(j.state, "failed");
    char cmd2[600];
    snprintf(cmd2, sizeof cmd2, "dependency job %lld failed", (long long)s_id);
    store_commit(st, &e);
    snprintf(cmd, sizeof cmd, "sqlite3 %s/dep.db \"select last_error from jobs where id=%lld\" | grep -q '%s'", dir,
             (long long)d_id, cmd2);
    CHECK_EQ_INT(sh(cmd), 0);
    drq_spec_free(&sp);
    store_close(st);
}

static void test_results(void) {
    drq_spec sp;
    int64_t sw;
    drq_err e;
    store *st = fresh("res.db", &sp, &sw);
    store_job j;
    store_job_get(st, 1, &j);
    drq_row rows[10];
    for (int i = 0; i < 10; i++) {
        drq_row_init(&rows[i]);
        rows[i].image = j.image_start + i;
        rows[i].label = i;
        rows[i].robust = i % 2;
        rows[i].extra = NULL;
    }
    store_begin(st, &e);
    CHECK_EQ_INT(store_results_insert(st, &j, "none", "a", rows, 6), 6);
    CHECK_EQ_INT(store_results_insert(st, &j, "none", "a", rows, 10), 4); /* idempotent */
    CHECK_EQ_INT(store_results_insert(st, &j, "none", "a", rows, 10), 0);
    CHECK_EQ_INT(store_results_count(st, &j, "none", "a"), 10);
    store_commit(st, &e);
    store_counts c;
    store_sweep_counts(st, sw, &c);
    CHECK_EQ_INT(c.rows_done, 10);
    /* paging with a cursor returns every row once, in key order */
    drq_row *page;
    int64_t n1 = store_results_fetch(st, sw, NULL, NULL, 0, 0, 4, &page);
    CHECK_EQ_INT(n1, 4);
    CHECK_EQ_INT(page[3].image, j.image_start + 3);
    CHECK(isnan(page[0].ssim_adv));
    CHECK_EQ_INT(page[1].robust, 1);
    drq_row last = page[3];
    drq_rows_free(page, n1);
    int64_t n2 = store_results_fetch(st, sw, last.purifier, last.attack, last.seed, last.image, 100, &page);
    drq_rows_free(page, n2);
    CHECK_EQ_INT(n2, 6);
    drq_spec_free(&sp);
    store_close(st);
}

/* ---- the noop runner --------------------------------------------------------- */

typedef struct {
    void *blob;
    size_t len;
    int64_t step;
    int n;
} saved;

static void save_ckpt(job_ctx *ctx, int64_t step, const void *blob, size_t len) {
    saved *s = ctx->user;
    free(s->blob);
    s->blob = malloc(len);
    memcpy(s->blob, blob, len);
    s->len = len;
    s->step = step;
    s->n++;
}

static void preempt_at(job_ctx *ctx, int64_t done, int64_t total) {
    if (done == 4) atomic_store((atomic_int *)ctx->preempt, 1);
}

static void test_noop(void) {
    drq_spec sp;
    drq_err e;
    CHECK_EQ_INT(drq_spec_parse_text("{\"name\":\"n\",\"dataset\":{\"kind\":\"none\",\"count\":20},\"seeds\":[3],"
                                     "\"attacks\":[{\"name\":\"a\",\"kind\":\"noop\",\"fail_images\":[17]}]}",
                                     &sp, &e),
                 0);
    drq_job job = {.id = 1, .sweep = 1, .spec = &sp, .seed = 3, .image_start = 0, .image_count = 10,
                   .device = "cpu", .worker = "t"};
    atomic_int cancel = 0, preempt = 0;
    saved sv = {0};
    job_ctx ctx = {.user = &sv, .checkpoint = save_ckpt, .checkpoint_every = 3, .cancel = &cancel, .preempt = &preempt};
    drq_row *ref, *got;
    int64_t nref, ngot;
    CHECK_EQ_INT(job_run(&job, &ctx, &ref, &nref, &e), JOB_DONE);
    CHECK_EQ_INT(nref, 10);
    CHECK_EQ_INT(sv.n, 3); /* after 3, 6, 9 images */
    CHECK_EQ_INT(ref[4].image, 4);
    CHECK_CONTAINS(ref[9].extra, "\"chain\"");
    /* preempted after 4 images: checkpoint, then resume elsewhere → identical rows */
    sv.n = 0;
    ctx.checkpoint_every = 0;
    ctx.progress = preempt_at;
    CHECK_EQ_INT(job_run(&job, &ctx, &got, &ngot, &e), JOB_PREEMPTED);
    CHECK_EQ_INT(sv.n, 1);
    CHECK_EQ_INT(sv.step, 4);
    atomic_store(&preempt, 0);
    job_ctx ctx2 = {.user = &sv, .checkpoint = save_ckpt, .cancel = &cancel, .preempt = &preempt,
                    .resume = sv.blob, .resume_len = sv.len, .resume_step = sv.step};
    job.worker = "other";
    CHECK_EQ_INT(job_run(&job, &ctx2, &got, &ngot, &e), JOB_DONE);
    CHECK_EQ_INT(ctx2.resumed, 1);
    CHECK_EQ_INT(ngot, 10);
    int same = 1;
    for (int i = 0; i < 10; i++) {
        same &= got[i].image == ref[i].image && got[i].label == ref[i].label && got[i].robust == ref[i].robust &&
                got[i].delta_l2 == ref[i].delta_l2 && !strcmp(got[i].extra, ref[i].extra);
    }
    CHECK_MSG(same, "resumed rows equal the uninterrupted rows");
    CHECK_EQ_STR(got[2].worker, "t");     /* computed before the checkpoint */
    CHECK_EQ_STR(got[7].worker, "other"); /* after it */
    drq_rows_free(got, ngot);
    /* a checkpoint of another job is ignored, not trusted */
    drq_job other = job;
    other.id = 2;
    job_ctx ctx3 = {.cancel = &cancel, .preempt = &preempt, .resume = sv.blob, .resume_len = sv.len};
    CHECK_EQ_INT(job_run(&other, &ctx3, &got, &ngot, &e), JOB_DONE);
    CHECK_EQ_INT(ctx3.resumed, 0);
    drq_rows_free(got, ngot);
    job_ctx ctx4 = {.cancel = &cancel, .preempt = &preempt, .resume = "garbage", .resume_len = 7};
    CHECK_EQ_INT(job_run(&job, &ctx4, &got, &ngot, &e), JOB_DONE);
    drq_rows_free(got, ngot);
    /* cancel */
    atomic_store(&cancel, 1);
    job_ctx ctx5 = {.cancel = &cancel, .preempt = &preempt};
    CHECK_EQ_INT(job_run(&job, &ctx5, &got, &ngot, &e), JOB_CANCELLED);
    atomic_store(&cancel, 0);
    /* poison image: a retryable failure naming the image */
    drq_job poison = job;
    poison.image_start = 10;
    job_ctx ctx6 = {.cancel = &cancel, .preempt = &preempt};
    CHECK_EQ_INT(job_run(&poison, &ctx6, &got, &ngot, &e), JOB_FAILED);
    CHECK_EQ_INT(ctx6.retryable, 1);
    CHECK_CONTAINS(e.msg, "image 17");
    /* determinism across runs and independence from the worker */
    drq_rows_free(ref, nref);
    free(sv.blob);
    drq_spec_free(&sp);

    /* kinds without an engine fail for good, clearly */
    CHECK_EQ_INT(drq_spec_parse_text("{\"name\":\"p\",\"dataset\":{\"kind\":\"mnist\",\"path\":\"x\",\"count\":4},"
                                     "\"classifier\":{\"arch\":\"wrn\",\"weights\":\"w\"},"
                                     "\"attacks\":[{\"name\":\"a\",\"kind\":\"pgd\"}]}",
                                     &sp, &e),
                 0);
    drq_job pj = {.id = 1, .sweep = 1, .spec = &sp, .image_count = 4};
    job_ctx pc = {.cancel = &cancel, .preempt = &preempt};
    CHECK_EQ_INT(job_run(&pj, &pc, &got, &ngot, &e), JOB_FAILED);
    CHECK_EQ_INT(pc.retryable, 0);
    CHECK_CONTAINS(e.msg, "attack kind 'pgd' needs the purification engine");
    drq_spec_free(&sp);
}

/* Idempotent submit: dedup by submission id and by canonical spec, --again,
 * cancelled sweeps; and a version-1 database upgraded in place (its spec moves
 * to sweep_specs, its sweep is still found by text). */
static void test_submit_dedup(void) {
    char db[256], cmd[1200];
    drq_err e;
    drq_spec sp;
    path_of(db, sizeof db, "v1.db");
    CHECK_EQ_INT(drq_spec_parse_text(spec_text, &sp, &e), 0);
    char *canon = drq_spec_canonical(&sp);
    /* a database as schema 001 left it, with one sweep */
    char sqlf[300];
    path_of(sqlf, sizeof sqlf, "v1.sql");
    FILE *f = fopen(sqlf, "w");
    CHECK_MSG(f != NULL, "%s: %p", "f != NULL", (void *)(f));
    if (f) {
        fprintf(f,
                "insert into schema_version values(1, 0);\n"
                "insert into sweeps(name, spec, created, state, njobs, nrows, job_base) "
                "values('s', '%s', 0, 'active', 0, 0, 1);\n",
                canon); /* the canonical spec holds no single quote */
        fclose(f);
    }
    snprintf(cmd, sizeof cmd, "sqlite3 %s < schema/001_init.sql && sqlite3 %s < %s", db, db, sqlf);
    CHECK_EQ_INT(sh(cmd), 0);
    store *st = store_open(db, 0, &e);
    CHECK_MSG(st != NULL, "%s: %p", "st != NULL", (void *)(st));
    if (!st) goto out;
    CHECK_EQ_INT(store_schema_version(st), store_schema_latest());
    char *text = store_sweep_spec(st, 1);
    CHECK_EQ_STR(text, canon);
    free(text);
    int by_sub = -1;
    CHECK_EQ_INT(store_sweep_dedup(st, NULL, canon, 0, &by_sub), 1); /* old sweep: no hash, found by text */
    CHECK_EQ_INT(by_sub, 0);
    CHECK_EQ_INT(store_sweep_dedup(st, NULL, canon, 1, &by_sub), 0); /* --again */
    CHECK_EQ_INT(store_sweep_dedup(st, "abc", "{\"other\":1}", 0, &by_sub), 0);
    int64_t id = 0;
    CHECK_EQ_INT(store_begin(st, &e), 0);
    CHECK_EQ_INT(store_sweep_create_ex(st, &sp, canon, "abc", &id, &e), 0);
    CHECK_EQ_INT(store_commit(st, &e), 0);
    CHECK_EQ_INT(id, 2);
    CHECK_EQ_INT(store_sweep_dedup(st, "abc", canon, 1, &by_sub), 2); /* a retry, even with --again */
    CHECK_EQ_INT(by_sub, 1);
    CHECK_EQ_INT(store_sweep_dedup(st, "abd", canon, 0, &by_sub), 1); /* the first equal sweep */
    /* a second submission with the same id is refused by the database itself */
    CHECK_EQ_INT(store_begin(st, &e), 0);
    CHECK_CMP_INT(store_sweep_create_ex(st, &sp, canon, "abc", &id, &e), !=, 0);
    store_rollback(st);
    /* cancelled sweeps do not count */
    int64_t *leased = NULL;
    int nl = 0;
    CHECK_EQ_INT(store_begin(st, &e), 0);
    CHECK_CMP_INT(store_sweep_cancel(st, 1, &leased, &nl, &e), >=, 0);
    free(leased);
    CHECK_CMP_INT(store_sweep_cancel(st, 2, &leased, &nl, &e), >=, 0);
    free(leased);
    CHECK_EQ_INT(store_commit(st, &e), 0);
    CHECK_EQ_INT(store_sweep_dedup(st, NULL, canon, 0, &by_sub), 0);
    char h1[17], h2[17];
    store_spec_hash(canon, h1);
    store_spec_hash("{}", h2);
    CHECK_EQ_INT(strlen(h1), 16);
    CHECK_MSG(strcmp(h1, h2) != 0, "both \"%s\"", h1);
    store_close(st);
out:
    free(canon);
    drq_spec_free(&sp);
}

/* Storage faults through the fault VFS (server/faultvfs.c): a commit on a
 * full disk fails and leaves nothing of its transaction behind, the store
 * carries on when space returns, an I/O error likewise; a statement error
 * (constraint) fails its transaction instead of ending the process. */
static void test_storage_faults(void) {
    char db[256], flag[256], cfg[600];
    drq_err e;
    drq_spec sp;
    path_of(db, sizeof db, "fault.db");
    path_of(flag, sizeof flag, "disk-full");
    snprintf(cfg, sizeof cfg, "err=full,op=write,while=%s", flag);
    CHECK_EQ_INT(drq_faultvfs_config(cfg), 0);
    CHECK_CMP_INT(drq_faultvfs_config("err=nonsense"), !=, 0);
    CHECK_EQ_INT(drq_faultvfs_config(cfg), 0);
    store *st = store_open(db, 0, &e);
    CHECK_MSG(st != NULL, "%s: %p", "st != NULL", (void *)(st));
    if (!st) return;
    CHECK_EQ_INT(drq_spec_parse_text(spec_text, &sp, &e), 0);
    char *canon = drq_spec_canonical(&sp);
    int64_t sweep = 0;
    CHECK_EQ_INT(store_begin(st, &e), 0);
    CHECK_EQ_INT(store_sweep_create(st, &sp, canon, &sweep, &e), 0);
    CHECK_EQ_INT(store_sweep_expand(st, sweep, &sp, 100, &e), 0);
    CHECK_EQ_INT(store_commit(st, &e), 0);
    store_job j;
    CHECK_EQ_INT(store_begin(st, &e), 0);
    CHECK_EQ_INT(store_lease(st, "w", drq_clock_wall(), 30, 1, &j), 1);
    CHECK_EQ_INT(store_commit(st, &e), 0);
    drq_row rows[10];
    for (int i = 0; i < 10; i++) {
        drq_row_init(&rows[i]);
        rows[i].sweep = sweep;
        rows[i].seed = j.seed;
        rows[i].image = j.image_start + i;
    }
    /* the disk fills up: the transaction fails as a whole */
    long inj0 = drq_faultvfs_injected();
    FILE *f = fopen(flag, "w");
    if (f) fclose(f);
    CHECK_EQ_INT(store_begin(st, &e), 0);
    CHECK_EQ_INT(store_results_insert(st, &j, "none", "a", rows, j.image_count), j.image_count);
    CHECK_EQ_INT(store_job_done(st, j.id), 0);
    CHECK_CMP_INT(store_commit(st, &e), !=, 0);
    CHECK_CONTAINS(e.msg, "full");
    const char *msg;
    int rc = store_fault(st, &msg);
    CHECK_EQ_INT(rc & 0xff, 13 /* SQLITE_FULL */);
    CHECK(store_fault_is_storage(rc));
    CHECK_CMP_INT(drq_faultvfs_injected(), >, inj0);
    /* reads still work; nothing of the failed transaction is there */
    store_counts c;
    CHECK_EQ_INT(store_sweep_counts(st, sweep, &c), 0);
    CHECK_EQ_INT(c.done, 0);
    CHECK_EQ_INT(c.rows_done, 0);
    CHECK_EQ_INT(store_results_count(st, &j, "none", "a"), 0);
    store_job j2;
    CHECK_EQ_INT(store_job_get(st, j.id, &j2), 0);
    CHECK_EQ_STR(j2.state, "leased");
    /* space returns: the same transaction commits, once */
    unlink(flag);
    CHECK_EQ_INT(store_begin(st, &e), 0);
    CHECK_EQ_INT(store_results_insert(st, &j, "none", "a", rows, j.image_count), j.image_count);
    CHECK_EQ_INT(store_job_done(st, j.id), 0);
    CHECK_EQ_INT(store_commit(st, &e), 0);
    CHECK_EQ_INT(store_fault(st, NULL), 0);
    CHECK_EQ_INT(store_sweep_counts(st, sweep, &c), 0);
    CHECK_EQ_INT(c.done, 1);
    CHECK_EQ_INT(c.rows_done, j.image_count);
    /* an I/O error on write: the same */
    snprintf(cfg, sizeof cfg, "err=ioerr,op=write,while=%s", flag);
    CHECK_EQ_INT(drq_faultvfs_config(cfg), 0);
    f = fopen(flag, "w");
    if (f) fclose(f);
    CHECK_EQ_INT(store_begin(st, &e), 0);
    store_event(st, sweep, 0, NULL, "test", "io");
    CHECK_CMP_INT(store_commit(st, &e), !=, 0);
    CHECK_EQ_INT(store_fault(st, NULL) & 0xff, 10 /* SQLITE_IOERR */);
    CHECK(store_fault_is_storage(store_fault(st, NULL)));
    unlink(flag);
    CHECK_EQ_INT(store_begin(st, &e), 0);
    store_event(st, sweep, 0, NULL, "test", "io");
    CHECK_EQ_INT(store_commit(st, &e), 0);
    /* a logic error (a second sweep with the same submission id) fails the
     * transaction, not the process, and is not a storage fault */
    int64_t id2;
    CHECK_EQ_INT(store_begin(st, &e), 0);
    CHECK_EQ_INT(store_sweep_create_ex(st, &sp, canon, "dup", &id2, &e), 0);
    CHECK_CMP_INT(store_sweep_create_ex(st, &sp, canon, "dup", &id2, &e), !=, 0);
    store_event(st, sweep, 0, NULL, "test", "after the error: not run");
    CHECK_CMP_INT(store_commit(st, &e), !=, 0);
    CHECK(!store_fault_is_storage(store_fault(st, NULL)));
    int by_sub;
    CHECK_EQ_INT(store_sweep_dedup(st, "dup", canon, 1, &by_sub), 0); /* rolled back */
    CHECK_EQ_INT(drq_faultvfs_config(NULL), 0);
    store_close(st);
    free(canon);
    drq_spec_free(&sp);
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    test_migrations();
    test_state_machine();
    test_results();
    test_noop();
    test_submit_dedup();
    test_storage_faults();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    sh(cmd);
    return CHECK_DONE();
}
