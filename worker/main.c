/* main.c — drq-worker: runs jobs for a drq-server (worker/worker.h).
 *
 *   drq-worker --server tcp://HOST:5555 [--device cpu|cuda:N] [--name NAME]
 *              [--checkpoint-every N] [--prefetch N] [--quiet]
 *
 * SIGTERM / SIGINT (Slurm preemption): checkpoint the running job, release
 * every held job, exit 0 within a few seconds.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "worker/engine.h"
#include "worker/worker.h"

static atomic_int g_stop;

static void on_signal(int sig) { atomic_store(&g_stop, 1); }

static int usage(FILE *f) {
    fprintf(f, "usage: drq-worker --server tcp://HOST:5555 [--device cpu|cuda:N] [--name NAME]\n"
               "                  [--checkpoint-every N] [--prefetch N] [--batch N] [--threads N] [--quiet]\n");
    return f == stdout ? 0 : 1;
}

/* Parses a non-negative integer option value; -1 when it is not one. */
static long num_arg(const char *s) {
    char *end;
    long v = strtol(s, &end, 10);
    return *s && !*end && v >= 0 ? v : -1;
}

int main(int argc, char **argv) {
    drq_worker_opts o = {.device = "cpu", .prefetch = 1, .checkpoint_every = 10};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout);
        if (!strcmp(a, "--quiet")) {
            o.quiet = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "drq-worker: %s needs a value\n", a);
            return usage(stderr);
        }
        i++;
        if (!strcmp(a, "--server")) {
            o.server = v;
        } else if (!strcmp(a, "--device")) {
            if (strcmp(v, "cpu") && strncmp(v, "cuda:", 5)) {
                fprintf(stderr, "drq-worker: --device: expected cpu or cuda:N, got '%s'\n", v);
                return 1;
            }
            o.device = v;
        } else if (!strcmp(a, "--name")) {
            o.name = v;
        } else if (!strcmp(a, "--checkpoint-every")) {
            if ((o.checkpoint_every = (int)num_arg(v)) < 0) {
                fprintf(stderr, "drq-worker: --checkpoint-every: expected an integer >= 0\n");
                return 1;
            }
        } else if (!strcmp(a, "--batch")) {
            long b = num_arg(v);
            if (b < 1 || b > 4096) {
                fprintf(stderr, "drq-worker: --batch: expected an integer in [1,4096]\n");
                return 1;
            }
            engine_set_batch((int)b);
        } else if (!strcmp(a, "--threads")) {
            long t = num_arg(v);
            if (t < 0 || t > 1024) {
                fprintf(stderr, "drq-worker: --threads: expected an integer in [0,1024] (0: all cores)\n");
                return 1;
            }
            drq_set_threads((int)t);
        } else if (!strcmp(a, "--prefetch")) {
            if ((o.prefetch = (int)num_arg(v)) < 0 || o.prefetch > 64) {
                fprintf(stderr, "drq-worker: --prefetch: expected an integer in [0,64]\n");
                return 1;
            }
        } else {
            fprintf(stderr, "drq-worker: unknown option %s\n", a);
            return usage(stderr);
        }
    }
    if (strcmp(o.device, "cpu")) {
        fprintf(stderr, "drq-worker: --device %s: this build has no CUDA backend yet (issue 5); use --device cpu\n",
                o.device);
        return 1;
    }
    attack_engine_register();
    if (!o.server) {
        fprintf(stderr, "drq-worker: --server is required\n");
        return usage(stderr);
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    return drq_worker_run(&o, &g_stop);
}
