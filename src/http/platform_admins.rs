//! The platform API's admins: `GET`/`POST /admin/v1/admins`, `GET`/`PATCH
//! /admin/v1/admins/{client_id}` and `POST /admin/v1/admins/{client_id}/secret`, the HTTP face of `tokenwarden admin …` (the use cases in
//! `service::admins`, recorded with the calling admin as actor). Platform admins only; site
//! managers get 403 `forbidden`. Kept apart from `platform.rs` (sites) so that each subject's
//! handlers and views live in one file.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use chrono::NaiveDateTime;

use super::admin::{answer, rfc3339, Caller, JsonBodyRefusals};
use super::body::read_json;
use super::error::{ApiError, ErrorBody};
use super::oauth::no_store;
use super::platform::{rotate_client_secret, RotatedSecretView, RotationBody};
use super::AppState;
use crate::domain::admin::AdminWithSites;
use crate::domain::rotation::overlap_end;
use crate::service::admins;

/// Body of `POST /admin/v1/admins`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAdminBody {
    /// 1 to 100 characters after trimming, no control characters, unique among admins.
    // Missing reads as empty, so it is refused by the name rule, naming the field.
    #[serde(default)]
    pub name: String,
    /// `platform-admin` (every site) or `site-manager` (the sites in `sites`).
    #[schema(pattern = "^(platform-admin|site-manager)$")]
    pub role: Option<String>,
    /// For a site manager, required: the site keys it manages (1 to 1000). Not for a platform
    /// admin.
    #[schema(min_items = 1, max_items = 1000)]
    pub sites: Option<Vec<String>>,
}

/// Body of `PATCH /admin/v1/admins/{client_id}`: at least one of the three.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAdminBody {
    /// `false` disables the admin: its admin tokens stop working at once and are deleted;
    /// `true` enables it again (old tokens stay revoked).
    pub enabled: Option<bool>,
    /// `platform-admin` or `site-manager`; a platform admin made a site manager needs `sites`.
    #[schema(pattern = "^(platform-admin|site-manager)$")]
    pub role: Option<String>,
    /// A site manager's sites: the whole new set (1 to 1000 site keys).
    #[schema(min_items = 1, max_items = 1000)]
    pub sites: Option<Vec<String>>,
}

