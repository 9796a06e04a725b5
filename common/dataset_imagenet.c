/* dataset_imagenet.c — the ImageNet validation set as users hold it
 * (dataset.h, kind "imagenet"; docs/assets.md):
 *
 *   class folders  PATH/<wnid>/NAME.JPEG (or PATH/val/<wnid>/…, RobustBench's
 *                  data_dir/val): torchvision's ImageFolder order — the
 *                  folders sorted by name are the classes 0, 1, …, and
 *                  within a folder the files sorted by name;
 *   flat           PATH/ILSVRC2012_val_NNNNNNNN.JPEG, the images in the order
 *                  of N, labelled by the first of these found in the image
 *                  folder D (PATH or PATH/val):
 *                  1. D/ILSVRC2012_val_labels.txt: one line per image
 *                     number N (line N is image N) holding its 0-based
 *                     torchvision class index — preferred when present;
 *                  2. the ILSVRC2012 devkit's files as users hold them:
 *                     ILSVRC2012_validation_ground_truth.txt (line N: the
 *                     ILSVRC2012_ID, 1..1000, of image N) and meta.mat
 *                     beside it, taken from the first of D/ and
 *                     D/ILSVRC2012_devkit_t12/data/ (the devkit tarball's
 *                     layout) that holds the ground-truth file.
 *
 * meta.mat (MATLAB v5, read with matio) holds the struct array synsets
 * (ILSVRC2012_ID, WNID, num_children, …); its entries with num_children == 0
 * are the 1000 classes, and torchvision's class index is the position of a
 * class's WNID among the 1000 sorted by name (ImageFolder's order, and
 * torchvision.datasets.ImageNet's parse_meta_mat), so ILSVRC2012_ID → WNID →
 * index.  Every ID of a class must be in 1..1000, IDs and WNIDs unique.
 *
 * Only the requested range is decoded (a shard, never the 50,000 images):
 * each JPEG through common/jpeg.h, then Res256Crop224 (common/resample.h),
 * 3 × 224 × 224 floats in [0,1].  Every error names the file (and line).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <pthread.h>
#include <sys/stat.h>

#include <matio.h>

#include "dataset_internal.h"
#include "jpeg.h"
#include "resample.h"

#define IMAGENET_CLASSES 1000
#define FLAT_PREFIX "ILSVRC2012_val_"
#define FLAT_LABELS "ILSVRC2012_val_labels.txt"
#define DEVKIT_TRUTH "ILSVRC2012_validation_ground_truth.txt"
#define DEVKIT_META "meta.mat"
#define DEVKIT_SUBDIR "ILSVRC2012_devkit_t12/data"

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

/* Reads path: one integer in [lo, hi] per line (what: "a class index"), into
 * *v (*n lines).  Every bad line is an error naming path:line. */
static int read_int_lines(const char *path, int lo, int hi, const char *what, int **v, long *n, drq_err *err) {
    *v = NULL, *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) return drq_errf(err, "%s: cannot open", path);
    char line[64];
    long cap = 0;
    int rc = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strchr(line, '\n') && !feof(f)) {
            rc = drq_errf(err, "%s:%ld: line too long, expected %s in [%d, %d]", path, *n + 1, what, lo, hi);
            break;
        }
        line[strcspn(line, "\r\n")] = 0;
        char *end;
        long x = strtol(line, &end, 10);
        while (*end == ' ' || *end == '\t') end++;
        if (end == line || *end || x < lo || x > hi) {
            rc = drq_errf(err, "%s:%ld: expected %s in [%d, %d], got \"%.20s\"", path, *n + 1, what, lo, hi, line);
            break;
        }
        if (*n == cap) cap = cap ? 2 * cap : 1024, *v = xrealloc(*v, sizeof(int) * cap);
        (*v)[(*n)++] = (int)x;
    }
    if (!rc && ferror(f)) rc = drq_errf(err, "%s: read error", path);
    fclose(f);
    if (rc) free(*v), *v = NULL, *n = 0;
    return rc;
}

