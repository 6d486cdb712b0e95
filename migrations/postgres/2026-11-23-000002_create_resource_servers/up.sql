-- Resource servers: the APIs that introspect site tokens (RFC 7662). Their secrets are stored as
-- HMAC-SHA256 digests under the server secret, like sites' auth keys.
CREATE TABLE resource_servers (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    secret_digest BYTEA NOT NULL,
    created_at TIMESTAMP NOT NULL
);
