/* unet.c — the DDPM UNet (Ho et al. 2020), docs/design.md §Models: forward ε_θ(x, t)
 * and its input-VJP, layer by layer.
 *
 * The network is flattened at load time into a list of nodes (conv_in,
 * ResnetBlocks, AttnBlocks, down/up-sampling, the output head).  A node may
 * push its output on the skip stack (down path) or concatenate the popped
 * skip to its input (up path).  forward() walks the list saving each node's
 * activations in the node itself; backward() walks it in reverse, adding the
 * skip gradients where outputs were pushed and splitting them off where
 * inputs were concatenated.  Dropout is inactive (evaluation).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "worker/models/models.h"
#include "worker/models/params.h"

#define GN_GROUPS 32
#define GN_EPS 1e-6f

/* =====================================================================
 * GroupNorm(32, C, eps 1e-6) with its saved statistics
 * ===================================================================== */
typedef struct {
    const float *gamma, *beta;
    Tensor stats; /* n × 32 × {mean, rstd} of the last forward, on x's device */
} gnorm;

static void gnorm_bind(gnorm *g, params *p, int c, const char *prefix) {
    g->gamma = params_get(p, P_ONE, SHAPE1(c), "%s.weight", prefix);
    g->beta = params_get(p, P_ZERO, SHAPE1(c), "%s.bias", prefix);
}

static void gnorm_forward(gnorm *g, const Tensor *x, Tensor *y) {
    tensor_ensure_on(&g->stats, x->dev, x->n, 2 * GN_GROUPS, 1, 1);
    group_norm_forward(x, GN_GROUPS, GN_EPS, g->gamma, g->beta, y, g->stats.data);
}

static void gnorm_backward(gnorm *g, const Tensor *x, const Tensor *gy, Tensor *gx) {
    group_norm_backward_input(x, gy, GN_GROUPS, g->gamma, g->stats.data, gx);
}

/* h = norm(x + bias) (saved; bias per (sample, channel) or NULL), y = swish(h):
 * the fused op, one pass over memory. */
static void gnorm_swish_forward(gnorm *g, const Tensor *x, const Tensor *bias, Tensor *h, Tensor *y) {
    tensor_ensure_on(&g->stats, x->dev, x->n, 2 * GN_GROUPS, 1, 1);
    group_norm_swish_forward(x, bias, GN_GROUPS, GN_EPS, g->gamma, g->beta, h, y, g->stats.data);
}

/* gx = VJP of gnorm_swish_forward at x and bias (h saved); gy is used as scratch. */
static void gnorm_swish_backward(gnorm *g, const Tensor *x, const Tensor *bias, const Tensor *h, Tensor *gy,
                                 Tensor *gx) {
    group_norm_swish_backward_input(x, bias, h, gy, GN_GROUPS, g->gamma, g->stats.data, gx);
}

static Conv2d conv_bind(params *p, int cin, int cout, int k, int stride, int pad, const char *prefix) {
    const float *w = params_get(p, P_WEIGHT, SHAPE4(cout, cin, k, k), "%s.weight", prefix);
    const float *b = params_get(p, P_BIAS, SHAPE1(cout), "%s.bias", prefix);
    return conv2d_make(cin, cout, k, stride, pad, w, b);
}

/* Every activation lives on the device of the tensor x the layer works on. */
#define ENSURE_LIKE(t, n_, c_, h_, w_) tensor_ensure_on((t), x->dev, (n_), (c_), (h_), (w_))

/* =====================================================================
 * ResnetBlock: h = conv1(swish(norm1(x))) + temb_proj(swish(temb));
 *              h = conv2(swish(norm2(h)));  out = shortcut(x) + h
 * ===================================================================== */
typedef struct {
    int cin, cout, temb_ch;
    gnorm norm1, norm2;
    Conv2d conv1, conv2, nin_shortcut;
    int has_nin;
    const float *temb_w, *temb_b;
    Tensor h1;  /* norm1(x)                 saved */
    Tensor c1;  /* conv1(..)                saved */
    Tensor h2;  /* norm2(c1 + tproj)        saved */
    Tensor tmp, tproj; /* tproj = temb_proj(swish(temb)): saved, norm2 adds it */
    Tensor ga, gb;
} resblock;

