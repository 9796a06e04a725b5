/* diffusers_names.c — see diffusers_names.h. */
#include "worker/models/diffusers_names.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int starts(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* A decimal index at *s followed by '.', advancing *s past the dot. */
static int take_index(const char **s, int *v) {
    const char *p = *s;
    if (*p < '0' || *p > '9') return -1;
    long x = 0;
    while (*p >= '0' && *p <= '9' && x < 100000) x = x * 10 + (*p++ - '0');
    if (*p != '.') return -1;
    *v = (int)x;
    *s = p + 1;
    return 0;
}

int diffusers_detect(const st_file *f) {
    for (int i = 0; f && i < f->n; i++) {
        const char *n = f->t[i].name;
        if (starts(n, "down_blocks.") || starts(n, "mid_block.") || starts(n, "up_blocks.") ||
            starts(n, "time_embedding."))
            return 1;
    }
    return 0;
}

int diffusers_levels(const st_file *f) {
    int L = 0;
    for (int i = 0; f && i < f->n; i++) {
        const char *n = f->t[i].name;
        int k;
        if (starts(n, "down_blocks.") && (n += strlen("down_blocks."), take_index(&n, &k) == 0) && k + 1 > L) L = k + 1;
    }
    return L;
}

/* out = prefix + the original name of the tail s, by the first entry of map
 * ({diffusers, original} pairs) that starts s; the leaf must be weight or
 * bias.  *hit (may be NULL) gets the entry's index.  -1: no entry, another
 * leaf, or out too small. */
static int map_tail(const char *s, const char *const (*map)[2], size_t n, char *out, size_t cap, const char *prefix,
                    size_t *hit) {
    for (size_t i = 0; i < n; i++)
        if (starts(s, map[i][0])) {
            const char *leaf = s + strlen(map[i][0]);
            if (strcmp(leaf, "weight") && strcmp(leaf, "bias")) return -1;
            if (hit) *hit = i;
            return snprintf(out, cap, "%s%s%s", prefix, map[i][1], leaf) < (int)cap ? 0 : -1;
        }
    return -1;
}

/* The tail of a resnet: norm1|conv1|norm2|conv2|time_emb_proj|conv_shortcut, then weight|bias. */
static int map_resnet(const char *s, char *out, size_t cap, const char *prefix) {
    static const char *const map[][2] = {{"norm1.", "norm1."}, {"conv1.", "conv1."}, {"norm2.", "norm2."},
                                         {"conv2.", "conv2."}, {"time_emb_proj.", "temb_proj."},
                                         {"conv_shortcut.", "nin_shortcut."}};
    return map_tail(s, map, sizeof map / sizeof map[0], out, cap, prefix, NULL);
}

/* The tail of an attention block, both namings; *attn_proj: a q/k/v/proj weight (1×1 conv or Linear). */
static int map_attn(const char *s, char *out, size_t cap, const char *prefix, int *attn_proj) {
    static const char *const map[][2] = {{"group_norm.", "norm."}, {"query.", "q."},     {"to_q.", "q."},
                                         {"key.", "k."},           {"to_k.", "k."},      {"value.", "v."},
                                         {"to_v.", "v."},          {"proj_attn.", "proj_out."},
                                         {"to_out.0.", "proj_out."}};
    size_t i = 0;
    if (map_tail(s, map, sizeof map / sizeof map[0], out, cap, prefix, &i)) return -1;
    *attn_proj = i > 0 && !strcmp(s + strlen(map[i][0]), "weight");
    return 0;
}

/* resnets.j. / attentions.j. / {down,up}samplers.0.conv. under a level prefix ("down.1." / "up.2."). */
static int map_level(const char *s, char *out, size_t cap, const char *lvl, int up, int *attn_proj) {
    char pre[96];
    int j;
    if (starts(s, "resnets.")) {
        s += strlen("resnets.");
        if (take_index(&s, &j)) return -1;
        snprintf(pre, sizeof pre, "%sblock.%d.", lvl, j);
        return map_resnet(s, out, cap, pre);
    }
    if (starts(s, "attentions.")) {
        s += strlen("attentions.");
        if (take_index(&s, &j)) return -1;
        snprintf(pre, sizeof pre, "%sattn.%d.", lvl, j);
        return map_attn(s, out, cap, pre, attn_proj);
    }
    const char *rs = up ? "upsamplers.0.conv." : "downsamplers.0.conv.";
    if (starts(s, rs)) {
        s += strlen(rs);
        if (strcmp(s, "weight") && strcmp(s, "bias")) return -1;
        return snprintf(out, cap, "%s%s.conv.%s", lvl, up ? "upsample" : "downsample", s) < (int)cap ? 0 : -1;
    }
    return -1;
}

int diffusers_to_original(const char *name, int L, char *out, size_t cap, int *attn_proj) {
    *attn_proj = 0;
    const char *s = name;
    char lvl[64];
    int i;
    static const char *const top[][2] = {{"time_embedding.linear_1.", "temb.dense.0."},
                                         {"time_embedding.linear_2.", "temb.dense.1."},
                                         {"conv_norm_out.", "norm_out."},
                                         {"conv_in.", "conv_in."},
                                         {"conv_out.", "conv_out."}};
    for (size_t k = 0; k < sizeof top / sizeof top[0]; k++)
        if (starts(s, top[k][0])) {
            const char *leaf = s + strlen(top[k][0]);
            if (strcmp(leaf, "weight") && strcmp(leaf, "bias")) return -1;
            return snprintf(out, cap, "%s%s", top[k][1], leaf) < (int)cap ? 0 : -1;
        }
    if (starts(s, "down_blocks.")) {
        s += strlen("down_blocks.");
        if (take_index(&s, &i) || i >= L) return -1;
        snprintf(lvl, sizeof lvl, "down.%d.", i);
        return map_level(s, out, cap, lvl, 0, attn_proj);
    }
    if (starts(s, "up_blocks.")) {
        s += strlen("up_blocks.");
        if (take_index(&s, &i) || i >= L) return -1;
        snprintf(lvl, sizeof lvl, "up.%d.", L - 1 - i);
        return map_level(s, out, cap, lvl, 1, attn_proj);
    }
    if (starts(s, "mid_block.resnets.")) {
        s += strlen("mid_block.resnets.");
        if (take_index(&s, &i) || i > 1) return -1;
        return map_resnet(s, out, cap, i == 0 ? "mid.block_1." : "mid.block_2.");
    }
    if (starts(s, "mid_block.attentions.0.")) return map_attn(s + strlen("mid_block.attentions.0."), out, cap, "mid.attn_1.", attn_proj);
    return -1;
}
