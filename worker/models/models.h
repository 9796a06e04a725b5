/* models.h — the two model families of drq, as readable per-layer code with
 * an explicit tape (llm.c style): forward saves what backward needs; backward
 * computes the input-VJP only (parameter gradients are never needed).
 *
 *   DDPM UNet (Ho et al. 2020)          worker/models/unet.c   docs/design.md §Models
 *   WideResNet (RobustBench "Standard")  worker/models/wrn.c    docs/design.md §Models
 *   ResNet-50 (torchvision, ImageNet)    worker/models/resnet50.c
 * The classifiers (WRN, ResNet-50) are also reachable through one interface,
 * worker/models/classifier.h.
 *   ADM UNet (guided-diffusion)          worker/models/guided_unet.c  docs/design.md §Models
 *
 * Weights bind by their original state_dict names (worker/models/params.h); a
 * missing, extra or mis-shaped tensor is an error naming it.  Any batch size
 * works; buffers are sized on the first call for a shape and reused, so a
 * sampler loop does not allocate.
 */
#ifndef DRQ_MODELS_H
#define DRQ_MODELS_H

#include "common/safetensors.h"
#include "kernels/tensor.h"

#define UNET_MAX_LEVELS 8
#define UNET_MAX_ATTN 8

typedef struct {
    int resolution, in_channels, out_ch, ch;
    int ch_mult[UNET_MAX_LEVELS], n_levels;
    int num_res_blocks;
    int attn_resolutions[UNET_MAX_ATTN], n_attn;
    int format; /* weight names: 0 detected, 1 original, 2 diffusers (PARAMS_* of params.h; config "format") */
} unet_config;

typedef struct {
    int depth, widen, num_classes, in_channels;
} wrn_config;

/* torchvision ResNet-50 and its smaller relatives: layers[i] Bottlenecks in
 * stage i (ImageNet: 3, 4, 6, 3), width the stem's channels (64; stage i is
 * width·2^i wide, ×4 at its output), 3 input channels. */
typedef struct {
    int layers[4], width, num_classes;
} resnet50_config;

/* The ADM UNet by guided-diffusion's own flag names (script_util.py
 * create_model); 3 input channels, 6 outputs with learn_sigma, else 3. */
typedef struct {
    int image_size, num_channels, num_res_blocks;
    int channel_mult[UNET_MAX_LEVELS], n_levels;
    int attention_resolutions[UNET_MAX_ATTN], n_attn; /* feature-map sizes, e.g. 32, 16, 8 */
    int num_heads, num_head_channels;                 /* num_head_channels −1: num_heads heads */
    int use_scale_shift_norm, resblock_updown, learn_sigma;
    int bf16; /* not a config key (0 after guided_unet_config_parse): 1 = bf16 operands for every convolution,
                 linear layer and attention matmul (kernels/ops.h "bf16 operands"), set by the caller from the
                 spec's diffusion.precision or drq model's --precision bf16 */
} guided_unet_config;

/* Parses "cifar10" (preset), a path to a .json file, or inline JSON ('{...}').
 * Unknown keys and bad values are errors naming the key. */
int unet_config_parse(const char *arg, unet_config *c, drq_err *err);
int wrn_config_parse(const char *arg, wrn_config *c, drq_err *err);
/* "imagenet" (preset: layers [3,4,6,3], width 64, 1000 classes), a file or
 * inline JSON with num_classes (required), layers and width (optional, the
 * preset's by default). */
int resnet50_config_parse(const char *arg, resnet50_config *c, drq_err *err);

/* Presets: "imagenet256" (DiffPure's 256×256 unconditional model). */
int guided_unet_config_parse(const char *arg, guided_unet_config *c, drq_err *err);
/* 1 when the UNet has attention blocks at resolution res (the configs'
 * attention-resolution lists; the models and their FLOP counts ask this). */
int unet_config_attn_at(const unet_config *c, int res);
int guided_unet_config_attn_at(const guided_unet_config *c, int res);

typedef struct unet unet;
typedef struct wrn wrn;
typedef struct resnet50 resnet50;

/* weights NULL: random parameters from seed (benchmarks and self-tests).
 * The _on variants place parameters and activations on dev: forward and
 * backward then take tensors on dev (the timestep array t stays on the host). */
