/* guided_unet.c — the ADM UNet of openai/guided-diffusion (Dhariwal & Nichol
 * 2021), docs/design.md §Models: forward ε_θ(x, t) (and, with learn_sigma,
 * the variance interpolation v) and its input-VJP, layer by layer.
 *
 * Same plan as unet.c: the network is flattened at load time into a list of
 * nodes walked by unet_walk.c (the skip stack, the plain node kinds); the
 * blocks, the timestep embedding and the checkpointing are this file's.
 * What differs from the DDPM UNet (../shared/DESIGN.md §10):
 * GroupNorm eps 1e-5; timestep embedding cos-first with f_k = e^(−k·ln 10⁴/half);
 * ResBlocks with scale-shift norm (norm(h)·(1 + scale) + shift) and, with
 * resblock_updown, resampling inside the block (nearest ×2 up, 2×2 average
 * pool down) on both the residual and the skip path; multi-head attention
 * in the legacy QKV order.  Weights bind by the checkpoint's own names
 * (time_embed.*, input_blocks.*, middle_block.*, output_blocks.*, out.*).
 * Dropout is inactive (evaluation); class conditioning is not built.
 *
 * cfg.bf16 (diffusion "precision": "bf16", docs/spec.md): params.c rounds
 * every conv / linear weight (P_WEIGHT) to bfloat16 at load, and every
 * Conv2d, linear call and attention here carries the ops' bf16 flag, so the
 * ops round their activations (kernels/ops.h "bf16 operands"); group norms,
 * softmax, swish, adds and the sampler stay float32.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "worker/models/models.h"
#include "worker/models/params.h"
#include "worker/models/unet_walk.h"

#define GN_GROUPS UNET_GN_GROUPS
#define GN_EPS 1e-5f
#define SHAPE3(a, b, c) 3, (const int[]){a, b, c} /* Conv1d weights (attention) */

/* Every activation lives on the device of the tensor x the layer works on. */
#define ENSURE_LIKE(t, n_, c_, h_, w_) tensor_ensure_on((t), x->dev, (n_), (c_), (h_), (w_))

/* =====================================================================
 * GroupNorm32 (eps 1e-5) with its saved statistics (unet_walk.h), and convolutions
 * ===================================================================== */
typedef unet_gnorm gnorm;

/* A Conv1d with kernel 1 (weight [cout, cin, 1]) run as a 1×1 Conv2d on the H×W map. */
static Conv2d conv1d_bind(params *p, int cin, int cout, const char *prefix) {
    const float *w = params_get(p, P_WEIGHT, SHAPE3(cout, cin, 1), "%s.weight", prefix);
    const float *b = params_get(p, P_BIAS, SHAPE1(cout), "%s.bias", prefix);
    Conv2d c = conv2d_make(cin, cout, 1, 1, 0, w, b);
    c.bf16 = p->bf16;
    return c;
}

/* =====================================================================
 * ResBlock (unet.py ResBlock):
 *   a = swish(norm_in(x)); [updown: a, x resampled]; h = conv_in(a)
 *   scale-shift: h = conv_out(swish(norm_out(h)·(1 + scale) + shift))
 *   otherwise:   h = conv_out(swish(norm_out(h + emb_out)))
 *   out = skip(x) + h, skip = identity or a 1×1 conv
 * with emb_out = emb_layers.1(swish(emb)) (n × 2C: scale, shift; or n × C).
 * ===================================================================== */
enum { RS_NONE, RS_UP, RS_DOWN };

/* A block's tape is a struct of Tensors only, freed (and lent, see
 * "checkpointing" below) as an array of TAPE_LEN tensors. */
#define TAPE_LEN(type) (sizeof(type) / sizeof(Tensor))
static void tape_free(Tensor *t, size_t n) {
    for (size_t i = 0; i < n; i++) tensor_free(&t[i]);
}

/* A ResBlock's activations: its tape (saved by forward for backward) and backward scratch. */
typedef struct {
    Tensor hn1, a1; /* norm_in(x), swish of it          saved */
    Tensor r1, xs;  /* updown: a1 and x resampled */
    Tensor c1;      /* conv_in(..) (+ emb_out)          saved */
    Tensor hn2, a2; /* norm_out(c1); after scale-shift  saved */
    Tensor b2, eo;  /* swish(a2); emb_out               saved (eo) */
    Tensor ga, gb, gc;
} res_tape;

