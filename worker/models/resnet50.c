/* resnet50.c — torchvision's ResNet-50 (v1.5: the stride sits on the 3×3
 * conv of a Bottleneck), the ImageNet classifier of RobustBench's
 * "Standard_R50", docs/design.md §Models: forward logits and their input-VJP.
 *
 *   x in [0,1] → (x − mean)/std per channel (ImageNet's, inside the model)
 *   → conv1 7×7/2 → bn1 → relu → maxpool 3×3/2 pad 1
 *   → layer1..layer4: layers[i] Bottlenecks of width·2^i channels (×4 out),
 *     strides 1, 2, 2, 2 → global average pool → fc
 * BatchNorm is folded into a per-channel scale and shift at load time
 * (inference form, eps 1e-5); the input normalisation is one more such
 * affine map (scale 1/std, shift −mean/std).
 *
 * Weights bind by torchvision's state_dict names (conv1.weight,
 * layer2.0.downsample.1.running_var, fc.bias, …); a file saved from
 * RobustBench's wrapped model (model.… , module.… , module.model.…) binds
 * too, and its normalize.mean / normalize.std buffers, when present, must
 * be ImageNet's (they are checked, not used).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "worker/models/bnorm.h"
#include "worker/models/models.h"
#include "worker/models/params.h"

#define EXPANSION 4

static const float IMAGENET_MEAN[3] = {0.485f, 0.456f, 0.406f};
static const float IMAGENET_STD[3] = {0.229f, 0.224f, 0.225f};
/* the key prefixes RobustBench's loader strips ("module." of DataParallel,
 * "model." of its normalising wrapper), tried in this order */
static const char *const PREFIXES[] = {"module.model.", "model.", "module.", NULL};

/* =====================================================================
 * Bottleneck (torchvision v1.5, post-activation):
 *   t1 = relu(bn1(conv1 1×1 (x)))
 *   t2 = relu(bn2(conv2 3×3 stride s (t1)))
 *   out = relu(bn3(conv3 1×1 (t2)) + shortcut(x)),
 *   shortcut = bn(downsample conv 1×1 stride s (x)) when the shape changes,
 *   x otherwise.
 * ===================================================================== */
typedef struct {
    int cin, width, cout, stride, has_down;
    Conv2d conv1, conv2, conv3, down;
    bnorm bn1, bn2, bn3, bnd;
    Tensor t1, t2, out; /* saved: relu outputs (their sign is the mask) */
} block;

/* Scratch shared by every block (grown once to the largest shape). */
typedef struct {
    Tensor sc;            /* forward: the downsample branch */
    Tensor gm, g1, g2, gd; /* backward: masked gout, grads at t1 / t2, downsample branch */
} scratch;

static void block_forward(block *b, const Tensor *x, scratch *s) {
    int n = x->n, oh, ow;
    conv2d_out_hw(&b->conv2, x->h, x->w, &oh, &ow);
    tensor_ensure_on(&b->t1, x->dev, n, b->width, x->h, x->w);
    tensor_ensure_on(&b->t2, x->dev, n, b->width, oh, ow);
    tensor_ensure_on(&b->out, x->dev, n, b->cout, oh, ow);
    conv2d_forward(&b->conv1, x, &b->t1);
    batch_norm_forward(&b->t1, b->bn1.scale, b->bn1.shift, &b->t1);
    relu_forward(&b->t1, &b->t1);
    conv2d_forward(&b->conv2, &b->t1, &b->t2);
    batch_norm_forward(&b->t2, b->bn2.scale, b->bn2.shift, &b->t2);
    relu_forward(&b->t2, &b->t2);
    conv2d_forward(&b->conv3, &b->t2, &b->out);
    batch_norm_forward(&b->out, b->bn3.scale, b->bn3.shift, &b->out);
    if (b->has_down) {
        tensor_ensure_on(&s->sc, x->dev, n, b->cout, oh, ow);
        conv2d_forward(&b->down, x, &s->sc);
        batch_norm_forward(&s->sc, b->bnd.scale, b->bnd.shift, &s->sc);
        add_forward(&b->out, &s->sc, &b->out);
    } else {
        add_forward(&b->out, x, &b->out);
    }
    relu_forward(&b->out, &b->out);
}

