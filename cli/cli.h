/* cli.h — subcommands of `drq`.  Each gets argv starting at its own name and
 * returns the process exit code: 0 ok, 1 usage/spec/input error, 2 server
 * unreachable. */
#ifndef DRQ_CLI_H
#define DRQ_CLI_H

int cmd_model(int argc, char **argv); /* cli/cmd_model.c */

#endif
