-- +goose Up
-- Each lock on a busy table is waited for 1 s at most: a migration queued
-- behind a long transaction would hold every request for that table behind
-- it (and those for the tables whose locks it holds already); Migrate runs
-- it again later (db/migrate.go).
SET LOCAL lock_timeout = '1s';
-- A payment's merchant is its order's (the foreign key on (order_id,
-- merchant_id)), and an order's merchant exists (orders' own foreign key);
-- a refund's merchant is its payment's, by the same chain. So the direct
-- foreign keys from payments and refunds to merchants guard nothing the
-- others do not: a merchant with orders cannot be deleted, and no payment
-- or refund can name another merchant than its order's (every column of
-- the chain is NOT NULL, no key of it cascades). Each did cost a check
-- that locks the merchant's row FOR KEY SHARE: a busy merchant's one row,
-- locked by every payment and refund in flight, each lock a new MultiXact
-- and a write to its page. Of the three such checks per payment (its own,
-- and its two webhook logs', whose key to the merchant is not implied by
-- another and stays), one is left out.
ALTER TABLE payments DROP CONSTRAINT payments_merchant_id_fkey;
ALTER TABLE refunds DROP CONSTRAINT refunds_merchant_id_fkey;

-- +goose Down
ALTER TABLE refunds ADD CONSTRAINT refunds_merchant_id_fkey FOREIGN KEY (merchant_id) REFERENCES merchants (id);
ALTER TABLE payments ADD CONSTRAINT payments_merchant_id_fkey FOREIGN KEY (merchant_id) REFERENCES merchants (id);
