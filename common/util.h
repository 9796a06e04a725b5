/* util.h — checked allocation, fatal errors, error buffers, timing, logging.
 *
 * Every allocation in drq goes through xmalloc & co: on failure they print the
 * file:line of the caller and a hint, then exit.  Recoverable errors (bad input
 * files, bad specs) are reported through a drq_err buffer instead, so daemons
 * can log them and carry on.
 */
#ifndef DRQ_UTIL_H
#define DRQ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define DRQ_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define DRQ_NORETURN __attribute__((noreturn))
#else
#define DRQ_PRINTF(a, b)
#define DRQ_NORETURN
#endif

void *xmalloc_(size_t n, const char *file, int line);
void *xcalloc_(size_t n, size_t size, const char *file, int line);
void *xrealloc_(void *p, size_t n, const char *file, int line);
char *xstrdup_(const char *s, const char *file, int line);
#define xmalloc(n) xmalloc_((n), __FILE__, __LINE__)
#define xcalloc(n, s) xcalloc_((n), (s), __FILE__, __LINE__)
#define xrealloc(p, n) xrealloc_((p), (n), __FILE__, __LINE__)
#define xstrdup(s) xstrdup_((s), __FILE__, __LINE__)

/* Fatal error: prints "file:line: message" and exits with status 70. For
 * programming errors and resource exhaustion only, never for bad input. */
DRQ_NORETURN void die_(const char *file, int line, const char *fmt, ...) DRQ_PRINTF(3, 4);
#define DIE(...) die_(__FILE__, __LINE__, __VA_ARGS__)

/* Recoverable error carrier.  Functions that can fail on user input take a
 * drq_err* and return -1 after filling it (drq_errf returns -1 for that). */
typedef struct {
    char msg[1024];
} drq_err;
int drq_errf(drq_err *e, const char *fmt, ...) DRQ_PRINTF(2, 3);

/* Clocks in seconds: monotonic (durations, deadlines) and wall (epoch
 * seconds, stored timestamps). */
double drq_clock_mono(void);
double drq_clock_wall(void);

/* One log line on stderr: "2026-11-25T07:40:31.123Z [tag] message". */
void log_line(const char *tag, const char *fmt, ...) DRQ_PRINTF(2, 3);

/* Reads a whole file into a NUL-terminated buffer; NULL + err on failure. */
char *read_file_all(const char *path, size_t *len, drq_err *err);

/* Sets the thread count for OpenMP loops and the math libraries (0 = all cores). */
void drq_set_threads(int n);
int drq_get_threads(void);

#ifdef __cplusplus
}
#endif

#endif
