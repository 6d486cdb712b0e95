DROP TABLE admin_tokens;
DROP TABLE admin_sites;
DROP TABLE admins;
