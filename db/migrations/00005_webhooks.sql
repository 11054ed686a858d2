-- +goose Up
-- A busy table's lock is waited for 1 s at most, as in 00017 (db/migrate.go
-- runs the migration again later).
SET LOCAL lock_timeout = '1s';
-- One event for one merchant: the body exactly as signed and sent, and the
-- summary of its delivery. The row and its DeliverWebhook job are inserted by
-- the transaction of the state change that caused the event.
CREATE TABLE webhook_logs (
    id              uuid PRIMARY KEY,   -- also the Standard Webhooks webhook-id
    merchant_id     uuid NOT NULL REFERENCES merchants (id),
    event           text NOT NULL,
    -- bytea, not jsonb (which reorders keys) nor text (which client_encoding
    -- may convert): these bytes are signed and sent on every attempt.
    payload         bytea NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'success', 'failed')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- Which run of the retry schedule is current: a manual retry starts a new
    -- one, and a job of an older run does nothing.
    run             integer NOT NULL DEFAULT 0,
    last_attempt_at timestamptz,
    next_retry_at   timestamptz,
    response_code   integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- The list: newest first, optionally by status or event.
CREATE INDEX webhook_logs_merchant_created ON webhook_logs (merchant_id, created_at DESC, id DESC);
CREATE INDEX webhook_logs_merchant_status ON webhook_logs (merchant_id, status, created_at DESC, id DESC);

-- Every request made for a log, including those answered with a honoured
-- Retry-After, which do not count as attempts.
CREATE TABLE webhook_attempts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    log_id          uuid NOT NULL REFERENCES webhook_logs (id) ON DELETE CASCADE,
    attempted_at    timestamptz NOT NULL,
    response_code   integer,
    response_body   text NOT NULL DEFAULT '',  -- at most the first 1 KiB
    error           text,
    duration_ms     integer NOT NULL
);
CREATE INDEX webhook_attempts_log ON webhook_attempts (log_id, id);

-- +goose Down
DROP TABLE webhook_attempts;
DROP TABLE webhook_logs;
