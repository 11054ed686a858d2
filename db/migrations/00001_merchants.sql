-- +goose Up
CREATE TABLE merchants (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email               text NOT NULL UNIQUE CHECK (length(email) BETWEEN 3 AND 320),
    api_key             text NOT NULL UNIQUE,
    -- SHA-256 of the API secret: secrets are 190+ bits of randomness, so a
    -- fast hash is enough and keeps authentication cheap.
    api_secret_hash     bytea NOT NULL CHECK (length(api_secret_hash) = 32),
    webhook_url         text NOT NULL DEFAULT '',
    webhook_secret      text NOT NULL,
    webhook_events      text[] NOT NULL DEFAULT '{*}',
    webhook_enabled     boolean NOT NULL DEFAULT true,
    -- During a rotation deliveries are signed with both secrets until this time.
    previous_webhook_secret     text,
    previous_secret_expires_at  timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- One row per running worker process; /health and the job status read the
-- freshest beat.
CREATE TABLE worker_heartbeats (
    worker_id   text PRIMARY KEY,
    hostname    text NOT NULL,
    beat_at     timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE worker_heartbeats;
DROP TABLE merchants;
