/* main.c — drq-worker: runs jobs for a drq-server (worker/worker.h).
 *
 *   drq-worker --server tcp://HOST:5555 [--device cpu|cuda:N | --devices all|I,J,…]
 *              [--name NAME] [--checkpoint-every N] [--prefetch N] [--quiet]
 *              [--server-key KEY|FILE --curve-secret NAME.key_secret]   (CURVE, docs/security.md;
 *               or $DRQ_SERVER_KEY / $DRQ_CURVE_SECRET)
 *
 * --devices all (or a list of GPU indices) starts one worker process per
 * GPU (this process only supervises them: each child runs with --device
 * cuda:I and, when --name was given, the name NAME-cudaI); signals are
 * forwarded and the exit status is the worst of the children's.
 *
 * SIGTERM / SIGINT (Slurm preemption): checkpoint the running job, release
 * every held job, exit 0 within a few seconds.
 */
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>

#include "common/proto.h"
#include "common/util.h"
#include "kernels/device.h"
#include "worker/eval/engine.h"
#include "worker/worker.h"

static atomic_int g_stop;
static pid_t g_children[64];
static int g_nchildren;

static void on_signal(int sig) {
    atomic_store(&g_stop, 1);
    for (int i = 0; i < g_nchildren; i++) kill(g_children[i], sig);
}

/* The GPUs of --devices: "all" (every visible one) or "I,J,…" (at most 64,
 * distinct); the count, or -1 after a message. */
static int parse_devices(const char *v, int *gpus) {
    int n = 0;
    if (!strcmp(v, "all")) {
        drq_err err;
        if (drq_device_cuda_load(&err)) {
            fprintf(stderr, "drq-worker: --devices all: %s\n", err.msg);
            return -1;
        }
        n = drq_device_gpu_count();
        if (n < 1) {
            fprintf(stderr, "drq-worker: --devices all: no GPU visible to this process (check nvidia-smi and "
                            "CUDA_VISIBLE_DEVICES)\n");
            return -1;
        }
        if (n > 64) n = 64;
        for (int i = 0; i < n; i++) gpus[i] = i;
        return n;
    }
    for (const char *p = v; *p;) {
        char *end;
        long g = strtol(p, &end, 10);
        if (end == p || g < 0 || g > 1023 || (*end && *end != ',') || n == 64) {
            fprintf(stderr, "drq-worker: --devices: expected all or a list of GPU indices like 0,1,3, got '%s'\n", v);
            return -1;
        }
        for (int i = 0; i < n; i++)
            if (gpus[i] == g) {
                fprintf(stderr, "drq-worker: --devices: GPU %ld listed twice\n", g);
                return -1;
            }
        gpus[n++] = (int)g;
        p = *end ? end + 1 : end;
    }
    return n;
}

/* One child worker per listed GPU with the same options plus --device
 * cuda:I; returns the worst exit status of the children. */
static int run_per_gpu(int argc, char **argv, const char *name, const int *gpus, int ngpu) {
    for (int g = 0; g < ngpu; g++) {
        char dev[32], nm[256];
        char **args = xcalloc((size_t)argc + 5, sizeof *args);
        int k = 0;
        args[k++] = argv[0];
        for (int i = 1; i < argc; i++) {
            if (!strcmp(argv[i], "--devices") || !strcmp(argv[i], "--device") || !strcmp(argv[i], "--name")) {
                i++; /* replaced below */
                continue;
            }
            args[k++] = argv[i];
        }
        snprintf(dev, sizeof dev, "cuda:%d", gpus[g]);
        args[k++] = "--device", args[k++] = dev;
        if (name) {
            snprintf(nm, sizeof nm, "%s-cuda%d", name, gpus[g]);
            args[k++] = "--name", args[k++] = nm;
        }
        pid_t pid = fork();
        if (pid < 0) DIE("fork: %s", strerror(errno));
        if (pid == 0) {
            execv("/proc/self/exe", args);
            fprintf(stderr, "drq-worker: exec: %s\n", strerror(errno));
            _exit(127);
        }
        g_children[g_nchildren++] = pid;
        free(args);
    }
    int worst = 0;
    for (int i = 0; i < g_nchildren; i++) {
        int st = 0;
        while (waitpid(g_children[i], &st, 0) < 0 && errno == EINTR) {}
        int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
        if (rc > worst) worst = rc;
    }
    return worst;
}

static int usage(FILE *f) {
    fprintf(f, "usage: drq-worker --server tcp://HOST:5555 [--device cpu|cuda:N | --devices all|I,J,...] [--name NAME]\n"
               "                  [--checkpoint-every N] [--prefetch N] [--batch N] [--threads N] [--quiet]\n"
               "                  [--mem-budget MIB (guided-unet: checkpoint inside the UNet above MIB)]\n"
               "                  [--server-key KEY|FILE --curve-secret NAME.key_secret]\n");
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
    int gpus[64], ngpus = 0;
    const char *server_key = NULL, *curve_secret = NULL;
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
        } else if (!strcmp(a, "--server-key")) {
            server_key = v;
        } else if (!strcmp(a, "--curve-secret")) {
            curve_secret = v;
        } else if (!strcmp(a, "--device")) {
            o.device = v; /* checked by engine_set_device below */
        } else if (!strcmp(a, "--devices")) {
            if ((ngpus = parse_devices(v, gpus)) < 0) return 1;
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
        } else if (!strcmp(a, "--mem-budget")) {
            drq_err err;
            if (engine_set_mem_budget(v, &err)) {
                fprintf(stderr, "drq-worker: %s\n", err.msg);
                return 1;
            }
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
    if (!o.server) {
        fprintf(stderr, "drq-worker: --server is required\n");
        return usage(stderr);
    }
    drq_err cerr;
    if (drq_curve_client_config(server_key, curve_secret, &cerr)) {
        fprintf(stderr, "drq-worker: %s\n", cerr.msg);
        return 1;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (ngpus > 0) return run_per_gpu(argc, argv, o.name, gpus, ngpus);
    drq_err err;
    if (engine_set_device(o.device, &err)) {
        fprintf(stderr, "drq-worker: %s\n", err.msg);
        return 1;
    }
    attack_engine_register();
    return drq_worker_run(&o, &g_stop);
}
