//! The admin scope's principals: the operator's `tokenwarden admin …` commands, admin client
//! authentication, and the admin tokens that unlock the admin API (issued and checked here).

use std::net::IpAddr;

use chrono::NaiveDateTime;

use super::client_auth::{new_client_secret, secret_matches, UNKNOWN_CLIENT_DIGEST};
use super::sites::{
    check_requested_sites, platform_admin_only, refused_name, requested_overlap, unknown_site,
};
use super::{Context, ServiceError};
use crate::crypto;
use crate::domain::admin::{Admin, AdminRefusal, AdminWithSites, Role, ADMIN_CLIENT_ID_PREFIX};
use crate::domain::audit::Requester;
use crate::domain::oauth_error::{OAuthError, OAuthErrorCode};
use crate::domain::rotation::{Overlap, RequestedOverlap};
use crate::domain::secret::Secret;
use crate::domain::site::{encode_identifier, validate_name};
use crate::domain::token::{self, SecretKind};
use crate::store::{AdminChange, AdminUpdate, NewAdmin};

/// Creates an admin; the secret exists in clear only in the return value. A site manager needs at
/// least one site, a platform admin none (they manage every site).
pub fn create(
    context: &Context,
    by: &Requester,
    name: &str,
    role: Role,
    site_keys: &[String],
    now: NaiveDateTime,
) -> Result<(AdminWithSites, Secret), ServiceError> {
    let name = validate_name(name)?;
    match (role, site_keys.is_empty()) {
        (Role::SiteManager, true) => {
            return Err(ServiceError::AdminSetup(
                "a site manager needs at least one --site",
            ))
        }
        (Role::PlatformAdmin, false) => {
            return Err(ServiceError::AdminSetup(
                "a platform admin manages every site; --site is for site managers",
            ))
        }
        _ => {}
    }
    let client_id = format!(
        "{ADMIN_CLIENT_ID_PREFIX}{}",
        encode_identifier(&crypto::random_bytes()?)
    );
    let (secret, digest) = new_client_secret(context, SecretKind::AdminSecret)?;
    let change = context.store.insert_admin(
        &NewAdmin {
            client_id: &client_id,
            name: &name,
            role,
            secret_digest: &digest,
        },
        site_keys,
        by,
        now,
    )?;
    let created = admin_changed(change, &client_id)?;
    log::info!(
        "created admin {} ({:?}, {})",
        created.admin.client_id,
        created.admin.name,
        role.as_str()
    );
    Ok((created, secret))
}

pub fn list(context: &Context) -> Result<Vec<AdminWithSites>, ServiceError> {
    Ok(context.store.list_admins()?)
}

/// Assigns sites to a site manager (`assign = true`) or takes them away; takes effect at once.
pub fn change_sites(
    context: &Context,
    by: &Requester,
    client_id: &str,
    site_keys: &[String],
    assign: bool,
    now: NaiveDateTime,
) -> Result<AdminWithSites, ServiceError> {
    let change = context
        .store
        .change_admin_sites(client_id, site_keys, assign, by, now)?;
    let changed = admin_changed(change, client_id)?;
    log::info!(
        "{} sites {site_keys:?} for admin {client_id}",
        if assign { "assigned" } else { "unassigned" }
    );
    Ok(changed)
}

/// Disabling an admin stops their admin tokens at once and deletes them. The last enabled platform
/// admin cannot be disabled (as over the API): the admin API would be left without one.
pub fn set_enabled(
    context: &Context,
    by: &Requester,
    client_id: &str,
    enabled: bool,
    now: NaiveDateTime,
) -> Result<AdminWithSites, ServiceError> {
    let update = AdminUpdate {
        enabled: Some(enabled),
        ..AdminUpdate::default()
    };
    let change = context.store.update_admin(client_id, &update, by, now)?;
    let changed = admin_changed(change, client_id)?;
    log::info!(
        "{} admin {client_id}",
        if enabled { "enabled" } else { "disabled" }
    );
    Ok(changed)
}

/// Replaces an admin's secret; the new one exists in clear only in the return value. The replaced
/// secret keeps working for `overlap` (not at all without one); a secret an earlier rotation
/// replaced stops at once. Admin tokens already issued keep working until they expire (disabling
/// the admin ends them).
pub fn rotate_secret(
    context: &Context,
    by: &Requester,
    client_id: &str,
    overlap: Overlap,
    now: NaiveDateTime,
) -> Result<(AdminWithSites, Secret), ServiceError> {
    let (secret, digest) = new_client_secret(context, SecretKind::AdminSecret)?;
    let change = context
        .store
        .rotate_admin_secret(client_id, &digest, overlap, by, now)?;
    let rotated = admin_changed(change, client_id)?;
    log::info!(
        "rotated the secret of admin {client_id} (overlap {} s)",
        overlap.secs()
    );
    Ok((rotated, secret))
}

