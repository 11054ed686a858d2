-- +goose NO TRANSACTION
-- +goose Up
-- Outside a transaction, so that the indexes are dropped CONCURRENTLY: a
-- plain DROP INDEX would wait for every open transaction on the table while
-- holding up every payment's webhook log behind it.
--
-- The hourly prune finds the oldest webhook logs and attempts by their
-- primary keys instead of by two indexes that every delivery wrote to: a
-- log's id is a UUIDv7 of its creation (webhooks.newLog), and an
-- attempt's identity grows with each insert, so both keys order their
-- table by age (webhooks.PruneWorker). Each index took an entry at a log's
-- insert, another at its record (a status change is never a HOT update),
-- and one per attempt: six per payment, for a job that runs once an hour.
DROP INDEX CONCURRENTLY IF EXISTS webhook_logs_created;
DROP INDEX CONCURRENTLY IF EXISTS webhook_attempts_attempted;

-- A key is claimed with an empty answer, and answered (its status and body
-- set) in the same transaction. The answer's UPDATE changes no indexed
-- column, so it can be HOT, with no new entry in the key's two indexes,
-- where its page has room for the row grown by the body: a response is
-- several times the claim's size, so the claims leave most of each page
-- free. The pages end up as full as before, of answered keys.
ALTER TABLE idempotency_keys SET (fillfactor = 20);

-- +goose Down
ALTER TABLE idempotency_keys RESET (fillfactor);
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_attempts_attempted ON webhook_attempts (attempted_at);
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_logs_created ON webhook_logs (created_at);
