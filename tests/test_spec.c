/* test_spec.c — sweep spec validation (every error names its JSON path),
 * defaults, canonical round trip, and expansion into jobs. */
#include <stdarg.h>
#include <stdio.h>
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
    CHECK_EQ_INT(s.attacks[0].ms_per_image, 2);
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
        CHECK_EQ_INT(d.depends_on_seq, -1);
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

/* ImageNet: the validation set's 50000 images are the default count; a
 * resnet50 classifier is accepted */
static void test_imagenet(void) {
    drq_spec s;
    drq_err e;
    CHECK_EQ_INT(drq_spec_parse_text("{\"name\":\"x\",\"dataset\":{\"kind\":\"imagenet\",\"path\":\"v\",\"start\":200},"
                                     "\"classifier\":{\"arch\":\"resnet50\",\"weights\":\"w\"},"
                                     "\"attacks\":[{\"name\":\"a\",\"kind\":\"bpda\"}]}", &s, &e), 0);
    CHECK_EQ_INT(s.dataset.kind, DS_IMAGENET);
    CHECK_EQ_INT(s.dataset.count, 49800);
    CHECK_EQ_STR(s.classifier.arch, "resnet50");
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

/* diffusion.precision: fp32 (default, not written) | bf16 (guided-unet only), issue 17 */
#define ADM_PUR "\"purifiers\":[{\"name\":\"p\",\"kind\":\"ddpm\",\"t_star\":3}]"
#define ADM(extra) "\"diffusion\":{\"arch\":\"guided-unet\",\"weights\":\"w\"" extra "}"
static void test_diffusion_precision(void) {
    drq_spec s, s2;
    drq_err e;
    CHECK_EQ_INT(drq_spec_parse_text("{\"name\":\"x\"," DS_NONE "," ADM_PUR "," ADM("") "," NOOP_ATK "}", &s, &e), 0);
    CHECK_EQ_INT(s.diffusion.bf16, 0);
    char *c = drq_spec_canonical(&s);
    CHECK_MSG(!strstr(c, "precision"), "fp32 is not written: %s", c);
    free(c), drq_spec_free(&s);
    CHECK_EQ_INT(drq_spec_parse_text("{\"name\":\"x\"," DS_NONE "," ADM_PUR "," ADM(",\"precision\":\"fp32\"") ","
                                     NOOP_ATK "}", &s, &e), 0);
    CHECK_EQ_INT(s.diffusion.bf16, 0);
    c = drq_spec_canonical(&s);
    CHECK_MSG(!strstr(c, "precision"), "fp32 given is not written either (the same sweep): %s", c);
    free(c), drq_spec_free(&s);
    CHECK_EQ_INT(drq_spec_parse_text("{\"name\":\"x\"," DS_NONE "," ADM_PUR "," ADM(",\"precision\":\"bf16\"") ","
                                     NOOP_ATK ",\"precision\":\"fp32\"}", &s, &e), 0);
    CHECK_EQ_INT(s.diffusion.bf16, 1);
    CHECK_EQ_INT(s.precision, PREC_FP32); /* the GPU convolutions' precision is another key */
    c = drq_spec_canonical(&s);
    CHECK_CONTAINS(c, "\"precision\":\"bf16\"");
    CHECK_EQ_INT(drq_spec_parse_text(c, &s2, &e), 0);
    CHECK_EQ_INT(s2.diffusion.bf16, 1);
    char *c2 = drq_spec_canonical(&s2);
    CHECK_EQ_STR(c2, c);
    free(c), free(c2), drq_spec_free(&s), drq_spec_free(&s2);
    /* errors name the path */
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE "," ADM_PUR "," ADM(",\"precision\":\"fp16\"") "," NOOP_ATK "}"),
                   "diffusion.precision: expected one of fp32|bf16");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE "," ADM_PUR "," ADM(",\"precision\":16") "," NOOP_ATK "}"),
                   "diffusion.precision: expected one of fp32|bf16");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE "," ADM_PUR ",\"diffusion\":{\"arch\":\"ddpm-unet\",\"weights\":\"w\","
                          "\"precision\":\"bf16\"}," NOOP_ATK "}"),
                   "diffusion.precision: \"bf16\" is built for arch \"guided-unet\" only");
    CHECK_CONTAINS(err_of("{\"name\":\"x\",\"dataset\":{\"kind\":\"mnist\",\"path\":\"d\"},"
                          "\"classifier\":{\"arch\":\"wrn\",\"weights\":\"w\",\"precision\":\"bf16\"},"
                          "\"attacks\":[{\"name\":\"a\",\"kind\":\"pgd\"}]}"),
                   "classifier.precision: unknown key");
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
    CHECK_CONTAINS(err_of("{\"name\":\"x\",\"dataset\":{\"kind\":\"svhn\"}," NOOP_ATK "}"),
                   "dataset.kind: expected one of none|cifar10|mnist|fashion-mnist|imagenet");
    CHECK_CONTAINS(err_of("{\"name\":\"x\",\"dataset\":{\"kind\":\"imagenet\"}," NOOP_ATK "}"),
                   "dataset.path: required");
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
    CHECK_CONTAINS(err_of("{\"name\":\"x\",\"dataset\":{\"kind\":\"mnist\",\"path\":\"d\"},\"classifier\":{\"arch\":\"vit\",\"weights\":\"w\"},\"attacks\":[{\"name\":\"a\",\"kind\":\"pgd\"}]}"),
                   "classifier.arch: expected one of wrn|resnet50");
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
    CHECK_MSG(a->norm == NORM_LINF && a->steps == 40 && a->random_start && a->randomness == RND_FIXED,
              "norm %d (want %d), steps %d (40), random_start %d (1), randomness %d (want %d)", (int)a->norm,
              (int)NORM_LINF, a->steps, (int)a->random_start, (int)a->randomness, (int)RND_FIXED);
    CHECK_MSG(fabs(a->eps - 8.0 / 255.0) < 1e-15 && fabs(a->rel_stepsize - 0.01 / 0.3) < 1e-15,
              "eps %.17g (want 8/255), rel_stepsize %.17g (want 0.01/0.3)", a->eps, a->rel_stepsize);
    CHECK_MSG(a->eot_k == 15 && a->votes == 1 && a->grad == GRAD_FULL, "eot_k %d (15), votes %d (1), grad %d (want %d)",
              a->eot_k, a->votes, (int)a->grad, (int)GRAD_FULL);
    CHECK_MSG(s.purifiers[0].t_star == 100 && s.purifiers[0].var == VAR_FIXEDLARGE && s.purifiers[0].clamp_out == 1 &&
                  s.purifiers[0].clamp_x0 == 0,
              "purifier 0: t_star %d (100), var %d (want %d), clamp_out %d (1), clamp_x0 %d (0)", s.purifiers[0].t_star,
              (int)s.purifiers[0].var, (int)VAR_FIXEDLARGE, (int)s.purifiers[0].clamp_out, (int)s.purifiers[0].clamp_x0);
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