typedef struct {
    int cin, cout, emb_ch, scale_shift, updown, has_skip, bf16;
    gnorm norm_in, norm_out;
    Conv2d conv_in, conv_out, skip;
    const float *emb_w, *emb_b;
    res_tape t;
} resblock;

static void res_bind(resblock *r, params *p, int cin, int cout, int emb_ch, int scale_shift, int updown,
                     const char *prefix) {
    char nm[200];
    r->cin = cin, r->cout = cout, r->emb_ch = emb_ch, r->scale_shift = scale_shift, r->updown = updown;
    r->bf16 = p->bf16;
    snprintf(nm, sizeof nm, "%s.in_layers.0", prefix), unet_gnorm_bind(&r->norm_in, p, cin, nm);
    snprintf(nm, sizeof nm, "%s.in_layers.2", prefix), r->conv_in = unet_conv_bind(p, cin, cout, 3, 1, 1, nm);
    int eo = scale_shift ? 2 * cout : cout;
    r->emb_w = params_get(p, P_WEIGHT, SHAPE2(eo, emb_ch), "%s.emb_layers.1.weight", prefix);
    r->emb_b = params_get(p, P_BIAS, SHAPE1(eo), "%s.emb_layers.1.bias", prefix);
    snprintf(nm, sizeof nm, "%s.out_layers.0", prefix), unet_gnorm_bind(&r->norm_out, p, cout, nm);
    snprintf(nm, sizeof nm, "%s.out_layers.3", prefix), r->conv_out = unet_conv_bind(p, cout, cout, 3, 1, 1, nm);
    r->has_skip = cin != cout;
    if (r->has_skip)
        snprintf(nm, sizeof nm, "%s.skip_connection", prefix), r->skip = unet_conv_bind(p, cin, cout, 1, 1, 0, nm);
}

/* Output size of the block's resampling. */
static void res_out_hw(const resblock *r, int h, int w, int *oh, int *ow) {
    *oh = r->updown == RS_UP ? 2 * h : r->updown == RS_DOWN ? h / 2 : h;
    *ow = r->updown == RS_UP ? 2 * w : r->updown == RS_DOWN ? w / 2 : w;
}

static void resample_forward(int kind, const Tensor *x, Tensor *y) {
    if (kind == RS_UP) upsample2x_forward(x, y);
    else avgpool2x2_forward(x, y);
}

static void resample_backward(int kind, const Tensor *gy, Tensor *gx) {
    if (kind == RS_UP) upsample2x_backward_input(gy, gx);
    else avgpool2x2_backward_input(gy, gx);
}

