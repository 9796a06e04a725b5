/* store.c — see store.h. */
#include "store.h"

#include "common/analysis_rows.h"
#include "common/images.h"
#include "faultvfs.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* build/gen/schema_sql.c, generated from schema/NNN_*.sql by schema/embed.sh */
extern const int drq_schema_count;
extern const int drq_schema_versions[];
extern const char *const drq_schema_names[];
extern const char *const drq_schema_sql[];

#define NSTMT 64

struct store {
    sqlite3 *db;
    int readonly;
    /* rows_done increments of the open transaction, flushed by store_commit */
    struct {
        int64_t sweep, rows;
    } pending[8];
    int npending;
    struct {
        const char *sql; /* key: the address of a static SQL string */
        sqlite3_stmt *st;
    } cache[NSTMT];
    int ncache;
    /* the open write transaction (store_begin .. store_commit/rollback) and
     * its first failure: once a statement failed, no further statement of it
     * runs (SQLite may already have rolled it back, and what follows would
     * then commit on its own) and store_commit refuses */
    int in_txn;
    int fault_rc;
    char fault_msg[600];
    int wal_frames;     /* WAL size after the last commit (our WAL hook) */
    int ckpt_failures;  /* consecutive failed checkpoints (logged once) */
};

int store_schema_latest(void) {
    int v = 0;
    for (int i = 0; i < drq_schema_count; i++)
        if (drq_schema_versions[i] > v) v = drq_schema_versions[i];
    return v;
}

/* A prepared, reset statement for a static SQL string (cached by address). */
static sqlite3_stmt *ps(store *st, const char *sql) {
    for (int i = 0; i < st->ncache; i++)
        if (st->cache[i].sql == sql) {
            sqlite3_reset(st->cache[i].st);
            sqlite3_clear_bindings(st->cache[i].st);
            return st->cache[i].st;
        }
    assert(st->ncache < NSTMT);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL) != SQLITE_OK)
        DIE("sqlite prepare failed: %s\n  in: %s", sqlite3_errmsg(st->db), sql);
    st->cache[st->ncache].sql = sql;
    st->cache[st->ncache].st = s;
    st->ncache++;
    return s;
}

int store_fault_is_storage(int rc) {
    switch (rc & 0xff) {
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_NOMEM:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
    case SQLITE_READONLY:
    case SQLITE_ABORT:
        return 1;
    default:
        return 0;
    }
}

/* Records the first failure of the open transaction. */
static void note_fault(store *st, int rc, const char *what) {
    if (st->fault_rc) return;
    st->fault_rc = rc ? rc : SQLITE_ERROR;
    const char *m = (rc & 0xff) == SQLITE_FULL ? "database or disk is full" : sqlite3_errmsg(st->db);
    snprintf(st->fault_msg, sizeof st->fault_msg, "%s%s%s (%s)", what ? what : "", what ? ": " : "", m,
             sqlite3_errstr(st->fault_rc));
}

int store_fault(store *st, const char **msg) {
    if (msg) *msg = st->fault_rc ? st->fault_msg : "";
    return st->fault_rc;
}

/* Steps a statement.  Inside a transaction that already failed nothing runs;
 * a transaction SQLite rolled back by itself (disk full, I/O error) is noticed
 * here; a failure is recorded for store_commit, which then refuses. */
static int step(store *st, sqlite3_stmt *s) {
    if (st->in_txn) {
        if (st->fault_rc) return st->fault_rc;
        if (sqlite3_get_autocommit(st->db)) {
            note_fault(st, SQLITE_ABORT, "the transaction was rolled back after an error");
            return SQLITE_ABORT;
        }
    }
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        int ext = sqlite3_extended_errcode(st->db);
        if (st->in_txn)
            note_fault(st, ext ? ext : rc, NULL);
        else
            log_line("store", "sqlite step failed: %s\n  in: %.200s", sqlite3_errmsg(st->db), sqlite3_sql(s));
    }
    return rc;
}
/* The message of the transaction's first failure, else SQLite's last one. */
static const char *store_fault_msg(store *st) { return st->fault_rc ? st->fault_msg : sqlite3_errmsg(st->db); }

/* Steps a statement that returns no rows (errors: see step). */
static void run(store *st, sqlite3_stmt *s) {
    step(st, s);
    sqlite3_reset(s);
}

