/* check.h — the tiny assertion library of drq's C tests.
 *
 * Every CHECK prints both operands when it fails and counts; a test program
 * ends with CHECK_DONE(), which prints "RESULT <passed> <failed> <skipped>"
 * for tests/run.sh and returns the exit status.  Checks never abort, so one
 * run shows every difference.  SKIP("reason", ...) counts a check that could
 * not run here (no GPU, no dataset, ASan) and prints "SKIP file:line: reason";
 * a skip is neither a pass nor a failure, and tests/run.sh reports the count.
 * Use CHECK_EQ_INT / CHECK_EQ_STR / CHECK_CMP_INT / CHECK_CMP_DBL / CHECK_LE /
 * CHECK_MSG wherever there are operands to print; bare CHECK(cond) prints only
 * the expression (keep it for predicates such as isnan(x) or same_images(…)).
 */
#ifndef DRQ_CHECK_H
#define DRQ_CHECK_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int check_passed_, check_failed_, check_skipped_;

#define CHECK_(ok, ...)                                                      \
    do {                                                                     \
        if (ok) {                                                            \
            check_passed_++;                                                 \
        } else {                                                             \
            check_failed_++;                                                 \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);             \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
        }                                                                    \
    } while (0)

#define CHECK(cond) CHECK_((cond), "%s", #cond)
#define CHECK_MSG(cond, ...) CHECK_((cond), __VA_ARGS__)
#define CHECK_EQ_INT(a, b)                                                    \
    do {                                                                      \
        long long a_ = (long long)(a), b_ = (long long)(b);                   \
        CHECK_(a_ == b_, "%s == %s: %lld vs %lld", #a, #b, a_, b_);           \
    } while (0)
#define CHECK_EQ_STR(a, b)                                                     \
    do {                                                                       \
        const char *a_ = (a), *b_ = (b);                                       \
        CHECK_(a_ && b_ && strcmp(a_, b_) == 0, "%s == %s: \"%s\" vs \"%s\"", \
               #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");               \
    } while (0)
/* a op b for integers (pointers compare as their addresses), each operand
 * evaluated once, both printed: CHECK_CMP_INT(n, >=, 5) */
#define CHECK_CMP_INT(a, op, b)                                               \
    do {                                                                      \
        long long a_ = (long long)(a), b_ = (long long)(b);                   \
        CHECK_(a_ op b_, "%s %s %s: %lld vs %lld", #a, #op, #b, a_, b_);      \
    } while (0)
/* a op b for floating point, each operand evaluated once, both printed */
#define CHECK_CMP_DBL(a, op, b)                                               \
    do {                                                                      \
        double a_ = (double)(a), b_ = (double)(b);                            \
        CHECK_(a_ op b_, "%s %s %s: %.17g vs %.17g", #a, #op, #b, a_, b_);    \
    } while (0)
/* value <= bound, e.g. a relative error against its tolerance */
#define CHECK_LE(v, bound, what)                                              \
    do {                                                                      \
        double v_ = (double)(v), b_ = (double)(bound);                        \
        CHECK_(v_ <= b_, "%s: %.3e > %.3e", (what), v_, b_);                  \
    } while (0)
/* haystack contains needle (error messages) */
#define CHECK_CONTAINS(hay, needle)                                            \
    do {                                                                       \
        const char *h_ = (hay), *n_ = (needle);                                \
        CHECK_(h_ && strstr(h_, n_), "expected \"%s\" in \"%s\"", n_, h_ ? h_ : "(null)"); \
    } while (0)

/* a check that cannot run here: counted and said, never silent */
#define SKIP(...)                                                            \
    do {                                                                     \
        check_skipped_++;                                                    \
        printf("SKIP %s:%d: ", __FILE__, __LINE__);                          \
        printf(__VA_ARGS__);                                                 \
        putchar('\n');                                                       \
        fflush(stdout);                                                      \
    } while (0)

#define CHECK_DONE()                                                                            \
    (printf("RESULT %d %d %d\n", check_passed_, check_failed_, check_skipped_), fflush(stdout), \
     check_failed_ ? 1 : 0)

/* Relative L2 error ‖a−b‖/max(‖b‖, tiny), accumulated in double. */
static inline double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return sqrt(num) / (den > 1e-300 ? sqrt(den) : 1.0);
}

#endif
