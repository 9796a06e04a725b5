/* cmd_keygen.c — `drq keygen NAME [--dir DIR]`: a CurveZMQ key pair for
 * drq-server, a worker or a client (docs/security.md).  Writes DIR/NAME.key
 * (the public key, to hand to the other side) and DIR/NAME.key_secret (public
 * and secret key, mode 0600) in the zcert text format that czmq and pyzmq read.
 * Existing files are never overwritten.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "cli.h"
#include "common/proto.h"

/* Writes text to path, created exclusively with mode; -1 after a message. */
static int write_new(const char *path, const char *text, mode_t mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        fprintf(stderr, "drq keygen: %s: %s%s\n", path, strerror(errno),
                errno == EEXIST ? " (remove it first: keys are never overwritten)" : "");
        return -1;
    }
    size_t n = strlen(text);
    int ok = write(fd, text, n) == (ssize_t)n && fchmod(fd, mode) == 0 && fsync(fd) == 0;
    if (close(fd)) ok = 0;
    if (!ok) {
        fprintf(stderr, "drq keygen: writing %s failed: %s\n", path, strerror(errno));
        unlink(path);
        return -1;
    }
    return 0;
}

int cmd_keygen(int argc, char **argv) {
    const char *name = NULL, *dir = ".";
    int bad = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (argv[i][0] != '-' && !name)
            name = argv[i];
        else
            bad = 1;
    }
    if (!name || bad || !*name || strchr(name, '/')) {
        fprintf(stderr, "usage: drq keygen NAME [--dir DIR]   (writes DIR/NAME.key and DIR/NAME.key_secret)\n");
        return 1;
    }
    if (!zmq_has("curve")) {
        fprintf(stderr, "drq keygen: this libzmq is built without CURVE (libsodium)\n");
        return 1;
    }
    char pub[DRQ_Z85_LEN], sec[DRQ_Z85_LEN];
    if (zmq_curve_keypair(pub, sec)) {
        fprintf(stderr, "drq keygen: zmq_curve_keypair: %s\n", zmq_strerror(errno));
        return 1;
    }
    char when[64];
    time_t t = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime(&t));
    char pubtext[1024], sectext[1024], ppath[4096], spath[4096];
    snprintf(pubtext, sizeof pubtext,
             "#   ****  Generated on %s by drq keygen  ****\n"
             "#   ZeroMQ CURVE Public Certificate\n"
             "#   Exchange securely, or use a secure mechanism to verify the contents\n"
             "#   of this file after exchange. Store public certificates in your home\n"
             "#   directory, in the .curve subdirectory.\n"
             "\n"
             "metadata\n"
             "    name = \"%s\"\n"
             "curve\n"
             "    public-key = \"%s\"\n",
             when, name, pub);
    snprintf(sectext, sizeof sectext,
             "#   ****  Generated on %s by drq keygen  ****\n"
             "#   ZeroMQ CURVE **Secret** Certificate\n"
             "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n"
             "\n"
             "metadata\n"
             "    name = \"%s\"\n"
             "curve\n"
             "    public-key = \"%s\"\n"
             "    secret-key = \"%s\"\n",
             when, name, pub, sec);
    snprintf(ppath, sizeof ppath, "%s/%s.key", dir, name);
    snprintf(spath, sizeof spath, "%s/%s.key_secret", dir, name);
    if (write_new(spath, sectext, 0600)) return 1;
    if (write_new(ppath, pubtext, 0644)) {
        unlink(spath);
        return 1;
    }
    printf("%s\n", pub);
    fprintf(stderr, "drq keygen: wrote %s (public) and %s (secret, mode 0600)\n", ppath, spath);
    return 0;
}
