/* model_config.c — parsing the UNet / WRN / ResNet-50 / ADM UNet size configs of `--config`:
 * a preset name, a JSON file, or inline JSON.  Strict: unknown keys, wrong
 * types and out-of-range sizes are errors naming the key (the JSON-field
 * helpers are common/json_get.h's, shared with the sweep spec). */
#include <jansson.h>
#include <string.h>

#include "common/json_get.h"
#include "worker/models/models.h"

/* Loads ARG as JSON: inline when it starts with '{', else a file path. */
static json_t *config_json(const char *arg, drq_err *err) {
    json_error_t je;
    json_t *j = arg[0] == '{' ? json_loads(arg, 0, &je) : json_load_file(arg, 0, &je);
    if (!j) {
        drq_errf(err, "--config %s: %s (line %d)", arg[0] == '{' ? "(inline JSON)" : arg, je.text, je.line);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        drq_errf(err, "--config: expected a JSON object");
        return NULL;
    }
    return j;
}

/* An integer in [lo,hi] at config.KEY; every config key is required. */
static int config_int(json_t *j, const char *key, int lo, int hi, int *out, drq_err *err) {
    if (!json_object_get(j, key)) return drq_errf(err, "config.%s: missing (expected an integer in [%d, %d])", key, lo, hi);
    int64_t v = 0;
    if (drq_json_get_int(j, "config", key, 1, lo, hi, 0, &v, err) < 0) return -1;
    *out = (int)v;
    return 0;
}

static int get_int_list(json_t *j, const char *key, int lo, int hi, int maxn, int allow_empty, int *out, int *n,
                        drq_err *err) {
    json_t *v = json_object_get(j, key);
    if (!v || !json_is_array(v) || (int)json_array_size(v) > maxn || (!allow_empty && json_array_size(v) == 0))
        return drq_errf(err, "config.%s: expected a list of %s%d integers in [%d, %d]", key,
                        allow_empty ? "0 to " : "1 to ", maxn, lo, hi);
    *n = (int)json_array_size(v);
    for (int i = 0; i < *n; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_integer(e) || json_integer_value(e) < lo || json_integer_value(e) > hi)
            return drq_errf(err, "config.%s[%d]: expected an integer in [%d, %d]", key, i, lo, hi);
        out[i] = (int)json_integer_value(e);
    }
    return 0;
}

int unet_config_attn_at(const unet_config *c, int res) {
    for (int i = 0; i < c->n_attn; i++)
        if (c->attn_resolutions[i] == res) return 1;
    return 0;
}

int guided_unet_config_attn_at(const guided_unet_config *c, int res) {
    for (int i = 0; i < c->n_attn; i++)
        if (c->attention_resolutions[i] == res) return 1;
    return 0;
}

int unet_config_parse(const char *arg, unet_config *c, drq_err *err) {
    memset(c, 0, sizeof *c);
    if (!strcmp(arg, "cifar10")) { /* docs/design.md §Models: 35,746,307 parameters */
        *c = (unet_config){.resolution = 32, .in_channels = 3, .out_ch = 3, .ch = 128,
                           .ch_mult = {1, 2, 2, 2}, .n_levels = 4, .num_res_blocks = 2,
                           .attn_resolutions = {16}, .n_attn = 1};
        return 0;
    }
    static const char *const keys[] = {"resolution", "in_channels", "out_ch", "ch", "ch_mult",
                                       "num_res_blocks", "attn_resolutions", "format", NULL};
    json_t *j = config_json(arg, err);
    if (!j) return -1;
    int rc = drq_json_check_keys(j, "config", keys, err);
    if (!rc) rc = config_int(j, "resolution", 1, 4096, &c->resolution, err);
    if (!rc) rc = config_int(j, "in_channels", 1, 64, &c->in_channels, err);
    if (!rc) rc = config_int(j, "out_ch", 1, 64, &c->out_ch, err);
    if (!rc) rc = config_int(j, "ch", 32, 4096, &c->ch, err);
    if (!rc) rc = get_int_list(j, "ch_mult", 1, 64, UNET_MAX_LEVELS, 0, c->ch_mult, &c->n_levels, err);
    if (!rc) rc = config_int(j, "num_res_blocks", 1, 16, &c->num_res_blocks, err);
    if (!rc) rc = get_int_list(j, "attn_resolutions", 1, 4096, UNET_MAX_ATTN, 1, c->attn_resolutions, &c->n_attn, err);
    if (!rc && json_object_get(j, "format")) { /* optional: the weights' key names */
        json_t *f = json_object_get(j, "format");
        const char *fs = json_is_string(f) ? json_string_value(f) : "";
        if (!strcmp(fs, "auto")) c->format = 0;
        else if (!strcmp(fs, "original")) c->format = 1;
        else if (!strcmp(fs, "diffusers")) c->format = 2;
        else rc = drq_errf(err, "config.format: expected \"auto\", \"original\" or \"diffusers\"");
    }
    json_decref(j);
    if (rc) return rc;
    if (c->ch % 32) return drq_errf(err, "config.ch: %d is not a multiple of 32 (GroupNorm has 32 groups)", c->ch);
    if (c->resolution % (1 << (c->n_levels - 1)))
        return drq_errf(err, "config.resolution: %d is not divisible by 2^%d (one halving per level but the last)",
                        c->resolution, c->n_levels - 1);
    return 0;
}