/* ---- large specs ------------------------------------------------------ */

/* A growing text buffer for specs too large to write as literals. */
typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) DRQ_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (b->p && (size_t)k < b->cap - b->n) {
            b->n += (size_t)k;
            return;
        }
        b->cap = (b->cap + (size_t)k + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
}

/* "name" objects of kind `kind`, named prefix0..prefix{n-1}, except entry dup_at
 * (when >= 0), which repeats the name of entry dup_of. */
static void sb_named(sbuf *b, const char *key, const char *prefix, const char *kind, int n, int dup_at, int dup_of) {
    sb_printf(b, ",\"%s\":[", key);
    for (int i = 0; i < n; i++)
        sb_printf(b, "%s{\"name\":\"%s%d\",\"kind\":\"%s\"}", i ? "," : "", prefix, i == dup_at ? dup_of : i, kind);
    sb_printf(b, "]");
}

/* Issue 10: purifiers × attacks × seeds × shards used to be multiplied in
 * int64 without a check; 1000 × 1000 × 10000 × 1e9 wrapped to a negative job
 * count that passed the limit.  Every such spec is now refused at parse time. */
static void test_job_limit(void) {
    sbuf b = {0};
    sb_printf(&b, "{\"name\":\"big\",\"dataset\":{\"kind\":\"none\",\"count\":1000000000},\"shard\":{\"images\":1}");
    sb_named(&b, "purifiers", "p", "none", 1000, -1, 0);
    sb_named(&b, "attacks", "a", "noop", 1000, -1, 0);
    sb_printf(&b, ",\"seeds\":[");
    for (int i = 0; i < 10000; i++) sb_printf(&b, "%s%d", i ? "," : "", i);
    sb_printf(&b, "]}");
    drq_spec s;
    drq_err e = {{0}};
    int rc = drq_spec_parse_text(b.p, &s, &e);
    CHECK_MSG(rc == -1, "the 1e19-job spec must be refused (njobs %lld)", rc ? 0LL : (long long)drq_spec_njobs(&s));
    if (rc == 0) drq_spec_free(&s);
    CHECK_CONTAINS(e.msg, "1000 purifiers × 1000 attacks × 10000 seeds × 1000000000 shards of 1 images");
    CHECK_CONTAINS(e.msg, "more than the limit of 100000000 jobs");
    free(b.p);

    /* the products saturate instead of wrapping, whatever a hand-built spec holds */
    drq_spec h;
    memset(&h, 0, sizeof h);
    h.npurifiers = DRQ_SPEC_MAX_LIST, h.nattacks = DRQ_SPEC_MAX_LIST, h.nseeds = DRQ_SPEC_MAX_SEEDS;
    h.dataset.count = 1000000000, h.shard_images = 1;
    CHECK_EQ_INT(drq_spec_njobs(&h), INT64_MAX);
    CHECK_EQ_INT(drq_spec_nrows(&h), INT64_MAX);
    h.npurifiers = 3, h.nattacks = 5, h.nseeds = 7, h.shard_images = 10;
    CHECK_EQ_INT(drq_spec_njobs(&h), 3 * 5 * 7 * INT64_C(100000000));
    CHECK_EQ_INT(drq_spec_nrows(&h), 3 * 5 * 7 * INT64_C(1000000000));

    /* the limit itself: 1e8 jobs pass, one more does not; large but not wrapping */
    CHECK_EQ_STR(err_of("{\"name\":\"x\",\"dataset\":{\"kind\":\"none\",\"count\":100000000},\"shard\":{\"images\":1},"
                        NOOP_ATK "}"),
                 "");
    CHECK_CONTAINS(err_of("{\"name\":\"x\",\"dataset\":{\"kind\":\"none\",\"count\":100000001},\"shard\":{\"images\":1},"
                          NOOP_ATK "}"),
                   "make 100000001 jobs, more than the limit of 100000000 jobs (raise shard.images");
    CHECK_CONTAINS(err_of("{\"name\":\"x\",\"dataset\":{\"kind\":\"none\",\"count\":1000000000},\"shard\":{\"images\":1},"
                          "\"seeds\":[0,1,2]," NOOP_ATK "}"),
                   "1 purifiers × 1 attacks × 3 seeds × 1000000000 shards of 1 images make 3000000000 jobs");
    /* refused before the attacks are read: a bad attack does not mask the size */
    CHECK_CONTAINS(err_of("{\"name\":\"x\",\"dataset\":{\"kind\":\"none\",\"count\":1000000000},\"shard\":{\"images\":1},"
                          "\"seeds\":[0,1],\"attacks\":[{\"name\":\"a\",\"kind\":\"noop\",\"eps\":7}]}"),
                   "more than the limit of 100000000 jobs");
}

