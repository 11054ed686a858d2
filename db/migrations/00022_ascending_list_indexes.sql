-- +goose NO TRANSACTION
-- +goose Up
-- The lists' indexes in ascending order. A list reads a merchant's newest
-- first, which an ascending index gives as well, scanned backwards. But a
-- descending one takes each new row at the far left of the merchant's
-- range, and PostgreSQL splits such a page in half, so its pages stayed
-- half empty; an ascending one takes it at the right end, where a split
-- leaves the page 90 % full, the index's fill factor
-- (docs/benchmarks-history.md, session 19: one merchant's 200,000 rows in
-- 1,213 pages against 2,168).
-- Each is built beside the old one, concurrently (writes go on), and takes
-- its name. A run stopped half way may leave an "_asc" index beside the old
-- one or in its place, or either invalid: the next run drops any "_asc"
-- index first, and builds again those already done. (Going back to the
-- previous version instead, drop the indexes named "_asc": README.) The
-- refunds' index is left as it is: it is keyed by payment, not by time.

DROP INDEX CONCURRENTLY IF EXISTS orders_merchant_created_asc;
CREATE INDEX CONCURRENTLY orders_merchant_created_asc ON orders (merchant_id, created_at, id);
DROP INDEX CONCURRENTLY IF EXISTS orders_merchant_created;
ALTER INDEX orders_merchant_created_asc RENAME TO orders_merchant_created;

DROP INDEX CONCURRENTLY IF EXISTS payments_merchant_created_asc;
CREATE INDEX CONCURRENTLY payments_merchant_created_asc ON payments (merchant_id, created_at, id);
DROP INDEX CONCURRENTLY IF EXISTS payments_merchant_created;
ALTER INDEX payments_merchant_created_asc RENAME TO payments_merchant_created;

DROP INDEX CONCURRENTLY IF EXISTS payments_merchant_status_created_asc;
CREATE INDEX CONCURRENTLY payments_merchant_status_created_asc ON payments (merchant_id, status, created_at, id);
DROP INDEX CONCURRENTLY IF EXISTS payments_merchant_status_created;
ALTER INDEX payments_merchant_status_created_asc RENAME TO payments_merchant_status_created;

DROP INDEX CONCURRENTLY IF EXISTS payments_merchant_order_created_asc;
CREATE INDEX CONCURRENTLY payments_merchant_order_created_asc ON payments (merchant_id, order_id, created_at, id);
DROP INDEX CONCURRENTLY IF EXISTS payments_merchant_order_created;
ALTER INDEX payments_merchant_order_created_asc RENAME TO payments_merchant_order_created;

DROP INDEX CONCURRENTLY IF EXISTS webhook_logs_merchant_created_asc;
CREATE INDEX CONCURRENTLY webhook_logs_merchant_created_asc ON webhook_logs (merchant_id, created_at, id);
DROP INDEX CONCURRENTLY IF EXISTS webhook_logs_merchant_created;
ALTER INDEX webhook_logs_merchant_created_asc RENAME TO webhook_logs_merchant_created;

DROP INDEX CONCURRENTLY IF EXISTS webhook_logs_merchant_status_asc;
CREATE INDEX CONCURRENTLY webhook_logs_merchant_status_asc ON webhook_logs (merchant_id, status, created_at, id);
DROP INDEX CONCURRENTLY IF EXISTS webhook_logs_merchant_status;
ALTER INDEX webhook_logs_merchant_status_asc RENAME TO webhook_logs_merchant_status;

-- +goose Down

DROP INDEX CONCURRENTLY IF EXISTS orders_merchant_created_desc;
CREATE INDEX CONCURRENTLY orders_merchant_created_desc ON orders (merchant_id, created_at DESC, id DESC);
DROP INDEX CONCURRENTLY IF EXISTS orders_merchant_created;
ALTER INDEX orders_merchant_created_desc RENAME TO orders_merchant_created;

DROP INDEX CONCURRENTLY IF EXISTS payments_merchant_created_desc;
CREATE INDEX CONCURRENTLY payments_merchant_created_desc ON payments (merchant_id, created_at DESC, id DESC);
DROP INDEX CONCURRENTLY IF EXISTS payments_merchant_created;
ALTER INDEX payments_merchant_created_desc RENAME TO payments_merchant_created;

DROP INDEX CONCURRENTLY IF EXISTS payments_merchant_status_created_desc;
CREATE INDEX CONCURRENTLY payments_merchant_status_created_desc ON payments (merchant_id, status, created_at DESC, id DESC);
DROP INDEX CONCURRENTLY IF EXISTS payments_merchant_status_created;
ALTER INDEX payments_merchant_status_created_desc RENAME TO payments_merchant_status_created;

DROP INDEX CONCURRENTLY IF EXISTS payments_merchant_order_created_desc;
CREATE INDEX CONCURRENTLY payments_merchant_order_created_desc ON payments (merchant_id, order_id, created_at DESC, id DESC);
DROP INDEX CONCURRENTLY IF EXISTS payments_merchant_order_created;
ALTER INDEX payments_merchant_order_created_desc RENAME TO payments_merchant_order_created;

DROP INDEX CONCURRENTLY IF EXISTS webhook_logs_merchant_created_desc;
CREATE INDEX CONCURRENTLY webhook_logs_merchant_created_desc ON webhook_logs (merchant_id, created_at DESC, id DESC);
DROP INDEX CONCURRENTLY IF EXISTS webhook_logs_merchant_created;
ALTER INDEX webhook_logs_merchant_created_desc RENAME TO webhook_logs_merchant_created;

DROP INDEX CONCURRENTLY IF EXISTS webhook_logs_merchant_status_desc;
CREATE INDEX CONCURRENTLY webhook_logs_merchant_status_desc ON webhook_logs (merchant_id, status, created_at DESC, id DESC);
DROP INDEX CONCURRENTLY IF EXISTS webhook_logs_merchant_status;
ALTER INDEX webhook_logs_merchant_status_desc RENAME TO webhook_logs_merchant_status;
