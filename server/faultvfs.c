/* faultvfs.c — see faultvfs.h. */
#include "faultvfs.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { OP_WRITE = 1, OP_SYNC = 2 };

static struct {
    pthread_mutex_t mu;
    int registered;
    int on;
    int ioerr;      /* 0: SQLITE_FULL */
    int ops;        /* OP_WRITE | OP_SYNC */
    long after, count;
    char while_path[512];
} cfg = {.mu = PTHREAD_MUTEX_INITIALIZER};
static atomic_long n_ops, n_injected;

static sqlite3_vfs *real_vfs;
static sqlite3_vfs fault_vfs;

typedef struct {
    sqlite3_file base;
    sqlite3_file *real; /* right after this struct */
} ffile;

/* 0: go ahead; else the error code to return for this call. */
static int fault_for(int op) {
    if (!cfg.on || !(cfg.ops & op)) return 0;
    int fail;
    if (cfg.while_path[0]) {
        fail = access(cfg.while_path, F_OK) == 0;
    } else {
        long n = atomic_fetch_add(&n_ops, 1) + 1;
        fail = n > cfg.after && (cfg.count < 0 || n <= cfg.after + cfg.count);
    }
    if (!fail) return 0;
    if (atomic_fetch_add(&n_injected, 1) == 0)
        fprintf(stderr, "faultvfs: injecting %s on %s (DRQ_FAULT_VFS)\n", cfg.ioerr ? "an I/O error" : "disk full",
                op == OP_WRITE ? "write" : "sync");
    if (!cfg.ioerr) return SQLITE_FULL;
    return op == OP_WRITE ? SQLITE_IOERR_WRITE : SQLITE_IOERR_FSYNC;
}

#define REAL(f) (((ffile *)(f))->real)

static int f_close(sqlite3_file *f) { return REAL(f)->pMethods->xClose(REAL(f)); }
static int f_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off) {
    return REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
}
static int f_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off) {
    int rc = fault_for(OP_WRITE);
    return rc ? rc : REAL(f)->pMethods->xWrite(REAL(f), buf, n, off);
}
static int f_truncate(sqlite3_file *f, sqlite3_int64 size) { return REAL(f)->pMethods->xTruncate(REAL(f), size); }
static int f_sync(sqlite3_file *f, int flags) {
    int rc = fault_for(OP_SYNC);
    return rc ? rc : REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int f_size(sqlite3_file *f, sqlite3_int64 *size) { return REAL(f)->pMethods->xFileSize(REAL(f), size); }
static int f_lock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xLock(REAL(f), l); }
static int f_unlock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xUnlock(REAL(f), l); }
static int f_reserved(sqlite3_file *f, int *out) { return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out); }
static int f_fctl(sqlite3_file *f, int op, void *arg) { return REAL(f)->pMethods->xFileControl(REAL(f), op, arg); }
static int f_sector(sqlite3_file *f) { return REAL(f)->pMethods->xSectorSize(REAL(f)); }
static int f_devchar(sqlite3_file *f) { return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f)); }
static int f_shmmap(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp) {
    return REAL(f)->pMethods->xShmMap(REAL(f), pg, pgsz, extend, pp);
}
static int f_shmlock(sqlite3_file *f, int off, int n, int flags) {
    return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}
static void f_shmbarrier(sqlite3_file *f) { REAL(f)->pMethods->xShmBarrier(REAL(f)); }
static int f_shmunmap(sqlite3_file *f, int del) { return REAL(f)->pMethods->xShmUnmap(REAL(f), del); }
static int f_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp) {
    if (REAL(f)->pMethods->iVersion < 3) {
        *pp = NULL;
        return SQLITE_OK;
    }
    return REAL(f)->pMethods->xFetch(REAL(f), off, n, pp);
}
static int f_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p) {
    if (REAL(f)->pMethods->iVersion < 3) return SQLITE_OK;
    return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static const sqlite3_io_methods fault_io = {
    .iVersion = 3,
    .xClose = f_close,
    .xRead = f_read,
    .xWrite = f_write,
    .xTruncate = f_truncate,
    .xSync = f_sync,
    .xFileSize = f_size,
    .xLock = f_lock,
    .xUnlock = f_unlock,
    .xCheckReservedLock = f_reserved,
    .xFileControl = f_fctl,
    .xSectorSize = f_sector,
    .xDeviceCharacteristics = f_devchar,
    .xShmMap = f_shmmap,
    .xShmLock = f_shmlock,
    .xShmBarrier = f_shmbarrier,
    .xShmUnmap = f_shmunmap,
    .xFetch = f_fetch,
    .xUnfetch = f_unfetch,
};

static int f_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out) {
    ffile *p = (ffile *)f;
    p->real = (sqlite3_file *)(p + 1);
    int rc = real_vfs->xOpen(real_vfs, name, p->real, flags, out);
    p->base.pMethods = p->real->pMethods ? &fault_io : NULL;
    return rc;
}

static int parse(const char *spec) {
    int on = spec && *spec, ioerr = 0, ops = OP_WRITE;
    long after = 0, count = 1;
    char path[512] = "";
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", on ? spec : "");
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) return -1;
        *eq = 0;
        const char *k = tok, *v = eq + 1;
        char *end;
        if (!strcmp(k, "err") && (!strcmp(v, "full") || !strcmp(v, "ioerr"))) {
            ioerr = !strcmp(v, "ioerr");
        } else if (!strcmp(k, "op") && !strcmp(v, "write")) {
            ops = OP_WRITE;
        } else if (!strcmp(k, "op") && !strcmp(v, "sync")) {
            ops = OP_SYNC;
        } else if (!strcmp(k, "op") && !strcmp(v, "any")) {
            ops = OP_WRITE | OP_SYNC;
        } else if (!strcmp(k, "after") || !strcmp(k, "count")) {
            long n = strtol(v, &end, 10);
            if (!*v || *end || n < -1) return -1;
            if (!strcmp(k, "after"))
                after = n;
            else
                count = n;
        } else if (!strcmp(k, "while") && *v && strlen(v) < sizeof path) {
            snprintf(path, sizeof path, "%s", v);
        } else {
            return -1;
        }
    }
    cfg.on = on;
    cfg.ioerr = ioerr;
    cfg.ops = ops;
    cfg.after = after;
    cfg.count = count;
    snprintf(cfg.while_path, sizeof cfg.while_path, "%s", path);
    atomic_store(&n_ops, 0);
    return 0;
}

int drq_faultvfs_config(const char *spec) {
    pthread_mutex_lock(&cfg.mu);
    int rc = parse(spec);
    if (rc == 0 && !cfg.registered && cfg.on) {
        real_vfs = sqlite3_vfs_find(NULL);
        if (real_vfs) {
            fault_vfs = *real_vfs;
            fault_vfs.zName = "drq-fault";
            fault_vfs.szOsFile = (int)sizeof(ffile) + real_vfs->szOsFile;
            fault_vfs.xOpen = f_open;
            fault_vfs.pNext = NULL;
            rc = sqlite3_vfs_register(&fault_vfs, 1) == SQLITE_OK ? 0 : -1;
            cfg.registered = rc == 0;
        } else {
            rc = -1;
        }
    }
    pthread_mutex_unlock(&cfg.mu);
    return rc;
}

long drq_faultvfs_injected(void) { return atomic_load(&n_injected); }
