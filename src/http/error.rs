//! The one place where errors become HTTP responses.
//!
//! Every error answer has the RFC 6749 5.2 shape, `{"error": …, "error_description": …}`, is
//! `application/json`, and carries `Cache-Control: no-store` like every OAuth answer. A 5xx logs its
//! whole cause chain and tells the client only `server_error` / `temporarily_unavailable`.

use std::fmt::Write as _;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::admin::{AdminRefusal, ADMIN_SCOPE};
use crate::domain::oauth_error::{OAuthError, OAuthErrorCode};
use crate::service::ServiceError;

/// Realm announced with `invalid_client` (RFC 6749 5.2, RFC 7617).
pub const BASIC_CHALLENGE: &str = "Basic realm=\"tokenwarden\"";
/// The admin API's challenge when a request carries no bearer token (RFC 6750 3: no error code).
pub const BEARER_CHALLENGE: &str = "Bearer realm=\"tokenwarden\"";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body could not be read")]
    UnreadableBody,
    /// The body did not fully arrive in time (`body::read_limited`).
    #[error("the request body did not arrive within {timeout:?}")]
    BodyTimeout { timeout: std::time::Duration },
    #[error("no such endpoint")]
    NotFound,
    /// `allow` is the value of the `Allow` header: the one method the resource answers.
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("the blocking thread pool is gone")]
    BlockingPoolGone,
    /// The admin API was called without `Authorization: Bearer`.
    #[error("an admin token is required")]
    BearerTokenMissing,
    /// `Authorization: Bearer` without a usable token (RFC 6750 3.1 `invalid_request`).
    #[error(transparent)]
    MalformedBearer(OAuthError),
    #[error("the request body must be {expected}")]
    UnsupportedMediaType { expected: &'static str },
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    /// Valid JSON, but not the object the endpoint takes (unknown, missing or mistyped field).
    #[error("{0}")]
    JsonShape(String),
}

/// The RFC 6749 5.2 error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// An RFC error code such as `invalid_request` or `invalid_client`.
    pub error: String,
    /// Human-readable explanation; never contains a secret.
    pub error_description: String,
    /// Admin API `validation_failed` only: the request field that broke a rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Status, error code and description of every error the server can answer with.
fn classify(error: &ApiError) -> (StatusCode, &'static str, String) {
    match error {
        ApiError::OAuth(oauth)
        | ApiError::MalformedBearer(oauth)
        | ApiError::Service(ServiceError::OAuth(oauth)) => (
            oauth_status(oauth.code),
            oauth.code.as_str(),
            oauth.description.to_string(),
        ),
        ApiError::PayloadTooLarge { limit } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            format!("the request body must not exceed {limit} bytes"),
        ),
        ApiError::UnreadableBody => (
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request body could not be read".into(),
        ),
        ApiError::BodyTimeout { timeout } => (
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request",
            format!(
                "the request body must arrive within {} ms",
                timeout.as_millis()
            ),
        ),
        ApiError::NotFound => (
            StatusCode::NOT_FOUND,
            "not_found",
            "no endpoint at this path".into(),
        ),
        ApiError::MethodNotAllowed { .. } => (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not accept that HTTP method".into(),
        ),
        ApiError::Service(ServiceError::Admin(refusal)) => admin_refusal(refusal),
        ApiError::BearerTokenMissing => (
            StatusCode::UNAUTHORIZED,
            OAuthErrorCode::InvalidToken.as_str(),
            "an admin token is required: Authorization: Bearer <token from /oauth2/token>".into(),
        ),
        ApiError::UnsupportedMediaType { expected } => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            format!("the request body must be {expected}"),
        ),
        ApiError::MalformedJson(cause) => (
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("the request body is not valid JSON: {cause}"),
        ),
        ApiError::JsonShape(cause) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            VALIDATION_FAILED,
            cause.clone(),
        ),
        ApiError::Service(ServiceError::Throttled(throttled)) => (
            StatusCode::TOO_MANY_REQUESTS,
            THROTTLED,
            throttled.to_string(),
        ),
        ApiError::Service(error) if error.is_unavailable() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the database is unavailable; retry shortly".into(),
        ),
        ApiError::Service(_) | ApiError::BlockingPoolGone => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the server could not complete the request".into(),
        ),
    }
}

