/* attack.c — see attack.h. */
#include "worker/eval/attack.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "common/util.h"
#include "kernels/ops.h"
#include "worker/eval/metrics.h"

/* Scratch of one gradient or evaluation pass.  The models may live on a GPU:
 * x is copied there, the logits come back to the host for the loss, and the
 * gradient returns to the host, so the attack's own state stays on the CPU
 * (a few KB per image per step next to t* UNet evaluations).  The buffers
 * live in attack_models and are sized once per batch shape. */
typedef struct {
    Tensor x, px, logits, glogits, gpx, gx; /* on the classifier's device */
    float *hl, *hgl;                         /* host logits and their gradient */
    uint64_t *omega;
    int cap;                                 /* images the host arrays hold */
} pass;

static pass *pass_get(const Tensor *x, attack_models *m) {
    drq_device dev = classifier_device(m->clf);
    pass *s = m->scratch ? m->scratch : (m->scratch = xcalloc(1, sizeof(pass)));
    int n = x->n;
    tensor_assign(&s->x, dev, x);
    tensor_ensure_on(&s->px, dev, n, x->c, x->h, x->w);
    tensor_ensure_on(&s->gpx, dev, n, x->c, x->h, x->w);
    tensor_ensure_on(&s->gx, dev, n, x->c, x->h, x->w);
    tensor_ensure_on(&s->logits, dev, n, m->classes, 1, 1);
    tensor_ensure_on(&s->glogits, dev, n, m->classes, 1, 1);
    if (s->cap < n) {
        free(s->hl), free(s->hgl), free(s->omega);
        s->hl = xmalloc(sizeof(float) * n * m->classes);
        s->hgl = xmalloc(sizeof(float) * n * m->classes);
        s->omega = xmalloc(sizeof(uint64_t) * n);
        s->cap = n;
    }
    return s;
}

void attack_models_release(attack_models *m) {
    pass *s = m->scratch;
    if (!s) return;
    Tensor *ts[] = {&s->x, &s->px, &s->logits, &s->glogits, &s->gpx, &s->gx};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_free(ts[i]);
    free(s->hl), free(s->hgl), free(s->omega), free(s);
    m->scratch = NULL;
}

/* Host copy of the logits of the last classifier forward. */
static const float *host_logits(pass *s) {
    drq_dev_copy(s->hl, DRQ_CPU, s->logits.data, s->logits.dev, tensor_numel(&s->logits) * sizeof(float));
    return s->hl;
}

int attack_gradient(const attack_config *a, attack_models *m, const Tensor *x, const int *label,
                    const int64_t *image, uint64_t omega, Tensor *g, int *pred) {
    pass *s = pass_get(x, m);
    for (int i = 0; i < x->n; i++) s->omega[i] = omega;
    purifier_forward(m->pur, &s->x, s->omega, image, !a->bpda, &s->px, NULL);
    if (purifier_stopped(m->pur)) return 1;
    classifier_forward(m->clf, &s->px, &s->logits);
    if (purifier_poll_stop(m->pur)) return 1; /* before the classifier's VJP */
    const float *hl = host_logits(s);
    for (int i = 0; i < x->n; i++) { /* ∂CE/∂logits = softmax − onehot */
        const float *l = hl + (size_t)i * m->classes;
        float *gl = s->hgl + (size_t)i * m->classes;
        if (pred) pred[i] = metrics_argmax(l, m->classes);
        float mx = l[metrics_argmax(l, m->classes)];
        double z = 0;
        for (int k = 0; k < m->classes; k++) z += exp((double)l[k] - mx);
        for (int k = 0; k < m->classes; k++) gl[k] = (float)(exp((double)l[k] - mx) / z) - (k == label[i]);
    }
    drq_dev_copy(s->glogits.data, s->glogits.dev, s->hgl, DRQ_CPU, tensor_numel(&s->glogits) * sizeof(float));
    classifier_backward(m->clf, &s->glogits, &s->gpx);
    if (a->bpda) tensor_copy(g, &s->gpx);
    else {
        purifier_backward(m->pur, &s->gpx, &s->gx);
        if (purifier_stopped(m->pur)) return 1;
        tensor_copy(g, &s->gx);
    }
    return 0;
}

void attack_begin(const attack_config *a, const Tensor *x, const int64_t *image, attack_state *st) {
    size_t per = tensor_numel(x) / x->n;
    st->n = x->n;
    st->step = 0;
    st->xadv = tensor_new(x->n, x->c, x->h, x->w);
    st->success_step = xmalloc(sizeof(int) * x->n);
    memcpy(st->xadv.data, x->data, tensor_numel(x) * sizeof(float));
    float *d = xmalloc(sizeof(float) * per);
    for (int i = 0; i < x->n; i++) {
        st->success_step[i] = -1;
        if (!a->random_start) continue;
        uint64_t key = drq_key(a->seed, (uint64_t)image[i], DRQ_STREAM_PGD_START);
        if (!a->l2) {
            drq_uniform(key, per, (float)-a->eps, (float)a->eps, d);
        } else { /* uniform in the L2 ball: normal direction, radius eps·u^(1/d) */
            float u;
            drq_normal(key, per, d);
            drq_uniform(drq_key(a->seed, (uint64_t)image[i], DRQ_STREAM_PGD_START_RADIUS), 1, 0.0f, 1.0f, &u);
            double nrm = metrics_diff_l2(d, NULL, per), r = a->eps * pow((double)u, 1.0 / (double)per);
            for (size_t e = 0; e < per; e++) d[e] = (float)(d[e] * (nrm > 0 ? r / nrm : 0.0));
        }
        float *xa = st->xadv.data + i * per;
        for (size_t e = 0; e < per; e++) xa[e] = fminf(1.0f, fmaxf(0.0f, xa[e] + d[e]));
    }
    free(d);
}

