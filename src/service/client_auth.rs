//! Client authentication of sites (RFC 6749 2.3.1).

use std::sync::Arc;

use super::cache::{cached, Reach};
use super::{Context, ServiceError};
use crate::domain::oauth_error::OAuthError;
use crate::domain::secret::Secret;
use crate::domain::site::Site;
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
