//! Endpoints that describe the server: RFC 8414 metadata and health checks.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::error::ApiError;
use super::request_id;
use super::AppState;
use crate::service::ServiceError;

/// Authorization server metadata (RFC 8414 2).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Metadata {
    pub issuer: String,
    pub token_endpoint: String,
    pub revocation_endpoint: String,
    pub introspection_endpoint: String,
    pub grant_types_supported: Vec<&'static str>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    pub response_types_supported: Vec<&'static str>,
}

const CLIENT_AUTH_METHODS: [&str; 2] = ["client_secret_basic", "client_secret_post"];

/// OAuth 2.0 authorization server metadata (RFC 8414).
#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    tag = "discovery",
    responses((status = 200, description = "RFC 8414 metadata", body = Metadata))
)]
pub async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    let issuer = &state.issuer;
    let endpoint = |path: &str| format!("{issuer}{path}");
    HttpResponse::Ok().json(Metadata {
        issuer: issuer.clone(),
        token_endpoint: endpoint("/oauth2/token"),
        revocation_endpoint: endpoint("/oauth2/revoke"),
        introspection_endpoint: endpoint("/oauth2/introspect"),
        grant_types_supported: vec!["client_credentials"],
        token_endpoint_auth_methods_supported: CLIENT_AUTH_METHODS.to_vec(),
        revocation_endpoint_auth_methods_supported: CLIENT_AUTH_METHODS.to_vec(),
        introspection_endpoint_auth_methods_supported: CLIENT_AUTH_METHODS.to_vec(),
        // RFC 8414 2 makes this REQUIRED; no authorization endpoint exists, so no response type.
        response_types_supported: vec![],
    })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`
    pub status: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Readiness: the database answers. 503 (JSON) when it does not.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Health),
        (status = 503, description = "Database unreachable", body = super::error::ErrorBody),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let store = state.context.store.clone();
    request_id::block(move || store.ping())
        .await?
        .map_err(ServiceError::from)?;
    Ok(HttpResponse::Ok().json(Health { status: "ok" }))
}
