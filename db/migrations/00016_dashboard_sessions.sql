-- +goose Up
-- A busy table's lock is waited for 1 s at most, as in 00017 (db/migrate.go
-- runs the migration again later).
SET LOCAL lock_timeout = '1s';
-- Dashboard sign-in sessions. The cookie holds a random 256-bit token; only
-- its SHA-256 is kept here, so reading this table does not let anyone sign
-- in. A row is the session: deleting it (sign-out) ends it at once.
CREATE TABLE dashboard_sessions (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    merchant_id uuid NOT NULL REFERENCES merchants (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
-- Sign-in prunes the merchant's expired sessions.
CREATE INDEX dashboard_sessions_merchant_expires ON dashboard_sessions (merchant_id, expires_at);

-- +goose Down
DROP TABLE dashboard_sessions;