/// The code of a 429 from brute-force throttling (`domain::throttle`). RFC 6749 5.2 defines no code
/// for it, and RFC 6585 4 defines the status but no body. `temporarily_unavailable` (RFC 6749
/// 4.1.2.1: "unable to handle the request due to a temporary overloading") is the registered code
/// that tells a client what to do, retry later, and this server already answers it for an
/// unreachable database (503); the status and `Retry-After` say which case and how long. Not
/// `invalid_client`, which would be a lie for correct credentials, nor RFC 8628's `slow_down`,
/// which belongs to device-flow polling.
const THROTTLED: &str = "temporarily_unavailable";

/// The admin API's own error codes, beside the RFC ones.
const VALIDATION_FAILED: &str = "validation_failed";

fn admin_refusal(refusal: &AdminRefusal) -> (StatusCode, &'static str, String) {
    let (status, code) = match refusal {
        AdminRefusal::SiteNotFound
        | AdminRefusal::TokenNotFound
        | AdminRefusal::BulkTokenNotFound(_)
        | AdminRefusal::ResourceServerNotFound
        | AdminRefusal::AdminNotFound => (StatusCode::NOT_FOUND, "not_found"),
        AdminRefusal::TokenLimitReached => (StatusCode::CONFLICT, "token_limit_reached"),
        AdminRefusal::PrimaryTokenManagedByOAuth | AdminRefusal::BulkPrimaryToken(_) => {
            (StatusCode::CONFLICT, "primary_token_managed_by_oauth")
        }
        AdminRefusal::PlatformAdminsOnly => (StatusCode::FORBIDDEN, "forbidden"),
        AdminRefusal::CannotChangeOwnAccess => (StatusCode::CONFLICT, "cannot_change_own_access"),
        AdminRefusal::LastPlatformAdmin => (StatusCode::CONFLICT, "last_platform_admin"),
        AdminRefusal::InvalidField { .. } => (StatusCode::UNPROCESSABLE_ENTITY, VALIDATION_FAILED),
    };
    (status, code, refusal.to_string())
}

/// The RFC 6750 3 challenge of a refused admin API request, if it is one. Only fixed texts go into
/// it, so nothing a client sent can break out of its quoted strings.
fn bearer_challenge(error: &ApiError) -> Option<String> {
    let code = match error {
        ApiError::BearerTokenMissing => return Some(BEARER_CHALLENGE.to_string()),
        ApiError::MalformedBearer(_) => {
            return Some(format!("{BEARER_CHALLENGE}, error=\"invalid_request\""))
        }
        ApiError::OAuth(oauth) | ApiError::Service(ServiceError::OAuth(oauth)) => oauth.code,
        _ => return None,
    };
    match code {
        OAuthErrorCode::InvalidToken => {
            Some(format!("{BEARER_CHALLENGE}, error=\"invalid_token\""))
        }
        OAuthErrorCode::InsufficientScope => Some(format!(
            "{BEARER_CHALLENGE}, error=\"insufficient_scope\", scope=\"{ADMIN_SCOPE}\""
        )),
        _ => None,
    }
}

