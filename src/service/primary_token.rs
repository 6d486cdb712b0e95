//! A site's primary token: handed out unchanged until invalidated, then minted anew.
//!
//! Issuance is reached through `token_grant` (the OAuth flow); invalidation through
//! `/oauth2/invalidate_token` and RFC 7009 revocation.

use std::sync::Arc;

use chrono::NaiveDateTime;

use super::admins::{self, authenticate_admin};
use super::cache::{cached, Observed, Reach};
use super::client_auth::throttled;
use super::{authenticate_site, Context, ServiceError};
use crate::crypto;
use crate::domain::admin::{Admin, AdminRefusal, ADMIN_CLIENT_ID_PREFIX};
use crate::domain::audit::ActorKind;
use crate::domain::audit::Requester;
use crate::domain::history::Actor;
use crate::domain::oauth_error::{OAuthError, OAuthErrorCode};
use crate::domain::request::{ClientCredentials, InvalidateRequest, RevocationRequest};
use crate::domain::secret::Secret;
use crate::domain::site::{primary_token_description, Site};
use crate::domain::throttle::Origin;
use crate::domain::token::{self, SecretKind};
use crate::store::{
    ChangeTag, InvalidationOutcome, NewPrimaryValue, PrimaryToken, PrimaryTokenOutcome,
};

/// The one answer for every token that is not this site's primary token (unknown, another site's,
/// a non-primary one, malformed), so the endpoint reveals nothing about other tokens.
pub const NOT_THIS_SITES_PRIMARY: &str = "access_token is not this site's primary token";

/// Returns the site's active primary token, minting one if it has none.
///
/// The common case (a primary exists) is one indexed read and one AES-GCM open. Minting is decided
/// by the database (see `Store::mint_primary_token`), so concurrent first requests all get the
/// value that won.
pub fn get_or_mint(
    context: &Context,
    site: &Site,
    now: NaiveDateTime,
) -> Result<Secret, ServiceError> {
    get_or_mint_cached(context, site, now, None, Reach::Database)?.ok_or(ServiceError::Invariant(
        "getting a primary token with database access gave no answer",
    ))
}

/// [`get_or_mint`] through the primary-token cache of `context.grants`, as `observed` (see
/// `cache::observe_changes`): a hit costs one AES-GCM open and no query. `Ok(None)` only with
/// [`Reach::MemoryOnly`], when the token is not cached or must be minted. A freshly minted value
/// is not cached here: its own write has invalidated the site's entry, and the next request
/// reads it.
pub(super) fn get_or_mint_cached(
    context: &Context,
    site: &Site,
    now: NaiveDateTime,
    observed: Option<Observed<'_>>,
    reach: Reach,
) -> Result<Option<Secret>, ServiceError> {
    let current = cached(
        context.grants.primary_tokens.as_ref(),
        observed,
        reach,
        &site.id,
        |_| vec![ChangeTag::site(site.id)],
        || Ok(context.store.active_primary_token(site.id)?.map(Arc::new)),
    )?;
    match current {
        Some(Some(current)) => match unseal(context, site, &current) {
            Err(ServiceError::Unseal(_)) if reach == Reach::Database => {
                retire_unopenable(context, site, &current, now)?;
            }
            Err(ServiceError::Unseal(_)) => return Ok(None),
            opened => return opened.map(Some),
        },
        Some(None) if reach == Reach::Database => {}
        // Not cached, or no active token: minting writes, which is not for the HTTP worker.
        _ => return Ok(None),
    }
    let value = token::mint(SecretKind::PrimaryToken, &crypto::random_bytes()?);
    let value_digest = context.keys.token_digest(value.expose());
    let offered = NewPrimaryValue {
        sealed_value: context.keys.seal(
            value.expose().as_bytes(),
            &seal_context(site.id, &value_digest),
        )?,
        value_hint: token::hint(&value),
        description: primary_token_description(&site.name),
        value_digest,
    };
    match context
        .store
        .mint_primary_token(site.id, &offered, &site_actor(site), now)?
    {
        PrimaryTokenOutcome::Minted => {
            context.counters.count_minted();
            log::info!("minted a new primary token for site {}", site.site_key);
            Ok(Some(value))
        }
        PrimaryTokenOutcome::AlreadyActive(current) => unseal(context, site, &current).map(Some),
    }
}

/// `POST /oauth2/invalidate_token`: the site invalidates its current primary token. Repeating it
/// for a value that was this site's primary is harmless.
pub fn invalidate(
    context: &Context,
    request: &InvalidateRequest,
    origin: &Origin,
    now: NaiveDateTime,
) -> Result<(), ServiceError> {
    let credentials = &request.credentials;
    let site = authenticated_site(context, credentials, origin, now)?;
    match invalidate_for_site(context, &site, &request.access_token, now)? {
        InvalidationOutcome::Invalidated | InvalidationOutcome::AlreadyInvalid => Ok(()),
        InvalidationOutcome::NotThisSitesPrimary => {
            Err(OAuthError::invalid_request(NOT_THIS_SITES_PRIMARY).into())
        }
    }
}

