/* test_store_analyses.c — the analysis tables of the store
 * (schema/003_analyses.sql, server/store.c):
 *   - a results row of an analysis fills its table in the same transaction,
 *     with exactly what common/analysis_rows.c maps it to (gradcorr: one
 *     table row per pair); rows of attacks (noop's extra too) add nothing;
 *   - re-inserting the same rows adds nothing (exactly once on identity);
 *   - a rolled-back transaction leaves neither the results row nor the table rows;
 *   - the coordinator's check that rows fit their job's kind (analysis
 *     rows carry their measurements, attack rows none);
 *   - a database from before the migration (no analysis tables, schema
 *     version 2) opens read-write and gets them, and then opens read-only.
 */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/analysis_rows.h"
#include "../common/spec.h"
#include "server/store.h"
#include "check.h"

static char dir[64];

static const char *spec_text =
    "{\"name\":\"s\",\"dataset\":{\"kind\":\"mnist\",\"path\":\"d\",\"count\":4},\"seeds\":[5],"
    "\"classifier\":{\"arch\":\"wrn\",\"weights\":\"c\"},"
    "\"attacks\":[{\"name\":\"a\",\"kind\":\"pgd\"}],"
    "\"analyses\":[{\"name\":\"var\",\"kind\":\"variance\"},{\"name\":\"gc\",\"kind\":\"gradcorr\"},"
    "{\"name\":\"scr\",\"kind\":\"screen\"}],\"shard\":{\"images\":4}}";

/* count(*) of a query on the database file (a second connection). */
static long long count_of(const char *db, const char *sql) {
    sqlite3 *h;
    sqlite3_stmt *s;
    long long n = -1;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK) {
        if (sqlite3_step(s) == SQLITE_ROW) n = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
    }
    sqlite3_close(h);
    return n;
}

/* The rows of table t on the file as JSON arrays, in key order. */
static json_t *table_rows(const char *db, drq_analysis_table t) {
    int ncol;
    const char *const *cols = drq_analysis_columns(t, &ncol);
    char sql[1024] = "SELECT ";
    for (int c = 0; c < ncol; c++) {
        strcat(sql, cols[c]);
        strcat(sql, c + 1 < ncol ? ", " : " FROM ");
    }
    strcat(sql, drq_analysis_table_name(t));
    strcat(sql, " ORDER BY purifier, analysis, seed, image, rowid");
    json_t *out = json_array();
    sqlite3 *h;
    sqlite3_stmt *s;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK) {
        while (sqlite3_step(s) == SQLITE_ROW) {
            json_t *v = json_array();
            for (int c = 0; c < ncol; c++) {
                int ty = sqlite3_column_type(s, c);
                json_array_append_new(v, ty == SQLITE_INTEGER ? json_integer(sqlite3_column_int64(s, c))
                                         : ty == SQLITE_FLOAT ? json_real(sqlite3_column_double(s, c))
                                         : ty == SQLITE_TEXT  ? json_string((const char *)sqlite3_column_text(s, c))
                                                              : json_null());
            }
            json_array_append_new(out, v);
        }
        sqlite3_finalize(s);
    }
    sqlite3_close(h);
    return out;
}

static const char *extras[4] = {
    "{\"analysis\":\"variance\",\"n_delta\":3,\"n_omega\":2,\"var_total\":1.5,\"var_input\":0.5,\"var_internal\":1,"
    "\"snr\":0.5,\"radius_init\":0.25,\"radius_fixed_omega\":0.125,\"radius_fixed_delta\":1.25,\"radius_both\":1.5,"
    "\"cos_same_omega\":0.75,\"cos_same_delta\":null}",
    "{\"analysis\":\"gradcorr\",\"at\":\"clean\",\"eot_k\":2,\"pairs\":[{\"est_a\":\"fixed\",\"est_b\":\"eot\","
    "\"cosine\":0.25},{\"est_a\":\"fixed\",\"est_b\":\"bpda\",\"cosine\":-0.5},{\"est_a\":\"eot\",\"est_b\":\"bpda\","
    "\"cosine\":null}]}",
    "{\"analysis\":\"screen\",\"n_uniform\":4}",
    "{\"workload\":\"noop\",\"chain\":\"00\"}",
};

