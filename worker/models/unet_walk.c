/* unet_walk.c — the node list and its walk shared by the two diffusion UNets
 * (unet_walk.h): the plain node kinds, and the skip stack forward and back.
 */
#include <stdlib.h>
#include <string.h>

#include "worker/models/unet_walk.h"

/* Every activation lives on the device of the tensor x the layer works on. */
#define ENSURE_LIKE(t, n_, c_, h_, w_) tensor_ensure_on((t), x->dev, (n_), (c_), (h_), (w_))

/* =====================================================================
 * GroupNorm and convolution parameters, the node list
 * ===================================================================== */
void unet_gnorm_bind(unet_gnorm *g, params *p, int c, const char *prefix) {
    g->gamma = params_get(p, P_ONE, SHAPE1(c), "%s.weight", prefix);
    g->beta = params_get(p, P_ZERO, SHAPE1(c), "%s.bias", prefix);
}

float *unet_gnorm_stats(unet_gnorm *g, const Tensor *x) {
    tensor_ensure_on(&g->stats, x->dev, x->n, 2 * UNET_GN_GROUPS, 1, 1);
    return g->stats.data;
}

Conv2d unet_conv_bind(params *p, int cin, int cout, int k, int stride, int pad, const char *prefix) {
    const float *w = params_get(p, P_WEIGHT, SHAPE4(cout, cin, k, k), "%s.weight", prefix);
    const float *b = params_get(p, P_BIAS, SHAPE1(cout), "%s.bias", prefix);
    Conv2d c = conv2d_make(cin, cout, k, stride, pad, w, b);
    c.bf16 = p->bf16;
    return c;
}

unet_node *unet_walk_add(unet_walk *w, unet_node_kind kind, size_t block_size) {
    w->nodes = xrealloc(w->nodes, sizeof(unet_node) * (w->n_nodes + 1));
    unet_node *nd = &w->nodes[w->n_nodes++];
    memset(nd, 0, sizeof *nd);
    nd->kind = kind;
    if (block_size) nd->block = xcalloc(1, block_size);
    return nd;
}

void unet_walk_finish(unet_walk *w) {
    w->skips = xcalloc(w->n_slots, sizeof *w->skips);
    w->gskip = xcalloc(w->n_slots, sizeof *w->gskip);
}

void unet_walk_free(unet_walk *w, void (*block_free)(unet_node *nd)) {
    for (int i = 0; i < w->n_nodes; i++) {
        unet_node *nd = &w->nodes[i];
        if (nd->block) block_free(nd), free(nd->block);
        conv2d_release(&nd->conv);
        tensor_free(&nd->norm.stats);
        Tensor *ts[] = {&nd->cat, &nd->mid, &nd->tmp, &nd->out, &nd->gin, &nd->gh};
        for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) tensor_free(ts[k]);
    }
    for (int i = 0; i < w->n_slots && w->gskip; i++) tensor_free(&w->gskip[i]);
    tensor_free(&w->gtop);
    free(w->nodes), free(w->skips), free(w->gskip);
    memset(w, 0, sizeof *w);
}

/* =====================================================================
 * the plain kinds: conv in / down (a conv), up (nearest ×2, conv),
 * the head (norm, swish, conv)
 * ===================================================================== */
void unet_node_forward(unet_node *nd, const Tensor *x) {
    int n = x->n, oh, ow;
    switch (nd->kind) {
    case N_CONV_IN:
    case N_DOWN:
        conv2d_out_hw(&nd->conv, x->h, x->w, &oh, &ow);
        ENSURE_LIKE(&nd->out, n, nd->conv.cout, oh, ow);
        conv2d_forward(&nd->conv, x, &nd->out);
        break;
    case N_UP:
        ENSURE_LIKE(&nd->mid, n, x->c, 2 * x->h, 2 * x->w);
        ENSURE_LIKE(&nd->out, n, nd->conv.cout, 2 * x->h, 2 * x->w);
        upsample2x_forward(x, &nd->mid);
        conv2d_forward(&nd->conv, &nd->mid, &nd->out);
        break;
    case N_OUT:
        ENSURE_LIKE(&nd->mid, n, x->c, x->h, x->w);
        ENSURE_LIKE(&nd->tmp, n, x->c, x->h, x->w);
        ENSURE_LIKE(&nd->out, n, nd->conv.cout, x->h, x->w);
        group_norm_swish_forward(x, NULL, UNET_GN_GROUPS, nd->eps, nd->norm.gamma, nd->norm.beta, &nd->mid, &nd->tmp,
                                 unet_gnorm_stats(&nd->norm, x));
        conv2d_forward(&nd->conv, &nd->tmp, &nd->out);
        break;
    case N_RES:
    case N_ATTN: DIE("unet_node_forward: a block node (the model's own)");
    }
}