/// `POST /admin/v1/admins/{client_id}/secret`: a platform admin rotates an admin's secret (its own
/// included), as [`rotate_secret`], recorded as theirs. Without `overlap`, the replaced secret
/// stops at once.
pub fn rotate_secret_as_admin(
    context: &Context,
    admin: &Admin,
    address: Option<IpAddr>,
    client_id: &str,
    overlap: Option<&RequestedOverlap>,
    now: NaiveDateTime,
) -> Result<(AdminWithSites, Secret), ServiceError> {
    platform_admin_only(admin)?;
    let overlap = requested_overlap(overlap)?;
    let by = Requester::admin(admin, address);
    rotate_secret(context, &by, client_id, overlap, now).map_err(|error| match error {
        ServiceError::UnknownAdmin(_) => AdminRefusal::AdminNotFound.into(),
        other => other,
    })
}

/// `GET /admin/v1/admins`: every admin, for platform admins.
pub fn list_as_admin(
    context: &Context,
    admin: &Admin,
) -> Result<Vec<AdminWithSites>, ServiceError> {
    platform_admin_only(admin)?;
    list(context)
}

/// `GET /admin/v1/admins/{client_id}`.
pub fn get_as_admin(
    context: &Context,
    admin: &Admin,
    client_id: &str,
) -> Result<AdminWithSites, ServiceError> {
    platform_admin_only(admin)?;
    Ok(context
        .store
        .admin(client_id)?
        .ok_or(AdminRefusal::AdminNotFound)?)
}

/// `POST /admin/v1/admins`: a platform admin creates an admin (as [`create`], recorded as theirs).
/// `role` is `platform-admin` or `site-manager` (as in the CLI); a site manager needs `sites`, a
/// platform admin takes none.
pub fn create_as_admin(
    context: &Context,
    admin: &Admin,
    address: Option<IpAddr>,
    name: &str,
    role: Option<&str>,
    site_keys: Option<&[String]>,
    now: NaiveDateTime,
) -> Result<(AdminWithSites, Secret), ServiceError> {
    platform_admin_only(admin)?;
    let name = validate_name(name).map_err(refused_name)?;
    let role = requested_role(role)?.ok_or_else(|| {
        AdminRefusal::invalid_field("role", "role is required: platform-admin or site-manager")
    })?;
    check_sites_for(role, site_keys)?;
    let by = Requester::admin(admin, address);
    create(
        context,
        &by,
        &name,
        role,
        site_keys.unwrap_or_default(),
        now,
    )
    .map_err(|error| {
        match unknown_site(error) {
            // Role and sites were checked above: a name taken is all that is left.
            ServiceError::AdminSetup(reason) => AdminRefusal::invalid_field("name", reason).into(),
            other => other,
        }
    })
}

/// The fields of `PATCH /admin/v1/admins/{client_id}`, as sent; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestedChange<'a> {
    pub enabled: Option<bool>,
    /// `platform-admin` or `site-manager`.
    pub role: Option<&'a str>,
    /// A site manager's sites: the whole new set.
    pub sites: Option<&'a [String]>,
}

/// `PATCH /admin/v1/admins/{client_id}`: a platform admin enables or disables an admin, changes
/// its role, or gives a site manager a new set of sites. An admin may not disable or demote
/// itself, and no change may leave no enabled platform admin (checked in the store's transaction).
pub fn update_as_admin(
    context: &Context,
    admin: &Admin,
    address: Option<IpAddr>,
    client_id: &str,
    requested: &RequestedChange,
    now: NaiveDateTime,
) -> Result<AdminWithSites, ServiceError> {
    platform_admin_only(admin)?;
    let RequestedChange {
        enabled,
        role,
        sites: site_keys,
    } = *requested;
    if enabled.is_none() && role.is_none() && site_keys.is_none() {
        return Err(AdminRefusal::invalid_field(
            "body",
            "the body must set enabled, role, sites or several of them",
        )
        .into());
    }
    let role = requested_role(role)?;
    site_keys.map(check_requested_sites).transpose()?;
    if client_id == admin.client_id && (enabled == Some(false) || role == Some(Role::SiteManager)) {
        return Err(AdminRefusal::CannotChangeOwnAccess.into());
    }
    let update = AdminUpdate {
        enabled,
        role,
        site_keys,
    };
    let by = Requester::admin(admin, address);
    let changed = match context.store.update_admin(client_id, &update, &by, now)? {
        AdminChange::Done(changed) => changed,
        AdminChange::UnknownAdmin => return Err(AdminRefusal::AdminNotFound.into()),
        AdminChange::UnknownSite(site_key) => {
            return Err(unknown_site(ServiceError::UnknownSite(site_key)))
        }
        AdminChange::NotASiteManager => return Err(platform_admin_sites().into()),
        AdminChange::SitesRequired => {
            return Err(AdminRefusal::invalid_field(
                "sites",
                "a site manager needs sites: send them with role site-manager",
            )
            .into())
        }
        AdminChange::LastPlatformAdmin => return Err(AdminRefusal::LastPlatformAdmin.into()),
        AdminChange::NameTaken => return Err(ServiceError::Invariant("no rename here")),
    };
    log::info!(
        "admin {:?} updated admin {client_id} (enabled {}, role {}, sites {})",
        admin.name,
        enabled.map_or("unchanged".to_string(), |enabled| enabled.to_string()),
        role.map_or("unchanged", Role::as_str),
        if site_keys.is_some() {
            "replaced"
        } else {
            "unchanged"
        }
    );
    Ok(changed)
}

