//! Use cases for sites: the operator's (the `tokenwarden site …` commands and `serve --demo`) and
//! the platform API's (create, change, rotate the auth key), recorded as the admin's.

use std::net::IpAddr;

use chrono::NaiveDateTime;

use super::client_auth::new_client_secret;
use super::site_tokens::managed_site;
use super::{Context, ServiceError};
use crate::crypto;
use crate::domain::admin::{Admin, AdminRefusal};
use crate::domain::audit::Requester;
use crate::domain::rotation::{
    checked_overlap, Overlap, OverlapError, RequestedOverlap, MAX_OVERLAP_SECS,
};
use crate::domain::secret::Secret;
use crate::domain::site::SiteSummary;
use crate::domain::site::{
    is_site_key, site_key_from_random, validate_name, NameError, Site, SiteCredentials,
};
use crate::domain::token::SecretKind;

/// Creates a site with fresh credentials; the auth key exists in clear only in the return value.
pub fn create(
    context: &Context,
    by: &Requester,
    name: &str,
    now: NaiveDateTime,
) -> Result<(Site, SiteCredentials), ServiceError> {
    let name = validate_name(name)?;
    let site_key = site_key_from_random(&crypto::random_bytes()?);
    let (auth_key, digest) = new_client_secret(context, SecretKind::AuthKey)?;
    let site = context
        .store
        .insert_site(&site_key, &name, &digest, by, now)?;
    log::info!("created site {} ({})", site.site_key, site.name);
    Ok((site, SiteCredentials { site_key, auth_key }))
}

pub fn list(context: &Context) -> Result<Vec<SiteSummary>, ServiceError> {
    Ok(context.store.list_sites()?)
}

pub fn find_by_name(context: &Context, name: &str) -> Result<Option<Site>, ServiceError> {
    Ok(context.store.site_by_name(name)?)
}

/// A site's new auth key, in clear only here, and the site as the rotation left it: its
/// `previous_auth_key_valid_until` is when the replaced key stops working (`None`: it already has).
#[derive(Debug)]
pub struct RotatedAuthKey {
    pub site: Site,
    pub auth_key: Secret,
}

/// Replaces a site's auth key. The replaced key keeps working for `overlap` (not at all without
/// one), from the next request on and on every node; a key an earlier rotation replaced stops at
/// once.
pub fn rotate_auth_key(
    context: &Context,
    by: &Requester,
    site_key: &str,
    overlap: Overlap,
    now: NaiveDateTime,
) -> Result<RotatedAuthKey, ServiceError> {
    let (auth_key, digest) = new_client_secret(context, SecretKind::AuthKey)?;
    let site = context
        .store
        .rotate_auth_key_digest(site_key, &digest, overlap, by, now)?
        .ok_or_else(|| ServiceError::UnknownSite(site_key.to_string()))?;
    log::info!(
        "rotated the auth key of site {site_key} (overlap {} s)",
        overlap.secs()
    );
    Ok(RotatedAuthKey { site, auth_key })
}

/// A disabled site cannot authenticate, and every token of it is refused, at once.
pub fn set_enabled(
    context: &Context,
    by: &Requester,
    site_key: &str,
    enabled: bool,
    now: NaiveDateTime,
) -> Result<(), ServiceError> {
    if !context.store.set_site_enabled(site_key, enabled, by, now)? {
        return Err(ServiceError::UnknownSite(site_key.to_string()));
    }
    log::info!(
        "{} site {site_key}",
        if enabled { "enabled" } else { "disabled" }
    );
    Ok(())
}

/// `POST /admin/v1/sites`: a platform admin provisions a site (as [`create`], recorded as theirs).
pub fn create_as_admin(
    context: &Context,
    admin: &Admin,
    address: Option<IpAddr>,
    name: &str,
    now: NaiveDateTime,
) -> Result<(Site, SiteCredentials), ServiceError> {
    platform_admin_only(admin)?;
    let name = validate_name(name).map_err(refused_name)?;
    create(context, &Requester::admin(admin, address), &name, now)
}

