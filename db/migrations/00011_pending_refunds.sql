-- +goose Up
-- The reconciler looks for refunds that stayed pending; a partial index
-- keeps that cheap however many processed refunds there are.
CREATE INDEX refunds_pending ON refunds (created_at) WHERE status = 'pending';

-- +goose Down
DROP INDEX refunds_pending;