int wrn_config_parse(const char *arg, wrn_config *c, drq_err *err) {
    memset(c, 0, sizeof *c);
    if (!strcmp(arg, "cifar10")) { /* WRN-28-10, docs/design.md §Models: 36,479,194 parameters */
        *c = (wrn_config){.depth = 28, .widen = 10, .num_classes = 10, .in_channels = 3};
        return 0;
    }
    static const char *const keys[] = {"depth", "widen", "num_classes", "in_channels", NULL};
    json_t *j = config_json(arg, err);
    if (!j) return -1;
    int rc = drq_json_check_keys(j, "config", keys, err);
    if (!rc) rc = config_int(j, "depth", 10, 1000, &c->depth, err);
    if (!rc) rc = config_int(j, "widen", 1, 64, &c->widen, err);
    if (!rc) rc = config_int(j, "num_classes", 2, 100000, &c->num_classes, err);
    if (!rc) rc = config_int(j, "in_channels", 1, 64, &c->in_channels, err);
    json_decref(j);
    if (rc) return rc;
    if ((c->depth - 4) % 6) return drq_errf(err, "config.depth: %d is not 6n+4", c->depth);
    return 0;
}

int resnet50_config_parse(const char *arg, resnet50_config *c, drq_err *err) {
    /* ResNet-50, docs/design.md §Models: 25,557,032 parameters */
    *c = (resnet50_config){.layers = {3, 4, 6, 3}, .width = 64, .num_classes = 1000};
    if (!strcmp(arg, "imagenet")) return 0;
    static const char *const keys[] = {"num_classes", "layers", "width", NULL};
    json_t *j = config_json(arg, err);
    if (!j) return -1;
    int rc = drq_json_check_keys(j, "config", keys, err), n = 4;
    if (!rc) rc = config_int(j, "num_classes", 2, 100000, &c->num_classes, err);
    if (!rc && json_object_get(j, "layers")) {
        rc = get_int_list(j, "layers", 1, 64, 4, 0, c->layers, &n, err);
        if (!rc && n != 4) rc = drq_errf(err, "config.layers: expected 4 integers (Bottlenecks per stage), got %d", n);
    }
    if (!rc && json_object_get(j, "width")) rc = config_int(j, "width", 1, 1024, &c->width, err);
    json_decref(j);
    return rc;
}

/* An optional boolean at config.KEY (absent: *out unchanged). */
static int config_bool(json_t *j, const char *key, int *out, drq_err *err) {
    json_t *v = json_object_get(j, key);
    if (!v) return 0;
    if (!json_is_boolean(v)) return drq_errf(err, "config.%s: expected true or false", key);
    *out = json_is_true(v);
    return 0;
}

/* channel_mult when the config omits it: create_model's defaults by image size. */
static int default_channel_mult(guided_unet_config *c, drq_err *err) {
    static const int m256[] = {1, 1, 2, 2, 4, 4}, m128[] = {1, 1, 2, 3, 4}, m64[] = {1, 2, 3, 4};
    const int *m = c->image_size == 256 ? m256 : c->image_size == 128 ? m128 : c->image_size == 64 ? m64 : NULL;
    if (!m) return drq_errf(err, "config.channel_mult: missing, and image_size %d has no default (64, 128, 256 do)",
                            c->image_size);
    c->n_levels = c->image_size == 256 ? 6 : c->image_size == 128 ? 5 : 4;
    memcpy(c->channel_mult, m, sizeof(int) * c->n_levels);
    return 0;
}