/// `POST /admin/v1/sites/{site_key}/auth-key`: a platform admin, or a site manager of this site,
/// rotates its auth key (as [`rotate_auth_key`], recorded as theirs). Without `overlap`, the
/// replaced key stops at once.
pub fn rotate_auth_key_as_admin(
    context: &Context,
    admin: &Admin,
    address: Option<IpAddr>,
    site_key: &str,
    overlap: Option<&RequestedOverlap>,
    now: NaiveDateTime,
) -> Result<RotatedAuthKey, ServiceError> {
    managed_site(context, admin, site_key)?;
    let overlap = requested_overlap(overlap)?;
    let by = Requester::admin(admin, address);
    match rotate_auth_key(context, &by, site_key, overlap, now) {
        Err(ServiceError::UnknownSite(_)) => Err(AdminRefusal::SiteNotFound.into()),
        other => other,
    }
}

/// `PATCH /admin/v1/sites/{site_key}`: a platform admin renames, disables or enables a site;
/// changes that change nothing are not recorded.
pub fn update_as_admin(
    context: &Context,
    admin: &Admin,
    address: Option<IpAddr>,
    site_key: &str,
    name: Option<&str>,
    enabled: Option<bool>,
    now: NaiveDateTime,
) -> Result<SiteSummary, ServiceError> {
    platform_admin_only(admin)?;
    if name.is_none() && enabled.is_none() {
        return Err(
            AdminRefusal::invalid_field("body", "the body must set name, enabled or both").into(),
        );
    }
    let name = name.map(validate_name).transpose().map_err(refused_name)?;
    let by = Requester::admin(admin, address);
    let updated = context
        .store
        .update_site(site_key, name.as_deref(), enabled, &by, now)?
        .ok_or(AdminRefusal::SiteNotFound)?;
    log::info!(
        "admin {:?} updated site {site_key} (name {}, enabled {})",
        admin.name,
        name.is_some(),
        enabled.map_or("unchanged".to_string(), |enabled| enabled.to_string())
    );
    let token_count = context.store.site_tokens(updated.id)?.len() as i64;
    Ok(SiteSummary {
        site: updated,
        token_count,
    })
}

/// Refuses site managers: the platform API is for platform admins only.
pub(super) fn platform_admin_only(admin: &Admin) -> Result<(), AdminRefusal> {
    if admin.manages_every_site() {
        Ok(())
    } else {
        Err(AdminRefusal::PlatformAdminsOnly)
    }
}

/// The overlap of a rotation body (absent: none). One message for every refused value: the API
/// takes whole seconds only.
pub(super) fn requested_overlap(
    requested: Option<&RequestedOverlap>,
) -> Result<Overlap, AdminRefusal> {
    let refused = |_: OverlapError| {
        AdminRefusal::invalid_field(
            "overlap_seconds",
            format!(
                "overlap_seconds must be a whole number of seconds from 0 to {MAX_OVERLAP_SECS}"
            ),
        )
    };
    Ok(requested
        .map(checked_overlap)
        .transpose()
        .map_err(refused)?
        .unwrap_or_default())
}

pub(super) fn refused_name(error: NameError) -> AdminRefusal {
    AdminRefusal::invalid_field("name", error.to_string())
}

/// Most site keys one `sites` list may hold.
pub const MAX_REQUESTED_SITES: usize = 1000;

/// The `sites` list of a platform API body (a resource server's limit, a site manager's sites):
/// 1 to [`MAX_REQUESTED_SITES`] site keys. Entries are named by position, not quoted, unless they
/// have the shape of a site key: a secret sent in the wrong place is never echoed.
pub(super) fn check_requested_sites(site_keys: &[String]) -> Result<(), AdminRefusal> {
    if site_keys.is_empty() || site_keys.len() > MAX_REQUESTED_SITES {
        return Err(AdminRefusal::invalid_field(
            "sites",
            format!("sites must list 1 to {MAX_REQUESTED_SITES} site keys"),
        ));
    }
    match site_keys.iter().position(|key| !is_site_key(key)) {
        Some(index) => Err(AdminRefusal::invalid_field(
            "sites",
            format!("sites entry {} is not a site key", index + 1),
        )),
        None => Ok(()),
    }
}

/// A site key of a `sites` list that names no site (it has a site key's shape, so it may be named).
pub(super) fn unknown_site(error: ServiceError) -> ServiceError {
    match error {
        ServiceError::UnknownSite(site_key) => AdminRefusal::invalid_field(
            "sites",
            format!("sites names {site_key}, which is no site"),
        )
        .into(),
        other => other,
    }
}
