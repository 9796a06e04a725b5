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
        int cout = ch * c->ch_mult[i], attn = 0;
        for (int a = 0; a < c->n_attn; a++) attn |= c->attn_resolutions[a] == r;
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
        int cout = ch * c->ch_mult[i], attn = 0;
        for (int a = 0; a < c->n_attn; a++) attn |= c->attn_resolutions[a] == r;
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