static void res_bind(resblock *r, params *p, int cin, int cout, int temb_ch, const char *prefix) {
    char nm[160];
    r->cin = cin, r->cout = cout, r->temb_ch = temb_ch;
    snprintf(nm, sizeof nm, "%s.norm1", prefix), gnorm_bind(&r->norm1, p, cin, nm);
    snprintf(nm, sizeof nm, "%s.conv1", prefix), r->conv1 = conv_bind(p, cin, cout, 3, 1, 1, nm);
    r->temb_w = params_get(p, P_WEIGHT, SHAPE2(cout, temb_ch), "%s.temb_proj.weight", prefix);
    r->temb_b = params_get(p, P_BIAS, SHAPE1(cout), "%s.temb_proj.bias", prefix);
    snprintf(nm, sizeof nm, "%s.norm2", prefix), gnorm_bind(&r->norm2, p, cout, nm);
    snprintf(nm, sizeof nm, "%s.conv2", prefix), r->conv2 = conv_bind(p, cout, cout, 3, 1, 1, nm);
    r->has_nin = cin != cout;
    if (r->has_nin) snprintf(nm, sizeof nm, "%s.nin_shortcut", prefix), r->nin_shortcut = conv_bind(p, cin, cout, 1, 1, 0, nm);
}

static void res_forward(resblock *r, const Tensor *x, const Tensor *temb_act, Tensor *out) {
    int n = x->n, H = x->h, W = x->w;
    ENSURE_LIKE(&r->h1, n, r->cin, H, W);
    ENSURE_LIKE(&r->tmp, n, r->cin, H, W);
    ENSURE_LIKE(&r->c1, n, r->cout, H, W);
    ENSURE_LIKE(&r->h2, n, r->cout, H, W);
    ENSURE_LIKE(&r->tproj, n, r->cout, 1, 1);
    ENSURE_LIKE(out, n, r->cout, H, W);
    gnorm_swish_forward(&r->norm1, x, NULL, &r->h1, &r->tmp);
    conv2d_forward(&r->conv1, &r->tmp, &r->c1);
    linear_forward(r->temb_w, r->temb_b, r->temb_ch, r->cout, temb_act, &r->tproj);
    ENSURE_LIKE(&r->tmp, n, r->cout, H, W);
    gnorm_swish_forward(&r->norm2, &r->c1, &r->tproj, &r->h2, &r->tmp); /* + temb_proj, fused */
    conv2d_forward(&r->conv2, &r->tmp, out);
    if (r->has_nin) {
        conv2d_forward(&r->nin_shortcut, x, &r->tmp);
        add_forward(out, &r->tmp, out);
    } else {
        add_forward(out, x, out);
    }
}

/* gx = VJP of res_forward at its saved x; the temb path carries no input gradient. */
static void res_backward(resblock *r, const Tensor *x, const Tensor *gout, Tensor *gx) {
    int n = x->n, H = x->h, W = x->w;
    ENSURE_LIKE(&r->ga, n, r->cout, H, W);
    ENSURE_LIKE(&r->gb, n, r->cout, H, W);
    ENSURE_LIKE(gx, n, r->cin, H, W);
    conv2d_backward_input(&r->conv2, gout, &r->ga);
    gnorm_swish_backward(&r->norm2, &r->c1, &r->tproj, &r->h2, &r->ga, &r->gb);
    conv2d_backward_input(&r->conv1, &r->gb, gx);
    ENSURE_LIKE(&r->ga, n, r->cin, H, W);
    gnorm_swish_backward(&r->norm1, x, NULL, &r->h1, gx, &r->ga); /* gx: scratch, rewritten below */
    if (r->has_nin) {
        conv2d_backward_input(&r->nin_shortcut, gout, gx);
        add_forward(gx, &r->ga, gx);
    } else {
        add_forward(gout, &r->ga, gx);
    }
}

static void res_free(resblock *r) {
    conv2d_release(&r->conv1), conv2d_release(&r->conv2), conv2d_release(&r->nin_shortcut);
    tensor_free(&r->norm1.stats), tensor_free(&r->norm2.stats);
    Tensor *ts[] = {&r->h1, &r->c1, &r->h2, &r->tmp, &r->tproj, &r->ga, &r->gb};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_free(ts[i]);
}

