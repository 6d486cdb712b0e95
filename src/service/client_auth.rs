//! Client authentication of sites (RFC 6749 2.3.1).

use super::{Context, ServiceError};
use crate::domain::oauth_error::OAuthError;
use crate::domain::secret::Secret;
use crate::domain::site::Site;

/// Checks a site key and auth key. Unknown site, wrong key and disabled site all fail with the same
/// `invalid_client` after the same keyed-hash check, so neither the answer nor its timing tells
/// which site keys exist.
pub fn authenticate_site(
    context: &Context,
    site_key: &str,
    auth_key: &Secret,
) -> Result<Site, ServiceError> {
    let found = context.store.site_authentication(site_key)?;
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
    Ok(found.site)
}

/// A digest no secret matches, checked against when the client id is unknown.
pub(super) const UNKNOWN_CLIENT_DIGEST: [u8; 32] = [0; 32];
