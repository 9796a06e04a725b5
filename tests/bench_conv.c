/* bench_conv.c — micro-benchmark of the CPU convolution (kernels/cpu/conv.c)
 * on the CIFAR-10 DDPM UNet and WRN-28-10 conv shapes, forward and
 * backward-data, against PyTorch (tests/ref/bench_conv_torch.py).
 *
 * Not a test (no test_ prefix, `make test` does not run it) and not in the
 * Makefile; build it by hand with the Makefile's flags:
 *
 *   mkdir -p build && gcc -std=c11 -D_GNU_SOURCE -O3 -g -march=native -Wall -Wextra -Werror \
 *       -Wno-unused-parameter -fopenmp -I. \
 *       tests/bench_conv.c kernels/cpu/conv.c kernels/tensor.c common/util.c \
 *       -o build/bench_conv -ldnnl -lpthread -lm
 *
 *   /usr/bin/python3 tests/ref/bench_conv_torch.py --threads 2 > /tmp/torch_conv.tsv
 *   build/bench_conv --threads 2 --torch /tmp/torch_conv.tsv [--impl default,ref] [--min-time 0.3]
 *
 * --impl takes a comma list of conv.c variants, each selected through
 * DRQ_CONV_IMPL when its Conv2d's cache is created: "default" (unset: what
 * conv.c ships, oneDNN's direct kernels one image per call), "ref" (the plain
 * loops; slow).  On a shared machine run
 * each variant in its own process a few times and keep the best per cell.
 * Prints a markdown table: best-of-reps time per call, GFLOP/s
 * (2·n·cout·oh·ow·cin·kh·kw per call, the same for forward and
 * backward-data) and the GFLOP/s ratio drq/torch of the first impl listed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"
#include "../kernels/cpu/cpu.h"

typedef struct {
    const char *name;
    int cin, cout, k, stride, pt, pl, pb, pr, h;
} Shape;

/* Keep in sync with SHAPES in tests/ref/bench_conv_torch.py. */
static const Shape shapes[] = {
    {"ddpm conv_in 3>128 3x3 32", 3, 128, 3, 1, 1, 1, 1, 1, 32},
    {"ddpm 128>128 3x3 32", 128, 128, 3, 1, 1, 1, 1, 1, 32},
    {"ddpm up 256>128 3x3 32", 256, 128, 3, 1, 1, 1, 1, 1, 32},
    {"ddpm down 128 3x3 s2 32", 128, 128, 3, 2, 0, 0, 1, 1, 32},
    {"ddpm 256>256 3x3 16", 256, 256, 3, 1, 1, 1, 1, 1, 16},
    {"ddpm 256>256 3x3 8", 256, 256, 3, 1, 1, 1, 1, 1, 8},
    {"ddpm 256>256 3x3 4", 256, 256, 3, 1, 1, 1, 1, 1, 4},
    {"ddpm nin 256>128 1x1 32", 256, 128, 1, 1, 0, 0, 0, 0, 32},
    {"ddpm attn 256>256 1x1 16", 256, 256, 1, 1, 0, 0, 0, 0, 16},
    {"ddpm conv_out 128>3 3x3 32", 128, 3, 3, 1, 1, 1, 1, 1, 32},
    {"wrn 160>320 3x3 s2 32", 160, 320, 3, 2, 1, 1, 1, 1, 32},
    {"wrn short 160>320 1x1 s2 32", 160, 320, 1, 2, 0, 0, 0, 0, 32},
};
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))

typedef struct {
    char name[64];
    int batch;
    char dir[8];
    double ms;
} TorchRow;

static TorchRow *torch_rows;
static int ntorch;

static void load_torch(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) DIE("cannot open %s", path);
    char line[256];
    while (fgets(line, sizeof line, f)) {
        TorchRow r;
        char *t1 = strchr(line, '\t');
        if (!t1 || line[0] == '#') continue;
        *t1 = 0;
        if (sscanf(t1 + 1, "%d\t%7s\t%lf", &r.batch, r.dir, &r.ms) != 3) continue;
        size_t len = strlen(line);
        if (len >= sizeof r.name) continue;
        memcpy(r.name, line, len + 1);
        torch_rows = xrealloc(torch_rows, (size_t)(ntorch + 1) * sizeof *torch_rows);
        torch_rows[ntorch++] = r;
    }
    fclose(f);
}

static double torch_ms(const char *name, int batch, const char *dir) {
    for (int i = 0; i < ntorch; i++)
        if (!strcmp(torch_rows[i].name, name) && torch_rows[i].batch == batch && !strcmp(torch_rows[i].dir, dir))
            return torch_rows[i].ms;
    return 0;
}

static void fill(float *p, size_t n, unsigned *s) {
    for (size_t i = 0; i < n; i++) {
        *s = *s * 1664525u + 1013904223u;
        p[i] = (float)((*s >> 8) * (1.0 / 16777216.0) - 0.5);
    }
}

