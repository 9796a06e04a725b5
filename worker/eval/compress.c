/* compress.c — see compress.h. */
#include "worker/eval/compress.h"

#include <math.h>
#include <stdlib.h>

#include "common/rng.h"
#include "common/util.h"
#include "worker/eval/metrics.h"

float compress_amplitude(int l2, double eps, size_t d) { return (float)(l2 ? eps * sqrt(3.0 / (double)d) : eps); }

void compress_draw(uint64_t key, const float *x, size_t d, float amp, float *xu) {
    drq_uniform(key, d, -amp, amp, xu);
    for (size_t e = 0; e < d; e++) xu[e] = fminf(1.0f, fmaxf(0.0f, x[e] + xu[e]));
}

int compress_uniform(purifier *pur, const Tensor *x, const int64_t *image, uint64_t seed, int l2, double eps, int nu,
                     const Tensor *p0, double *rate) {
    int n = x->n, stopped = 0;
    size_t per = tensor_numel(x) / n;
    Tensor xu = tensor_new(n, x->c, x->h, x->w), pu = tensor_new(n, x->c, x->h, x->w);
    uint64_t *om = xmalloc(sizeof(uint64_t) * n);
    for (int i = 0; i < n; i++) om[i] = seed;
    float amp = compress_amplitude(l2, eps, per);
    for (int j = 0; j < nu && !stopped; j++) {
        for (int i = 0; i < n; i++)
            compress_draw(drq_key(seed, (uint64_t)image[i], drq_stream_uniform_delta((unsigned)j)), x->data + i * per,
                          per, amp, xu.data + i * per);
        purifier_forward(pur, &xu, om, image, 0, &pu, NULL);
        if ((stopped = purifier_stopped(pur))) break;
        for (int i = 0; i < n; i++) {
            double dn = metrics_diff_l2(xu.data + i * per, x->data + i * per, per);
            rate[(size_t)i * nu + j] =
                dn > 0 ? metrics_diff_l2(pu.data + i * per, p0->data + i * per, per) / dn : NAN;
        }
    }
    free(om);
    tensor_free(&xu), tensor_free(&pu);
    return stopped;
}