/* gx (x's shape) from gout (out's shape); gx must not alias gout. */
static void block_backward(block *b, const Tensor *x, const Tensor *gout, Tensor *gx, scratch *s) {
    int n = x->n;
    drq_device dev = x->dev;
    tensor_ensure_on(&s->gm, dev, n, b->cout, gout->h, gout->w);
    tensor_ensure_on(&s->g2, dev, n, b->width, b->t2.h, b->t2.w);
    tensor_ensure_on(&s->g1, dev, n, b->width, x->h, x->w);
    tensor_ensure_on(gx, dev, n, b->cin, x->h, x->w);
    relu_backward_input(&b->out, gout, &s->gm);
    /* the shortcut's share goes into gx first */
    if (b->has_down) {
        tensor_ensure_on(&s->gd, dev, n, b->cout, gout->h, gout->w);
        batch_norm_backward_input(&s->gm, b->bnd.scale, &s->gd);
        conv2d_backward_input(&b->down, &s->gd, gx);
    } else {
        tensor_copy(gx, &s->gm);
    }
    batch_norm_backward_input(&s->gm, b->bn3.scale, &s->gm);
    conv2d_backward_input(&b->conv3, &s->gm, &s->g2);
    relu_backward_input(&b->t2, &s->g2, &s->g2);
    batch_norm_backward_input(&s->g2, b->bn2.scale, &s->g2);
    conv2d_backward_input(&b->conv2, &s->g2, &s->g1);
    relu_backward_input(&b->t1, &s->g1, &s->g1);
    batch_norm_backward_input(&s->g1, b->bn1.scale, &s->g1);
    /* conv1's VJP into the scratch the downsample branch no longer needs */
    Tensor *gmain = &s->sc;
    tensor_ensure_on(gmain, dev, n, b->cin, x->h, x->w);
    conv2d_backward_input(&b->conv1, &s->g1, gmain);
    add_forward(gx, gmain, gx);
}

static void block_free(block *b) {
    conv2d_release(&b->conv1), conv2d_release(&b->conv2), conv2d_release(&b->conv3), conv2d_release(&b->down);
    bn_free(&b->bn1), bn_free(&b->bn2), bn_free(&b->bn3), bn_free(&b->bnd);
    tensor_free(&b->t1), tensor_free(&b->t2), tensor_free(&b->out);
}

struct resnet50 {
    resnet50_config cfg;
    params p;
    float norm_hscale[3], norm_hshift[3];
    const float *norm_scale, *norm_shift; /* on the device */
    Conv2d conv1;
    bnorm bn1;
    block *blocks;
    int n_blocks, feat;
    const float *fc_w, *fc_b;
    scratch s;
    Tensor xn, stem, pool, pooled; /* saved: normalised x (scratch), relu(bn1(conv1)), maxpool output, features */
    Tensor gp, gh, ga, gb;         /* backward */
    int x_n, x_h, x_w;             /* the last forward's input shape */
};

/* Checks RobustBench's normalize.mean / normalize.std buffers when the file
 * has them (shape [1, 3, 1, 1]): they must be ImageNet's. */
static void check_normalizer(params *p) {
    if (!p->file || p->failed) return;
    static const char *const names[2] = {"normalize.mean", "normalize.std"};
    for (int k = 0; k < 2; k++) {
        if (!params_has(p, names[k])) continue;
        const float *v = params_get_host(p, P_ZERO, SHAPE4(1, 3, 1, 1), "%s", names[k]);
        const float *want = k ? IMAGENET_STD : IMAGENET_MEAN;
        for (int c = 0; c < 3 && !p->failed; c++)
            if (fabsf(v[c] - want[c]) > 4e-3f) { /* BF16 storage rounds by up to 2e-3 */
                p->failed = 1;
                drq_errf(p->err,
                         "resnet50 weights: tensor '%s'[%d] is %.6g, but the model normalises with ImageNet's "
                         "%.3f (mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225)",
                         names[k], c, v[c], want[c]);
            }
    }
}