/// RFC 6749 5.2: 400 unless client authentication failed (401); RFC 6750 3.1 for resource access.
fn oauth_status(code: OAuthErrorCode) -> StatusCode {
    match code {
        OAuthErrorCode::InvalidClient | OAuthErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        OAuthErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
        OAuthErrorCode::InvalidRequest
        | OAuthErrorCode::UnsupportedGrantType
        | OAuthErrorCode::InvalidScope
        | OAuthErrorCode::UnauthorizedClient
        | OAuthErrorCode::UnsupportedTokenType => StatusCode::BAD_REQUEST,
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        classify(self).0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, error, error_description) = classify(self);
        if status.is_server_error() {
            log::error!("{status}: {}", cause_chain(self));
        }
        let mut response = HttpResponse::build(status);
        response
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")));
        if status == StatusCode::UNAUTHORIZED && error == OAuthErrorCode::InvalidClient.as_str() {
            // RFC 6749 5.2 asks for the challenge when the client used Basic; RFC 9110 15.5.2
            // requires one on every 401, so it is always sent.
            response.insert_header((header::WWW_AUTHENTICATE, BASIC_CHALLENGE));
        }
        if let Some(challenge) = bearer_challenge(self) {
            response.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        if let ApiError::Service(ServiceError::Throttled(throttled)) = self {
            response.insert_header((header::RETRY_AFTER, throttled.retry_after_secs));
        }
        if let ApiError::BodyTimeout { .. } = self {
            // The rest of the body may still be on its way: the connection cannot carry another
            // request (RFC 9110 15.5.9).
            response.force_close();
        }
        if let ApiError::MethodNotAllowed { allow } = self {
            response.insert_header((header::ALLOW, *allow));
        }
        let field = match self {
            ApiError::Service(ServiceError::Admin(AdminRefusal::InvalidField {
                field, ..
            })) => Some(field.clone()),
            _ => None,
        };
        response.json(ErrorBody {
            error: error.to_string(),
            error_description: within_description_charset(&error_description),
            field,
        })
    }
}

/// RFC 6749 5.2: "Values for the "error_description" parameter MUST NOT include characters
/// outside the set %x20-21 / %x23-5B / %x5D-7E". Descriptions may quote what a client sent (a
/// JSON parser naming an unknown field or a wrong value), so every one passes through here: a
/// double quote becomes `'`, a backslash `/`, anything else outside the set `?`.
pub fn within_description_charset(description: &str) -> String {
    description
        .chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

fn cause_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(chain, ": {cause}");
        source = cause.source();
    }
    chain
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(_: actix_web::error::BlockingError) -> Self {
        ApiError::BlockingPoolGone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_errors_get_their_rfc_status() {
        let cases = [
            (OAuthError::invalid_request("x"), 400),
            (OAuthError::invalid_client(), 401),
            (
                OAuthError::new(OAuthErrorCode::UnsupportedGrantType, "x"),
                400,
            ),
            (OAuthError::new(OAuthErrorCode::InvalidScope, "x"), 400),
            (OAuthError::new(OAuthErrorCode::InsufficientScope, "x"), 403),
        ];
        for (error, status) in cases {
            assert_eq!(ApiError::from(error).status_code().as_u16(), status);
        }
    }

    #[test]
    fn descriptions_stay_within_the_rfc_6749_character_set() {
        let cleaned = within_description_charset("unknown field `d\u{e9}\"s\\c\n`, \u{1f600}");
        assert_eq!(cleaned, "unknown field `d?'s/c?`, ?");
        let allowed = |b: u8| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e);
        assert!(cleaned.bytes().all(allowed));
    }

    #[test]
    fn invalid_client_carries_a_basic_challenge() {
        let response = ApiError::from(OAuthError::invalid_client()).error_response();
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            BASIC_CHALLENGE
        );
        assert_eq!(
            response.headers().get(header::CACHE_CONTROL).unwrap(),
            "no-store"
        );
    }

    #[test]
    fn throttling_is_a_429_with_retry_after() {
        let throttled = crate::domain::throttle::Throttled {
            retry_after_secs: 42,
        };
        let response = ApiError::from(ServiceError::from(throttled)).error_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "42");
        assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    /// Which store failures are "unavailable" is the store's call (`StoreError::is_unavailable`,
    /// tested there and end to end in `tests/it/faults.rs`); anything else is a 500.
    #[test]
    fn other_failures_are_a_500() {
        let broken = ApiError::from(ServiceError::Invariant("test"));
        assert_eq!(broken.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
