/* cmd_client.c — the client commands of `drq`: submit, status, results,
 * cancel, retry, workers.  They talk to drq-server's client socket (--server,
 * else $DRQ_SERVER, else tcp://127.0.0.1:5556) with a receive timeout
 * ($DRQ_TIMEOUT_MS, default 5000): no answer in time exits 2.
 * With --server-key and --curve-secret (or $DRQ_SERVER_KEY / $DRQ_CURVE_SECRET)
 * the socket uses CURVE (docs/security.md); a refused key or a handshake the
 * server drops (wrong server key) exits 2 with a message saying which.
 * `drq results FILE.db` reads a database file directly instead.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "cli.h"
#include "cli/dryrun.h"
#include "common/analysis_rows.h"
#include "cli/images_export.h"
#include "common/images.h"
#include "common/proto.h"
#include "common/report.h"
#include "common/row.h"
#include "common/spec.h"
#include "server/store.h"
#include "report_out.h"

typedef struct {
    void *ctx, *sock;
    void *mon; /* CURVE: the socket monitor (handshake outcomes) */
    const char *ep;
    int timeout_ms;
    int64_t next_id;
    int handshakes_ok, drops; /* CURVE: handshakes that succeeded, connections dropped before one did */
} client;

/* Common options: --server EP, --server-key KEY, --curve-secret FILE (removed
 * from argv; the CURVE ones configure common/proto.c).  Returns the new argc;
 * exits 1 on unusable keys. */
static int take_server_opt(int argc, char **argv, const char **ep) {
    *ep = getenv("DRQ_SERVER");
    if (!*ep || !**ep) *ep = DRQ_DEFAULT_CLIENTS_EP;
    const char *skey = NULL, *secret = NULL;
    int out = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--server") && i + 1 < argc) {
            *ep = argv[++i];
            continue;
        }
        if (!strcmp(argv[i], "--server-key") && i + 1 < argc) {
            skey = argv[++i];
            continue;
        }
        if (!strcmp(argv[i], "--curve-secret") && i + 1 < argc) {
            secret = argv[++i];
            continue;
        }
        argv[out++] = argv[i];
    }
    drq_err e;
    if (drq_curve_client_config(skey, secret, &e)) {
        fprintf(stderr, "drq: %s\n", e.msg);
        exit(1);
    }
    return out;
}

static void client_open(client *c, const char *ep) {
    c->ep = ep;
    const char *t = getenv("DRQ_TIMEOUT_MS");
    c->timeout_ms = t && atoi(t) > 0 ? atoi(t) : 5000;
    c->ctx = zmq_ctx_new();
    c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger);
    c->next_id = (int64_t)getpid() * 1000;
    drq_err e;
    if (drq_curve_client_apply(c->sock, &e)) {
        fprintf(stderr, "drq: %s\n", e.msg);
        exit(2);
    }
    c->mon = NULL;
    c->handshakes_ok = c->drops = 0;
    if (drq_curve_client_on()) {
        char mep[64];
        snprintf(mep, sizeof mep, "inproc://drq-client-monitor-%d", (int)getpid());
        if (zmq_socket_monitor(c->sock, mep,
                               ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                                   ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                                   ZMQ_EVENT_DISCONNECTED) == 0) {
            c->mon = zmq_socket(c->ctx, ZMQ_PAIR);
            zmq_setsockopt(c->mon, ZMQ_LINGER, &linger, sizeof linger);
            if (zmq_connect(c->mon, mep)) {
                zmq_close(c->mon);
                c->mon = NULL;
            }
        }
    }
    if (zmq_connect(c->sock, ep)) {
        fprintf(stderr, "drq: cannot connect to %s: %s\n", ep, zmq_strerror(errno));
        exit(2);
    }
}

/* Reads the CURVE monitor's events: 0, or 2 after printing why the
 * connection cannot work (the server refused this key; the server dropped
 * every handshake, which is what a wrong --server-key looks like). */
