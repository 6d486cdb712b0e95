-- The pg_trgm extension stays: it may have been there before, and other objects may use it.
DROP INDEX sites_key_trigrams;
DROP INDEX sites_name_trigrams;
DROP INDEX sites_by_name;
