DROP TABLE token_audiences;
ALTER TABLE tokens DROP COLUMN audience_restricted;
DROP TABLE resource_server_sites;
ALTER TABLE resource_servers DROP COLUMN site_limited;