static int client_curve_events(client *c) {
    while (c->mon) {
        zmq_msg_t a, b;
        zmq_msg_init(&a);
        zmq_msg_init(&b);
        if (zmq_msg_recv(&a, c->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&a);
            zmq_msg_close(&b);
            break;
        }
        if (zmq_msg_more(&a)) zmq_msg_recv(&b, c->mon, ZMQ_DONTWAIT);
        uint16_t ev = 0;
        uint32_t val = 0;
        if (zmq_msg_size(&a) >= 6) {
            memcpy(&ev, zmq_msg_data(&a), 2);
            memcpy(&val, (char *)zmq_msg_data(&a) + 2, 4);
        }
        zmq_msg_close(&a);
        zmq_msg_close(&b);
        if (ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            c->handshakes_ok++;
        } else if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
            fprintf(stderr,
                    "drq: %s refused this client's key %s (ZAP status %u): its public key is not among the server's "
                    "authorized client keys (ask the operator to add it, see docs/security.md)\n",
                    c->ep, drq_curve_client_public(), val);
            return 2;
        } else if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || ev == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL ||
                   (ev == ZMQ_EVENT_DISCONNECTED && c->handshakes_ok == 0)) {
            if (++c->drops >= 3) {
                fprintf(stderr,
                        "drq: the CURVE handshake with %s failed %d times (the server closed the connection before "
                        "it completed): --server-key / DRQ_SERVER_KEY is probably not that server's public key, or "
                        "the server does not use CURVE\n",
                        c->ep, c->drops);
                return 2;
            }
        }
    }
    return 0;
}

static void client_close(client *c) {
    if (c->mon) {
        zmq_socket_monitor(c->sock, NULL, 0);
        zmq_close(c->mon);
    }
    zmq_close(c->sock);
    zmq_ctx_term(c->ctx);
}

/* One request/response, sent up to `attempts` times with the same request id
 * (a retry after a timeout; the server may answer any of them).  Returns 0
 * with *reply (REPLY), 1 when the server answered ERROR (message printed), 2
 * when it did not answer in time. */
static int client_call_n(client *c, drq_msg_type t, json_t *body, drq_msg *reply, int attempts) {
    int64_t id = ++c->next_id;
    json_object_set_new(body, "id", json_integer(id));
    for (int attempt = 1; attempt <= attempts; attempt++) {
        if (attempt > 1)
            fprintf(stderr, "drq: no answer from %s in %d ms; sending again (attempt %d of %d)\n", c->ep,
                    c->timeout_ms, attempt, attempts);
        if (drq_msg_send(c->sock, NULL, 0, t, body, NULL, 0)) {
            /* DONTWAIT on a fresh DEALER: retry once blocking-free after connect settles */
            zmq_pollitem_t it = {.socket = c->sock, .events = ZMQ_POLLOUT};
            zmq_poll(&it, 1, c->timeout_ms);
            if (drq_msg_send(c->sock, NULL, 0, t, body, NULL, 0)) {
                if (attempt < attempts) continue;
                fprintf(stderr, "drq: server %s unreachable (cannot send)\n", c->ep);
                json_decref(body);
                return 2;
            }
        }
        double deadline = drq_clock_mono() + c->timeout_ms / 1000.0;
        for (;;) {
            int left = (int)((deadline - drq_clock_mono()) * 1000);
            if (left <= 0) break;
            zmq_pollitem_t its[2] = {{.socket = c->sock, .events = ZMQ_POLLIN}, {.socket = c->mon, .events = ZMQ_POLLIN}};
            if (zmq_poll(its, c->mon ? 2 : 1, left) <= 0) continue;
            if (c->mon && (its[1].revents & ZMQ_POLLIN) && client_curve_events(c)) {
                json_decref(body);
                return 2;
            }
            if (!(its[0].revents & ZMQ_POLLIN)) continue;
            drq_err e;
            int rc = drq_msg_recv(c->sock, 0, ZMQ_DONTWAIT, reply, &e);
            if (rc == 1) continue;
            if (rc < 0) {
                fprintf(stderr, "drq: malformed reply from %s: %s\n", c->ep, e.msg);
                json_decref(body);
                return 1;
            }
            if (drq_jint(reply->body, "id") != id) { /* a stale answer */
                drq_msg_free(reply);
                continue;
            }
            json_decref(body);
            if (reply->type == MSG_ERROR) {
                fprintf(stderr, "drq: %s\n", drq_jstr(reply->body, "error"));
                drq_msg_free(reply);
                return 1;
            }
            if (reply->type != MSG_REPLY) {
                drq_msg_free(reply);
                return 1;
            }
            return 0;
        }
    }
    json_decref(body);
    if (c->mon && client_curve_events(c)) return 2;
    if (c->mon && c->handshakes_ok == 0)
        fprintf(stderr,
                "drq: server %s unreachable (no CURVE handshake completed in %d ms: is the server running, with "
                "CURVE, and is --server-key its public key?)\n",
                c->ep, c->timeout_ms);
    else
        fprintf(stderr, "drq: server %s unreachable (no answer in %d ms)\n", c->ep, c->timeout_ms);
    return 2;
}

