/* store.h — the SQLite store of drq: sweeps, jobs, results, workers,
 * checkpoints, events (schema/NNN_*.sql, docs/queue.md).
 *
 * One store = one connection, used by one thread.  The coordinator is the only
 * writer; `drq run` and `drq results DB` open their own connections (WAL lets
 * readers run beside the writer).  Opening applies the embedded migrations in
 * one BEGIN IMMEDIATE transaction each and refuses a database whose schema is
 * newer than this build knows.  Write helpers assume the caller holds a
 * transaction (store_begin … store_commit), so that a batch of state changes is
 * committed before any of them is acknowledged.
 */
#ifndef DRQ_STORE_H
#define DRQ_STORE_H

#include <jansson.h>
#include <stdint.h>

#include "common/row.h"
#include "common/spec.h"
#include "common/util.h"

typedef struct store store;

typedef struct {
    int64_t id, sweep, seq;
    int purifier, attack;
    int64_t seed, image_start, image_count;
    char state[16];
    int attempts;
    char lease_owner[DRQ_TAG_MAX];
    double lease_expires, not_before;
    int64_t depends_on; /* 0: none */
} store_job;

/* Schema version this build knows (the highest embedded migration). */
int store_schema_latest(void);

/* Opens (creating when missing unless readonly) and migrates; NULL + err. */
store *store_open(const char *path, int readonly, drq_err *err);
void store_close(store *st);
/* The schema version of the open database. */
int store_schema_version(store *st);

int store_begin(store *st, drq_err *err); /* BEGIN IMMEDIATE */
/* Commits; fails (and rolls back) when any statement of the transaction
 * failed: once one failed, the rest of the transaction did not run. */
int store_commit(store *st, drq_err *err);
void store_rollback(store *st);

/* Storage faults.  No statement error ends the process: the first failure of
 * a transaction is recorded, nothing more of that transaction runs, and
 * store_commit refuses.  store_fault gives the SQLite (extended) result code
 * of that failure (0: none) and a message; store_fault_is_storage says whether
 * it is the storage's doing (disk full, I/O error, busy/locked, out of memory,
 * read-only): the database is intact and a later transaction may succeed. */
int store_fault(store *st, const char **msg);
int store_fault_is_storage(int rc);

/* ---- sweeps ------------------------------------------------------------- */

/* Creates a sweep in state "expanding" and reserves its job ids. */
int store_sweep_create(store *st, const drq_spec *spec, const char *canonical, int64_t *id, drq_err *err);
/* The same, recording the client's submission id (NULL: none). */
int store_sweep_create_ex(store *st, const drq_spec *spec, const char *canonical, const char *submission,
                          int64_t *id, drq_err *err);
/* 64-bit FNV-1a of a canonical spec as 16 hex digits (sweeps.spec_hash). */
void store_spec_hash(const char *canonical, char out[17]);
/* Idempotent submit: the sweep this submission id created (*by_submission =
 * 1), else, unless again, the first sweep that is not cancelled whose
 * canonical spec equals this one; 0 when there is none. */
int64_t store_sweep_dedup(store *st, const char *submission, const char *canonical, int again, int *by_submission);
/* Ids of sweeps not cancelled with jobs still to insert, queued or leased
 * (malloc'd array, *n). */
int64_t *store_sweeps_unfinished(store *st, int *n);
/* Id of the sweep with this name and canonical spec (0 none); -1 + err when a
 * sweep of this name exists with a different spec. */
int64_t store_sweep_find(store *st, const char *name, const char *canonical, drq_err *err);
/* Jobs inserted per store_sweep_expand transaction: on drq-server's loop (at
 * most this many per loop turn, and a time budget, so that heartbeats go on)
 * and in drq run, before its loop starts (nothing else waits). */
#define STORE_EXPAND_CHUNK_LOOP 20000
#define STORE_EXPAND_CHUNK_BATCH 50000
/* Inserts up to max further jobs of an expanding sweep; returns how many are
 * still to insert afterwards (0 = complete, state becomes active), -1 + err. */
int64_t store_sweep_expand(store *st, int64_t sweep, const drq_spec *spec, int64_t max, drq_err *err);
/* Ids of sweeps still expanding (malloc'd array, *n). */
int64_t *store_sweeps_expanding(store *st, int *n);
/* The canonical spec text of a sweep (malloc'd) or NULL. */
char *store_sweep_spec(store *st, int64_t sweep);
/* Counts of one sweep; -1 when it does not exist. */
typedef struct {
    int64_t id, njobs, nrows, jobs_created, queued, leased, done, failed, cancelled, rows_done;
    char name[DRQ_NAME_MAX];
    char state[16];
    double created;
} store_counts;
int store_sweep_counts(store *st, int64_t sweep, store_counts *c);
/* Status JSON: {"sweeps":[…]} for one sweep (sweep > 0) or all; recent
 * failures (up to nfail per sweep) included. */
json_t *store_status(store *st, int64_t sweep, int nfail);
/* Cancels queued+leased jobs of a sweep and marks it cancelled; the ids of
 * the jobs that were leased come back in *leased (malloc'd, *nleased). */
int64_t store_sweep_cancel(store *st, int64_t sweep, int64_t **leased, int *nleased, drq_err *err);
/* failed -> queued for a sweep (attempts reset); returns the count. */
int64_t store_sweep_retry(store *st, int64_t sweep, drq_err *err);

