-- Failed client authentications counted by every node together (the throttle's pair and address
-- counts, domain/throttle.rs): each node adds what it counted about once a second and reads the
-- others' counts back. key is the throttle's own encoding of a pair (kind, keyed hash of the
-- client id, address) or an address; never a client id in clear.
CREATE TABLE throttle_failures (
    key BLOB PRIMARY KEY,
    window_start TIMESTAMP NOT NULL,
    failures INTEGER NOT NULL CHECK (failures > 0),
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX throttle_failures_updated_at ON throttle_failures (updated_at);
