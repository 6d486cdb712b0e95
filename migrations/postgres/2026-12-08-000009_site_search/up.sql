-- Site listing at scale: sites are listed by name, then site key, compared byte by byte
-- (COLLATE "C", whatever the database's collation), and searched by any 3 characters of either.
-- See src/store/site_search.rs.

-- Trigram indexes (pg_trgm, shipped with PostgreSQL's contrib and trusted, so the owner of the
-- database may create it): a search for 3 or more characters looks its sites up through them
-- instead of reading every row.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- The listing order, for pages that walk it from a cursor and for the 1-2 character prefixes,
-- which are ranges of it. With `id` and `enabled` included, a walk reads only the index (an
-- index-only scan wherever the visibility map allows).
CREATE INDEX sites_by_name ON sites (name COLLATE "C", site_key COLLATE "C") INCLUDE (id, enabled);

CREATE INDEX sites_name_trigrams ON sites USING gin (name gin_trgm_ops);
CREATE INDEX sites_key_trigrams ON sites USING gin (site_key gin_trgm_ops);
