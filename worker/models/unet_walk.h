/* unet_walk.h — what the two diffusion UNets (unet.c, guided_unet.c) share:
 * the node list and its walk, docs/design.md §Models.
 *
 * A UNet is flattened at load time into a list of nodes in forward order.  A
 * node may push its output on the skip stack (the down path) or concatenate
 * the popped skip to its input (the up path).  The walk runs the list forward
 * saving each node's activations in the node, and backward in reverse, adding
 * the skip gradients where outputs were pushed and splitting them off where
 * inputs were concatenated.
 *
 * The plain kinds (conv in, down, up, the output head) are the same in both
 * models and live here; the blocks (N_RES, N_ATTN) are each model's own,
 * reached through unet_hooks, the model's forward / backward of one node.
 */
#ifndef DRQ_UNET_WALK_H
#define DRQ_UNET_WALK_H

#include "kernels/ops.h"
#include "worker/models/params.h"

#define UNET_GN_GROUPS 32

/* GroupNorm(32, C) parameters with the statistics of its last forward. */
typedef struct {
    const float *gamma, *beta;
    Tensor stats; /* n × 32 × {mean, rstd} of the last forward, on x's device */
} unet_gnorm;

void unet_gnorm_bind(unet_gnorm *g, params *p, int c, const char *prefix);
/* The stats buffer for a forward at x (n × 32 × 2, on x's device). */
float *unet_gnorm_stats(unet_gnorm *g, const Tensor *x);
/* A k×k convolution with bias, PREFIX.{weight, bias}; with bf16 operands
 * when the params are bf16 (their weights are rounded already, params.c). */
Conv2d unet_conv_bind(params *p, int cin, int cout, int k, int stride, int pad, const char *prefix);

typedef enum {
    N_CONV_IN, /* the first 3×3 conv */
    N_RES,     /* the model's ResBlock */
    N_ATTN,    /* the model's attention block */
    N_DOWN,    /* a strided 3×3 conv (its padding set by the model) */
    N_UP,      /* nearest ×2, 3×3 conv */
    N_OUT,     /* the head: norm, swish, conv */
} unet_node_kind;

typedef struct {
    unet_node_kind kind;
    int push, pop, slot; /* skip stack: push output to / pop into input from slot */
    void *block;         /* N_RES, N_ATTN: the model's block (its resblock / attnblock) */
    Conv2d conv;         /* N_CONV_IN, N_DOWN, N_UP, N_OUT */
    unet_gnorm norm;     /* N_OUT */
    float eps;           /* N_OUT: the norm's eps */
    const Tensor *x;     /* input of the last forward (borrowed or &cat) */
    Tensor cat;          /* popping node: cat([h, skip]) */
    Tensor mid;          /* N_UP: upsampled x; N_OUT: norm(x) */
    Tensor tmp;          /* N_OUT: swish(norm(x)) */
    Tensor out, gin, gh; /* output; gradient of the input; of h when the input was cat([h, skip]) */
} unet_node;

/* The node list with the skip stack of its last forward. */
typedef struct {
    int n_nodes, n_slots;
    unet_node *nodes;
    const Tensor **skips; /* forward: the output pushed to each slot */
    Tensor *gskip;        /* backward: the gradient of each slot's skip */
    Tensor gtop;          /* backward: the walk's copy of the output gradient */
} unet_walk;

/* What a model adds to the walk: its forward and backward of one node (the
 * blocks its own, the plain kinds by unet_node_forward / unet_node_backward;
 * nd->x is set before forward is called), and optionally (NULL: none) hooks
 * on the backward's gradient buffers (guided_unet.c's checkpointing):
 * grad_take before a node's gin or gh is written, grad_pass once the
 * gradient has moved from g on to next (NULL after the last node). */
typedef struct {
    void *model;
    void (*forward)(void *model, unet_node *nd, const Tensor *x);
    void (*backward)(void *model, unet_node *nd, const Tensor *g);
    void (*grad_take)(void *model, Tensor *dst);
    Tensor *(*grad_pass)(void *model, Tensor *g, Tensor *next);
} unet_hooks;

/* Appends a zeroed node of kind to the list (pointers to earlier nodes move),
 * with a zeroed block of block_size bytes when that is not 0. */
unet_node *unet_walk_add(unet_walk *w, unet_node_kind kind, size_t block_size);
/* Allocates the skip stack once the list (and n_slots) is built. */
void unet_walk_finish(unet_walk *w);
/* Frees the walk, the nodes' tensors and their blocks, block_free (the
 * model's) first freeing what a block holds. */
void unet_walk_free(unet_walk *w, void (*block_free)(unet_node *nd));

/* The plain kinds' forward (saving in nd) and input-VJP (into nd->gin). */
void unet_node_forward(unet_node *nd, const Tensor *x);
void unet_node_backward(unet_node *nd, const Tensor *g);

/* out = the network at x; each node's activations saved for the backward. */
void unet_walk_forward(unet_walk *w, const unet_hooks *hk, const Tensor *x, Tensor *out);
/* gx = VJP at the last forward's x; who names the caller in the shape error. */
void unet_walk_backward(unet_walk *w, const unet_hooks *hk, const Tensor *gout, Tensor *gx, const char *who);

#endif
