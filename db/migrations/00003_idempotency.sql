-- +goose Up
-- A busy table's lock is waited for 1 s at most, as in 00017 (db/migrate.go
-- runs the migration again later).
SET LOCAL lock_timeout = '1s';
-- A remembered response. The row is inserted by the request's own
-- transaction, so it commits together with the object the request created,
-- or not at all; a concurrent repeat blocks on the uncommitted row.
CREATE TABLE idempotency_keys (
    merchant_id     uuid NOT NULL REFERENCES merchants (id),
    route           text NOT NULL,  -- method and path, e.g. "POST /api/v1/payments"
    key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash    bytea NOT NULL,
    status_code     integer NOT NULL,
    response_body   bytea NOT NULL,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, route, key)
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);

-- +goose Down
DROP TABLE idempotency_keys;
