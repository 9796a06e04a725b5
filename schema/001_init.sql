-- 001_init.sql — the initial drq schema (docs/queue.md explains each table).
-- Times are Unix epoch seconds (REAL).  Job states:
--   queued -> leased -> done | failed | cancelled, leased -> queued on requeue.
-- The server applies this file inside one transaction and then records
-- version 1 in schema_version.

CREATE TABLE schema_version (
    version INTEGER PRIMARY KEY,
    applied REAL NOT NULL
);

CREATE TABLE sweeps (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    spec         TEXT NOT NULL,          -- canonical spec JSON (docs/spec.md)
    created      REAL NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('expanding', 'active', 'cancelled')),
    njobs        INTEGER NOT NULL,       -- jobs of the full expansion
    nrows        INTEGER NOT NULL,       -- result rows expected
    job_base     INTEGER NOT NULL,       -- job id = job_base + seq
    jobs_created INTEGER NOT NULL DEFAULT 0,
    -- per-state job counts, kept by the trigger below (status never counts jobs)
    n_queued     INTEGER NOT NULL DEFAULT 0,
    n_leased     INTEGER NOT NULL DEFAULT 0,
    n_done       INTEGER NOT NULL DEFAULT 0,
    n_failed     INTEGER NOT NULL DEFAULT 0,
    n_cancelled  INTEGER NOT NULL DEFAULT 0,
    rows_done    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sweeps_name ON sweeps(name);

CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY,
    sweep         INTEGER NOT NULL,
    seq           INTEGER NOT NULL,      -- position in the sweep's expansion
    purifier      INTEGER NOT NULL,      -- index into spec.purifiers
    attack        INTEGER NOT NULL,      -- index into spec.attacks
    seed          INTEGER NOT NULL,      -- the seed value
    image_start   INTEGER NOT NULL,
    image_count   INTEGER NOT NULL,
    state         TEXT NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'leased', 'done', 'failed', 'cancelled')),
    attempts      INTEGER NOT NULL DEFAULT 0,   -- failed attempts so far
    lease_owner   TEXT,
    lease_expires REAL,
    not_before    REAL NOT NULL DEFAULT 0,      -- back-off: not dispatched before this time
    last_error    TEXT,
    priority      INTEGER NOT NULL DEFAULT 0,   -- higher first
    depends_on    INTEGER                       -- job id that must be done first
);
-- the dispatch query walks this partial index in order
CREATE INDEX jobs_dispatch ON jobs(priority DESC, id) WHERE state = 'queued';
CREATE INDEX jobs_leases ON jobs(lease_expires) WHERE state = 'leased';
CREATE INDEX jobs_depends ON jobs(depends_on) WHERE depends_on IS NOT NULL;

CREATE TRIGGER jobs_state_counts AFTER UPDATE OF state ON jobs
WHEN old.state IS NOT new.state
BEGIN
    UPDATE sweeps SET
        n_queued    = n_queued    + (new.state = 'queued')    - (old.state = 'queued'),
        n_leased    = n_leased    + (new.state = 'leased')    - (old.state = 'leased'),
        n_done      = n_done      + (new.state = 'done')      - (old.state = 'done'),
        n_failed    = n_failed    + (new.state = 'failed')    - (old.state = 'failed'),
        n_cancelled = n_cancelled + (new.state = 'cancelled') - (old.state = 'cancelled')
    WHERE id = new.sweep;
END;

-- one row per image x seed x purifier x attack (DESIGN §5); NULL = not available
CREATE TABLE results (
    sweep          INTEGER NOT NULL,
    purifier       TEXT NOT NULL,
    attack         TEXT NOT NULL,
    seed           INTEGER NOT NULL,
    image          INTEGER NOT NULL,
    label          INTEGER,
    clean_pred     INTEGER,
    adv_pred       INTEGER,
    clean_correct  INTEGER,
    robust         INTEGER,
    success_step   INTEGER,
    delta_l2       REAL,
    delta_linf     REAL,
    dist_init_l2   REAL,
    dist_init_linf REAL,
    dist_max_l2    REAL,
    dist_max_linf  REAL,
    dist_end_l2    REAL,
    dist_end_linf  REAL,
    ssim_adv       REAL,
    ssim_pur       REAL,
    comp_adv       REAL,
    comp_unif_mean REAL,
    comp_unif_std  REAL,
    seconds        REAL,
    unet_evals     INTEGER,
    device         TEXT,
    worker         TEXT,
    extra          TEXT,                 -- JSON object or NULL
    UNIQUE (sweep, purifier, attack, seed, image)
);

CREATE TABLE workers (
    name       TEXT PRIMARY KEY,
    devices    TEXT,                     -- JSON array
    version    TEXT,
    first_seen REAL NOT NULL,
    last_seen  REAL NOT NULL,
    state      TEXT NOT NULL,            -- alive | lost | gone
    jobs_done  INTEGER NOT NULL DEFAULT 0
);

-- the latest attack state of a job, so that a requeued job resumes mid-attack
CREATE TABLE checkpoints (
    job    INTEGER PRIMARY KEY,
    step   INTEGER NOT NULL,
    blob   BLOB NOT NULL,
    worker TEXT,
    t      REAL NOT NULL
);

CREATE TABLE events (
    id     INTEGER PRIMARY KEY,
    t      REAL NOT NULL,
    sweep  INTEGER,
    job    INTEGER,
    worker TEXT,
    kind   TEXT NOT NULL,                -- submit, requeue, fail, release, resume, cancel, retry, worker_join, worker_lost, ...
    detail TEXT
);
CREATE INDEX events_sweep ON events(sweep, id);
