/* expand.c — the spec -> jobs step: a parsed sweep spec (spec.c) becomes
 * purifiers x attacks x seeds x image shards jobs, numbered by seq in that
 * nesting order (shard fastest).  The declarations stay in spec.h, beside
 * drq_spec, because every user of a spec (the coordinator, `drq run`, the
 * store) also expands it; this file holds only the arithmetic, so the
 * parser and the expansion can be read and changed apart (docs/design.md
 * §Data flow).
 *
 * Nothing here allocates: a job is computed from (spec, seq) on demand, so a
 * sweep of 10^8 jobs is inserted in chunks without ever being held whole. */
#include <assert.h>
#include <stdint.h>

#include "common/spec.h"

/* a·b for a, b >= 0, saturating at INT64_MAX instead of overflowing: a
 * product that does not fit is above every limit anyway. */
static int64_t mul_sat(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

int64_t drq_spec_shards(const drq_spec *s) { return (s->dataset.count + s->shard_images - 1) / s->shard_images; }

int64_t drq_spec_njobs(const drq_spec *s) {
    return mul_sat(mul_sat(mul_sat(s->npurifiers, s->nattacks), s->nseeds), drq_spec_shards(s));
}

int64_t drq_spec_nrows(const drq_spec *s) {
    return mul_sat(mul_sat(mul_sat(s->npurifiers, s->nattacks), s->nseeds), s->dataset.count);
}

void drq_spec_job(const drq_spec *s, int64_t seq, drq_job_desc *d) {
    int64_t nsh = drq_spec_shards(s);
    assert(seq >= 0 && seq < drq_spec_njobs(s));
    d->seq = seq;
    int64_t shard = seq % nsh, r = seq / nsh;
    d->seed_index = (int)(r % s->nseeds);
    r /= s->nseeds;
    d->attack = (int)(r % s->nattacks);
    d->purifier = (int)(r / s->nattacks);
    d->seed = s->seeds[d->seed_index];
    d->image_start = s->dataset.start + shard * s->shard_images;
    int64_t end = s->dataset.start + s->dataset.count;
    d->image_count = d->image_start + s->shard_images <= end ? s->shard_images : end - d->image_start;
    d->depends_on_seq = -1;
    const drq_attack_spec *a = &s->attacks[d->attack];
    if (a->randomness == RND_TRANSFER && a->transfer_seed != d->seed) {
        int src = a->transfer_index; /* set by the parser; searched for in a spec built by hand */
        if (src < 0 || src >= s->nseeds || s->seeds[src] != a->transfer_seed) {
            src = 0;
            for (int i = 0; i < s->nseeds; i++)
                if (s->seeds[i] == a->transfer_seed) src = i;
        }
        d->depends_on_seq = (((int64_t)d->purifier * s->nattacks + d->attack) * s->nseeds + src) * nsh + shard;
    }
}
