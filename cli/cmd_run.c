/* cmd_run.c — `drq run SPEC.json [--db FILE] [--threads N]`: the one-machine
 * default.  The same coordinator (server/server.c) and worker (worker/worker.c)
 * code as the daemons, in one process: the coordinator loop on a thread, N
 * local workers connected over inproc://, a local SQLite file (default
 * ./NAME.drq.db).  Running the command again resumes: done jobs are skipped,
 * failed ones are retried, interrupted ones resume from their checkpoint; the
 * same file can be served later by drq-server.  Ends with the summary table
 * of common/report.h.
 *
 * Exit status: 0 all jobs done, 1 usage/spec/database error, 3 finished with
 * failed jobs, 4 stopped on a storage fault (disk full, I/O error: every
 * committed row is kept; free space and run again to resume), 130 interrupted
 * (run again to resume).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <omp.h>
#include <zmq.h>

#include "cli.h"
#include "cli/dryrun.h"
#include "common/report.h"
#include "common/spec.h"
#include "server/server.h"
#include "server/store.h"
#include "worker/eval/engine.h"
#include "worker/worker.h"

static atomic_int g_interrupt;
static void on_signal(int sig) { atomic_store(&g_interrupt, 1); }

typedef struct {
    drq_server *srv;
    int rc;
    atomic_int done;
} server_thread;

static void *server_main(void *arg) {
    server_thread *t = arg;
    t->rc = drq_server_run(t->srv);
    atomic_store(&t->done, 1);
    return NULL;
}

typedef struct {
    drq_worker_opts o;
    atomic_int *stop;
    char name[64];
} worker_thread;

static void *worker_main(void *arg) {
    worker_thread *w = arg;
    drq_worker_run(&w->o, w->stop);
    return NULL;
}

/* store_results_foreach callback: rows into the report. */
static void report_page(void *rep, const drq_row *rows, int64_t n) {
    for (int64_t i = 0; i < n; i++) drq_report_add(rep, &rows[i]);
}

static int usage(void) {
    fprintf(stderr, "usage: drq run SPEC.json [--db FILE] [--threads N] [--workers W] [--batch B] [--checkpoint-every N]\n"
                    "                    [--dry-run]\n"
                    "                    [--max-attempts N] [--device cpu|cuda:N] [--mem-budget MIB]\n"
                    "               [--log FILE] [--clients tcp://127.0.0.1:PORT] [--quiet]\n");
    return 1;
}

/* ---- progress ---------------------------------------------------------------------- */

/* The rate of finished jobs: samples of (time, jobs done) once a second; the
 * rate is measured over the last 60 s, stretched further back (to the start of
 * the run at most) until the window holds at least 3 finished jobs, so jobs of
 * several seconds — or minutes — give a steady rate instead of 0 between two
 * completions. */
enum { PROG_SAMPLES = 512, PROG_WINDOW_S = 60, PROG_MIN_JOBS = 3 };
typedef struct {
    double t0;   /* start of the run */
    int64_t d0;  /* jobs done at the start (a resumed sweep has some) */
    double t[PROG_SAMPLES];
    int64_t d[PROG_SAMPLES];
    int n, head; /* samples kept; the next slot */
} prog_rate;

static void prog_sample(prog_rate *p, double now, int64_t done) {
    int newest = (p->head + PROG_SAMPLES - 1) % PROG_SAMPLES;
    if (p->n && now - p->t[newest] < 1) return; /* one sample a second */
    p->t[p->head] = now;
    p->d[p->head] = done;
    p->head = (p->head + 1) % PROG_SAMPLES;
    if (p->n < PROG_SAMPLES) p->n++;
}

