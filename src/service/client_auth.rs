//! Client authentication of sites (RFC 6749 2.3.1), and [`throttled`], which puts every client
//! authentication (sites, admins, resource servers) behind the brute-force throttle.

use std::sync::Arc;

use super::cache::{cached, Reach};
use super::{Context, ServiceError};
use crate::domain::oauth_error::{OAuthError, OAuthErrorCode};
use crate::domain::secret::Secret;
use crate::domain::site::Site;
use crate::domain::throttle::{Locked, Origin};
use crate::store::SiteAuthentication;

/// Checks a site key and auth key. Unknown site, wrong key and disabled site all fail with the same
/// `invalid_client` after the same keyed-hash check, so neither the answer nor its timing tells
/// which site keys exist. Always reads the database.
pub fn authenticate_site(
    context: &Context,
    site_key: &str,
    auth_key: &Secret,
) -> Result<Site, ServiceError> {
    let found = context.store.site_authentication(site_key)?.map(Arc::new);
    let found = verify(context, found, auth_key)?;
    Ok(Arc::unwrap_or_clone(found).site)
}

/// The same check as [`authenticate_site`] through the site cache of `context.grants`, under
/// `generation` (see `cache::current_generation`). `Ok(None)` only with [`Reach::MemoryOnly`],
/// when the site is not cached under this generation. Unknown site keys are cached as unknown.
pub(super) fn authenticate_site_cached(
    context: &Context,
    site_key: &str,
    auth_key: &Secret,
    generation: Option<u64>,
    reach: Reach,
) -> Result<Option<Arc<SiteAuthentication>>, ServiceError> {
    let found = cached(
        context.grants.sites.as_ref(),
        generation,
        reach,
        site_key,
        || Ok(context.store.site_authentication(site_key)?.map(Arc::new)),
    )?;
    match found {
        Some(found) => verify(context, found, auth_key).map(Some),
        None => Ok(None),
    }
}

fn verify(
    context: &Context,
    found: Option<Arc<SiteAuthentication>>,
    auth_key: &Secret,
) -> Result<Arc<SiteAuthentication>, ServiceError> {
    let Some(found) = found else {
        context
            .keys
            .verify_client_secret(auth_key.expose(), &UNKNOWN_CLIENT_DIGEST);
        return Err(OAuthError::invalid_client().into());
    };
    let secret_matches = context
        .keys
        .verify_client_secret(auth_key.expose(), &found.auth_key_digest);
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

/// A digest no secret matches, checked against when the client id is unknown.
pub(super) const UNKNOWN_CLIENT_DIGEST: [u8; 32] = [0; 32];

/// Runs `work`, a use case that authenticates `client_id`, behind the brute-force throttle
/// (`domain::throttle`): refused with [`ServiceError::Throttled`] before `work` runs, so before any
/// query, when the client id or the source address is locked; an `invalid_client` answer of
/// `work` counts as a failure of both. The lock's start is logged at info.
pub(super) fn throttled<T>(
    context: &Context,
    client_id: &str,
    origin: &Origin,
    work: impl FnOnce() -> Result<T, ServiceError>,
) -> Result<T, ServiceError> {
    context.throttle.admit(client_id, origin)?;
    let outcome = work();
    if let Err(ServiceError::OAuth(refusal)) = &outcome {
        if refusal.code == OAuthErrorCode::InvalidClient {
            let window = context.throttle.window().as_secs_f64();
            for locked in context.throttle.record_failure(client_id, origin) {
                match locked {
                    Locked::ClientId => log::info!(
                        "throttling client id {}: too many failed authentications, locked for {window} s",
                        loggable(client_id)
                    ),
                    Locked::Address(address) => log::info!(
                        "throttling address {address}: too many failed client authentications, \
                         locked for {window} s"
                    ),
                }
            }
        }
    }
    outcome
}

/// A client id as the log may show it. It comes from the client, so anything that does not look
/// like an identifier (ours are 23-25 URL-safe characters; every secret is longer) is not shown:
/// it could be a secret pasted into the wrong field, or text meant to forge log lines.
fn loggable(client_id: &str) -> &str {
    let identifier = client_id.len() <= 32
        && client_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if identifier {
        client_id
    } else {
        "(not an identifier)"
    }
}
