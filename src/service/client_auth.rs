//! Client authentication of sites (RFC 6749 2.3.1), the secret check every client authentication
//! shares ([`secret_matches`]: current secret, or the replaced one during a rotation's overlap),
//! and [`throttled`], which puts every client authentication (sites, admins, resource servers)
//! behind the brute-force throttle.

use std::sync::Arc;

use chrono::{NaiveDateTime, TimeDelta};

use super::cache::{cached, Observed, Reach};
use super::{Context, ServiceError};
use crate::domain::audit::{
    looks_like_client_id, Action, ActorKind, AuditActor, AuditEvent, Outcome,
};
use crate::domain::oauth_error::{OAuthError, OAuthErrorCode};
use crate::domain::rotation::SecretDigests;
use crate::domain::secret::Secret;
use crate::domain::site::Site;
use crate::domain::throttle::{Origin, SharedKey, SharedWindow};
use crate::domain::token::{self, SecretKind};
use crate::store::{ChangeTag, FailureCount, SiteAuthentication, StoreError};

/// Checks a site key and auth key at `now`: the current key, or while an overlap runs the key the
/// last rotation replaced. Unknown site, wrong key and disabled site all fail with the same
/// `invalid_client` after the same keyed-hash check, so neither the answer nor its timing tells
/// which site keys exist. Always reads the database.
pub fn authenticate_site(
    context: &Context,
    site_key: &str,
    auth_key: &Secret,
    now: NaiveDateTime,
) -> Result<Site, ServiceError> {
    let found = context.store.site_authentication(site_key)?.map(Arc::new);
    let found = verify(context, found, auth_key, now)?;
    Ok(Arc::unwrap_or_clone(found).site)
}

/// The same check as [`authenticate_site`] through the site cache of `context.grants`, as
/// `observed` (see `cache::observe_changes`). `Ok(None)` only with [`Reach::MemoryOnly`], when the
/// site is not cached. Unknown site keys are cached as unknown, until a site takes the key. A
/// cached entry holds the replaced key's end, not a verdict: the overlap is judged against `now`
/// on every request, so it ends on time for cached sites too.
pub(super) fn authenticate_site_cached(
    context: &Context,
    site_key: &str,
    auth_key: &Secret,
    now: NaiveDateTime,
    observed: Option<Observed<'_>>,
    reach: Reach,
) -> Result<Option<Arc<SiteAuthentication>>, ServiceError> {
    let found = cached(
        context.grants.sites.as_ref(),
        observed,
        reach,
        site_key,
        |_| vec![ChangeTag::site_key(site_key)],
        || Ok(context.store.site_authentication(site_key)?.map(Arc::new)),
    )?;
    match found {
        Some(found) => verify(context, found, auth_key, now).map(Some),
        None => Ok(None),
    }
}

/// One constant-time HMAC check, or two while the site's replaced key still works at `now` and
/// the presented key is not the current one.
fn verify(
    context: &Context,
    found: Option<Arc<SiteAuthentication>>,
    auth_key: &Secret,
    now: NaiveDateTime,
) -> Result<Arc<SiteAuthentication>, ServiceError> {
    let Some(found) = found else {
        context
            .keys
            .verify_client_secret(auth_key.expose(), &UNKNOWN_CLIENT_DIGEST);
        return Err(OAuthError::invalid_client().into());
    };
    let secret_matches = secret_matches(context, auth_key, &found.auth_keys, now);
    if !secret_matches || !found.site.enabled {
        log::info!(
            "client authentication failed for site {} ({})",
            found.site.site_key,
            if secret_matches {
                "site disabled"
            } else {
                "wrong auth key"
            }
        );
        return Err(OAuthError::invalid_client().into());
    }
    Ok(found)
}

/// Whether `presented` is the client's current secret or, during a rotation's overlap, the one it
/// replaced: one constant-time keyed-hash check, a second only while the replaced secret still
/// works at `now` and the first did not match.
pub(super) fn secret_matches(
    context: &Context,
    presented: &Secret,
    digests: &SecretDigests,
    now: NaiveDateTime,
) -> bool {
    let matches = |digest: &[u8]| {
        context
            .keys
            .verify_client_secret(presented.expose(), digest)
    };
    matches(&digests.current) || digests.previous_at(now).is_some_and(matches)
}

/// A new client secret of `kind` (a site's auth key, a resource server's or an admin's secret),
/// in clear only in the return value, and the keyed digest that is all the store keeps of it.
pub(super) fn new_client_secret(
    context: &Context,
    kind: SecretKind,
) -> Result<(Secret, Vec<u8>), ServiceError> {
    let secret = token::mint(kind, &crate::crypto::random_bytes()?);
    let digest = context.keys.client_secret_digest(secret.expose());
    Ok((secret, digest))
}

/// A digest no secret matches, checked against when the client id is unknown.
pub(super) const UNKNOWN_CLIENT_DIGEST: [u8; 32] = [0; 32];

/// Runs `work`, a use case that authenticates `client_id` (a client of `kind`), behind the
/// brute-force throttle (`domain::throttle`): refused with [`ServiceError::Throttled`] before `work`
/// runs, so before any query, when the (client id, address) pair or the address is locked. An
/// `invalid_client` answer of `work` counts as a failure (in the throttle, the metrics and the
/// audit trail's aggregate); a success trusts the pair. Locks and alarms are logged and noted in
/// the audit trail.
pub(super) fn throttled<T: Authenticated>(
    context: &Context,
    kind: ActorKind,
    client_id: &str,
    origin: &Origin,
    now: NaiveDateTime,
    work: impl FnOnce() -> Result<T, ServiceError>,
) -> Result<T, ServiceError> {
    let admitted = context.throttle.admit(client_id, origin)?;
    let outcome = work();
    match &outcome {
        Ok(answer) if answer.authenticated() => context.throttle.record_success(&admitted, origin),
        Ok(_) => {}
        Err(ServiceError::OAuth(refusal)) if refusal.code == OAuthErrorCode::InvalidClient => {
            record_failure(context, kind, client_id, origin, now);
        }
        Err(_) => {}
    }
    outcome
}

