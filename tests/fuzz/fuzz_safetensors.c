/* fuzz_safetensors.c — libFuzzer harness for the safetensors reader
 * (common/safetensors.c: st_load, st_find, st_free).
 *
 * Input: the bytes of a .safetensors file.  They are written to a temporary
 * file and loaded; a file that loads must have self-consistent tensors
 * (numel = product of the shape, data present), every tensor findable by its
 * name, and is then freed (ASan's leak checker stays on).
 */
#include "common/safetensors.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_path("in.safetensors");
    fz_write(path, data, size);
    st_file f;
    drq_err err;
    err.msg[0] = 0;
    if (st_load(path, &f, &err) != 0) {
        if (!err.msg[0] || f.n != 0 || f.t != NULL) {
            fprintf(stderr, "st_load failed without a message or left tensors behind\n");
            abort();
        }
        return 0;
    }
    for (int i = 0; i < f.n; i++) {
        const st_tensor *t = &f.t[i];
        size_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= (size_t)t->shape[d];
        if (t->ndim < 0 || t->ndim > ST_MAX_DIMS || numel != t->numel || !t->data || st_find(&f, t->name) == NULL) {
            fprintf(stderr, "tensor %d ('%s') is inconsistent\n", i, t->name);
            abort();
        }
        volatile float sink = 0;
        for (size_t k = 0; k < t->numel; k++) sink += t->data[k]; /* every element is readable */
        (void)sink;
    }
    st_free(&f);
    return 0;
}