static double prog_rate_get(const prog_rate *p, double now, int64_t done) {
    double ts = p->t0;
    int64_t ds = p->d0;
    for (int k = 1; k <= p->n; k++) { /* newest to oldest */
        int i = (p->head + PROG_SAMPLES - k) % PROG_SAMPLES;
        if (now - p->t[i] <= PROG_WINDOW_S || done - p->d[i] < PROG_MIN_JOBS) {
            ts = p->t[i];
            ds = p->d[i];
        } else
            break;
    }
    if (done - ds < PROG_MIN_JOBS && p->n == PROG_SAMPLES) { /* the ring is too short: since the start */
        ts = p->t0;
        ds = p->d0;
    }
    double dt = now - ts;
    return dt >= 1 && done > ds ? (double)(done - ds) / dt : 0;
}

/* "1.5 jobs/s", "12.0 jobs/min" under one a second, "-" before the first. */
static void fmt_rate(char *buf, size_t n, double r) {
    if (!(r > 0))
        snprintf(buf, n, "- jobs/s");
    else if (r >= 1)
        snprintf(buf, n, "%.1f jobs/s", r);
    else
        snprintf(buf, n, "%.1f jobs/min", r * 60);
}

/* One progress line (no line end). */
static void prog_line(char *buf, size_t n, const store_counts *c, double rate) {
    int64_t fin = c->done + c->failed + c->cancelled;
    char eta[32], rt[32], bar[31];
    cli_fmt_duration(eta, sizeof eta, rate > 0 ? (double)(c->njobs - fin) / rate : -1);
    fmt_rate(rt, sizeof rt, rate);
    double frac = c->njobs ? (double)fin / (double)c->njobs : 1;
    for (int k = 0; k < 30; k++) bar[k] = k < (int)(frac * 30) ? '#' : '-';
    bar[30] = 0;
    snprintf(buf, n, "[%s] %5.1f%%  %lld/%lld jobs  %lld rows  %s  ETA %s  failed %lld", bar, 100 * frac,
             (long long)fin, (long long)c->njobs, (long long)c->rows_done, rt, eta, (long long)c->failed);
}

/* Not on a terminal (a log file, a pipe): a line when jobs finished, at most
 * every PROG_LOG_EVERY s, and one every PROG_LOG_IDLE s when nothing did;
 * never the same line twice in a row. */
enum { PROG_LOG_EVERY = 5, PROG_LOG_IDLE = 30 };

/* Inserts the jobs of an expanding sweep, in committed chunks. */
static int expand_all(store *st, int64_t sweep, const drq_spec *sp, drq_err *err) {
    for (;;) {
        if (store_begin(st, err)) return -1;
        int64_t left = store_sweep_expand(st, sweep, sp, STORE_EXPAND_CHUNK_BATCH, err);
        if (left < 0) {
            store_rollback(st);
            return -1;
        }
        if (store_commit(st, err)) return -1;
        if (left == 0) return 0;
    }
}

/* Creates the sweep in the database, or finds it to resume.  Returns its id;
 * -1 + err, with *storage set when the failure was a storage fault. */
static int64_t prepare_sweep(const char *db, const drq_spec *sp, FILE *out, int quiet, int *storage, drq_err *err) {
    *storage = 0;
    store *st = store_open(db, 0, err);
    if (!st) return -1;
    char *canon = drq_spec_canonical(sp);
    int64_t id = store_sweep_find(st, sp->name, canon, err);
    if (id < 0) goto done;
    if (id == 0) {
        if (store_begin(st, err) || store_sweep_create(st, sp, canon, &id, err) || store_commit(st, err)) {
            id = -1;
            goto done;
        }
        if (!quiet)
            fprintf(out, "sweep %lld \"%s\": %lld jobs, %lld result rows (db %s)\n", (long long)id, sp->name,
                    (long long)drq_spec_njobs(sp), (long long)drq_spec_nrows(sp), db);
    } else {
        store_counts c;
        store_sweep_counts(st, id, &c);
        if (!quiet)
            fprintf(out, "resuming sweep %lld \"%s\": %lld/%lld jobs done (db %s)\n", (long long)id, sp->name,
                    (long long)c.done, (long long)c.njobs, db);
        if (c.failed) {
            if (store_begin(st, err)) {
                id = -1;
                goto done;
            }
            int64_t n = store_sweep_retry(st, id, err);
            if (n < 0 || store_commit(st, err)) {
                store_rollback(st);
                id = -1;
                goto done;
            }
            if (!quiet) fprintf(out, "retrying %lld failed job(s)\n", (long long)n);
        }
    }
    if (expand_all(st, id, sp, err)) id = -1;
done:
    if (id < 0) *storage = store_fault_is_storage(store_fault(st, NULL));
    free(canon);
    store_close(st);
    return id;
}

