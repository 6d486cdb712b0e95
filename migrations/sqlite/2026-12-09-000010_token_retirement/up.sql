-- Retiring a non-primary token: it leaves its slot (slot NULL, retired_at set), so the slot is free
-- for a new token while the row, and with it the history, stays. UNIQUE (site_id, slot) ignores
-- NULLs, so any number of retired tokens sit beside the ten slots; the 10-token limit still holds
-- under concurrency exactly as before (src/domain/slots.rs). A retired token is also inactive, so
-- introspection refuses it through the same digest lookup as any inactive token.
--
-- Each history line also records the token's description when it happened (descriptions change).
-- Lines written before this migration get the best the history tells: the description the last
-- `description_changed` before them set, else the token's current one when it never changed, else
-- NULL (unknown).
--
-- SQLite cannot drop a NOT NULL or change a CHECK in place, and migrations run in a transaction
-- with foreign keys on, so the children are saved, the tables rebuilt, and the rows copied back.

CREATE TABLE saved_tokens AS SELECT * FROM tokens;
CREATE TABLE saved_token_events AS SELECT * FROM token_events;
CREATE TABLE saved_token_audiences AS SELECT * FROM token_audiences;
DROP TABLE token_events;
DROP TABLE token_audiences;
DROP TABLE tokens;

-- Slot 0 is the primary token, slots 1 to 9 the others; a retired token has no slot.
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id INTEGER NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    slot INTEGER CHECK (slot BETWEEN 0 AND 9),
    description TEXT NOT NULL,
    value_digest BLOB NOT NULL UNIQUE,
    sealed_value BLOB,
    value_hint TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    generated_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    expires_at TIMESTAMP,
    scope TEXT,
    audience_restricted BOOLEAN NOT NULL DEFAULT 0
        CHECK (slot <> 0 OR NOT audience_restricted),
    retired_at TIMESTAMP,
    UNIQUE (site_id, slot),
    CHECK ((slot = 0) = (sealed_value IS NOT NULL)),
    CHECK ((slot IS NULL) = (retired_at IS NOT NULL)),
    CHECK (retired_at IS NULL OR NOT active)
);

INSERT INTO tokens (id, site_id, slot, description, value_digest, sealed_value, value_hint, active,
                    generated_at, last_used_at, expires_at, scope, audience_restricted)
SELECT id, site_id, slot, description, value_digest, sealed_value, value_hint, active,
       generated_at, last_used_at, expires_at, scope, audience_restricted
FROM saved_tokens;

CREATE TABLE token_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_id INTEGER NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    occurred_at TIMESTAMP NOT NULL,
    event TEXT NOT NULL
        CHECK (event IN ('created', 'validated', 'invalidated', 'regenerated',
                         'description_changed', 'retired')),
    actor_kind TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    -- For created/regenerated: the digest of the value minted then, so a retired value is still
    -- recognised as this slot's (a repeated invalidation of it is a harmless 200).
    value_digest BLOB,
    detail TEXT,
    -- The token's description when this happened.
    description TEXT
);

INSERT INTO token_events (id, token_id, occurred_at, event, actor_kind, actor_name, value_digest,
                          detail)
SELECT id, token_id, occurred_at, event, actor_kind, actor_name, value_digest, detail
FROM saved_token_events;

CREATE INDEX token_events_by_token ON token_events (token_id, id);
CREATE INDEX token_events_by_value ON token_events (value_digest);

CREATE TABLE token_audiences (
    token_id INTEGER NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    resource_server_id INTEGER NOT NULL REFERENCES resource_servers (id) ON DELETE CASCADE,
    PRIMARY KEY (token_id, resource_server_id)
);

INSERT INTO token_audiences SELECT token_id, resource_server_id FROM saved_token_audiences;

CREATE INDEX token_audiences_by_resource_server ON token_audiences (resource_server_id);

DROP TABLE saved_tokens;
DROP TABLE saved_token_events;
DROP TABLE saved_token_audiences;

UPDATE token_events SET description = COALESCE(
    (SELECT changed.detail FROM token_events AS changed
     WHERE changed.token_id = token_events.token_id
       AND changed.event = 'description_changed'
       AND changed.id <= token_events.id
     ORDER BY changed.id DESC LIMIT 1),
    (SELECT tokens.description FROM tokens
     WHERE tokens.id = token_events.token_id
       AND NOT EXISTS (SELECT 1 FROM token_events AS changed
                       WHERE changed.token_id = token_events.token_id
                         AND changed.event = 'description_changed')));
