/* fuzz_spec.c — libFuzzer harness for the sweep spec parser (common/spec.c).
 *
 * Input: spec text (JSON).  A spec that parses must
 *   - have a canonical form that parses back to the same canonical form;
 *   - expand into a positive number of jobs and rows;
 *   - give, for the first and last jobs of the expansion, an image range
 *     inside the dataset range and a dependency (transfer) inside the sweep.
 * Everything is freed (ASan's leak checker stays on).
 */
#include <inttypes.h>

#include "common/spec.h"
#include "tests/fuzz/fuzz_common.h"

static void fail(const char *what, const char *text) {
    fprintf(stderr, "spec invariant broken: %s\n%s\n", what, text);
    abort();
}

static void check_job(const drq_spec *s, int64_t q, int64_t njobs, const char *text) {
    drq_job_desc d;
    drq_spec_job(s, q, &d);
    if (d.seq != q || d.purifier < 0 || d.purifier >= s->npurifiers || d.attack < 0 || d.attack >= s->nattacks ||
        d.seed_index < 0 || d.seed_index >= s->nseeds)
        fail("job indices out of range", text);
    if (d.image_count < 1 || d.image_count > s->shard_images || d.image_start < s->dataset.start ||
        d.image_start + d.image_count > s->dataset.start + s->dataset.count)
        fail("job image range outside the dataset range", text);
    if (d.depends_on_seq != -1 && (d.depends_on_seq < 0 || d.depends_on_seq >= njobs || d.depends_on_seq == q))
        fail("job dependency outside the sweep", text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fz_str(data, size);
    drq_spec s;
    drq_err err;
    err.msg[0] = 0;
    if (drq_spec_parse_text(text, &s, &err) != 0) {
        if (!err.msg[0]) fail("refused without a message", text);
        free(text);
        return 0;
    }
    char *c1 = drq_spec_canonical(&s);
    drq_spec s2;
    if (drq_spec_parse_text(c1, &s2, &err) != 0) {
        fprintf(stderr, "canonical form refused: %s\n", err.msg);
        fail("canonical form does not parse back", c1);
    }
    char *c2 = drq_spec_canonical(&s2);
    if (strcmp(c1, c2) != 0) {
        fprintf(stderr, "first:  %s\nsecond: %s\n", c1, c2);
        fail("canonical form changes when parsed back", text);
    }
    int64_t njobs = drq_spec_njobs(&s), nrows = drq_spec_nrows(&s);
    if (njobs < 1 || nrows < njobs || drq_spec_shards(&s) < 1) fail("expansion is empty or negative", text);
    for (int64_t q = 0; q < njobs && q < 16; q++) check_job(&s, q, njobs, text);
    for (int64_t q = njobs - 16 > 16 ? njobs - 16 : 16; q < njobs; q++) check_job(&s, q, njobs, text);
    drq_spec_free(&s2);
    drq_spec_free(&s);
    free(c2);
    free(c1);
    free(text);
    return 0;
}
