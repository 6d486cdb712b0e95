//! Handlers of the OAuth 2.0 endpoints: parse, call the service in `web::block`, answer.
//! `/oauth2/token` first tries to answer from memory on the HTTP worker.

use std::time::Instant;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::body::read_form;
use super::error::ApiError;
use super::request_id;
use super::AppState;
use crate::domain::request::{InvalidateRequest, RevocationRequest, TokenRequest};
use crate::domain::throttle::Origin;
use crate::service::{primary_token, token_grant};

/// A successful access token response (RFC 6749 5.1).
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// The bearer token (RFC 6750).
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Admin tokens only: seconds until the token expires. A primary token never expires, so it
    /// has none (RFC 6749 5.1 makes `expires_in` optional).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
    /// Admin tokens only: always `admin`. A primary token carries no scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<&'static str>,
}

/// Answer to a successful `/oauth2/invalidate_token`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct InvalidatedResponse {
    /// Always `true`: the token is (now, or already) invalid.
    pub invalidated: bool,
}

/// Issue the site's primary token, or an admin token (client credentials grant).
///
/// RFC 6749 4.4. Client authentication by HTTP Basic or `client_id`/`client_secret` in the body
/// (RFC 6749 2.3.1), not both. Sites get their primary token, the same on every call until it is
/// invalidated, without `expires_in` because it never expires. Admins get a new short-lived admin
/// token on every call, with `expires_in` and `scope: "admin"` (they may send `scope=admin` or no
/// scope); a site asking for `scope=admin` gets `invalid_scope`.
#[utoipa::path(
    post,
    path = "/oauth2/token",
    tag = "oauth2",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The site's primary token, or an admin token", body = TokenResponse),
        (status = 400, description = "Malformed request, unsupported grant type or invalid scope", body = super::error::ErrorBody),
        (status = 401, description = "Client authentication failed", body = super::error::ErrorBody,
            headers(("WWW-Authenticate" = String, description = "Basic realm=\"tokenwarden\""))),
        (status = 413, description = "Body over the size limit", body = super::error::ErrorBody),
        (status = 429, description = "Too many failed client authentications for this client id or from this address",
            body = super::error::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the lock ends"))),
        (status = 503, description = "Database unavailable", body = super::error::ErrorBody),
    ),
    security((), ("client_secret_basic" = []))
)]
pub async fn token(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let token_request: TokenRequest =
        read_form(&request, payload, state.max_body_bytes, state.body_timeout).await?;
    let now = crate::clock::now();
    // Repeat requests are answered on this worker; anything needing the database goes to the pool.
    let origin = origin(&state, &request);
    let issued = match token_grant::issue_from_memory(&state.context, &token_request, &origin, now)?
    {
        Some(issued) => issued,
        None => {
            let context = state.context.clone();
            request_id::block(move || token_grant::issue(&context, &token_request, &origin, now))
                .await??
        }
    };
    Ok(no_store(HttpResponse::Ok())
        .insert_header(json_content_type())
        .json(TokenResponse {
            access_token: issued.value.expose().to_string(),
            token_type: "Bearer",
            expires_in: issued.expires_in,
            scope: issued.scope,
        }))
}

/// Invalidate the site's primary token.
///
/// The next `/oauth2/token` mints a new value. Repeating the call for an already invalidated
/// primary token is harmless. Any token that is not this site's primary token gets the same
/// `invalid_request`, whatever it is.
#[utoipa::path(
    post,
    path = "/oauth2/invalidate_token",
    tag = "oauth2",
    request_body(content = InvalidateForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The token is invalid from now on", body = InvalidatedResponse),
        (status = 400, description = "Not this site's primary token, or a malformed request", body = super::error::ErrorBody),
        (status = 401, description = "Client authentication failed", body = super::error::ErrorBody),
        (status = 413, description = "Body over the size limit", body = super::error::ErrorBody),
        (status = 429, description = "Too many failed client authentications for this client id or from this address",
            body = super::error::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the lock ends"))),
        (status = 503, description = "Database unavailable", body = super::error::ErrorBody),
    ),
    security((), ("client_secret_basic" = []))
)]
pub async fn invalidate_token(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let invalidate: InvalidateRequest =
        read_form(&request, payload, state.max_body_bytes, state.body_timeout).await?;
    let context = state.context.clone();
    let now = crate::clock::now();
    let origin = origin(&state, &request);
    request_id::block(move || primary_token::invalidate(&context, &invalidate, &origin, now))
        .await??;
    Ok(no_store(HttpResponse::Ok()).json(InvalidatedResponse { invalidated: true }))
}

