-- Trust boundaries for resource servers: a resource server may be limited to some sites, and a
-- non-primary token may name the resource servers it is meant for (its audience, RFC 7662 2.2
-- `aud`). Introspection by any other resource server answers {"active": false}.

-- FALSE: the resource server sees the tokens of every site; TRUE: only those of the sites listed
-- in resource_server_sites, and of none once the last of them is unassigned or deleted.
ALTER TABLE resource_servers ADD COLUMN site_limited BOOLEAN NOT NULL DEFAULT 0;

CREATE TABLE resource_server_sites (
    resource_server_id INTEGER NOT NULL REFERENCES resource_servers (id) ON DELETE CASCADE,
    site_id INTEGER NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    PRIMARY KEY (resource_server_id, site_id)
);

CREATE INDEX resource_server_sites_by_site ON resource_server_sites (site_id);

-- FALSE: every resource server may introspect the token; TRUE: only those listed in
-- token_audiences, so a token whose every listed resource server was deleted is refused by all.
-- The primary token (slot 0) never has an audience.
ALTER TABLE tokens ADD COLUMN audience_restricted BOOLEAN NOT NULL DEFAULT 0
    CHECK (slot <> 0 OR NOT audience_restricted);

-- Deleting a resource server removes it from every audience (ON DELETE CASCADE).
CREATE TABLE token_audiences (
    token_id INTEGER NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    resource_server_id INTEGER NOT NULL REFERENCES resource_servers (id) ON DELETE CASCADE,
    PRIMARY KEY (token_id, resource_server_id)
);

CREATE INDEX token_audiences_by_resource_server ON token_audiences (resource_server_id);
