-- +goose Up
-- A busy table's lock is waited for 1 s at most, as in 00017 (db/migrate.go
-- runs the migration again later).
SET LOCAL lock_timeout = '1s';
CREATE TABLE orders (
    id          text PRIMARY KEY CHECK (id ~ '^order_[A-Za-z0-9]{16}$'),
    merchant_id uuid NOT NULL REFERENCES merchants (id),
    amount      bigint NOT NULL CHECK (amount >= 100),
    currency    text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    receipt     text CHECK (char_length(receipt) <= 40),
    notes       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(notes) = 'object'),
    status      text NOT NULL DEFAULT 'created' CHECK (status IN ('created', 'paid')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- The target of payments' (order_id, merchant_id) foreign key.
    UNIQUE (id, merchant_id)
);
CREATE INDEX orders_merchant_created ON orders (merchant_id, created_at DESC, id DESC);

-- Only the card's network and last four digits are kept: the full number and
-- the CVV never reach the database.
CREATE TABLE payments (
    id                text PRIMARY KEY CHECK (id ~ '^pay_[A-Za-z0-9]{16}$'),
    order_id          text NOT NULL,
    merchant_id       uuid NOT NULL REFERENCES merchants (id),
    amount            bigint NOT NULL CHECK (amount > 0),
    currency          text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    method            text NOT NULL CHECK (method IN ('upi', 'card')),
    vpa               text,
    card_network      text CHECK (card_network IN ('visa', 'mastercard', 'amex', 'rupay', 'unknown')),
    card_last4        text CHECK (card_last4 ~ '^[0-9]{4}$'),
    status            text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'success', 'failed')),
    captured          boolean NOT NULL DEFAULT false,
    amount_refunded   bigint NOT NULL DEFAULT 0,
    error_code        text,
    error_description text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- A payment pays an order of its own merchant.
    FOREIGN KEY (order_id, merchant_id) REFERENCES orders (id, merchant_id),
    CHECK (CASE method WHEN 'upi' THEN vpa IS NOT NULL AND card_network IS NULL AND card_last4 IS NULL
                       ELSE vpa IS NULL AND card_network IS NOT NULL AND card_last4 IS NOT NULL END),
    CHECK (NOT captured OR status = 'success'),
    CHECK (amount_refunded BETWEEN 0 AND amount),
    CHECK ((status = 'failed') = (error_code IS NOT NULL))
);
-- The backstop of "one successful payment per order"; the order row lock
-- taken by payment creation and by the worker is what normally keeps it.
CREATE UNIQUE INDEX payments_one_success_per_order ON payments (order_id) WHERE status = 'success';
-- The list queries: all, by status, by order; newest first.
CREATE INDEX payments_merchant_created ON payments (merchant_id, created_at DESC, id DESC);
CREATE INDEX payments_merchant_status_created ON payments (merchant_id, status, created_at DESC, id DESC);
CREATE INDEX payments_merchant_order_created ON payments (merchant_id, order_id, created_at DESC, id DESC);

-- +goose Down
DROP TABLE payments;
DROP TABLE orders;