resnet50 *resnet50_load(const resnet50_config *c, st_file *weights, uint64_t seed, drq_device dev, drq_err *err) {
    resnet50 *m = xcalloc(1, sizeof *m);
    char nm[160];
    m->cfg = *c;
    params_init(&m->p, weights, seed, "resnet50", err);
    m->p.dev = dev;
    m->p.prefixes = PREFIXES;
    params *p = &m->p;
    for (int i = 0; i < 3; i++) {
        m->norm_hscale[i] = 1.0f / IMAGENET_STD[i];
        m->norm_hshift[i] = -IMAGENET_MEAN[i] / IMAGENET_STD[i];
    }
    m->norm_scale = params_on_device(p, m->norm_hscale, 3);
    m->norm_shift = params_on_device(p, m->norm_hshift, 3);
    check_normalizer(p);
    m->conv1 = conv_nobias(p, 3, c->width, 7, 2, 3, "conv1.weight");
    bn_bind(&m->bn1, p, c->width, "bn1");
    for (int l = 0; l < 4; l++) m->n_blocks += c->layers[l];
    m->blocks = xcalloc(m->n_blocks, sizeof(block));
    int cin = c->width, k = 0;
    for (int l = 0; l < 4; l++)
        for (int i = 0; i < c->layers[l]; i++, k++) {
            block *b = &m->blocks[k];
            b->cin = cin;
            b->width = c->width << l;
            b->cout = b->width * EXPANSION;
            b->stride = i == 0 && l > 0 ? 2 : 1;
            b->has_down = b->stride != 1 || b->cin != b->cout;
            snprintf(nm, sizeof nm, "layer%d.%d.conv1.weight", l + 1, i);
            b->conv1 = conv_nobias(p, b->cin, b->width, 1, 1, 0, nm);
            snprintf(nm, sizeof nm, "layer%d.%d.bn1", l + 1, i), bn_bind(&b->bn1, p, b->width, nm);
            snprintf(nm, sizeof nm, "layer%d.%d.conv2.weight", l + 1, i);
            b->conv2 = conv_nobias(p, b->width, b->width, 3, b->stride, 1, nm);
            snprintf(nm, sizeof nm, "layer%d.%d.bn2", l + 1, i), bn_bind(&b->bn2, p, b->width, nm);
            snprintf(nm, sizeof nm, "layer%d.%d.conv3.weight", l + 1, i);
            b->conv3 = conv_nobias(p, b->width, b->cout, 1, 1, 0, nm);
            snprintf(nm, sizeof nm, "layer%d.%d.bn3", l + 1, i), bn_bind(&b->bn3, p, b->cout, nm);
            if (b->has_down) {
                snprintf(nm, sizeof nm, "layer%d.%d.downsample.0.weight", l + 1, i);
                b->down = conv_nobias(p, b->cin, b->cout, 1, b->stride, 0, nm);
                snprintf(nm, sizeof nm, "layer%d.%d.downsample.1", l + 1, i), bn_bind(&b->bnd, p, b->cout, nm);
            }
            cin = b->cout;
        }
    m->feat = cin;
    m->fc_w = params_get(p, P_WEIGHT, SHAPE2(c->num_classes, m->feat), "fc.weight");
    m->fc_b = params_get(p, P_BIAS, SHAPE1(c->num_classes), "fc.bias");
    if (params_finish(p)) {
        resnet50_free(m);
        return NULL;
    }
    return m;
}

drq_device resnet50_device(const resnet50 *m) { return m->p.dev; }
int resnet50_num_classes(const resnet50 *m) { return m->cfg.num_classes; }

size_t resnet50_param_count(const resnet50 *m) {
    /* params also counted the BN running statistics (buffers, not
     * parameters) and any normalize.* buffers: count PyTorch's parameters() */
    size_t n = (size_t)m->conv1.cout * 3 * 49 + 2 * (size_t)m->bn1.c;
    for (int i = 0; i < m->n_blocks; i++) {
        const block *b = &m->blocks[i];
        n += (size_t)b->width * b->cin + (size_t)b->width * b->width * 9 + (size_t)b->cout * b->width;
        n += 2 * (size_t)(2 * b->width + b->cout);
        if (b->has_down) n += (size_t)b->cout * b->cin + 2 * (size_t)b->cout;
    }
    return n + (size_t)m->cfg.num_classes * (m->feat + 1);
}