/* A spec with n distinct seeds (descending: 3(n-1)+1, ..., 4, 1) and one
 * transfer attack whose transfer_seed is the second seed. */
static void seeds_spec(sbuf *b, int n) {
    b->n = 0;
    sb_printf(b, "{\"name\":\"seeds\"," DS_NONE ",\"attacks\":[{\"name\":\"t\",\"kind\":\"noop\","
                 "\"randomness\":\"transfer\",\"transfer_seed\":%d}],\"seeds\":[",
              3 * (n - 2) + 1);
    for (int i = 0; i < n; i++) sb_printf(b, "%s%d", i ? "," : "", 3 * (n - 1 - i) + 1);
    sb_printf(b, "]}");
}

/* The shortest of `runs` parses of text, in seconds (the minimum filters out
 * whatever else the machine was doing). */
static double parse_seconds(const char *text, int runs) {
    double best = 1e30;
    for (int r = 0; r < runs; r++) {
        drq_spec s;
        drq_err e;
        double t0 = drq_clock_mono();
        int rc = drq_spec_parse_text(text, &s, &e);
        double dt = drq_clock_mono() - t0;
        if (rc == 0) drq_spec_free(&s);
        if (dt < best) best = dt;
    }
    return best;
}

/* Issue 10: the seed and name uniqueness checks were O(n²) (seconds for the
 * documented maximum of 100000 seeds); they now sort.  Checked for
 * correctness at full size; for speed, as the ratio of the parse times of
 * 100000 and 10000 seeds (about 10 when linear or n log n, about 100 when
 * quadratic), plus an absolute bound 30× above what the parse takes. */
