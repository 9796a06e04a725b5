/* flops.c — floating-point operations of one forward pass per image, counted
 * layer by layer from a model's config (2 per multiply-add; convolutions,
 * linears and the two attention products; pointwise work not counted).  The
 * dry run (cli/cmd_dryrun.c) prices sweeps with them and `drq model bench`
 * turns its timings into GFLOP/s against the machine's SGEMM peak. */
#include "worker/models/models.h"

static double conv_macs(int r, int cin, int cout, int k) { return (double)r * r * cin * cout * k * k; }

static double res_macs(int r, int cin, int cout, int temb) {
    return conv_macs(r, cin, cout, 3) + conv_macs(r, cout, cout, 3) + (cin != cout ? conv_macs(r, cin, cout, 1) : 0) +
           (double)temb * cout;
}

static double attn_macs(int r, int c) { return 4.0 * r * r * c * c + 2.0 * (double)r * r * r * r * c; }

double unet_forward_flops(const unet_config *c) {
    int ch = c->ch, temb = 4 * ch, L = c->n_levels, r = c->resolution, cur = ch, nskip = 0;
    int skips[64];
    double m = (double)ch * temb + (double)temb * temb + conv_macs(r, c->in_channels, ch, 3);
    skips[nskip++] = ch;
    for (int i = 0; i < L; i++) {
        int cout = ch * c->ch_mult[i], attn = unet_config_attn_at(c, r);
        for (int j = 0; j < c->num_res_blocks; j++) {
            m += res_macs(r, cur, cout, temb), cur = cout;
            if (attn) m += attn_macs(r, cur);
            if (nskip < 64) skips[nskip++] = cur;
        }
        if (i != L - 1) {
            m += conv_macs(r / 2, cur, cur, 3), r /= 2;
            if (nskip < 64) skips[nskip++] = cur;
        }
    }
    m += 2 * res_macs(r, cur, cur, temb) + attn_macs(r, cur);
    for (int i = L - 1; i >= 0; i--) {
        int cout = ch * c->ch_mult[i], attn = unet_config_attn_at(c, r);
        for (int j = 0; j < c->num_res_blocks + 1; j++) {
            int s = nskip > 0 ? skips[--nskip] : 0;
            m += res_macs(r, cur + s, cout, temb), cur = cout;
            if (attn) m += attn_macs(r, cur);
        }
        if (i != 0) r *= 2, m += conv_macs(r, cur, cur, 3);
    }
    m += conv_macs(r, cur, c->out_ch, 3);
    return 2 * m;
}

double wrn_forward_flops(const wrn_config *c, int res) {
    int n = (c->depth - 4) / 6, w[4] = {16, 16 * c->widen, 32 * c->widen, 64 * c->widen}, r = res;
    double m = conv_macs(r, c->in_channels, 16, 3);
    int cin = 16;
    for (int g = 0; g < 3; g++) {
        if (g) r = (r + 1) / 2;
        for (int b = 0; b < n; b++) {
            int cout = w[g + 1];
            m += conv_macs(r, cin, cout, 3) + conv_macs(r, cout, cout, 3) + (cin != cout ? conv_macs(r, cin, cout, 1) : 0);
            cin = cout;
        }
    }
    m += (double)cin * c->num_classes;
    return 2 * m;
}

/* ResNet-50 (worker/models/resnet50.c) at res × res: stem, Bottlenecks, fc. */
double resnet50_forward_flops(const resnet50_config *c, int res) {
    int r = (res - 1) / 2 + 1; /* conv1 7×7/2 pad 3 */
    double m = conv_macs(r, 3, c->width, 7);
    r = (r - 1) / 2 + 1; /* maxpool 3×3/2 pad 1 */
    int cin = c->width;
    for (int l = 0; l < 4; l++)
        for (int i = 0; i < c->layers[l]; i++) {
            int width = c->width << l, cout = 4 * width, ro = i == 0 && l > 0 ? (r - 1) / 2 + 1 : r;
            m += conv_macs(r, cin, width, 1) + conv_macs(ro, width, width, 3) + conv_macs(ro, width, cout, 1);
            if (ro != r || cin != cout) m += conv_macs(ro, cin, cout, 1);
            cin = cout, r = ro;
        }
    return 2 * (m + (double)cin * c->num_classes);
}

/* One ADM ResBlock: conv 3×3 at the output size (after the resampling of
 * resblock_updown), the embedding projection (2·cout with scale-shift),
 * conv 3×3, and a 1×1 skip conv when the width changes. */
static double adm_res_macs(int rout, int cin, int cout, int emb, int ss) {
    return conv_macs(rout, cin, cout, 3) + (double)emb * cout * (ss ? 2 : 1) + conv_macs(rout, cout, cout, 3) +
           (cin != cout ? conv_macs(rout, cin, cout, 1) : 0);
}

/* The ADM UNet (worker/models/guided_unet.c), block for block as its build(). */
double guided_unet_forward_flops(const guided_unet_config *c) {
    int mc = c->num_channels, emb = 4 * mc, L = c->n_levels, r = c->image_size, ss = c->use_scale_shift_norm;
    int chans[64], sp = 0, ch = c->channel_mult[0] * mc, input_ch = ch;
    double m = (double)mc * emb + (double)emb * emb + conv_macs(r, 3, ch, 3);
    chans[sp++] = ch;
    for (int lv = 0; lv < L; lv++) {
        for (int j = 0; j < c->num_res_blocks; j++) {
            int cout = c->channel_mult[lv] * mc;
            m += adm_res_macs(r, ch, cout, emb, ss), ch = cout;
            if (guided_unet_config_attn_at(c, r)) m += attn_macs(r, ch);
            if (sp < 64) chans[sp++] = ch;
        }
        if (lv != L - 1) {
            m += c->resblock_updown ? adm_res_macs(r / 2, ch, ch, emb, ss) : conv_macs(r / 2, ch, ch, 3);
            if (sp < 64) chans[sp++] = ch;
            r /= 2;
        }
    }
    m += 2 * adm_res_macs(r, ch, ch, emb, ss) + attn_macs(r, ch);
    for (int lv = L - 1; lv >= 0; lv--)
        for (int j = 0; j < c->num_res_blocks + 1; j++) {
            int skip = sp > 0 ? chans[--sp] : 0, cout = c->channel_mult[lv] * mc;
            m += adm_res_macs(r, ch + skip, cout, emb, ss), ch = cout;
            if (guided_unet_config_attn_at(c, r)) m += attn_macs(r, ch);
            if (lv && j == c->num_res_blocks) {
                m += c->resblock_updown ? adm_res_macs(2 * r, ch, ch, emb, ss) : conv_macs(2 * r, ch, ch, 3);
                r *= 2;
            }
        }
    m += conv_macs(r, input_ch, c->learn_sigma ? 6 : 3, 3);
    return 2 * m;
}
