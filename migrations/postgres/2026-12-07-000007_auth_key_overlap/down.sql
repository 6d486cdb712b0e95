ALTER TABLE sites DROP COLUMN previous_auth_key_valid_until;
ALTER TABLE sites DROP COLUMN previous_auth_key_digest;