int attack_step(const attack_config *a, attack_models *m, const Tensor *x, const int *label, const int64_t *image,
                attack_state *st) {
    int n = x->n, k = st->step;
    size_t per = tensor_numel(x) / n;
    Tensor g = tensor_new(n, x->c, x->h, x->w), gk = {0};
    int *pred = xmalloc(sizeof(int) * n), stopped = 0;
    if (a->mode == OMEGA_EOT) {
        gk = tensor_new(n, x->c, x->h, x->w);
        for (int j = 0; j < a->eot_k; j++) {
            /* draw 0 is fresh's ω: EOT with K = 1 is exactly fresh (docs/seeds.md) */
            uint64_t om = drq_derived_seed(a->seed, DRQ_PURPOSE_FRESH, (uint64_t)k, (uint64_t)j);
            if ((stopped = attack_gradient(a, m, &st->xadv, label, image, om, &gk, j == 0 ? pred : NULL))) break;
            tensor_axpy(1.0f / (float)a->eot_k, &gk, &g);
        }
    } else {
        uint64_t om = a->mode == OMEGA_FRESH ? drq_derived_seed(a->seed, DRQ_PURPOSE_FRESH, (uint64_t)k, 0) : a->seed;
        stopped = attack_gradient(a, m, &st->xadv, label, image, om, &g, pred);
    }
    for (int i = 0; i < n && !stopped; i++) {
        if (pred[i] != label[i] && st->success_step[i] < 0) st->success_step[i] = k;
        float *xa = st->xadv.data + i * per, *gi = g.data + i * per;
        const float *x0 = x->data + i * per;
        float eps = (float)a->eps, ss = (float)a->stepsize;
        if (!a->l2) {
            for (size_t e = 0; e < per; e++) {
                float s = gi[e] > 0 ? 1.0f : gi[e] < 0 ? -1.0f : 0.0f;
                float v = fminf(x0[e] + eps, fmaxf(x0[e] - eps, xa[e] + ss * s));
                xa[e] = fminf(1.0f, fmaxf(0.0f, v));
            }
        } else {
            double gn = metrics_diff_l2(gi, NULL, per);
            float sc = gn > 0 ? (float)(a->stepsize / gn) : 0.0f;
            for (size_t e = 0; e < per; e++) xa[e] += sc * gi[e];
            double dn = metrics_diff_l2(xa, x0, per);
            float f = dn > a->eps ? (float)(a->eps / dn) : 1.0f;
            for (size_t e = 0; e < per; e++) xa[e] = fminf(1.0f, fmaxf(0.0f, x0[e] + f * (xa[e] - x0[e])));
        }
    }
    if (!stopped) st->step++;
    free(pred);
    tensor_free(&g), tensor_free(&gk);
    return stopped;
}

void attack_state_free(attack_state *st) {
    tensor_free(&st->xadv);
    free(st->success_step);
    memset(st, 0, sizeof *st);
}

/* Predictions under one ω; 1 when stopped. */
static int predict(attack_models *m, const Tensor *x, const int64_t *image, uint64_t omega, int *pred) {
    pass *s = pass_get(x, m);
    for (int i = 0; i < x->n; i++) s->omega[i] = omega;
    purifier_forward(m->pur, &s->x, s->omega, image, 0, &s->px, NULL);
    if (purifier_stopped(m->pur)) return 1;
    classifier_forward(m->clf, &s->px, &s->logits);
    const float *hl = host_logits(s);
    for (int i = 0; i < x->n; i++) pred[i] = metrics_argmax(hl + (size_t)i * m->classes, m->classes);
    return 0;
}

int attack_evaluate(const attack_config *a, attack_models *m, const Tensor *x, const int64_t *image, int *pred) {
    if (a->mode == OMEGA_FIXED || a->mode == OMEGA_TRANSFER)
        return predict(m, x, image, a->mode == OMEGA_FIXED ? a->seed : a->transfer_seed, pred);
    int n = x->n, votes = a->votes > 0 ? a->votes : 1;
    int *counts = xcalloc((size_t)n * m->classes, sizeof(int)), *p = xmalloc(sizeof(int) * n);
    for (int v = 0; v < votes; v++) {
        if (predict(m, x, image, drq_derived_seed(a->seed, DRQ_PURPOSE_FINAL, (uint64_t)v, 0), p)) {
            free(counts), free(p);
            return 1;
        }
        for (int i = 0; i < n; i++) counts[(size_t)i * m->classes + p[i]]++;
    }
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int k = 1; k < m->classes; k++)
            if (counts[(size_t)i * m->classes + k] > counts[(size_t)i * m->classes + best]) best = k;
        pred[i] = best;
    }
    free(counts), free(p);
    return 0;
}
