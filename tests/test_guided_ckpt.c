/* test_guided_ckpt.c — activation checkpointing inside the ADM UNet
 * (guided_unet_set_mem_budget):
 *   - a budget below the batch's tapes checkpoints, one above it does not,
 *     0 never does;
 *   - checkpointed forward and VJP equal the plain ones bit for bit, also
 *     when a model switches between the two modes;
 *   - the heap a checkpointed forward + VJP keeps is smaller than the plain
 *     one's by at least half the blocks' tapes (the estimate of
 *     guided_unet_tape_bytes, which counts the backward's scratch too),
 *     measured with mallinfo2.
 */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "worker/models/models.h"
#include "check.h"
#include "rand.h"

#define CFG                                                                                                     \
    "{\"image_size\":16,\"num_channels\":32,\"num_res_blocks\":1,\"channel_mult\":[1,2,2],"                     \
    "\"attention_resolutions\":[8,4],\"num_head_channels\":16,\"use_scale_shift_norm\":true,"                   \
    "\"resblock_updown\":true,\"learn_sigma\":true}"

static guided_unet *model(void) {
    drq_err err = {{0}};
    guided_unet_config c;
    guided_unet *m = guided_unet_config_parse(CFG, &c, &err) ? NULL : guided_unet_load(&c, NULL, 7, DRQ_CPU, &err);
    CHECK_MSG(m != NULL, "ADM UNet: %s", err.msg);
    return m;
}

/* forward + VJP of m at (x, t) with gy into y, gx; returns whether it checkpointed */
static int pass(guided_unet *m, const Tensor *x, const float *t, const Tensor *gy, Tensor *y, Tensor *gx) {
    guided_unet_forward(m, x, t, y);
    int ck = guided_unet_checkpointed(m);
    guided_unet_backward(m, gy, gx);
    return ck;
}

static int same(const Tensor *a, const Tensor *b) { return !memcmp(a->data, b->data, tensor_numel(a) * sizeof(float)); }

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

int main(void) {
    drq_set_threads(2);
    guided_unet *m = model();
    if (!m) return CHECK_DONE();
    const float t[2] = {17.0f, 640.0f};
    Tensor x = rnd(2, 3, 16, 16), gy = rnd(2, 6, 16, 16);
    Tensor y0 = tensor_new(2, 6, 16, 16), g0 = tensor_new(2, 3, 16, 16), y1 = tensor_new(2, 6, 16, 16),
           g1 = tensor_new(2, 3, 16, 16);
    size_t tape = guided_unet_tape_bytes(m);
    CHECK_CMP_INT(tape, >, 0);

    CHECK_EQ_INT(pass(m, &x, t, &gy, &y0, &g0), 0); /* budget 0: never */
    guided_unet_set_mem_budget(m, 2 * tape - 1);     /* the batch of 2 needs 2·tape */
    CHECK_EQ_INT(pass(m, &x, t, &gy, &y1, &g1), 1);
    CHECK_MSG(same(&y0, &y1) && same(&g0, &g1), "checkpointed forward / VJP differ from the plain ones");
    guided_unet_set_mem_budget(m, 2 * tape);
    CHECK_EQ_INT(pass(m, &x, t, &gy, &y1, &g1), 0);
    CHECK_MSG(same(&y0, &y1) && same(&g0, &g1), "plain pass after a checkpointed one differs");
    guided_unet_set_mem_budget(m, 1);
    CHECK_EQ_INT(pass(m, &x, t, &gy, &y1, &g1), 1);
    CHECK_MSG(same(&y0, &y1) && same(&g0, &g1), "checkpointed pass after a plain one differs");
    guided_unet_free(m);

#ifdef UNDER_ASAN
    SKIP("heap comparison not run under ASan (mallinfo2 does not see its allocator)");
#else
    size_t kept[2];
    for (int ck = 0; ck < 2; ck++) { /* heap held after forward + VJP (weights and buffers of a fresh model) */
        size_t before = mallinfo2().uordblks;
        guided_unet *f = model();
        if (!f) return CHECK_DONE();
        guided_unet_set_mem_budget(f, ck ? 1 : 0);
        pass(f, &x, t, &gy, &y1, &g1);
        kept[ck] = mallinfo2().uordblks - before;
        guided_unet_free(f);
    }
    char what[200];
    snprintf(what, sizeof what, "heap after forward + VJP: plain %zu bytes, checkpointed %zu, tapes (estimate) %zu", kept[0],
             kept[1], 2 * tape);
    CHECK_MSG(kept[1] + tape < kept[0], "%s", what);
    printf("%s\n", what);
#endif
    Tensor *ts[] = {&x, &gy, &y0, &g0, &y1, &g1};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_free(ts[i]);
    return CHECK_DONE();
}