void resnet50_forward(resnet50 *m, const Tensor *x, Tensor *logits) {
    const resnet50_config *c = &m->cfg;
    int n = x->n;
    if (x->c != 3 || logits->n != n || logits->c * logits->h * logits->w != c->num_classes)
        DIE("resnet50_forward: input %dx%dx%dx%d / logits %dx%d do not match the config (3 channels, classes %d)",
            x->n, x->c, x->h, x->w, logits->n, logits->c, c->num_classes);
    if (x->dev != m->p.dev || logits->dev != m->p.dev)
        DIE("resnet50_forward: tensors on %s, the model on %s", drq_device_name(x->dev), drq_device_name(m->p.dev));
    drq_device dev = x->dev;
    int sh, sw;
    conv2d_out_hw(&m->conv1, x->h, x->w, &sh, &sw);
    int ph = maxpool2d_out(sh, 3, 2, 1), pw = maxpool2d_out(sw, 3, 2, 1);
    m->x_n = n, m->x_h = x->h, m->x_w = x->w;
    tensor_ensure_on(&m->xn, dev, n, 3, x->h, x->w);
    tensor_ensure_on(&m->stem, dev, n, c->width, sh, sw);
    tensor_ensure_on(&m->pool, dev, n, c->width, ph, pw);
    batch_norm_forward(x, m->norm_scale, m->norm_shift, &m->xn);
    conv2d_forward(&m->conv1, &m->xn, &m->stem);
    batch_norm_forward(&m->stem, m->bn1.scale, m->bn1.shift, &m->stem);
    relu_forward(&m->stem, &m->stem);
    maxpool2d_forward(&m->stem, 3, 2, 1, &m->pool);
    const Tensor *h = &m->pool;
    for (int i = 0; i < m->n_blocks; i++) {
        block_forward(&m->blocks[i], h, &m->s);
        h = &m->blocks[i].out;
    }
    tensor_ensure_on(&m->pooled, dev, n, m->feat, 1, 1);
    avgpool_global_forward(h, &m->pooled);
    linear_forward(m->fc_w, m->fc_b, m->feat, c->num_classes, &m->pooled, logits);
}

void resnet50_backward(resnet50 *m, const Tensor *glogits, Tensor *gx) {
    int n = glogits->n;
    drq_device dev = glogits->dev;
    if (n != m->x_n || gx->n != n || gx->c != 3 || gx->h != m->x_h || gx->w != m->x_w)
        DIE("resnet50_backward: glogits n %d / gx %dx%dx%dx%d do not match the last forward's x %dx3x%dx%d", n, gx->n,
            gx->c, gx->h, gx->w, m->x_n, m->x_h, m->x_w);
    const Tensor *last = &m->blocks[m->n_blocks - 1].out;
    tensor_ensure_on(&m->gp, dev, n, m->feat, 1, 1);
    tensor_ensure_on(&m->gh, dev, n, m->feat, last->h, last->w);
    linear_backward_input(m->fc_w, m->feat, m->cfg.num_classes, glogits, &m->gp);
    avgpool_global_backward_input(&m->gp, &m->gh);
    /* ping-pong through the blocks in reverse */
    Tensor *g = &m->gh, *bufs[2] = {&m->ga, &m->gb};
    for (int i = m->n_blocks - 1; i >= 0; i--) {
        const Tensor *in = i ? &m->blocks[i - 1].out : &m->pool;
        Tensor *gin = bufs[i & 1];
        block_backward(&m->blocks[i], in, g, gin, &m->s);
        g = gin;
    }
    /* stem: maxpool, relu, bn1, conv1, normalisation */
    Tensor *gs = g == &m->ga ? &m->gb : &m->ga;
    tensor_ensure_on(gs, dev, n, m->cfg.width, m->stem.h, m->stem.w);
    maxpool2d_backward_input(&m->stem, g, 3, 2, 1, gs);
    relu_backward_input(&m->stem, gs, gs);
    batch_norm_backward_input(gs, m->bn1.scale, gs);
    conv2d_backward_input(&m->conv1, gs, &m->xn); /* xn is scratch now */
    batch_norm_backward_input(&m->xn, m->norm_scale, gx);
}

void resnet50_free(resnet50 *m) {
    if (!m) return;
    for (int i = 0; i < m->n_blocks; i++) block_free(&m->blocks[i]);
    free(m->blocks);
    conv2d_release(&m->conv1);
    bn_free(&m->bn1);
    Tensor *ts[] = {&m->s.sc, &m->s.gm, &m->s.g1, &m->s.g2, &m->s.gd, &m->xn, &m->stem, &m->pool,
                    &m->pooled, &m->gp, &m->gh, &m->ga, &m->gb};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) tensor_free(ts[k]);
    params_free(&m->p);
    free(m);
}
