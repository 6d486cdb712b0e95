//! Token introspection (RFC 7662): the hot path. Resource servers call it on every API request.
//!
//! Cost of the common case with the cache on: one keyed hash of the client secret, one of the
//! token, one change-feed check (SQLite: a comparison of the WAL-index header in shared memory,
//! and `PRAGMA data_version` only after a commit; PostgreSQL: an atomic load), two map lookups,
//! and from memory alone whether the token is meant for this resource server: a binary search of
//! a limited resource server's cached site ids, and for a token with an audience a scan of its at
//! most 20 cached members. Malformed tokens are refused by the format check before any of that
//! touches the database; unknown well-formed ones are cached as unknown.

use std::sync::Arc;

use chrono::{NaiveDateTime, TimeDelta};

use super::cache::{cached, observe_changes, ByDigestPrefix, Reach, StampedCache};
use super::client_auth::{secret_matches, throttled, UNKNOWN_CLIENT_DIGEST};
use super::usage::UsageRecorder;
use super::{Context, ServiceError};
use crate::crypto::Digest;
use crate::domain::audit::ActorKind;
use crate::domain::introspection::{judge, Introspector, KnownToken, Verdict};
use crate::domain::oauth_error::OAuthError;
use crate::domain::request::IntrospectionRequest;
use crate::domain::rotation::SecretDigests;
use crate::domain::secret::Secret;
use crate::domain::throttle::Origin;
use crate::domain::token::{self, SecretKind};
use crate::store::ChangeTag;

/// Caches for introspection; `None` caches mean every check reads the database.
#[derive(Debug)]
pub struct Introspection {
    tokens: Option<StampedCache<Digest, Option<Arc<KnownToken>>, ByDigestPrefix>>,
    /// Shared entries: a hit clones a pointer, not the digest or the site limit.
    resource_servers: Option<StampedCache<String, Option<Arc<KnownResourceServer>>>>,
    pub usage: UsageRecorder,
}

/// A resource server as introspection keeps it: what authenticates it, and what it may see.
#[derive(Debug)]
struct KnownResourceServer {
    secrets: SecretDigests,
    introspector: Introspector,
}

impl Introspection {
    pub fn new(cache_enabled: bool, capacity: usize, usage_resolution: TimeDelta) -> Self {
        Self {
            tokens: cache_enabled.then(|| StampedCache::new(capacity)),
            resource_servers: cache_enabled.then(|| StampedCache::new(capacity.min(10_000))),
            usage: UsageRecorder::new(usage_resolution),
        }
    }

    /// (hits, misses) of the token cache, for metrics.
    /// Whether answers are cached at all (`--introspection-cache`, which covers every cache).
    pub fn caches_on(&self) -> bool {
        self.tokens.is_some()
    }

    pub fn cache_counts(&self) -> (u64, u64) {
        self.tokens.as_ref().map_or((0, 0), StampedCache::counts)
    }
}

/// RFC 7662 2.1-2.3: authenticates the resource server, then judges the token. May wait on the
/// database: run it off the async executor.
pub fn introspect(
    context: &Context,
    request: &IntrospectionRequest,
    origin: &Origin,
    now: NaiveDateTime,
) -> Result<Verdict, ServiceError> {
    introspect_within(context, request, origin, now, Reach::Database)?.ok_or(
        ServiceError::Invariant("introspection with database access gave no answer"),
    )
}

/// The same answer as [`introspect`] when memory alone can give it (every lookup a cache hit of
/// the current generation), else `None`. Never waits on the database pool, so it runs on the
/// HTTP worker itself and spares cache hits the thread hop of `web::block`, the largest cost on
/// this path (docs/performance.md). Its only database contact is the change-feed check
/// (`ChangeFeed::generation_without_waiting`), which on SQLite reads shared memory, asks the
/// feed's own connection only after a commit, and gives up rather than wait while this process
/// adopts its own usage flush.
pub fn introspect_from_memory(
    context: &Context,
    request: &IntrospectionRequest,
    origin: &Origin,
    now: NaiveDateTime,
) -> Result<Option<Verdict>, ServiceError> {
    introspect_within(context, request, origin, now, Reach::MemoryOnly)
}

