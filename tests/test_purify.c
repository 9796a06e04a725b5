/* test_purify.c — diffusion purification (worker/purify.c) on a small random UNet:
 *   - the full VJP through a few sampler steps against central finite
 *     differences, for ddpm (fixedlarge, fixedsmall), reverse-only and DDIM
 *     with a stride;
 *   - ω is per image: a batch of 3 equals three batches of 1; the same ω
 *     gives the same output, another ω another one;
 *   - the identity purifier;
 *   - DDIM without forward noising (no_forward): its VJP against finite
 *     differences, no dependence on ω at all (two seeds, identical bits), and
 *     batch invariance;
 *   - memory: keeping the states for the backward pass costs t* × image,
 *     not t* × activations (heap growth between t* = 4 and t* = 24).
 */
#include <malloc.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "worker/eval/purify.h"
#include "check.h"
#include "fd.h"
#include "rand.h"

/* uniform in [0, 1), as float (rand.h) */
static float urandf(void) { return (float)urand(); }

static unet *tiny_unet(void) {
    drq_err err;
    unet_config c;
    if (unet_config_parse("{\"resolution\":8,\"in_channels\":1,\"out_ch\":1,\"ch\":32,\"ch_mult\":[1,2],"
                          "\"num_res_blocks\":1,\"attn_resolutions\":[4]}", &c, &err))
        return NULL;
    return unet_load(&c, NULL, 11, &err);
}

/* ⟨gy, P(x)⟩ for the FD check. */
typedef struct {
    purifier *p;
    const uint64_t *om;
    const int64_t *im;
    const Tensor *gy;
} fd_ctx;

static double loss(void *ctx, const Tensor *x) {
    fd_ctx *c = ctx;
    Tensor y = tensor_new(x->n, x->c, x->h, x->w);
    purifier_forward(c->p, x, c->om, c->im, 0, &y, NULL);
    double s = 0;
    for (size_t i = 0; i < tensor_numel(&y); i++) s += (double)y.data[i] * c->gy->data[i];
    tensor_free(&y);
    return s;
}

static float centered(void) { return urandf() - 0.5f; }

static void fd_case(unet *u, const char *name, purify_config c) {
    c.clamp_out = 0; /* FD across the output clamp's kink is meaningless */
    purifier *p = purifier_new(u, &c);
    int n = 2;
    uint64_t om[2] = {5, 6};
    int64_t im[2] = {10, 11};
    Tensor x = tensor_new(n, 1, 8, 8), gy = tensor_new(n, 1, 8, 8), y = tensor_new(n, 1, 8, 8);
    Tensor gx = tensor_new(n, 1, 8, 8);
    size_t N = tensor_numel(&x);
    for (size_t i = 0; i < N; i++) x.data[i] = 0.2f + 0.6f * urandf(), gy.data[i] = urandf() - 0.5f;
    purifier_forward(p, &x, om, im, 1, &y, NULL);
    purifier_backward(p, &gy, &gx);
    fd_ctx ctx = {p, om, im, &gy};
    fd_check_directions(name, loss, &ctx, &x, &gx, centered, 3, 2e-2f, 3e-3);
    /* each UNet evaluation is counted per image: forward t* steps + backward t* recomputes + 12 FD forwards */
    CHECK_EQ_INT(purifier_unet_evals(p), (long)n * purifier_steps(p) * (2 + 12));
    tensor_free(&x), tensor_free(&gy), tensor_free(&y), tensor_free(&gx);
    purifier_free(p);
}

static void test_batch_and_omega(unet *u) {
    purify_config c = {.kind = PURIFY_DDPM, .t_star = 4, .clamp_out = 1};
    purifier *p = purifier_new(u, &c);
    Tensor x = tensor_new(3, 1, 8, 8), y = tensor_new(3, 1, 8, 8), y1 = tensor_new(1, 1, 8, 8);
    Tensor y2 = tensor_new(3, 1, 8, 8);
    for (size_t i = 0; i < tensor_numel(&x); i++) x.data[i] = urandf();
    uint64_t om[3] = {1, 2, 3};
    int64_t im[3] = {100, 101, 102};
    purifier_forward(p, &x, om, im, 0, &y, NULL);
    for (int i = 0; i < 3; i++) {
        Tensor xi = tensor_wrap(x.data + 64 * i, 1, 1, 8, 8);
        purifier_forward(p, &xi, &om[i], &im[i], 0, &y1, NULL);
        CHECK_LE(rel_l2(y1.data, y.data + 64 * i, 64), 1e-6, "purify: batch of 1 vs batch of 3");
    }
    purifier_forward(p, &x, om, im, 0, &y2, NULL);
    CHECK_MSG(memcmp(y.data, y2.data, 3 * 64 * sizeof(float)) == 0, "purify: same ω, same input → bit-identical");
    uint64_t om2[3] = {1, 2, 4};
    purifier_forward(p, &x, om2, im, 0, &y2, NULL);
    CHECK_MSG(memcmp(y.data, y2.data, 2 * 64 * sizeof(float)) == 0, "purify: images 0,1 keep their ω");
    CHECK_LE(1e-3, rel_l2(y.data + 128, y2.data + 128, 64), "purify: image 2 with another ω differs");
    tensor_free(&x), tensor_free(&y), tensor_free(&y1), tensor_free(&y2);
    purifier_free(p);

    purify_config none = {.kind = PURIFY_NONE};
    p = purifier_new(NULL, &none);
    Tensor a = tensor_new(2, 1, 8, 8), b = tensor_new(2, 1, 8, 8), g = tensor_new(2, 1, 8, 8);
    for (size_t i = 0; i < 128; i++) a.data[i] = urandf();
    purifier_forward(p, &a, om, im, 1, &b, NULL);
    purifier_backward(p, &a, &g);
    CHECK(memcmp(a.data, b.data, 128 * sizeof(float)) == 0 && memcmp(a.data, g.data, 128 * sizeof(float)) == 0);
    tensor_free(&a), tensor_free(&b), tensor_free(&g);
    purifier_free(p);
}

