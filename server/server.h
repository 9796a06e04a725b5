/* server.h — the drq coordinator: one libuv loop, two ZeroMQ ROUTER sockets
 * (workers, clients) watched through their ZMQ_FD, the SQLite store, the
 * scheduler (leases, heartbeats, back-off, dependencies).  docs/queue.md
 * describes the protocol and the job state machine.
 *
 * drq-server (server/main.c) runs it alone; `drq run` runs it on a thread of
 * its own beside local workers that connect over inproc://.
 */
#ifndef DRQ_SERVER_H
#define DRQ_SERVER_H

#include "common/util.h"

typedef struct {
    const char *db_path;
    const char *workers_ep[4]; /* endpoints to bind for workers (NULL-terminated) */
    const char *clients_ep;    /* NULL: no client socket */
    int max_attempts;          /* default 3 */
    double lease_s;            /* lease length, extended by heartbeats; default 30 */
    double backoff_s;          /* first requeue back-off, doubling; default 1 */
    double heartbeat_s;        /* default 1 */
    int liveness;              /* heartbeats missed before a worker is lost; default 3 */
    void *zctx;                /* ZeroMQ context to use (inproc peers), NULL: own */
    int recover_leases;        /* requeue every leased job at start (embedded: no worker survives) */
    int quiet;                 /* no per-job log lines */
    int handle_signals;        /* SIGINT/SIGTERM stop the loop */
    int stop_on_storage_fault; /* stop (run returns 2) instead of waiting in degraded mode (drq run) */
    /* CurveZMQ (server/curve.c, docs/security.md): both ROUTER sockets encrypt and a
     * ZAP handler admits only the public keys found in the directories (re-read on
     * SIGHUP).  Without it, binding a non-loopback TCP address needs insecure. */
    const char *curve_secret;     /* server's NAME.key_secret, NULL: no CURVE */
    const char *auth_workers_dir; /* public keys (*.key) admitted on the workers socket */
    const char *auth_clients_dir; /* … and on the clients socket */
    int insecure;                 /* allow non-loopback binds without CURVE (logged) */
    /* HTTP dashboard (server/http.c, docs/dashboard.md) */
    const char *http_addr;  /* HOST:PORT, NULL: none */
    const char *http_token; /* required (Bearer / ?token=) when set; mandatory off loopback */
} drq_server_opts;

typedef struct drq_server drq_server;

/* Defaults for every field left 0. */
void drq_server_opts_defaults(drq_server_opts *o);

/* Opens the database, binds the sockets; NULL + err. */
drq_server *drq_server_new(const drq_server_opts *o, drq_err *err);
/* Runs the loop until drq_server_stop or a signal; 0 on a clean stop,
 * 1 after a fatal database error, 2 after a storage fault (disk full, I/O
 * error) with stop_on_storage_fault set.  Without it a storage fault does not
 * stop the loop: the coordinator refuses new work until the database can be
 * written again, then carries on (docs/robustness.md). */
int drq_server_run(drq_server *s);
/* The message of the last storage fault ("" none). */
const char *drq_server_fault(drq_server *s);
/* Asks the loop to stop (any thread). */
void drq_server_stop(drq_server *s);
void drq_server_free(drq_server *s);

#endif
