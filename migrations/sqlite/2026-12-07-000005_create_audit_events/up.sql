-- The audit trail: who did what to which credential, from where, and how it ended. Never a secret
-- or token value. Failed client authentications are aggregated: one row per client id and source
-- address per window, with a count and the first (occurred_at) and last (last_at) time.
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at TIMESTAMP NOT NULL,
    actor_kind TEXT NOT NULL
        CHECK (actor_kind IN ('site', 'resource_server', 'admin', 'operator', 'system')),
    actor_id TEXT,
    actor_name TEXT,
    action TEXT NOT NULL,
    target TEXT,
    source_address TEXT,
    outcome TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
    detail TEXT,
    occurrences BIGINT NOT NULL DEFAULT 1,
    last_at TIMESTAMP NOT NULL
);

CREATE INDEX audit_events_by_time ON audit_events (occurred_at, id);
CREATE INDEX audit_events_by_actor ON audit_events (actor_id, occurred_at);
CREATE INDEX audit_events_by_action ON audit_events (action, occurred_at);
-- Retention deletes by the last occurrence.
CREATE INDEX audit_events_by_last_at ON audit_events (last_at);
