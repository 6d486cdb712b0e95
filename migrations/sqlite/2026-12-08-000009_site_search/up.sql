-- Site listing at scale: sites are listed by name, then site key (byte order, SQLite's BINARY),
-- and searched by any 3 characters of either. See src/store/site_search.rs.

-- The listing order, for pages that walk it from a cursor and for the 1-2 character prefixes,
-- which are ranges of it. `enabled` is in it so that the enabled filter is checked without
-- reading the row.
CREATE INDEX sites_by_name ON sites (name, site_key, enabled);

-- Every run of 3 characters of each site's name and key, case-folded (FTS5's trigram tokenizer):
-- a search for 3 or more characters looks its sites up instead of reading every row. External
-- content: the text stays in `sites`, the index holds only the trigrams. The triggers keep it in
-- step with every insert, rename and delete, whichever program writes.
CREATE VIRTUAL TABLE sites_search USING fts5 (
    name, site_key, content = 'sites', content_rowid = 'id', tokenize = 'trigram'
);
INSERT INTO sites_search (sites_search) VALUES ('rebuild');

CREATE TRIGGER sites_search_insert AFTER INSERT ON sites BEGIN
    INSERT INTO sites_search (rowid, name, site_key) VALUES (new.id, new.name, new.site_key);
END;

-- Only a changed text is re-indexed: updates lock a site's row with a no-op `SET site_key =
-- site_key`, and enabling, disabling or rotating a key changes nothing here.
CREATE TRIGGER sites_search_rename AFTER UPDATE OF name, site_key ON sites
WHEN old.name <> new.name OR old.site_key <> new.site_key BEGIN
    INSERT INTO sites_search (sites_search, rowid, name, site_key)
        VALUES ('delete', old.id, old.name, old.site_key);
    INSERT INTO sites_search (rowid, name, site_key) VALUES (new.id, new.name, new.site_key);
END;

CREATE TRIGGER sites_search_delete AFTER DELETE ON sites BEGIN
    INSERT INTO sites_search (sites_search, rowid, name, site_key)
        VALUES ('delete', old.id, old.name, old.site_key);
END;