static void test_large_lists(void) {
    enum { NS = DRQ_SPEC_MAX_SEEDS };
    sbuf b = {0};
    seeds_spec(&b, NS);
    drq_spec s;
    drq_err e = {{0}};
    int rc = drq_spec_parse_text(b.p, &s, &e);
    CHECK_MSG(rc == 0, "%s", e.msg);
    if (rc == 0) {
        CHECK_EQ_INT(s.nseeds, NS);
        CHECK_EQ_INT(s.seeds[0], 3 * (NS - 1) + 1);
        CHECK_EQ_INT(s.seeds[NS - 1], 1);
        /* transfer_seed found by bisection: the job of seed index 0 depends on seed index 1's */
        CHECK_EQ_INT(s.attacks[0].transfer_index, 1);
        drq_job_desc d, src;
        drq_spec_job(&s, 0, &d);
        CHECK_EQ_INT(d.seed_index, 0);
        CHECK_MSG(d.depends_on_seq >= 0, "job 0 depends on another");
        if (d.depends_on_seq >= 0) {
            drq_spec_job(&s, d.depends_on_seq, &src);
            CHECK_EQ_INT(src.seed, 3 * (NS - 2) + 1);
        }
        drq_spec_free(&s);
    }
    sbuf small = {0};
    seeds_spec(&small, NS / 10);
    double t_small = parse_seconds(small.p, 5), t_big = parse_seconds(b.p, 3);
    printf("parse of %d seeds (%zu bytes): %.4f s; of %d seeds: %.4f s; ratio %.1f\n", NS, b.n, t_big, NS / 10,
           t_small, t_big / t_small);
    CHECK_LE(t_big / t_small, 30, "parse time ratio 100000 : 10000 seeds (quadratic would be ~100)");
    CHECK_LE(t_big, 1.5, "seconds to parse 100000 seeds");
    free(small.p);

    /* the last seed repeats one from the middle */
    char *tail = strrchr(b.p, ',');
    snprintf(tail, b.cap - (size_t)(tail - b.p), ",%d]}", 3 * 5 + 1);
    CHECK_CONTAINS(err_of(b.p), "seeds[99999]: duplicate seed 16 (same as seeds[99994])");
    free(b.p);

    /* the error is the one a scan in array order meets first */
    CHECK_EQ_STR(err_of("{\"name\":\"x\"," DS_NONE "," NOOP_ATK ",\"seeds\":[3,1,2,1,3]}"),
                 "seeds[3]: duplicate seed 1 (same as seeds[1])");
    CHECK_EQ_STR(err_of("{\"name\":\"x\"," DS_NONE "," NOOP_ATK ",\"seeds\":[3,1,3,1,1]}"),
                 "seeds[2]: duplicate seed 3 (same as seeds[0])");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE "," NOOP_ATK ",\"seeds\":[1,1,-2]}"), "seeds[1]: duplicate seed 1");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE "," NOOP_ATK ",\"seeds\":[1,-2,1]}"),
                   "seeds[1]: expected an integer >= 0");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"attacks\":[{\"name\":\"a\",\"kind\":\"noop\"},"
                          "{\"name\":\"b\",\"kind\":\"noop\"},{\"name\":\"a\",\"kind\":\"noop\"},{\"name\":\"c\"}]}"),
                   "attacks[2].name: duplicate name \"a\" (same as attacks[0].name)");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"attacks\":[{\"name\":\"a\",\"kind\":\"noop\"},"
                          "{\"name\":\"c\"},{\"name\":\"a\",\"kind\":\"noop\"}]}"),
                   "attacks[1].kind: required");
    CHECK_CONTAINS(err_of("{\"name\":\"x\"," DS_NONE ",\"purifiers\":[{\"name\":\"p\",\"kind\":\"none\"},"
                          "{\"name\":\"q\",\"kind\":\"none\",\"t_star\":0},{\"name\":\"p\",\"kind\":\"none\"}]," NOOP_ATK "}"),
                   "purifiers[1].t_star: expected an integer in [1,1000]");

    /* names at the maximum list length: all distinct parses, one repeat is named */
    for (int dup = 0; dup < 2; dup++) {
        sbuf n = {0};
        sb_printf(&n, "{\"name\":\"names\",\"dataset\":{\"kind\":\"none\",\"count\":1}");
        sb_named(&n, "purifiers", "p", "none", DRQ_SPEC_MAX_LIST, dup ? DRQ_SPEC_MAX_LIST - 1 : -1, 17);
        sb_named(&n, "attacks", "a", "noop", DRQ_SPEC_MAX_LIST, dup ? DRQ_SPEC_MAX_LIST - 2 : -1, 4321);
        sb_printf(&n, "}");
        double t0 = drq_clock_mono();
        const char *m = err_of(n.p);
        printf("parse of %d purifiers × %d attacks: %.3f s\n", DRQ_SPEC_MAX_LIST, DRQ_SPEC_MAX_LIST, drq_clock_mono() - t0);
        if (dup)
            CHECK_EQ_STR(m, "purifiers[9999].name: duplicate name \"p17\" (same as purifiers[17].name)");
        else
            CHECK_EQ_STR(m, "");
        free(n.p);
    }
    {
        sbuf n = {0};
        sb_printf(&n, "{\"name\":\"names\",\"dataset\":{\"kind\":\"none\",\"count\":1}");
        sb_named(&n, "attacks", "a", "noop", DRQ_SPEC_MAX_LIST, DRQ_SPEC_MAX_LIST - 2, 4321);
        sb_printf(&n, "}");
        CHECK_EQ_STR(err_of(n.p), "attacks[9998].name: duplicate name \"a4321\" (same as attacks[4321].name)");
        free(n.p);
    }
}