/* Prints the summary table of a sweep, plus its failures. */
static void print_report(const char *db, int64_t sweep, FILE *out) {
    drq_err err;
    store *st = store_open(db, 1, &err);
    if (!st) {
        fprintf(out, "drq: %s\n", err.msg);
        return;
    }
    drq_report *rep = drq_report_new();
    store_results_foreach(st, sweep, report_page, rep);
    drq_report_print(rep, out);
    drq_report_free(rep);
    json_t *stj = store_status(st, sweep, 5);
    json_t *o = json_array_get(json_object_get(stj, "sweeps"), 0);
    json_t *fails = json_object_get(o, "failures");
    if (json_integer_value(json_object_get(o, "failed")) > 0) {
        fprintf(out, "%lld job(s) failed; recent errors:\n", (long long)json_integer_value(json_object_get(o, "failed")));
        size_t i;
        json_t *f;
        json_array_foreach(fails, i, f) fprintf(out, "  job %lld: %s\n", (long long)json_integer_value(json_object_get(f, "job")),
                                                json_string_value(json_object_get(f, "error")));
    }
    json_decref(stj);
    store_close(st);
}

int cmd_run(int argc, char **argv) {
    const char *spec_path = NULL, *db = NULL, *log_path = NULL, *clients = NULL, *device = "cpu";
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), workers = 0, ckpt_every = 10, max_attempts = 3, quiet = 0;
    int dry_run = 0, batch = 8; /* --dry-run: cli/cmd_dryrun.c */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(a, "--dry-run")) {
            dry_run = 1;
        } else if (!strcmp(a, "--db") && v) {
            db = v, i++;
        } else if (!strcmp(a, "--log") && v) {
            log_path = v, i++;
        } else if (!strcmp(a, "--clients") && v) {
            clients = v, i++;
        } else if (!strcmp(a, "--threads") && v) {
            threads = atoi(v), i++;
            if (threads < 1 || threads > 256) {
                fprintf(stderr, "drq run: --threads: expected an integer in [1,256]\n");
                return 1;
            }
        } else if (!strcmp(a, "--workers") && v) {
            workers = atoi(v), i++;
            if (workers < 1 || workers > 256) {
                fprintf(stderr, "drq run: --workers: expected an integer in [1,256]\n");
                return 1;
            }
        } else if (!strcmp(a, "--batch") && v) {
            int b = atoi(v);
            i++;
            if (b < 1 || b > 4096) {
                fprintf(stderr, "drq run: --batch: expected an integer in [1,4096]\n");
                return 1;
            }
            engine_set_batch(b);
            batch = b;
        } else if (!strcmp(a, "--mem-budget") && v) {
            drq_err merr;
            i++;
            if (engine_set_mem_budget(v, &merr)) {
                fprintf(stderr, "drq run: %s\n", merr.msg);
                return 1;
            }
        } else if (!strcmp(a, "--device") && v) {
            drq_err derr;
            device = v, i++;
            if (engine_set_device(v, &derr)) {
                fprintf(stderr, "drq run: %s\n", derr.msg);
                return 1;
            }
        } else if (!strcmp(a, "--checkpoint-every") && v) {
            ckpt_every = atoi(v), i++;
            if (ckpt_every < 0) return usage();
        } else if (!strcmp(a, "--max-attempts") && v) {
            max_attempts = atoi(v), i++;
            if (max_attempts < 1) return usage();
        } else if (a[0] != '-' && !spec_path) {
            spec_path = a;
        } else {
            return usage();
        }
    }
    if (!spec_path) return usage();
    drq_spec sp;
    drq_err err;
    if (drq_spec_load(spec_path, &sp, &err)) {
        fprintf(stderr, "drq: %s\n", err.msg);
        return 1;
    }
    if (dry_run) { /* counts and estimate only: no database, no log, no thread started */
        int w = workers > 0 ? workers : strcmp(device, "cpu") ? 1 : threads;
        dryrun_opts o = {.batch = batch, .threads = w > 1 ? (threads / w > 0 ? threads / w : 1) : threads,
                         .workers = w, .device = device};
        int drc = dryrun_print(&sp, &o, stdout);
        drq_spec_free(&sp);
        return drc;
    }
    char dbbuf[4200], logbuf[4300];
    if (!db) {
        snprintf(dbbuf, sizeof dbbuf, "%s.drq.db", sp.name);
        db = dbbuf;
    }
    if (!log_path) {
        snprintf(logbuf, sizeof logbuf, "%s.log", db);
        log_path = logbuf;
    }
    /* our own messages go to the real stderr; the daemons' log lines to the log file */
    FILE *out = fdopen(dup(2), "w");
    setvbuf(out, NULL, _IOLBF, 0);
    int logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (logfd < 0) {
        fprintf(stderr, "drq: %s: %s\n", log_path, strerror(errno));
        drq_spec_free(&sp);
        return 1;
    }
    dup2(logfd, 2);
    close(logfd);

    attack_engine_register();
    int storage = 0;
    int64_t sweep = prepare_sweep(db, &sp, out, quiet, &storage, &err);
    if (sweep < 0) {
        fprintf(out, "drq: %s\n", err.msg);
        if (storage)
            fprintf(out, "drq: the database cannot be written (disk full or I/O error); nothing was lost: free "
                         "space and run the same command again\n");
        drq_spec_free(&sp);
        fclose(out);
        return storage ? 4 : 1;
    }

    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    void *zctx = zmq_ctx_new();
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://drq-run-%d", (int)getpid());
    drq_server_opts so = {.db_path = db, .clients_ep = clients, .max_attempts = max_attempts, .zctx = zctx,
                          .recover_leases = 1, .quiet = 1, .stop_on_storage_fault = 1};
    so.workers_ep[0] = ep;
    drq_server *srv = drq_server_new(&so, &err);
    if (!srv) {
        fprintf(out, "drq: %s\n", err.msg);
        zmq_ctx_term(zctx);
        drq_spec_free(&sp);
        fclose(out);
        return 1;
    }
    server_thread st = {.srv = srv};
    pthread_t stid;
    /* the daemon threads must not take the signals meant for this thread */
    sigset_t all, prev;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &prev);
    int prc = pthread_create(&stid, NULL, server_main, &st);
    if (prc) DIE("drq run: cannot start the coordinator thread: %s", strerror(prc));
    atomic_int wstop = 0;
    /* --threads cores in all, shared by --workers job threads (default: one
     * worker per core, single-threaded kernels: per-image parallelism beats
     * intra-op threading at demo sizes) */
    if (workers < 1) workers = strcmp(device, "cpu") ? 1 : threads; /* one job stream per GPU */
    drq_set_threads(workers > 1 ? 1 : threads);
    worker_thread *wt = xcalloc((size_t)workers, sizeof *wt);
    pthread_t *wtid = xcalloc((size_t)workers, sizeof *wtid);
    for (int i = 0; i < workers; i++) {
        snprintf(wt[i].name, sizeof wt[i].name, "local-%d", i + 1);
        wt[i].o = (drq_worker_opts){.server = ep, .name = wt[i].name, .device = device, .checkpoint_every = ckpt_every,
                                    .prefetch = 1, .zctx = zctx, .quiet = 1,
                                    .threads = threads / workers > 0 ? threads / workers : 1}; /* its share of the cores */
        wt[i].stop = &wstop;
        prc = pthread_create(&wtid[i], NULL, worker_main, &wt[i]);
        /* nothing is lost: every committed row stays, and running the same
         * command again resumes the sweep */
        if (prc) DIE("drq run: cannot start worker thread %d of %d: %s", i + 1, workers, strerror(prc));
    }
    pthread_sigmask(SIG_SETMASK, &prev, NULL);

    /* progress: redrawn in place on a terminal; into a file or a pipe a line
     * per finished job(s) (see PROG_LOG_EVERY), never the same line twice */
    drq_err e2;
    store *ro = store_open(db, 1, &e2);
    int tty = isatty(fileno(out));
    double t0 = drq_clock_mono(), last_line = -1e9;
    prog_rate pr = {.t0 = t0};
    int have_d0 = 0;
    char line[256], last[256] = "";
    int64_t last_fin = -1;
    store_counts c = {0};
    int finished = 0;
    while (!atomic_load(&g_interrupt) && !atomic_load(&st.done)) {
        if (ro && store_sweep_counts(ro, sweep, &c) == 0) {
            double now = drq_clock_mono();
            if (!have_d0) {
                pr.d0 = c.done;
                have_d0 = 1;
            }
            prog_sample(&pr, now, c.done);
            double rate = prog_rate_get(&pr, now, c.done);
            int64_t fin = c.done + c.failed + c.cancelled;
            finished = c.jobs_created == c.njobs && c.queued == 0 && c.leased == 0;
            if (!quiet) {
                prog_line(line, sizeof line, &c, rate);
                if (tty) {
                    if (strcmp(line, last)) {
                        fprintf(out, "\r%s\033[K", line);
                        fflush(out);
                    }
                    snprintf(last, sizeof last, "%s", line);
                } else if (strcmp(line, last) &&
                           (finished || last_fin < 0 || (fin != last_fin && now - last_line >= PROG_LOG_EVERY) ||
                            now - last_line >= PROG_LOG_IDLE)) {
                    fprintf(out, "%s\n", line);
                    snprintf(last, sizeof last, "%s", line);
                    last_line = now;
                    last_fin = fin;
                }
            }
            if (finished) break;
        }
        struct timespec nap = {0, tty ? 200000000L : 100000000L};
        nanosleep(&nap, NULL);
    }
    if (tty && !quiet && last[0]) fprintf(out, "\n");
    int interrupted = atomic_load(&g_interrupt) && !finished;
    atomic_store(&wstop, 1);
    for (int i = 0; i < workers; i++) pthread_join(wtid[i], NULL);
    drq_server_stop(srv);
    pthread_join(stid, NULL);
    int fatal = st.rc;
    char fault[800];
    snprintf(fault, sizeof fault, "%s", drq_server_fault(srv));
    drq_server_free(srv);
    zmq_ctx_term(zctx);
    free(wt);
    free(wtid);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (ro) store_sweep_counts(ro, sweep, &c);
    store_close(ro);

    int rc = 0;
    if (fatal == 2) {
        fprintf(out,
                "drq: stopped: the database %s cannot be written: %s\n"
                "drq: %lld/%lld jobs done and every committed row is kept; free space (or fix the disk) and run the "
                "same command again to resume\n",
                db, fault, (long long)c.done, (long long)c.njobs);
        rc = 4;
    } else if (fatal) {
        fprintf(out, "drq: the coordinator stopped on a database error (see %s)\n", log_path);
        rc = 1;
    } else if (interrupted) {
        fprintf(out, "interrupted: %lld/%lld jobs done; run the same command again to resume\n", (long long)c.done,
                (long long)c.njobs);
        rc = 130;
    } else {
        if (!quiet) fprintf(out, "done in %.1f s\n", drq_clock_mono() - t0);
        print_report(db, sweep, out);
        if (c.failed) rc = 3;
    }
    drq_spec_free(&sp);
    fclose(out);
    return rc;
}
