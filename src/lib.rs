//! tokenwarden: an OAuth 2.0 authorization server for sites (stores), their integrators and the
//! resource servers their tokens unlock.
//!
//! Imports point down: `http` → `service` → {`domain`, `store`}; `store` may use `domain` types;
//! `domain` knows neither actix nor diesel; `crypto` is the only user of ring, `tls` the only user of
//! rustls. `docs/architecture.md` follows one request through these layers.

pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod http;
pub mod logging;
pub mod server;
pub mod service;
pub mod store;
pub mod tls;
