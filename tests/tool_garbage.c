/* tool_garbage.c — sends malformed traffic to a drq-server socket, for
 * tests/test_queue_server.sh:
 *
 *   tool_garbage tcp://127.0.0.1:PORT workers|clients
 *
 * Over ZeroMQ (DEALER): random bytes, random multi-frame messages, too many
 * frames, empty frames, unknown types, a wrong protocol version, truncated
 * JSON, JSON that is not an object, missing / mistyped / unknown fields, an
 * oversized JSON frame, a RESULT with garbage rows (after a valid HELLO on the
 * workers socket), and a frame above ZMQ_MAXMSGSIZE (the server must drop the
 * connection, not allocate it).  Then raw TCP bytes that are not ZMTP at all.
 * Prints how many messages it sent; exit 0 unless it could not connect.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#include "common/proto.h"

static int sent;

/* Sends n frames (data, len pairs). */
static void send_frames(void *s, int n, const void *const *f, const size_t *l) {
    for (int i = 0; i < n; i++) zmq_send(s, f[i], l[i], i + 1 < n ? ZMQ_SNDMORE : 0);
    sent++;
}

static void send2(void *s, const char *type, const char *json) {
    const void *f[2] = {type, json};
    size_t l[2] = {strlen(type), strlen(json)};
    send_frames(s, 2, f, l);
}

static void fill_random(unsigned char *p, size_t n, unsigned *seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)rand_r(seed);
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[2], "workers") && strcmp(argv[2], "clients"))) {
        fprintf(stderr, "usage: tool_garbage tcp://HOST:PORT workers|clients\n");
        return 1;
    }
    int workers = !strcmp(argv[2], "workers");
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 2000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(s, argv[1])) {
        fprintf(stderr, "tool_garbage: connect %s: %s\n", argv[1], zmq_strerror(zmq_errno()));
        return 1;
    }
    unsigned seed = 12345;
    unsigned char buf[4096];
    /* random single and multi-frame messages */
    for (int k = 0; k < 20; k++) {
        int nf = 1 + k % 6;
        const void *f[6];
        size_t l[6];
        unsigned char *p = buf;
        for (int i = 0; i < nf; i++) {
            size_t n = (size_t)(rand_r(&seed) % 200);
            fill_random(p, n, &seed);
            f[i] = p;
            l[i] = n;
            p += n;
        }
        send_frames(s, nf, f, l);
    }
    /* too many frames, empty frames */
    {
        const void *f[10];
        size_t l[10];
        for (int i = 0; i < 10; i++) f[i] = "READY", l[i] = 5;
        send_frames(s, 10, f, l);
        const void *e[2] = {"", ""};
        size_t el[2] = {0, 0};
        send_frames(s, 2, e, el);
    }
    /* structurally wrong messages */
    send2(s, "BOGUS", "{\"v\":1}");
    send2(s, "HELLO", "{\"v\":99,\"name\":\"x\",\"version\":\"0\",\"devices\":[],\"held\":[],\"credit\":1}");
    send2(s, "HELLO", "{\"name\":\"x\"}");
    send2(s, "RESULT", "{\"v\":1,\"seq\":");
    send2(s, "READY", "[1,2,3]");
    send2(s, "READY", "{\"v\":1,\"credit\":-5}");
    send2(s, "READY", "{\"v\":1,\"credit\":1,\"extra\":true}");
    send2(s, "STATUS", "{\"v\":1,\"id\":\"one\"}");
    send2(s, "FETCH", "{\"v\":1,\"id\":1,\"sweep\":1,\"limit\":10,\"after\":[1,2]}");
    send2(s, "SUBMIT", "{\"v\":1,\"id\":1,\"spec\":{\"name\":\"bad name!\"}}");
    send2(s, "SUBMIT", "{\"v\":1,\"id\":2,\"spec\":{\"name\":\"g\",\"dataset\":{\"kind\":\"none\",\"count\":0}}}");
    send2(s, "JOB", "{\"v\":1,\"job\":1}");
    send2(s, "HEARTBEAT", "{\"v\":1,\"progress\":[[1,2]]}");
    send2(s, "RESULT", "{\"v\":1,\"seq\":1,\"job\":1,\"final\":true,\"n\":1}"); /* missing its row frame */
    send2(s, "STATUS", "\xff\xfe\x00garbage");
    /* an oversized JSON frame (over DRQ_MAX_JSON_BYTES, under the transport limit) */
    {
        size_t n = (size_t)DRQ_MAX_JSON_BYTES + 1024;
        char *big = malloc(n + 1);
        memset(big, ' ', n);
        big[0] = '{';
        big[n - 1] = '}';
        big[n] = 0;
        const void *f[2] = {"STATUS", big};
        size_t l[2] = {6, n};
        send_frames(s, 2, f, l);
        free(big);
    }
    if (workers) {
        /* register, then send results whose rows are garbage */
        send2(s, "HELLO", "{\"v\":1,\"name\":\"garbage-tool\",\"version\":\"0\",\"devices\":[\"cpu\"],\"held\":[],\"credit\":0}");
        for (int k = 0; k < 5; k++) {
            size_t n = 50 + (size_t)k * 300;
            fill_random(buf, n, &seed);
            char json[160];
            snprintf(json, sizeof json, "{\"v\":1,\"seq\":%d,\"job\":%d,\"final\":true,\"n\":%d}", 100 + k, 1 + k, 1 + k);
            const void *f[3] = {"RESULT", json, buf};
            size_t l[3] = {6, strlen(json), n};
            send_frames(s, 3, f, l);
        }
        send2(s, "CHECKPOINT", "{\"v\":1,\"seq\":7,\"job\":999999,\"step\":1}"); /* no blob */
        send2(s, "FAIL", "{\"v\":1,\"seq\":8,\"job\":999999,\"error\":\"\",\"retryable\":true}");
    }
    /* a frame above ZMQ_MAXMSGSIZE: the server drops this connection */
    {
        size_t n = (size_t)DRQ_MAX_MSG_BYTES + (1 << 20);
        char *huge = calloc(1, n);
        const void *f[2] = {"HELLO", huge};
        size_t l[2] = {5, n};
        send_frames(s, 2, f, l);
        free(huge);
    }
    zmq_close(s); /* linger: lets the queued messages go out */
    zmq_ctx_term(ctx);

    /* raw TCP bytes that are not ZMTP */
    const char *hp = strstr(argv[1], "://");
    char host[64];
    int port = 0;
    if (hp && sscanf(hp + 3, "%63[^:]:%d", host, &port) == 2) {
        for (int k = 0; k < 3; k++) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
            inet_pton(AF_INET, host, &a.sin_addr);
            if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
                fill_random(buf, sizeof buf, &seed);
                if (k == 1) memcpy(buf, "\xff\0\0\0\0\0\0\0\x01\x7f", 10); /* a ZMTP-looking greeting, then junk */
                ssize_t w = write(fd, buf, sizeof buf);
                (void)w;
                sent++;
            }
            close(fd);
        }
    }
    printf("tool_garbage: sent %d malformed messages to %s (%s)\n", sent, argv[1], argv[2]);
    return 0;
}
