/* fixture_model.h — loading a committed model fixture
 * (tests/fixtures/NAME.json + NAME.weights.safetensors, made by
 * tests/ref/gen_fixtures.py) on a device.  Include after check.h: a failure
 * is a failed CHECK naming the fixture, and the result is NULL. */
#ifndef DRQ_TEST_FIXTURE_MODEL_H
#define DRQ_TEST_FIXTURE_MODEL_H

#include <stdio.h>

#include "../common/safetensors.h"
#include "worker/models/models.h"

/* A UNet (is_unet) or a WRN bound to the tensors of *w (keep w until the model is freed). */
static void *fixture_model(const char *name, int is_unet, st_file *w, drq_device dev) {
    char cfg[160], wp[160];
    drq_err err = {{0}};
    unet_config uc;
    wrn_config wc;
    void *m = NULL;
    snprintf(cfg, sizeof cfg, "tests/fixtures/%s.json", name);
    snprintf(wp, sizeof wp, "tests/fixtures/%s.weights.safetensors", name);
    if (!(is_unet ? unet_config_parse(cfg, &uc, &err) : wrn_config_parse(cfg, &wc, &err)) && !st_load(wp, w, &err))
        m = is_unet ? (void *)unet_load_on(&uc, w, 0, dev, &err) : (void *)wrn_load_on(&wc, w, 0, dev, &err);
    CHECK_MSG(m != NULL, "fixture %s: %s", name, err.msg);
    return m;
}

#endif
