/* classifier.h — one interface over drq's classifiers, so the attack engine
 * and the CLI need not know which network judges the purified images.
 *
 *   arch "wrn"       WideResNet (RobustBench CIFAR-10 "Standard"), worker/models/wrn.c
 *   arch "resnet50"  torchvision ResNet-50 (RobustBench ImageNet "Standard_R50"),
 *                    worker/models/resnet50.c
 *
 * Every classifier takes images in [0,1] (any normalisation happens inside)
 * and returns logits n × classes × 1 × 1; backward is the input-VJP at the
 * x of the last forward.
 */
#ifndef DRQ_CLASSIFIER_H
#define DRQ_CLASSIFIER_H

#include "worker/models/models.h"

typedef struct classifier classifier;

/* 1 when arch names a classifier of this build. */
int classifier_arch_known(const char *arch);
/* Parses config (a preset, a .json path or inline JSON, as --config) for
 * arch and loads it on dev (weights NULL: random parameters from seed).
 * NULL with err filled on an unknown arch, a bad config or bad weights. */
classifier *classifier_load(const char *arch, const char *config, st_file *weights, uint64_t seed, drq_device dev,
                            drq_err *err);
/* A classifier over a model the caller keeps owning (classifier_free then
 * frees only the wrapper): tests and tools that load a WRN themselves. */
classifier *classifier_wrap_wrn(wrn *w);
drq_device classifier_device(const classifier *c);
int classifier_num_classes(const classifier *c);
int classifier_in_channels(const classifier *c);
size_t classifier_param_count(const classifier *c);
void classifier_forward(classifier *c, const Tensor *x, Tensor *logits);
void classifier_backward(classifier *c, const Tensor *glogits, Tensor *gx);
void classifier_free(classifier *c);

#endif