/// Token revocation (RFC 7009).
///
/// With site credentials: invalidates the site's primary token; another site's token, or one that
/// is unknown, is answered 200 and left alone (RFC 7009 2.2); the site's own non-primary token is
/// refused with `unsupported_token_type` (RFC 7009 2.2.1: those are managed in the admin scope) and
/// stays active. With admin credentials: ends one of the admin's own admin tokens (200 otherwise,
/// and nothing changes).
#[utoipa::path(
    post,
    path = "/oauth2/revoke",
    tag = "oauth2",
    request_body(content = RevokeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke"),
        (status = 400, description = "Malformed request, or `unsupported_token_type` for the site's own non-primary token", body = super::error::ErrorBody),
        (status = 401, description = "Client authentication failed", body = super::error::ErrorBody),
        (status = 413, description = "Body over the size limit", body = super::error::ErrorBody),
        (status = 429, description = "Too many failed client authentications for this client id or from this address",
            body = super::error::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the lock ends"))),
        (status = 503, description = "Database unavailable", body = super::error::ErrorBody),
    ),
    security((), ("client_secret_basic" = []))
)]
pub async fn revoke(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let revocation: RevocationRequest =
        read_form(&request, payload, state.max_body_bytes, state.body_timeout).await?;
    let context = state.context.clone();
    let now = crate::clock::now();
    let origin = origin(&state, &request);
    request_id::block(move || primary_token::revoke(&context, &revocation, &origin, now)).await??;
    Ok(no_store(HttpResponse::Ok()).finish())
}

/// Who is authenticating, for the brute-force throttle: the client's address
/// (`super::client_address`) and a monotonic instant.
pub(super) fn origin(state: &AppState, request: &HttpRequest) -> Origin {
    Origin {
        address: super::client_address(&state.trusted_proxies, request),
        at: Instant::now(),
    }
}

/// RFC 6749 5.1: responses carrying tokens or credentials must not be cached.
pub(super) fn no_store(
    mut builder: actix_web::HttpResponseBuilder,
) -> actix_web::HttpResponseBuilder {
    builder
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")));
    builder
}

/// `Content-Type: application/json` as a ready header: `ContentType::json()`, and `.json()` on a
/// builder without one, render the media type into a new header value on every response.
pub(super) fn json_content_type() -> (header::HeaderName, HeaderValue) {
    (
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )
}

/// Form fields of `/oauth2/token` (documentation only; parsing is `domain::request`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TokenForm {
    /// Must be `client_credentials`.
    #[schema(pattern = "^client_credentials$")]
    grant_type: String,
    /// Site key, when not sent by HTTP Basic.
    #[schema(nullable = false)]
    client_id: Option<String>,
    /// Auth key, when not sent by HTTP Basic.
    #[schema(nullable = false)]
    client_secret: Option<String>,
    /// Not available to site credentials. Space-separated scope tokens (RFC 6749 3.3); empty is
    /// the same as absent.
    #[schema(
        nullable = false,
        pattern = r"^$|^ *[\x21\x23-\x5B\x5D-\x7E]+( +[\x21\x23-\x5B\x5D-\x7E]+)* *$"
    )]
    scope: Option<String>,
}

/// Form fields of `/oauth2/invalidate_token`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct InvalidateForm {
    /// The site's current primary token.
    #[schema(min_length = 1)]
    access_token: String,
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    client_secret: Option<String>,
}

/// Form fields of `/oauth2/revoke` (RFC 7009 2.1).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RevokeForm {
    /// The token to revoke.
    #[schema(min_length = 1)]
    token: String,
    /// `access_token` or `refresh_token`; advisory only.
    #[schema(nullable = false)]
    token_type_hint: Option<String>,
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    client_secret: Option<String>,
}
