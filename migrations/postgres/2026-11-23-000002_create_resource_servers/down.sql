DROP TABLE resource_servers;
