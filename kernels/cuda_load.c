/* cuda_load.c — finds and dlopens the CUDA plugin (kernels/cuda_plugin.h). */
#include "cuda_plugin.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* messages may be cut at their buffer's end; a path that does not fit is
 * checked (candidate) */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#ifdef DRQ_HAVE_CUDA
#include <dlfcn.h>
#include <unistd.h>
#endif

static pthread_once_t once = PTHREAD_ONCE_INIT;
static const drq_cuda_plugin *loaded;
static char why[1024];
static char path[4096];

#ifdef DRQ_HAVE_CUDA
/* dir/rel/FILE into out; 0 when it exists. */
static int candidate(char *out, size_t n, const char *dir, const char *rel) {
    int k = snprintf(out, n, "%s%s/" DRQ_CUDA_PLUGIN_FILE, dir, rel);
    return k < 0 || (size_t)k >= n ? -1 : access(out, F_OK);
}

static void load(void) {
    const char *env = getenv("DRQ_CUDA_PLUGIN");
    if (env && *env) {
        snprintf(path, sizeof path, "%s", env);
    } else {
        char exe[4096];
        ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (k <= 0) {
            snprintf(why, sizeof why, "CUDA plugin " DRQ_CUDA_PLUGIN_FILE ": cannot read /proc/self/exe to find it "
                                      "(set DRQ_CUDA_PLUGIN=/path/to/" DRQ_CUDA_PLUGIN_FILE ")");
            return;
        }
        exe[k] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        if (candidate(path, sizeof path, exe, "") && candidate(path, sizeof path, exe, "/..") &&
            candidate(path, sizeof path, exe, "/../lib")) {
            snprintf(why, sizeof why,
                     "CUDA plugin " DRQ_CUDA_PLUGIN_FILE " not found next to the executable (%s/, ../, ../lib/); "
                     "copy it there with the binaries or set DRQ_CUDA_PLUGIN=/path/to/" DRQ_CUDA_PLUGIN_FILE,
                     exe);
            snprintf(path, sizeof path, "%s/" DRQ_CUDA_PLUGIN_FILE, exe);
            return;
        }
    }
    if (access(path, F_OK)) {
        snprintf(why, sizeof why, "CUDA plugin %s (DRQ_CUDA_PLUGIN) does not exist", path);
        return;
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        /* dlerror names the plugin or the CUDA library that is missing or mismatched */
        const char *e = dlerror();
        snprintf(why, sizeof why, "cannot load the CUDA plugin %s: %s (the plugin needs cuDNN 9, cuBLAS and the CUDA "
                                  "runtime of its build, found through its rpath or LD_LIBRARY_PATH)",
                 path, e ? e : "unknown error");
        return;
    }
    dlerror();
    drq_cuda_plugin_fn fn = (drq_cuda_plugin_fn)dlsym(h, DRQ_CUDA_PLUGIN_SYMBOL);
    const char *e = dlerror();
    const drq_cuda_plugin *p = fn && !e ? fn() : NULL;
    if (!p) {
        snprintf(why, sizeof why, "CUDA plugin %s has no %s (%s): not a drq CUDA plugin", path,
                 DRQ_CUDA_PLUGIN_SYMBOL, e ? e : "it returned NULL");
        dlclose(h);
        return;
    }
    if (p->abi != DRQ_CUDA_PLUGIN_ABI || p->backend_size != sizeof(drq_backend) || p->tensor_size != sizeof(Tensor) ||
        !p->backend) {
        snprintf(why, sizeof why,
                 "CUDA plugin %s is from another drq build (ABI %d, backend %zu bytes, tensor %zu; this binary: ABI "
                 "%d, %zu, %zu): rebuild and install drq and " DRQ_CUDA_PLUGIN_FILE " together",
                 path, p->abi, p->backend_size, p->tensor_size, DRQ_CUDA_PLUGIN_ABI, sizeof(drq_backend),
                 sizeof(Tensor));
        dlclose(h);
        return;
    }
    /* the handle stays open for the life of the process */
    drq_backend_install(DRQ_CUDA, p->backend);
    loaded = p;
}
#else
static void load(void) {
    snprintf(why, sizeof why, "this build has no CUDA backend (built with CUDA=0, or nvcc and cuDNN were not found "
                              "at build time)");
}
#endif

const drq_cuda_plugin *drq_cuda_plugin_load(drq_err *err) {
    pthread_once(&once, load);
    if (!loaded) drq_errf(err, "%s", why);
    return loaded;
}

const char *drq_cuda_plugin_path(void) { return path; }
