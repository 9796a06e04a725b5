/* main.c — drq-server: the coordinator daemon (server/server.h).
 *
 *   drq-server --db PATH [--workers tcp://127.0.0.1:5555] [--clients tcp://127.0.0.1:5556]
 *   (defaults: DRQ_DEFAULT_WORKERS_EP, DRQ_DEFAULT_CLIENTS_EP in common/proto.h)
 *              [--max-attempts 3] [--lease-s 30] [--backoff-s 1] [--quiet]
 *              [--curve-secret server.key_secret --authorized-keys DIR
 *               | --authorized-workers DIR --authorized-clients DIR] [--insecure]
 *              [--http 127.0.0.1:8080 [--http-token TOKEN]]
 * (CURVE: docs/security.md; the dashboard: docs/dashboard.md)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/proto.h"
#include "common/util.h"
#include "server/server.h"

static int usage(FILE *f) {
    fprintf(f, "usage: drq-server --db PATH [--workers " DRQ_DEFAULT_WORKERS_EP "] [--clients " DRQ_DEFAULT_CLIENTS_EP "]\n"
               "                  [--max-attempts N] [--lease-s S] [--backoff-s S] [--quiet]\n"
               "                  [--curve-secret FILE.key_secret --authorized-keys DIR\n"
               "                   | --authorized-workers DIR --authorized-clients DIR] [--insecure]\n"
               "                  [--http HOST:PORT [--http-token TOKEN]]   (or $DRQ_HTTP_TOKEN)\n");
    return f == stdout ? 0 : 1;
}

/* A positive number option; <= 0 when malformed. */
static double pos_arg(const char *s) {
    char *end;
    double v = strtod(s, &end);
    return *s && !*end ? v : -1;
}

int main(int argc, char **argv) {
    drq_server_opts o = {0};
    o.workers_ep[0] = DRQ_DEFAULT_WORKERS_EP;
    o.clients_ep = DRQ_DEFAULT_CLIENTS_EP;
    o.handle_signals = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout);
        if (!strcmp(a, "--quiet")) {
            o.quiet = 1;
            continue;
        }
        if (!strcmp(a, "--insecure")) {
            o.insecure = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "drq-server: %s needs a value\n", a);
            return usage(stderr);
        }
        i++;
        if (!strcmp(a, "--db")) {
            o.db_path = v;
        } else if (!strcmp(a, "--workers")) {
            o.workers_ep[0] = v;
        } else if (!strcmp(a, "--clients")) {
            o.clients_ep = v;
        } else if (!strcmp(a, "--curve-secret")) {
            o.curve_secret = v;
        } else if (!strcmp(a, "--authorized-keys")) {
            if (!o.auth_workers_dir) o.auth_workers_dir = v;
            if (!o.auth_clients_dir) o.auth_clients_dir = v;
        } else if (!strcmp(a, "--authorized-workers")) {
            o.auth_workers_dir = v;
        } else if (!strcmp(a, "--authorized-clients")) {
            o.auth_clients_dir = v;
        } else if (!strcmp(a, "--http")) {
            o.http_addr = v;
        } else if (!strcmp(a, "--http-token")) {
            o.http_token = v;
        } else if (!strcmp(a, "--max-attempts")) {
            double x = pos_arg(v);
            if (x < 1 || x > 1000 || x != (int)x) {
                fprintf(stderr, "drq-server: --max-attempts: expected an integer in [1,1000]\n");
                return 1;
            }
            o.max_attempts = (int)x;
        } else if (!strcmp(a, "--lease-s")) {
            if ((o.lease_s = pos_arg(v)) <= 0) {
                fprintf(stderr, "drq-server: --lease-s: expected a positive number\n");
                return 1;
            }
        } else if (!strcmp(a, "--backoff-s")) {
            if ((o.backoff_s = pos_arg(v)) <= 0) {
                fprintf(stderr, "drq-server: --backoff-s: expected a positive number\n");
                return 1;
            }
        } else {
            fprintf(stderr, "drq-server: unknown option %s\n", a);
            return usage(stderr);
        }
    }
    if (!o.db_path) {
        fprintf(stderr, "drq-server: --db is required\n");
        return usage(stderr);
    }
    if (!o.http_token) {
        const char *t = getenv("DRQ_HTTP_TOKEN");
        if (t && *t) o.http_token = t;
    }
    drq_err err;
    drq_server *s = drq_server_new(&o, &err);
    if (!s) {
        fprintf(stderr, "drq-server: %s\n", err.msg);
        return 1;
    }
    int rc = drq_server_run(s);
    drq_server_free(s);
    log_line("server", "stopped");
    return rc;
}
