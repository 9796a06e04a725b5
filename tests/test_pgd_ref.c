/* test_pgd_ref.c — PGD against an independent reference: the iterates of
 * L∞ PGD (random start, fixed ω, full gradient through the sampler) on the
 * unet_small / wrn_small fixtures, computed in float64 PyTorch with drq's
 * noise re-implemented in numpy (tests/ref/gen_pgd_fixture.py), for DDIM
 * (t* = 4, stride 2), DDIM without forward noising (the same) and DDPM (t* = 3); cases and tolerances in pgd_ref.h
 * (shared with the GPU test).
 */
#include <math.h>
#include <stdlib.h>

#include "../common/safetensors.h"
#include "worker/eval/attack.h"
#include "check.h"
#include "fixture_model.h"
#include "pgd_ref.h"

int main(void) {
    drq_set_threads(2);
    drq_err err = {{0}};
    st_file wu = {0}, ww = {0}, ref = {0};
    unet *u = fixture_model("unet_small", 1, &wu, DRQ_CPU);
    wrn *w = fixture_model("wrn_small", 0, &ww, DRQ_CPU);
    CHECK_MSG(st_load("tests/fixtures/pgd_ref.safetensors", &ref, &err) == 0, "%s", err.msg);
    const st_tensor *tx = st_find(&ref, "x"), *tl = st_find(&ref, "label");
    if (!u || !w || !tx || !tl) return CHECK_DONE();
    classifier *cw = classifier_wrap_wrn(w);
    Tensor x = tensor_wrap(tx->data, 2, 1, 16, 16);
    int label[2] = {(int)tl->data[0], (int)tl->data[1]};
    int64_t image[2] = {0, 1};
    for (int c = 0; c < PGD_REF_NCASES; c++) {
        const pgd_ref_case *pc = &PGD_REF_CASES[c];
        purifier *p = purifier_new(u, &pc->pc);
        attack_models am = {cw, p, 10, NULL};
        attack_config ac = pgd_ref_attack();
        attack_state st;
        attack_begin(&ac, &x, image, &st);
        for (int k = 1; k <= 3; k++) {
            attack_step(&ac, &am, &x, label, image, &st);
            char nm[64], what[160];
            snprintf(nm, sizeof nm, "xadv_%s_%d", pc->name, k);
            const st_tensor *tr = st_find(&ref, nm);
            CHECK_MSG(tr && tr->numel == 512, "fixture lacks %s", nm);
            if (!tr) continue;
            snprintf(what, sizeof what, "%s step %d vs float64 reference", pc->name, k);
            pgd_ref_compare(what, st.xadv.data, tr->data, x.data);
        }
        attack_state_free(&st);
        attack_models_release(&am);
        purifier_free(p);
    }
    classifier_free(cw), unet_free(u), wrn_free(w);
    st_free(&wu), st_free(&ww), st_free(&ref);
    return CHECK_DONE();
}
