/* worker.c — see worker.h and docs/queue.md.
 *
 * Credit accounting.  The server sends a job only against credit.  HELLO
 * announces capacity − jobs held; afterwards every job that leaves the worker
 * (done, failed, released, cancelled) earns one credit, carried on the first
 * send of its RESULT/FAIL/RELEASE or by a READY.  Re-sent messages never carry
 * credit, and a new HELLO recounts from scratch, so credit is neither lost nor
 * counted twice across reconnects.
 */
#include "worker/worker.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <zmq.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "common/images.h"
#include "common/proto.h"
#include "common/row.h"
#include "common/spec.h"
#include "kernels/device.h"
#include "worker/job.h"

#define RESEND_AFTER_S 10.0

typedef struct qjob {
    struct qjob *next;
    drq_job job;
    void *ckpt;
    size_t ckpt_len;
    int64_t ckpt_step;
    int has_ckpt;
} qjob;

/* Something the compute thread hands to the I/O thread. */
typedef struct outitem {
    struct outitem *next;
    drq_msg_type type; /* RESULT, FAIL, CHECKPOINT, RELEASE; READY = credit only */
    int64_t job;
    json_t *body;
    void *bin;
    size_t binlen;
} outitem;

typedef struct {
    int64_t seq, job;
    drq_msg_type type;
    json_t *body; /* with seq */
    void *bin;
    size_t binlen;
    double sent_at; /* 0: never sent */
} unacked;

typedef struct {
    int64_t sweep;
    char *canon;
    drq_spec *spec;
} specent;

typedef struct {
    drq_worker_opts o;
    char name[DRQ_TAG_MAX];
    char device_tag[DRQ_TAG_MAX]; /* what rows record: "cpu:ISA" or "cuda:N" (drq_device_tag) */
    void *zctx;
    int own_ctx;
    void *sock;
    int efd; /* compute -> I/O wake-ups */
    pthread_t compute;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* shared, under mu */
    qjob *qhead, *qtail;
    int qlen;
    qjob *running;
    outitem *ohead, *otail;
    atomic_int cancel_running, preempt, stop_compute, compute_exited, wake_needed;
    atomic_llong prog_job, prog_done, prog_total;
    /* I/O thread only */
    unacked *ua;
    int nua, capua;
    int64_t next_seq;
    specent *specs;
    int nspecs;
    int welcomed;
    double last_recv, next_hb, backoff, reconnect_at;
    int credit_owed;
    int capacity;
    int connects;
} wk;

#define WLOG(w, ...)                                          \
    do {                                                      \
        if (!(w)->o.quiet) log_line((w)->name, __VA_ARGS__); \
    } while (0)

static void wake_force(wk *w) {
    uint64_t one = 1;
    ssize_t rc = write(w->efd, &one, sizeof one);
    (void)rc;
}

/* Wakes the I/O thread if the last push_out found the outbox empty: the I/O
 * thread takes the whole outbox per wake-up, so one wake per batch is enough. */
static void wake(wk *w) {
    if (atomic_exchange(&w->wake_needed, 0)) wake_force(w);
}

/* Appends an item for the I/O thread (caller holds mu). */
static void push_out(wk *w, drq_msg_type type, int64_t job, json_t *body, void *bin, size_t binlen) {
    if (!w->ohead) atomic_store(&w->wake_needed, 1);
    outitem *it = xcalloc(1, sizeof *it);
    it->type = type;
    it->job = job;
    it->body = body;
    it->bin = bin;
    it->binlen = binlen;
    if (w->otail)
        w->otail->next = it;
    else
        w->ohead = it;
    w->otail = it;
}

/* ---- compute thread ------------------------------------------------------------- */

static void ctx_progress(job_ctx *ctx, int64_t done, int64_t total) {
    wk *w = ctx->user;
    atomic_store(&w->prog_done, done);
    atomic_store(&w->prog_total, total);
}

