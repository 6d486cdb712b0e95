//! `POST /oauth2/introspect` (RFC 7662).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::body::read_form;
use super::error::ApiError;
use super::request_id;
use super::AppState;
use crate::domain::request::IntrospectionRequest;
use crate::service::introspect;

// The shape the OpenAPI document states. The answers themselves are rendered by
// `domain::introspection`, an active token's once per cache entry rather than per request.
/// RFC 7662 2.2. For an inactive token only `active: false` is sent: "the authorization server
/// SHOULD NOT include any additional information about an inactive token".
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct IntrospectionResponse {
    pub active: bool,
    /// Always `Bearer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    /// The site key of the token's site.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The site key again: the site is the resource owner in the client credentials grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Only for tokens with an audience: the client ids of the resource servers it is meant
    /// for, the caller among them (any other is answered `{"active": false}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Vec<String>>,
    /// When the current value was generated (seconds since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Only for tokens that expire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Only for tokens that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `primary` or `secondary`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_name: Option<String>,
}

/// Introspect a token (resource servers only).
///
/// RFC 7662: the resource server authenticates with its own credentials (HTTP Basic or body).
/// Unknown, invalidated, expired or malformed tokens, tokens of disabled sites, tokens of sites the
/// resource server is not limited to, and tokens whose audience does not name it all get
/// `{"active": false}` and nothing else.
#[utoipa::path(
    post,
    path = "/oauth2/introspect",
    tag = "resource servers",
    request_body(content = IntrospectForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The token's state", body = IntrospectionResponse),
        (status = 400, description = "Malformed request", body = super::error::ErrorBody),
        (status = 401, description = "Resource server authentication failed", body = super::error::ErrorBody),
        (status = 413, description = "Body over the size limit", body = super::error::ErrorBody),
        (status = 429, description = "Too many failed client authentications for this client id or from this address",
            body = super::error::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the lock ends"))),
        (status = 503, description = "Database unavailable", body = super::error::ErrorBody),
    ),
    security((), ("resource_server_basic" = []))
)]
pub async fn introspect(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let introspection: IntrospectionRequest =
        read_form(&request, payload, state.max_body_bytes, state.body_timeout).await?;
    let now = crate::clock::now();
    // Cache hits are answered on this worker; anything needing the database goes to the pool.
    let origin = super::oauth::origin(&state, &request);
    let verdict =
        match introspect::introspect_from_memory(&state.context, &introspection, &origin, now)? {
            Some(verdict) => verdict,
            None => {
                let context = state.context.clone();
                request_id::block(move || {
                    introspect::introspect(&context, &introspection, &origin, now)
                })
                .await??
            }
        };
    Ok(super::oauth::no_store(HttpResponse::Ok())
        .insert_header(super::oauth::json_content_type())
        .body(verdict.json().to_owned()))
}

/// Form fields of `/oauth2/introspect` (RFC 7662 2.1).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct IntrospectForm {
    /// The token to check.
    #[schema(min_length = 1)]
    token: String,
    /// Advisory only.
    #[schema(nullable = false)]
    token_type_hint: Option<String>,
    /// Resource server client id, when not sent by HTTP Basic.
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    client_secret: Option<String>,
}
