//! The platform API: what platform admins provision over HTTP instead of with the CLI. Sites:
//! `POST /admin/v1/sites`, `PATCH /admin/v1/sites/{site_key}` and
//! `POST /admin/v1/sites/{site_key}/auth-key`, and the body and answer every secret rotation shares
//! (a site's auth key here, a resource server's or an admin's client secret in their files). Site managers may rotate the auth keys of the sites
//! they manage (others are not found, as everywhere in the admin API); everything else gets them
//! 403 `forbidden`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::admin::{answer, rfc3339, Caller, JsonBodyRefusals, SiteView};
use super::error::{ApiError, ErrorBody};
use super::oauth::no_store;
use super::AppState;
use crate::domain::admin::Admin;
use crate::domain::rotation::RequestedOverlap;
use crate::domain::secret::Secret;
use crate::service::{sites, Context, ServiceError};

/// Body of `POST /admin/v1/sites`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSiteBody {
    /// 1 to 100 characters after trimming, no control characters (the CLI's rule).
    // Missing reads as empty, so it is refused by the name rule, naming the field.
    #[serde(default)]
    pub name: String,
}

/// Body of `PATCH /admin/v1/sites/{site_key}`: at least one of the two.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSiteBody {
    /// A new name (same rule as on creation).
    pub name: Option<String>,
    /// `false` disables the site: it cannot get tokens and its tokens stop working at once;
    /// `true` enables it again.
    pub enabled: Option<bool>,
}

/// Body of a rotation (`POST …/sites/{site_key}/auth-key`, `POST …/resource-servers/{client_id}/secret`,
/// `POST …/admins/{client_id}/secret`); optional.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotationBody {
    /// Seconds the replaced auth key or secret keeps working, 0 to 604800 (7 days). Absent, `null`
    /// or 0: it stops at once. One an earlier rotation replaced stops at once either way.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 604800)]
    pub overlap_seconds: Option<RequestedOverlap>,
}

/// A site's new auth key, shown in this answer only.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RotatedAuthKeyView {
    pub site_key: String,
    /// The site's new client secret, shown this once only: store it now.
    pub auth_key: String,
    /// RFC 3339, UTC: until when the replaced auth key also works; `null` when it stopped with
    /// the rotation.
    pub previous_valid_until: Option<String>,
}

/// A resource server's or an admin's new client secret, shown in this answer only.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RotatedSecretView {
    pub client_id: String,
    /// The new client secret, shown this once only: store it now.
    pub client_secret: String,
    /// RFC 3339, UTC: until when the replaced secret also works; `null` when it stopped with the
    /// rotation.
    pub previous_valid_until: Option<String>,
}

/// What a client-secret rotation use case answers: the client id, the new secret, and until when
/// the replaced one works.
pub(super) type RotatedClient = (String, Secret, Option<chrono::NaiveDateTime>);

/// The body of a client-secret rotation handler (a resource server's or an admin's): the optional
/// [`RotationBody`], then `rotate` (a service use case) as the calling admin, answered as a
/// [`RotatedSecretView`] with `Cache-Control: no-store`.
pub(super) async fn rotate_client_secret<F>(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    rotate: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce(
            &Context,
            &Admin,
            Option<std::net::IpAddr>,
            &str,
            Option<&RequestedOverlap>,
            chrono::NaiveDateTime,
        ) -> Result<RotatedClient, ServiceError>
        + Send
        + 'static,
{
    let (caller, body): (_, RotationBody) = Caller::with_json(&state, &request, payload).await?;
    let client_id = path.into_inner();
    let address = caller.address;
    let (client_id, secret, previous_valid_until) = caller
        .run(move |context, admin, now| {
            rotate(
                context,
                admin,
                address,
                &client_id,
                body.overlap_seconds.as_ref(),
                now,
            )
        })
        .await?;
    Ok(answer(RotatedSecretView {
        client_id,
        client_secret: secret.expose().to_string(),
        previous_valid_until: previous_valid_until.map(rfc3339),
    }))
}

/// A site just created: its credentials, the auth key shown in this answer only.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedSiteView {
    pub site_key: String,
    /// The site's client secret, shown this once only: store it now.
    pub auth_key: String,
    pub name: String,
    pub enabled: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// Create a site (platform admins only).
///
/// The answer holds the site key and the auth key; the auth key is shown this once only. Recorded
/// in the audit trail with this admin as actor.
#[utoipa::path(
    post,
    path = "/admin/v1/sites",
    tag = "admin",
    request_body(content = CreateSiteBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; `auth_key` is shown this once only", body = CreatedSiteView,
            headers(("Location" = String, description = "The new site's URL"))),
        (status = 403, description = "`forbidden` for site managers; `insufficient_scope` for a site token", body = ErrorBody),
        (status = 422, description = "`validation_failed`: the name breaks its rule", body = ErrorBody),
        JsonBodyRefusals,
    ),
    security(("admin_token" = []))
)]
pub async fn create_site(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (caller, body): (_, CreateSiteBody) = Caller::with_json(&state, &request, payload).await?;
    let address = caller.address;
    let (site, credentials) = caller
        .run(move |context, admin, now| {
            sites::create_as_admin(context, admin, address, &body.name, now)
        })
        .await?;
    Ok(no_store(HttpResponse::Created())
        .insert_header((
            header::LOCATION,
            format!("/admin/v1/sites/{}", site.site_key),
        ))
        .json(CreatedSiteView {
            site_key: credentials.site_key,
            auth_key: credentials.auth_key.expose().to_string(),
            name: site.name,
            enabled: site.enabled,
            created_at: rfc3339(site.created_at),
        }))
}