/* Inserts 4 rows (images 0..3) for job seq of the sweep, extra = extras[which]. */
static int64_t insert(store *st, int64_t seq, const char *pur, const char *atk, int which) {
    store_job j;
    store_job_get(st, seq + 1, &j);
    drq_row rows[4];
    for (int i = 0; i < 4; i++) {
        drq_row_init(&rows[i]);
        rows[i].image = i, rows[i].label = i;
        rows[i].clean_pred = i == 2 ? 7 : i, rows[i].clean_correct = i != 2;
        rows[i].comp_unif_mean = 0.25 * i, rows[i].comp_unif_std = 0.5;
        rows[i].extra = (char *)extras[which];
    }
    return store_results_insert(st, &j, pur, atk, rows, 4);
}

/* What the coordinator accepts as the rows of a job (server/workers.c, on_result). */
static void test_check(void) {
    drq_row r;
    char why[256] = "";
    drq_row_init(&r);
    r.extra = (char *)extras[0];
    CHECK_EQ_INT(drq_analysis_check(ATK_VARIANCE, &r, 1, why, sizeof why), 1);
    CHECK_EQ_INT(drq_analysis_check(ATK_PGD, &r, 1, why, sizeof why), 0);
    CHECK_CONTAINS(why, "row 0: extra's analysis is variance, the job's kind is pgd");
    CHECK_EQ_INT(drq_analysis_check(ATK_SCREEN, &r, 1, why, sizeof why), 0);
    r.extra = (char *)extras[3];
    CHECK_EQ_INT(drq_analysis_check(ATK_NOOP, &r, 1, why, sizeof why), 1);
    CHECK_EQ_INT(drq_analysis_check(ATK_GRADCORR, &r, 1, why, sizeof why), 0);
    CHECK_CONTAINS(why, "extra's analysis is none, the job's kind is gradcorr");
    r.extra = "{\"analysis\":\"gradcorr\",\"pairs\":[]}";
    CHECK_EQ_INT(drq_analysis_check(ATK_GRADCORR, &r, 1, why, sizeof why), 0);
    CHECK_CONTAINS(why, "a gradcorr row without measurements");
    r.extra = NULL;
    CHECK_EQ_INT(drq_analysis_check(ATK_BPDA, &r, 1, why, sizeof why), 1);
}

