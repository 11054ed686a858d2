-- +goose Up
-- Each lock on a busy table is waited for 1 s at most: a migration queued
-- behind a long transaction would hold every request for that table behind
-- it (and those for the tables whose locks it holds already); Migrate runs
-- it again later (db/migrate.go).
SET LOCAL lock_timeout = '1s';
-- An order is paid exactly when it has a successful payment: its status is
-- read from that payment (payments/store.go ordersWithStatus), and a
-- decision no longer writes the order's row. That update was one more row
-- version per payment, never HOT once the order's page was full, each with
-- an entry in the order's three indexes, two of them on random ids, whose
-- leaf pages it touched again after the order's insert (and, after a
-- checkpoint, wrote whole into the WAL). When it became paid is when its
-- success was decided: decided_at, set by the decision's own UPDATE.
ALTER TABLE payments ADD COLUMN decided_at timestamptz;

-- orders.status stays, no longer read and written only by the instances of
-- the previous version still running during a rolling deploy: it is stale
-- for every order this version's workers pay. Until those instances stop,
-- they show such an order as created (and its checkout offers the form
-- again, whose payment is refused as in progress). Money is not at stake:
-- the unique index payments_one_live_per_order, not this column, is what
-- keeps an order from being charged twice, in both versions. A later
-- release drops the column, after setting decided_at of the previous
-- version's successes from their orders' updated_at.

-- +goose Down
UPDATE orders o SET status = 'paid', updated_at = p.decided_at
FROM payments p
WHERE p.order_id = o.id AND p.merchant_id = o.merchant_id AND p.status = 'success'
  AND p.decided_at IS NOT NULL AND o.status <> 'paid';
ALTER TABLE payments DROP COLUMN decided_at;
