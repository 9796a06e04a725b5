/* unet.c — the DDPM UNet (Ho et al. 2020), docs/design.md §Models: forward ε_θ(x, t)
 * and its input-VJP, layer by layer.
 *
 * The network is flattened at load time into a list of nodes (conv_in,
 * ResnetBlocks, AttnBlocks, down/up-sampling, the output head) walked by
 * unet_walk.c, which keeps the skip stack and the plain kinds; the blocks
 * and the timestep embedding are this file's.  Dropout is inactive
 * (evaluation).
 */
#include <stdio.h>
#include <stdlib.h>

#include "kernels/ops.h"
#include "worker/models/models.h"
#include "worker/models/params.h"
#include "worker/models/unet_walk.h"

#define GN_GROUPS UNET_GN_GROUPS
#define GN_EPS 1e-6f

/* =====================================================================
 * GroupNorm(32, C, eps 1e-6) with its saved statistics (unet_walk.h)
 * ===================================================================== */
typedef unet_gnorm gnorm;

static void gnorm_forward(gnorm *g, const Tensor *x, Tensor *y) {
    group_norm_forward(x, GN_GROUPS, GN_EPS, g->gamma, g->beta, y, unet_gnorm_stats(g, x));
}

static void gnorm_backward(gnorm *g, const Tensor *x, const Tensor *gy, Tensor *gx) {
    group_norm_backward_input(x, gy, GN_GROUPS, g->gamma, g->stats.data, gx);
}

/* h = norm(x + bias) (saved; bias per (sample, channel) or NULL), y = swish(h):
 * the fused op, one pass over memory. */
static void gnorm_swish_forward(gnorm *g, const Tensor *x, const Tensor *bias, Tensor *h, Tensor *y) {
    group_norm_swish_forward(x, bias, GN_GROUPS, GN_EPS, g->gamma, g->beta, h, y, unet_gnorm_stats(g, x));
}

