/* wrn.c — the WideResNet of RobustBench's CIFAR-10 "Standard" model,
 * docs/design.md §Models: forward logits and their input-VJP.
 *
 * Input in [0,1], no normalisation.  conv1 (3×3, 16 ch) → three groups of
 * (depth−4)/6 pre-activation BasicBlocks (16k, 32k, 64k channels; strides
 * 1, 2, 2) → relu(bn1) → global average pool → fc.  BatchNorm is folded into
 * a per-channel scale and shift at load time (inference form, eps 1e-5).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "worker/models/bnorm.h"
#include "worker/models/models.h"
#include "worker/models/params.h"

/* =====================================================================
 * BasicBlock (pre-activation):
 *   a1 = relu(bn1(x)); o = conv2(relu(bn2(conv1(a1))))
 *   out = x + o                     when in == out channels
 *   out = convShortcut(a1) + o      otherwise (1×1, stride s)
 * ===================================================================== */
typedef struct {
    int cin, cout, stride, equal;
    bnorm bn1, bn2;
    Conv2d conv1, conv2, shortcut;
    Tensor a1;  /* relu(bn1(x))          saved */
    Tensor a2;  /* relu(bn2(conv1(a1)))  saved */
    Tensor tmp, ga, gb;
} block;

static void block_forward(block *b, const Tensor *x, Tensor *out) {
    int n = x->n, oh, ow;
    conv2d_out_hw(&b->conv1, x->h, x->w, &oh, &ow);
    tensor_ensure_on(&b->a1, x->dev, n, b->cin, x->h, x->w);
    tensor_ensure_on(&b->a2, x->dev, n, b->cout, oh, ow);
    tensor_ensure_on(&b->tmp, x->dev, n, b->cout, oh, ow);
    tensor_ensure_on(out, x->dev, n, b->cout, oh, ow);
    batch_norm_forward(x, b->bn1.scale, b->bn1.shift, &b->a1);
    relu_forward(&b->a1, &b->a1);
    conv2d_forward(&b->conv1, &b->a1, &b->tmp);
    batch_norm_forward(&b->tmp, b->bn2.scale, b->bn2.shift, &b->a2);
    relu_forward(&b->a2, &b->a2);
    conv2d_forward(&b->conv2, &b->a2, out);
    if (b->equal) {
        add_forward(out, x, out);
    } else {
        conv2d_forward(&b->shortcut, &b->a1, &b->tmp);
        add_forward(out, &b->tmp, out);
    }
}

/* relu_backward_input tests its first argument > 0; relu's output has the
 * same sign pattern as its input, so the saved a1/a2 serve. */
static void block_backward(block *b, const Tensor *x, const Tensor *gout, Tensor *gx) {
    int n = x->n;
    tensor_ensure_on(&b->ga, x->dev, n, b->cout, gout->h, gout->w);
    tensor_ensure_on(&b->gb, x->dev, n, b->cin, x->h, x->w);
    tensor_ensure_on(gx, x->dev, n, b->cin, x->h, x->w);
    conv2d_backward_input(&b->conv2, gout, &b->ga);
    relu_backward_input(&b->a2, &b->ga, &b->ga);
    batch_norm_backward_input(&b->ga, b->bn2.scale, &b->ga);
    conv2d_backward_input(&b->conv1, &b->ga, &b->gb);
    if (!b->equal) {
        conv2d_backward_input(&b->shortcut, gout, gx);
        add_forward(&b->gb, gx, &b->gb);
    }
    relu_backward_input(&b->a1, &b->gb, &b->gb);
    batch_norm_backward_input(&b->gb, b->bn1.scale, gx);
    if (b->equal) add_forward(gx, gout, gx);
}

struct wrn {
    wrn_config cfg;
    params p;
    Conv2d conv1;
    block *blocks;
    int n_blocks;
    bnorm bn1;
    const float *fc_w, *fc_b;
    int feat;
    Tensor h0;               /* conv1 output */
    Tensor *outs;            /* block outputs */
    Tensor head, pooled;     /* relu(bn1(h)) saved, pooled features */
    Tensor g0, g1, gh, gp;   /* backward */
    const Tensor *x;
};

wrn *wrn_load(const wrn_config *c, st_file *weights, uint64_t seed, drq_err *err) {
    return wrn_load_on(c, weights, seed, DRQ_CPU, err);
}

drq_device wrn_device(const wrn *m) { return m->p.dev; }

