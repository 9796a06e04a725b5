-- 003_analyses.sql — the tables of the analysis job kinds (docs/spec.md
-- §analyses, docs/design.md §Analyses).  A job of kind variance, gradcorr or
-- screen returns one results row per image like an attack (attack = the
-- analysis's name), with its measurements in the row's extra JSON; the store
-- copies them into these tables in the transaction that inserts the results
-- row (server/store.c, store_analysis_insert), so a row is here exactly when
-- its results row is, and at most once (the UNIQUE keys).  NULL = not
-- available (e.g. snr when the internal variance is 0).
CREATE TABLE variance_results (
    sweep              INTEGER NOT NULL,
    purifier           TEXT NOT NULL,
    analysis           TEXT NOT NULL,
    seed               INTEGER NOT NULL,
    image              INTEGER NOT NULL,
    label              INTEGER,
    n_delta            INTEGER,
    n_omega            INTEGER,
    var_total          REAL,
    var_input          REAL,
    var_internal       REAL,
    snr                REAL,
    radius_init        REAL,
    radius_fixed_omega REAL,
    radius_fixed_delta REAL,
    radius_both        REAL,
    cos_same_omega     REAL,
    cos_same_delta     REAL,
    UNIQUE (sweep, purifier, analysis, seed, image)
);

-- one row per image and pair of estimators (est_a before est_b in the spec's list)
CREATE TABLE gradcorr_results (
    sweep    INTEGER NOT NULL,
    purifier TEXT NOT NULL,
    analysis TEXT NOT NULL,
    seed     INTEGER NOT NULL,
    image    INTEGER NOT NULL,
    at       TEXT,
    est_a    TEXT NOT NULL,
    est_b    TEXT NOT NULL,
    cosine   REAL,
    UNIQUE (sweep, purifier, analysis, seed, image, est_a, est_b)
);

CREATE TABLE screen_results (
    sweep          INTEGER NOT NULL,
    purifier       TEXT NOT NULL,
    analysis       TEXT NOT NULL,
    seed           INTEGER NOT NULL,
    image          INTEGER NOT NULL,
    label          INTEGER,
    clean_pred     INTEGER,
    clean_correct  INTEGER,
    comp_unif_mean REAL,
    comp_unif_std  REAL,
    n_uniform      INTEGER,
    UNIQUE (sweep, purifier, analysis, seed, image)
);