/* ---- jobs --------------------------------------------------------------- */

int store_job_get(store *st, int64_t id, store_job *j); /* 0 found, 1 not */
/* Whether job j (as read) is leased to owner: what a worker may change only
 * while it holds the lease (checkpoint, fail, release, requeue). */
int store_job_leased_to(const store_job *j, const char *owner);
/* Leases up to n dispatchable jobs to owner (queued, back-off elapsed,
 * dependency done); returns how many, filling out[]. */
int store_lease(store *st, const char *owner, double now, double lease_s, int n, store_job *out);
/* Leases one specific queued job (a re-registering worker still holds it). */
int store_lease_one(store *st, int64_t id, const char *owner, double now, double lease_s);
int store_extend(store *st, int64_t id, const char *owner, double expires);
/* leased -> done (also from queued/failed: a late result is still a result).
 * Its checkpoint is deleted by the next store_checkpoints_gc. */
int store_job_done(store *st, int64_t id);
/* One failed attempt: attempts+1, then queued with back-off, or failed (and
 * its queued dependents failed too) once attempts reach max_attempts.
 * Returns 1 when the job is now failed, 0 when requeued. */
int store_job_attempt_failed(store *st, int64_t id, const char *error, double now, int max_attempts,
                             double backoff_s);
/* Fails a job for good (non-retryable), with its queued dependents. */
void store_job_fail(store *st, int64_t id, const char *error);
/* leased -> queued, no attempt counted (preemption, RELEASE). */
int store_job_release(store *st, int64_t id);
/* Leased jobs whose lease expired before now (ids, malloc'd). */
int64_t *store_expired_leases(store *st, double now, int *n);
/* Pushes every lease's expiry to at least `expires` (after a storage fault,
 * so that workers can re-register before their leases lapse). */
void store_extend_all_leases(store *st, double expires);
/* Every leased job back to queued (embedded start-up: no worker survives). */
int64_t store_requeue_all_leased(store *st);

/* ---- results ------------------------------------------------------------ */

/* Inserts rows (identity taken from job) with INSERT OR IGNORE; a new row of
 * an analysis job also fills its analysis table (variance_results …, from its
 * extra through common/analysis_rows.c), and the images the rows carry
 * (drq_row.images) go into the images table the same way, all in the same
 * transaction.  Returns the number of new rows. */
int64_t store_results_insert(store *st, const store_job *job, const char *purifier, const char *attack,
                             const drq_row *rows, int64_t n);
/* Rows present for a job's key range. */
int64_t store_results_count(store *st, const store_job *job, const char *purifier, const char *attack);
/* Rows of a sweep in key order after a cursor (purifier, attack, seed, image;
 * NULL purifier = from the start); returns count, rows malloc'd. */
int64_t store_results_fetch(store *st, int64_t sweep, const char *after_p, const char *after_a, int64_t after_seed,
                            int64_t after_image, int64_t limit, drq_row **rows);
/* Calls fn on every row of a sweep in key order, a page at a time (bounded
 * memory for any sweep size); returns the number of rows. */
int64_t store_results_foreach(store *st, int64_t sweep, void (*fn)(void *arg, const drq_row *rows, int64_t n),
                              void *arg);

/* ---- images (the attack option "save", common/images.h) ----------------------- */

/* One stored image: the row's identity, its kind and pixels. */
typedef struct {
    int64_t sweep, seed, image;
    char purifier[DRQ_NAME_MAX], attack[DRQ_NAME_MAX];
    int what; /* DRQ_IMG_* */
    int c, h, w;
    const float *data; /* c·h·w floats, valid during the callback only */
} store_image;
/* Attaches to each of rows[0..n) (identity from the row, no images yet)
 * the images stored for it (drq_row.images); returns how many rows got
 * some.  A stored image of another size than the row's first is skipped. */
int64_t store_images_attach(store *st, drq_row *rows, int64_t n);
/* Calls fn on every image of a sweep in key order (purifier, attack, seed,
 * image, what), or only those of one purifier and attack when both are
 * given (non-NULL), at most `limit` images per (purifier, attack, seed) when
 * limit > 0 (the first images by index); fn returning nonzero stops.
 * Returns the number of images passed to fn; -1 + err on a malformed row
 * (an unknown kind, a size that does not match c·h·w). */
int64_t store_images_foreach(store *st, int64_t sweep, const char *purifier, const char *attack, int64_t limit,
                             int (*fn)(void *arg, const store_image *im), void *arg, drq_err *err);

/* ---- checkpoints, events, workers ------------------------------------------ */

int store_checkpoint_put(store *st, int64_t job, int64_t step, const void *blob, size_t len, const char *worker);
/* 1 + malloc'd blob when the job has a checkpoint, 0 otherwise. */
int store_checkpoint_get(store *st, int64_t job, int64_t *step, void **blob, size_t *len);
/* Deletes the checkpoints of done and cancelled jobs (a failed job keeps its
 * own for a retry); returns how many checkpoints remain. */
int64_t store_checkpoints_gc(store *st);

void store_event(store *st, int64_t sweep, int64_t job, const char *worker, const char *kind, const char *fmt, ...)
    DRQ_PRINTF(6, 7);

void store_worker_seen(store *st, const char *name, const char *devices_json, const char *version, const char *state,
                       int64_t jobs_done_delta);

#endif