int main(void) {
    test_check();
    snprintf(dir, sizeof dir, "/tmp/drq-storean-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    char db[128];
    snprintf(db, sizeof db, "%s/a.db", dir);
    drq_err e = {{0}};
    drq_spec sp;
    int64_t sw;
    CHECK_MSG(drq_spec_parse_text(spec_text, &sp, &e) == 0, "spec: %s", e.msg);
    store *st = store_open(db, 0, &e);
    if (!st) {
        CHECK_MSG(0, "open: %s", e.msg);
        return CHECK_DONE();
    }
    char *canon = drq_spec_canonical(&sp);
    CHECK_EQ_INT(store_begin(st, &e), 0);
    CHECK_EQ_INT(store_sweep_create(st, &sp, canon, &sw, &e), 0);
    CHECK_EQ_INT(store_sweep_expand(st, sw, &sp, 100, &e), 0);
    CHECK_EQ_INT(store_commit(st, &e), 0);
    free(canon);
    /* jobs: seq 0 attack a, 1 var, 2 gc, 3 scr (one purifier, one seed, one shard) */
    CHECK_EQ_INT(store_begin(st, &e), 0);
    CHECK_EQ_INT(insert(st, 1, "none", "var", 0), 4);
    CHECK_EQ_INT(insert(st, 2, "none", "gc", 1), 4);
    CHECK_EQ_INT(insert(st, 3, "none", "scr", 2), 4);
    CHECK_EQ_INT(insert(st, 0, "none", "a", 3), 4);
    CHECK_EQ_INT(store_commit(st, &e), 0);
    CHECK_EQ_INT(count_of(db, "SELECT count(*) FROM variance_results"), 4);
    CHECK_EQ_INT(count_of(db, "SELECT count(*) FROM gradcorr_results"), 12);
    CHECK_EQ_INT(count_of(db, "SELECT count(*) FROM screen_results"), 4);
    CHECK_EQ_INT(count_of(db, "SELECT count(*) FROM variance_results WHERE snr = 0.5 AND cos_same_delta IS NULL "
                              "AND radius_fixed_delta = 1.25 AND n_delta = 3 AND analysis = 'var' AND seed = 5"), 4);
    CHECK_EQ_INT(count_of(db, "SELECT count(*) FROM gradcorr_results WHERE est_a = 'fixed' AND est_b = 'bpda' AND "
                              "cosine = -0.5 AND at = 'clean'"), 4);
    CHECK_EQ_INT(count_of(db, "SELECT count(*) FROM screen_results WHERE clean_correct = 0 AND clean_pred = 7 AND "
                              "image = 2 AND comp_unif_mean = 0.5 AND n_uniform = 4"), 1);
    /* the tables hold exactly the mapping of the results rows (what drq results --kind exports) */
    for (int t = DRQ_AT_VARIANCE; t <= DRQ_AT_SCREEN; t++) {
        json_t *want = json_array();
        drq_row *rows;
        int64_t n = store_results_fetch(st, sw, NULL, NULL, 0, 0, 100, &rows);
        for (int64_t i = 0; i < n; i++) {
            json_t *r = drq_analysis_rows(&rows[i], (drq_analysis_table)t);
            json_array_extend(want, r);
            json_decref(r);
        }
        drq_rows_free(rows, n);
        json_t *got = table_rows(db, (drq_analysis_table)t);
        CHECK_MSG(json_equal(want, got), "table %s differs from the mapping of its results rows",
                  drq_analysis_table_name((drq_analysis_table)t));
        json_decref(want), json_decref(got);
    }
    /* exactly once */
    CHECK_EQ_INT(store_begin(st, &e), 0);
    CHECK_EQ_INT(insert(st, 2, "none", "gc", 1), 0);
    CHECK_EQ_INT(insert(st, 1, "none", "var", 0), 0);
    CHECK_EQ_INT(store_commit(st, &e), 0);
    CHECK_EQ_INT(count_of(db, "SELECT count(*) FROM gradcorr_results"), 12);
    CHECK_EQ_INT(count_of(db, "SELECT count(*) FROM variance_results"), 4);
    /* rolled back: neither the results rows nor the table rows */
    CHECK_EQ_INT(store_begin(st, &e), 0);
    CHECK_EQ_INT(insert(st, 2, "p2", "gc", 1), 4);
    store_rollback(st);
    CHECK_EQ_INT(count_of(db, "SELECT count(*) FROM gradcorr_results"), 12);
    CHECK_EQ_INT(count_of(db, "SELECT count(*) FROM results WHERE purifier = 'p2'"), 0);
    store_close(st);
    drq_spec_free(&sp);

    /* a database of schema version 2: no analysis tables */
    sqlite3 *h;
    CHECK_EQ_INT(sqlite3_open(db, &h), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(h,
                              "DROP TABLE variance_results; DROP TABLE gradcorr_results; DROP TABLE screen_results; "
                              "DROP TABLE IF EXISTS images; " /* 004 */
                              "DELETE FROM schema_version WHERE version >= 3;",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(h);
    st = store_open(db, 1, &e);
    CHECK_MSG(st == NULL, "read-only open of an old schema must refuse (it cannot migrate)");
    CHECK_CONTAINS(e.msg, "schema version");
    st = store_open(db, 0, &e);
    CHECK_MSG(st != NULL, "read-write open of a version-2 database: %s", e.msg);
    if (st) {
        CHECK_EQ_INT(store_schema_version(st), store_schema_latest());
        store_close(st);
    }
    CHECK_EQ_INT(count_of(db, "SELECT count(*) FROM variance_results"), 0);
    CHECK_EQ_INT(count_of(db, "SELECT count(*) FROM results"), 16);
    st = store_open(db, 1, &e);
    CHECK_MSG(st != NULL, "read-only open after the migration: %s", e.msg);
    store_close(st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return CHECK_DONE();
}