/* The attack option "save" and the ddim purifier's "forward" (issue 16 item 4). */
#define CLF "\"classifier\":{\"arch\":\"wrn\",\"weights\":\"w\"},\"diffusion\":{\"arch\":\"ddpm-unet\",\"weights\":\"u\"}"
#define MNIST "\"dataset\":{\"kind\":\"mnist\",\"path\":\"d\",\"count\":20}"
#define PUR(extra) "\"purifiers\":[{\"name\":\"p\",\"kind\":\"ddim\",\"t_star\":5" extra "}]"
#define ATK(extra) "\"attacks\":[{\"name\":\"a\",\"kind\":\"pgd\"" extra "}]"
static void test_save_and_forward(void) {
    drq_spec s;
    drq_err e;
    const char *plain = "{\"name\":\"x\"," MNIST "," CLF "," PUR("") "," ATK("") "}";
    CHECK_EQ_INT(drq_spec_parse_text(plain, &s, &e), 0);
    CHECK_EQ_INT(s.attacks[0].save, 0);
    CHECK_EQ_INT(s.purifiers[0].forward, 1);
    char *c = drq_spec_canonical(&s);
    CHECK_MSG(!strstr(c, "\"save\"") && !strstr(c, "\"forward\""), "defaults are not written: %s", c);
    free(c), drq_spec_free(&s);
    const char *set = "{\"name\":\"x\"," MNIST "," CLF "," PUR(",\"forward\":false") ","
                      ATK(",\"save\":[\"purified\",\"x_adv\"]") "}";
    CHECK_EQ_INT(drq_spec_parse_text(set, &s, &e), 0);
    CHECK_EQ_INT(s.attacks[0].save, 3);
    CHECK_EQ_INT(s.purifiers[0].forward, 0);
    c = drq_spec_canonical(&s);
    CHECK_CONTAINS(c, "\"save\":[\"x_adv\",\"purified\"]");
    CHECK_CONTAINS(c, "\"forward\":false");
    drq_spec s2;
    CHECK_EQ_INT(drq_spec_parse_text(c, &s2, &e), 0);
    CHECK_EQ_INT(s2.attacks[0].save, 3);
    CHECK_EQ_INT(s2.purifiers[0].forward, 0);
    free(c), drq_spec_free(&s), drq_spec_free(&s2);
    /* bad values, each error naming its path */
    CHECK_EQ_STR(err_of("{\"name\":\"x\"," MNIST "," CLF "," PUR("") "," ATK(",\"save\":[\"x_adv\",\"noise\"]") "}"),
                 "attacks[0].save[1]: expected \"x_adv\" or \"purified\"");
    CHECK_EQ_STR(err_of("{\"name\":\"x\"," MNIST "," CLF "," PUR("") "," ATK(",\"save\":\"x_adv\"") "}"),
                 "attacks[0].save: expected an array of \"x_adv\" and \"purified\"");
    CHECK_EQ_STR(err_of("{\"name\":\"x\"," MNIST "," CLF "," PUR("") "," ATK(",\"save\":[\"x_adv\",\"x_adv\"]") "}"),
                 "attacks[0].save[1]: \"x_adv\" given twice");
    CHECK_EQ_STR(err_of("{\"name\":\"x\"," MNIST "," CLF "," PUR("") "," ATK(",\"save\":[3]") "}"),
                 "attacks[0].save[0]: expected \"x_adv\" or \"purified\"");
    CHECK_EQ_STR(err_of("{\"name\":\"x\"," DS_NONE ",\"attacks\":[{\"name\":\"a\",\"kind\":\"noop\",\"save\":[\"x_adv\"]}]}"),
                 "attacks[0].save: not valid for kind \"noop\" (it has no images)");
    CHECK_EQ_STR(err_of("{\"name\":\"x\"," MNIST "," CLF ",\"purifiers\":[{\"name\":\"p\",\"kind\":\"ddpm\",\"forward\":false}],"
                        ATK("") "}"),
                 "purifiers[0].forward: only valid for kind \"ddim\"");
    CHECK_EQ_STR(err_of("{\"name\":\"x\"," MNIST "," CLF "," PUR(",\"forward\":0") "," ATK("") "}"),
                 "purifiers[0].forward: expected true or false");
    /* the cap: CIFAR-10 rows keep 3 × 12288 bytes; 1000 of them per shard exceed DRQ_SAVE_MAX_JOB_BYTES */
    const char *cifar = "{\"name\":\"x\",\"dataset\":{\"kind\":\"cifar10\",\"path\":\"d\"}," CLF "," PUR("") ","
                        ATK(",\"save\":[\"x_adv\",\"purified\"]") ",\"shard\":{\"images\":%d}}";
    char text[1024];
    snprintf(text, sizeof text, cifar, 1000);
    CHECK_EQ_STR(err_of(text), "attacks[0].save: 1000 images per shard × 36864 bytes exceed the cap of 33554432 bytes "
                               "per job (lower shard.images)");
    snprintf(text, sizeof text, cifar, 900);
    CHECK_EQ_STR(err_of(text), "");
}

int main(void) {
    test_issue_example();
    test_save_and_forward();
    test_precision();
    test_diffusion_precision();
    test_imagenet();
    test_errors();
    test_defaults_and_transfer();
    test_job_limit();
    test_large_lists();
    return CHECK_DONE();
}
