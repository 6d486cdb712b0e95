//! Token introspection (RFC 7662): the hot path. Resource servers call it on every API request.
//!
//! Cost of the common case with the cache on: one keyed hash of the client secret, one of the
//! token, one change-feed check (SQLite: `PRAGMA data_version` on a dedicated connection;
//! PostgreSQL: an atomic load) and two map lookups. Malformed tokens are refused by the format
//! check before any of that touches the database; unknown well-formed ones are cached as unknown.

use std::hash::Hash;

use chrono::NaiveDateTime;

use super::cache::GenerationCache;
use super::usage::UsageRecorder;
use super::{Context, ServiceError};
use crate::crypto::Digest;
use crate::domain::introspection::{judge, ActiveToken, TokenFacts};
use crate::domain::oauth_error::OAuthError;
use crate::domain::request::IntrospectionRequest;
use crate::domain::secret::Secret;
use crate::domain::token::{self, SecretKind};
use crate::store::StoreError;

/// Caches for introspection; `None` caches mean every check reads the database.
#[derive(Debug)]
pub struct Introspection {
    tokens: Option<GenerationCache<Digest, Option<TokenFacts>>>,
    resource_servers: Option<GenerationCache<String, Option<Digest>>>,
    pub usage: UsageRecorder,
}

impl Introspection {
    pub fn new(cache_enabled: bool, capacity: usize) -> Self {
        Self {
            tokens: cache_enabled.then(|| GenerationCache::new(capacity)),
            resource_servers: cache_enabled.then(|| GenerationCache::new(capacity.min(10_000))),
            usage: UsageRecorder::default(),
        }
    }

    /// (hits, misses) of the token cache, for metrics.
    pub fn cache_counts(&self) -> (u64, u64) {
        self.tokens.as_ref().map_or((0, 0), GenerationCache::counts)
    }
}

/// What the handler needs: the answer, and whether the usage batch wants flushing now.
#[derive(Debug)]
pub struct Introspected {
    pub active: Option<ActiveToken>,
    pub flush_due: bool,
}

/// RFC 7662 2.1-2.3: authenticates the resource server, then judges the token.
pub fn introspect(
    context: &Context,
    request: &IntrospectionRequest,
    now: NaiveDateTime,
) -> Result<Introspected, ServiceError> {
    // Read once, before any query: answers cached under an older generation are stale. Without
    // caches there is nothing to check (and on SQLite no `PRAGMA` to pay for).
    let caches = &context.introspection;
    let changes = context.store.changes();
    let generation = if caches.tokens.is_some() && changes.is_live() {
        Some(changes.generation()?)
    } else {
        None
    };
    let credentials = &request.credentials;
    let stored_secret = cached(
        caches.resource_servers.as_ref(),
        generation,
        credentials.client_id.clone(),
        || {
            context
                .store
                .resource_server_secret_digest(&credentials.client_id)
        },
    )?;
    authenticate(context, stored_secret.as_deref(), &credentials.secret)?;

    let inactive = Introspected {
        active: None,
        flush_due: false,
    };
    match token::recognise(request.token.expose()) {
        Ok(SecretKind::PrimaryToken | SecretKind::SecondaryToken) => {}
        _ => return Ok(inactive),
    }
    let digest = context.keys.token_digest(request.token.expose());
    let facts = cached(caches.tokens.as_ref(), generation, digest.clone(), || {
        context.store.token_facts(&digest)
    })?;
    let Some(active) = facts.and_then(|facts| judge(&facts, now)) else {
        return Ok(inactive);
    };
    let flush_due = caches.usage.record(active.token_id, now);
    Ok(Introspected {
        active: Some(active),
        flush_due,
    })
}

/// Answers from `cache` when an entry of this `generation` exists, else loads and fills it.
/// Without a cache or a live change feed (`generation` is `None`) it always loads.
fn cached<K: Hash + Eq, V: Clone>(
    cache: Option<&GenerationCache<K, V>>,
    generation: Option<u64>,
    key: K,
    load: impl FnOnce() -> Result<V, StoreError>,
) -> Result<V, ServiceError> {
    let (Some(cache), Some(generation)) = (cache, generation) else {
        return Ok(load()?);
    };
    if let Some(value) = cache.get(&key, generation) {
        return Ok(value);
    }
    let value = load()?;
    cache.put(key, generation, value.clone());
    Ok(value)
}

/// Resource servers authenticate like sites do (RFC 6749 2.3.1): one answer for an unknown id and a
/// wrong secret, after the same keyed-hash check. Site credentials are not resource-server
/// credentials, so a site cannot introspect.
fn authenticate(
    context: &Context,
    stored_digest: Option<&[u8]>,
    secret: &Secret,
) -> Result<(), ServiceError> {
    let digest = stored_digest.unwrap_or(&super::client_auth::UNKNOWN_CLIENT_DIGEST);
    if context.keys.verify_client_secret(secret.expose(), digest) && stored_digest.is_some() {
        Ok(())
    } else {
        Err(OAuthError::invalid_client().into())
    }
}
