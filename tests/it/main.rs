//! Integration tests: the real server over real HTTP, on SQLite and (when configured) PostgreSQL.
//! One test binary with modules, so linking happens once.

mod admin_api;
mod admin_cli;
mod admin_page;
mod audience;
mod audit;
mod auth_key_rotation;
mod bad_input;
mod cli;
mod client_library;
mod concurrency;
mod config_file;
mod discovery;
mod exactness;
mod examples;
mod faults;
mod helpers;
mod introspection;
mod invalidate;
mod logs;
mod openapi;
mod platform_admins;
mod platform_api;
mod platform_resource_servers;
mod request_id;
mod resource_server_limits;
mod revocation;
mod secrets_at_rest;
mod shutdown;
mod site_search;
mod throttle;
mod tls;
mod token;