static int client_call(client *c, drq_msg_type t, json_t *body, drq_msg *reply) {
    return client_call_n(c, t, body, reply, 1);
}

/* Parses a sweep id argument; -1 when it is not one. */
static int64_t sweep_arg(const char *s) {
    char *end;
    long long v = strtoll(s, &end, 10);
    return *s && !*end && v > 0 ? v : -1;
}

/* ---- submit ------------------------------------------------------------------ */

/* A random 128-bit submission id as 32 hex digits. */
static int new_submission_id(char out[33]) {
    unsigned char b[16];
    FILE *f = fopen("/dev/urandom", "rb");
    int ok = f && fread(b, 1, sizeof b, f) == sizeof b;
    if (f) fclose(f);
    if (!ok) return -1;
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
    return 0;
}

int cmd_submit(int argc, char **argv) {
    const char *ep;
    argc = take_server_opt(argc, argv, &ep);
    const char *path = NULL, *sub_arg = NULL;
    int again = 0, dry_run = 0, batch = 8, threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--again"))
            again = 1;
        else if (!strcmp(argv[i], "--dry-run")) /* cli/cmd_dryrun.c: nothing is sent */
            dry_run = 1;
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc && atoi(argv[i + 1]) >= 1)
            batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc && atoi(argv[i + 1]) >= 1)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--submission-id") && i + 1 < argc)
            sub_arg = argv[++i];
        else if (argv[i][0] != '-' && !path)
            path = argv[i];
        else
            path = NULL, argc = 0;
    }
    if (!path) {
        fprintf(stderr, "usage: drq submit SPEC.json [--again] [--submission-id ID] [--server tcp://HOST:5556]\n"
                        "       drq submit --dry-run SPEC.json [--batch B] [--threads N]   (per worker of B, N)\n");
        return 1;
    }
    char sub[72];
    if (sub_arg) {
        snprintf(sub, sizeof sub, "%s", sub_arg);
    } else if (new_submission_id(sub)) {
        fprintf(stderr, "drq: cannot read /dev/urandom for a submission id\n");
        return 1;
    }
    drq_spec sp;
    drq_err err;
    if (drq_spec_load(path, &sp, &err)) {
        fprintf(stderr, "drq: %s\n", err.msg);
        return 1;
    }
    if (dry_run) { /* the server is never contacted */
        dryrun_opts o = {.batch = batch, .threads = threads, .workers = 0, .device = "cpu"};
        int drc = dryrun_print(&sp, &o, stdout);
        drq_spec_free(&sp);
        return drc;
    }
    json_t *body = json_object();
    json_object_set_new(body, "spec", drq_spec_to_json(&sp));
    json_object_set_new(body, "submission", json_string(sub));
    if (again) json_object_set_new(body, "again", json_true());
    drq_spec_free(&sp);
    client c;
    client_open(&c, ep);
    drq_msg r;
    /* a retry carries the same submission id: the server never creates a second sweep for it */
    int rc = client_call_n(&c, MSG_SUBMIT, body, &r, 3);
    if (rc == 0) {
        long long sweep = (long long)drq_jint(r.body, "sweep");
        const char *dup = drq_jstr(r.body, "duplicate");
        printf("%lld\n", sweep);
        if (dup && !strcmp(dup, "spec"))
            fprintf(stderr, "drq: %s\n", drq_jstr(r.body, "note"));
        else
            fprintf(stderr, "drq: sweep %lld submitted: %lld jobs, %lld result rows\n", sweep,
                    (long long)drq_jint(r.body, "jobs"), (long long)drq_jint(r.body, "rows"));
        drq_msg_free(&r);
    } else if (rc == 2) {
        fprintf(stderr,
                "drq: the server may still have created the sweep; `drq submit %s` again finds it (or, with "
                "--again, add --submission-id %s so that it is not created twice)\n",
                path, sub);
    }
    client_close(&c);
    return rc;
}