static void res_forward(resblock *r, const Tensor *x, const Tensor *emb_act, Tensor *out) {
    int n = x->n, H, W;
    res_out_hw(r, x->h, x->w, &H, &W);
    ENSURE_LIKE(&r->t.hn1, n, r->cin, x->h, x->w);
    ENSURE_LIKE(&r->t.a1, n, r->cin, x->h, x->w);
    ENSURE_LIKE(&r->t.c1, n, r->cout, H, W);
    ENSURE_LIKE(&r->t.hn2, n, r->cout, H, W);
    if (r->scale_shift) ENSURE_LIKE(&r->t.a2, n, r->cout, H, W);
    ENSURE_LIKE(&r->t.b2, n, r->cout, H, W);
    ENSURE_LIKE(&r->t.eo, n, r->scale_shift ? 2 * r->cout : r->cout, 1, 1);
    ENSURE_LIKE(out, n, r->cout, H, W);
    group_norm_swish_forward(x, NULL, GN_GROUPS, GN_EPS, r->norm_in.gamma, r->norm_in.beta, &r->t.hn1, &r->t.a1,
                             unet_gnorm_stats(&r->norm_in, x));
    const Tensor *a = &r->t.a1, *xs = x;
    if (r->updown) {
        ENSURE_LIKE(&r->t.r1, n, r->cin, H, W);
        ENSURE_LIKE(&r->t.xs, n, r->cin, H, W);
        resample_forward(r->updown, &r->t.a1, &r->t.r1);
        resample_forward(r->updown, x, &r->t.xs);
        a = &r->t.r1, xs = &r->t.xs;
    }
    conv2d_forward(&r->conv_in, a, &r->t.c1);
    linear_forward_prec(r->bf16, r->emb_w, r->emb_b, r->emb_ch, r->t.eo.c, emb_act, &r->t.eo);
    if (r->scale_shift) {
        group_norm_forward(&r->t.c1, GN_GROUPS, GN_EPS, r->norm_out.gamma, r->norm_out.beta, &r->t.hn2,
                           unet_gnorm_stats(&r->norm_out, &r->t.c1));
        scale_shift_forward(&r->t.hn2, &r->t.eo, &r->t.a2);
        swish_forward(&r->t.a2, &r->t.b2);
    } else {
        add_channel_forward(&r->t.c1, &r->t.eo, &r->t.c1);
        group_norm_swish_forward(&r->t.c1, NULL, GN_GROUPS, GN_EPS, r->norm_out.gamma, r->norm_out.beta, &r->t.hn2, &r->t.b2,
                                 unet_gnorm_stats(&r->norm_out, &r->t.c1));
    }
    conv2d_forward(&r->conv_out, &r->t.b2, out);
    if (r->has_skip) {
        conv2d_forward(&r->skip, xs, &r->t.b2); /* b2 is free once conv_out has read it */
        add_forward(out, &r->t.b2, out);
    } else {
        add_forward(out, xs, out);
    }
}

/* gx = VJP of res_forward at its saved x; the embedding path carries no input gradient. */
static void res_backward(resblock *r, const Tensor *x, const Tensor *gout, Tensor *gx) {
    int n = x->n, H = gout->h, W = gout->w;
    ENSURE_LIKE(&r->t.ga, n, r->cout, H, W);
    ENSURE_LIKE(&r->t.gb, n, r->cout, H, W);
    ENSURE_LIKE(gx, n, r->cin, x->h, x->w);
    conv2d_backward_input(&r->conv_out, gout, &r->t.ga);
    if (r->scale_shift) {
        swish_backward_input(&r->t.a2, &r->t.ga, &r->t.ga);
        scale_shift_backward_input(&r->t.hn2, &r->t.eo, &r->t.ga, &r->t.ga, NULL);
        group_norm_backward_input(&r->t.c1, &r->t.ga, GN_GROUPS, r->norm_out.gamma, r->norm_out.stats.data, &r->t.gb);
    } else {
        group_norm_swish_backward_input(&r->t.c1, NULL, &r->t.hn2, &r->t.ga, GN_GROUPS, r->norm_out.gamma,
                                        r->norm_out.stats.data, &r->t.gb);
    }
    /* gb = ∂/∂c1; through conv_in to its input (a1, or r1 when resampled) */
    ENSURE_LIKE(&r->t.gc, n, r->cin, x->h, x->w);
    if (r->updown) {
        ENSURE_LIKE(&r->t.ga, n, r->cin, H, W);
        conv2d_backward_input(&r->conv_in, &r->t.gb, &r->t.ga);
        resample_backward(r->updown, &r->t.ga, &r->t.gc);
    } else {
        conv2d_backward_input(&r->conv_in, &r->t.gb, &r->t.gc);
    }
    ENSURE_LIKE(&r->t.gb, n, r->cin, x->h, x->w);
    group_norm_swish_backward_input(x, NULL, &r->t.hn1, &r->t.gc, GN_GROUPS, r->norm_in.gamma, r->norm_in.stats.data,
                                    &r->t.gb);
    /* the skip path: gout through the skip conv and the resampling */
    const Tensor *gs = gout;
    if (r->has_skip) {
        ENSURE_LIKE(&r->t.ga, n, r->cin, H, W);
        conv2d_backward_input(&r->skip, gout, &r->t.ga);
        gs = &r->t.ga;
    }
    if (r->updown) {
        resample_backward(r->updown, gs, gx);
        add_forward(gx, &r->t.gb, gx);
    } else {
        add_forward(gs, &r->t.gb, gx);
    }
}

