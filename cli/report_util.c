/* report_util.c — see report_util.h. */
#include "report_util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/row.h"
#include "common/util.h"


void st_add(st *s, double x) {
    if (isnan(x)) return;
    s->n += 1;
    double d = x - s->mean;
    s->mean += d / s->n;
    s->m2 += d * (x - s->mean);
}
double st_sd(const st *s) { return s->n > 1 ? sqrt(s->m2 / (s->n - 1)) : 0; }



void mem_open(mem *m) {
    m->buf = NULL;
    m->len = 0;
    m->f = open_memstream(&m->buf, &m->len);
    if (!m->f) DIE("open_memstream: %s", strerror(errno));
}
void mem_close(mem *m) { fclose(m->f); }

void csv_s(FILE *f, const char *s, int last) {
    drq_csv_str(f, s);
    fputc(last ? '\n' : ',', f);
}
/* mean,std (empty when no data) */
void csv_st(FILE *f, const st *s) {
    if (s->n > 0)
        fprintf(f, "%.10g,%.10g,", s->mean, st_sd(s));
    else
        fputs(",,", f);
}
void csv_n(FILE *f, double n, int last) { fprintf(f, "%.0f%c", n, last ? '\n' : ','); }

/* Markdown cell "mean ± std" (std when n > 1), "–" when no data. */
void md_st(FILE *f, const st *s, int prec) {
    if (s->n == 0)
        fputs(" – |", f);
    else if (s->n > 1)
        fprintf(f, " %.*f ± %.*f |", prec, s->mean, prec, st_sd(s));
    else
        fprintf(f, " %.*f |", prec, s->mean);
}
/* Markdown text: '|' would end the cell */
void md_s(FILE *f, const char *s) {
    fputc(' ', f);
    for (; *s; s++) {
        if (*s == '|') fputc('\\', f);
        fputc(*s, f);
    }
    fputs(" |", f);
}


int rep_write_file(outdir *od, const char *name, const char *text, size_t len) {
    if (od->failed) return -1;
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", od->dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "drq: report: cannot write %s: %s\n", tmp, strerror(errno));
        od->failed = 1;
        return -1;
    }
    size_t w = fwrite(text, 1, len, f);
    if (fclose(f) || w != len || rename(tmp, path)) {
        fprintf(stderr, "drq: report: writing %s failed: %s\n", path, strerror(errno));
        unlink(tmp);
        od->failed = 1;
        return -1;
    }
    return 0;
}

/* mkdir -p; 0 or -1 after a message. */
int rep_make_dir(const char *dir) {
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) {
        fprintf(stderr, "drq: report: output path too long\n");
        return -1;
    }
    for (char *s = p + 1;; s++) {
        if (*s == '/' || !*s) {
            char ch = *s;
            *s = 0;
            struct stat sb;
            if (stat(p, &sb) != 0) {
                if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                    fprintf(stderr, "drq: report: cannot create %s: %s\n", p, strerror(errno));
                    return -1;
                }
            } else if (!S_ISDIR(sb.st_mode)) {
                fprintf(stderr, "drq: report: cannot create %s: %s is not a directory\n", dir, p);
                return -1;
            }
            *s = ch;
            if (!ch) break;
        }
    }
    if (access(dir, W_OK | X_OK) != 0) {
        fprintf(stderr, "drq: report: %s is not writable: %s\n", dir, strerror(errno));
        return -1;
    }
    return 0;
}


/* gnuplot string literal (double quotes; noenhanced terminals, so only \ and " matter) */
void gp_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}


const int point_types[15] = {7, 5, 9, 11, 13, 15, 1, 2, 3, 4, 6, 8, 10, 12, 14};
const int open_point_types[9] = {6, 4, 8, 10, 12, 14, 1, 2, 3}; /* Fig. 3: overlapping points stay visible */
const char *const colours[10] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};


/* The gnuplot to run: $DRQ_GNUPLOT, else gnuplot on PATH; NULL when not found. */
char *rep_find_gnuplot(void) {
    const char *env = getenv("DRQ_GNUPLOT");
    if (env && *env) return access(env, X_OK) == 0 ? xstrdup(env) : NULL;
    const char *path = getenv("PATH");
    if (!path) path = "/usr/bin:/bin";
    char *copy = xstrdup(path), *save = NULL, *found = NULL;
    for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char p[4096];
        snprintf(p, sizeof p, "%s/gnuplot", *d ? d : ".");
        if (access(p, X_OK) == 0) found = xstrdup(p);
    }
    free(copy);
    return found;
}

/* Runs gnuplot SCRIPT in dir (output to gnuplot.log there); 0 ok. */
int rep_run_gnuplot(const char *exe, const char *dir, const char *script) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (chdir(dir) != 0) _exit(126);
        int fd = open("gnuplot.log", O_WRONLY | O_CREAT | O_APPEND, 0666);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execl(exe, "gnuplot", script, (char *)NULL);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int rep_nonempty(const char *dir, const char *name) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat sb;
    return stat(p, &sb) == 0 && sb.st_size > 0;
}


void rep_section(FILE *r, const char *title, const char *what, int rows, const char *base, const mem *md,
                    const char *absent) {
    fprintf(r, "\n## %s\n\n", title);
    if (!rows) {
        fprintf(r, "Not in this sweep: %s.\n", absent);
        return;
    }
    fprintf(r, "%s\n\n", what);
    fwrite(md->buf, 1, md->len, r);
    fprintf(r, "\n[%s.csv](%s.csv) · [%s.md](%s.md)\n", base, base, base, base);
}

