//! Reading request bodies: bounded in size, in the one media type each endpoint accepts.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::domain::oauth_error::OAuthError;
use crate::domain::request::{AuthorizationHeader, Params};

/// Reads the body of an OAuth endpoint (RFC 6749 3.2: `application/x-www-form-urlencoded`) and the
/// `Authorization` header.
pub async fn read_form(
    request: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    timeout: Duration,
) -> Result<(AuthorizationHeader, Params), ApiError> {
    refuse_declared_oversize(request, limit)?;
    if !has_media_type(request, "application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request(
            "the request body must be application/x-www-form-urlencoded",
        )
        .into());
    }
    let body = read_limited(payload, limit, timeout).await?;
    let authorization = AuthorizationHeader::parse(
        request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
    )?;
    Ok((authorization, Params::parse(&body)?))
}

/// Reads an `application/json` body of the admin API into `T`, which must be a JSON object (serde
/// would otherwise also read a struct from an array of its fields). An empty body sent without a
/// `Content-Type` is `T::default()`, for actions whose fields are all optional.
///
/// Unreadable JSON is 400; JSON of the wrong shape (not an object, unknown or missing field, wrong
/// type) is 422; another media type is 415 (RFC 9110 15.5.16).
pub async fn read_json<T: DeserializeOwned + Default>(
    request: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    timeout: Duration,
) -> Result<T, ApiError> {
    refuse_declared_oversize(request, limit)?;
    let body = read_limited(payload, limit, timeout).await?;
    if body.is_empty() && !request.headers().contains_key(header::CONTENT_TYPE) {
        return Ok(T::default());
    }
    if !has_media_type(request, "application/json") {
        return Err(ApiError::UnsupportedMediaType {
            expected: "application/json",
        });
    }
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|error| ApiError::MalformedJson(error.to_string()))?;
    if !value.is_object() {
        return Err(ApiError::JsonShape(
            "the request body must be a JSON object".into(),
        ));
    }
    serde_json::from_value(value).map_err(|error| ApiError::JsonShape(shape_error(&error)))
}

/// serde's message, except that an unknown field is not named: the name is the client's own text,
/// which may be a secret sent in the wrong place, and error descriptions get logged and shown.
fn shape_error(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.strip_prefix("unknown field `") {
        Some(rest) => match rest.split_once(", expected") {
            Some((_, expected)) => format!("the body has an unknown field; expected{expected}"),
            None => "the body has an unknown field".into(),
        },
        None => message,
    }
}

/// A declared size over `limit` is refused before anything is read.
fn refuse_declared_oversize(request: &HttpRequest, limit: usize) -> Result<(), ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(())
}

/// Reads the body, refusing it as soon as it grows past `limit` (a chunked body declares no size),
/// or when it has not fully arrived within `timeout`: actix bounds only the time to send a request
/// head, so without this a client could hold a connection by sending its body a byte at a time.
async fn read_limited(
    mut payload: web::Payload,
    limit: usize,
    timeout: Duration,
) -> Result<web::BytesMut, ApiError> {
    let read = async {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| ApiError::UnreadableBody)?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    actix_web::rt::time::timeout(timeout, read)
        .await
        .map_err(|_| ApiError::BodyTimeout { timeout })?
}

/// Whether the `Content-Type` essence (parameters such as `charset` aside) is `expected`.
fn has_media_type(request: &HttpRequest, expected: &str) -> bool {
    let Some(content_type) = request.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(content_type) = content_type.to_str() else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case(expected)
}
