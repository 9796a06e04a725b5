/* test_spec.c — sweep spec validation (every error names its JSON path),
 * defaults, canonical round trip, and expansion into jobs. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/spec.h"

/* Parses text; returns the error message ("" when it parsed). */
static const char *err_of(const char *text) {
    static drq_err e;
    drq_spec s;
    e.msg[0] = 0;
    if (drq_spec_parse_text(text, &s, &e) == 0) {
        drq_spec_free(&s);
        return "";
    }
    return e.msg;
}

#define NOOP_ATK "\"attacks\":[{\"name\":\"a\",\"kind\":\"noop\"}]"
#define DS_NONE "\"dataset\":{\"kind\":\"none\",\"count\":20}"

static void test_issue_example(void) {
    const char *ex = "{\"name\":\"q\",\"dataset\":{\"kind\":\"none\",\"count\":2000},\"attacks\":[{\"name\":\"a\","
                     "\"kind\":\"noop\",\"ms_per_image\":2}],\"seeds\":[0,1],\"shard\":{\"images\":10}}";
    drq_spec s;
    drq_err e;
    CHECK_EQ_INT(drq_spec_parse_text(ex, &s, &e), 0);
    CHECK_EQ_INT(drq_spec_njobs(&s), 400);
    CHECK_EQ_INT(drq_spec_nrows(&s), 4000);
    CHECK_EQ_INT(s.npurifiers, 1); /* default: one "none" purifier */
    CHECK_EQ_STR(s.purifiers[0].name, "none");
    CHECK_EQ_INT(s.purifiers[0].kind, PUR_NONE);
    CHECK(s.attacks[0].ms_per_image == 2);
    /* canonical form parses back to the same canonical form */
    char *c1 = drq_spec_canonical(&s);
    drq_spec s2;
    CHECK_EQ_INT(drq_spec_parse_text(c1, &s2, &e), 0);
    char *c2 = drq_spec_canonical(&s2);
    CHECK_EQ_STR(c1, c2);
    /* expansion covers every image of every seed exactly once */
    int64_t seen[2][2000] = {{0}};
    for (int64_t q = 0; q < drq_spec_njobs(&s); q++) {
        drq_job_desc d;
        drq_spec_job(&s, q, &d);
        CHECK(d.depends_on_seq == -1);
        for (int64_t i = d.image_start; i < d.image_start + d.image_count; i++) seen[d.seed_index][i]++;
    }
    int ok = 1;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 2000; i++) ok &= seen[k][i] == 1;
    CHECK_MSG(ok, "every (seed, image) exactly once");
    free(c1);
    free(c2);
    drq_spec_free(&s2);
    drq_spec_free(&s);
}

/* "precision": tf32 by default, fp32 on request, written only when not the default */
static void test_precision(void) {
    drq_spec s;
    drq_err e;
    CHECK_EQ_INT(drq_spec_parse_text("{\"name\":\"x\"," DS_NONE "," NOOP_ATK "}", &s, &e), 0);
    CHECK_EQ_INT(s.precision, PREC_TF32);
    char *c = drq_spec_canonical(&s);
    CHECK_MSG(!strstr(c, "precision"), "default precision is not written: %s", c);
    free(c), drq_spec_free(&s);
    CHECK_EQ_INT(drq_spec_parse_text("{\"name\":\"x\"," DS_NONE "," NOOP_ATK ",\"precision\":\"fp32\"}", &s, &e), 0);
    CHECK_EQ_INT(s.precision, PREC_FP32);
    CHECK_EQ_STR(drq_precision_name(s.precision), "fp32");
    c = drq_spec_canonical(&s);
    CHECK_CONTAINS(c, "\"precision\":\"fp32\"");
    drq_spec s2;
    CHECK_EQ_INT(drq_spec_parse_text(c, &s2, &e), 0);
    CHECK_EQ_INT(s2.precision, PREC_FP32);
    free(c), drq_spec_free(&s), drq_spec_free(&s2);
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE "," NOOP_ATK ",\"precision\":\"fp16\"}"),
                   "precision: expected one of tf32|fp32");
}

