/* json_get.c — see json_get.h. */
#include "common/json_get.h"

#include <string.h>

void drq_json_path(char *dst, size_t cap, const char *path, const char *key) {
    size_t n = 0, k = strlen(key);
    if (path && *path) {
        n = strlen(path);
        if (n > cap - 2) n = cap - 2;
        memcpy(dst, path, n);
        dst[n++] = '.';
    }
    if (k > cap - 1 - n) k = cap - 1 - n;
    memcpy(dst + n, key, k);
    dst[n + k] = 0;
}

int drq_json_check_keys(const json_t *obj, const char *path, const char *const *allowed, drq_err *err) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (!strcmp(*a, key)) ok = 1;
        if (!ok) {
            char p[256], list[512] = "";
            drq_json_path(p, sizeof p, path, key);
            for (const char *const *a = allowed; *a; a++) {
                if (a != allowed) strncat(list, ", ", sizeof list - strlen(list) - 1);
                strncat(list, *a, sizeof list - strlen(list) - 1);
            }
            return drq_errf(err, "%s: unknown key (expected one of: %s)", p, list);
        }
    }
    return 0;
}

int drq_json_get_int(const json_t *obj, const char *path, const char *key, int required, int64_t lo, int64_t hi,
                     int64_t dflt, int64_t *out, drq_err *err) {
    char p[256];
    drq_json_path(p, sizeof p, path, key);
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (required) return drq_errf(err, "%s: required (expected an integer in [%lld,%lld])", p, (long long)lo, (long long)hi);
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return drq_errf(err, "%s: expected an integer in [%lld,%lld]", p, (long long)lo, (long long)hi);
    *out = json_integer_value(v);
    return 1;
}
