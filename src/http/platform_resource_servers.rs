//! The platform API's resource servers: `GET`/`POST /admin/v1/resource-servers`, `GET`/`DELETE
//! /admin/v1/resource-servers/{client_id}` and `POST /admin/v1/resource-servers/{client_id}/secret`,
//! the HTTP face of `tokenwarden resource-server …`
//! (the same use cases in `service::resource_servers`, recorded with the calling admin as actor).
//! Platform admins only; site managers get 403 `forbidden`. Kept apart from `platform.rs` (sites)
//! so that each subject's handlers and views live in one file.

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
use crate::domain::audience::ResourceServer;
use crate::domain::rotation::overlap_end;
use crate::service::resource_servers;

/// Body of `POST /admin/v1/resource-servers`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateResourceServerBody {
    /// 1 to 100 characters after trimming, no control characters (the CLI's rule).
    // Missing reads as empty, so it is refused by the name rule, naming the field.
    #[serde(default)]
    pub name: String,
    /// Site keys: the resource server may introspect only these sites' tokens (1 to 1000 keys).
    /// Without it (or `null`), it may introspect every site's.
    #[schema(min_items = 1, max_items = 1000)]
    pub sites: Option<Vec<String>>,
}

/// A resource server as the platform API shows it (never its secret).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ResourceServerView {
    pub client_id: String,
    pub name: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The keys of the sites whose tokens it may introspect, sorted; `null`: every site's.
    pub site_keys: Option<Vec<String>>,
    /// RFC 3339, UTC: until when the secret its last rotation replaced also works; `null` when
    /// only the current secret works.
    pub previous_secret_valid_until: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ResourceServersResponse {
    /// Oldest first.
    pub resource_servers: Vec<ResourceServerView>,
}

/// A resource server just created: its credentials, the secret shown in this answer only.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedResourceServerView {
    pub client_id: String,
    /// The client secret for `/oauth2/introspect`, shown this once only: store it now.
    pub client_secret: String,
    pub name: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// As in `ResourceServerView`.
    pub site_keys: Option<Vec<String>>,
}

/// List resource servers (platform admins only).
#[utoipa::path(
    get,
    path = "/admin/v1/resource-servers",
    tag = "admin",
    responses(
        (status = 200, description = "Every resource server, oldest first", body = ResourceServersResponse),
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
    let servers = caller
        .run(|context, admin, _| resource_servers::list_as_admin(context, admin))
        .await?;
    Ok(answer(ResourceServersResponse {
        resource_servers: servers
            .into_iter()
            .map(|server| ResourceServerView::new(server, now))
            .collect(),
    }))
}

/// Create a resource server (platform admins only).
///
/// The answer holds the client id and secret; the secret is shown this once only. With `sites`,
/// the resource server may introspect only those sites' tokens. Recorded in the audit trail with
/// this admin as actor.
#[utoipa::path(
    post,
    path = "/admin/v1/resource-servers",
    tag = "admin",
    request_body(content = CreateResourceServerBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; `client_secret` is shown this once only", body = CreatedResourceServerView,
            headers(("Location" = String, description = "The new resource server's URL"))),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing, unknown or expired admin token", body = ErrorBody),
        (status = 403, description = "`forbidden` for site managers; `insufficient_scope` for a site token", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "`validation_failed`: the name breaks its rule, `sites` is empty or names no site, an unknown field or a wrong type", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn create(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::authenticate(&state, &request).await?;
    let body: CreateResourceServerBody =
        read_json(&request, payload, state.max_body_bytes, state.body_timeout).await?;
    let address = caller.address;
    let (server, secret) = caller
        .run(move |context, admin, now| {
            resource_servers::create_as_admin(
                context,
                admin,
                address,
                &body.name,
                body.sites.as_deref(),
                now,
            )
        })
        .await?;
    Ok(no_store(HttpResponse::Created())
        .insert_header((header::LOCATION, resource_server_path(&server.client_id)))
        .json(CreatedResourceServerView {
            client_secret: secret.expose().to_string(),
            client_id: server.client_id,
            name: server.name,
            created_at: rfc3339(server.created_at),
            site_keys: server.site_keys,
        }))
}

/// One resource server (platform admins only).
#[utoipa::path(
    get,
    path = "/admin/v1/resource-servers/{client_id}",
    tag = "admin",
    params(("client_id" = String, Path, description = "The resource server's client id")),
    responses(
        (status = 200, description = "The resource server", body = ResourceServerView),
        (status = 401, description = "Missing, unknown or expired admin token", body = ErrorBody),
        (status = 403, description = "`forbidden` for site managers; `insufficient_scope` for a site token", body = ErrorBody),
        (status = 404, description = "No such resource server", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn get(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::authenticate(&state, &request).await?;
    let client_id = path.into_inner();
    let now = caller.now;
    let server = caller
        .run(move |context, admin, _| resource_servers::get_as_admin(context, admin, &client_id))
        .await?;
    Ok(answer(ResourceServerView::new(server, now)))
}

/// Replace a resource server's client secret, optionally keeping the old one working for a while
/// (platform admins only).
///
/// During the overlap both secrets authenticate at `/oauth2/introspect`; after it, on every node,
/// only the new one. A rotation during an overlap ends that older overlap at once, so at most two
/// secrets are ever valid. Recorded in the audit trail with the overlap (never a secret).
#[utoipa::path(
    post,
    path = "/admin/v1/resource-servers/{client_id}/secret",
    tag = "admin",
    params(("client_id" = String, Path, description = "The resource server's client id")),
    request_body(content = Option<RotationBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "Rotated; `client_secret` is shown this once only", body = RotatedSecretView),
        (status = 403, description = "`forbidden` for site managers; `insufficient_scope` for a site token", body = ErrorBody),
        (status = 404, description = "No such resource server", body = ErrorBody),
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
            let (server, secret) = resource_servers::rotate_secret_as_admin(
                context, admin, address, id, overlap, now,
            )?;
            Ok((server.client_id, secret, server.previous_secret_valid_until))
        },
    )
    .await
}

/// Delete a resource server (platform admins only).
///
/// Its credentials are refused from the next request on, on every node, and it leaves every
/// token's audience. Recorded in the audit trail with this admin as actor.
#[utoipa::path(
    delete,
    path = "/admin/v1/resource-servers/{client_id}",
    tag = "admin",
    params(("client_id" = String, Path, description = "The resource server's client id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing, unknown or expired admin token", body = ErrorBody),
        (status = 403, description = "`forbidden` for site managers; `insufficient_scope` for a site token", body = ErrorBody),
        (status = 404, description = "No such resource server", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn delete(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::authenticate(&state, &request).await?;
    let client_id = path.into_inner();
    let address = caller.address;
    caller
        .run(move |context, admin, now| {
            resource_servers::delete_as_admin(context, admin, address, &client_id, now)
        })
        .await?;
    Ok(no_store(HttpResponse::NoContent()).finish())
}

fn resource_server_path(client_id: &str) -> String {
    format!("/admin/v1/resource-servers/{client_id}")
}

impl ResourceServerView {
    fn new(server: ResourceServer, now: NaiveDateTime) -> Self {
        ResourceServerView {
            previous_secret_valid_until: overlap_end(server.previous_secret_valid_until, now)
                .map(rfc3339),
            client_id: server.client_id,
            name: server.name,
            created_at: rfc3339(server.created_at),
            site_keys: server.site_keys,
        }
    }
}