/* DDIM with no_forward: the chain starts from x itself, so P(x) is a
 * deterministic function of x: the same bits under any ω, and per image. */
static void test_ddim_deterministic(unet *u) {
    purify_config c = {.kind = PURIFY_DDIM, .t_star = 6, .stride = 2, .no_forward = 1, .clamp_out = 1};
    purifier *p = purifier_new(u, &c);
    Tensor x = tensor_new(3, 1, 8, 8), y = tensor_new(3, 1, 8, 8), y2 = tensor_new(3, 1, 8, 8);
    Tensor y1 = tensor_new(1, 1, 8, 8), xm = tensor_new(3, 1, 8, 8);
    for (size_t i = 0; i < tensor_numel(&x); i++) x.data[i] = urandf();
    uint64_t om[3] = {1, 2, 3}, om2[3] = {77, 1u << 20, 9};
    int64_t im[3] = {100, 101, 102};
    purifier_forward(p, &x, om, im, 0, &y, &xm);
    purifier_forward(p, &x, om2, im, 0, &y2, NULL);
    CHECK_MSG(memcmp(y.data, y2.data, 3 * 64 * sizeof(float)) == 0, "ddim forward:false: two seeds, identical P(x)");
    CHECK_LE(rel_l2(xm.data, x.data, 3 * 64), 1e-6, "ddim forward:false: the max state is x (through 2x − 1 and back)");
    CHECK_LE(1e-3, rel_l2(y.data, x.data, 3 * 64), "ddim forward:false: P(x) is not the identity");
    for (int i = 0; i < 3; i++) {
        Tensor xi = tensor_wrap(x.data + 64 * i, 1, 1, 8, 8);
        purifier_forward(p, &xi, &om[i], &im[i], 0, &y1, NULL);
        CHECK_MSG(memcmp(y1.data, y.data + 64 * i, 64 * sizeof(float)) == 0,
                  "ddim forward:false: image %d alone = inside the batch of 3", i);
    }
    CHECK_EQ_INT(purifier_steps(p), 3);
    tensor_free(&x), tensor_free(&y), tensor_free(&y2), tensor_free(&y1), tensor_free(&xm);
    purifier_free(p);
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#ifndef UNDER_ASAN
/* Heap in use after forward(keep) + backward, for t* steps, batch 2. */
static size_t heap_after(unet *u, int t_star) {
    purify_config c = {.kind = PURIFY_DDPM, .t_star = t_star, .clamp_out = 1};
    purifier *p = purifier_new(u, &c);
    Tensor x = tensor_new(2, 1, 8, 8), y = tensor_new(2, 1, 8, 8), g = tensor_new(2, 1, 8, 8);
    uint64_t om[2] = {1, 2};
    int64_t im[2] = {0, 1};
    purifier_forward(p, &x, om, im, 1, &y, NULL);
    purifier_backward(p, &y, &g);
    size_t used = mallinfo2().uordblks;
    tensor_free(&x), tensor_free(&y), tensor_free(&g);
    purifier_free(p);
    return used;
}
#endif

static void test_memory(unet *u) {
#ifdef UNDER_ASAN
    SKIP("heap-growth check not run under ASan (mallinfo2 does not see its allocator)");
    (void)u;
#else
    heap_after(u, 2); /* warm up the UNet's buffers and backend caches */
    size_t a = heap_after(u, 4), b = heap_after(u, 24);
    /* 20 more kept states of 2 × 64 floats (+ 64-byte alignment each) */
    double per_state = 2 * 64 * sizeof(float) + 64, growth = (double)b - (double)a;
    char what[160];
    snprintf(what, sizeof what, "heap growth t*=4→24: %.0f bytes for 20 states of %.0f bytes", growth, per_state);
    CHECK_LE(growth, 20 * per_state + 4096, what);
#endif
}

int main(void) {
    drq_set_threads(2);
    unet *u = tiny_unet();
    CHECK_MSG(u != NULL, "%s: %p", "u != NULL", (void *)(u));
    if (!u) return CHECK_DONE();
    fd_case(u, "ddpm fixedlarge t*=3", (purify_config){.kind = PURIFY_DDPM, .t_star = 3});
    fd_case(u, "ddpm fixedsmall t*=3", (purify_config){.kind = PURIFY_DDPM, .t_star = 3, .var_small = 1});
    fd_case(u, "ddpm t*=30 (later steps)", (purify_config){.kind = PURIFY_DDPM, .t_star = 30});
    fd_case(u, "reverse-only t*=3", (purify_config){.kind = PURIFY_REVERSE, .t_star = 3});
    fd_case(u, "ddim t*=7 stride 3", (purify_config){.kind = PURIFY_DDIM, .t_star = 7, .stride = 3});
    fd_case(u, "ddim forward:false t*=7 stride 3", (purify_config){.kind = PURIFY_DDIM, .t_star = 7, .stride = 3,
                                                                  .no_forward = 1});
    fd_case(u, "ddim forward:false t*=30", (purify_config){.kind = PURIFY_DDIM, .t_star = 30, .no_forward = 1});
    test_batch_and_omega(u);
    test_ddim_deterministic(u);
    test_memory(u);
    unet_free(u);
    return CHECK_DONE();
}
