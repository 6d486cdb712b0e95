//! Operator use cases for resource servers (`tokenwarden resource-server …`): credentials, and the
//! sites whose tokens a resource server may introspect.

use std::net::IpAddr;

use chrono::NaiveDateTime;

use super::client_auth::new_client_secret;
use super::sites::{
    check_requested_sites, platform_admin_only, refused_name, requested_overlap, unknown_site,
};
use super::{Context, ServiceError};
use crate::crypto;
use crate::domain::admin::{Admin, AdminRefusal};
use crate::domain::audience::{ResourceServer, RESOURCE_SERVER_ID_PREFIX};
use crate::domain::audit::Requester;
use crate::domain::rotation::{Overlap, RequestedOverlap};
use crate::domain::secret::Secret;
use crate::domain::site::validate_name;
use crate::domain::token::SecretKind;
use crate::store::ResourceServerChange;

/// Creates a resource server; the secret exists in clear only in the return value. With
/// `site_keys`, it may introspect only those sites' tokens; without, every site's.
pub fn create(
    context: &Context,
    by: &Requester,
    name: &str,
    site_keys: &[String],
    now: NaiveDateTime,
) -> Result<(ResourceServer, Secret), ServiceError> {
    let name = validate_name(name)?;
    let random: [u8; 15] = crypto::random_bytes()?;
    let client_id = format!(
        "{RESOURCE_SERVER_ID_PREFIX}{}",
        crate::domain::site::encode_identifier(&random)
    );
    let (secret, digest) = new_client_secret(context, SecretKind::ResourceServerSecret)?;
    let limit = (!site_keys.is_empty()).then_some(site_keys);
    let change = context
        .store
        .insert_resource_server(&client_id, &name, &digest, limit, by, now)?;
    let created = changed(change, &client_id)?;
    log::info!(
        "created resource server {} ({}), sites: {}",
        created.client_id,
        created.name,
        created.sites_text()
    );
    Ok((created, secret))
}

pub fn list(context: &Context) -> Result<Vec<ResourceServer>, ServiceError> {
    Ok(context.store.list_resource_servers()?)
}

/// Limits a resource server to more sites (`assign = true`), or takes sites from its limit; takes
/// effect at once. A resource server that sees every site sees only the assigned ones afterwards.
pub fn change_sites(
    context: &Context,
    by: &Requester,
    client_id: &str,
    site_keys: &[String],
    assign: bool,
    now: NaiveDateTime,
) -> Result<ResourceServer, ServiceError> {
    let change = context
        .store
        .change_resource_server_sites(client_id, site_keys, assign, by, now)?;
    let changed = changed(change, client_id)?;
    log::info!(
        "{} sites {site_keys:?} for resource server {client_id}, sites now: {}",
        if assign { "assigned" } else { "unassigned" },
        changed.sites_text()
    );
    Ok(changed)
}

/// Replaces a resource server's secret; the new one exists in clear only in the return value. The
/// replaced secret keeps working for `overlap` (not at all without one), from the next request on
/// and on every node; a secret an earlier rotation replaced stops at once.
pub fn rotate_secret(
    context: &Context,
    by: &Requester,
    client_id: &str,
    overlap: Overlap,
    now: NaiveDateTime,
) -> Result<(ResourceServer, Secret), ServiceError> {
    let (secret, digest) = new_client_secret(context, SecretKind::ResourceServerSecret)?;
    let rotated = context
        .store
        .rotate_resource_server_secret(client_id, &digest, overlap, by, now)?
        .ok_or_else(|| ServiceError::UnknownResourceServer(client_id.to_string()))?;
    log::info!(
        "rotated the secret of resource server {client_id} (overlap {} s)",
        overlap.secs()
    );
    Ok((rotated, secret))
}

pub fn delete(
    context: &Context,
    by: &Requester,
    client_id: &str,
    now: NaiveDateTime,
) -> Result<(), ServiceError> {
    if !context.store.delete_resource_server(client_id, by, now)? {
        return Err(ServiceError::UnknownResourceServer(client_id.to_string()));
    }
    log::info!("deleted resource server {client_id}");
    Ok(())
}

/// `GET /admin/v1/resource-servers`: every resource server, for platform admins.
pub fn list_as_admin(
    context: &Context,
    admin: &Admin,
) -> Result<Vec<ResourceServer>, ServiceError> {
    platform_admin_only(admin)?;
    list(context)
}

/// `GET /admin/v1/resource-servers/{client_id}`.
pub fn get_as_admin(
    context: &Context,
    admin: &Admin,
    client_id: &str,
) -> Result<ResourceServer, ServiceError> {
    platform_admin_only(admin)?;
    Ok(context
        .store
        .resource_server(client_id)?
        .ok_or(AdminRefusal::ResourceServerNotFound)?)
}

/// `POST /admin/v1/resource-servers`: a platform admin creates a resource server (as [`create`],
/// recorded as theirs), limited to `site_keys` when given.
pub fn create_as_admin(
    context: &Context,
    admin: &Admin,
    address: Option<IpAddr>,
    name: &str,
    site_keys: Option<&[String]>,
    now: NaiveDateTime,
) -> Result<(ResourceServer, Secret), ServiceError> {
    platform_admin_only(admin)?;
    let name = validate_name(name).map_err(refused_name)?;
    site_keys.map(check_requested_sites).transpose()?;
    let by = Requester::admin(admin, address);
    create(context, &by, &name, site_keys.unwrap_or_default(), now).map_err(unknown_site)
}

/// `POST /admin/v1/resource-servers/{client_id}/secret`: a platform admin rotates a resource
/// server's secret (as [`rotate_secret`], recorded as theirs). Without `overlap`, the replaced
/// secret stops at once.
pub fn rotate_secret_as_admin(
    context: &Context,
    admin: &Admin,
    address: Option<IpAddr>,
    client_id: &str,
    overlap: Option<&RequestedOverlap>,
    now: NaiveDateTime,
) -> Result<(ResourceServer, Secret), ServiceError> {
    platform_admin_only(admin)?;
    let overlap = requested_overlap(overlap)?;
    let by = Requester::admin(admin, address);
    rotate_secret(context, &by, client_id, overlap, now).map_err(unknown_resource_server)
}

/// `DELETE /admin/v1/resource-servers/{client_id}`: as [`delete`], recorded as the admin's.
pub fn delete_as_admin(
    context: &Context,
    admin: &Admin,
    address: Option<IpAddr>,
    client_id: &str,
    now: NaiveDateTime,
) -> Result<(), ServiceError> {
    platform_admin_only(admin)?;
    delete(context, &Requester::admin(admin, address), client_id, now)
        .map_err(unknown_resource_server)
}

/// The admin API's answer for an unknown resource server: 404 like every other.
fn unknown_resource_server(error: ServiceError) -> ServiceError {
    match error {
        ServiceError::UnknownResourceServer(_) => AdminRefusal::ResourceServerNotFound.into(),
        other => other,
    }
}

fn changed(change: ResourceServerChange, client_id: &str) -> Result<ResourceServer, ServiceError> {
    match change {
        ResourceServerChange::Done(server) => Ok(server),
        ResourceServerChange::UnknownResourceServer => {
            Err(ServiceError::UnknownResourceServer(client_id.to_string()))
        }
        ResourceServerChange::UnknownSite(site_key) => Err(ServiceError::UnknownSite(site_key)),
        ResourceServerChange::NotSiteLimited => {
            Err(ServiceError::NotSiteLimited(client_id.to_string()))
        }
    }
}