/* ---- status ------------------------------------------------------------------- */

static int64_t ji(const json_t *o, const char *k) { return json_integer_value(json_object_get(o, k)); }
static double jr(const json_t *o, const char *k) { return json_number_value(json_object_get(o, k)); }

/* "1.5 jobs/s", under one a second "12.0 jobs/min", "0 jobs/s" when none. */
static void fmt_rate(char *buf, size_t n, double r) {
    if (!(r > 0))
        snprintf(buf, n, "0 jobs/s");
    else if (r >= 1)
        snprintf(buf, n, "%.1f jobs/s", r);
    else
        snprintf(buf, n, "%.1f jobs/min", r * 60);
}

/* The status block; with rates 0 the rate and ETA line is left out (the key
 * `--watch` compares into a pipe, where a new ETA alone is no news). */
static void print_status_x(FILE *f, const json_t *st, int rates) {
    size_t i;
    json_t *o;
    json_t *sweeps = json_object_get(st, "sweeps");
    if (json_array_size(sweeps) == 0) fprintf(f, "no sweeps\n");
    json_array_foreach(sweeps, i, o) {
        int64_t jobs = ji(o, "jobs"), done = ji(o, "done"), failed = ji(o, "failed"), cancelled = ji(o, "cancelled");
        int64_t finished = done + failed + cancelled;
        double frac = jobs ? (double)finished / (double)jobs : 1;
        char bar[41];
        int fill = (int)(frac * 40);
        for (int k = 0; k < 40; k++) bar[k] = k < fill ? '#' : '-';
        bar[40] = 0;
        const char *state = json_string_value(json_object_get(o, "state"));
        const char *shown = !strcmp(state, "cancelled") ? "cancelled"
                            : json_is_true(json_object_get(o, "finished"))
                                ? (failed ? "finished with failures" : "finished")
                            : !strcmp(state, "expanding") ? "expanding"
                                                          : "running";
        char eta[32];
        cli_fmt_duration(eta, sizeof eta, json_is_number(json_object_get(o, "eta_s")) ? jr(o, "eta_s") : -1);
        fprintf(f, "sweep %lld \"%s\"  %s\n", (long long)ji(o, "id"), json_string_value(json_object_get(o, "name")),
                shown);
        fprintf(f, "  [%s] %5.1f%%  %lld/%lld jobs\n", bar, 100 * frac, (long long)finished, (long long)jobs);
        fprintf(f, "  queued %lld  running %lld  done %lld  failed %lld  cancelled %lld\n", (long long)ji(o, "queued"),
                (long long)ji(o, "running"), (long long)done, (long long)failed, (long long)cancelled);
        char rt[32];
        fmt_rate(rt, sizeof rt, jr(o, "jobs_per_s"));
        if (rates)
            fprintf(f, "  rows %lld/%lld  rate %s (%.1f rows/s)  ETA %s\n", (long long)ji(o, "rows_done"),
                    (long long)ji(o, "rows"), rt, jr(o, "rows_per_s"), eta);
        else
            fprintf(f, "  rows %lld/%lld\n", (long long)ji(o, "rows_done"), (long long)ji(o, "rows"));
        json_t *fails = json_object_get(o, "failures");
        if (json_array_size(fails)) {
            fprintf(f, "  recent failures:\n");
            size_t k;
            json_t *e;
            json_array_foreach(fails, k, e) {
                const char *w = json_string_value(json_object_get(e, "worker"));
                fprintf(f, "    job %lld%s%s%s %s: %s\n", (long long)ji(e, "job"), w ? " (" : "", w ? w : "",
                        w ? ")" : "", json_string_value(json_object_get(e, "kind")),
                        json_string_value(json_object_get(e, "error")));
            }
        }
    }
    fprintf(f, "workers: %lld\n", (long long)ji(st, "workers"));
    const char *fault = json_string_value(json_object_get(st, "storage_fault"));
    if (fault)
        fprintf(f, "coordinator: STORAGE FAULT, cannot write its database (%s); no new work until it can\n", fault);
}

