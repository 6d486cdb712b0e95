-- A client-secret rotation with an overlap keeps the replaced secret's keyed digest until
-- previous_secret_valid_until, as sites do for auth keys; both are NULL when the last rotation had
-- none. One UPDATE moves secret_digest here and sets the new one, so a resource server or an admin
-- has one current secret and at most one previous.
ALTER TABLE resource_servers ADD COLUMN previous_secret_digest BLOB;
ALTER TABLE resource_servers ADD COLUMN previous_secret_valid_until TIMESTAMP;
ALTER TABLE admins ADD COLUMN previous_secret_digest BLOB;
ALTER TABLE admins ADD COLUMN previous_secret_valid_until TIMESTAMP;
