-- +goose Up
-- A payment's merchant is its order's (the foreign key on (order_id,
-- merchant_id)), and an order's merchant exists (orders' own foreign key);
-- a refund's merchant is its payment's, by the same chain. So the direct
-- foreign keys from payments and refunds to merchants guard nothing the
-- others do not: a merchant with orders cannot be deleted, and no payment
-- or refund can name another merchant than its order's. Each did cost a
-- check that locks the merchant's row FOR KEY SHARE: on a busy merchant
-- every payment and refund in flight locks that one row, each lock a new
-- MultiXact and a write to its page (sessions waiting on the page's
-- content lock in make bench). Payments and refunds keep their chains;
-- webhook logs keep their own key to the merchant.
ALTER TABLE payments DROP CONSTRAINT payments_merchant_id_fkey;
ALTER TABLE refunds DROP CONSTRAINT refunds_merchant_id_fkey;

-- +goose Down
ALTER TABLE refunds ADD CONSTRAINT refunds_merchant_id_fkey FOREIGN KEY (merchant_id) REFERENCES merchants (id);
ALTER TABLE payments ADD CONSTRAINT payments_merchant_id_fkey FOREIGN KEY (merchant_id) REFERENCES merchants (id);
