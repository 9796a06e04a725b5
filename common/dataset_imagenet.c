/* dataset_imagenet.c — the ImageNet validation set as users hold it
 * (dataset.h, kind "imagenet"; docs/assets.md):
 *
 *   class folders  PATH/<wnid>/NAME.JPEG (or PATH/val/<wnid>/…, RobustBench's
 *                  data_dir/val): torchvision's ImageFolder order — the
 *                  folders sorted by name are the classes 0, 1, …, and
 *                  within a folder the files sorted by name;
 *   flat           PATH/ILSVRC2012_val_NNNNNNNN.JPEG with
 *                  PATH/ILSVRC2012_val_labels.txt: one line per image number
 *                  N (line N is image N), holding its 0-based torchvision
 *                  class index; the images in the order of N.
 *
 * The devkit's ILSVRC2012_validation_ground_truth.txt numbers the classes by
 * the devkit's ILSVRC2012_ID, which is not torchvision's order; the map
 * between them lives only in the devkit's meta.mat (a MATLAB file), so drq
 * asks for the label file above instead and says so when it finds only the
 * devkit's file.
 *
 * Only the requested range is decoded (a shard, never the 50,000 images):
 * each JPEG through common/jpeg.h, then Res256Crop224 (common/resample.h),
 * 3 × 224 × 224 floats in [0,1].  Every error names the file (and line).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "dataset_internal.h"
#include "jpeg.h"
#include "resample.h"

#define IMAGENET_CLASSES 1000
#define FLAT_PREFIX "ILSVRC2012_val_"
#define FLAT_LABELS "ILSVRC2012_val_labels.txt"
#define DEVKIT_TRUTH "ILSVRC2012_validation_ground_truth.txt"

typedef struct {
    char **v;
    int n, cap;
} names;

static void names_add(names *s, const char *x) {
    if (s->n == s->cap) s->cap = s->cap ? 2 * s->cap : 64, s->v = xrealloc(s->v, sizeof(char *) * s->cap);
    s->v[s->n++] = xstrdup(x);
}

static void names_free(names *s) {
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int kind_of(const char *path) { /* 0 missing, 1 file, 2 directory */
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    return S_ISDIR(st.st_mode) ? 2 : S_ISREG(st.st_mode) ? 1 : 0;
}

static int has_ext(const char *name, const char *ext) {
    size_t a = strlen(name), b = strlen(ext);
    return a > b && !strcasecmp(name + a - b, ext);
}

static int is_jpeg_name(const char *name) { return has_ext(name, ".jpeg") || has_ext(name, ".jpg"); }

/* the other image types ImageFolder would count (and drq does not decode) */
static int is_other_image(const char *name) {
    static const char *const ext[] = {".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", NULL};
    for (int i = 0; ext[i]; i++)
        if (has_ext(name, ext[i])) return 1;
    return 0;
}

/* The entries of dir, sorted; dirs_only: sub-directories, else regular files. */
static int list_dir(const char *dir, int dirs_only, names *out, drq_err *err) {
    DIR *d = opendir(dir);
    if (!d) return drq_errf(err, "%s: cannot open the folder", dir);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = join(dir, e->d_name);
        int k = kind_of(p);
        free(p);
        if (k == (dirs_only ? 2 : 1)) names_add(out, e->d_name);
    }
    closedir(d);
    if (out->n) qsort(out->v, out->n, sizeof(char *), cmp_str);
    return 0;
}

/* ---- the two layouts: image paths and labels ------------------------------ */
typedef struct {
    names files; /* full paths, in dataset order */
    int *label;
    int num_classes;
} listing;

static void add_image(listing *l, char *path, int label) {
    if (l->files.n == l->files.cap) l->label = xrealloc(l->label, sizeof(int) * (l->files.cap ? 2 * l->files.cap : 64));
    names_add(&l->files, path);
    l->label[l->files.n - 1] = label;
    free(path);
}

static int list_class_folders(const char *root, listing *l, drq_err *err) {
    names classes = {0};
    if (list_dir(root, 1, &classes, err)) return -1;
    if (classes.n == 0) {
        names_free(&classes);
        return drq_errf(err, "%s: no class folders and no " FLAT_PREFIX "*.JPEG files (expected <wnid>/*.JPEG, "
                             "docs/assets.md)", root);
    }
    if (classes.n > 65535) {
        names_free(&classes);
        return drq_errf(err, "%s: %d class folders; at most 65535 are supported", root, classes.n);
    }
    int rc = 0;
    for (int c = 0; c < classes.n && !rc; c++) {
        char *dir = join(root, classes.v[c]);
        names sub = {0}, files = {0};
        rc = list_dir(dir, 1, &sub, err);
        if (!rc && sub.n) rc = drq_errf(err, "%s/%s: a folder inside a class folder; drq reads flat class folders", dir,
                                        sub.v[0]);
        if (!rc) rc = list_dir(dir, 0, &files, err);
        for (int i = 0; !rc && i < files.n; i++) {
            if (is_jpeg_name(files.v[i])) add_image(l, join(dir, files.v[i]), c);
            else if (is_other_image(files.v[i]))
                rc = drq_errf(err, "%s/%s: not a JPEG; drq decodes JPEG images only (torchvision would count it)", dir,
                              files.v[i]);
        }
        names_free(&sub), names_free(&files);
        free(dir);
    }
    l->num_classes = classes.n;
    names_free(&classes);
    return rc;
}