static void test_errors(void) {
    /* JSON itself */
    CHECK_CONTAINS(err_of("{\"name\":"), "invalid JSON at line 1");
    CHECK_CONTAINS(err_of("[1]"), "expected an object");
    CHECK_CONTAINS(err_of("{\"name\":\"x\",\"name\":\"y\"}"), "invalid JSON");
    /* root */
    CHECK_CONTAINS(err_of("{" DS_NONE "," NOOP_ATK "}"), "name: required");
    CHECK_CONTAINS(err_of("{\"name\":\"a b\"," DS_NONE "," NOOP_ATK "}"), "name: expected a name");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE "," NOOP_ATK ",\"seeed\":[1]}"),
                   "seeed: unknown key (expected one of: name, dataset");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," NOOP_ATK "}"), "dataset: required");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE "}"), "attacks: required");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"attacks\":[]}"), "attacks: expected a non-empty array");
    /* dataset */
    CHECK_CONTAINS(err_of("{\"name\":\"x\",\"dataset\":{\"kind\":\"imagenet\"}," NOOP_ATK "}"),
                   "dataset.kind: expected one of none|cifar10|mnist|fashion-mnist");
    CHECK_CONTAINS(err_of("{\"name\":\"x\",\"dataset\":{\"kind\":\"none\"}," NOOP_ATK "}"),
                   "dataset.count: required");
    CHECK_CONTAINS(err_of("{\"name\":\"x\",\"dataset\":{\"kind\":\"none\",\"count\":0}," NOOP_ATK "}"),
                   "dataset.count: expected an integer in [1,");
    CHECK_CONTAINS(err_of("{\"name\":\"x\",\"dataset\":{\"kind\":\"none\",\"count\":5,\"start\":-1}," NOOP_ATK "}"),
                   "dataset.start: expected an integer");
    CHECK_CONTAINS(err_of("{\"name\":\"x\",\"dataset\":{\"kind\":\"cifar10\"}," NOOP_ATK "}"), "dataset.path: required");
    CHECK_CONTAINS(err_of("{\"name\":\"x\",\"dataset\":{\"kind\":\"none\",\"count\":5,\"path\":\"p\"}," NOOP_ATK "}"),
                   "dataset.path: not allowed");
    CHECK_CONTAINS(err_of("{\"name\":\"x\",\"dataset\":{\"kind\":\"none\",\"count\":5,\"cnt\":3}," NOOP_ATK "}"),
                   "dataset.cnt: unknown key");
    /* models */
    CHECK_CONTAINS(err_of("{\"name\":\"x\",\"dataset\":{\"kind\":\"cifar10\",\"path\":\"d\"}," NOOP_ATK "}"),
                   "classifier: required");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"purifiers\":[{\"name\":\"p\",\"kind\":\"ddpm\"}]," NOOP_ATK "}"),
                   "diffusion: required");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"classifier\":{\"arch\":\"wrn\"}," NOOP_ATK "}"),
                   "classifier.weights: required");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"classifier\":{\"arch\":\"wrn\",\"weights\":\"w\",\"config\":3}," NOOP_ATK "}"),
                   "classifier.config: expected a string");
    /* purifiers */
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"purifiers\":[{\"name\":\"p\",\"kind\":\"none\",\"t_star\":0}]," NOOP_ATK "}"),
                   "purifiers[0].t_star: expected an integer in [1,1000]");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"purifiers\":[{\"name\":\"p\",\"kind\":\"none\"},{\"name\":\"q\",\"kind\":\"none\",\"var\":\"big\"}]," NOOP_ATK "}"),
                   "purifiers[1].var: expected one of fixedlarge|fixedsmall");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"purifiers\":[{\"name\":\"p\",\"kind\":\"none\"},{\"name\":\"p\",\"kind\":\"none\"}]," NOOP_ATK "}"),
                   "purifiers[1].name: duplicate name");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"purifiers\":[{\"name\":\"p\",\"kind\":\"none\",\"clamp_x0\":1}]," NOOP_ATK "}"),
                   "purifiers[0].clamp_x0: expected true or false");
    /* attacks */
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"attacks\":[{\"name\":\"a\",\"kind\":\"noop\"},{\"name\":\"b\",\"kind\":\"noop\",\"eps\":2}]}"),
                   "attacks[1].eps: expected a number in (0,1]");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"attacks\":[{\"name\":\"a\",\"kind\":\"noop\",\"eps\":\"8/255\"}]}"),
                   "attacks[0].eps: expected a number in (0,1]");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"attacks\":[{\"name\":\"a\",\"kind\":\"noop\",\"norm\":\"l2\",\"eps\":2000}]}"),
                   "attacks[0].eps: expected a number in (0,1000]");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"attacks\":[{\"name\":\"a\",\"kind\":\"fgsm\"}]}"),
                   "attacks[0].kind: expected one of pgd|bpda|noop");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"attacks\":[{\"name\":\"a\",\"kind\":\"noop\",\"steps\":1.5}]}"),
                   "attacks[0].steps: expected an integer");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"attacks\":[{\"name\":\"a\",\"kind\":\"noop\",\"rel_stepsize\":0.1,\"abs_stepsize\":0.1}]}"),
                   "give rel_stepsize or abs_stepsize, not both");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"attacks\":[{\"name\":\"a\",\"kind\":\"noop\",\"randomness\":\"transfer\"}]}"),
                   "attacks[0].transfer_seed: required");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"seeds\":[0,1],\"attacks\":[{\"name\":\"a\",\"kind\":\"noop\",\"randomness\":\"transfer\",\"transfer_seed\":7}]}"),
                   "attacks[0].transfer_seed: expected one of the sweep's seeds");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"attacks\":[{\"name\":\"a\",\"kind\":\"noop\",\"transfer_seed\":0}]}"),
                   "only valid with randomness \"transfer\"");
    CHECK_CONTAINS(err_of("{\"name\":\"x\",\"dataset\":{\"kind\":\"mnist\",\"path\":\"d\"},\"classifier\":{\"arch\":\"wrn\",\"weights\":\"w\"},\"attacks\":[{\"name\":\"a\",\"kind\":\"pgd\",\"ms_per_image\":3}]}"),
                   "attacks[0].ms_per_image: only valid for kind \"noop\"");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"attacks\":[{\"name\":\"a\",\"kind\":\"pgd\"}]}"),
                   "attacks[0].kind: \"pgd\" needs a dataset");
    CHECK_CONTAINS(err_of("{\"name\":\"x\",\"dataset\":{\"kind\":\"mnist\",\"path\":\"d\"},\"classifier\":{\"arch\":\"resnet50\",\"weights\":\"w\"},\"attacks\":[{\"name\":\"a\",\"kind\":\"pgd\"}]}"),
                   "classifier.arch: expected one of wrn");
    CHECK_CONTAINS(err_of("{\"name\":\"x\",\"dataset\":{\"kind\":\"mnist\",\"path\":\"d\"},\"classifier\":{\"arch\":\"wrn\",\"weights\":\"w\"},\"diffusion\":{\"arch\":\"wrn\",\"weights\":\"w\"},\"purifiers\":[{\"name\":\"p\",\"kind\":\"ddpm\"}],\"attacks\":[{\"name\":\"a\",\"kind\":\"pgd\"}]}"),
                   "diffusion.arch: expected one of ddpm-unet");
    CHECK_CONTAINS(err_of("{\"name\":\"x\",\"dataset\":{\"kind\":\"mnist\",\"path\":\"d\"},\"classifier\":{\"arch\":\"wrn\",\"weights\":\"w\"},\"attacks\":[{\"name\":\"a\",\"kind\":\"bpda\",\"grad\":\"full\"}]}"),
                   "attacks[0].grad: kind \"bpda\" implies grad \"bpda\"");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"attacks\":[{\"name\":\"a\",\"kind\":\"noop\",\"fail_images\":[3,20]}]}"),
                   "attacks[0].fail_images[1]: expected an image index in [0,19]");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"attacks\":[{\"name\":\"a\",\"kind\":\"noop\",\"votes\":0}]}"),
                   "attacks[0].votes: expected an integer in [1,");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"attacks\":[{\"name\":\"a\",\"kind\":\"noop\",\"random_start\":\"yes\"}]}"),
                   "attacks[0].random_start: expected true or false");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"attacks\":[{\"name\":\"a\",\"kind\":\"noop\"},{\"name\":\"a\",\"kind\":\"noop\"}]}"),
                   "attacks[1].name: duplicate name");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"attacks\":[{\"name\":\"a\",\"kind\":\"noop\",\"stepz\":3}]}"),
                   "attacks[0].stepz: unknown key");
    /* seeds, shard */
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE "," NOOP_ATK ",\"seeds\":[]}"), "seeds: expected a non-empty array");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE "," NOOP_ATK ",\"seeds\":[1,-2]}"), "seeds[1]: expected an integer >= 0");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE "," NOOP_ATK ",\"seeds\":[1,1]}"), "seeds[1]: duplicate seed 1");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE "," NOOP_ATK ",\"shard\":{\"images\":0}}"),
                   "shard.images: expected an integer in [1,");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE "," NOOP_ATK ",\"shard\":{\"size\":4}}"), "shard.size: unknown key");
    CHECK_EQ_STR(err_of("{\"name\":\"x\"," DS_NONE "," NOOP_ATK "}"), "");
}