static void print_status(FILE *f, const json_t *st) { print_status_x(f, st, 1); }

int cmd_status(int argc, char **argv) {
    const char *ep;
    argc = take_server_opt(argc, argv, &ep);
    int watch = 0, as_json = 0;
    int64_t sweep = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--watch"))
            watch = 1;
        else if (!strcmp(argv[i], "--json"))
            as_json = 1;
        else if (!sweep && sweep_arg(argv[i]) > 0)
            sweep = sweep_arg(argv[i]);
        else {
            fprintf(stderr, "usage: drq status [SWEEP] [--watch] [--json] [--server tcp://HOST:5556]\n");
            return 1;
        }
    }
    client c;
    client_open(&c, ep);
    /* --watch: on a terminal the screen is cleared and the block redrawn each
     * second (like watch(1)); into a file or a pipe a block is printed only
     * when something other than the rate and ETA changed */
    int tty = isatty(1), rc, blocks = 0;
    char *last_key = NULL;
    for (;;) {
        json_t *b = json_object();
        if (sweep) json_object_set_new(b, "sweep", json_integer(sweep));
        drq_msg r;
        rc = client_call(&c, MSG_STATUS, b, &r);
        if (rc) break;
        json_object_del(r.body, "id");
        json_object_del(r.body, "v");
        char *text = NULL, *key = NULL;
        size_t tlen = 0, klen = 0;
        FILE *tf = open_memstream(&text, &tlen);
        if (as_json) {
            char *s = json_dumps(r.body, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
            fprintf(tf, "%s\n", s);
            free(s);
        } else {
            print_status(tf, r.body);
        }
        fclose(tf);
        FILE *kf = open_memstream(&key, &klen);
        print_status_x(kf, r.body, 0);
        fclose(kf);
        int changed = !last_key || strcmp(key, last_key);
        if (!watch || tty) {
            if (watch) fputs("\033[H\033[J", stdout); /* cursor home, clear the screen */
            fputs(text, stdout);
        } else if (changed) {
            if (blocks++) fputs("\n", stdout);
            fputs(text, stdout);
        }
        fflush(stdout);
        free(text);
        free(last_key);
        last_key = key;
        int all_finished = 1;
        size_t i;
        json_t *o;
        json_array_foreach(json_object_get(r.body, "sweeps"), i, o) {
            if (!json_is_true(json_object_get(o, "finished")) && strcmp(json_string_value(json_object_get(o, "state")), "cancelled"))
                all_finished = 0;
        }
        drq_msg_free(&r);
        if (!watch || all_finished) break;
        sleep(1);
    }
    free(last_key);
    client_close(&c);
    return rc;
}

/* ---- results ----------------------------------------------------------------- */

typedef struct {
    FILE *f;
    int jsonl;
    drq_report *rep; /* drq report: aggregate instead of writing rows */
    drq_report_out *out; /* drq report --out DIR (cli/report_out.h) */
    drq_analysis_table kind; /* drq results --kind: the rows of that analysis table instead */
    cli_images_sink *img; /* drq results SWEEP --images DIR: rows with their images, nothing else */
    int64_t n;
} sink;

static void sink_rows(sink *k, const drq_row *rows, int64_t n);
static void sink_page(void *k, const drq_row *rows, int64_t n) { sink_rows(k, rows, n); }