static void res_free(resblock *r) {
    conv2d_release(&r->conv_in), conv2d_release(&r->conv_out), conv2d_release(&r->skip);
    tensor_free(&r->norm_in.stats), tensor_free(&r->norm_out.stats);
    tape_free((Tensor *)&r->t, TAPE_LEN(res_tape));
}

/* =====================================================================
 * AttentionBlock: hn = norm(x); qkv = 1×1 conv; h = multi-head attention
 * (legacy order, ops.h attention_heads); out = x + proj_out(h)
 * ===================================================================== */
/* An AttentionBlock's activations: tape and backward scratch. */
typedef struct {
    Tensor hn, tqkv, q, k, v, p; /* saved (tqkv only as scratch) */
    Tensor h;                    /* attention output; backward scratch */
    Tensor gq, gk, gv, gqkv, ga;
} attn_tape;

typedef struct {
    int c, heads, bf16;
    gnorm norm;
    Conv2d qkv, proj_out;
    attn_tape t;
} attnblock;

static void attn_bind(attnblock *a, params *p, int c, int heads, const char *prefix) {
    char nm[200];
    a->c = c, a->heads = heads, a->bf16 = p->bf16;
    snprintf(nm, sizeof nm, "%s.norm", prefix), unet_gnorm_bind(&a->norm, p, c, nm);
    snprintf(nm, sizeof nm, "%s.qkv", prefix), a->qkv = conv1d_bind(p, c, 3 * c, nm);
    snprintf(nm, sizeof nm, "%s.proj_out", prefix), a->proj_out = conv1d_bind(p, c, c, nm);
}

static void attn_forward(attnblock *a, const Tensor *x, Tensor *out) {
    int n = x->n, H = x->h, W = x->w, L = H * W;
    Tensor *ts[] = {&a->t.hn, &a->t.q, &a->t.k, &a->t.v, &a->t.h, out};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) ENSURE_LIKE(ts[i], n, a->c, H, W);
    ENSURE_LIKE(&a->t.tqkv, n, 3 * a->c, H, W);
    ENSURE_LIKE(&a->t.p, n, a->heads * L * L, 1, 1);
    group_norm_forward(x, GN_GROUPS, GN_EPS, a->norm.gamma, a->norm.beta, &a->t.hn, unet_gnorm_stats(&a->norm, x));
    conv2d_forward(&a->qkv, &a->t.hn, &a->t.tqkv);
    attention_heads_forward(&a->t.tqkv, a->heads, a->bf16, &a->t.q, &a->t.k, &a->t.v, &a->t.p, &a->t.h);
    conv2d_forward(&a->proj_out, &a->t.h, out);
    add_forward(out, x, out);
}

static void attn_backward(attnblock *a, const Tensor *x, const Tensor *gout, Tensor *gx) {
    int n = x->n, H = x->h, W = x->w;
    Tensor *ts[] = {&a->t.gq, &a->t.gk, &a->t.gv, &a->t.ga, gx};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) ENSURE_LIKE(ts[i], n, a->c, H, W);
    ENSURE_LIKE(&a->t.gqkv, n, 3 * a->c, H, W);
    conv2d_backward_input(&a->proj_out, gout, &a->t.h); /* h: free scratch after forward */
    attention_heads_backward_input(&a->t.q, &a->t.k, &a->t.v, &a->t.p, &a->t.h, a->heads, a->bf16, &a->t.gq, &a->t.gk,
                                   &a->t.gv, &a->t.gqkv);
    conv2d_backward_input(&a->qkv, &a->t.gqkv, &a->t.ga);
    group_norm_backward_input(x, &a->t.ga, GN_GROUPS, a->norm.gamma, a->norm.stats.data, gx);
    add_forward(gx, gout, gx);
}

static void attn_free(attnblock *a) {
    conv2d_release(&a->qkv), conv2d_release(&a->proj_out);
    tensor_free(&a->norm.stats);
    tape_free((Tensor *)&a->t, TAPE_LEN(attn_tape));
}

/* =====================================================================
 * the node list (unet_walk.h)
 * ===================================================================== */