/* Runs SQL text (pragmas, migrations) outside the statement cache; -1 + err. */
static int exec(store *st, const char *sql, drq_err *err) {
    char *msg = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        drq_errf(err, "sqlite: %s", msg ? msg : sqlite3_errmsg(st->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* Writes the accumulated rows_done increments (one UPDATE per sweep, not per result). */
static void flush_pending(store *st) {
    static const char *q = "UPDATE sweeps SET rows_done = rows_done + ? WHERE id = ?";
    for (int i = 0; i < st->npending; i++) {
        sqlite3_stmt *s = ps(st, q);
        sqlite3_bind_int64(s, 1, st->pending[i].rows);
        sqlite3_bind_int64(s, 2, st->pending[i].sweep);
        run(st, s);
    }
    st->npending = 0;
}

int store_begin(store *st, drq_err *err) {
    assert(!st->in_txn); /* transactions do not nest: every begin ends in commit or rollback */
    st->npending = 0;
    st->fault_rc = 0;
    st->fault_msg[0] = 0;
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        note_fault(st, sqlite3_extended_errcode(st->db), "begin");
        return drq_errf(err, "sqlite: %s", st->fault_msg);
    }
    st->in_txn = 1;
    return 0;
}

/* A WAL checkpoint now and then, outside any transaction: its failure (it
 * writes the database file) must not turn a durable COMMIT into an error, as
 * SQLite's own auto-checkpoint would. */
static void maybe_checkpoint(store *st) {
    if (st->wal_frames < 1000) return;
    int rc = sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    if (rc == SQLITE_OK) {
        if (st->ckpt_failures) log_line("store", "WAL checkpoint succeeds again");
        st->ckpt_failures = 0;
        st->wal_frames = 0;
    } else if (st->ckpt_failures++ == 0) {
        log_line("store", "WAL checkpoint failed: %s (%s); committed data is safe in the WAL, retried later",
                 sqlite3_errmsg(st->db), sqlite3_errstr(rc));
    }
}

/* SQLite's WAL hook: remembers the WAL size for maybe_checkpoint. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames) {
    ((store *)arg)->wal_frames = frames;
    return SQLITE_OK;
}

int store_commit(store *st, drq_err *err) {
    if (!st->fault_rc) flush_pending(st);
    if (!st->fault_rc && st->in_txn && sqlite3_get_autocommit(st->db))
        note_fault(st, SQLITE_ABORT, "the transaction was rolled back after an error");
    if (!st->fault_rc && sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        note_fault(st, sqlite3_extended_errcode(st->db), "commit");
    if (st->fault_rc) {
        store_rollback(st);
        return drq_errf(err, "sqlite: %s", st->fault_msg);
    }
    st->in_txn = 0;
    maybe_checkpoint(st);
    return 0;
}

void store_rollback(store *st) {
    st->npending = 0;
    st->in_txn = 0;
    if (!sqlite3_get_autocommit(st->db)) sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}


/* Whether the database has a table of this name (schema_version before the first migration). */
static int table_exists(store *st, const char *name) {
    sqlite3_stmt *s;
    sqlite3_prepare_v2(st->db, "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", -1, &s, NULL);
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int found = step(st, s) == SQLITE_ROW;
    sqlite3_finalize(s);
    return found;
}

int store_schema_version(store *st) {
    if (!table_exists(st, "schema_version")) return 0;
    sqlite3_stmt *s;
    int v = 0;
    if (sqlite3_prepare_v2(st->db, "SELECT max(version) FROM schema_version", -1, &s, NULL) == SQLITE_OK) {
        if (step(st, s) == SQLITE_ROW) v = sqlite3_column_int(s, 0);
        sqlite3_finalize(s);
    }
    return v;
}

/* Applies every embedded migration newer than the database, each in its own
 * BEGIN IMMEDIATE transaction (re-checking the version inside it, so two
 * processes opening a fresh file at once cannot both apply it). */
static int migrate(store *st, const char *path, drq_err *err) {
    int latest = store_schema_latest();
    for (int i = 0; i < drq_schema_count; i++) {
        if (store_begin(st, err)) return -1;
        int have = store_schema_version(st);
        if (have > latest) {
            store_rollback(st);
            return drq_errf(err,
                            "%s: database schema version %d is newer than this drq build knows (%d); "
                            "use a newer drq, or another database",
                            path, have, latest);
        }
        if (drq_schema_versions[i] <= have) {
            store_rollback(st);
            continue;
        }
        drq_err e2;
        if (exec(st, drq_schema_sql[i], &e2)) {
            store_rollback(st);
            return drq_errf(err, "%s: migration %s failed: %s", path, drq_schema_names[i], e2.msg);
        }
        sqlite3_stmt *s;
        sqlite3_prepare_v2(st->db, "INSERT INTO schema_version(version, applied) VALUES(?, ?)", -1, &s, NULL);
        sqlite3_bind_int(s, 1, drq_schema_versions[i]);
        sqlite3_bind_double(s, 2, drq_clock_wall());
        int rc = step(st, s);
        sqlite3_finalize(s);
        if (rc != SQLITE_DONE || store_commit(st, err)) {
            store_rollback(st);
            return drq_errf(err, "%s: recording migration %s failed", path, drq_schema_names[i]);
        }
        log_line("store", "%s: applied migration %s", path, drq_schema_names[i]);
    }
    return 0;
}

/* Process-wide SQLite settings, before its first use: no memory statistics
 * (they take a global mutex on every allocation). */
static void sqlite_setup(void) {
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    const char *fault = getenv("DRQ_FAULT_VFS");
    if (fault && *fault && drq_faultvfs_config(fault))
        DIE("DRQ_FAULT_VFS=\"%s\": expected err=full|ioerr,op=write|sync|any,while=PATH|after=N,count=K", fault);
}

store *store_open(const char *path, int readonly, drq_err *err) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, sqlite_setup);
    store *st = xcalloc(1, sizeof *st);
    st->readonly = readonly;
    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    flags |= SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &st->db, flags, NULL) != SQLITE_OK) {
        drq_errf(err, "%s: cannot open database: %s", path, st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(st->db, 10000);
    drq_err e2;
    if (!readonly) {
        if (exec(st, "PRAGMA journal_mode=WAL", &e2) || exec(st, "PRAGMA synchronous=NORMAL", &e2)) {
            drq_errf(err, "%s: %s", path, e2.msg);
            goto fail;
        }
        /* a file that is not a database fails here, on its first real read */
        if (migrate(st, path, err)) goto fail;
        sqlite3_wal_hook(st->db, wal_hook, st); /* replaces the auto-checkpoint: see maybe_checkpoint */
    } else {
        int have = store_schema_version(st);
        if (have > store_schema_latest()) {
            drq_errf(err, "%s: database schema version %d is newer than this drq build knows (%d); use a newer drq",
                     path, have, store_schema_latest());
            goto fail;
        }
        if (have < store_schema_latest()) {
            drq_errf(err, "%s: not a drq database at schema version %d (found %d)", path, store_schema_latest(), have);
            goto fail;
        }
    }
    exec(st, "PRAGMA cache_size=-65536", &e2); /* 64 MiB page cache */
    return st;
fail:
    sqlite3_close(st->db);
    free(st);
    return NULL;
}

void store_close(store *st) {
    if (!st) return;
    for (int i = 0; i < st->ncache; i++) sqlite3_finalize(st->cache[i].st);
    sqlite3_close(st->db);
    free(st);
}

/* ---- sweeps ------------------------------------------------------------- */

void store_spec_hash(const char *canonical, char out[17]) {
    uint64_t h = UINT64_C(14695981039346656037);
    for (const unsigned char *p = (const unsigned char *)canonical; *p; p++) {
        h ^= *p;
        h *= UINT64_C(1099511628211);
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

int store_sweep_create(store *st, const drq_spec *spec, const char *canonical, int64_t *id, drq_err *err) {
    return store_sweep_create_ex(st, spec, canonical, NULL, id, err);
}

int store_sweep_create_ex(store *st, const drq_spec *spec, const char *canonical, const char *submission,
                          int64_t *id, drq_err *err) {
    static const char *q_base = "SELECT coalesce(max(job_base + njobs), 1) FROM sweeps";
    static const char *q_ins = "INSERT INTO sweeps(name, created, state, njobs, nrows, job_base, spec_hash, "
                               "submission) VALUES(?1, ?3, 'expanding', ?4, ?5, ?6, ?7, ?8)";
    static const char *q_spec = "INSERT INTO sweep_specs(sweep, spec) VALUES(?, ?)";
    sqlite3_stmt *s = ps(st, q_base);
    int64_t base = 1;
    if (step(st, s) == SQLITE_ROW) base = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    char hash[17];
    store_spec_hash(canonical, hash);
    s = ps(st, q_ins);
    sqlite3_bind_text(s, 1, spec->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, canonical, -1, SQLITE_STATIC);
    sqlite3_bind_double(s, 3, drq_clock_wall());
    sqlite3_bind_int64(s, 4, drq_spec_njobs(spec));
    sqlite3_bind_int64(s, 5, drq_spec_nrows(spec));
    sqlite3_bind_int64(s, 6, base);
    sqlite3_bind_text(s, 7, hash, -1, SQLITE_TRANSIENT);
    if (submission)
        sqlite3_bind_text(s, 8, submission, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 8);
    if (step(st, s) != SQLITE_DONE) {
        sqlite3_reset(s);
        return drq_errf(err, "creating sweep: %s", store_fault_msg(st));
    }
    sqlite3_reset(s);
    *id = sqlite3_last_insert_rowid(st->db);
    s = ps(st, q_spec);
    sqlite3_bind_int64(s, 1, *id);
    sqlite3_bind_text(s, 2, canonical, -1, SQLITE_STATIC);
    if (step(st, s) != SQLITE_DONE) {
        sqlite3_reset(s);
        return drq_errf(err, "creating sweep: %s", store_fault_msg(st));
    }
    sqlite3_reset(s);
    store_event(st, *id, 0, NULL, "submit", "%lld jobs, %lld rows%s%s", (long long)drq_spec_njobs(spec),
                (long long)drq_spec_nrows(spec), submission ? ", submission " : "", submission ? submission : "");
    return 0;
}

int64_t store_sweep_dedup(store *st, const char *submission, const char *canonical, int again, int *by_submission) {
    static const char *q_sub = "SELECT id FROM sweeps WHERE submission = ?";
    static const char *q_spec = "SELECT w.id, p.spec FROM sweeps AS w JOIN sweep_specs AS p ON p.sweep = w.id "
                                "WHERE w.state != 'cancelled' AND (w.spec_hash = ?1 OR w.spec_hash IS NULL) "
                                "ORDER BY w.id";
    *by_submission = 0;
    int64_t found = 0;
    if (submission) {
        sqlite3_stmt *s = ps(st, q_sub);
        sqlite3_bind_text(s, 1, submission, -1, SQLITE_STATIC);
        if (step(st, s) == SQLITE_ROW) found = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
        if (found) {
            *by_submission = 1;
            return found;
        }
    }
    if (again) return 0;
    char hash[17];
    store_spec_hash(canonical, hash);
    sqlite3_stmt *s = ps(st, q_spec);
    sqlite3_bind_text(s, 1, hash, -1, SQLITE_TRANSIENT);
    while (step(st, s) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(s, 1);
        if (text && !strcmp(text, canonical)) {
            found = sqlite3_column_int64(s, 0);
            break;
        }
    }
    sqlite3_reset(s);
    return found;
}

/* The first column of every row of a bound statement, as a malloc'd array
 * (never NULL) of *n ids; resets the statement. */
static int64_t *read_ids(store *st, sqlite3_stmt *s, int *n) {
    int cap = 8;
    int64_t *ids = xmalloc(cap * sizeof *ids);
    *n = 0;
    while (step(st, s) == SQLITE_ROW) {
        if (*n == cap) ids = xrealloc(ids, (size_t)(cap *= 2) * sizeof *ids);
        ids[(*n)++] = sqlite3_column_int64(s, 0);
    }
    sqlite3_reset(s);
    return ids;
}

int64_t *store_sweeps_unfinished(store *st, int *n) {
    static const char *q = "SELECT id FROM sweeps WHERE state != 'cancelled' AND "
                           "(jobs_created < njobs OR n_queued + n_leased > 0) ORDER BY id";
    return read_ids(st, ps(st, q), n);
}

int64_t store_sweep_find(store *st, const char *name, const char *canonical, drq_err *err) {
    static const char *q = "SELECT w.id, p.spec, w.state FROM sweeps AS w JOIN sweep_specs AS p ON p.sweep = w.id "
                           "WHERE w.name = ? ORDER BY w.id DESC";
    sqlite3_stmt *s = ps(st, q);
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int64_t found = 0;
    int other = 0;
    while (step(st, s) == SQLITE_ROW) {
        if (!strcmp((const char *)sqlite3_column_text(s, 1), canonical) &&
            strcmp((const char *)sqlite3_column_text(s, 2), "cancelled")) {
            found = sqlite3_column_int64(s, 0);
            break;
        }
        other = 1;
    }
    sqlite3_reset(s);
    if (!found && other)
        return drq_errf(err, "the database already holds a sweep named \"%s\" with a different spec", name);
    return found;
}

int64_t store_sweep_expand(store *st, int64_t sweep, const drq_spec *spec, int64_t max, drq_err *err) {
    static const char *q_get = "SELECT job_base, jobs_created, njobs FROM sweeps WHERE id = ?";
    static const char *q_ins = "INSERT INTO jobs(id, sweep, seq, purifier, attack, seed, image_start, image_count, "
                               "priority, depends_on) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    static const char *q_upd = "UPDATE sweeps SET jobs_created = ?, n_queued = n_queued + ?, "
                               "state = CASE WHEN ? = njobs AND state = 'expanding' THEN 'active' ELSE state END "
                               "WHERE id = ?";
    sqlite3_stmt *s = ps(st, q_get);
    sqlite3_bind_int64(s, 1, sweep);
    if (step(st, s) != SQLITE_ROW) {
        sqlite3_reset(s);
        return drq_errf(err, "sweep %lld does not exist", (long long)sweep);
    }
    int64_t base = sqlite3_column_int64(s, 0), created = sqlite3_column_int64(s, 1), njobs = sqlite3_column_int64(s, 2);
    sqlite3_reset(s);
    if (njobs != drq_spec_njobs(spec)) return drq_errf(err, "sweep %lld: spec does not match", (long long)sweep);
    int64_t end = created + max < njobs ? created + max : njobs;
    s = ps(st, q_ins);
    for (int64_t seq = created; seq < end; seq++) {
        drq_job_desc d;
        drq_spec_job(spec, seq, &d);
        sqlite3_bind_int64(s, 1, base + seq);
        sqlite3_bind_int64(s, 2, sweep);
        sqlite3_bind_int64(s, 3, seq);
        sqlite3_bind_int(s, 4, d.purifier);
        sqlite3_bind_int(s, 5, d.attack);
        sqlite3_bind_int64(s, 6, d.seed);
        sqlite3_bind_int64(s, 7, d.image_start);
        sqlite3_bind_int64(s, 8, d.image_count);
        /* a job that waits for another runs after the independent ones */
        sqlite3_bind_int(s, 9, d.depends_on_seq >= 0 ? -1 : 0);
        if (d.depends_on_seq >= 0)
            sqlite3_bind_int64(s, 10, base + d.depends_on_seq);
        else
            sqlite3_bind_null(s, 10);
        run(st, s);
    }
    s = ps(st, q_upd);
    sqlite3_bind_int64(s, 1, end);
    sqlite3_bind_int64(s, 2, end - created);
    sqlite3_bind_int64(s, 3, end);
    sqlite3_bind_int64(s, 4, sweep);
    run(st, s);
    if (st->fault_rc) return drq_errf(err, "sweep %lld: inserting jobs: %s", (long long)sweep, st->fault_msg);
    return njobs - end;
}

int64_t *store_sweeps_expanding(store *st, int *n) {
    static const char *q = "SELECT id FROM sweeps WHERE state = 'expanding' ORDER BY id";
    return read_ids(st, ps(st, q), n);
}

char *store_sweep_spec(store *st, int64_t sweep) {
    static const char *q = "SELECT spec FROM sweep_specs WHERE sweep = ?";
    sqlite3_stmt *s = ps(st, q);
    sqlite3_bind_int64(s, 1, sweep);
    char *out = NULL;
    if (step(st, s) == SQLITE_ROW) out = xstrdup((const char *)sqlite3_column_text(s, 0));
    sqlite3_reset(s);
    return out;
}

/* The columns read_counts reads, in its order; the queries are built at
 * compile time (no first-use initialisation: stores are opened on several
 * threads by drq run). */
#define COUNT_COLS                                                                                          \
    "id, njobs, nrows, jobs_created, n_queued, n_leased, n_done, n_failed, n_cancelled, rows_done, name, " \
    "state, created"
static const char q_counts_one[] = "SELECT " COUNT_COLS " FROM sweeps WHERE id = ?";
static const char q_counts_all[] = "SELECT " COUNT_COLS " FROM sweeps ORDER BY id";

/* One row of a COUNT_COLS query into c. */
static void read_counts(sqlite3_stmt *s, store_counts *c) {
    c->id = sqlite3_column_int64(s, 0);
    c->njobs = sqlite3_column_int64(s, 1);
    c->nrows = sqlite3_column_int64(s, 2);
    c->jobs_created = sqlite3_column_int64(s, 3);
    c->queued = sqlite3_column_int64(s, 4);
    c->leased = sqlite3_column_int64(s, 5);
    c->done = sqlite3_column_int64(s, 6);
    c->failed = sqlite3_column_int64(s, 7);
    c->cancelled = sqlite3_column_int64(s, 8);
    c->rows_done = sqlite3_column_int64(s, 9);
    snprintf(c->name, sizeof c->name, "%s", (const char *)sqlite3_column_text(s, 10));
    snprintf(c->state, sizeof c->state, "%s", (const char *)sqlite3_column_text(s, 11));
    c->created = sqlite3_column_double(s, 12);
}

int store_sweep_counts(store *st, int64_t sweep, store_counts *c) {
    sqlite3_stmt *s = ps(st, q_counts_one);
    sqlite3_bind_int64(s, 1, sweep);
    int rc = -1;
    if (step(st, s) == SQLITE_ROW) {
        read_counts(s, c);
        rc = 0;
    }
    sqlite3_reset(s);
    return rc;
}

json_t *store_status(store *st, int64_t sweep, int nfail) {
    static const char *q_fail = "SELECT t, job, worker, kind, detail FROM events WHERE sweep = ? AND kind IN "
                                "('fail', 'requeue') ORDER BY id DESC LIMIT ?";
    sqlite3_stmt *s = ps(st, sweep > 0 ? q_counts_one : q_counts_all);
    if (sweep > 0) sqlite3_bind_int64(s, 1, sweep);
    json_t *arr = json_array();
    store_counts c;
    int64_t *ids = NULL;
    int n = 0;
    while (step(st, s) == SQLITE_ROW) {
        read_counts(s, &c);
        json_t *o = json_object();
        json_object_set_new(o, "id", json_integer(c.id));
        json_object_set_new(o, "name", json_string(c.name));
        json_object_set_new(o, "state", json_string(c.state));
        json_object_set_new(o, "created", json_real(c.created));
        json_object_set_new(o, "jobs", json_integer(c.njobs));
        json_object_set_new(o, "jobs_created", json_integer(c.jobs_created));
        json_object_set_new(o, "queued", json_integer(c.queued));
        json_object_set_new(o, "running", json_integer(c.leased));
        json_object_set_new(o, "done", json_integer(c.done));
        json_object_set_new(o, "failed", json_integer(c.failed));
        json_object_set_new(o, "cancelled", json_integer(c.cancelled));
        json_object_set_new(o, "rows", json_integer(c.nrows));
        json_object_set_new(o, "rows_done", json_integer(c.rows_done));
        int finished = c.jobs_created == c.njobs && c.queued == 0 && c.leased == 0;
        json_object_set_new(o, "finished", json_boolean(finished));
        json_array_append_new(arr, o);
        ids = xrealloc(ids, (size_t)(n + 1) * sizeof *ids);
        ids[n++] = c.id;
    }
    sqlite3_reset(s);
    for (int i = 0; i < n && nfail > 0; i++) {
        s = ps(st, q_fail);
        sqlite3_bind_int64(s, 1, ids[i]);
        sqlite3_bind_int(s, 2, nfail);
        json_t *fa = json_array();
        while (step(st, s) == SQLITE_ROW) {
            json_t *f = json_object();
            json_object_set_new(f, "t", json_real(sqlite3_column_double(s, 0)));
            json_object_set_new(f, "job", json_integer(sqlite3_column_int64(s, 1)));
            const char *w = (const char *)sqlite3_column_text(s, 2);
            json_object_set_new(f, "worker", w ? json_string(w) : json_null());
            json_object_set_new(f, "kind", json_string((const char *)sqlite3_column_text(s, 3)));
            const char *d = (const char *)sqlite3_column_text(s, 4);
            json_object_set_new(f, "error", json_string(d ? d : ""));
            json_array_append_new(fa, f);
        }
        sqlite3_reset(s);
        json_object_set_new(json_array_get(arr, (size_t)i), "failures", fa);
    }
    free(ids);
    json_t *root = json_object();
    json_object_set_new(root, "sweeps", arr);
    return root;
}

int64_t store_sweep_cancel(store *st, int64_t sweep, int64_t **leased, int *nleased, drq_err *err) {
    static const char *q_sw = "SELECT job_base, njobs FROM sweeps WHERE id = ?";
    static const char *q_leased = "SELECT id FROM jobs WHERE id >= ? AND id < ? AND state = 'leased'";
    static const char *q_upd = "UPDATE jobs SET state = 'cancelled', lease_owner = NULL, lease_expires = NULL "
                               "WHERE id >= ? AND id < ? AND state IN ('queued', 'leased')";
    static const char *q_state = "UPDATE sweeps SET state = 'cancelled' WHERE id = ?";
    sqlite3_stmt *s = ps(st, q_sw);
    sqlite3_bind_int64(s, 1, sweep);
    if (step(st, s) != SQLITE_ROW) {
        sqlite3_reset(s);
        return drq_errf(err, "no sweep %lld", (long long)sweep);
    }
    int64_t base = sqlite3_column_int64(s, 0), nj = sqlite3_column_int64(s, 1);
    sqlite3_reset(s);
    s = ps(st, q_leased);
    sqlite3_bind_int64(s, 1, base);
    sqlite3_bind_int64(s, 2, base + nj);
    *leased = NULL;
    *nleased = 0;
    while (step(st, s) == SQLITE_ROW) {
        *leased = xrealloc(*leased, (size_t)(*nleased + 1) * sizeof **leased);
        (*leased)[(*nleased)++] = sqlite3_column_int64(s, 0);
    }
    sqlite3_reset(s);
    s = ps(st, q_upd);
    sqlite3_bind_int64(s, 1, base);
    sqlite3_bind_int64(s, 2, base + nj);
    run(st, s);
    int64_t n = sqlite3_changes(st->db);
    s = ps(st, q_state);
    sqlite3_bind_int64(s, 1, sweep);
    run(st, s);
    store_event(st, sweep, 0, NULL, "cancel", "%lld jobs cancelled", (long long)n);
    return n;
}

int64_t store_sweep_retry(store *st, int64_t sweep, drq_err *err) {
    static const char *q_sw = "SELECT job_base, njobs FROM sweeps WHERE id = ?";
    static const char *q_upd = "UPDATE jobs SET state = 'queued', attempts = 0, not_before = 0 "
                               "WHERE id >= ? AND id < ? AND state = 'failed'";
    sqlite3_stmt *s = ps(st, q_sw);
    sqlite3_bind_int64(s, 1, sweep);
    if (step(st, s) != SQLITE_ROW) {
        sqlite3_reset(s);
        return drq_errf(err, "no sweep %lld", (long long)sweep);
    }
    int64_t base = sqlite3_column_int64(s, 0), nj = sqlite3_column_int64(s, 1);
    sqlite3_reset(s);
    s = ps(st, q_upd);
    sqlite3_bind_int64(s, 1, base);
    sqlite3_bind_int64(s, 2, base + nj);
    run(st, s);
    int64_t n = sqlite3_changes(st->db);
    store_event(st, sweep, 0, NULL, "retry", "%lld failed jobs requeued", (long long)n);
    return n;
}

/* ---- jobs --------------------------------------------------------------- */

#define JOB_COLS                                                                                          \
    "id, sweep, seq, purifier, attack, seed, image_start, image_count, state, attempts, lease_owner, " \
    "lease_expires, not_before, depends_on"

/* One row of a JOB_COLS query into j. */
static void read_job(sqlite3_stmt *s, store_job *j) {
    j->id = sqlite3_column_int64(s, 0);
    j->sweep = sqlite3_column_int64(s, 1);
    j->seq = sqlite3_column_int64(s, 2);
    j->purifier = sqlite3_column_int(s, 3);
    j->attack = sqlite3_column_int(s, 4);
    j->seed = sqlite3_column_int64(s, 5);
    j->image_start = sqlite3_column_int64(s, 6);
    j->image_count = sqlite3_column_int64(s, 7);
    snprintf(j->state, sizeof j->state, "%s", (const char *)sqlite3_column_text(s, 8));
    j->attempts = sqlite3_column_int(s, 9);
    const char *o = (const char *)sqlite3_column_text(s, 10);
    snprintf(j->lease_owner, sizeof j->lease_owner, "%s", o ? o : "");
    j->lease_expires = sqlite3_column_double(s, 11);
    j->not_before = sqlite3_column_double(s, 12);
    j->depends_on = sqlite3_column_int64(s, 13);
}

int store_job_get(store *st, int64_t id, store_job *j) {
    static const char *q = "SELECT " JOB_COLS " FROM jobs WHERE id = ?";
    sqlite3_stmt *s = ps(st, q);
    sqlite3_bind_int64(s, 1, id);
    int rc = 1;
    if (step(st, s) == SQLITE_ROW) {
        read_job(s, j);
        rc = 0;
    }
    sqlite3_reset(s);
    return rc;
}

int store_job_leased_to(const store_job *j, const char *owner) {
    return !strcmp(j->state, "leased") && !strcmp(j->lease_owner, owner);
}

int store_lease(store *st, const char *owner, double now, double lease_s, int n, store_job *out) {
    /* one statement: pick by the dispatch index, lease, and return them */
    static const char *q =
        "UPDATE jobs SET state = 'leased', lease_owner = ?3, lease_expires = ?4 WHERE id IN ("
        "SELECT id FROM jobs AS j WHERE state = 'queued' AND not_before <= ?1 "
        "AND (depends_on IS NULL OR (SELECT d.state FROM jobs AS d WHERE d.id = j.depends_on) = 'done') "
        "ORDER BY priority DESC, id LIMIT ?2) RETURNING " JOB_COLS;
    sqlite3_stmt *s = ps(st, q);
    sqlite3_bind_double(s, 1, now);
    sqlite3_bind_int(s, 2, n);
    sqlite3_bind_text(s, 3, owner, -1, SQLITE_STATIC);
    sqlite3_bind_double(s, 4, now + lease_s);
    int got = 0, rc;
    while ((rc = step(st, s)) == SQLITE_ROW)
        if (got < n) {
            read_job(s, &out[got]);
            assert(store_job_leased_to(&out[got], owner));
            got++;
        }
    if (rc != SQLITE_DONE) got = 0; /* recorded by step(): the transaction fails */
    sqlite3_reset(s);
    return got;
}

int store_lease_one(store *st, int64_t id, const char *owner, double now, double lease_s) {
    static const char *q =
        "UPDATE jobs SET state = 'leased', lease_owner = ?, lease_expires = ? WHERE id = ? AND state = 'queued'";
    sqlite3_stmt *s = ps(st, q);
    sqlite3_bind_text(s, 1, owner, -1, SQLITE_STATIC);
    sqlite3_bind_double(s, 2, now + lease_s);
    sqlite3_bind_int64(s, 3, id);
    run(st, s);
    return sqlite3_changes(st->db) == 1 ? 0 : -1;
}

int store_extend(store *st, int64_t id, const char *owner, double expires) {
    static const char *q =
        "UPDATE jobs SET lease_expires = ? WHERE id = ? AND state = 'leased' AND lease_owner = ?";
    sqlite3_stmt *s = ps(st, q);
    sqlite3_bind_double(s, 1, expires);
    sqlite3_bind_int64(s, 2, id);
    sqlite3_bind_text(s, 3, owner, -1, SQLITE_STATIC);
    run(st, s);
    return sqlite3_changes(st->db) == 1 ? 0 : -1;
}

int store_job_done(store *st, int64_t id) {
    static const char *q = "UPDATE jobs SET state = 'done', lease_owner = NULL, lease_expires = NULL "
                           "WHERE id = ? AND state IN ('queued', 'leased', 'failed')";
    sqlite3_stmt *s = ps(st, q);
    sqlite3_bind_int64(s, 1, id);
    run(st, s);
    /* its checkpoint goes with the next store_checkpoints_gc */
    return sqlite3_changes(st->db) ? 0 : -1;
}

/* Fails the queued jobs that wait for job id, recursively. */
static void fail_dependents(store *st, int64_t id) {
    static const char *q_sel = "SELECT id FROM jobs WHERE depends_on = ? AND state = 'queued'";
    sqlite3_stmt *s = ps(st, q_sel);
    sqlite3_bind_int64(s, 1, id);
    int n;
    int64_t *ids = read_ids(st, s, &n);
    for (int i = 0; i < n; i++) {
        char msg[128];
        snprintf(msg, sizeof msg, "dependency job %lld failed", (long long)id);
        store_job_fail(st, ids[i], msg);
    }
    free(ids);
}

void store_job_fail(store *st, int64_t id, const char *error) {
    static const char *q = "UPDATE jobs SET state = 'failed', last_error = ?, lease_owner = NULL, "
                           "lease_expires = NULL WHERE id = ? AND state IN ('queued', 'leased')";
    sqlite3_stmt *s = ps(st, q);
    sqlite3_bind_text(s, 1, error, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, id);
    run(st, s);
    if (sqlite3_changes(st->db) == 0) return;
    store_job j;
    if (store_job_get(st, id, &j) == 0) store_event(st, j.sweep, id, NULL, "fail", "%s", error);
    fail_dependents(st, id);
}

int store_job_attempt_failed(store *st, int64_t id, const char *error, double now, int max_attempts,
                             double backoff_s) {
    static const char *q = "UPDATE jobs SET state = 'queued', attempts = attempts + 1, last_error = ?, "
                           "not_before = ?, lease_owner = NULL, lease_expires = NULL "
                           "WHERE id = ? AND state IN ('queued', 'leased')";
    store_job j;
    if (store_job_get(st, id, &j)) return 0;
    if (strcmp(j.state, "leased") && strcmp(j.state, "queued")) return 0;
    int attempts = j.attempts + 1;
    if (attempts >= max_attempts) {
        char msg[1200];
        snprintf(msg, sizeof msg, "%s (after %d attempts)", error, attempts);
        static const char *q_att = "UPDATE jobs SET attempts = ? WHERE id = ?";
        sqlite3_stmt *s = ps(st, q_att);
        sqlite3_bind_int(s, 1, attempts);
        sqlite3_bind_int64(s, 2, id);
        run(st, s);
        store_job_fail(st, id, msg);
        return 1;
    }
    /* back-off: backoff_s, doubling per failed attempt, at most 60 s */
    double wait = backoff_s * (double)(1 << (attempts - 1 < 6 ? attempts - 1 : 6));
    if (wait > 60) wait = 60;
    sqlite3_stmt *s = ps(st, q);
    sqlite3_bind_text(s, 1, error, -1, SQLITE_STATIC);
    sqlite3_bind_double(s, 2, now + wait);
    sqlite3_bind_int64(s, 3, id);
    run(st, s);
    store_event(st, j.sweep, id, j.lease_owner[0] ? j.lease_owner : NULL, "requeue",
                "%s (attempt %d of %d, back-off %.1f s)", error, attempts, max_attempts, wait);
    return 0;
}

int store_job_release(store *st, int64_t id) {
    static const char *q = "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires = NULL, "
                           "not_before = 0 WHERE id = ? AND state = 'leased'";
    sqlite3_stmt *s = ps(st, q);
    sqlite3_bind_int64(s, 1, id);
    run(st, s);
    return sqlite3_changes(st->db) == 1 ? 0 : -1;
}

int64_t *store_expired_leases(store *st, double now, int *n) {
    static const char *q = "SELECT id FROM jobs WHERE state = 'leased' AND lease_expires < ?";
    sqlite3_stmt *s = ps(st, q);
    sqlite3_bind_double(s, 1, now);
    return read_ids(st, s, n);
}

void store_extend_all_leases(store *st, double expires) {
    static const char *q = "UPDATE jobs SET lease_expires = max(lease_expires, ?) WHERE state = 'leased'";
    sqlite3_stmt *s = ps(st, q);
    sqlite3_bind_double(s, 1, expires);
    run(st, s);
}

int64_t store_requeue_all_leased(store *st) {
    static const char *q = "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires = NULL "
                           "WHERE state = 'leased'";
    run(st, ps(st, q));
    return sqlite3_changes(st->db);
}

/* ---- results ------------------------------------------------------------ */

/* Binds a metric, "not available" (DRQ_NA, NaN) as SQL NULL. */
static void bind_int_na(sqlite3_stmt *s, int i, int32_t v) {
    if (v == DRQ_NA)
        sqlite3_bind_null(s, i);
    else
        sqlite3_bind_int(s, i, v);
}
static void bind_dbl_na(sqlite3_stmt *s, int i, double v) {
    if (isnan(v))
        sqlite3_bind_null(s, i);
    else
        sqlite3_bind_double(s, i, v);
}

/* The SQL column list and placeholders of a result row, from DRQ_ROW_COLUMNS
 * (common/row.h): column i of the results queries is DRQ_COL_… = i. */
#define SQL_COL_(n, k) #n ", "
#define SQL_LAST_(n, k) #n
#define SQL_QMARK_(n, k) "?, "
#define SQL_QLAST_(n, k) "?"
#define RESULT_COLS DRQ_ROW_COLUMNS(SQL_COL_, SQL_LAST_)

/* Binds the metric columns of r (identity columns are bound by the caller). */
#define BIND_KEY_I64(n)
#define BIND_KEY_STR(n)
#define BIND_I32(n) bind_int_na(s, DRQ_COL_##n + 1, r->n);
#define BIND_DBL(n) bind_dbl_na(s, DRQ_COL_##n + 1, r->n);
#define BIND_I64(n) sqlite3_bind_int64(s, DRQ_COL_##n + 1, r->n);
#define BIND_STR(n) sqlite3_bind_text(s, DRQ_COL_##n + 1, r->n, -1, SQLITE_STATIC);
#define BIND_JSON(n)                                                     \
    if (r->n)                                                            \
        sqlite3_bind_text(s, DRQ_COL_##n + 1, r->n, -1, SQLITE_STATIC); \
    else                                                                 \
        sqlite3_bind_null(s, DRQ_COL_##n + 1);
#define BIND_METRIC_(n, k) BIND_##k(n)

/* ---- analysis tables (schema/003_analyses.sql) ---------------------------- */

/* The INSERT of each analysis table, its columns in drq_analysis_columns order. */
static const char *const q_analysis[DRQ_AT_N] = {
    NULL,
    "INSERT OR IGNORE INTO variance_results(sweep, purifier, analysis, seed, image, label, n_delta, n_omega, "
    "var_total, var_input, var_internal, snr, radius_init, radius_fixed_omega, radius_fixed_delta, radius_both, "
    "cos_same_omega, cos_same_delta) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "INSERT OR IGNORE INTO gradcorr_results(sweep, purifier, analysis, seed, image, at, est_a, est_b, cosine) "
    "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "INSERT OR IGNORE INTO screen_results(sweep, purifier, analysis, seed, image, label, clean_pred, clean_correct, "
    "comp_unif_mean, comp_unif_std, n_uniform) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
};

/* Copies the measurements of an analysis row (its extra, common/analysis_rows.c)
 * into its table; nothing for any other row.  Runs inside the transaction
 * that inserted the results row, and only when that row was new, so a table
 * row exists exactly when its results row does. */
static void store_analysis_insert(store *st, const drq_row *r) {
    drq_analysis_table t = drq_analysis_of(r);
    if (t == DRQ_AT_NONE) return;
    json_t *rows = drq_analysis_rows(r, t);
    size_t i;
    json_t *vals;
    json_array_foreach(rows, i, vals) {
        sqlite3_stmt *s = ps(st, q_analysis[t]);
        int ncol;
        drq_analysis_columns(t, &ncol);
        assert(sqlite3_bind_parameter_count(s) == ncol && (int)json_array_size(vals) == ncol);
        for (int c = 0; c < ncol; c++) {
            json_t *v = json_array_get(vals, (size_t)c);
            if (json_is_integer(v)) sqlite3_bind_int64(s, c + 1, json_integer_value(v));
            else if (json_is_real(v)) sqlite3_bind_double(s, c + 1, json_real_value(v));
            else if (json_is_string(v)) sqlite3_bind_text(s, c + 1, json_string_value(v), -1, SQLITE_TRANSIENT);
            else sqlite3_bind_null(s, c + 1);
        }
        run(st, s);
    }
    json_decref(rows);
}

/* The images of row r (identity from the job, as its row) with INSERT OR
 * IGNORE, inside the caller's transaction. */
static void images_insert(store *st, const store_job *job, const char *purifier, const char *attack, const drq_row *r) {
    static const char *q = "INSERT OR IGNORE INTO images(sweep, purifier, attack, seed, image, what, c, h, w, data) "
                           "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    const drq_row_images *im = r->images;
    sqlite3_stmt *s = ps(st, q);
    for (int k = 0; k < DRQ_IMG_NKINDS; k++) {
        if (!im->data[k]) continue;
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, job->sweep);
        sqlite3_bind_text(s, 2, purifier, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, attack, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, job->seed);
        sqlite3_bind_int64(s, 5, r->image);
        sqlite3_bind_text(s, 6, drq_image_names[k], -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 7, im->c);
        sqlite3_bind_int(s, 8, im->h);
        sqlite3_bind_int(s, 9, im->w);
        sqlite3_bind_blob64(s, 10, im->data[k], sizeof(float) * (size_t)im->c * im->h * im->w, SQLITE_STATIC);
        run(st, s);
    }
}

int64_t store_results_insert(store *st, const store_job *job, const char *purifier, const char *attack,
                             const drq_row *rows, int64_t n) {
    static const char *q = "INSERT OR IGNORE INTO results(" RESULT_COLS ") VALUES("
                           DRQ_ROW_COLUMNS(SQL_QMARK_, SQL_QLAST_) ")";
    /* the rows_done increments below are written by store_commit */
    assert(st->in_txn);
    sqlite3_stmt *s = ps(st, q);
    int64_t added = 0;
    for (int64_t k = 0; k < n; k++) {
        const drq_row *r = &rows[k];
        sqlite3_reset(s);
        /* identity from the job (the caller checked that the rows match it) */
        sqlite3_bind_int64(s, DRQ_COL_sweep + 1, job->sweep);
        sqlite3_bind_text(s, DRQ_COL_purifier + 1, purifier, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, DRQ_COL_attack + 1, attack, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, DRQ_COL_seed + 1, job->seed);
        sqlite3_bind_int64(s, DRQ_COL_image + 1, r->image);
        DRQ_ROW_COLUMNS(BIND_METRIC_, BIND_METRIC_)
        run(st, s);
        int changed = sqlite3_changes(st->db);
        added += changed;
        if (changed && r->extra) {
            drq_row id = *r; /* identity from the job, as above */
            id.sweep = job->sweep, id.seed = job->seed;
            snprintf(id.purifier, sizeof id.purifier, "%s", purifier);
            snprintf(id.attack, sizeof id.attack, "%s", attack);
            store_analysis_insert(st, &id);
        }
        if (r->images) images_insert(st, job, purifier, attack, r);
    }
    if (added) {
        int i = 0;
        while (i < st->npending && st->pending[i].sweep != job->sweep) i++;
        if (i == (int)(sizeof st->pending / sizeof st->pending[0])) {
            flush_pending(st);
            i = 0;
        }
        if (i == st->npending) {
            st->pending[i].sweep = job->sweep;
            st->pending[i].rows = 0;
            st->npending++;
        }
        st->pending[i].rows += added;
    }
    return added;
}

int64_t store_results_count(store *st, const store_job *job, const char *purifier, const char *attack) {
    static const char *q = "SELECT count(*) FROM results WHERE sweep = ? AND purifier = ? AND attack = ? "
                           "AND seed = ? AND image >= ? AND image < ?";
    sqlite3_stmt *s = ps(st, q);
    sqlite3_bind_int64(s, 1, job->sweep);
    sqlite3_bind_text(s, 2, purifier, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, attack, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, job->seed);
    sqlite3_bind_int64(s, 5, job->image_start);
    sqlite3_bind_int64(s, 6, job->image_start + job->image_count);
    int64_t n = 0;
    if (step(st, s) == SQLITE_ROW) n = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return n;
}

/* Reads a metric, SQL NULL as "not available" (DRQ_NA, NaN); strings NULL as "". */
static int32_t col_int_na(sqlite3_stmt *s, int i) {
    return sqlite3_column_type(s, i) == SQLITE_NULL ? DRQ_NA : sqlite3_column_int(s, i);
}
static double col_dbl_na(sqlite3_stmt *s, int i) {
    return sqlite3_column_type(s, i) == SQLITE_NULL ? NAN : sqlite3_column_double(s, i);
}
static void col_str(sqlite3_stmt *s, int i, char *dst, size_t cap) {
    const char *v = (const char *)sqlite3_column_text(s, i);
    snprintf(dst, cap, "%s", v ? v : "");
}

/* Reads column DRQ_COL_<name> of a RESULT_COLS query into r. */
#define READ_KEY_I64(n) r->n = sqlite3_column_int64(s, DRQ_COL_##n);
#define READ_KEY_STR(n) col_str(s, DRQ_COL_##n, r->n, sizeof r->n);
#define READ_I32(n) r->n = col_int_na(s, DRQ_COL_##n);
#define READ_DBL(n) r->n = col_dbl_na(s, DRQ_COL_##n);
#define READ_I64(n) r->n = sqlite3_column_int64(s, DRQ_COL_##n);
#define READ_STR(n) col_str(s, DRQ_COL_##n, r->n, sizeof r->n);
#define READ_JSON(n)                                                     \
    {                                                                    \
        const char *v_ = (const char *)sqlite3_column_text(s, DRQ_COL_##n); \
        r->n = v_ ? xstrdup(v_) : NULL;                                  \
    }
#define READ_COL_(n, k) READ_##k(n)

int64_t store_results_fetch(store *st, int64_t sweep, const char *after_p, const char *after_a, int64_t after_seed,
                            int64_t after_image, int64_t limit, drq_row **rows) {
    static const char *q = "SELECT " RESULT_COLS " FROM results WHERE sweep = ?1 "
                           "AND (purifier, attack, seed, image) > (?2, ?3, ?4, ?5) "
                           "ORDER BY purifier, attack, seed, image LIMIT ?6";
    sqlite3_stmt *s = ps(st, q);
    sqlite3_bind_int64(s, 1, sweep);
    sqlite3_bind_text(s, 2, after_p ? after_p : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, after_a ? after_a : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, after_p ? after_seed : INT64_MIN);
    sqlite3_bind_int64(s, 5, after_p ? after_image : INT64_MIN);
    sqlite3_bind_int64(s, 6, limit);
    int64_t n = 0, cap = limit < 1024 ? limit + 1 : 1024;
    drq_row *out = xmalloc((size_t)cap * sizeof *out);
    while (step(st, s) == SQLITE_ROW) {
        if (n == cap) out = xrealloc(out, (size_t)(cap *= 2) * sizeof *out);
        drq_row *r = &out[n++];
        drq_row_init(r);
        DRQ_ROW_COLUMNS(READ_COL_, READ_COL_)
    }
    sqlite3_reset(s);
    *rows = out;
    return n;
}

int64_t store_results_foreach(store *st, int64_t sweep, void (*fn)(void *arg, const drq_row *rows, int64_t n),
                              void *arg) {
    enum { PAGE = 50000 };
    char pur[DRQ_NAME_MAX] = "", atk[DRQ_NAME_MAX] = "";
    int64_t seed = 0, image = 0, total = 0;
    for (int first = 1;; first = 0) {
        drq_row *rows;
        int64_t n = store_results_fetch(st, sweep, first ? NULL : pur, atk, seed, image, PAGE, &rows);
        if (n > 0) {
            fn(arg, rows, n);
            snprintf(pur, sizeof pur, "%s", rows[n - 1].purifier);
            snprintf(atk, sizeof atk, "%s", rows[n - 1].attack);
            seed = rows[n - 1].seed;
            image = rows[n - 1].image;
            total += n;
        }
        drq_rows_free(rows, n);
        if (n < PAGE) return total;
    }
}

/* ---- images ------------------------------------------------------------------ */

int64_t store_images_attach(store *st, drq_row *rows, int64_t n) {
    static const char *q = "SELECT what, c, h, w, data FROM images WHERE sweep = ? AND purifier = ? AND attack = ? "
                           "AND seed = ? AND image = ?";
    sqlite3_stmt *s = ps(st, q);
    int64_t got = 0;
    for (int64_t i = 0; i < n; i++) {
        drq_row *r = &rows[i];
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, r->sweep);
        sqlite3_bind_text(s, 2, r->purifier, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, r->attack, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, r->seed);
        sqlite3_bind_int64(s, 5, r->image);
        while (step(st, s) == SQLITE_ROW) {
            const char *what = (const char *)sqlite3_column_text(s, 0);
            int k = what ? drq_image_kind(what) : -1;
            int c = sqlite3_column_int(s, 1), h = sqlite3_column_int(s, 2), w = sqlite3_column_int(s, 3);
            const void *data = sqlite3_column_blob(s, 4);
            int64_t bytes = sqlite3_column_bytes(s, 4);
            if (k < 0 || c < 1 || h < 1 || w < 1 || bytes != (int64_t)sizeof(float) * c * h * w ||
                bytes > DRQ_SAVE_MAX_ROW_BYTES)
                continue;
            if (!r->images) r->images = drq_row_images_new(c, h, w), got++;
            if (r->images->c == c && r->images->h == h && r->images->w == w) drq_row_images_set(r->images, k, data);
        }
    }
    sqlite3_reset(s);
    return got;
}

int64_t store_images_foreach(store *st, int64_t sweep, const char *purifier, const char *attack, int64_t limit,
                             int (*fn)(void *arg, const store_image *im), void *arg, drq_err *err) {
    /* ?2/?3 NULL: every purifier and attack; the window keeps the first
     * `limit` image indices of each (purifier, attack, seed) */
    static const char *q =
        "SELECT purifier, attack, seed, image, what, c, h, w, data FROM images AS i WHERE sweep = ?1 "
        "AND (?2 IS NULL OR (purifier = ?2 AND attack = ?3)) AND (?4 <= 0 OR image IN (SELECT DISTINCT image FROM "
        "images WHERE sweep = ?1 AND purifier = i.purifier AND attack = i.attack AND seed = i.seed ORDER BY image "
        "LIMIT ?4)) ORDER BY purifier, attack, seed, image, what";
    sqlite3_stmt *s = ps(st, q);
    sqlite3_bind_int64(s, 1, sweep);
    if (purifier && attack) {
        sqlite3_bind_text(s, 2, purifier, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, attack, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_null(s, 2);
        sqlite3_bind_null(s, 3);
    }
    sqlite3_bind_int64(s, 4, limit);
    int64_t n = 0;
    while (step(st, s) == SQLITE_ROW) {
        store_image im = {.sweep = sweep};
        col_str(s, 0, im.purifier, sizeof im.purifier);
        col_str(s, 1, im.attack, sizeof im.attack);
        im.seed = sqlite3_column_int64(s, 2);
        im.image = sqlite3_column_int64(s, 3);
        const char *what = (const char *)sqlite3_column_text(s, 4);
        im.what = what ? drq_image_kind(what) : -1;
        im.c = sqlite3_column_int(s, 5), im.h = sqlite3_column_int(s, 6), im.w = sqlite3_column_int(s, 7);
        im.data = sqlite3_column_blob(s, 8); /* before _bytes, as SQLite asks */
        int64_t bytes = sqlite3_column_bytes(s, 8);
        if (im.what < 0 || im.c < 1 || im.h < 1 || im.w < 1 ||
            bytes != (int64_t)sizeof(float) * im.c * im.h * im.w) {
            drq_errf(err, "images: sweep %lld, %s/%s seed %lld image %lld: what '%s', %dx%dx%d, %lld bytes: malformed",
                     (long long)sweep, im.purifier, im.attack, (long long)im.seed, (long long)im.image,
                     what ? what : "(null)", im.c, im.h, im.w, (long long)bytes);
            sqlite3_reset(s);
            return -1;
        }
        n++;
        if (fn(arg, &im)) break;
    }
    sqlite3_reset(s);
    return n;
}

/* ---- checkpoints, events, workers ---------------------------------------- */

int store_checkpoint_put(store *st, int64_t job, int64_t step, const void *blob, size_t len, const char *worker) {
    static const char *q = "INSERT OR REPLACE INTO checkpoints(job, step, blob, worker, t) VALUES(?, ?, ?, ?, ?)";
    sqlite3_stmt *s = ps(st, q);
    sqlite3_bind_int64(s, 1, job);
    sqlite3_bind_int64(s, 2, step);
    sqlite3_bind_blob64(s, 3, blob, len, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, worker, -1, SQLITE_STATIC);
    sqlite3_bind_double(s, 5, drq_clock_wall());
    run(st, s);
    return 0;
}

int store_checkpoint_get(store *st, int64_t job, int64_t *ckpt_step, void **blob, size_t *len) {
    static const char *q = "SELECT step, blob FROM checkpoints WHERE job = ?";
    sqlite3_stmt *s = ps(st, q);
    sqlite3_bind_int64(s, 1, job);
    int found = 0;
    if (step(st, s) == SQLITE_ROW) {
        *ckpt_step = sqlite3_column_int64(s, 0);
        *len = (size_t)sqlite3_column_bytes(s, 1);
        *blob = xmalloc(*len ? *len : 1);
        if (*len) memcpy(*blob, sqlite3_column_blob(s, 1), *len);
        found = 1;
    }
    sqlite3_reset(s);
    return found;
}

int64_t store_checkpoints_gc(store *st) {
    static const char *q = "DELETE FROM checkpoints WHERE job IN (SELECT c.job FROM checkpoints AS c JOIN jobs AS j "
                           "ON j.id = c.job WHERE j.state IN ('done', 'cancelled'))";
    static const char *q_left = "SELECT count(*) FROM checkpoints";
    run(st, ps(st, q));
    sqlite3_stmt *s = ps(st, q_left);
    int64_t left = step(st, s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return left;
}

void store_event(store *st, int64_t sweep, int64_t job, const char *worker, const char *kind, const char *fmt, ...) {
    static const char *q = "INSERT INTO events(t, sweep, job, worker, kind, detail) VALUES(?, ?, ?, ?, ?, ?)";
    char detail[1500];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    sqlite3_stmt *s = ps(st, q);
    sqlite3_bind_double(s, 1, drq_clock_wall());
    if (sweep > 0)
        sqlite3_bind_int64(s, 2, sweep);
    else
        sqlite3_bind_null(s, 2);
    if (job > 0)
        sqlite3_bind_int64(s, 3, job);
    else
        sqlite3_bind_null(s, 3);
    if (worker)
        sqlite3_bind_text(s, 4, worker, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 4);
    sqlite3_bind_text(s, 5, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, detail, -1, SQLITE_STATIC);
    run(st, s);
}

void store_worker_seen(store *st, const char *name, const char *devices_json, const char *version, const char *state,
                       int64_t jobs_done_delta) {
    static const char *q =
        "INSERT INTO workers(name, devices, version, first_seen, last_seen, state, jobs_done) "
        "VALUES(?1, ?2, ?3, ?4, ?4, ?5, ?6) ON CONFLICT(name) DO UPDATE SET "
        "devices = coalesce(?2, devices), version = coalesce(?3, version), last_seen = ?4, state = ?5, "
        "jobs_done = jobs_done + ?6";
    sqlite3_stmt *s = ps(st, q);
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    if (devices_json)
        sqlite3_bind_text(s, 2, devices_json, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 2);
    if (version)
        sqlite3_bind_text(s, 3, version, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 3);
    sqlite3_bind_double(s, 4, drq_clock_wall());
    sqlite3_bind_text(s, 5, state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, jobs_done_delta);
    run(st, s);
}