/* The analysis-table rows of results rows (drq results --kind), in the
 * results' key order; k->n counts table rows. */
static void sink_analysis(sink *k, const drq_row *rows, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (drq_analysis_of(&rows[i]) != k->kind) continue;
        json_t *t = drq_analysis_rows(&rows[i], k->kind);
        size_t j;
        json_t *v;
        json_array_foreach(t, j, v) {
            if (k->jsonl) drq_analysis_jsonl(k->f, k->kind, v);
            else drq_analysis_csv(k->f, v);
            k->n++;
        }
        json_decref(t);
    }
}

static void sink_rows(sink *k, const drq_row *rows, int64_t n) {
    if (k->kind) {
        sink_analysis(k, rows, n);
        return;
    }
    for (int64_t i = 0; i < n && !k->img; i++) {
        if (k->out) drq_report_out_add(k->out, &rows[i]);
        if (k->rep)
            drq_report_add(k->rep, &rows[i]);
        else if (k->jsonl)
            drq_row_jsonl(k->f, &rows[i]);
        else
            drq_row_csv(k->f, &rows[i]);
    }
    k->n += n;
}

/* Exports every row of one sweep (0 = all sweeps) from a database file. */
static int results_local(const char *path, int64_t sweep, sink *k) {
    drq_err err;
    store *st = store_open(path, 1, &err);
    if (!st) {
        fprintf(stderr, "drq: %s\n", err.msg);
        return 1;
    }
    json_t *status = store_status(st, sweep, 0);
    size_t i;
    json_t *o;
    if (sweep && json_array_size(json_object_get(status, "sweeps")) == 0) {
        fprintf(stderr, "drq: %s: no sweep %lld\n", path, (long long)sweep);
        json_decref(status);
        store_close(st);
        return 1;
    }
    json_array_foreach(json_object_get(status, "sweeps"), i, o) {
        store_results_foreach(st, ji(o, "id"), sink_page, k);
    }
    json_decref(status);
    store_close(st);
    return 0;
}

static int results_remote(const char *ep, int64_t sweep, sink *k) {
    client c;
    client_open(&c, ep);
    json_t *after = NULL;
    int rc = 0;
    for (;;) {
        json_t *b = json_object();
        json_object_set_new(b, "sweep", json_integer(sweep));
        json_object_set_new(b, "limit", json_integer(k->img ? DRQ_SAVE_FETCH_ROWS : 50000));
        if (k->img) json_object_set_new(b, "images", json_true());
        if (after) json_object_set_new(b, "after", after);
        after = NULL;
        drq_msg r;
        if ((rc = client_call(&c, MSG_FETCH, b, &r))) break;
        drq_row *rows = NULL;
        int64_t n = 0;
        drq_err e;
        json_t *il = json_object_get(r.body, "images"); /* bytes of images after the rows (common/images.h) */
        if (r.nbin != 1 || (il && (!json_is_integer(il) || json_integer_value(il) < 0)) ||
            drq_images_unpack_rows(r.bin[0], r.binlen[0], il ? (size_t)json_integer_value(il) : 0,
                                   drq_jint(r.body, "n"), &rows, &n, &e)) {
            fprintf(stderr, "drq: malformed rows from the server: %s\n", r.nbin == 1 ? e.msg : "no row frame");
            drq_msg_free(&r);
            rc = 1;
            break;
        }
        sink_rows(k, rows, n);
        if (k->img && cli_images_sink_add(k->img, rows, n)) rc = 1;
        drq_rows_free(rows, n);
        if (rc) {
            drq_msg_free(&r);
            break;
        }
        json_t *next = json_object_get(r.body, "next");
        if (next) after = json_incref(next);
        drq_msg_free(&r);
        if (!after) break;
    }
    client_close(&c);
    return rc;
}