struct guided_unet {
    guided_unet_config cfg;
    int emb_ch;
    unet_walk w;
    params p;
    const float *temb_w0, *temb_b0, *temb_w2, *temb_b2;
    float *emb_host;                            /* n × ch: the sinusoidal embedding, on the host */
    Tensor emb, temb_h, temb_a, temb, temb_act; /* timestep embedding path */
    res_tape res_pool;     /* checkpointing: the one tape the ResBlocks take turns with */
    attn_tape attn_pool;   /* … and the AttentionBlocks */
    size_t budget;         /* bytes of block tapes a forward may keep (0: no limit) */
    size_t tape_per_image; /* floats of every block's tape for one image */
    int ckpt;              /* the last forward checkpointed: its backward recomputes */
    Tensor grad_pool[2];   /* checkpointing: the backward's two gradient buffers … */
    int n_grad_free;       /* … of which grad_pool[0 … n_grad_free) are not lent */
};

/* A node of kind, with its block's own struct for N_RES / N_ATTN. */
static unet_node *add_node(guided_unet *m, unet_node_kind kind) {
    size_t block = kind == N_RES ? sizeof(resblock) : kind == N_ATTN ? sizeof(attnblock) : 0;
    return unet_walk_add(&m->w, kind, block);
}

/* What a node's block holds (unet_walk_free frees the block itself). */
static void block_free(unet_node *nd) {
    if (nd->kind == N_RES) res_free(nd->block);
    if (nd->kind == N_ATTN) attn_free(nd->block);
}

/* Heads of an attention block over c channels (num_head_channels wins when set). */
static int heads_of(const guided_unet_config *c, int ch) {
    return c->num_head_channels > 0 ? ch / c->num_head_channels : c->num_heads;
}

/* A ResBlock node under PREFIX (a TimestepEmbedSequential's layer 0 or 2) on
 * R×R inputs; its tape size follows res_forward's tensors. */
static unet_node *add_res(guided_unet *m, int cin, int cout, int updown, int R, const char *prefix) {
    unet_node *nd = add_node(m, N_RES);
    res_bind(nd->block, &m->p, cin, cout, m->emb_ch, m->cfg.use_scale_shift_norm, updown, prefix);
    size_t in = (size_t)R * R, out = updown == RS_UP ? 4 * in : updown == RS_DOWN ? in / 4 : in;
    m->tape_per_image += 2 * cin * in + (updown ? 2 * cin * out : 0) + 6 * cout * out + 2 * cout + cin * in;
    return nd;
}

/* An AttentionBlock node likewise (floats of its tape per image: an estimate, for the budget). */
static unet_node *add_attn(guided_unet *m, int c, int R, const char *prefix) {
    unet_node *nd = add_node(m, N_ATTN);
    int heads = heads_of(&m->cfg, c);
    attn_bind(nd->block, &m->p, c, heads, prefix);
    size_t L = (size_t)R * R;
    m->tape_per_image += 15 * c * L + heads * L * L;
    return nd;
}

/* Builds the node list in forward order (unet.py UNetModel.__init__),
 * binding every parameter by name. */