/// A `role` field: `None` when absent.
fn requested_role(role: Option<&str>) -> Result<Option<Role>, AdminRefusal> {
    role.map(|name| {
        Role::parse(name).ok_or_else(|| {
            AdminRefusal::invalid_field("role", "role must be platform-admin or site-manager")
        })
    })
    .transpose()
}

/// A new admin's sites: one or more for a site manager, none for a platform admin.
fn check_sites_for(role: Role, site_keys: Option<&[String]>) -> Result<(), AdminRefusal> {
    match (role, site_keys) {
        (Role::PlatformAdmin, Some(_)) => Err(platform_admin_sites()),
        (Role::SiteManager, None) => Err(AdminRefusal::invalid_field(
            "sites",
            "a site manager needs at least one site",
        )),
        (Role::SiteManager, Some(keys)) => check_requested_sites(keys),
        (Role::PlatformAdmin, None) => Ok(()),
    }
}

fn platform_admin_sites() -> AdminRefusal {
    AdminRefusal::invalid_field(
        "sites",
        "a platform admin manages every site; sites are for site managers",
    )
}

fn admin_changed(change: AdminChange, client_id: &str) -> Result<AdminWithSites, ServiceError> {
    match change {
        AdminChange::Done(admin) => Ok(admin),
        AdminChange::UnknownAdmin => Err(ServiceError::UnknownAdmin(client_id.to_string())),
        AdminChange::UnknownSite(site_key) => Err(ServiceError::UnknownSite(site_key)),
        AdminChange::NameTaken => Err(ServiceError::AdminSetup(
            "another admin already has this name",
        )),
        AdminChange::NotASiteManager => Err(ServiceError::AdminSetup(
            "a platform admin manages every site; only site managers are assigned sites",
        )),
        AdminChange::LastPlatformAdmin => Err(ServiceError::AdminSetup(
            "this is the last enabled platform admin; enable or create another one first",
        )),
        // Only a change of role answers this, and none is made through here.
        AdminChange::SitesRequired => Err(ServiceError::Invariant("a change of role")),
    }
}

/// An admin token as handed out by `/oauth2/token`.
#[derive(Debug)]
pub struct IssuedAdminToken {
    pub value: Secret,
    /// Seconds until it stops working (RFC 6749 5.1 `expires_in`).
    pub expires_in: i64,
}

/// Mints an admin token for an authenticated admin, signing in from `address`; only its digest is
/// stored, and the sign-in is recorded in the audit trail.
pub fn issue_admin_token(
    context: &Context,
    admin: &Admin,
    address: Option<IpAddr>,
    now: NaiveDateTime,
) -> Result<IssuedAdminToken, ServiceError> {
    let value = token::mint(SecretKind::AdminToken, &crypto::random_bytes()?);
    let expires_at = context.policy.admin_token_expiry(now);
    let stored = context.store.insert_admin_token(
        admin.id,
        &context.keys.token_digest(value.expose()),
        &Requester::admin(admin, address),
        now,
        expires_at,
    )?;
    if !stored {
        // Disabled since it authenticated: the same answer as any failed authentication.
        return Err(OAuthError::invalid_client().into());
    }
    log::info!("issued an admin token to admin {:?}", admin.name);
    Ok(IssuedAdminToken {
        value,
        expires_in: (expires_at - now).num_seconds(),
    })
}

