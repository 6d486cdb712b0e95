-- Numbers the writes that can change a cached answer, in commit order (each takes the number
-- under a transaction-level advisory lock held until its commit); the number and what changed
-- travel in the write's NOTIFY.
CREATE SEQUENCE change_seq;

-- One row per node whose caches may answer: it may do so only until lease_until, and it has
-- applied every change up to applied_seq. A write's answer waits until every other node with a
-- live lease has applied it. UNLOGGED: after a database crash every lease is void anyway.
CREATE UNLOGGED TABLE cache_leases (
    node_id TEXT PRIMARY KEY,
    lease_until TIMESTAMPTZ NOT NULL,
    applied_seq BIGINT NOT NULL,
    registered_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
