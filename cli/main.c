/* main.c — the `drq` command: a table of subcommands, each in its own file. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_keygen(int argc, char **argv); /* cli/cmd_keygen.c */

void cli_fmt_duration(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e8)
        snprintf(buf, n, "-");
    else if (s < 120)
        snprintf(buf, n, "%.0fs", s);
    else if (s < 7200)
        snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else
        snprintf(buf, n, "%dh%02dm", (int)(s / 3600), ((int)s % 3600) / 60);
}

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"model", cmd_model, "model run — run a UNet/WRN checkpoint (forward, optional VJP)"},
    {"purify", cmd_purify, "purify SPEC.json --purifier NAME --seed S --in IN --out OUT — P_ω(x) and its VJP"},
    {"submit", cmd_submit, "submit SPEC.json — validate a sweep spec and queue it on drq-server"},
    {"status", cmd_status, "status [SWEEP] [--watch] [--json] — progress, rate, ETA, failures"},
    {"results", cmd_results, "results SWEEP|FILE.db [--format csv|jsonl] [--out FILE] [--kind variance|gradcorr|screen] — export rows"},
    {"report", cmd_report, "report SWEEP|FILE.db [--json] — the summary table per purifier × attack"},
    {"cancel", cmd_cancel, "cancel SWEEP — cancel its queued and running jobs"},
    {"retry", cmd_retry, "retry SWEEP — requeue its failed jobs"},
    {"workers", cmd_workers, "workers [--json] — connected workers and their jobs"},
    {"keygen", cmd_keygen, "keygen NAME [--dir DIR] — a CurveZMQ key pair (NAME.key, NAME.key_secret)"},
    {"devices", cmd_devices, "devices — the CPU and the GPUs this build can use"},
    {"run", cmd_run, "run SPEC.json [--db FILE] [--threads N] — whole sweep on this machine, resumable"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: drq <command> [args]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "drq: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 1;
}