static void ctx_checkpoint(job_ctx *ctx, int64_t step, const void *blob, size_t len) {
    wk *w = ctx->user;
    json_t *b = json_object();
    int64_t job = atomic_load(&w->prog_job);
    json_object_set_new(b, "job", json_integer(job));
    json_object_set_new(b, "step", json_integer(step));
    void *copy = xmalloc(len ? len : 1);
    memcpy(copy, blob, len);
    pthread_mutex_lock(&w->mu);
    push_out(w, MSG_CHECKPOINT, job, b, copy, len);
    pthread_mutex_unlock(&w->mu);
    wake(w);
}

static json_t *job_body(int64_t id) {
    json_t *b = json_object();
    json_object_set_new(b, "job", json_integer(id));
    return b;
}

static void free_qjob(qjob *q) {
    free(q->ckpt);
    free(q);
}

static void *compute_main(void *arg) {
    wk *w = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals go to the I/O thread */
    /* A new thread starts from OpenMP's default (every core), not from its
     * creator's setting: the kernels run here, so the count is set here. */
    drq_set_threads(w->o.threads);
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->qhead && !atomic_load(&w->stop_compute)) pthread_cond_wait(&w->cv, &w->mu);
        if (atomic_load(&w->stop_compute)) {
            /* stopping: hand back every job not started */
            while (w->qhead) {
                qjob *q = w->qhead;
                w->qhead = q->next;
                w->qlen--;
                push_out(w, MSG_RELEASE, q->job.id, job_body(q->job.id), NULL, 0);
                free_qjob(q);
            }
            w->qtail = NULL;
            pthread_mutex_unlock(&w->mu);
            break;
        }
        qjob *q = w->qhead;
        w->qhead = q->next;
        if (!w->qhead) w->qtail = NULL;
        w->qlen--;
        w->running = q;
        atomic_store(&w->cancel_running, 0);
        atomic_store(&w->prog_job, q->job.id);
        atomic_store(&w->prog_done, q->has_ckpt ? q->ckpt_step : 0);
        atomic_store(&w->prog_total, q->job.image_count);
        pthread_mutex_unlock(&w->mu);

        job_ctx ctx = {
            .user = w,
            .progress = ctx_progress,
            .checkpoint = ctx_checkpoint,
            .checkpoint_every = w->o.checkpoint_every,
            .resume = q->has_ckpt ? q->ckpt : NULL,
            .resume_len = q->ckpt_len,
            .resume_step = q->ckpt_step,
            .cancel = &w->cancel_running,
            .preempt = &w->preempt,
        };
        drq_row *rows = NULL;
        int64_t n = 0;
        drq_err err = {{0}};
        double t0 = drq_clock_mono();
        job_status st = job_run(&q->job, &ctx, &rows, &n, &err);
        double dt = drq_clock_mono() - t0;
        if (ctx.resumed) log_line(w->name, "job %lld: resumed from checkpoint step %lld", (long long)q->job.id,
                                  (long long)q->ckpt_step);
        pthread_mutex_lock(&w->mu);
        w->running = NULL;
        switch (st) {
        case JOB_DONE: {
            size_t len, images_len;
            void *packed = drq_images_pack_rows(rows, n, &len, &images_len); /* rows, then their images */
            json_t *b = job_body(q->job.id);
            json_object_set_new(b, "final", json_true());
            json_object_set_new(b, "n", json_integer(n));
            if (images_len) json_object_set_new(b, "images", json_integer((json_int_t)images_len));
            push_out(w, MSG_RESULT, q->job.id, b, packed, len);
            WLOG(w, "job %lld done: %lld rows in %.3f s", (long long)q->job.id, (long long)n, dt);
            break;
        }
        case JOB_FAILED: {
            json_t *b = job_body(q->job.id);
            json_object_set_new(b, "error", json_string(err.msg[0] ? err.msg : "job failed without a message"));
            json_object_set_new(b, "retryable", json_boolean(ctx.retryable));
            push_out(w, MSG_FAIL, q->job.id, b, NULL, 0);
            log_line(w->name, "job %lld failed%s: %s", (long long)q->job.id, ctx.retryable ? " (retryable)" : "",
                     err.msg);
            break;
        }
        case JOB_CANCELLED:
            push_out(w, MSG_READY, q->job.id, NULL, NULL, 0);
            log_line(w->name, "job %lld cancelled", (long long)q->job.id);
            break;
        case JOB_PREEMPTED:
            push_out(w, MSG_RELEASE, q->job.id, job_body(q->job.id), NULL, 0);
            log_line(w->name, "job %lld preempted at %lld/%lld: checkpointed, releasing", (long long)q->job.id,
                     (long long)atomic_load(&w->prog_done), (long long)q->job.image_count);
            break;
        }
        atomic_store(&w->prog_job, 0);
        pthread_mutex_unlock(&w->mu);
        drq_rows_free(rows, n);
        free_qjob(q);
        wake(w);
    }
    job_thread_exit(); /* the runners' per-thread state (cached models) */
    atomic_store(&w->compute_exited, 1);
    wake_force(w);
    return NULL;
}

