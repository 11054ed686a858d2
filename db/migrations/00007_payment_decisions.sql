-- +goose Up
-- A busy table's lock is waited for 1 s at most, as in 00017 (db/migrate.go
-- runs the migration again later).
SET LOCAL lock_timeout = '1s';
-- The key the acquirer is asked under. The worker commits it before asking
-- and asks again under the same key after a failure, so an acquirer that
-- deduplicates on it decides a payment once however often it is asked.
ALTER TABLE payments ADD COLUMN decision_key uuid;

-- While a payment of an order is pending, or once one succeeded, no other
-- payment of it is accepted: an order is charged at most once. This replaces
-- the index that allowed one success but any number of pending payments.
--
-- A database from before this migration may hold an order with several
-- pending payments, or a pending payment beside a success: that was allowed.
-- Settle them first, or the index cannot be built: a pending payment of an
-- order that already succeeded fails, and of the other orders the oldest
-- pending payment stays and the rest fail, as a decline would fail them.
-- No payment.failed webhook event is recorded for these pre-upgrade
-- leftovers. Their jobs, should they run, find them decided and change
-- nothing. The subqueries see the table as it was before this UPDATE.
UPDATE payments p
SET status = 'failed', error_code = 'PAYMENT_FAILED', error_description = 'Payment processing failed', updated_at = now()
WHERE p.status = 'pending'
  AND (EXISTS (SELECT 1 FROM payments s WHERE s.order_id = p.order_id AND s.status = 'success')
       OR EXISTS (SELECT 1 FROM payments o WHERE o.order_id = p.order_id AND o.status = 'pending'
                  AND (o.created_at, o.id) < (p.created_at, p.id)));
CREATE UNIQUE INDEX payments_one_live_per_order ON payments (order_id) WHERE status IN ('pending', 'success');
DROP INDEX payments_one_success_per_order;

-- +goose Down
CREATE UNIQUE INDEX payments_one_success_per_order ON payments (order_id) WHERE status = 'success';
DROP INDEX payments_one_live_per_order;
ALTER TABLE payments DROP COLUMN decision_key;
