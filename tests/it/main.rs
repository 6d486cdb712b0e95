//! Integration tests: the real server over real HTTP, on SQLite and (when configured) PostgreSQL.
//! One test binary with modules, so linking happens once.

mod helpers;
mod token;
