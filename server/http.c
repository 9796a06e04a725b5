/* http.c — the HTTP dashboard (docs/dashboard.md): not yet built. */
#include "internal.h"

int srv_http_start(drq_server *s, drq_err *err) { return drq_errf(err, "--http: not available in this build"); }
void srv_http_publish(drq_server *s) {}
void srv_http_free(drq_server *s) {}
