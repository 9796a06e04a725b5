/* test_spec_analyses.c — the "analyses" of a sweep spec (docs/spec.md
 * §analyses): defaults and the canonical form, the expansion (analyses join
 * the attack dimension after the attacks), and bad specs giving errors that
 * name the JSON path. */
#include <stdlib.h>
#include <string.h>

#include "../common/spec.h"
#include "check.h"

#define HEAD                                                                                              \
    "{\"name\":\"x\",\"dataset\":{\"kind\":\"mnist\",\"path\":\"d\",\"count\":25},"                       \
    "\"classifier\":{\"arch\":\"wrn\",\"weights\":\"c\"},\"diffusion\":{\"arch\":\"ddpm-unet\",\"weights\":\"u\"}," \
    "\"purifiers\":[{\"name\":\"t10\",\"kind\":\"ddpm\",\"t_star\":10},{\"name\":\"t20\",\"kind\":\"ddpm\",\"t_star\":20}],"

static char errbuf[1100];

/* The parse error of HEAD + tail (or "" when it parses). */
static const char *err_of(const char *text) {
    drq_spec s;
    drq_err err = {{0}};
    if (drq_spec_parse_text(text, &s, &err) == 0) {
        drq_spec_free(&s);
        return "";
    }
    snprintf(errbuf, sizeof errbuf, "%s", err.msg);
    return errbuf;
}

static void test_defaults_and_expansion(void) {
    const char *text = HEAD "\"attacks\":[{\"name\":\"pgd\",\"kind\":\"pgd\"}],"
                            "\"analyses\":[{\"name\":\"var\",\"kind\":\"variance\"},{\"name\":\"gc\",\"kind\":\"gradcorr\"},"
                            "{\"name\":\"scr\",\"kind\":\"screen\",\"norm\":\"l2\",\"eps\":0.5}],"
                            "\"seeds\":[0,1],\"shard\":{\"images\":10}}";
    drq_spec s;
    drq_err err = {{0}};
    if (drq_spec_parse_text(text, &s, &err)) {
        CHECK_MSG(0, "parse: %s", err.msg);
        return;
    }
    CHECK_EQ_INT(s.nattacks, 4);
    CHECK_EQ_INT(s.nanalyses, 3);
    const drq_attack_spec *v = &s.attacks[1], *g = &s.attacks[2], *c = &s.attacks[3];
    CHECK_EQ_INT(v->kind, ATK_VARIANCE);
    CHECK_EQ_INT(v->n_delta, 50);
    CHECK_EQ_INT(v->n_omega, 50);
    CHECK_CMP_DBL(v->eps, ==, 8.0 / 255.0);
    CHECK_EQ_INT(g->kind, ATK_GRADCORR);
    CHECK_EQ_INT(g->nestimators, 5);
    CHECK_EQ_INT(g->eot_k, 15);
    CHECK_EQ_INT(c->kind, ATK_SCREEN);
    CHECK_EQ_INT(c->n_uniform, 16);
    CHECK_EQ_INT(c->norm, NORM_L2);
    CHECK_EQ_STR(drq_attack_kind_name(c->kind), "screen");
    CHECK(drq_kind_is_analysis(ATK_GRADCORR) && !drq_kind_is_analysis(ATK_PGD));
    /* jobs = purifiers × (attacks + analyses) × seeds × shards, analyses after the attacks */
    CHECK_EQ_INT(drq_spec_njobs(&s), 2 * 4 * 2 * 3);
    CHECK_EQ_INT(drq_spec_nrows(&s), 2 * 4 * 2 * 25);
    drq_job_desc d;
    drq_spec_job(&s, 6, &d); /* purifier 0, attack 1 (var), seed 0, shard 0 */
    CHECK_EQ_INT(d.purifier, 0);
    CHECK_EQ_INT(d.attack, 1);
    CHECK_EQ_INT(d.seed_index, 0);
    CHECK_EQ_INT(d.image_start, 0);
    /* canonical form: "analyses" with every default, and it parses back to itself */
    char *canon = drq_spec_canonical(&s);
    CHECK_CONTAINS(canon, "\"analyses\":[{\"eps\":0.031372549019607843,\"kind\":\"variance\",\"n_delta\":50");
    CHECK_CONTAINS(canon, "\"estimators\":[\"fixed\",\"fixed_other\",\"fresh\",\"eot\",\"bpda\"]");
    drq_spec s2;
    if (drq_spec_parse_text(canon, &s2, &err) == 0) {
        char *canon2 = drq_spec_canonical(&s2);
        CHECK_EQ_STR(canon2, canon);
        free(canon2);
        drq_spec_free(&s2);
    } else {
        CHECK_MSG(0, "canonical form does not parse: %s", err.msg);
    }
    free(canon);
    drq_spec_free(&s);

    /* an analyses-only sweep (a screen without attacks): no "attacks" key in its canonical form */
    text = HEAD "\"analyses\":[{\"name\":\"scr\",\"kind\":\"screen\",\"n_uniform\":4}]}";
    if (drq_spec_parse_text(text, &s, &err)) {
        CHECK_MSG(0, "analyses-only: %s", err.msg);
        return;
    }
    CHECK_EQ_INT(s.nattacks, 1);
    canon = drq_spec_canonical(&s);
    CHECK(strstr(canon, "\"attacks\"") == NULL);
    drq_spec_free(&s);
    CHECK_EQ_STR(err_of(canon), "");
    free(canon);
}