/* ---- the devkit's meta.mat, through matio ---------------------------------- */
/* matio reports its own reasons through a log function (silent by default);
 * the last error of this thread is kept and added to drq's message. */
static __thread char matio_msg[200];
static void matio_log(int level, char *msg) {
    if (level & (MATIO_LOG_LEVEL_ERROR | MATIO_LOG_LEVEL_CRITICAL)) snprintf(matio_msg, sizeof matio_msg, "%s", msg);
}
static pthread_once_t matio_once = PTHREAD_ONCE_INIT;
static void matio_init(void) { Mat_LogInitFunc("drq", matio_log); }

/* The number of elements of v (0 when a product overflows). */
static size_t mat_numel(const matvar_t *v) {
    if (!v->dims || v->rank < 1) return 0;
    size_t n = 1;
    for (int i = 0; i < v->rank; i++) {
        if (v->dims[i] && n > SIZE_MAX / v->dims[i]) return 0;
        n *= v->dims[i];
    }
    return n;
}

/* A real numeric scalar holding an integer → *out; −1 otherwise. */
static int mat_integer(const matvar_t *v, long long *out) {
    if (!v || !v->data || v->isComplex || mat_numel(v) != 1) return -1;
    double d;
    long long i;
#define AS(T, SZ, DST)                               \
    do {                                             \
        T t_;                                        \
        if (v->data_size != (SZ)) return -1;         \
        memcpy(&t_, v->data, sizeof t_);             \
        DST = (__typeof__(DST))t_;                   \
    } while (0)
    switch (v->class_type) {
    case MAT_C_DOUBLE: AS(double, 8, d); goto real;
    case MAT_C_SINGLE: AS(float, 4, d); goto real;
    case MAT_C_INT8: AS(int8_t, 1, i); break;
    case MAT_C_UINT8: AS(uint8_t, 1, i); break;
    case MAT_C_INT16: AS(int16_t, 2, i); break;
    case MAT_C_UINT16: AS(uint16_t, 2, i); break;
    case MAT_C_INT32: AS(int32_t, 4, i); break;
    case MAT_C_UINT32: AS(uint32_t, 4, i); break;
    case MAT_C_INT64: AS(int64_t, 8, i); break;
    case MAT_C_UINT64: {
        uint64_t u;
        AS(uint64_t, 8, u);
        if (u > (uint64_t)INT64_MAX) return -1;
        i = (long long)u;
        break;
    }
    default: return -1;
    }
#undef AS
    *out = i;
    return 0;
real:
    if (!(d >= -1e15 && d <= 1e15) || (double)(long long)d != d) return -1;
    *out = (long long)d;
    return 0;
}