/* Best-of time per call in ms: at least 3 reps and min_time seconds. */
static double time_call(Conv2d *c, int dir, const Tensor *a, Tensor *b, double min_time) {
    for (int i = 0; i < 2; i++) /* warm-up: builds the cached primitives */
        dir ? cpu_conv2d_backward_input(c, a, b) : cpu_conv2d_forward(c, a, b);
    double best = 1e30, start = drq_clock_mono();
    for (int rep = 0; rep < 3 || drq_clock_mono() - start < min_time; rep++) {
        double t0 = drq_clock_mono();
        dir ? cpu_conv2d_backward_input(c, a, b) : cpu_conv2d_forward(c, a, b);
        double t = drq_clock_mono() - t0;
        if (t < best) best = t;
    }
    return best * 1e3;
}

int main(int argc, char **argv) {
    int threads = 2;
    double min_time = 0.3;
    const char *impls = "default";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--torch") && i + 1 < argc) load_torch(argv[++i]);
        else if (!strcmp(argv[i], "--impl") && i + 1 < argc) impls = argv[++i];
        else if (!strcmp(argv[i], "--min-time") && i + 1 < argc) min_time = atof(argv[++i]);
        else DIE("usage: %s [--threads N] [--torch FILE.tsv] [--impl a,b] [--min-time S]", argv[0]);
    }
    drq_set_threads(threads);
    char *list = xstrdup(impls);
    const char *names[8] = {0};
    int nimpl = 0;
    for (char *tok = strtok(list, ","); tok && nimpl < 8; tok = strtok(NULL, ",")) names[nimpl++] = tok;
    if (!nimpl) DIE("--impl: empty list");

    printf("threads %d, best of >= %.2f s per cell; GFLOP/s = 2*n*cout*oh*ow*cin*kh*kw / time\n\n", threads,
           min_time);
    printf("| shape | n | dir |");
    for (int k = 0; k < nimpl; k++) printf(" %s ms | %s GF/s |", names[k], names[k]);
    printf(" torch ms | torch GF/s | %s/torch |\n|---|---|---|", names[0]);
    for (int k = 0; k < nimpl; k++) printf("---|---|");
    printf("---|---|---|\n");
    fflush(stdout);

    unsigned seed = 12345;
    for (int si = 0; si < NSHAPES; si++) {
        const Shape *s = &shapes[si];
        size_t wn = (size_t)s->cout * s->cin * s->k * s->k;
        float *w = xmalloc(wn * sizeof(float)), *b = xmalloc((size_t)s->cout * sizeof(float));
        fill(w, wn, &seed);
        fill(b, (size_t)s->cout, &seed);
        static const int batches[2] = {1, 8};
        for (int bi = 0; bi < 2; bi++) {
            int n = batches[bi];
            Conv2d cv[8];
            for (int k = 0; k < nimpl; k++) {
                Conv2d *c = &cv[k];
                memset(c, 0, sizeof *c);
                c->cin = s->cin, c->cout = s->cout, c->kh = c->kw = s->k, c->stride = s->stride;
                c->pad_t = s->pt, c->pad_l = s->pl, c->pad_b = s->pb, c->pad_r = s->pr;
                c->w = w, c->b = b;
            }
            int oh = (s->h + s->pt + s->pb - s->k) / s->stride + 1;
            Tensor x = tensor_new(n, s->cin, s->h, s->h), y = tensor_new(n, s->cout, oh, oh);
            fill(x.data, tensor_numel(&x), &seed);
            fill(y.data, tensor_numel(&y), &seed);
            double gf = 2.0 * n * s->cout * oh * oh * (double)s->cin * s->k * s->k * 1e-9;
            for (int dir = 0; dir < 2; dir++) {
                const char *dname = dir ? "bwd" : "fwd";
                printf("| %s | %d | %s |", s->name, n, dname);
                double first = 0;
                for (int k = 0; k < nimpl; k++) {
                    /* each call needs the cache created under its own DRQ_CONV_IMPL */
                    if (!strcmp(names[k], "default")) unsetenv("DRQ_CONV_IMPL");
                    else setenv("DRQ_CONV_IMPL", names[k], 1);
                    double ms = dir ? time_call(&cv[k], 1, &y, &x, min_time) : time_call(&cv[k], 0, &x, &y, min_time);
                    if (!k) first = ms;
                    printf(" %.3f | %.1f |", ms, gf / (ms * 1e-3));
                    fflush(stdout);
                }
                double tm = torch_ms(s->name, n, dname);
                if (tm > 0)
                    printf(" %.3f | %.1f | %.2f |\n", tm, gf / (tm * 1e-3), tm / first);
                else
                    printf(" - | - | - |\n");
                fflush(stdout);
            }
            for (int k = 0; k < nimpl; k++) cpu_conv2d_release(&cv[k]);
            tensor_free(&x);
            tensor_free(&y);
        }
        free(w);
        free(b);
    }
    free(list);
    free(torch_rows);
    return 0;
}