/* The image number N of FLAT_PREFIX N .JPEG, or 0 when the name is not one. */
static long flat_number(const char *name) {
    size_t p = strlen(FLAT_PREFIX);
    if (strncmp(name, FLAT_PREFIX, p) || !is_jpeg_name(name)) return 0;
    char *end;
    long n = strtol(name + p, &end, 10);
    return end != name + p && *end == '.' && n > 0 ? n : 0;
}

/* Reads FLAT_LABELS: *lab[N−1] for image N, *nlab lines. */
static int read_flat_labels(const char *root, int **lab, long *nlab, drq_err *err) {
    char *path = join(root, FLAT_LABELS);
    *lab = NULL, *nlab = 0;
    if (kind_of(path) != 1) {
        char *truth = join(root, DEVKIT_TRUTH);
        int devkit = kind_of(truth) == 1;
        drq_errf(err,
                 "%s: missing: the flat layout needs one 0-based torchvision class index per line, line N for "
                 "image N%s (docs/assets.md)",
                 path,
                 devkit ? "; the devkit's " DEVKIT_TRUTH " numbers classes by ILSVRC2012_ID, whose map to "
                          "torchvision's order is only in the devkit's meta.mat, which drq does not read"
                        : "");
        free(truth), free(path);
        return -1;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        drq_errf(err, "%s: cannot open", path);
        free(path);
        return -1;
    }
    char line[64];
    long cap = 0;
    int rc = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        char *end;
        long v = strtol(line, &end, 10);
        while (*end == ' ' || *end == '\t') end++;
        if (end == line || *end || v < 0 || v >= IMAGENET_CLASSES) {
            rc = drq_errf(err, "%s:%ld: expected a class index in [0, %d], got \"%.20s\"", path, *nlab + 1,
                          IMAGENET_CLASSES - 1, line);
            break;
        }
        if (*nlab == cap) cap = cap ? 2 * cap : 1024, *lab = xrealloc(*lab, sizeof(int) * cap);
        (*lab)[(*nlab)++] = (int)v;
    }
    fclose(f);
    free(path);
    if (rc) free(*lab), *lab = NULL;
    return rc;
}

typedef struct {
    long num;
    char *name;
} numbered;

static int cmp_num(const void *a, const void *b) {
    long x = ((const numbered *)a)->num, y = ((const numbered *)b)->num;
    return x < y ? -1 : x > y;
}

static int list_flat(const char *root, const names *files, listing *l, drq_err *err) {
    numbered *v = xmalloc(sizeof(numbered) * (files->n + 1));
    int n = 0;
    for (int i = 0; i < files->n; i++)
        if (flat_number(files->v[i])) v[n].num = flat_number(files->v[i]), v[n++].name = files->v[i];
    qsort(v, n, sizeof *v, cmp_num);
    int *lab;
    long nlab;
    int rc = read_flat_labels(root, &lab, &nlab, err);
    for (int i = 0; !rc && i < n; i++) {
        if (i && v[i].num == v[i - 1].num)
            rc = drq_errf(err, "%s: %s and %s are both image %ld", root, v[i - 1].name, v[i].name, v[i].num);
        else if (v[i].num > nlab)
            rc = drq_errf(err, "%s/" FLAT_LABELS ": %ld lines, no label for %s (image %ld)", root, nlab, v[i].name,
                          v[i].num);
        else add_image(l, join(root, v[i].name), lab[v[i].num - 1]);
    }
    l->num_classes = IMAGENET_CLASSES;
    free(lab), free(v);
    return rc;
}

/* ---- entry point ----------------------------------------------------------- */
int dataset_load_imagenet(const char *path, const char *split, long start, long count, drq_dataset *out,
                          drq_err *err) {
    if (strcmp(split, "test"))
        return drq_errf(err, "imagenet: only the validation set is read (split \"test\"), not \"%s\"", split);
    if (kind_of(path) != 2) return drq_errf(err, "%s: not a folder (ImageNet validation images, docs/assets.md)", path);
    char *val = join(path, "val");
    char *root = kind_of(val) == 2 ? val : xstrdup(path);
    if (root != val) free(val);
    listing l = {0};
    names files = {0};
    int rc = list_dir(root, 0, &files, err), flat = 0;
    for (int i = 0; !rc && i < files.n && !flat; i++) flat = flat_number(files.v[i]) != 0;
    if (!rc) rc = flat ? list_flat(root, &files, &l, err) : list_class_folders(root, &l, err);
    names_free(&files);
    long n = 0;
    if (!rc && l.files.n == 0) rc = drq_errf(err, "%s: no JPEG images", root);
    if (!rc) rc = dataset_resolve_range(start, count, l.files.n, root, &n, err);
    if (!rc) {
        const size_t per = (size_t)3 * DRQ_CROP224_SIZE * DRQ_CROP224_SIZE;
        out->n = (int)n, out->c = 3, out->h = out->w = DRQ_CROP224_SIZE;
        out->num_classes = l.num_classes;
        out->x = xmalloc(per * (size_t)(n ? n : 1) * sizeof(float));
        out->y = xmalloc(((size_t)n + 1) * sizeof *out->y);
        for (long i = 0; i < n && !rc; i++) {
            uint8_t *rgb;
            int w, h;
            const char *file = l.files.v[start + i];
            rc = drq_jpeg_load(file, &rgb, &w, &h, err);
            if (rc) break;
            drq_res256_crop224(rgb, w, h, out->x + per * (size_t)i);
            out->y[i] = (uint16_t)l.label[start + i];
            free(rgb);
        }
    }
    names_free(&l.files);
    free(l.label), free(root);
    return rc;
}