static void test_errors(void) {
#define ANA(body) HEAD "\"attacks\":[{\"name\":\"pgd\",\"kind\":\"pgd\"}],\"analyses\":[" body "]}"
    CHECK_CONTAINS(err_of(ANA("{\"name\":\"v\",\"kind\":\"variance\",\"n_delta\":0}")),
                   "analyses[0].n_delta: expected an integer in [1,1000]");
    CHECK_CONTAINS(err_of(ANA("{\"name\":\"v\",\"kind\":\"variance\",\"n_omega\":1}")),
                   "analyses[0].n_omega: expected an integer in [2,1000]");
    CHECK_CONTAINS(err_of(ANA("{\"name\":\"v\",\"kind\":\"variance\",\"n_delta\":1001}")),
                   "analyses[0].n_delta: expected an integer in [1,1000]");
    CHECK_CONTAINS(err_of(ANA("{\"name\":\"v\",\"kind\":\"variance\",\"eps\":2}")), "analyses[0].eps: expected a number");
    CHECK_CONTAINS(err_of(ANA("{\"name\":\"g\",\"kind\":\"gradcorr\"},{\"name\":\"h\",\"kind\":\"gradcorr\","
                              "\"estimators\":[\"fixed\",\"pgd\"]}")),
                   "analyses[1].estimators[1]: expected one of fixed|fixed_other|fresh|eot|bpda");
    CHECK_CONTAINS(err_of(ANA("{\"name\":\"g\",\"kind\":\"gradcorr\",\"estimators\":[\"eot\"]}")),
                   "analyses[0].estimators: expected an array of 2 to 5 distinct names");
    CHECK_CONTAINS(err_of(ANA("{\"name\":\"g\",\"kind\":\"gradcorr\",\"estimators\":[\"eot\",\"bpda\",\"eot\"]}")),
                   "analyses[0].estimators[2]: duplicate estimator \"eot\" (same as analyses[0].estimators[0])");
    CHECK_CONTAINS(err_of(ANA("{\"name\":\"g\",\"kind\":\"gradcorr\",\"estimators\":\"eot\"}")),
                   "analyses[0].estimators: expected an array");
    CHECK_CONTAINS(err_of(ANA("{\"name\":\"g\",\"kind\":\"gradcorr\",\"at\":\"pgd\"}")),
                   "analyses[0].at: only \"clean\" is supported");
    CHECK_CONTAINS(err_of(ANA("{\"name\":\"g\",\"kind\":\"gradcorr\",\"eot_k\":0}")),
                   "analyses[0].eot_k: expected an integer in [1,1000]");
    CHECK_CONTAINS(err_of(ANA("{\"name\":\"s\",\"kind\":\"screen\",\"n_uniform\":0}")),
                   "analyses[0].n_uniform: expected an integer in [1,1000]");
    CHECK_CONTAINS(err_of(ANA("{\"name\":\"s\",\"kind\":\"screen\",\"n_delta\":3}")),
                   "analyses[0].n_delta: not a key of kind \"screen\"");
    CHECK_CONTAINS(err_of(ANA("{\"name\":\"s\",\"kind\":\"screen\",\"steps\":3}")),
                   "analyses[0].steps: unknown key");
    CHECK_CONTAINS(err_of(ANA("{\"name\":\"s\",\"kind\":\"pgd\"}")),
                   "analyses[0].kind: expected one of variance|gradcorr|screen");
    CHECK_CONTAINS(err_of(ANA("{\"name\":\"pgd\",\"kind\":\"screen\"}")),
                   "analyses[0].name: duplicate name \"pgd\" (same as attacks[0].name)");
    CHECK_CONTAINS(err_of(HEAD "\"attacks\":[{\"name\":\"a\",\"kind\":\"pgd\"},{\"name\":\"b\",\"kind\":\"pgd\"}],"
                               "\"analyses\":[{\"name\":\"s\",\"kind\":\"screen\"},{\"name\":\"b\",\"kind\":\"screen\"}]}"),
                   "analyses[1].name: duplicate name \"b\" (same as attacks[1].name)");
    CHECK_CONTAINS(err_of(ANA("{\"name\":\"s\",\"kind\":\"screen\"},{\"name\":\"s\",\"kind\":\"variance\"}")),
                   "analyses[1].name: duplicate name \"s\" (same as analyses[0].name)");
    CHECK_CONTAINS(err_of(HEAD "\"analyses\":[]}"), "analyses: expected a non-empty array");
    CHECK_CONTAINS(err_of("{\"name\":\"x\",\"dataset\":{\"kind\":\"none\",\"count\":3},"
                          "\"analyses\":[{\"name\":\"s\",\"kind\":\"screen\"}]}"),
                   "analyses[0].kind: \"screen\" needs a dataset");
    /* a screen of a diffusion purifier in a spec without a diffusion model */
    CHECK_CONTAINS(err_of("{\"name\":\"x\",\"dataset\":{\"kind\":\"mnist\",\"path\":\"d\"},"
                          "\"classifier\":{\"arch\":\"wrn\",\"weights\":\"c\"},"
                          "\"purifiers\":[{\"name\":\"t10\",\"kind\":\"ddpm\",\"t_star\":10}],"
                          "\"analyses\":[{\"name\":\"s\",\"kind\":\"screen\"}]}"),
                   "diffusion: required (a purifier of kind other than \"none\" needs a diffusion model)");
    CHECK_CONTAINS(err_of(HEAD "\"attacks\":[{\"name\":\"v\",\"kind\":\"variance\"}]}"),
                   "attacks[0].kind: expected one of pgd|bpda|noop");
#undef ANA
}

int main(void) {
    test_defaults_and_expansion();
    test_errors();
    return CHECK_DONE();
}
