/* outbox.c — the outbox: every message the coordinator sends is queued while
 * a transaction is open and sent only after it commits (group commit), so no
 * peer ever hears of a state change that is not durable; a failed transaction
 * drops its queued messages instead.  Also the client reply helpers.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "internal.h"

/* Printable hex of a routing id, for logs about unknown peers. */
const char *srv_hexid(const unsigned char *rid, size_t n) {
    static char buf[2 * 32 + 4];
    size_t k = n < 32 ? n : 32, i;
    for (i = 0; i < k; i++) snprintf(buf + 2 * i, 3, "%02x", rid[i]);
    if (n > k) strcpy(buf + 2 * k, "..");
    if (n == 0) strcpy(buf, "-");
    return buf;
}
/* ---- outgoing messages ---------------------------------------------------- */

/* Queues a message to send after the current transaction commits.  Takes
 * ownership of body and bin. */
void srv_queue_out(drq_server *s, int to_client, const unsigned char *rid, size_t rid_len, drq_msg_type t,
                      json_t *body, void *bin, size_t binlen) {
    if (s->nout == s->capout) {
        s->capout = s->capout ? s->capout * 2 : 256;
        s->out = xrealloc(s->out, (size_t)s->capout * sizeof *s->out);
    }
    outmsg *m = &s->out[s->nout++];
    memcpy(m->rid, rid, rid_len);
    m->rid_len = rid_len;
    m->to_client = to_client;
    m->type = t;
    m->body = body;
    m->bin = bin;
    m->binlen = binlen;
}

void srv_flush_out(drq_server *s) {
    for (int i = 0; i < s->nout; i++) {
        outmsg *m = &s->out[i];
        if (drq_msg_send(m->to_client ? s->csock : s->wsock, m->rid, m->rid_len, m->type, m->body, m->bin,
                         m->binlen))
            log_line("server", "send %s to %s failed: %s", drq_msg_name(m->type), srv_hexid(m->rid, m->rid_len),
                     zmq_strerror(errno));
        json_decref(m->body);
        free(m->bin);
    }
    s->nout = 0;
}

void srv_drop_out(drq_server *s) {
    for (int i = 0; i < s->nout; i++) {
        json_decref(s->out[i].body);
        free(s->out[i].bin);
    }
    s->nout = 0;
}

/* An ERROR to the client request id of peer rid. */
void srv_reply_error(drq_server *s, const unsigned char *rid, size_t rid_len, int64_t id, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    json_t *b = json_object();
    json_object_set_new(b, "id", json_integer(id));
    json_object_set_new(b, "error", json_string(buf));
    srv_queue_out(s, 1, rid, rid_len, MSG_ERROR, b, NULL, 0);
}

void srv_refuse(drq_server *s, const unsigned char *rid, size_t rid_len, int64_t id, const char *what,
                const char *why, const char *nothing) {
    srv_reply_error(s, rid, rid_len, id, "%s refused: the coordinator cannot write its database (%s); %s", what, why,
                    nothing);
}

/* Replies to a client request with body r (which gets the request's id) and an
 * optional binary payload. */
void srv_reply_ok(drq_server *s, const drq_msg *m, int64_t id, json_t *r, void *payload, size_t len) {
    json_object_set_new(r, "id", json_integer(id));
    srv_queue_out(s, 1, m->rid, m->rid_len, MSG_REPLY, r, payload, len);
}