/* gx = VJP of gnorm_swish_forward at x and bias (h saved); gy is used as scratch. */
static void gnorm_swish_backward(gnorm *g, const Tensor *x, const Tensor *bias, const Tensor *h, Tensor *gy,
                                 Tensor *gx) {
    group_norm_swish_backward_input(x, bias, h, gy, GN_GROUPS, g->gamma, g->stats.data, gx);
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
    snprintf(nm, sizeof nm, "%s.norm1", prefix), unet_gnorm_bind(&r->norm1, p, cin, nm);
    snprintf(nm, sizeof nm, "%s.conv1", prefix), r->conv1 = unet_conv_bind(p, cin, cout, 3, 1, 1, nm);
    r->temb_w = params_get(p, P_WEIGHT, SHAPE2(cout, temb_ch), "%s.temb_proj.weight", prefix);
    r->temb_b = params_get(p, P_BIAS, SHAPE1(cout), "%s.temb_proj.bias", prefix);
    snprintf(nm, sizeof nm, "%s.norm2", prefix), unet_gnorm_bind(&r->norm2, p, cout, nm);
    snprintf(nm, sizeof nm, "%s.conv2", prefix), r->conv2 = unet_conv_bind(p, cout, cout, 3, 1, 1, nm);
    r->has_nin = cin != cout;
    if (r->has_nin) snprintf(nm, sizeof nm, "%s.nin_shortcut", prefix), r->nin_shortcut = unet_conv_bind(p, cin, cout, 1, 1, 0, nm);
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
    snprintf(nm, sizeof nm, "%s.norm", prefix), unet_gnorm_bind(&a->norm, p, c, nm);
    snprintf(nm, sizeof nm, "%s.q", prefix), a->q = unet_conv_bind(p, c, c, 1, 1, 0, nm);
    snprintf(nm, sizeof nm, "%s.k", prefix), a->k = unet_conv_bind(p, c, c, 1, 1, 0, nm);
    snprintf(nm, sizeof nm, "%s.v", prefix), a->v = unet_conv_bind(p, c, c, 1, 1, 0, nm);
    snprintf(nm, sizeof nm, "%s.proj_out", prefix), a->proj_out = unet_conv_bind(p, c, c, 1, 1, 0, nm);
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
 * the node list (unet_walk.h)
 * ===================================================================== */
struct unet {
    unet_config cfg;
    int temb_ch;
    unet_walk w;
    params p;
    const float *temb_w0, *temb_b0, *temb_w1, *temb_b1;
    Tensor emb, temb_h, temb_a, temb, temb_act; /* timestep embedding path */
};

/* A node of kind, with its block's own struct for N_RES / N_ATTN. */
static unet_node *add_node(unet *m, unet_node_kind kind) {
    size_t block = kind == N_RES ? sizeof(resblock) : kind == N_ATTN ? sizeof(attnblock) : 0;
    return unet_walk_add(&m->w, kind, block);
}

/* What a node's block holds (unet_walk_free frees the block itself). */
static void block_free(unet_node *nd) {
    if (nd->kind == N_RES) res_free(nd->block);
    if (nd->kind == N_ATTN) attn_free(nd->block);
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

    unet_node *nd = add_node(m, N_CONV_IN);
    nd->conv = unet_conv_bind(p, c->in_channels, ch, 3, 1, 1, "conv_in");
    nd->push = 1, nd->slot = sp, stack_ch[sp++] = ch;
    int block_in = ch;
    for (int i = 0; i < L; i++) {
        int block_out = ch * c->ch_mult[i];
        for (int j = 0; j < c->num_res_blocks; j++) {
            nd = add_node(m, N_RES);
            snprintf(nm, sizeof nm, "down.%d.block.%d", i, j);
            res_bind(nd->block, p, block_in, block_out, m->temb_ch, nm);
            block_in = block_out;
            if (unet_config_attn_at(c, res)) {
                nd = add_node(m, N_ATTN);
                snprintf(nm, sizeof nm, "down.%d.attn.%d", i, j);
                attn_bind(nd->block, p, block_in, nm);
            }
            nd->push = 1, nd->slot = sp, stack_ch[sp++] = block_in;
        }
        if (i != L - 1) {
            nd = add_node(m, N_DOWN);
            snprintf(nm, sizeof nm, "down.%d.downsample.conv", i);
            nd->conv = unet_conv_bind(p, block_in, block_in, 3, 2, 0, nm);
            nd->conv.pad_b = nd->conv.pad_r = 1; /* pad right and bottom only */
            nd->push = 1, nd->slot = sp, stack_ch[sp++] = block_in;
            res /= 2;
        }
    }
    m->w.n_slots = sp;
    nd = add_node(m, N_RES), res_bind(nd->block, p, block_in, block_in, m->temb_ch, "mid.block_1");
    nd = add_node(m, N_ATTN), attn_bind(nd->block, p, block_in, "mid.attn_1");
    nd = add_node(m, N_RES), res_bind(nd->block, p, block_in, block_in, m->temb_ch, "mid.block_2");
    for (int i = L - 1; i >= 0; i--) {
        int block_out = ch * c->ch_mult[i];
        for (int j = 0; j < c->num_res_blocks + 1; j++) {
            nd = add_node(m, N_RES);
            nd->pop = 1, nd->slot = --sp;
            snprintf(nm, sizeof nm, "up.%d.block.%d", i, j);
            res_bind(nd->block, p, block_in + stack_ch[sp], block_out, m->temb_ch, nm);
            block_in = block_out;
            if (unet_config_attn_at(c, res)) {
                nd = add_node(m, N_ATTN);
                snprintf(nm, sizeof nm, "up.%d.attn.%d", i, j);
                attn_bind(nd->block, p, block_in, nm);
            }
        }
        if (i != 0) {
            nd = add_node(m, N_UP);
            snprintf(nm, sizeof nm, "up.%d.upsample.conv", i);
            nd->conv = unet_conv_bind(p, block_in, block_in, 3, 1, 1, nm);
            res *= 2;
        }
    }
    nd = add_node(m, N_OUT);
    unet_gnorm_bind(&nd->norm, p, block_in, "norm_out");
    nd->eps = GN_EPS;
    nd->conv = unet_conv_bind(p, block_in, c->out_ch, 3, 1, 1, "conv_out");
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
    unet_walk_finish(&m->w);
    return m;
}

size_t unet_param_count(const unet *m) { return m->p.count; }

/* =====================================================================
 * forward / backward
 * ===================================================================== */
/* One node for the walk (unet_hooks): the blocks here, the plain kinds in unet_walk.c. */
static void node_forward(void *model, unet_node *nd, const Tensor *x) {
    unet *m = model;
    switch (nd->kind) {
    case N_RES: res_forward(nd->block, x, &m->temb_act, &nd->out); break;
    case N_ATTN: attn_forward(nd->block, x, &nd->out); break;
    default: unet_node_forward(nd, x); break;
    }
}

static void node_backward(void *model, unet_node *nd, const Tensor *g) {
    (void)model;
    switch (nd->kind) {
    case N_RES: res_backward(nd->block, nd->x, g, &nd->gin); break;
    case N_ATTN: attn_backward(nd->block, nd->x, g, &nd->gin); break;
    default: unet_node_backward(nd, g); break;
    }
}

/* The walk's view of the model (no gradient-buffer hooks). */
static unet_hooks hooks_of(unet *m) { return (unet_hooks){m, node_forward, node_backward, NULL, NULL}; }

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

    unet_hooks hk = hooks_of(m);
    unet_walk_forward(&m->w, &hk, x, eps);
}

void unet_backward(unet *m, const Tensor *geps, Tensor *gx) {
    unet_hooks hk = hooks_of(m);
    unet_walk_backward(&m->w, &hk, geps, gx, "unet_backward");
}

void unet_free(unet *m) {
    if (!m) return;
    unet_walk_free(&m->w, block_free);
    Tensor *ts[] = {&m->emb, &m->temb_h, &m->temb_a, &m->temb, &m->temb_act};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) tensor_free(ts[k]);
    params_free(&m->p);
    free(m);
}