int cmd_results(int argc, char **argv) {
    const char *ep;
    argc = take_server_opt(argc, argv, &ep);
    const char *what = NULL, *format = "csv", *out = NULL, *kind = NULL, *images = NULL;
    int64_t sweep_opt = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--format") && i + 1 < argc)
            format = argv[++i];
        else if (!strcmp(argv[i], "--kind") && i + 1 < argc)
            kind = argv[++i];
        else if (!strcmp(argv[i], "--images") && i + 1 < argc)
            images = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(argv[i], "--sweep") && i + 1 < argc)
            sweep_opt = sweep_arg(argv[++i]);
        else if (!what && argv[i][0] != '-')
            what = argv[i];
        else
            what = NULL, i = argc;
    }
    if (!what || (strcmp(format, "csv") && strcmp(format, "jsonl")) || sweep_opt < 0 ||
        (kind && !drq_analysis_table_parse(kind))) {
        fprintf(stderr, "usage: drq results SWEEP|FILE.db [--format csv|jsonl] [--out FILE] [--sweep N (with a .db)]\n"
                        "                   [--kind variance|gradcorr|screen] [--server tcp://HOST:5556]\n"
                        "       drq results SWEEP|FILE.db --images DIR [--sweep N (with a .db)]\n");
        return 1;
    }
    struct stat sb;
    int local = stat(what, &sb) == 0 && S_ISREG(sb.st_mode);
    int64_t sweep = local ? sweep_opt : sweep_arg(what);
    if (!local && sweep < 0) {
        fprintf(stderr, "drq: results: '%s' is neither a sweep id nor a database file\n", what);
        return 1;
    }
    if (images) { /* the saved images instead of the rows (cli/images_export.h) */
        if (local) return cli_images_export(what, sweep, images);
        sink k = {.img = cli_images_sink_new(images)};
        if (!k.img) return 1;
        return cli_images_sink_end(k.img, what, results_remote(ep, sweep, &k));
    }
    char tmp[4096];
    sink k = {.f = stdout, .jsonl = !strcmp(format, "jsonl"), .kind = drq_analysis_table_parse(kind)};
    if (out) {
        snprintf(tmp, sizeof tmp, "%s.tmp", out);
        if (!(k.f = fopen(tmp, "w"))) {
            fprintf(stderr, "drq: %s: %s\n", tmp, strerror(errno));
            return 1;
        }
    }
    if (!k.jsonl && k.kind) drq_analysis_csv_header(k.f, k.kind);
    else if (!k.jsonl) drq_row_csv_header(k.f);
    int rc = local ? results_local(what, sweep, &k) : results_remote(ep, sweep, &k);
    if (out) {
        if (fclose(k.f) || rc) {
            unlink(tmp);
            if (!rc) {
                fprintf(stderr, "drq: writing %s failed\n", out);
                rc = 1;
            }
        } else if (rename(tmp, out)) {
            fprintf(stderr, "drq: rename to %s: %s\n", out, strerror(errno));
            rc = 1;
        } else {
            fprintf(stderr, "drq: %lld rows written to %s\n", (long long)k.n, out);
        }
    } else {
        fflush(stdout);
    }
    return rc;
}

/* `drq report SWEEP|FILE.db [--sweep N] [--json]`: the summary table of
 * `drq run` (common/report.h) for any sweep, from drq-server or a file. */
int cmd_report(int argc, char **argv) {
    const char *ep;
    argc = take_server_opt(argc, argv, &ep);
    const char *what = NULL, *out_dir = NULL;
    int64_t sweep_opt = 0;
    int as_json = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            as_json = 1;
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out_dir = argv[++i];
        else if (!strcmp(argv[i], "--sweep") && i + 1 < argc)
            sweep_opt = sweep_arg(argv[++i]);
        else if (!what && argv[i][0] != '-')
            what = argv[i];
        else
            bad = 1;
    }
    if (!what || bad || sweep_opt < 0) {
        fprintf(stderr, "usage: drq report SWEEP|FILE.db [--sweep N (with a .db)] [--json] [--out DIR] [--server tcp://HOST:5556]\n");
        return 1;
    }
    struct stat sb;
    int local = stat(what, &sb) == 0 && S_ISREG(sb.st_mode);
    int64_t sweep = local ? sweep_opt : sweep_arg(what);
    if (!local && sweep < 0) {
        fprintf(stderr, "drq: report: '%s' is neither a sweep id nor a database file\n", what);
        return 1;
    }
    sink k = {.f = stdout, .rep = drq_report_new(), .out = out_dir ? drq_report_out_new() : NULL};
    int rc = local ? results_local(what, sweep, &k) : results_remote(ep, sweep, &k);
    if (!rc && out_dir) rc = drq_report_out_write(k.out, local ? what : NULL, what, out_dir);
    drq_report_out_free(k.out);
    if (!rc && as_json) {
        json_t *j = drq_report_json(k.rep);
        json_dumpf(j, stdout, JSON_INDENT(1));
        fputc('\n', stdout);
        json_decref(j);
    } else if (!rc) {
        drq_report_print(k.rep, stdout);
    }
    drq_report_free(k.rep);
    return rc;
}