/* =====================================================================
 * AttnBlock: hn = norm(x); q,k,v = 1×1 convs; h = attention; out = x + proj_out(h)
 * ===================================================================== */
typedef struct {
    int c;
    gnorm norm;
    Conv2d q, k, v, proj_out;
    Tensor hn, tq, tk, tv, p; /* saved */
    Tensor h;                 /* attention output; backward scratch */
    Tensor ga, gq, gk, gv;
} attnblock;

static void attn_bind(attnblock *a, params *p, int c, const char *prefix) {
    char nm[160];
    a->c = c;
    snprintf(nm, sizeof nm, "%s.norm", prefix), gnorm_bind(&a->norm, p, c, nm);
    snprintf(nm, sizeof nm, "%s.q", prefix), a->q = conv_bind(p, c, c, 1, 1, 0, nm);
    snprintf(nm, sizeof nm, "%s.k", prefix), a->k = conv_bind(p, c, c, 1, 1, 0, nm);
    snprintf(nm, sizeof nm, "%s.v", prefix), a->v = conv_bind(p, c, c, 1, 1, 0, nm);
    snprintf(nm, sizeof nm, "%s.proj_out", prefix), a->proj_out = conv_bind(p, c, c, 1, 1, 0, nm);
}

static void attn_forward(attnblock *a, const Tensor *x, Tensor *out) {
    int n = x->n, H = x->h, W = x->w, L = H * W;
    Tensor *ts[] = {&a->hn, &a->tq, &a->tk, &a->tv, &a->h, out};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) ENSURE_LIKE(ts[i], n, a->c, H, W);
    ENSURE_LIKE(&a->p, n, L * L, 1, 1);
    gnorm_forward(&a->norm, x, &a->hn);
    conv2d_forward(&a->q, &a->hn, &a->tq);
    conv2d_forward(&a->k, &a->hn, &a->tk);
    conv2d_forward(&a->v, &a->hn, &a->tv);
    attention_forward(&a->tq, &a->tk, &a->tv, &a->p, &a->h);
    conv2d_forward(&a->proj_out, &a->h, out);
    add_forward(out, x, out);
}

static void attn_backward(attnblock *a, const Tensor *x, const Tensor *gout, Tensor *gx) {
    int n = x->n, H = x->h, W = x->w;
    Tensor *ts[] = {&a->ga, &a->gq, &a->gk, &a->gv, gx};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) ENSURE_LIKE(ts[i], n, a->c, H, W);
    conv2d_backward_input(&a->proj_out, gout, &a->ga);
    attention_backward_input(&a->tq, &a->tk, &a->tv, &a->p, &a->ga, &a->gq, &a->gk, &a->gv);
    /* ∂/∂hn = qᵀ-path + kᵀ-path + vᵀ-path; a->h is free scratch now */
    conv2d_backward_input(&a->q, &a->gq, &a->ga);
    conv2d_backward_input(&a->k, &a->gk, &a->h);
    add_forward(&a->ga, &a->h, &a->ga);
    conv2d_backward_input(&a->v, &a->gv, &a->h);
    add_forward(&a->ga, &a->h, &a->ga);
    gnorm_backward(&a->norm, x, &a->ga, gx);
    add_forward(gx, gout, gx);
}

static void attn_free(attnblock *a) {
    conv2d_release(&a->q), conv2d_release(&a->k), conv2d_release(&a->v), conv2d_release(&a->proj_out);
    tensor_free(&a->norm.stats);
    Tensor *ts[] = {&a->hn, &a->tq, &a->tk, &a->tv, &a->p, &a->h, &a->ga, &a->gq, &a->gk, &a->gv};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tensor_free(ts[i]);
}

/* =====================================================================
 * the node list
 * ===================================================================== */
typedef enum {
    N_CONV_IN,   /* conv_in */
    N_RES,       /* ResnetBlock */
    N_ATTN,      /* AttnBlock */
    N_DOWN,      /* pad right/bottom 1, 3×3 stride-2 conv */
    N_UP,        /* nearest ×2, 3×3 conv */
    N_OUT,       /* norm_out, swish, conv_out */
} node_kind;