/* ---- I/O thread ------------------------------------------------------------------- */

static void send_msg(wk *w, drq_msg_type t, json_t *body, const void *bin, size_t len) {
    if (!w->sock) return;
    if (drq_msg_send(w->sock, NULL, 0, t, body, bin, len) && errno != EAGAIN)
        log_line(w->name, "send %s failed: %s", drq_msg_name(t), zmq_strerror(errno));
}

static void open_socket(wk *w) {
    w->sock = zmq_socket(w->zctx, ZMQ_DEALER);
    int linger = 0, hwm = DRQ_DEALER_HWM;
    zmq_setsockopt(w->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(w->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(w->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    drq_err cerr; /* CURVE when drq-worker was given keys (common/proto.h, docs/security.md) */
    if (drq_curve_client_apply(w->sock, &cerr)) log_line(w->name, "%s", cerr.msg);
    if (zmq_connect(w->sock, w->o.server)) log_line(w->name, "connect %s: %s", w->o.server, zmq_strerror(errno));
    w->connects++;
    w->welcomed = 0;
    w->last_recv = drq_clock_mono();
}

static void close_socket(wk *w) {
    if (w->sock) zmq_close(w->sock);
    w->sock = NULL;
    w->welcomed = 0;
}

/* Turns compute-thread items into reliable messages (seq, kept until ACK);
 * sends them now when registered.  The caller holds no lock. */
static void process_items(wk *w, outitem *it) {
    while (it) {
        outitem *next = it->next;
        /* a stopping worker earns no credit: nothing new must come its way */
        int frees_slot = it->type != MSG_CHECKPOINT && !atomic_load(&w->stop_compute);
        if (frees_slot) w->credit_owed++;
        if (it->type != MSG_READY) {
            if (w->nua == w->capua) {
                w->capua = w->capua ? w->capua * 2 : 16;
                w->ua = xrealloc(w->ua, (size_t)w->capua * sizeof *w->ua);
            }
            unacked *u = &w->ua[w->nua++];
            u->seq = ++w->next_seq;
            u->job = it->job;
            u->type = it->type;
            u->body = it->body;
            u->bin = it->bin;
            u->binlen = it->binlen;
            u->sent_at = 0;
            json_object_set_new(u->body, "seq", json_integer(u->seq));
            if (w->welcomed) {
                json_t *b = json_copy(u->body);
                if (frees_slot && w->credit_owed > 0) {
                    json_object_set_new(b, "credit", json_integer(w->credit_owed));
                    w->credit_owed = 0;
                }
                send_msg(w, u->type, b, u->bin, u->binlen);
                json_decref(b);
                u->sent_at = drq_clock_mono();
            }
        }
        free(it);
        it = next;
    }
    if (w->welcomed && w->credit_owed > 0) {
        json_t *b = json_object();
        json_object_set_new(b, "credit", json_integer(w->credit_owed));
        send_msg(w, MSG_READY, b, NULL, 0);
        json_decref(b);
        w->credit_owed = 0;
    }
}

static outitem *take_items(wk *w) {
    pthread_mutex_lock(&w->mu);
    outitem *it = w->ohead;
    w->ohead = w->otail = NULL;
    pthread_mutex_unlock(&w->mu);
    return it;
}

static void resend_unacked(wk *w, double older_than) {
    double now = drq_clock_mono();
    for (int i = 0; i < w->nua; i++) {
        unacked *u = &w->ua[i];
        if (u->sent_at && now - u->sent_at < older_than) continue;
        send_msg(w, u->type, u->body, u->bin, u->binlen);
        u->sent_at = now;
    }
}

static void send_hello(wk *w) {
    /* recount: take pending items first so that freed slots are counted once */
    process_items(w, take_items(w));
    json_t *held = json_array();
    pthread_mutex_lock(&w->mu);
    int outstanding = w->qlen + (w->running ? 1 : 0);
    for (qjob *q = w->qhead; q; q = q->next) json_array_append_new(held, json_integer(q->job.id));
    if (w->running) json_array_append_new(held, json_integer(w->running->job.id));
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < w->nua; i++)
        if (w->ua[i].type == MSG_RESULT || w->ua[i].type == MSG_FAIL)
            json_array_append_new(held, json_integer(w->ua[i].job));
    int credit = w->capacity - outstanding;
    if (atomic_load(&w->stop_compute)) credit = 0;
    w->credit_owed = 0;
    json_t *b = json_object();
    json_object_set_new(b, "name", json_string(w->name));
    json_object_set_new(b, "version", json_string(DRQ_SOFTWARE_VERSION));
    json_object_set_new(b, "devices", json_pack("[s]", w->o.device));
    json_object_set_new(b, "held", held);
    json_object_set_new(b, "credit", json_integer(credit < 0 ? 0 : credit));
    send_msg(w, MSG_HELLO, b, NULL, 0);
    json_decref(b);
}

/* The spec of a sweep: from the JOB when it carries one, else from the cache. */
static const drq_spec *spec_for(wk *w, int64_t sweep, const json_t *spec_json, drq_err *err) {
    if (spec_json) {
        char *canon = json_dumps(spec_json, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
        for (int i = 0; i < w->nspecs; i++)
            if (w->specs[i].sweep == sweep && !strcmp(w->specs[i].canon, canon)) {
                free(canon);
                return w->specs[i].spec;
            }
        drq_spec *sp = xcalloc(1, sizeof *sp);
        if (drq_spec_parse(spec_json, sp, err)) {
            free(canon);
            free(sp);
            return NULL;
        }
        /* a newer entry shadows an older one for the same id (another db);
         * old entries stay allocated: a running job may still use them */
        w->specs = xrealloc(w->specs, (size_t)(w->nspecs + 1) * sizeof *w->specs);
        memmove(&w->specs[1], &w->specs[0], (size_t)w->nspecs * sizeof *w->specs);
        w->specs[0] = (specent){sweep, canon, sp};
        w->nspecs++;
        return sp;
    }
    for (int i = 0; i < w->nspecs; i++)
        if (w->specs[i].sweep == sweep) return w->specs[i].spec;
    drq_errf(err, "worker has no spec for sweep %lld", (long long)sweep);
    return NULL;
}

static void queue_fail(wk *w, int64_t job, const char *msg, int retryable) {
    json_t *b = job_body(job);
    json_object_set_new(b, "error", json_string(msg));
    json_object_set_new(b, "retryable", json_boolean(retryable));
    pthread_mutex_lock(&w->mu);
    push_out(w, MSG_FAIL, job, b, NULL, 0);
    pthread_mutex_unlock(&w->mu);
    wake(w);
}

static void on_job(wk *w, drq_msg *m) {
    const json_t *b = m->body;
    int64_t id = drq_jint(b, "job");
    int dup = 0;
    pthread_mutex_lock(&w->mu);
    for (qjob *q = w->qhead; q; q = q->next) dup |= q->job.id == id;
    if (w->running && w->running->job.id == id) dup = 1;
    pthread_mutex_unlock(&w->mu);
    if (dup) {
        /* already held (adopted on re-registration): give the credit back */
        w->credit_owed++;
        return;
    }
    if (atomic_load(&w->stop_compute)) {
        /* arrived while stopping: hand it straight back */
        pthread_mutex_lock(&w->mu);
        push_out(w, MSG_RELEASE, id, job_body(id), NULL, 0);
        pthread_mutex_unlock(&w->mu);
        wake(w);
        return;
    }
    drq_err err;
    const drq_spec *sp = spec_for(w, drq_jint(b, "sweep"), json_object_get(b, "spec"), &err);
    if (!sp) {
        char msg[1100];
        snprintf(msg, sizeof msg, "bad sweep spec: %s", err.msg);
        queue_fail(w, id, msg, 0);
        return;
    }
    qjob *q = xcalloc(1, sizeof *q);
    q->job = (drq_job){
        .id = id,
        .sweep = drq_jint(b, "sweep"),
        .attempt = (int)drq_jint(b, "attempt"),
        .spec = sp,
        .purifier = (int)drq_jint(b, "purifier"),
        .attack = (int)drq_jint(b, "attack"),
        .seed = drq_jint(b, "seed"),
        .image_start = drq_jint(b, "start"),
        .image_count = drq_jint(b, "count"),
        .device = w->device_tag,
        .worker = w->name,
    };
    if (m->nbin == 1) {
        q->has_ckpt = 1;
        q->ckpt = m->bin[0];
        q->ckpt_len = m->binlen[0];
        q->ckpt_step = drq_jint(b, "ckpt_step");
        m->bin[0] = NULL;
        m->nbin = 0;
    }
    WLOG(w, "job %lld: images %lld..%lld seed %lld (attempt %d%s)", (long long)id, (long long)q->job.image_start,
         (long long)(q->job.image_start + q->job.image_count - 1), (long long)q->job.seed, q->job.attempt,
         q->has_ckpt ? ", with checkpoint" : "");
    pthread_mutex_lock(&w->mu);
    if (w->qtail)
        w->qtail->next = q;
    else
        w->qhead = q;
    w->qtail = q;
    w->qlen++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void on_cancel(wk *w, int64_t id) {
    pthread_mutex_lock(&w->mu);
    qjob *prev = NULL;
    for (qjob *q = w->qhead; q; prev = q, q = q->next)
        if (q->job.id == id) {
            if (prev)
                prev->next = q->next;
            else
                w->qhead = q->next;
            if (w->qtail == q) w->qtail = prev;
            w->qlen--;
            free_qjob(q);
            w->credit_owed++;
            log_line(w->name, "job %lld cancelled before it started", (long long)id);
            break;
        }
    if (w->running && w->running->job.id == id) atomic_store(&w->cancel_running, 1);
    pthread_mutex_unlock(&w->mu);
}

static void on_message(wk *w, drq_msg *m) {
    w->last_recv = drq_clock_mono();
    w->backoff = 1;
    switch (m->type) {
    case MSG_WELCOME:
        w->welcomed = 1;
        log_line(w->name, "registered with %s (%s)", w->o.server, drq_jstr(m->body, "server"));
        resend_unacked(w, 0);
        process_items(w, NULL); /* sends owed credit */
        break;
    case MSG_JOB:
        on_job(w, m);
        break;
    case MSG_ACK: {
        int64_t seq = drq_jint(m->body, "seq");
        for (int i = 0; i < w->nua; i++)
            if (w->ua[i].seq == seq) {
                json_decref(w->ua[i].body);
                free(w->ua[i].bin);
                w->ua[i] = w->ua[--w->nua];
                break;
            }
        break;
    }
    case MSG_CANCEL:
        on_cancel(w, drq_jint(m->body, "job"));
        break;
    case MSG_RESET:
        log_line(w->name, "server asks to re-register");
        send_hello(w);
        break;
    case MSG_HEARTBEAT:
        break;
    default:
        log_line(w->name, "unexpected %s from the server dropped", drq_msg_name(m->type));
    }
}

static void send_heartbeat(wk *w) {
    json_t *b = json_object();
    json_t *p = json_array();
    int64_t job = atomic_load(&w->prog_job);
    if (job > 0)
        json_array_append_new(p, json_pack("[I,I,I]", (json_int_t)job, (json_int_t)atomic_load(&w->prog_done),
                                           (json_int_t)atomic_load(&w->prog_total)));
    json_object_set_new(b, "progress", p);
    send_msg(w, MSG_HEARTBEAT, b, NULL, 0);
    json_decref(b);
}

int drq_worker_run(const drq_worker_opts *opts, atomic_int *stop) {
    wk *w = xcalloc(1, sizeof *w);
    w->o = *opts;
    if (!(w->o.heartbeat_s > 0)) w->o.heartbeat_s = DRQ_HEARTBEAT_S;
    if (!w->o.liveness) w->o.liveness = DRQ_LIVENESS;
    if (!(w->o.max_backoff_s > 0)) w->o.max_backoff_s = 32;
    if (!(w->o.stop_grace_s > 0)) w->o.stop_grace_s = 5;
    if (!w->o.device) w->o.device = "cpu";
    drq_device_sel sel;
    drq_err derr;
    if (drq_device_parse(w->o.device, &sel, &derr)) DIE("%s", derr.msg); /* validated before, by engine_set_device */
    drq_device_tag(&sel, w->device_tag, sizeof w->device_tag);
#ifdef _OPENMP
    if (w->o.threads <= 0) w->o.threads = omp_get_max_threads();
#else
    w->o.threads = 1;
#endif
    if (w->o.prefetch < 0) w->o.prefetch = 0;
    w->capacity = 1 + w->o.prefetch;
    if (w->o.name) {
        snprintf(w->name, sizeof w->name, "%s", w->o.name);
    } else {
        char host[64] = "host";
        gethostname(host, sizeof host - 1);
        snprintf(w->name, sizeof w->name, "%s-%d", host, (int)getpid());
    }
    if (w->o.zctx) {
        w->zctx = w->o.zctx;
    } else {
        w->zctx = zmq_ctx_new();
        w->own_ctx = 1;
    }
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->efd < 0) DIE("worker: eventfd: %s (out of file descriptors? see ulimit -n)", strerror(errno));
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->backoff = 1;
    open_socket(w);
    send_hello(w);
    log_line(w->name, "worker %s on %s, device %s, capacity %d, checkpoint every %d", DRQ_SOFTWARE_VERSION,
             w->o.server, w->o.device, w->capacity, w->o.checkpoint_every);
    int prc = pthread_create(&w->compute, NULL, compute_main, w);
    if (prc) DIE("worker: cannot start the compute thread: %s", strerror(prc));
    w->next_hb = drq_clock_mono() + w->o.heartbeat_s;

    int stopping = 0;
    double stop_deadline = 0;
    for (;;) {
        double now = drq_clock_mono();
        if (atomic_load(stop) && !stopping) {
            stopping = 1;
            stop_deadline = now + w->o.stop_grace_s;
            log_line(w->name, "stopping: checkpointing the running job and releasing held jobs");
            atomic_store(&w->preempt, 1);
            atomic_store(&w->stop_compute, 1);
            pthread_mutex_lock(&w->mu);
            pthread_cond_broadcast(&w->cv);
            pthread_mutex_unlock(&w->mu);
        }
        if (stopping) {
            pthread_mutex_lock(&w->mu);
            int pending = w->ohead != NULL;
            pthread_mutex_unlock(&w->mu);
            if (atomic_load(&w->compute_exited) && !pending && w->nua == 0) break;
            if (now > stop_deadline) {
                log_line(w->name, "stop: %d message(s) still unacknowledged after %.0f s; exiting anyway", w->nua,
                         w->o.stop_grace_s);
                break;
            }
        }
        double until = w->next_hb;
        if (!w->sock && w->reconnect_at < until) until = w->reconnect_at;
        int timeout = (int)((until - now) * 1000);
        if (timeout < 0) timeout = 0;
        if (stopping && timeout > 100) timeout = 100;
        zmq_pollitem_t items[2] = {{.fd = w->efd, .events = ZMQ_POLLIN}, {.socket = w->sock, .events = ZMQ_POLLIN}};
        int rc = zmq_poll(items, w->sock ? 2 : 1, timeout);
        if (rc < 0 && errno != EINTR) log_line(w->name, "poll: %s", zmq_strerror(errno));
        if (rc > 0 && (items[0].revents & ZMQ_POLLIN)) {
            uint64_t v;
            ssize_t r = read(w->efd, &v, sizeof v);
            (void)r;
        }
        process_items(w, take_items(w));
        if (w->sock) {
            for (int i = 0; i < 1000; i++) {
                drq_msg m;
                drq_err e;
                int r = drq_msg_recv(w->sock, 0, ZMQ_DONTWAIT, &m, &e);
                if (r == 1) break;
                if (r < 0) {
                    log_line(w->name, "dropped malformed message from the server: %s", e.msg);
                    continue;
                }
                on_message(w, &m);
                drq_msg_free(&m);
            }
            process_items(w, NULL); /* credit from cancels / duplicate jobs */
        }
        now = drq_clock_mono();
        if (!w->sock && now >= w->reconnect_at) {
            log_line(w->name, "reconnecting to %s", w->o.server);
            open_socket(w);
            send_hello(w);
        }
        if (now >= w->next_hb) {
            w->next_hb = now + w->o.heartbeat_s;
            if (w->sock) {
                if (now - w->last_recv > w->o.liveness * w->o.heartbeat_s) {
                    log_line(w->name, "server silent for %.1f s; reconnecting in %.0f s", now - w->last_recv,
                             w->backoff);
                    close_socket(w);
                    w->reconnect_at = now + w->backoff;
                    w->backoff = w->backoff * 2 > w->o.max_backoff_s ? w->o.max_backoff_s : w->backoff * 2;
                } else {
                    send_heartbeat(w);
                    if (w->welcomed) resend_unacked(w, RESEND_AFTER_S);
                }
            }
        }
    }

    atomic_store(&w->stop_compute, 1);
    atomic_store(&w->preempt, 1);
    pthread_mutex_lock(&w->mu);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->compute, NULL);
    for (outitem *it = take_items(w); it;) {
        outitem *n = it->next;
        json_decref(it->body);
        free(it->bin);
        free(it);
        it = n;
    }
    for (int i = 0; i < w->nua; i++) {
        json_decref(w->ua[i].body);
        free(w->ua[i].bin);
    }
    free(w->ua);
    for (int i = 0; i < w->nspecs; i++) {
        free(w->specs[i].canon);
        drq_spec_free(w->specs[i].spec);
        free(w->specs[i].spec);
    }
    free(w->specs);
    close_socket(w);
    if (w->own_ctx) zmq_ctx_term(w->zctx);
    close(w->efd);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    log_line(w->name, "stopped");
    free(w);
    return 0;
}
