/* diffusers_names.h — the diffusers key names of the DDPM UNet
 * (google/ddpm-cifar10-32's diffusion_pytorch_model.safetensors) mapped onto
 * the original (pesser) state_dict names that unet.c binds, so such a file
 * loads unchanged (docs/design.md §Models; the map follows diffusers'
 * convert_ddpm_original_checkpoint_to_diffusers):
 *
 *   time_embedding.linear_{1,2}          temb.dense.{0,1}
 *   conv_in / conv_out / conv_norm_out   conv_in / conv_out / norm_out
 *   down_blocks.i.resnets.j              down.i.block.j
 *   down_blocks.i.attentions.j           down.i.attn.j
 *   down_blocks.i.downsamplers.0.conv    down.i.downsample.conv
 *   mid_block.resnets.{0,1}              mid.block_{1,2}
 *   mid_block.attentions.0               mid.attn_1
 *   up_blocks.k.*                        up.(L-1-k).*   (levels reversed)
 *   up_blocks.k.upsamplers.0.conv        up.(L-1-k).upsample.conv
 *   resnet time_emb_proj / conv_shortcut temb_proj / nin_shortcut
 *   attention group_norm                 norm
 *   attention query|to_q, key|to_k, value|to_v, proj_attn|to_out.0
 *                                        q, k, v, proj_out
 *
 * The attention projections are Linear [C, C] in diffusers and 1×1 convs
 * [C, C, 1, 1] in the original: the same numbers in the same order.
 */
#ifndef DRQ_DIFFUSERS_NAMES_H
#define DRQ_DIFFUSERS_NAMES_H

#include <stddef.h>

#include "common/safetensors.h"

/* 1 when F's names are diffusers' (a tensor under down_blocks., mid_block.,
 * up_blocks. or time_embedding.), 0 otherwise. */
int diffusers_detect(const st_file *f);
/* Number of UNet levels in a diffusers file: 1 + the largest i of down_blocks.i (0 if none). */
int diffusers_levels(const st_file *f);
/* The original name of diffusers tensor NAME in a UNet of L levels into out;
 * *attn_proj = 1 when it is an attention q/k/v/proj_out weight (Linear in
 * diffusers).  0 on success, -1 when NAME is not a diffusers UNet name. */
int diffusers_to_original(const char *name, int L, char *out, size_t cap, int *attn_proj);

#endif
