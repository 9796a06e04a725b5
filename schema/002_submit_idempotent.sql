-- 002_submit_idempotent.sql — idempotent submits, and the spec text out of
-- the hot sweeps row (docs/queue.md, "Submit").
--   sweeps.spec_hash   64-bit FNV-1a of the canonical spec text, 16 hex
--                      digits: a submit of a spec equal to a sweep that is not
--                      cancelled returns that sweep unless the client asks
--                      `--again`;
--   sweeps.submission  the client's submission id (128-bit random hex, one
--                      per `drq submit` invocation, reused by its retries): a
--                      retry never creates a second sweep, --again or not;
--   sweep_specs        the canonical spec JSON, moved out of sweeps: the
--                      per-state counters of a sweep row change with every
--                      job, and SQLite rewrites a whole row (a 100000-seed
--                      spec is 589 KB) on each change.
CREATE TABLE sweep_specs (
    sweep INTEGER PRIMARY KEY,
    spec  TEXT NOT NULL                  -- canonical spec JSON (docs/spec.md)
);
INSERT INTO sweep_specs(sweep, spec) SELECT id, spec FROM sweeps;
ALTER TABLE sweeps DROP COLUMN spec;
ALTER TABLE sweeps ADD COLUMN spec_hash TEXT;
ALTER TABLE sweeps ADD COLUMN submission TEXT;
CREATE INDEX sweeps_spec_hash ON sweeps(spec_hash);
CREATE UNIQUE INDEX sweeps_submission ON sweeps(submission) WHERE submission IS NOT NULL;
