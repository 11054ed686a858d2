-- +goose Up
-- An order changes once: to paid, with its payment's success. None of its
-- indexed columns changes, so that update can be HOT (no new entry in any
-- of its three indexes, two of them on random ids, whose leaf pages each
-- payment would otherwise touch again and, after a checkpoint, write whole
-- into the WAL) when the order's page has room for the new version. Pages
-- filled to the brim by inserts have none: 10 % is kept free for it, and
-- pruning reclaims the old versions. Only pages written from now on keep
-- the room; the setting rewrites nothing and blocks no write.
ALTER TABLE orders SET (fillfactor = 90);

-- +goose Down
ALTER TABLE orders RESET (fillfactor);
