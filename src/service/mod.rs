//! Use cases, one per file: load, decide with `domain`, persist through `store`.
//!
//! Services take plain values (parsed requests, `now`) and return plain values, so their tests
//! never build an HTTP request. They run synchronously; the HTTP layer calls them inside
//! `web::block` because every one of them may wait on the database.

use std::sync::Arc;

use crate::crypto::{Keys, RandomnessUnavailable, UnsealFailed};
use crate::domain::oauth_error::OAuthError;
use crate::domain::site::SiteNameError;
use crate::store::{Store, StoreError};

mod client_auth;
pub mod primary_token;
pub mod sites;
pub mod token_grant;

pub use client_auth::authenticate_site;

/// What every use case needs: the database and the keys derived from the server secret.
#[derive(Clone, Debug)]
pub struct Context {
    pub store: Store,
    pub keys: Arc<Keys>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is refused for a reason the client may be told (RFC 6749 5.2 and friends).
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Randomness(#[from] RandomnessUnavailable),
    /// A stored primary token does not open: the server secret is not the one it was sealed with.
    #[error(transparent)]
    Unseal(#[from] UnsealFailed),
    #[error("no site has the key {0}")]
    UnknownSite(String),
    #[error("invalid site name: {0}")]
    InvalidSiteName(#[from] SiteNameError),
    /// A bug: an internal assumption did not hold.
    #[error("internal invariant violated: {0}")]
    Invariant(&'static str),
}
