-- An auth-key rotation with an overlap keeps the replaced key's keyed digest until
-- previous_auth_key_valid_until; both are NULL when the last rotation had none. One UPDATE moves
-- auth_key_digest here and sets the new one, so a site has one current key and at most one
-- previous.
ALTER TABLE sites ADD COLUMN previous_auth_key_digest BLOB;
ALTER TABLE sites ADD COLUMN previous_auth_key_valid_until TIMESTAMP;