typedef struct {
    node_kind kind;
    int push, pop, slot; /* skip stack: push output to / pop into input from slot */
    resblock res;
    attnblock attn;
    Conv2d conv;         /* N_CONV_IN, N_DOWN, N_UP, N_OUT */
    gnorm norm;          /* N_OUT */
    const Tensor *x;     /* input of the last forward (borrowed or &cat) */
    Tensor cat;          /* N_RES with pop: cat([h, skip]) */
    Tensor mid;          /* N_UP: upsampled x; N_OUT: norm_out(x) */
    Tensor tmp;          /* N_OUT: swish(norm_out(x)) */
    Tensor out, gin, gh;
} node;

struct unet {
    unet_config cfg;
    int temb_ch, n_nodes, n_slots;
    node *nodes;
    params p;
    const float *temb_w0, *temb_b0, *temb_w1, *temb_b1;
    Tensor emb, temb_h, temb_a, temb, temb_act; /* timestep embedding path */
    const Tensor **skips;
    Tensor *gskip;
    Tensor gtop;
};

static node *add_node(unet *m, node_kind kind) {
    m->nodes = xrealloc(m->nodes, sizeof(node) * (m->n_nodes + 1));
    node *nd = &m->nodes[m->n_nodes++];
    memset(nd, 0, sizeof *nd);
    nd->kind = kind;
    return nd;
}

static int has_attn(const unet_config *c, int res) {
    for (int i = 0; i < c->n_attn; i++)
        if (c->attn_resolutions[i] == res) return 1;
    return 0;
}

/* Builds the node list in forward order, binding every parameter by name. */
static void build(unet *m) {
    const unet_config *c = &m->cfg;
    params *p = &m->p;
    char nm[160];
    int stack_ch[64], sp = 0, L = c->n_levels, res = c->resolution, ch = c->ch;
    m->temb_ch = 4 * ch;
    m->temb_w0 = params_get(p, P_WEIGHT, SHAPE2(m->temb_ch, ch), "temb.dense.0.weight");
    m->temb_b0 = params_get(p, P_BIAS, SHAPE1(m->temb_ch), "temb.dense.0.bias");
    m->temb_w1 = params_get(p, P_WEIGHT, SHAPE2(m->temb_ch, m->temb_ch), "temb.dense.1.weight");
    m->temb_b1 = params_get(p, P_BIAS, SHAPE1(m->temb_ch), "temb.dense.1.bias");

    node *nd = add_node(m, N_CONV_IN);
    nd->conv = conv_bind(p, c->in_channels, ch, 3, 1, 1, "conv_in");
    nd->push = 1, nd->slot = sp, stack_ch[sp++] = ch;
    int block_in = ch;
    for (int i = 0; i < L; i++) {
        int block_out = ch * c->ch_mult[i];
        for (int j = 0; j < c->num_res_blocks; j++) {
            nd = add_node(m, N_RES);
            snprintf(nm, sizeof nm, "down.%d.block.%d", i, j);
            res_bind(&nd->res, p, block_in, block_out, m->temb_ch, nm);
            block_in = block_out;
            if (has_attn(c, res)) {
                nd = add_node(m, N_ATTN);
                snprintf(nm, sizeof nm, "down.%d.attn.%d", i, j);
                attn_bind(&nd->attn, p, block_in, nm);
            }
            nd->push = 1, nd->slot = sp, stack_ch[sp++] = block_in;
        }
        if (i != L - 1) {
            nd = add_node(m, N_DOWN);
            snprintf(nm, sizeof nm, "down.%d.downsample.conv", i);
            nd->conv = conv_bind(p, block_in, block_in, 3, 2, 0, nm);
            nd->conv.pad_b = nd->conv.pad_r = 1; /* pad right and bottom only */
            nd->push = 1, nd->slot = sp, stack_ch[sp++] = block_in;
            res /= 2;
        }
    }
    m->n_slots = sp;
    nd = add_node(m, N_RES), res_bind(&nd->res, p, block_in, block_in, m->temb_ch, "mid.block_1");
    nd = add_node(m, N_ATTN), attn_bind(&nd->attn, p, block_in, "mid.attn_1");
    nd = add_node(m, N_RES), res_bind(&nd->res, p, block_in, block_in, m->temb_ch, "mid.block_2");
    for (int i = L - 1; i >= 0; i--) {
        int block_out = ch * c->ch_mult[i];
        for (int j = 0; j < c->num_res_blocks + 1; j++) {
            nd = add_node(m, N_RES);
            nd->pop = 1, nd->slot = --sp;
            snprintf(nm, sizeof nm, "up.%d.block.%d", i, j);
            res_bind(&nd->res, p, block_in + stack_ch[sp], block_out, m->temb_ch, nm);
            block_in = block_out;
            if (has_attn(c, res)) {
                nd = add_node(m, N_ATTN);
                snprintf(nm, sizeof nm, "up.%d.attn.%d", i, j);
                attn_bind(&nd->attn, p, block_in, nm);
            }
        }
        if (i != 0) {
            nd = add_node(m, N_UP);
            snprintf(nm, sizeof nm, "up.%d.upsample.conv", i);
            nd->conv = conv_bind(p, block_in, block_in, 3, 1, 1, nm);
            res *= 2;
        }
    }
    nd = add_node(m, N_OUT);
    gnorm_bind(&nd->norm, p, block_in, "norm_out");
    nd->conv = conv_bind(p, block_in, c->out_ch, 3, 1, 1, "conv_out");
}