/// Hands the failures this node counted to the other nodes through the database, and takes the
/// deployment's counts back (`domain::throttle`, "Across nodes"). The background runner calls it
/// about once a second (`Config::throttle_share_interval`), which bounds how far the nodes' counts
/// lag behind one another. The first call reads every open window (a node that starts learns the locks in
/// force); later ones what changed in the last few seconds.
pub(super) fn share_failure_counts(
    context: &Context,
    now: NaiveDateTime,
) -> Result<(), StoreError> {
    if !context.throttle.shares_counts() {
        return Ok(());
    }
    let at = std::time::Instant::now();
    let window = context.throttle.window();
    let window_delta = TimeDelta::from_std(window).unwrap_or(TimeDelta::MAX);
    let wall = |instant: std::time::Instant| {
        now - TimeDelta::from_std(at.saturating_duration_since(instant)).unwrap_or_default()
    };
    let added: Vec<FailureCount> = context
        .throttle
        .take_unpublished()
        .into_iter()
        .map(|unpublished| FailureCount {
            key: unpublished.key.to_bytes(),
            window_start: wall(unpublished.started),
            failures: i32::try_from(unpublished.failures).unwrap_or(i32::MAX),
        })
        .collect();
    // Counts changed since a little before the previous call: one another node committed just
    // before this call's read began, stamped by a clock a little behind, or a call that ran late,
    // is read again rather than missed. Reading one twice changes nothing.
    let since = if context.throttle.first_share() {
        now - window_delta
    } else {
        now - SHARE_LOOKBACK
    };
    let shared = context
        .store
        .exchange_throttle_failures(&added, window_delta, since, now)?;
    let windows: Vec<SharedWindow> = shared
        .iter()
        .filter_map(|count| {
            Some(SharedWindow {
                key: SharedKey::from_bytes(&count.key)?,
                failures: u32::try_from(count.failures).ok()?,
                age: (now - count.window_start).to_std().unwrap_or_default(),
            })
        })
        .collect();
    context.throttle.merge_shared(&windows, at);
    Ok(())
}

/// How far back each exchange reads the others' changes: several intervals, so one that ran late
/// misses nothing.
const SHARE_LOOKBACK: TimeDelta = TimeDelta::seconds(5);

/// Whether a use case's answer means the client authenticated: a memory-only attempt that missed
/// its cache (`None`) has not checked the secret yet, and must not make its pair trusted.
pub(super) trait Authenticated {
    fn authenticated(&self) -> bool;
}

impl<T> Authenticated for Option<T> {
    fn authenticated(&self) -> bool {
        self.is_some()
    }
}

impl Authenticated for Site {
    fn authenticated(&self) -> bool {
        true
    }
}

impl Authenticated for crate::domain::admin::Admin {
    fn authenticated(&self) -> bool {
        true
    }
}

fn record_failure(
    context: &Context,
    kind: ActorKind,
    client_id: &str,
    origin: &Origin,
    now: NaiveDateTime,
) {
    context.counters.count_auth_failure(kind);
    context
        .audit
        .note_auth_failure(kind, client_id, origin.address, now);
    let failed = context.throttle.record_failure(client_id, origin);
    let window = context.throttle.window().as_secs();
    let shown = loggable(client_id);
    let address = origin
        .address
        .map_or_else(|| "an unknown address".to_string(), |a| a.to_string());
    let locked = |target: String, detail: String| {
        let mut event = AuditEvent::new(
            now,
            AuditActor::system(),
            Action::ThrottleLocked,
            Some(target),
        )
        .from_address(origin.address)
        .with_detail(detail);
        event.outcome = Outcome::Failure;
        event
    };
    if failed.pair_locked {
        log::info!(
            "throttling client id {shown} from {address}: too many failed authentications, \
             locked until its window ends (at most {window} s)"
        );
        context.audit.note(locked(
            shown.to_string(),
            format!(
                "client id from this address locked until its window ends (at most {window} s)"
            ),
        ));
    }
    if let Some(locked_address) = failed.address_locked {
        log::info!(
            "throttling address {locked_address}: too many failed client authentications, \
             locked until its window ends (at most {window} s)"
        );
        context.audit.note(locked(
            locked_address.to_string(),
            format!(
                "address locked until its window ends (at most {window} s), except for clients \
                 that authenticated from it"
            ),
        ));
    }
    if let Some(alarm) = failed.alarm {
        log::warn!(
            "client id {shown} is under attack: {} failed authentications from {} addresses \
             within {window} s (no lock: each address is throttled on its own)",
            alarm.failures,
            alarm.addresses
        );
        let mut event = AuditEvent::new(
            now,
            AuditActor::system(),
            Action::ClientUnderAttack,
            Some(shown.to_string()),
        )
        .with_detail(format!(
            "{} failed authentications from {} addresses within {window} s",
            alarm.failures, alarm.addresses
        ));
        event.outcome = Outcome::Failure;
        context.audit.note(event);
    }
}

/// A client id as the log and the audit trail may show it (`domain::audit::looks_like_client_id`).
fn loggable(client_id: &str) -> &str {
    if looks_like_client_id(client_id) {
        client_id
    } else {
        "(not an identifier)"
    }
}
