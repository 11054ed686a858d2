-- +goose Up
-- A busy table's lock is waited for 1 s at most, as in 00017 (db/migrate.go
-- runs the migration again later).
SET LOCAL lock_timeout = '1s';
-- The reconciler looks for refunds that stayed pending; a partial index
-- keeps that cheap however many processed refunds there are.
CREATE INDEX refunds_pending ON refunds (created_at) WHERE status = 'pending';

-- +goose Down
DROP INDEX refunds_pending;
