/* classifier.c — see classifier.h: a tagged pointer to one of the models. */
#include "worker/models/classifier.h"

#include <stdlib.h>
#include <string.h>

struct classifier {
    wrn *w;
    resnet50 *r;
    int in_channels;
    int borrowed; /* classifier_wrap_wrn: the model is the caller's */
};

int classifier_arch_known(const char *arch) { return !strcmp(arch, "wrn") || !strcmp(arch, "resnet50"); }

classifier *classifier_load(const char *arch, const char *config, st_file *weights, uint64_t seed, drq_device dev,
                            drq_err *err) {
    classifier *c = xcalloc(1, sizeof *c);
    if (!strcmp(arch, "wrn")) {
        wrn_config wc;
        if (!wrn_config_parse(config, &wc, err)) c->w = wrn_load_on(&wc, weights, seed, dev, err);
        c->in_channels = wc.in_channels;
    } else if (!strcmp(arch, "resnet50")) {
        resnet50_config rc;
        if (!resnet50_config_parse(config, &rc, err)) c->r = resnet50_load(&rc, weights, seed, dev, err);
        c->in_channels = 3;
    } else {
        drq_errf(err, "unknown classifier arch '%s' (expected wrn or resnet50)", arch);
    }
    if (!c->w && !c->r) {
        free(c);
        return NULL;
    }
    return c;
}

classifier *classifier_wrap_wrn(wrn *w) {
    classifier *c = xcalloc(1, sizeof *c);
    c->w = w, c->borrowed = 1, c->in_channels = wrn_in_channels(w);
    return c;
}

drq_device classifier_device(const classifier *c) { return c->w ? wrn_device(c->w) : resnet50_device(c->r); }
int classifier_num_classes(const classifier *c) { return c->w ? wrn_num_classes(c->w) : resnet50_num_classes(c->r); }
int classifier_in_channels(const classifier *c) { return c->in_channels; }
size_t classifier_param_count(const classifier *c) {
    return c->w ? wrn_param_count(c->w) : resnet50_param_count(c->r);
}

void classifier_forward(classifier *c, const Tensor *x, Tensor *logits) {
    if (c->w) wrn_forward(c->w, x, logits);
    else resnet50_forward(c->r, x, logits);
}

void classifier_backward(classifier *c, const Tensor *glogits, Tensor *gx) {
    if (c->w) wrn_backward(c->w, glogits, gx);
    else resnet50_backward(c->r, glogits, gx);
}

void classifier_free(classifier *c) {
    if (!c) return;
    if (!c->borrowed) wrn_free(c->w), resnet50_free(c->r);
    free(c);
}
