//! Reading OAuth request bodies: bounded in size, form-encoded only.

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;

use super::error::ApiError;
use crate::domain::oauth_error::OAuthError;
use crate::domain::request::{AuthorizationHeader, Params};

/// Reads the body of an OAuth endpoint (RFC 6749 3.2: `application/x-www-form-urlencoded`) and the
/// `Authorization` header. A declared or actual size over `limit` is refused before parsing.
pub async fn read_form(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<(AuthorizationHeader, Params), ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    if !is_form_urlencoded(request) {
        return Err(OAuthError::invalid_request(
            "the request body must be application/x-www-form-urlencoded",
        )
        .into());
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ApiError::UnreadableBody)?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    let authorization = AuthorizationHeader::parse(
        request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
    )?;
    Ok((authorization, Params::parse(&body)?))
}

fn is_form_urlencoded(request: &HttpRequest) -> bool {
    let Some(content_type) = request.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(content_type) = content_type.to_str() else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
}