static void test_defaults_and_transfer(void) {
    const char *t = "{\"name\":\"t\",\"dataset\":{\"kind\":\"none\",\"count\":25,\"start\":100},\"seeds\":[3,5,7],"
                    "\"purifiers\":[{\"name\":\"p1\",\"kind\":\"none\"},{\"name\":\"p2\",\"kind\":\"none\"}],"
                    "\"attacks\":[{\"name\":\"fix\",\"kind\":\"noop\"},"
                    "{\"name\":\"tr\",\"kind\":\"noop\",\"randomness\":\"transfer\",\"transfer_seed\":5}],"
                    "\"shard\":{\"images\":10}}";
    drq_spec s;
    drq_err e;
    CHECK_EQ_INT(drq_spec_parse_text(t, &s, &e), 0);
    CHECK_EQ_INT(drq_spec_shards(&s), 3);
    CHECK_EQ_INT(drq_spec_njobs(&s), 2 * 2 * 3 * 3);
    CHECK_EQ_INT(drq_spec_nrows(&s), 2 * 2 * 3 * 25);
    const drq_attack_spec *a = &s.attacks[0];
    CHECK(a->norm == NORM_LINF && a->steps == 40 && a->random_start && a->randomness == RND_FIXED);
    CHECK(fabs(a->eps - 8.0 / 255.0) < 1e-15 && fabs(a->rel_stepsize - 0.01 / 0.3) < 1e-15);
    CHECK(a->eot_k == 15 && a->votes == 1 && a->grad == GRAD_FULL);
    CHECK(s.purifiers[0].t_star == 100 && s.purifiers[0].var == VAR_FIXEDLARGE && s.purifiers[0].clamp_out == 1 &&
          s.purifiers[0].clamp_x0 == 0);
    int deps = 0, bad = 0, last_short = 0;
    for (int64_t q = 0; q < drq_spec_njobs(&s); q++) {
        drq_job_desc d, src;
        drq_spec_job(&s, q, &d);
        if (d.image_start == 120) last_short += d.image_count == 5;
        if (d.attack == 1 && d.seed != 5) {
            deps++;
            if (d.depends_on_seq < 0) {
                bad++;
                continue;
            }
            drq_spec_job(&s, d.depends_on_seq, &src);
            bad += !(src.seed == 5 && src.attack == 1 && src.purifier == d.purifier && src.image_start == d.image_start);
        } else {
            bad += d.depends_on_seq != -1;
        }
    }
    CHECK_EQ_INT(deps, 2 * 2 * 3); /* 2 purifiers x 2 other seeds x 3 shards */
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(last_short, 2 * 2 * 3); /* the last shard holds images 120..124 */
    drq_spec_free(&s);
}

int main(void) {
    test_issue_example();
    test_precision();
    test_errors();
    test_defaults_and_transfer();
    return CHECK_DONE();
}