#define WNID_MAX 63
/* A character row vector of printable ASCII without spaces, 1..WNID_MAX long → buf; −1 otherwise. */
static int mat_word(const matvar_t *v, char buf[WNID_MAX + 1]) {
    if (!v || !v->data || v->class_type != MAT_C_CHAR || v->rank != 2 || !v->dims) return -1;
    size_t n = mat_numel(v), sz = (size_t)v->data_size;
    if (v->dims[0] != 1 || n < 1 || n > WNID_MAX || (sz != 1 && sz != 2 && sz != 4) || v->nbytes < n * sz) return -1;
    for (size_t k = 0; k < n; k++) {
        const unsigned char *p = (const unsigned char *)v->data + k * sz;
        uint32_t c = sz == 1 ? p[0] : sz == 2 ? (uint32_t)p[0] | (uint32_t)p[1] << 8 : (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        if (c < 0x21 || c > 0x7e) return -1;
        buf[k] = (char)c;
    }
    buf[n] = 0;
    return 0;
}

typedef struct {
    long long id;
    size_t entry; /* 0-based position in synsets */
    char wnid[WNID_MAX + 1];
} synset;

static int cmp_synset_id(const void *a, const void *b) {
    const synset *x = a, *y = b;
    return x->id != y->id ? (x->id < y->id ? -1 : 1) : (x->entry > y->entry) - (x->entry < y->entry);
}
static int cmp_synset_wnid(const void *a, const void *b) {
    const synset *x = a, *y = b;
    int c = strcmp(x->wnid, y->wnid);
    return c ? c : (x->entry > y->entry) - (x->entry < y->entry);
}

/* Reads meta.mat at path: cls[id] (id 1..1000) = torchvision's class index of ILSVRC2012_ID id. */
static int read_meta_mat(const char *path, int cls[IMAGENET_CLASSES + 1], drq_err *err) {
    static const char *const need[] = {"ILSVRC2012_ID", "WNID", "num_children"};
    pthread_once(&matio_once, matio_init);
    matio_msg[0] = 0;
    mat_t *mat = Mat_Open(path, MAT_ACC_RDONLY);
    if (!mat)
        return drq_errf(err, "%s: not a MAT file (matio cannot open it%s%s); expected the ILSVRC2012 devkit's meta.mat",
                        path, matio_msg[0] ? ": " : "", matio_msg);
    int rc = 0;
    matvar_t *s = NULL;
    synset *all = NULL, *leaf = NULL;
    if (Mat_GetVersion(mat) == MAT_FT_MAT4) {
        rc = drq_errf(err, "%s: not a MATLAB v5 MAT file (matio reads it as v4); expected the ILSVRC2012 devkit's "
                           "meta.mat", path);
        goto done;
    }
    s = Mat_VarRead(mat, "synsets");
    if (!s) {
        rc = drq_errf(err, "%s: no readable variable \"synsets\"%s%s (the devkit's meta.mat holds the struct array "
                           "synsets)", path, matio_msg[0] ? ": " : "", matio_msg);
        goto done;
    }
    if (s->class_type != MAT_C_STRUCT) {
        rc = drq_errf(err, "%s: \"synsets\" is not a struct array", path);
        goto done;
    }
    unsigned nf = Mat_VarGetNumberOfFields(s);
    char *const *fields = Mat_VarGetStructFieldnames(s);
    for (size_t k = 0; k < sizeof need / sizeof need[0] && !rc; k++) {
        unsigned j = 0;
        while (fields && j < nf && (!fields[j] || strcmp(fields[j], need[k]))) j++;
        if (!fields || j == nf)
            rc = drq_errf(err, "%s: synsets has no field \"%s\" (needed: ILSVRC2012_ID, WNID, num_children)", path,
                          need[k]);
    }
    if (rc) goto done;
    size_t n = mat_numel(s);
    if (n == 0 || !s->data) {
        rc = drq_errf(err, "%s: synsets is empty", path);
        goto done;
    }
    all = xmalloc(sizeof *all * n);
    leaf = xmalloc(sizeof *leaf * IMAGENET_CLASSES);
    size_t nleaf = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        long long id, kids;
        synset *e = &all[i];
        e->entry = i;
        if (mat_integer(Mat_VarGetStructFieldByName(s, "ILSVRC2012_ID", i), &id) || id < 1)
            rc = drq_errf(err, "%s: synsets(%zu).ILSVRC2012_ID: not a positive integer scalar", path, i + 1);
        else if (mat_integer(Mat_VarGetStructFieldByName(s, "num_children", i), &kids) || kids < 0)
            rc = drq_errf(err, "%s: synsets(%zu).num_children: not a non-negative integer scalar", path, i + 1);
        else if (mat_word(Mat_VarGetStructFieldByName(s, "WNID", i), e->wnid))
            rc = drq_errf(err, "%s: synsets(%zu).WNID: not a string of 1 to %d printable ASCII characters", path,
                          i + 1, WNID_MAX);
        else if (kids == 0 && id > IMAGENET_CLASSES)
            rc = drq_errf(err, "%s: synsets(%zu) (%s) is a class (num_children 0) with ILSVRC2012_ID %lld, not in "
                               "1..%d", path, i + 1, e->wnid, id, IMAGENET_CLASSES);
        if (rc) break;
        e->id = id;
        if (kids == 0) {
            if (nleaf < IMAGENET_CLASSES) leaf[nleaf] = *e;
            nleaf++;
        }
    }
    if (!rc && nleaf != IMAGENET_CLASSES)
        rc = drq_errf(err, "%s: %zu synsets with num_children == 0 (the classes), expected exactly %d", path, nleaf,
                      IMAGENET_CLASSES);
    if (rc) goto done;
    qsort(all, n, sizeof *all, cmp_synset_id);
    for (size_t i = 1; i < n && !rc; i++)
        if (all[i].id == all[i - 1].id)
            rc = drq_errf(err, "%s: synsets(%zu) and synsets(%zu) have the same ILSVRC2012_ID %lld", path,
                          all[i - 1].entry + 1, all[i].entry + 1, all[i].id);
    qsort(leaf, IMAGENET_CLASSES, sizeof *leaf, cmp_synset_wnid);
    for (int k = 1; k < IMAGENET_CLASSES && !rc; k++)
        if (!strcmp(leaf[k].wnid, leaf[k - 1].wnid))
            rc = drq_errf(err, "%s: synsets(%zu) and synsets(%zu) are both the class %s", path, leaf[k - 1].entry + 1,
                          leaf[k].entry + 1, leaf[k].wnid);
    /* 1000 distinct IDs in 1..1000: every ID is a class */
    for (int k = 0; k < IMAGENET_CLASSES && !rc; k++) cls[leaf[k].id] = k;
done:
    free(all), free(leaf);
    if (s) Mat_VarFree(s);
    Mat_Close(mat);
    return rc;
}