static void build(guided_unet *m) {
    const guided_unet_config *c = &m->cfg;
    params *p = &m->p;
    char nm[200];
    int chans[64], sp = 0, L = c->n_levels, res = c->image_size, mc = c->num_channels;
    int blk = 0; /* input_blocks index */
    m->emb_ch = 4 * mc;
    m->temb_w0 = params_get(p, P_WEIGHT, SHAPE2(m->emb_ch, mc), "time_embed.0.weight");
    m->temb_b0 = params_get(p, P_BIAS, SHAPE1(m->emb_ch), "time_embed.0.bias");
    m->temb_w2 = params_get(p, P_WEIGHT, SHAPE2(m->emb_ch, m->emb_ch), "time_embed.2.weight");
    m->temb_b2 = params_get(p, P_BIAS, SHAPE1(m->emb_ch), "time_embed.2.bias");

    int ch = c->channel_mult[0] * mc, input_ch = ch;
    unet_node *nd = add_node(m, N_CONV_IN);
    nd->conv = unet_conv_bind(p, 3, ch, 3, 1, 1, "input_blocks.0.0");
    nd->push = 1, nd->slot = sp, chans[sp++] = ch, blk++;
    for (int lv = 0; lv < L; lv++) {
        for (int j = 0; j < c->num_res_blocks; j++, blk++) {
            snprintf(nm, sizeof nm, "input_blocks.%d.0", blk);
            nd = add_res(m, ch, c->channel_mult[lv] * mc, RS_NONE, res, nm);
            ch = c->channel_mult[lv] * mc;
            if (guided_unet_config_attn_at(c, res)) snprintf(nm, sizeof nm, "input_blocks.%d.1", blk), nd = add_attn(m, ch, res, nm);
            nd->push = 1, nd->slot = sp, chans[sp++] = ch;
        }
        if (lv != L - 1) {
            snprintf(nm, sizeof nm, "input_blocks.%d.0", blk);
            if (c->resblock_updown) {
                nd = add_res(m, ch, ch, RS_DOWN, res, nm);
            } else {
                char op[220];
                snprintf(op, sizeof op, "%s.op", nm);
                nd = add_node(m, N_DOWN);
                nd->conv = unet_conv_bind(p, ch, ch, 3, 2, 1, op);
            }
            nd->push = 1, nd->slot = sp, chans[sp++] = ch, blk++;
            res /= 2;
        }
    }
    m->w.n_slots = sp;
    add_res(m, ch, ch, RS_NONE, res, "middle_block.0");
    add_attn(m, ch, res, "middle_block.1");
    add_res(m, ch, ch, RS_NONE, res, "middle_block.2");
    blk = 0; /* output_blocks index */
    for (int lv = L - 1; lv >= 0; lv--) {
        for (int j = 0; j < c->num_res_blocks + 1; j++, blk++) {
            int skip_ch = chans[--sp], layer = 0;
            snprintf(nm, sizeof nm, "output_blocks.%d.%d", blk, layer++);
            nd = add_res(m, ch + skip_ch, c->channel_mult[lv] * mc, RS_NONE, res, nm);
            nd->pop = 1, nd->slot = sp;
            ch = c->channel_mult[lv] * mc;
            if (guided_unet_config_attn_at(c, res))
                snprintf(nm, sizeof nm, "output_blocks.%d.%d", blk, layer++), add_attn(m, ch, res, nm);
            if (lv && j == c->num_res_blocks) {
                snprintf(nm, sizeof nm, "output_blocks.%d.%d", blk, layer);
                if (c->resblock_updown) {
                    add_res(m, ch, ch, RS_UP, res, nm);
                } else {
                    char cv[220];
                    snprintf(cv, sizeof cv, "%s.conv", nm);
                    nd = add_node(m, N_UP);
                    nd->conv = unet_conv_bind(p, ch, ch, 3, 1, 1, cv);
                }
                res *= 2;
            }
        }
    }
    nd = add_node(m, N_OUT);
    unet_gnorm_bind(&nd->norm, p, ch, "out.0");
    nd->eps = GN_EPS;
    nd->conv = unet_conv_bind(p, input_ch, c->learn_sigma ? 6 : 3, 3, 1, 1, "out.2");
}

guided_unet *guided_unet_load(const guided_unet_config *c, st_file *weights, uint64_t seed, drq_device dev,
                              drq_err *err) {
    guided_unet *m = xcalloc(1, sizeof *m);
    m->cfg = *c;
    params_init(&m->p, weights, seed, "guided-unet", err);
    m->p.dev = dev;
    m->p.format = PARAMS_ORIGINAL; /* guided-diffusion's own names only */
    m->p.bf16 = c->bf16;           /* weights rounded at load, ops flagged (build) */
    build(m);
    if (params_finish(&m->p)) {
        guided_unet_free(m);
        return NULL;
    }
    m->n_grad_free = 2;
    unet_walk_finish(&m->w);
    return m;
}

drq_device guided_unet_device(const guided_unet *m) { return m->p.dev; }
size_t guided_unet_param_count(const guided_unet *m) { return m->p.count; }
int guided_unet_out_channels(const guided_unet *m) { return m->cfg.learn_sigma ? 6 : 3; }
int guided_unet_resolution(const guided_unet *m) { return m->cfg.image_size; }

/* =====================================================================
 * forward / backward
 * ===================================================================== */
