/* test_batch_invariance.c — drq promises rows that do not depend on the
 * batch size, bit for bit.  The risk is in the convolutions: a library may
 * pick a different kernel or blocking by minibatch (oneDNN's Winograd does,
 * which is why it is opt-in).  Here, on the CIFAR-10 UNet's and WRN-28-10's
 * convolution shapes, image 0's output (forward) and input gradient
 * (backward-data) must be bit-identical at batch 1, 2, 3, 5, 8 and 13.
 */
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"
#include "../kernels/ops.h"
#include "check.h"

typedef struct {
    const char *name;
    int cin, cout, k, stride, pad_t, pad_l, pad_b, pad_r, h;
} shape;

int main(void) {
    drq_set_threads(2);
    static const shape shapes[] = {
        {"unet 3x3 128 @32", 128, 128, 3, 1, 1, 1, 1, 1, 32},
        {"unet 3x3 256 @8", 256, 256, 3, 1, 1, 1, 1, 1, 8},
        {"unet 3x3 256 @4", 256, 256, 3, 1, 1, 1, 1, 1, 4},
        {"unet down 3x3 s2 pad(0,0,1,1) @16", 256, 256, 3, 2, 0, 0, 1, 1, 16},
        {"unet nin 1x1 384>256 @16", 384, 256, 1, 1, 0, 0, 0, 0, 16},
        {"unet conv_in 3>128 @32", 3, 128, 3, 1, 1, 1, 1, 1, 32},
        {"wrn 3x3 160>320 s2 @32", 160, 320, 3, 2, 1, 1, 1, 1, 32},
        {"wrn 3x3 640 @8", 640, 640, 3, 1, 1, 1, 1, 1, 8},
    };
    static const int batches[] = {1, 2, 3, 5, 8, 13};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const shape *sh = &shapes[s];
        size_t nw = (size_t)sh->cout * sh->cin * sh->k * sh->k;
        float *w = xmalloc(nw * sizeof(float)), *b = xmalloc(sh->cout * sizeof(float));
        for (size_t i = 0; i < nw; i++) w[i] = (float)((int)(i * 7919 % 1001) - 500) / 8000.0f;
        for (int i = 0; i < sh->cout; i++) b[i] = 0.01f * (float)i;
        Conv2d c = conv2d_make(sh->cin, sh->cout, sh->k, sh->stride, 0, w, b);
        c.pad_t = sh->pad_t, c.pad_l = sh->pad_l, c.pad_b = sh->pad_b, c.pad_r = sh->pad_r;
        int oh, ow;
        conv2d_out_hw(&c, sh->h, sh->h, &oh, &ow);
        Tensor x = tensor_new(13, sh->cin, sh->h, sh->h), gy = tensor_new(13, sh->cout, oh, ow);
        for (size_t i = 0; i < tensor_numel(&x); i++) x.data[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
        for (size_t i = 0; i < tensor_numel(&gy); i++) gy.data[i] = (float)((i * 40503u) % 997) / 997.0f - 0.5f;
        size_t pery = (size_t)sh->cout * oh * ow, perx = (size_t)sh->cin * sh->h * sh->h;
        float *y1 = xmalloc(pery * sizeof(float)), *g1 = xmalloc(perx * sizeof(float));
        for (size_t k = 0; k < sizeof batches / sizeof batches[0]; k++) {
            int n = batches[k];
            Tensor xn = tensor_wrap(x.data, n, sh->cin, sh->h, sh->h), gyn = tensor_wrap(gy.data, n, sh->cout, oh, ow);
            Tensor y = tensor_new(n, sh->cout, oh, ow), gx = tensor_new(n, sh->cin, sh->h, sh->h);
            conv2d_forward(&c, &xn, &y);
            conv2d_backward_input(&c, &gyn, &gx);
            if (n == 1) {
                memcpy(y1, y.data, pery * sizeof(float));
                memcpy(g1, gx.data, perx * sizeof(float));
            } else {
                CHECK_MSG(!memcmp(y1, y.data, pery * sizeof(float)), "%s: forward of image 0 differs at batch %d",
                          sh->name, n);
                CHECK_MSG(!memcmp(g1, gx.data, perx * sizeof(float)),
                          "%s: backward-data of image 0 differs at batch %d", sh->name, n);
            }
            tensor_free(&y), tensor_free(&gx);
        }
        conv2d_release(&c);
        tensor_free(&x), tensor_free(&gy);
        free(w), free(b), free(y1), free(g1);
    }
    return CHECK_DONE();
}