/* nd->gin is shaped like nd->x already (the walk does it). */
void unet_node_backward(unet_node *nd, const Tensor *g) {
    const Tensor *x = nd->x;
    switch (nd->kind) {
    case N_CONV_IN:
    case N_DOWN: conv2d_backward_input(&nd->conv, g, &nd->gin); break;
    case N_UP:
        conv2d_backward_input(&nd->conv, g, &nd->mid); /* mid: free after forward */
        upsample2x_backward_input(&nd->mid, &nd->gin);
        break;
    case N_OUT:
        conv2d_backward_input(&nd->conv, g, &nd->tmp);
        group_norm_swish_backward_input(x, NULL, &nd->mid, &nd->tmp, UNET_GN_GROUPS, nd->norm.gamma,
                                        nd->norm.stats.data, &nd->gin);
        break;
    case N_RES:
    case N_ATTN: DIE("unet_node_backward: a block node (the model's own)");
    }
}

/* =====================================================================
 * the walk: forward through the list, concatenating popped skips; backward
 * in reverse, adding the skip gradients where outputs were pushed
 * ===================================================================== */
void unet_walk_forward(unet_walk *w, const unet_hooks *hk, const Tensor *x, Tensor *out) {
    int n = x->n;
    const Tensor *h = x;
    for (int i = 0; i < w->n_nodes; i++) {
        unet_node *nd = &w->nodes[i];
        if (nd->pop) {
            const Tensor *s = w->skips[nd->slot];
            ENSURE_LIKE(&nd->cat, n, h->c + s->c, h->h, h->w);
            concat_forward(h, s, &nd->cat);
            h = &nd->cat;
        }
        nd->x = h;
        hk->forward(hk->model, nd, h);
        h = &nd->out;
        if (nd->push) w->skips[nd->slot] = h;
    }
    tensor_copy(out, h);
}

static void grad_take(const unet_hooks *hk, Tensor *dst) {
    if (hk->grad_take) hk->grad_take(hk->model, dst);
}

static Tensor *grad_pass(const unet_hooks *hk, Tensor *g, Tensor *next) {
    return hk->grad_pass ? hk->grad_pass(hk->model, g, next) : next;
}

void unet_walk_backward(unet_walk *w, const unet_hooks *hk, const Tensor *gout, Tensor *gx, const char *who) {
    const Tensor *x = gout; /* for ENSURE_LIKE's device */
    tensor_assign(&w->gtop, gout->dev, gout);
    Tensor *g = &w->gtop;
    for (int i = w->n_nodes - 1; i >= 0; i--) {
        unet_node *nd = &w->nodes[i];
        if (nd->push) add_forward(g, &w->gskip[nd->slot], g); /* the output also fed a skip */
        grad_take(hk, &nd->gin);
        const Tensor *xi = nd->x;
        tensor_ensure_on(&nd->gin, xi->dev, xi->n, xi->c, xi->h, xi->w);
        hk->backward(hk->model, nd, g);
        g = grad_pass(hk, g, &nd->gin);
        if (nd->pop) {
            const Tensor *s = w->skips[nd->slot];
            grad_take(hk, &nd->gh);
            ENSURE_LIKE(&nd->gh, g->n, g->c - s->c, g->h, g->w);
            ENSURE_LIKE(&w->gskip[nd->slot], s->n, s->c, s->h, s->w);
            concat_backward_input(g, &nd->gh, &w->gskip[nd->slot]);
            g = grad_pass(hk, g, &nd->gh);
        }
    }
    if (!tensor_same_shape(g, gx)) DIE("%s: gx shape does not match the last forward's x", who);
    tensor_copy(gx, g);
    grad_pass(hk, g, NULL);
}