/* One node: the blocks here, the plain kinds in unet_walk.c. */
static void node_forward(guided_unet *m, unet_node *nd, const Tensor *x) {
    switch (nd->kind) {
    case N_RES: res_forward(nd->block, x, &m->temb_act, &nd->out); break;
    case N_ATTN: attn_forward(nd->block, x, &nd->out); break;
    default: unet_node_forward(nd, x); break;
    }
}

static void node_backward(unet_node *nd, const Tensor *g) {
    switch (nd->kind) {
    case N_RES: res_backward(nd->block, nd->x, g, &nd->gin); break;
    case N_ATTN: attn_backward(nd->block, nd->x, g, &nd->gin); break;
    default: unet_node_backward(nd, g); break;
    }
}

/* =====================================================================
 * checkpointing (docs/design.md §Models): when the blocks' tapes for the
 * batch would pass the memory budget, a forward keeps only each node's input
 * and output, every ResBlock (AttentionBlock) computing in the one shared tape
 * of its kind; the backward recomputes a block's forward from its saved input
 * just before the block's VJP.  Cost: one more forward of every block per
 * backward; results are bit-identical (the same ops on the same inputs).
 * ===================================================================== */
static int has_tape(const unet_node *nd) { return nd->kind == N_RES || nd->kind == N_ATTN; }

/* nd takes the shared tape of its kind (freeing any tape of its own from an
 * earlier, unchecked pass). */
static void tape_lend(guided_unet *m, unet_node *nd) {
    if (nd->kind == N_RES) {
        resblock *r = nd->block;
        tape_free((Tensor *)&r->t, TAPE_LEN(res_tape));
        r->t = m->res_pool, memset(&m->res_pool, 0, sizeof m->res_pool);
    } else if (nd->kind == N_ATTN) {
        attnblock *a = nd->block;
        tape_free((Tensor *)&a->t, TAPE_LEN(attn_tape));
        a->t = m->attn_pool, memset(&m->attn_pool, 0, sizeof m->attn_pool);
    }
}

static void tape_return(guided_unet *m, unet_node *nd) {
    if (nd->kind == N_RES) {
        resblock *r = nd->block;
        m->res_pool = r->t, memset(&r->t, 0, sizeof r->t);
    } else if (nd->kind == N_ATTN) {
        attnblock *a = nd->block;
        m->attn_pool = a->t, memset(&a->t, 0, sizeof a->t);
    }
}

/* The backward's gradients pass through two buffers the nodes take turns
 * with (a node's input gradient is dead once the node before it has run):
 * the walk's grad_take before it writes a node's gin or gh … */
static void grad_take(void *model, Tensor *dst) {
    guided_unet *m = model;
    if (!m->ckpt) return;
    tensor_free(dst); /* a gradient of its own from an earlier, unchecked pass */
    *dst = m->grad_pool[--m->n_grad_free];
}

/* … and its grad_pass once the gradient lives in next (a node's gin or gh,
 * NULL at the end): the buffer of g, unless it is the top gradient, goes
 * back to the pool. */
static Tensor *grad_pass(void *model, Tensor *g, Tensor *next) {
    guided_unet *m = model;
    if (m->ckpt && g != &m->w.gtop) m->grad_pool[m->n_grad_free++] = *g, memset(g, 0, sizeof *g);
    return next;
}

/* The walk's forward of one node: with checkpointing, a block computes in
 * the shared tape of its kind. */
static void walk_forward(void *model, unet_node *nd, const Tensor *x) {
    guided_unet *m = model;
    if (m->ckpt) tape_lend(m, nd);
    node_forward(m, nd, x);
    if (m->ckpt) tape_return(m, nd);
}

/* The walk's backward of one node: with checkpointing, a block first
 * rebuilds its tape (its out is rewritten, identical). */
static void walk_backward(void *model, unet_node *nd, const Tensor *g) {
    guided_unet *m = model;
    if (m->ckpt && has_tape(nd)) {
        tape_lend(m, nd);
        node_forward(m, nd, nd->x);
    }
    node_backward(nd, g);
    if (m->ckpt) tape_return(m, nd);
}

/* The walk's view of the model. */
static unet_hooks hooks_of(guided_unet *m) {
    return (unet_hooks){m, walk_forward, walk_backward, grad_take, grad_pass};
}