int guided_unet_config_parse(const char *arg, guided_unet_config *c, drq_err *err) {
    memset(c, 0, sizeof *c);
    if (!strcmp(arg, "imagenet256")) { /* DiffPure's 256x256_diffusion_uncond.pt, ../shared/DESIGN.md §10 */
        *c = (guided_unet_config){.image_size = 256, .num_channels = 256, .num_res_blocks = 2,
                                  .channel_mult = {1, 1, 2, 2, 4, 4}, .n_levels = 6,
                                  .attention_resolutions = {32, 16, 8}, .n_attn = 3,
                                  .num_heads = 4, .num_head_channels = 64, .use_scale_shift_norm = 1,
                                  .resblock_updown = 1, .learn_sigma = 1};
        return 0;
    }
    static const char *const keys[] = {"image_size", "num_channels", "num_res_blocks", "channel_mult",
                                       "attention_resolutions", "num_heads", "num_head_channels",
                                       "use_scale_shift_norm", "resblock_updown", "learn_sigma", "class_cond",
                                       "use_new_attention_order", NULL};
    json_t *j = config_json(arg, err);
    if (!j) return -1;
    int cls = 0, neworder = 0;
    c->num_heads = 1, c->num_head_channels = -1; /* create_model's defaults */
    int rc = drq_json_check_keys(j, "config", keys, err);
    if (!rc) rc = config_int(j, "image_size", 8, 4096, &c->image_size, err);
    if (!rc) rc = config_int(j, "num_channels", 32, 4096, &c->num_channels, err);
    if (!rc) rc = config_int(j, "num_res_blocks", 1, 16, &c->num_res_blocks, err);
    if (!rc) rc = json_object_get(j, "channel_mult")
                      ? get_int_list(j, "channel_mult", 1, 64, UNET_MAX_LEVELS, 0, c->channel_mult, &c->n_levels, err)
                      : default_channel_mult(c, err);
    if (!rc) rc = get_int_list(j, "attention_resolutions", 1, 4096, UNET_MAX_ATTN, 1, c->attention_resolutions,
                               &c->n_attn, err);
    if (!rc && json_object_get(j, "num_heads")) rc = config_int(j, "num_heads", 1, 1024, &c->num_heads, err);
    if (!rc && json_object_get(j, "num_head_channels")) {
        int64_t v = 0;
        rc = drq_json_get_int(j, "config", "num_head_channels", 1, -1, 4096, 0, &v, err) < 0 ? -1 : 0;
        if (!rc && v == 0) rc = drq_errf(err, "config.num_head_channels: expected -1 (use num_heads) or a width ≥ 1");
        c->num_head_channels = (int)v;
    }
    if (!rc) rc = config_bool(j, "use_scale_shift_norm", &c->use_scale_shift_norm, err);
    if (!rc) rc = config_bool(j, "resblock_updown", &c->resblock_updown, err);
    if (!rc) rc = config_bool(j, "learn_sigma", &c->learn_sigma, err);
    if (!rc) rc = config_bool(j, "class_cond", &cls, err);
    if (!rc) rc = config_bool(j, "use_new_attention_order", &neworder, err);
    json_decref(j);
    if (rc) return rc;
    if (cls) return drq_errf(err, "config.class_cond: class-conditional models are not built (unconditional only)");
    if (neworder) return drq_errf(err, "config.use_new_attention_order: only the legacy QKV order is built");
    for (int i = 0; i < c->n_levels; i++)
        if (c->channel_mult[i] * c->num_channels % 32)
            return drq_errf(err, "config.channel_mult[%d]: %d channels are not a multiple of 32 (GroupNorm32)", i,
                            c->channel_mult[i] * c->num_channels);
    if (c->image_size % (1 << (c->n_levels - 1)))
        return drq_errf(err, "config.image_size: %d is not divisible by 2^%d (one halving per level but the last)",
                        c->image_size, c->n_levels - 1);
    /* every attention width (the levels listed, and the middle block) must split into whole heads */
    for (int lv = 0, res = c->image_size; lv <= c->n_levels; lv++, res /= 2) {
        int ch = c->channel_mult[lv < c->n_levels ? lv : c->n_levels - 1] * c->num_channels, used = lv == c->n_levels;
        for (int i = 0; i < c->n_attn; i++) used |= lv < c->n_levels && res == c->attention_resolutions[i];
        if (used && (c->num_head_channels > 0 ? ch % c->num_head_channels : ch % c->num_heads))
            return drq_errf(err, "config.%s: %d channels %s do not split into whole heads",
                            c->num_head_channels > 0 ? "num_head_channels" : "num_heads", ch,
                            lv < c->n_levels ? "at an attention resolution" : "in the middle block");
    }
    return 0;
}
