-- +goose Up
-- A busy table's lock is waited for 1 s at most, as in 00017 (db/migrate.go
-- runs the migration again later).
SET LOCAL lock_timeout = '1s';
-- Webhook logs and attempts are pruned by age (WEBHOOK_LOG_RETENTION): these
-- indexes let each bounded batch find the oldest rows without a scan.
CREATE INDEX webhook_logs_created ON webhook_logs (created_at);
CREATE INDEX webhook_attempts_attempted ON webhook_attempts (attempted_at);

-- +goose Down
DROP INDEX webhook_attempts_attempted;
DROP INDEX webhook_logs_created;