static void free_pools(guided_unet *m) {
    tape_free((Tensor *)&m->res_pool, TAPE_LEN(res_tape));
    tape_free((Tensor *)&m->attn_pool, TAPE_LEN(attn_tape));
    tape_free(m->grad_pool, m->n_grad_free);
}

void guided_unet_set_mem_budget(guided_unet *m, size_t bytes) { m->budget = bytes; }
size_t guided_unet_tape_bytes(const guided_unet *m) { return m->tape_per_image * sizeof(float); }
int guided_unet_checkpointed(const guided_unet *m) { return m->ckpt; }

/* emb[i] = [cos(t_i f_k), sin(t_i f_k)], f_k = exp(−k·ln(10000)/half), in
 * double on the host (nn.py timestep_embedding; t is a host array anyway). */
static void timestep_embedding_host(const float *t, int n, int dim, float *emb) {
    int half = dim / 2;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < half; k++) {
            double a = (double)t[i] * exp(-log(10000.0) * k / half);
            emb[(size_t)i * dim + k] = (float)cos(a);
            emb[(size_t)i * dim + half + k] = (float)sin(a);
        }
}

void guided_unet_forward(guided_unet *m, const Tensor *x, const float *t, Tensor *out) {
    const guided_unet_config *c = &m->cfg;
    int n = x->n, mc = c->num_channels, oc = guided_unet_out_channels(m);
    if (x->c != 3 || x->h != c->image_size || x->w != c->image_size || out->n != n || out->c != oc ||
        out->h != x->h || out->w != x->w)
        DIE("guided_unet_forward: input %dx%dx%dx%d / output %dx%dx%dx%d do not match the config (3 in, %d out, "
            "image_size %d)", x->n, x->c, x->h, x->w, out->n, out->c, out->h, out->w, oc, c->image_size);
    if (x->dev != m->p.dev || out->dev != m->p.dev)
        DIE("guided_unet_forward: tensors on %s, the model on %s", drq_device_name(x->dev), drq_device_name(m->p.dev));
    /* timestep embedding → time_embed.0 → swish → time_embed.2; every block uses swish(emb) */
    m->emb_host = xrealloc(m->emb_host, sizeof(float) * (size_t)n * mc);
    timestep_embedding_host(t, n, mc, m->emb_host);
    Tensor eh = tensor_wrap(m->emb_host, n, mc, 1, 1);
    tensor_assign(&m->emb, x->dev, &eh);
    ENSURE_LIKE(&m->temb_h, n, m->emb_ch, 1, 1);
    ENSURE_LIKE(&m->temb_a, n, m->emb_ch, 1, 1);
    ENSURE_LIKE(&m->temb, n, m->emb_ch, 1, 1);
    ENSURE_LIKE(&m->temb_act, n, m->emb_ch, 1, 1);
    linear_forward_prec(c->bf16, m->temb_w0, m->temb_b0, mc, m->emb_ch, &m->emb, &m->temb_h);
    swish_forward(&m->temb_h, &m->temb_a);
    linear_forward_prec(c->bf16, m->temb_w2, m->temb_b2, m->emb_ch, m->emb_ch, &m->temb_a, &m->temb);
    swish_forward(&m->temb, &m->temb_act);

    m->ckpt = m->budget && (size_t)n * guided_unet_tape_bytes(m) > m->budget;
    if (!m->ckpt) free_pools(m); /* the nodes keep their own tapes now */
    unet_hooks hk = hooks_of(m);
    unet_walk_forward(&m->w, &hk, x, out);
}

void guided_unet_backward(guided_unet *m, const Tensor *gout, Tensor *gx) {
    unet_hooks hk = hooks_of(m);
    unet_walk_backward(&m->w, &hk, gout, gx, "guided_unet_backward");
}

void guided_unet_free(guided_unet *m) {
    if (!m) return;
    unet_walk_free(&m->w, block_free);
    Tensor *ts[] = {&m->emb, &m->temb_h, &m->temb_a, &m->temb, &m->temb_act};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) tensor_free(ts[k]);
    free_pools(m);
    free(m->emb_host);
    params_free(&m->p);
    free(m);
}
