/* image_grid.c — see image_grid.h. */
#include "image_grid.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/images_export.h"
#include "cli/png_write.h"
#include "common/images.h"

enum { COL_X, COL_PX, COL_XADV, COL_PXADV, COL_DELTA, NCOLS };
#define GRID_GAP 2
#define GRID_MIN_CELL 64

/* The images of the grid's rows, gathered from store_images_foreach. */
typedef struct {
    int64_t seed, image[64];
    int n, max, c, h, w, have_seed;
    float *data[64][DRQ_IMG_NKINDS];
    int bad_size;
} gather;

static int on_image(void *arg, const store_image *im) {
    gather *g = arg;
    if (!g->have_seed) g->seed = im->seed, g->have_seed = 1, g->c = im->c, g->h = im->h, g->w = im->w;
    if (im->seed != g->seed) return 1; /* the lowest seed only; images come in (seed, image) order */
    if (im->c != g->c || im->h != g->h || im->w != g->w) return g->bad_size = 1;
    if (!g->n || g->image[g->n - 1] != im->image) {
        if (g->n == g->max) return 1;
        g->image[g->n++] = im->image;
    }
    size_t bytes = sizeof(float) * (size_t)im->c * im->h * im->w;
    float **slot = &g->data[g->n - 1][im->what];
    *slot = xrealloc(*slot, bytes);
    memcpy(*slot, im->data, bytes);
    return 0;
}

/* Copies a C×H×W image in [0,1] (NULL: mid-gray) into cell (row, col) of
 * the canvas, scaled by s. */
static void blit(uint8_t *canvas, int cw, int ch_out, const float *img, int c, int h, int w, int s, int row, int col) {
    int x0 = GRID_GAP + col * (w * s + GRID_GAP), y0 = GRID_GAP + row * (h * s + GRID_GAP);
    size_t plane = (size_t)h * w;
    for (int y = 0; y < h * s; y++)
        for (int x = 0; x < w * s; x++)
            for (int k = 0; k < ch_out; k++) {
                size_t src = (size_t)(y / s) * w + x / s;
                uint8_t v = img ? png_sample(img[(c == 1 ? 0 : k) * plane + src]) : 128;
                canvas[((size_t)(y0 + y) * cw + x0 + x) * ch_out + k] = v;
            }
}

/* The attack's amplitude a of the δ column: eps (L∞), else the image's ‖δ‖∞. */
static double delta_scale(const drq_spec *sp, const char *attack, const float *xadv, const float *x, size_t n) {
    for (int i = 0; i < sp->nattacks; i++)
        if (!strcmp(sp->attacks[i].name, attack) && sp->attacks[i].norm == NORM_LINF) return sp->attacks[i].eps;
    double m = 0;
    for (size_t e = 0; e < n; e++) m = fmax(m, fabs((double)xadv[e] - x[e]));
    return m > 0 ? m : 1;
}

int report_image_grid(store *st, int64_t sweep, const char *purifier, const char *attack, int nimages,
                      const char *png_path, drq_err *err) {
    gather g = {.max = nimages < 1 ? 1 : nimages > 64 ? 64 : nimages};
    int64_t got = store_images_foreach(st, sweep, purifier, attack, g.max, on_image, &g, err);
    int rc = -1;
    cli_sweep_data sd = {0};
    drq_err ds_err;
    if (got < 0) goto done;
    if (g.n == 0) {
        rc = REPORT_GRID_NONE;
        goto done;
    }
    if (g.bad_size || (g.c != 1 && g.c != 3)) {
        drq_errf(err, "grid %s/%s: images of different sizes, or %d channels (1 or 3 needed)", purifier, attack, g.c);
        goto done;
    }
    if (cli_sweep_data_load(st, sweep, &sd, err, &ds_err)) goto done;
    int s = g.h >= GRID_MIN_CELL ? 1 : (GRID_MIN_CELL + g.h - 1) / g.h;
    int cw = GRID_GAP + NCOLS * (g.w * s + GRID_GAP), chh = GRID_GAP + g.n * (g.h * s + GRID_GAP), co = g.c;
    size_t per = (size_t)g.c * g.h * g.w;
    uint8_t *canvas = xmalloc((size_t)cw * chh * co);
    memset(canvas, 255, (size_t)cw * chh * co);
    float *delta = xmalloc(sizeof(float) * per);
    for (int r = 0; r < g.n; r++) {
        const float *x = cli_sweep_clean(&sd, g.image[r], g.c, g.h, g.w);
        if (!x) {
            drq_errf(err, "grid %s/%s: no clean image %lld of %dx%dx%d (dataset: %s)", purifier, attack,
                     (long long)g.image[r], g.c, g.h, g.w, sd.ds.n ? "range or size differs" : ds_err.msg);
            free(canvas), free(delta);
            goto done;
        }
        const float *xadv = g.data[r][DRQ_IMG_X_ADV];
        blit(canvas, cw, co, x, g.c, g.h, g.w, s, r, COL_X);
        blit(canvas, cw, co, g.data[r][DRQ_IMG_PURIFIED_CLEAN], g.c, g.h, g.w, s, r, COL_PX);
        blit(canvas, cw, co, xadv, g.c, g.h, g.w, s, r, COL_XADV);
        blit(canvas, cw, co, g.data[r][DRQ_IMG_PURIFIED_ADV], g.c, g.h, g.w, s, r, COL_PXADV);
        if (xadv) {
            double a = delta_scale(&sd.spec, attack, xadv, x, per);
            for (size_t e = 0; e < per; e++) delta[e] = (float)(0.5 + ((double)xadv[e] - x[e]) * (0.5 / a));
        }
        blit(canvas, cw, co, xadv ? delta : NULL, g.c, g.h, g.w, s, r, COL_DELTA);
    }
    rc = png_write(png_path, canvas, cw, chh, co, err);
    free(canvas), free(delta);
done:
    for (int r = 0; r < g.n; r++)
        for (int k = 0; k < DRQ_IMG_NKINDS; k++) free(g.data[r][k]);
    cli_sweep_data_free(&sd);
    return rc;
}