/* ---- cancel, retry, workers ---------------------------------------------------- */

static int sweep_command(int argc, char **argv, drq_msg_type t, const char *name, const char *field,
                         const char *verb) {
    const char *ep;
    argc = take_server_opt(argc, argv, &ep);
    int64_t sweep = argc == 2 ? sweep_arg(argv[1]) : -1;
    if (sweep < 0) {
        fprintf(stderr, "usage: drq %s SWEEP [--server tcp://HOST:5556]\n", name);
        return 1;
    }
    client c;
    client_open(&c, ep);
    json_t *b = json_object();
    json_object_set_new(b, "sweep", json_integer(sweep));
    drq_msg r;
    int rc = client_call(&c, t, b, &r);
    if (rc == 0) {
        printf("sweep %lld: %lld jobs %s\n", (long long)sweep, (long long)drq_jint(r.body, field), verb);
        drq_msg_free(&r);
    }
    client_close(&c);
    return rc;
}

int cmd_cancel(int argc, char **argv) { return sweep_command(argc, argv, MSG_CANCEL_SWEEP, "cancel", "cancelled", "cancelled"); }
int cmd_retry(int argc, char **argv) { return sweep_command(argc, argv, MSG_RETRY, "retry", "requeued", "requeued"); }

int cmd_workers(int argc, char **argv) {
    const char *ep;
    argc = take_server_opt(argc, argv, &ep);
    int as_json = argc == 2 && !strcmp(argv[1], "--json");
    if (argc > 2 || (argc == 2 && !as_json)) {
        fprintf(stderr, "usage: drq workers [--json] [--server tcp://HOST:5556]\n");
        return 1;
    }
    client c;
    client_open(&c, ep);
    drq_msg r;
    int rc = client_call(&c, MSG_WORKERS, json_object(), &r);
    if (rc == 0) {
        json_t *ws = json_object_get(r.body, "workers");
        if (as_json) {
            char *s = json_dumps(ws, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
            printf("%s\n", s);
            free(s);
        } else {
            printf("%-28s %-12s %8s %6s  %s\n", "worker", "devices", "done", "seen", "jobs (images done/total)");
            size_t i;
            json_t *w;
            json_array_foreach(ws, i, w) {
                char *dev = json_dumps(json_object_get(w, "devices"), JSON_COMPACT);
                char jobs[512] = "";
                size_t k;
                json_t *j;
                json_array_foreach(json_object_get(w, "jobs"), k, j) {
                    size_t l = strlen(jobs);
                    snprintf(jobs + l, sizeof jobs - l, "%s%lld (%lld/%lld)", k ? ", " : "", (long long)ji(j, "job"),
                             (long long)ji(j, "done"), (long long)ji(j, "total"));
                }
                printf("%-28s %-12s %8lld %5.1fs  %s\n", json_string_value(json_object_get(w, "name")), dev,
                       (long long)ji(w, "jobs_done"), jr(w, "last_seen_s"), jobs[0] ? jobs : "-");
                free(dev);
            }
            if (json_array_size(ws) == 0) printf("(no workers)\n");
        }
        drq_msg_free(&r);
    }
    client_close(&c);
    return rc;
}
