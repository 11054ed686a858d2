-- +goose Up
-- A busy table's lock is waited for 1 s at most, as in 00017 (db/migrate.go
-- runs the migration again later).
SET LOCAL lock_timeout = '1s';
-- Which attempt of which run each request was. A log's attempts always
-- equals the number of its current run's rows here: both are written by one
-- statement (see webhooks.recordAttempt).
ALTER TABLE webhook_attempts ADD COLUMN run integer NOT NULL DEFAULT 0,
                             ADD COLUMN attempt integer NOT NULL DEFAULT 0;
-- Earlier rows: number them in order within the log (runs were not kept).
UPDATE webhook_attempts a SET attempt = n.attempt
FROM (SELECT id, row_number() OVER (PARTITION BY log_id ORDER BY id) AS attempt FROM webhook_attempts) n
WHERE n.id = a.id;
-- The reconciler looks for pending logs that have not moved for a while.
CREATE INDEX webhook_logs_pending ON webhook_logs (updated_at) WHERE status = 'pending';

-- +goose Down
DROP INDEX webhook_logs_pending;
ALTER TABLE webhook_attempts DROP COLUMN attempt, DROP COLUMN run;
