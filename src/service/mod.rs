//! Use cases, one per file: load, decide with `domain`, persist through `store`.
//!
//! Services take plain values (parsed requests, `now`) and return plain values, so their tests
//! never build an HTTP request. They run synchronously; the HTTP layer calls them inside
//! `web::block` because every one of them may wait on the database. The exceptions are the
//! memory-only entry points `introspect::introspect_from_memory` and
//! `token_grant::issue_from_memory`, which the HTTP worker calls itself (see `cache::Reach`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::crypto::{Keys, RandomnessUnavailable, UnsealFailed};
use crate::domain::admin::AdminRefusal;
use crate::domain::audit::ActorKind;
use crate::domain::oauth_error::OAuthError;
use crate::domain::site::NameError;
use crate::domain::throttle::{Throttle, Throttled};
use crate::domain::token_policy::TokenPolicy;
use crate::store::{Store, StoreError};

pub mod admins;
pub mod audit;
pub mod background;
pub mod backups;
mod cache;
mod client_auth;
pub mod introspect;
pub mod primary_token;
pub mod resource_servers;
pub mod site_tokens;
pub mod sites;
pub mod token_grant;
pub mod usage;

pub use client_auth::authenticate_site;

/// What every use case needs: the database, the keys derived from the server secret, the
/// operator's token policy, and the introspection and token-endpoint caches (which stay empty in
/// CLI commands).
#[derive(Clone, Debug)]
pub struct Context {
    pub store: Store,
    pub keys: Arc<Keys>,
    pub introspection: Arc<introspect::Introspection>,
    pub grants: Arc<token_grant::GrantCaches>,
    pub counters: Arc<Counters>,
    pub policy: Arc<TokenPolicy>,
    /// Failed client authentications, per (client id, address) pair and per address
    /// (`domain::throttle`).
    pub throttle: Arc<Throttle>,
    /// Audit events noted on the request path, waiting for the background runner.
    pub audit: Arc<audit::AuditTrail>,
    /// Asks the background runner for work early (`background`).
    pub background: Arc<background::Wakeup>,
}

/// Counts of token lifecycle events since start, for metrics.
#[derive(Debug, Default)]
pub struct Counters {
    minted: AtomicU64,
    invalidated: AtomicU64,
    /// Failed client authentications by kind of client: sites, resource servers, admins.
    auth_failures: [AtomicU64; 3],
}

impl Counters {
    pub fn minted(&self) -> u64 {
        self.minted.load(Ordering::Relaxed)
    }

    pub fn invalidated(&self) -> u64 {
        self.invalidated.load(Ordering::Relaxed)
    }

    fn count_minted(&self) {
        self.minted.fetch_add(1, Ordering::Relaxed);
    }

    fn count_invalidated(&self) {
        self.invalidated.fetch_add(1, Ordering::Relaxed);
    }

    /// Failed client authentications of `kind` (`site`, `resource_server` or `admin`) since start.
    pub fn auth_failures(&self, kind: ActorKind) -> u64 {
        Self::auth_failure_slot(kind)
            .map_or(0, |slot| self.auth_failures[slot].load(Ordering::Relaxed))
    }

    fn count_auth_failure(&self, kind: ActorKind) {
        if let Some(slot) = Self::auth_failure_slot(kind) {
            self.auth_failures[slot].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn auth_failure_slot(kind: ActorKind) -> Option<usize> {
        match kind {
            ActorKind::Site => Some(0),
            ActorKind::ResourceServer => Some(1),
            ActorKind::Admin => Some(2),
            ActorKind::Operator | ActorKind::System => None,
        }
    }
}

impl ServiceError {
    /// Whether the request failed because the database is unreachable or busy for now
    /// (`StoreError::is_unavailable`): worth a retry, not a bug.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ServiceError::Store(store) if store.is_unavailable())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is refused for a reason the client may be told (RFC 6749 5.2 and friends).
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// The admin API refuses the action (not found, limit reached, invalid field…).
    #[error(transparent)]
    Admin(#[from] AdminRefusal),
    /// Too many failed authentications for this client id or from this address: refused
    /// unchecked (`domain::throttle`).
    #[error(transparent)]
    Throttled(#[from] Throttled),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Randomness(#[from] RandomnessUnavailable),
    /// A stored primary token does not open: the server secret is not the one it was sealed with.
    #[error(transparent)]
    Unseal(#[from] UnsealFailed),
    #[error("no site has the key {0}")]
    UnknownSite(String),
    #[error("no admin has the client id {0}")]
    UnknownAdmin(String),
    /// An operator's admin command is inconsistent (role and sites, a taken name).
    #[error("{0}")]
    AdminSetup(&'static str),
    #[error("no resource server has the client id {0}")]
    UnknownResourceServer(String),
    /// `resource-server unassign` on a resource server that is not limited to sites.
    #[error(
        "resource server {0} sees every site, so no site can be unassigned; assign sites to \
         limit it to them"
    )]
    NotSiteLimited(String),
    #[error("invalid name: {0}")]
    InvalidName(#[from] NameError),
    #[error("{path} exists; use --force to replace it", path = .0.display())]
    BackupExists(std::path::PathBuf),
    #[error("{path}: {error}", path = .0.display(), error = .1)]
    BackupFile(std::path::PathBuf, std::io::Error),
    /// A bug: an internal assumption did not hold.
    #[error("internal invariant violated: {0}")]
    Invariant(&'static str),
}