/// `POST /oauth2/revoke` (RFC 7009 2.2). A site revokes its primary token; an admin ends one of
/// its own admin tokens (`admins::revoke_own_token`). Any other token is answered with success
/// too, because "invalid tokens do not cause an error response since the client cannot handle
/// such an error in a reasonable way", except the site's own non-primary tokens, which are
/// managed only in the admin scope: `unsupported_token_type` (RFC 7009 2.2.1), and the token stays
/// active.
pub fn revoke(
    context: &Context,
    request: &RevocationRequest,
    origin: &Origin,
    now: NaiveDateTime,
) -> Result<(), ServiceError> {
    let credentials = &request.credentials;
    if credentials.client_id.starts_with(ADMIN_CLIENT_ID_PREFIX) {
        let admin = throttled(
            context,
            ActorKind::Admin,
            &credentials.client_id,
            origin,
            now,
            || authenticate_admin(context, &credentials.client_id, &credentials.secret, now),
        )?;
        return admins::revoke_own_token(context, &admin, &request.token, origin.address, now)
            .map(drop);
    }
    let site = authenticated_site(context, credentials, origin, now)?;
    if is_own_secondary_token(context, &site, &request.token)? {
        return Err(OAuthError::new(
            OAuthErrorCode::UnsupportedTokenType,
            "this site's non-primary tokens are managed in the admin scope, not revoked here",
        )
        .into());
    }
    invalidate_for_site(context, &site, &request.token, now)?;
    Ok(())
}

/// The site whose credentials a request carries, behind the throttle.
fn authenticated_site(
    context: &Context,
    credentials: &ClientCredentials,
    origin: &Origin,
    now: NaiveDateTime,
) -> Result<Site, ServiceError> {
    throttled(
        context,
        ActorKind::Site,
        &credentials.client_id,
        origin,
        now,
        || authenticate_site(context, &credentials.client_id, &credentials.secret, now),
    )
}

fn is_own_secondary_token(
    context: &Context,
    site: &Site,
    presented: &Secret,
) -> Result<bool, ServiceError> {
    if token::recognise(presented.expose()) != Ok(SecretKind::SecondaryToken) {
        return Ok(false);
    }
    let facts = context
        .store
        .token_facts(&context.keys.token_digest(presented.expose()))?;
    Ok(facts.is_some_and(|facts| facts.site_key == site.site_key))
}

/// The emergency brake for a leaked primary token when the site itself cannot act: the operator
/// (CLI) or a platform admin (admin API) invalidates whatever value is current. The next
/// `/oauth2/token` mints a new one. `Ok(false)`: the site had no active primary token.
pub fn invalidate_on_behalf(
    context: &Context,
    by: &Requester,
    admin: Option<&Admin>,
    site_key: &str,
    now: NaiveDateTime,
) -> Result<bool, ServiceError> {
    let actor = match admin {
        Some(admin) if !admin.manages_every_site() => {
            return Err(AdminRefusal::PlatformAdminsOnly.into())
        }
        Some(admin) => Actor::Admin {
            name: admin.name.clone(),
        },
        None => Actor::Operator {
            name: by
                .actor
                .id
                .clone()
                .unwrap_or_else(|| "operator".to_string()),
        },
    };
    let Some(invalidated) = context
        .store
        .invalidate_site_primary(site_key, &actor, by, now)?
    else {
        return Err(match admin {
            Some(_) => AdminRefusal::SiteNotFound.into(),
            None => ServiceError::UnknownSite(site_key.to_string()),
        });
    };
    if invalidated {
        context.counters.count_invalidated();
        log::warn!(
            "the primary token of site {site_key} was invalidated by {} {}",
            actor.kind(),
            actor.name()
        );
    }
    Ok(invalidated)
}

fn invalidate_for_site(
    context: &Context,
    site: &Site,
    presented: &Secret,
    now: NaiveDateTime,
) -> Result<InvalidationOutcome, ServiceError> {
    if token::recognise(presented.expose()) != Ok(SecretKind::PrimaryToken) {
        return Ok(InvalidationOutcome::NotThisSitesPrimary);
    }
    let digest = context.keys.token_digest(presented.expose());
    let outcome =
        context
            .store
            .invalidate_primary_token(site.id, &digest, &site_actor(site), now)?;
    if outcome == InvalidationOutcome::Invalidated {
        context.counters.count_invalidated();
        log::info!("site {} invalidated its primary token", site.site_key);
    }
    Ok(outcome)
}

/// A primary token sealed under another server secret (the secret was replaced, docs/security.md
/// "Rotating the server secret") is dead already: its lookup digest was keyed with the old secret
/// too, so no introspection accepts it. It is invalidated, in its history as well, so the site,
/// which has just authenticated with an auth key valid under the current secret, gets a new one
/// instead of an error on every request.
fn retire_unopenable(
    context: &Context,
    site: &Site,
    token: &PrimaryToken,
    now: NaiveDateTime,
) -> Result<(), ServiceError> {
    let outcome = context.store.invalidate_primary_token(
        site.id,
        &token.value_digest,
        &site_actor(site),
        now,
    )?;
    // A concurrent request may have retired it first; only the one that did counts and logs.
    if outcome == InvalidationOutcome::Invalidated {
        context.counters.count_invalidated();
        log::warn!(
            "the primary token of site {} was sealed under another server secret; invalidated, a \
             new one is minted",
            site.site_key
        );
    }
    Ok(())
}

fn unseal(context: &Context, site: &Site, token: &PrimaryToken) -> Result<Secret, ServiceError> {
    let sealed = token.sealed_value.as_deref().unwrap_or_default();
    let plain = context
        .keys
        .open(sealed, &seal_context(site.id, &token.value_digest))?;
    String::from_utf8(plain)
        .map(Secret::new)
        .map_err(|_| crypto::UnsealFailed.into())
}

/// Binds a sealed primary token to its site and digest: copied into another row, it won't open.
fn seal_context(site_id: i64, value_digest: &[u8]) -> Vec<u8> {
    let mut context = format!("primary token of site {site_id}:").into_bytes();
    context.extend_from_slice(value_digest);
    context
}

fn site_actor(site: &Site) -> Actor {
    Actor::Site {
        site_key: site.site_key.clone(),
    }
}
