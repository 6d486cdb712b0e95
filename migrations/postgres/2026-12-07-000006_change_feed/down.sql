DROP TABLE cache_leases;
DROP SEQUENCE change_seq;
