//! The OAuth 2.0 error vocabulary (RFC 6749 section 5.2, RFC 7009 section 2.2.1, RFC 6750
//! section 3.1), independent of HTTP: `http::error` decides status codes and headers.

use std::borrow::Cow;

/// Error codes a client may receive, each as the RFC defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthErrorCode {
    /// RFC 6749 5.2: "The request is missing a required parameter, includes an unsupported
    /// parameter value (other than grant type), repeats a parameter, includes multiple credentials,
    /// utilizes more than one mechanism for authenticating the client, or is otherwise malformed."
    InvalidRequest,
    /// RFC 6749 5.2: "Client authentication failed (e.g., unknown client, no client authentication
    /// included, or unsupported authentication method)."
    InvalidClient,
    /// RFC 6749 5.2: "The authorization grant type is not supported by the authorization server."
    UnsupportedGrantType,
    /// RFC 6749 5.2: "The requested scope is invalid, unknown, malformed, or exceeds the scope
    /// granted by the resource owner."
    InvalidScope,
    /// RFC 6749 5.2: "The authenticated client is not authorized to use this authorization grant
    /// type."
    UnauthorizedClient,
    /// RFC 7009 2.2.1: "The authorization server does not support the revocation of the presented
    /// token type."
    UnsupportedTokenType,
    /// RFC 6750 3.1: "The access token provided is expired, revoked, malformed, or invalid for other
    /// reasons."
    InvalidToken,
    /// RFC 6750 3.1: "The request requires higher privileges than provided by the access token."
    InsufficientScope,
}

impl OAuthErrorCode {
    /// The exact string the RFCs register for the `error` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthErrorCode::InvalidRequest => "invalid_request",
            OAuthErrorCode::InvalidClient => "invalid_client",
            OAuthErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthErrorCode::InvalidScope => "invalid_scope",
            OAuthErrorCode::UnauthorizedClient => "unauthorized_client",
            OAuthErrorCode::UnsupportedTokenType => "unsupported_token_type",
            OAuthErrorCode::InvalidToken => "invalid_token",
            OAuthErrorCode::InsufficientScope => "insufficient_scope",
        }
    }
}

/// An error answer to an OAuth request: a code and a human-readable description (RFC 6749 5.2
/// `error_description`: ASCII only, never a secret, never internal detail).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct OAuthError {
    pub code: OAuthErrorCode,
    pub description: Cow<'static, str>,
}

impl OAuthError {
    pub fn new(code: OAuthErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }

    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(OAuthErrorCode::InvalidRequest, description)
    }

    /// One description for every authentication failure (unknown client, wrong secret, disabled
    /// site) so the answer does not reveal which site keys exist.
    pub fn invalid_client() -> Self {
        Self::new(
            OAuthErrorCode::InvalidClient,
            "client authentication failed",
        )
    }
}
