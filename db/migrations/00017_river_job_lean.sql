-- +goose Up
-- Each lock on a busy table is waited for 1 s at most: a migration queued
-- behind a long transaction would hold every request for that table behind
-- it (and those for the tables whose locks it holds already); Migrate runs
-- it again later (db/migrate.go).
SET LOCAL lock_timeout = '1s';
-- river_job is the busiest table: every payment writes three jobs, and each
-- job row has three versions (inserted, fetched, completed). No update is
-- HOT (the state column is indexed), so every version enters every index.
--
-- River's two GIN indexes, on args and on metadata, serve only containment
-- searches (@>). paygate makes none: its reconcilers and a webhook retry
-- find a row's live job by kind, state and args keys (db/reconcile.go,
-- webhooks/reconcile.go, webhooks/store.go runHasLiveJob),
-- which the fetching index (state first) and a hash anti-join answer. River
-- itself uses them for nothing on its hot paths, and River UI's filters
-- still work without them, only by scanning. Measured with pgbench (job
-- inserts, 32 clients, durable settings): about 20 % less database CPU per
-- inserted job and 1.6 times the inserts per second without them.
-- River's own migrations up to the pinned version 8 never touch them again;
-- a River upgrade that does must be checked against this one.
DROP INDEX IF EXISTS river_job_args_index;
DROP INDEX IF EXISTS river_job_metadata_index;

-- Vacuum and analyze river_job after about 2 % of it changed rather than
-- 20 %: dead versions in the fetching index slow every fetch, and the
-- statistics of a table that was empty when last analyzed can leave River's
-- fetch with a sequential-scan plan under load
-- (docs/benchmarks-history.md).
ALTER TABLE river_job SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_analyze_threshold = 500
);

-- +goose Down
ALTER TABLE river_job RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_insert_scale_factor,
    autovacuum_analyze_scale_factor, autovacuum_analyze_threshold);
CREATE INDEX IF NOT EXISTS river_job_args_index ON river_job USING GIN (args);
CREATE INDEX IF NOT EXISTS river_job_metadata_index ON river_job USING GIN (metadata);