wrn *wrn_load_on(const wrn_config *c, st_file *weights, uint64_t seed, drq_device dev, drq_err *err) {
    wrn *m = xcalloc(1, sizeof *m);
    char nm[160];
    m->cfg = *c;
    params_init(&m->p, weights, seed, "wrn", err);
    m->p.dev = dev;
    params *p = &m->p;
    int per = (c->depth - 4) / 6, chs[4] = {16, 16 * c->widen, 32 * c->widen, 64 * c->widen};
    m->conv1 = conv_nobias(p, c->in_channels, chs[0], 3, 1, 1, "conv1.weight");
    m->n_blocks = 3 * per;
    m->blocks = xcalloc(m->n_blocks, sizeof(block));
    m->outs = xcalloc(m->n_blocks, sizeof(Tensor));
    for (int g = 0; g < 3; g++)
        for (int l = 0; l < per; l++) {
            block *b = &m->blocks[g * per + l];
            b->cin = l == 0 ? chs[g] : chs[g + 1];
            b->cout = chs[g + 1];
            b->stride = l == 0 && g > 0 ? 2 : 1;
            b->equal = b->cin == b->cout;
            snprintf(nm, sizeof nm, "block%d.layer.%d.bn1", g + 1, l), bn_bind(&b->bn1, p, b->cin, nm);
            snprintf(nm, sizeof nm, "block%d.layer.%d.conv1.weight", g + 1, l);
            b->conv1 = conv_nobias(p, b->cin, b->cout, 3, b->stride, 1, nm);
            snprintf(nm, sizeof nm, "block%d.layer.%d.bn2", g + 1, l), bn_bind(&b->bn2, p, b->cout, nm);
            snprintf(nm, sizeof nm, "block%d.layer.%d.conv2.weight", g + 1, l);
            b->conv2 = conv_nobias(p, b->cout, b->cout, 3, 1, 1, nm);
            if (!b->equal) {
                snprintf(nm, sizeof nm, "block%d.layer.%d.convShortcut.weight", g + 1, l);
                b->shortcut = conv_nobias(p, b->cin, b->cout, 1, b->stride, 0, nm);
            }
        }
    m->feat = chs[3];
    bn_bind(&m->bn1, p, m->feat, "bn1");
    m->fc_w = params_get(p, P_WEIGHT, SHAPE2(c->num_classes, m->feat), "fc.weight");
    m->fc_b = params_get(p, P_BIAS, SHAPE1(c->num_classes), "fc.bias");
    if (params_finish(p)) {
        wrn_free(m);
        return NULL;
    }
    return m;
}

size_t wrn_param_count(const wrn *m) {
    /* params counts the BN running statistics too (buffers, not parameters):
     * subtract them so the figure matches PyTorch's parameters(). */
    size_t bn_buffers = 2 * (size_t)m->feat;
    for (int i = 0; i < m->n_blocks; i++) bn_buffers += 2 * (size_t)(m->blocks[i].cin + m->blocks[i].cout);
    return m->p.count - bn_buffers;
}

int wrn_num_classes(const wrn *m) { return m->cfg.num_classes; }
int wrn_in_channels(const wrn *m) { return m->cfg.in_channels; }

void wrn_forward(wrn *m, const Tensor *x, Tensor *logits) {
    const wrn_config *c = &m->cfg;
    int n = x->n;
    if (x->c != c->in_channels || logits->n != n || logits->c * logits->h * logits->w != c->num_classes)
        DIE("wrn_forward: input %dx%dx%dx%d / logits %dx%d do not match the config (in %d, classes %d)", x->n, x->c,
            x->h, x->w, logits->n, logits->c, c->in_channels, c->num_classes);
    if (x->dev != m->p.dev || logits->dev != m->p.dev)
        DIE("wrn_forward: tensors on %s, the model on %s", drq_device_name(x->dev), drq_device_name(m->p.dev));
    m->x = x;
    tensor_ensure_on(&m->h0, x->dev, n, 16, x->h, x->w);
    conv2d_forward(&m->conv1, x, &m->h0);
    const Tensor *h = &m->h0;
    for (int i = 0; i < m->n_blocks; i++) {
        block_forward(&m->blocks[i], h, &m->outs[i]);
        h = &m->outs[i];
    }
    tensor_ensure_on(&m->head, x->dev, n, m->feat, h->h, h->w);
    tensor_ensure_on(&m->pooled, x->dev, n, m->feat, 1, 1);
    batch_norm_forward(h, m->bn1.scale, m->bn1.shift, &m->head);
    relu_forward(&m->head, &m->head);
    avgpool_global_forward(&m->head, &m->pooled);
    linear_forward(m->fc_w, m->fc_b, m->feat, c->num_classes, &m->pooled, logits);
}

void wrn_backward(wrn *m, const Tensor *glogits, Tensor *gx) {
    int n = glogits->n;
    tensor_ensure_on(&m->gp, glogits->dev, n, m->feat, 1, 1);
    tensor_ensure_on(&m->gh, glogits->dev, n, m->feat, m->head.h, m->head.w);
    linear_backward_input(m->fc_w, m->feat, m->cfg.num_classes, glogits, &m->gp);
    avgpool_global_backward_input(&m->gp, &m->gh);
    relu_backward_input(&m->head, &m->gh, &m->gh);
    batch_norm_backward_input(&m->gh, m->bn1.scale, &m->gh);
    /* ping-pong through the blocks in reverse */
    Tensor *g = &m->gh, *bufs[2] = {&m->g0, &m->g1};
    for (int i = m->n_blocks - 1; i >= 0; i--) {
        const Tensor *in = i ? &m->outs[i - 1] : &m->h0;
        Tensor *gin = bufs[i & 1];
        block_backward(&m->blocks[i], in, g, gin);
        g = gin;
    }
    if (!tensor_same_shape(gx, m->x)) DIE("wrn_backward: gx shape does not match the last forward's x");
    conv2d_backward_input(&m->conv1, g, gx);
}

void wrn_free(wrn *m) {
    if (!m) return;
    for (int i = 0; i < m->n_blocks; i++) {
        block *b = &m->blocks[i];
        conv2d_release(&b->conv1), conv2d_release(&b->conv2), conv2d_release(&b->shortcut);
        bn_free(&b->bn1), bn_free(&b->bn2);
        tensor_free(&b->a1), tensor_free(&b->a2), tensor_free(&b->tmp), tensor_free(&b->ga), tensor_free(&b->gb);
        tensor_free(&m->outs[i]);
    }
    conv2d_release(&m->conv1);
    bn_free(&m->bn1);
    Tensor *ts[] = {&m->h0, &m->head, &m->pooled, &m->g0, &m->g1, &m->gh, &m->gp};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) tensor_free(ts[k]);
    free(m->blocks), free(m->outs);
    params_free(&m->p);
    free(m);
}