/// Behind the throttle as a whole: the change-feed check and the resource-server lookup query
/// before the secret is checked.
fn introspect_within(
    context: &Context,
    request: &IntrospectionRequest,
    origin: &Origin,
    now: NaiveDateTime,
    reach: Reach,
) -> Result<Option<Verdict>, ServiceError> {
    throttled(
        context,
        ActorKind::ResourceServer,
        &request.credentials.client_id,
        origin,
        now,
        || judge_request(context, request, now, reach),
    )
}

fn judge_request(
    context: &Context,
    request: &IntrospectionRequest,
    now: NaiveDateTime,
    reach: Reach,
) -> Result<Option<Verdict>, ServiceError> {
    let caches = &context.introspection;
    let observed = observe_changes(&context.store, caches.tokens.is_some())?;
    let credentials = &request.credentials;
    let Some(resource_server) = cached(
        caches.resource_servers.as_ref(),
        observed,
        reach,
        credentials.client_id.as_str(),
        |_| vec![ChangeTag::resource_server(&credentials.client_id)],
        || {
            let access = context
                .store
                .resource_server_access(&credentials.client_id)?;
            Ok(access.map(|access| {
                Arc::new(KnownResourceServer {
                    secrets: access.secrets,
                    introspector: Introspector::new(access.id, access.site_ids),
                })
            }))
        },
    )?
    else {
        return Ok(None);
    };
    let resource_server = authenticate(
        context,
        resource_server.as_deref(),
        &credentials.secret,
        now,
    )?;

    match token::recognise(request.token.expose()) {
        Ok(SecretKind::PrimaryToken | SecretKind::SecondaryToken) => {}
        _ => return Ok(Some(Verdict::Inactive)),
    }
    let digest = context.keys.token_digest(request.token.expose());
    let Some(known) = cached(
        caches.tokens.as_ref(),
        observed,
        reach,
        digest.as_slice(),
        |known| depends_on(&digest, known.as_deref()),
        || {
            let facts = context.store.token_facts(&digest)?;
            Ok(facts.map(|facts| Arc::new(KnownToken::new(facts))))
        },
    )?
    else {
        return Ok(None);
    };
    let verdict = judge(known, &resource_server.introspector, now);
    if let Verdict::Active(token) = &verdict {
        let batch_full = caches
            .usage
            .record(token.facts.token_id, token.facts.generated_at, now);
        if batch_full {
            context.background.request_usage_flush();
        }
    }
    Ok(Some(verdict))
}

/// What an answer about the token with this digest depends on: the token's row (or its absence),
/// its site's (name, enabled), and the resource servers of its audience (a deleted one leaves it).
fn depends_on(digest: &[u8], known: Option<&KnownToken>) -> Vec<ChangeTag> {
    let mut tags = vec![ChangeTag::token(digest)];
    if let Some(known) = known {
        tags.push(ChangeTag::site(known.facts.site_id));
        let audience = known.facts.audience.iter().flatten();
        tags.extend(audience.map(|member| ChangeTag::resource_server(&member.client_id)));
    }
    tags
}

/// Resource servers authenticate like sites do (RFC 6749 2.3.1): one answer for an unknown id and a
/// wrong secret, after the same keyed-hash check; during a rotation's overlap the replaced secret
/// works too. Site credentials are not resource-server credentials, so a site cannot introspect.
fn authenticate<'a>(
    context: &Context,
    known: Option<&'a KnownResourceServer>,
    secret: &Secret,
    now: NaiveDateTime,
) -> Result<&'a KnownResourceServer, ServiceError> {
    let Some(known) = known else {
        context
            .keys
            .verify_client_secret(secret.expose(), &UNKNOWN_CLIENT_DIGEST);
        return Err(OAuthError::invalid_client().into());
    };
    if secret_matches(context, secret, &known.secrets, now) {
        Ok(known)
    } else {
        Err(OAuthError::invalid_client().into())
    }
}
