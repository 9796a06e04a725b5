/* json_get.h — strict reading of JSON objects, shared by every parser of
 * user-written JSON (the sweep spec, common/spec.c; the model --config,
 * worker/models/model_config.c).
 *
 * Errors name the full JSON path of the offending field ("attacks[1].eps",
 * "config.widen") and what was expected; unknown keys are errors, so a typo
 * never passes silently.  `path` is the path of `obj` itself ("" or NULL at
 * the root). */
#ifndef DRQ_JSON_GET_H
#define DRQ_JSON_GET_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

/* "path.key" (or "key" at the root) into dst, truncated to cap bytes. */
void drq_json_path(char *dst, size_t cap, const char *path, const char *key);

/* 0 when every key of obj is in allowed (NULL-terminated); else -1 with
 * "path.key: unknown key (expected one of: a, b, ...)". */
int drq_json_check_keys(const json_t *obj, const char *path, const char *const *allowed, drq_err *err);

/* An integer in [lo,hi] at obj[key]: 1 and *out when present, 0 and
 * *out = dflt when absent and not required, -1 with a message otherwise. */
int drq_json_get_int(const json_t *obj, const char *path, const char *key, int required, int64_t lo, int64_t hi,
                     int64_t dflt, int64_t *out, drq_err *err);

#endif
