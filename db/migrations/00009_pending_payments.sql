-- +goose Up
-- The reconciler looks for payments that stayed pending; a partial index
-- keeps that cheap however many decided payments there are.
CREATE INDEX payments_pending ON payments (created_at) WHERE status = 'pending';

-- +goose Down
DROP INDEX payments_pending;
