-- Sites, their token slots and each slot's append-only history.
-- Secrets are never stored in usable form: *_digest columns hold HMAC-SHA256 under the server
-- secret, sealed_value holds AES-256-GCM ciphertext (see src/crypto.rs and docs/security.md).

CREATE TABLE sites (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site_key TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    auth_key_digest BLOB NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT 1,
    created_at TIMESTAMP NOT NULL
);

-- The 10-token limit (src/domain/slots.rs) holds under concurrency because a site's tokens occupy
-- numbered slots 0..9 and (site_id, slot) is unique: there is no eleventh slot to insert into.
-- Slot 0 is the primary token, the only one whose value is kept (sealed) to be handed back.
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id INTEGER NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    slot INTEGER NOT NULL CHECK (slot BETWEEN 0 AND 9),
    description TEXT NOT NULL,
    value_digest BLOB NOT NULL UNIQUE,
    sealed_value BLOB,
    value_hint TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    generated_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    expires_at TIMESTAMP,
    scope TEXT,
    UNIQUE (site_id, slot),
    CHECK ((slot = 0) = (sealed_value IS NOT NULL))
);

CREATE TABLE token_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_id INTEGER NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    occurred_at TIMESTAMP NOT NULL,
    event TEXT NOT NULL
        CHECK (event IN ('created', 'validated', 'invalidated', 'regenerated', 'description_changed')),
    actor_kind TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    -- For created/regenerated: the digest of the value minted then, so a retired value is still
    -- recognised as this slot's (a repeated invalidation of it is a harmless 200).
    value_digest BLOB,
    detail TEXT
);

CREATE INDEX token_events_by_token ON token_events (token_id, id);
CREATE INDEX token_events_by_value ON token_events (value_digest);