unet *unet_load(const unet_config *c, st_file *weights, uint64_t seed, drq_err *err) {
    return unet_load_on(c, weights, seed, DRQ_CPU, err);
}

drq_device unet_device(const unet *m) { return m->p.dev; }

unet *unet_load_on(const unet_config *c, st_file *weights, uint64_t seed, drq_device dev, drq_err *err) {
    unet *m = xcalloc(1, sizeof *m);
    m->cfg = *c;
    params_init(&m->p, weights, seed, "ddpm-unet", err);
    m->p.dev = dev;
    m->p.format = c->format; /* original or diffusers names (params.h) */
    build(m);
    if (params_finish(&m->p)) {
        unet_free(m);
        return NULL;
    }
    m->skips = xcalloc(m->n_slots, sizeof *m->skips);
    m->gskip = xcalloc(m->n_slots, sizeof *m->gskip);
    return m;
}

size_t unet_param_count(const unet *m) { return m->p.count; }

/* =====================================================================
 * forward / backward
 * ===================================================================== */
static void node_forward(unet *m, node *nd, const Tensor *x) {
    int n = x->n, oh, ow;
    nd->x = x;
    switch (nd->kind) {
    case N_RES: res_forward(&nd->res, x, &m->temb_act, &nd->out); break;
    case N_ATTN: attn_forward(&nd->attn, x, &nd->out); break;
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
        gnorm_swish_forward(&nd->norm, x, NULL, &nd->mid, &nd->tmp);
        conv2d_forward(&nd->conv, &nd->tmp, &nd->out);
        break;
    }
}

static void node_backward(node *nd, const Tensor *g) {
    const Tensor *x = nd->x;
    ENSURE_LIKE(&nd->gin, x->n, x->c, x->h, x->w);
    switch (nd->kind) {
    case N_RES: res_backward(&nd->res, x, g, &nd->gin); break;
    case N_ATTN: attn_backward(&nd->attn, x, g, &nd->gin); break;
    case N_CONV_IN:
    case N_DOWN: conv2d_backward_input(&nd->conv, g, &nd->gin); break;
    case N_UP:
        conv2d_backward_input(&nd->conv, g, &nd->mid); /* mid: free after forward */
        upsample2x_backward_input(&nd->mid, &nd->gin);
        break;
    case N_OUT:
        conv2d_backward_input(&nd->conv, g, &nd->tmp);
        gnorm_swish_backward(&nd->norm, x, NULL, &nd->mid, &nd->tmp, &nd->gin);
        break;
    }
}

