/* fuzz_common.h — helpers shared by the libFuzzer harnesses of tests/fuzz/.
 *
 * Readers that take a path (safetensors, dataset, model config files) get the
 * fuzz input through a private temporary directory, on /dev/shm when it is
 * writable (tmpfs: no disk I/O per execution), else $TMPDIR or /tmp.  The
 * directory and what is in it are removed at exit.
 */
#ifndef DRQ_FUZZ_COMMON_H
#define DRQ_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FZ_UNUSED __attribute__((unused))

static char fz_dir_[256];

static void fz_cleanup_(void) {
    if (!fz_dir_[0]) return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz_dir_);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", fz_dir_);
}

/* The temporary directory of this process (created on first use). */
FZ_UNUSED static const char *fz_dir(void) {
    if (fz_dir_[0]) return fz_dir_;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(fz_dir_, sizeof fz_dir_, "%s/drq-fuzz-XXXXXX", base);
    if (!mkdtemp(fz_dir_)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(fz_cleanup_);
    return fz_dir_;
}

/* "<fz_dir>/<rel>" in one of a few rotating buffers. */
FZ_UNUSED static const char *fz_path(const char *rel) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", fz_dir(), rel);
    return buf[k];
}

/* Writes n bytes to path (replacing it); aborts on an I/O error (not a finding). */
FZ_UNUSED static void fz_write(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

/* A malloc'd NUL-terminated copy of the input. */
FZ_UNUSED static char *fz_str(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    memcpy(s, data, size);
    s[size] = 0;
    return s;
}

#endif