unet *unet_load(const unet_config *c, st_file *weights, uint64_t seed, drq_err *err);
unet *unet_load_on(const unet_config *c, st_file *weights, uint64_t seed, drq_device dev, drq_err *err);
drq_device unet_device(const unet *m);
size_t unet_param_count(const unet *m);
/* eps = ε_θ(x, t): x n × in × R × R, t n step indices (float), eps n × out × R × R. */
void unet_forward(unet *m, const Tensor *x, const float *t, Tensor *eps);
/* gx = (∂eps/∂x)ᵀ geps at the x and t of the last forward. */
void unet_backward(unet *m, const Tensor *geps, Tensor *gx);
void unet_free(unet *m);

wrn *wrn_load(const wrn_config *c, st_file *weights, uint64_t seed, drq_err *err);
wrn *wrn_load_on(const wrn_config *c, st_file *weights, uint64_t seed, drq_device dev, drq_err *err);
drq_device wrn_device(const wrn *m);
size_t wrn_param_count(const wrn *m);
int wrn_num_classes(const wrn *m);
int wrn_in_channels(const wrn *m);
/* logits = f(x): x n × in × H × W in [0,1], logits n × classes × 1 × 1. */
void wrn_forward(wrn *m, const Tensor *x, Tensor *logits);
void wrn_backward(wrn *m, const Tensor *glogits, Tensor *gx);
void wrn_free(wrn *m);

/* ResNet-50 on dev (weights NULL: random parameters from seed). */
resnet50 *resnet50_load(const resnet50_config *c, st_file *weights, uint64_t seed, drq_device dev, drq_err *err);
drq_device resnet50_device(const resnet50 *m);
size_t resnet50_param_count(const resnet50 *m); /* PyTorch's parameters(): 25,557,032 for "imagenet" */
int resnet50_num_classes(const resnet50 *m);
/* logits = f(x): x n × 3 × H × W in [0,1] (any H, W ≥ 1; ImageNet: 224),
 * normalised inside; logits n × classes × 1 × 1. */
void resnet50_forward(resnet50 *m, const Tensor *x, Tensor *logits);
/* gx = (∂logits/∂x)ᵀ glogits at the x of the last forward. */
void resnet50_backward(resnet50 *m, const Tensor *glogits, Tensor *gx);
void resnet50_free(resnet50 *m);

/* FLOPs of one forward pass per image, from the config alone (flops.c); an
 * input-VJP costs about as much again.  WRN: at res × res inputs. */
double unet_forward_flops(const unet_config *c);
double wrn_forward_flops(const wrn_config *c, int res);
double resnet50_forward_flops(const resnet50_config *c, int res);
double guided_unet_forward_flops(const guided_unet_config *c);

typedef struct guided_unet guided_unet;
guided_unet *guided_unet_load(const guided_unet_config *c, st_file *weights, uint64_t seed, drq_device dev,
                              drq_err *err);
drq_device guided_unet_device(const guided_unet *m);
size_t guided_unet_param_count(const guided_unet *m);
int guided_unet_out_channels(const guided_unet *m); /* 6 with learn_sigma (ε, then v's raw value), else 3 */
int guided_unet_resolution(const guided_unet *m);
/* out = the model at (x, t): x n × 3 × S × S (S = image_size), t n step
 * indices (host, float), out n × out_channels × S × S. */
void guided_unet_forward(guided_unet *m, const Tensor *x, const float *t, Tensor *out);
/* gx = (∂out/∂x)ᵀ gout at the x and t of the last forward. */
void guided_unet_backward(guided_unet *m, const Tensor *gout, Tensor *gx);
void guided_unet_free(guided_unet *m);
/* Activation checkpointing: a forward whose blocks' saved activations
 * (guided_unet_tape_bytes per image, times the batch) would pass `bytes`
 * keeps only each block's input and output, and the backward recomputes one
 * block at a time (results bit-identical; one more forward's work).
 * 0 (the default): never. */
void guided_unet_set_mem_budget(guided_unet *m, size_t bytes);
size_t guided_unet_tape_bytes(const guided_unet *m);
int guided_unet_checkpointed(const guided_unet *m); /* the last forward did */

#endif
