/* dataset_internal.h — what the dataset readers (dataset.c,
 * dataset_imagenet.c) share; not for other modules. */
#ifndef DRQ_DATASET_INTERNAL_H
#define DRQ_DATASET_INTERNAL_H

#include "dataset.h"

/* Checks start/count (−1: to the end) against total images of what; sets *n. */
int dataset_resolve_range(long start, long count, long total, const char *what, long *n, drq_err *err);
/* kind "imagenet" (dataset.h). */
int dataset_load_imagenet(const char *path, const char *split, long start, long count, drq_dataset *out,
                          drq_err *err);

#endif
