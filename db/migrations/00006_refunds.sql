-- +goose Up
-- A busy table's lock is waited for 1 s at most, as in 00017 (db/migrate.go
-- runs the migration again later).
SET LOCAL lock_timeout = '1s';
-- The target of refunds' (payment_id, merchant_id) foreign key.
ALTER TABLE payments ADD CONSTRAINT payments_id_merchant_id_key UNIQUE (id, merchant_id);

-- A refund of part or all of a payment. The limit (pending + processed
-- refunds ≤ the payment amount) is kept by creating refunds under the
-- payment's row lock; amount_refunded ≤ amount on payments backs it.
CREATE TABLE refunds (
    id           text PRIMARY KEY CHECK (id ~ '^rfnd_[A-Za-z0-9]{16}$'),
    payment_id   text NOT NULL,
    merchant_id  uuid NOT NULL REFERENCES merchants (id),
    amount       bigint NOT NULL CHECK (amount > 0),
    reason       text CHECK (char_length(reason) <= 255),
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'processed')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    -- A refund refunds a payment of its own merchant.
    FOREIGN KEY (payment_id, merchant_id) REFERENCES payments (id, merchant_id),
    CHECK ((status = 'processed') = (processed_at IS NOT NULL))
);
-- A payment's refunds: the list (newest first) and the sum under the limit.
CREATE INDEX refunds_payment_created ON refunds (payment_id, merchant_id, created_at DESC, id DESC);

-- +goose Down
DROP TABLE refunds;
ALTER TABLE payments DROP CONSTRAINT payments_id_merchant_id_key;