/// An admin as the platform API shows it (never its secret).
#[derive(Serialize, utoipa::ToSchema)]
pub struct AdminView {
    pub client_id: String,
    pub name: String,
    /// `platform-admin` or `site-manager`.
    pub role: &'static str,
    /// A disabled admin cannot get admin tokens.
    pub enabled: bool,
    /// A site manager's sites, sorted; `null` for a platform admin, who manages every site.
    pub site_keys: Option<Vec<String>>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC: until when the secret its last rotation replaced also works; `null` when
    /// only the current secret works.
    pub previous_secret_valid_until: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AdminsResponse {
    /// Oldest first.
    pub admins: Vec<AdminView>,
}

/// An admin just created: its credentials, the secret shown in this answer only.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedAdminView {
    pub client_id: String,
    /// The client secret for `/oauth2/token` (`scope=admin`), shown this once only: store it now.
    pub client_secret: String,
    pub name: String,
    /// `platform-admin` or `site-manager`.
    pub role: &'static str,
    pub enabled: bool,
    /// As in `AdminView`.
    pub site_keys: Option<Vec<String>>,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// List admins (platform admins only).
#[utoipa::path(
    get,
    path = "/admin/v1/admins",
    tag = "admin",
    responses(
        (status = 200, description = "Every admin, oldest first", body = AdminsResponse),
        (status = 401, description = "Missing, unknown or expired admin token", body = ErrorBody),
        (status = 403, description = "`forbidden` for site managers; `insufficient_scope` for a site token", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::authenticate(&state, &request).await?;
    let now = caller.now;
    let listed = caller
        .run(|context, admin, _| admins::list_as_admin(context, admin))
        .await?;
    Ok(answer(AdminsResponse {
        admins: listed
            .into_iter()
            .map(|entry| AdminView::new(entry, now))
            .collect(),
    }))
}

/// Create an admin (platform admins only).
///
/// The answer holds the client id and secret; the secret is shown this once only. Recorded in
/// the audit trail with this admin as actor.
#[utoipa::path(
    post,
    path = "/admin/v1/admins",
    tag = "admin",
    request_body(content = CreateAdminBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; `client_secret` is shown this once only", body = CreatedAdminView,
            headers(("Location" = String, description = "The new admin's URL"))),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing, unknown or expired admin token", body = ErrorBody),
        (status = 403, description = "`forbidden` for site managers; `insufficient_scope` for a site token", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a name that breaks its rule or is taken, an unknown role, sites missing for a site manager, given for a platform admin or naming no site; an unknown field or a wrong type", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn create(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::authenticate(&state, &request).await?;
    let now = caller.now;
    let body: CreateAdminBody =
        read_json(&request, payload, state.max_body_bytes, state.body_timeout).await?;
    let address = caller.address;
    let (created, secret) = caller
        .run(move |context, admin, now| {
            admins::create_as_admin(
                context,
                admin,
                address,
                &body.name,
                body.role.as_deref(),
                body.sites.as_deref(),
                now,
            )
        })
        .await?;
    let view = AdminView::new(created, now);
    Ok(no_store(HttpResponse::Created())
        .insert_header((
            header::LOCATION,
            format!("/admin/v1/admins/{}", view.client_id),
        ))
        .json(CreatedAdminView {
            client_id: view.client_id,
            client_secret: secret.expose().to_string(),
            name: view.name,
            role: view.role,
            enabled: view.enabled,
            site_keys: view.site_keys,
            created_at: view.created_at,
        }))
}

/// One admin (platform admins only).
#[utoipa::path(
    get,
    path = "/admin/v1/admins/{client_id}",
    tag = "admin",
    params(("client_id" = String, Path, description = "The admin's client id")),
    responses(
        (status = 200, description = "The admin", body = AdminView),
        (status = 401, description = "Missing, unknown or expired admin token", body = ErrorBody),
        (status = 403, description = "`forbidden` for site managers; `insufficient_scope` for a site token", body = ErrorBody),
        (status = 404, description = "No such admin", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn get(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::authenticate(&state, &request).await?;
    let now = caller.now;
    let client_id = path.into_inner();
    let found = caller
        .run(move |context, admin, _| admins::get_as_admin(context, admin, &client_id))
        .await?;
    Ok(answer(AdminView::new(found, now)))
}

/// Enable or disable an admin, change its role, or give a site manager a new set of sites
/// (platform admins only).
///
/// Disabling stops the admin's tokens at once. An admin cannot disable or demote itself (409
/// `cannot_change_own_access`), and no change may leave no enabled platform admin (409
/// `last_platform_admin`). Each effective change is recorded in the audit trail.
#[utoipa::path(
    patch,
    path = "/admin/v1/admins/{client_id}",
    tag = "admin",
    params(("client_id" = String, Path, description = "The admin's client id")),
    request_body(content = UpdateAdminBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The admin as it now is", body = AdminView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing, unknown or expired admin token", body = ErrorBody),
        (status = 403, description = "`forbidden` for site managers; `insufficient_scope` for a site token", body = ErrorBody),
        (status = 404, description = "No such admin", body = ErrorBody),
        (status = 409, description = "`cannot_change_own_access` or `last_platform_admin`", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "`validation_failed`: an unknown field, an empty object, a wrong type, an unknown role, or sites that break their rule", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn update(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::authenticate(&state, &request).await?;
    let now = caller.now;
    let client_id = path.into_inner();
    let body: UpdateAdminBody =
        read_json(&request, payload, state.max_body_bytes, state.body_timeout).await?;
    let address = caller.address;
    let updated = caller
        .run(move |context, admin, now| {
            admins::update_as_admin(
                context,
                admin,
                address,
                &client_id,
                &admins::RequestedChange {
                    enabled: body.enabled,
                    role: body.role.as_deref(),
                    sites: body.sites.as_deref(),
                },
                now,
            )
        })
        .await?;
    Ok(answer(AdminView::new(updated, now)))
}

/// Replace an admin's client secret, optionally keeping the old one working for a while (platform
/// admins only; an admin's own secret included).
///
/// During the overlap both secrets get admin tokens; after it only the new one. A rotation during
/// an overlap ends that older overlap at once, so at most two secrets are ever valid. Admin tokens
/// already issued keep working until they expire; disabling the admin ends them at once. Recorded
/// in the audit trail with the overlap (never a secret).
#[utoipa::path(
    post,
    path = "/admin/v1/admins/{client_id}/secret",
    tag = "admin",
    params(("client_id" = String, Path, description = "The admin's client id")),
    request_body(content = Option<RotationBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "Rotated; `client_secret` is shown this once only", body = RotatedSecretView),
        (status = 403, description = "`forbidden` for site managers; `insufficient_scope` for a site token", body = ErrorBody),
        (status = 404, description = "No such admin", body = ErrorBody),
        (status = 422, description = "`validation_failed`: an unknown field, or `overlap_seconds` not a whole number from 0 to 604800", body = ErrorBody),
        JsonBodyRefusals,
    ),
    security(("admin_token" = []))
)]
pub async fn rotate_secret(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    rotate_client_secret(
        state,
        request,
        path,
        payload,
        |context, admin, address, id, overlap, now| {
            let (rotated, secret) =
                admins::rotate_secret_as_admin(context, admin, address, id, overlap, now)?;
            Ok((
                rotated.admin.client_id,
                secret,
                rotated.admin.previous_secret_valid_until,
            ))
        },
    )
    .await
}

impl AdminView {
    fn new(entry: AdminWithSites, now: NaiveDateTime) -> Self {
        let every_site = entry.admin.manages_every_site();
        AdminView {
            previous_secret_valid_until: overlap_end(entry.admin.previous_secret_valid_until, now)
                .map(rfc3339),
            role: entry.admin.role.as_str(),
            enabled: entry.admin.enabled,
            site_keys: (!every_site).then_some(entry.site_keys),
            created_at: rfc3339(entry.admin.created_at),
            client_id: entry.admin.client_id,
            name: entry.admin.name,
        }
    }
}
