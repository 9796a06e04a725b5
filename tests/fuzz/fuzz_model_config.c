/* fuzz_model_config.c — libFuzzer harness for the model size configs of
 * --config (worker/models/model_config.c: unet_config_parse, wrn_config_parse).
 *
 * Input: the --config argument.  Text that starts with '{' (or the preset
 * "cifar10") is passed inline as is; anything else is written to a temporary
 * .json file whose path is passed, so both ways in are fuzzed.  Both parsers
 * run on every input; an accepted config must satisfy the documented limits.
 */
#include "tests/fuzz/fuzz_common.h"
#include "worker/models/models.h"

static void fail(const char *what, const char *arg) {
    fprintf(stderr, "config invariant broken: %s\n%s\n", what, arg);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fz_str(data, size);
    const char *arg = text;
    if (text[0] != '{' && strcmp(text, "cifar10") != 0) {
        arg = fz_path("config.json");
        fz_write(arg, data, size);
    }
    drq_err err;
    unet_config u;
    err.msg[0] = 0;
    if (unet_config_parse(arg, &u, &err) == 0) {
        if (u.n_levels < 1 || u.n_levels > UNET_MAX_LEVELS || u.n_attn < 0 || u.n_attn > UNET_MAX_ATTN ||
            u.ch % 32 || u.resolution < 1 || u.resolution % (1 << (u.n_levels - 1)))
            fail("accepted UNet config out of range", text);
    } else if (!err.msg[0]) {
        fail("UNet config refused without a message", text);
    }
    wrn_config w;
    err.msg[0] = 0;
    if (wrn_config_parse(arg, &w, &err) == 0) {
        if (w.depth < 10 || (w.depth - 4) % 6 || w.widen < 1 || w.num_classes < 2 || w.in_channels < 1)
            fail("accepted WRN config out of range", text);
    } else if (!err.msg[0]) {
        fail("WRN config refused without a message", text);
    }
    free(text);
    return 0;
}
