DROP TRIGGER sites_search_delete;
DROP TRIGGER sites_search_rename;
DROP TRIGGER sites_search_insert;
DROP TABLE sites_search;
DROP INDEX sites_by_name;
