-- Admin principals (platform admins and site managers), the sites each site manager may manage,
-- and the short-lived admin tokens that unlock the admin API. Secrets and token values are stored
-- only as HMAC-SHA256 digests under the server secret.

CREATE TABLE admins (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id TEXT NOT NULL UNIQUE,
    -- Unique: history names admins by name, so two admins must never share one.
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('platform-admin', 'site-manager')),
    secret_digest BLOB NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT 1,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE admin_sites (
    admin_id INTEGER NOT NULL REFERENCES admins (id) ON DELETE CASCADE,
    site_id INTEGER NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    PRIMARY KEY (admin_id, site_id)
);

CREATE TABLE admin_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    admin_id INTEGER NOT NULL REFERENCES admins (id) ON DELETE CASCADE,
    value_digest BLOB NOT NULL UNIQUE,
    issued_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);

CREATE INDEX admin_tokens_by_expiry ON admin_tokens (expires_at);
CREATE INDEX admin_sites_by_site ON admin_sites (site_id);
