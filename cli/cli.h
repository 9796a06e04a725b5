/* cli.h — subcommands of `drq`.  Each gets argv starting at its own name and
 * returns the process exit code: 0 ok, 1 usage/spec/input error, 2 server
 * unreachable. */
#ifndef DRQ_CLI_H
#define DRQ_CLI_H

#include <stddef.h>

int cmd_model(int argc, char **argv);  /* cli/cmd_model.c */
int cmd_purify(int argc, char **argv); /* cli/cmd_purify.c */

/* cli/cmd_client.c: talk to drq-server (--server, $DRQ_SERVER) */
int cmd_submit(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_results(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_cancel(int argc, char **argv);
int cmd_retry(int argc, char **argv);
int cmd_workers(int argc, char **argv);
int cmd_devices(int argc, char **argv); /* cli/cmd_devices.c */
/* cli/cmd_run.c: coordinator + local workers in one process */
int cmd_run(int argc, char **argv);

/* A duration for people: "42s", "3m07s", "2h05m"; "-" when s is negative,
 * not a number or beyond 10^8 s (an ETA that means "unknown").  cli/main.c */
void cli_fmt_duration(char *buf, size_t n, double s);

#endif
