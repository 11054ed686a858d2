-- +goose Up
-- An order is paid exactly when it has a successful payment: its status is
-- read from that payment (payments/store.go ordersWithStatus), and a
-- decision no longer writes the order's row. That update was one more row
-- version per payment, never HOT once the order's page was full, each with
-- an entry in the order's three indexes, two of them on random ids, whose
-- leaf pages it touched again after the order's insert (and, after a
-- checkpoint, wrote whole into the WAL). When it became paid is when its
-- success was decided: decided_at, set by the decision's own UPDATE.
ALTER TABLE payments ADD COLUMN decided_at timestamptz;

-- The column stays, unmaintained, for the instances of the previous version
-- that still run during a rolling deploy: they read it and write it, and
-- the unique index payments_one_live_per_order, not this column, is what
-- keeps an order from being charged twice. A later release drops it.
COMMENT ON COLUMN orders.status IS
    'Not maintained since migration 00020: an order is paid when it has a successful payment (see payments.decided_at).';

-- +goose Down
UPDATE orders o SET status = 'paid', updated_at = p.decided_at
FROM payments p
WHERE p.order_id = o.id AND p.merchant_id = o.merchant_id AND p.status = 'success'
  AND p.decided_at IS NOT NULL AND o.status <> 'paid';
COMMENT ON COLUMN orders.status IS NULL;
ALTER TABLE payments DROP COLUMN decided_at;
