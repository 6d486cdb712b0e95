-- Retired tokens have no slot to go back to: they and their history are deleted.
CREATE TABLE saved_tokens AS SELECT * FROM tokens WHERE retired_at IS NULL;
CREATE TABLE saved_token_events AS
    SELECT token_events.* FROM token_events
    JOIN tokens ON tokens.id = token_events.token_id AND tokens.retired_at IS NULL;
CREATE TABLE saved_token_audiences AS
    SELECT token_audiences.* FROM token_audiences
    JOIN tokens ON tokens.id = token_audiences.token_id AND tokens.retired_at IS NULL;
DROP TABLE token_events;
DROP TABLE token_audiences;
DROP TABLE tokens;

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
    audience_restricted BOOLEAN NOT NULL DEFAULT 0
        CHECK (slot <> 0 OR NOT audience_restricted),
    UNIQUE (site_id, slot),
    CHECK ((slot = 0) = (sealed_value IS NOT NULL))
);

INSERT INTO tokens SELECT id, site_id, slot, description, value_digest, sealed_value, value_hint,
    active, generated_at, last_used_at, expires_at, scope, audience_restricted FROM saved_tokens;

CREATE TABLE token_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_id INTEGER NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    occurred_at TIMESTAMP NOT NULL,
    event TEXT NOT NULL
        CHECK (event IN ('created', 'validated', 'invalidated', 'regenerated', 'description_changed')),
    actor_kind TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    value_digest BLOB,
    detail TEXT
);

INSERT INTO token_events SELECT id, token_id, occurred_at, event, actor_kind, actor_name,
    value_digest, detail FROM saved_token_events;

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