/* The flat layout's labels (see the top of this file): *lab[N−1] for image N,
 * *nlab lines; *src: the file the labels come from, for messages. */
static int read_flat_labels(const char *root, int **lab, long *nlab, char **src, drq_err *err) {
    *lab = NULL, *nlab = 0, *src = join(root, FLAT_LABELS);
    if (kind_of(*src) == 1)
        return read_int_lines(*src, 0, IMAGENET_CLASSES - 1, "a class index", lab, nlab, err);
    char *sub = join(root, DEVKIT_SUBDIR);
    const char *dirs[2] = {root, sub};
    int rc = -1;
    for (int d = 0; d < 2; d++) {
        char *truth = join(dirs[d], DEVKIT_TRUTH);
        if (kind_of(truth) != 1) {
            free(truth);
            continue;
        }
        char *meta = join(dirs[d], DEVKIT_META);
        int cls[IMAGENET_CLASSES + 1];
        if (kind_of(meta) != 1)
            rc = drq_errf(err, "%s: missing: the devkit's %s numbers the classes by ILSVRC2012_ID, and the devkit's "
                               "meta.mat beside it maps them to torchvision's order (or put %s in %s; docs/assets.md)",
                          meta, truth, FLAT_LABELS, root);
        else if (!(rc = read_meta_mat(meta, cls, err)) &&
                 !(rc = read_int_lines(truth, 1, IMAGENET_CLASSES, "an ILSVRC2012_ID", lab, nlab, err)))
            for (long i = 0; i < *nlab; i++) (*lab)[i] = cls[(*lab)[i]];
        free(*src), *src = truth;
        free(meta);
        free(sub);
        return rc;
    }
    drq_errf(err,
             "%s: missing: the flat layout needs it (one 0-based torchvision class index per line, line N for image "
             "N; preferred when present) or the ILSVRC2012 devkit's " DEVKIT_TRUTH " and " DEVKIT_META
             " together in %s or in %s (docs/assets.md)",
             *src, root, sub);
    free(sub);
    return -1;
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
    char *src;
    int rc = read_flat_labels(root, &lab, &nlab, &src, err);
    for (int i = 0; !rc && i < n; i++) {
        if (i && v[i].num == v[i - 1].num)
            rc = drq_errf(err, "%s: %s and %s are both image %ld", root, v[i - 1].name, v[i].name, v[i].num);
        else if (v[i].num > nlab)
            rc = drq_errf(err, "%s: %ld lines, no label for %s (image %ld)", src, nlab, v[i].name, v[i].num);
        else add_image(l, join(root, v[i].name), lab[v[i].num - 1]);
    }
    l->num_classes = IMAGENET_CLASSES;
    free(lab), free(v), free(src);
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
