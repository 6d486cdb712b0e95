ALTER TABLE admins DROP COLUMN previous_secret_valid_until;
ALTER TABLE admins DROP COLUMN previous_secret_digest;
ALTER TABLE resource_servers DROP COLUMN previous_secret_valid_until;
ALTER TABLE resource_servers DROP COLUMN previous_secret_digest;