/// Rename, disable or enable a site (platform admins only).
///
/// Disabling refuses the site's credentials and every token of it from the next request on, on
/// every node; enabling brings the same tokens back. Each effective change is recorded in the
/// audit trail.
#[utoipa::path(
    patch,
    path = "/admin/v1/sites/{site_key}",
    tag = "admin",
    params(("site_key" = String, Path, description = "The site key")),
    request_body(content = UpdateSiteBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The site as it now is", body = SiteView),
        (status = 403, description = "`forbidden` for site managers; `insufficient_scope` for a site token", body = ErrorBody),
        (status = 404, description = "No such site", body = ErrorBody),
        (status = 422, description = "`validation_failed`: an unknown field, an empty object, a wrong type or a name that breaks its rule", body = ErrorBody),
        JsonBodyRefusals,
    ),
    security(("admin_token" = []))
)]
pub async fn update_site(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (caller, body): (_, UpdateSiteBody) = Caller::with_json(&state, &request, payload).await?;
    let site_key = path.into_inner();
    let (address, now) = (caller.address, caller.now);
    let summary = caller
        .run(move |context, admin, now| {
            sites::update_as_admin(
                context,
                admin,
                address,
                &site_key,
                body.name.as_deref(),
                body.enabled,
                now,
            )
        })
        .await?;
    Ok(answer(SiteView::new(summary, now)))
}

/// Replace a site's auth key, optionally keeping the old one working for a while.
///
/// During the overlap both keys authenticate the site, wherever it authenticates; after it, on
/// every node, only the new one. A rotation during an overlap ends that older overlap at once, so
/// at most two keys are ever valid. Platform admins may rotate any site, site managers the sites
/// they manage. Recorded in the audit trail with the overlap (never a key).
#[utoipa::path(
    post,
    path = "/admin/v1/sites/{site_key}/auth-key",
    tag = "admin",
    params(("site_key" = String, Path, description = "The site key")),
    request_body(content = Option<RotationBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "Rotated; `auth_key` is shown this once only", body = RotatedAuthKeyView),
        (status = 403, description = "`insufficient_scope` for a site token", body = ErrorBody),
        (status = 404, description = "No such site, or not one the caller manages", body = ErrorBody),
        (status = 422, description = "`validation_failed`: an unknown field, or `overlap_seconds` not a whole number from 0 to 604800", body = ErrorBody),
        JsonBodyRefusals,
    ),
    security(("admin_token" = []))
)]
pub async fn rotate_auth_key(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (caller, body): (_, RotationBody) = Caller::with_json(&state, &request, payload).await?;
    let site_key = path.into_inner();
    let address = caller.address;
    let rotated = caller
        .run(move |context, admin, now| {
            sites::rotate_auth_key_as_admin(
                context,
                admin,
                address,
                &site_key,
                body.overlap_seconds.as_ref(),
                now,
            )
        })
        .await?;
    Ok(answer(RotatedAuthKeyView {
        site_key: rotated.site.site_key,
        auth_key: rotated.auth_key.expose().to_string(),
        previous_valid_until: rotated.site.previous_auth_key_valid_until.map(rfc3339),
    }))
}