void unet_forward(unet *m, const Tensor *x, const float *t, Tensor *eps) {
    const unet_config *c = &m->cfg;
    int n = x->n;
    if (x->c != c->in_channels || x->h != c->resolution || x->w != c->resolution || eps->n != n ||
        eps->c != c->out_ch || eps->h != x->h || eps->w != x->w)
        DIE("unet_forward: input %dx%dx%dx%d / output %dx%dx%dx%d do not match the config (in %d, out %d, res %d)",
            x->n, x->c, x->h, x->w, eps->n, eps->c, eps->h, eps->w, c->in_channels, c->out_ch, c->resolution);
    if (x->dev != m->p.dev || eps->dev != m->p.dev)
        DIE("unet_forward: tensors on %s, the model on %s", drq_device_name(x->dev), drq_device_name(m->p.dev));
    /* timestep embedding → dense → swish → dense; every block uses swish(temb) */
    ENSURE_LIKE(&m->emb, n, c->ch, 1, 1);
    ENSURE_LIKE(&m->temb_h, n, m->temb_ch, 1, 1);
    ENSURE_LIKE(&m->temb_a, n, m->temb_ch, 1, 1);
    ENSURE_LIKE(&m->temb, n, m->temb_ch, 1, 1);
    ENSURE_LIKE(&m->temb_act, n, m->temb_ch, 1, 1);
    timestep_embedding_forward(t, n, c->ch, &m->emb);
    linear_forward(m->temb_w0, m->temb_b0, c->ch, m->temb_ch, &m->emb, &m->temb_h);
    swish_forward(&m->temb_h, &m->temb_a);
    linear_forward(m->temb_w1, m->temb_b1, m->temb_ch, m->temb_ch, &m->temb_a, &m->temb);
    swish_forward(&m->temb, &m->temb_act);

    const Tensor *h = x;
    for (int i = 0; i < m->n_nodes; i++) {
        node *nd = &m->nodes[i];
        if (nd->pop) {
            const Tensor *s = m->skips[nd->slot];
            ENSURE_LIKE(&nd->cat, n, h->c + s->c, h->h, h->w);
            concat_forward(h, s, &nd->cat);
            h = &nd->cat;
        }
        node_forward(m, nd, h);
        h = &nd->out;
        if (nd->push) m->skips[nd->slot] = h;
    }
    tensor_copy(eps, h);
}

void unet_backward(unet *m, const Tensor *geps, Tensor *gx) {
    const Tensor *x = geps; /* for ENSURE_LIKE's device */
    tensor_assign(&m->gtop, geps->dev, geps);
    Tensor *g = &m->gtop;
    for (int i = m->n_nodes - 1; i >= 0; i--) {
        node *nd = &m->nodes[i];
        if (nd->push) add_forward(g, &m->gskip[nd->slot], g); /* the output also fed a skip */
        node_backward(nd, g);
        g = &nd->gin;
        if (nd->pop) {
            const Tensor *s = m->skips[nd->slot];
            ENSURE_LIKE(&nd->gh, g->n, g->c - s->c, g->h, g->w);
            ENSURE_LIKE(&m->gskip[nd->slot], s->n, s->c, s->h, s->w);
            concat_backward_input(g, &nd->gh, &m->gskip[nd->slot]);
            g = &nd->gh;
        }
    }
    if (!tensor_same_shape(g, gx)) DIE("unet_backward: gx shape does not match the last forward's x");
    tensor_copy(gx, g);
}

void unet_free(unet *m) {
    if (!m) return;
    for (int i = 0; i < m->n_nodes; i++) {
        node *nd = &m->nodes[i];
        if (nd->kind == N_RES) res_free(&nd->res);
        if (nd->kind == N_ATTN) attn_free(&nd->attn);
        conv2d_release(&nd->conv);
        tensor_free(&nd->norm.stats);
        Tensor *ts[] = {&nd->cat, &nd->mid, &nd->tmp, &nd->out, &nd->gin, &nd->gh};
        for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) tensor_free(ts[k]);
    }
    for (int i = 0; i < m->n_slots && m->gskip; i++) tensor_free(&m->gskip[i]);
    Tensor *ts[] = {&m->emb, &m->temb_h, &m->temb_a, &m->temb, &m->temb_act, &m->gtop};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) tensor_free(ts[k]);
    free(m->nodes), free(m->skips), free(m->gskip);
    params_free(&m->p);
    free(m);
}