/// The admin a bearer token on the admin API belongs to (RFC 6750 3.1): an unknown, expired or
/// malformed token, or one of a disabled admin, is `invalid_token`; an active site token is
/// `insufficient_scope`, since it is a valid token without the admin scope.
pub fn admin_for_bearer(
    context: &Context,
    presented: &Secret,
    now: NaiveDateTime,
) -> Result<Admin, ServiceError> {
    let digest = || context.keys.token_digest(presented.expose());
    match token::recognise(presented.expose()) {
        Ok(SecretKind::AdminToken) => context
            .store
            .admin_for_token(&digest(), now)?
            .ok_or_else(|| unusable_admin_token().into()),
        Ok(SecretKind::PrimaryToken | SecretKind::SecondaryToken) => {
            let facts = context.store.token_facts(&digest())?;
            if facts.is_some_and(|facts| facts.is_active(now)) {
                Err(OAuthError::new(
                    OAuthErrorCode::InsufficientScope,
                    "site tokens do not unlock the admin API; use an admin token (scope admin)",
                )
                .into())
            } else {
                Err(unusable_admin_token().into())
            }
        }
        _ => Err(unusable_admin_token().into()),
    }
}

/// RFC 6750 3.1 `invalid_token`: the refusal of an admin token that does not (or no longer) work.
fn unusable_admin_token() -> OAuthError {
    OAuthError::new(
        OAuthErrorCode::InvalidToken,
        "the admin token is unknown, expired or revoked; get a new one from /oauth2/token",
    )
}

/// The session an admin token stands for: who holds it and until when it works.
#[derive(Debug)]
pub struct AdminSession {
    /// The admin, with a site manager's sites.
    pub admin: AdminWithSites,
    pub expires_at: NaiveDateTime,
}

/// `GET /admin/v1/sessions/current`: the session of `presented`, an admin token of `admin`'s
/// ([`admin_for_bearer`]). A token revoked, or an admin disabled, since that check is
/// `invalid_token` like any token that does not work.
pub fn current_session(
    context: &Context,
    admin: &Admin,
    presented: &Secret,
    now: NaiveDateTime,
) -> Result<AdminSession, ServiceError> {
    let digest = context.keys.token_digest(presented.expose());
    let expires_at = context
        .store
        .admin_token_expiry(admin.id, &digest, now)?
        .ok_or_else(unusable_admin_token)?;
    let holder = context
        .store
        .admin(&admin.client_id)?
        .filter(|found| found.admin.enabled)
        .ok_or_else(unusable_admin_token)?;
    Ok(AdminSession {
        admin: holder,
        expires_at,
    })
}

/// Checks an admin's client id and secret at `now` (RFC 6749 2.3.1): the current secret, or while
/// an overlap runs the one the last rotation replaced. Unknown id, wrong secret and disabled admin
/// fail alike, after the same keyed-hash check.
pub fn authenticate_admin(
    context: &Context,
    client_id: &str,
    secret: &Secret,
    now: NaiveDateTime,
) -> Result<Admin, ServiceError> {
    let found = context.store.admin_authentication(client_id)?;
    let Some((admin, secrets)) = found else {
        context
            .keys
            .verify_client_secret(secret.expose(), &UNKNOWN_CLIENT_DIGEST);
        return Err(OAuthError::invalid_client().into());
    };
    let secret_matches = secret_matches(context, secret, &secrets, now);
    if secret_matches && admin.enabled {
        return Ok(admin);
    }
    log::info!(
        "client authentication failed for admin {} ({})",
        admin.client_id,
        if secret_matches {
            "admin disabled"
        } else {
            "wrong secret"
        }
    );
    Err(OAuthError::invalid_client().into())
}

/// Ends one of `admin`'s own admin tokens (RFC 7009 through `/oauth2/revoke`, or `DELETE
/// /admin/v1/sessions/current`): refused from the next request on. Another admin's token, or a
/// value that is no admin token, is left alone (`Ok(false)`) and answered like an unknown token
/// (RFC 7009 2.2), so the answer says nothing about other admins' tokens.
pub fn revoke_own_token(
    context: &Context,
    admin: &Admin,
    presented: &Secret,
    address: Option<IpAddr>,
    now: NaiveDateTime,
) -> Result<bool, ServiceError> {
    if token::recognise(presented.expose()) != Ok(SecretKind::AdminToken) {
        return Ok(false);
    }
    let revoked = context.store.revoke_admin_token(
        admin.id,
        &context.keys.token_digest(presented.expose()),
        &Requester::admin(admin, address),
        now,
    )?;
    if revoked {
        log::info!("admin {:?} ended an admin token", admin.name);
    }
    Ok(revoked)
}
