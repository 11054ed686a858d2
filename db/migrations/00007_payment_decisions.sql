-- +goose Up
-- The key the acquirer is asked under. The worker commits it before asking
-- and asks again under the same key after a failure, so an acquirer that
-- deduplicates on it decides a payment once however often it is asked.
ALTER TABLE payments ADD COLUMN decision_key uuid;

-- While a payment of an order is pending, or once one succeeded, no other
-- payment of it is accepted: an order is charged at most once. This replaces
-- the index that allowed one success but any number of pending payments.
CREATE UNIQUE INDEX payments_one_live_per_order ON payments (order_id) WHERE status IN ('pending', 'success');
DROP INDEX payments_one_success_per_order;

-- +goose Down
CREATE UNIQUE INDEX payments_one_success_per_order ON payments (order_id) WHERE status = 'success';
DROP INDEX payments_one_live_per_order;
ALTER TABLE payments DROP COLUMN decision_key;
