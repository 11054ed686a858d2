-- +goose Up
-- Each lock on a busy table is waited for 1 s at most: a migration queued
-- behind a long transaction would hold every request for that table behind
-- it (and those for the tables whose locks it holds already); Migrate runs
-- it again later (db/migrate.go).
SET LOCAL lock_timeout = '1s';
-- River's index on river_job (kind) serves only River UI's list of kinds
-- and its filter by kind, which still work without it, by scanning. River's
-- own queries (fetching, completing, rescuing, cleaning, unique inserts)
-- use the other indexes, and so do paygate's: the reconcilers and a webhook
-- retry find a live job through the fetching index (state first), as
-- migration 00017 says. Every version of every job row entered it: three
-- jobs per payment, each inserted, fetched and completed, none of the
-- updates HOT. With pgbench (job inserts, 16 clients, durable settings) the
-- inserts per second rose 9-16 % without it. River's own migrations up to
-- the pinned version 8 never touch it again; a River upgrade that does must
-- be checked against this one. db.RiverJobIndexes, which River's reindexer
-- is configured with, lists the indexes that remain.
DROP INDEX IF EXISTS river_job_kind;

-- +goose Down
CREATE INDEX IF NOT EXISTS river_job_kind ON river_job USING btree (kind);
