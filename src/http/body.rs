//! Reading request bodies: bounded in size, in the one media type each endpoint accepts.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::domain::oauth_error::OAuthError;
use crate::domain::request::{AuthorizationHeader, FormRequest, Params};

/// Reads the request of an OAuth endpoint from its body (RFC 6749 3.2:
/// `application/x-www-form-urlencoded`) and its `Authorization` header.
pub async fn read_form<R: FormRequest>(
    request: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    timeout: Duration,
) -> Result<R, ApiError> {
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
    Ok(R::parse(authorization, &Params::parse(&body)?)?)
}

/// Reads an `application/json` body of the admin API into `T`, which must be a JSON object (serde
/// would otherwise also read a struct from an array of its fields). An empty body sent without a
/// `Content-Type`, or the JSON `null`, is `T::default()`, for actions whose fields are all
/// optional (the OpenAPI document describes such an optional body as "null or the object").
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
    parse_json(&body)
}

/// The JSON rules of [`read_json`] on a body already read: `T` from a JSON object or `null`, or
/// [`ApiError::MalformedJson`] / [`ApiError::JsonShape`]. Public so that the fuzz targets
/// (`fuzz/`) can feed it bytes without an HTTP request.
pub fn parse_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| ApiError::MalformedJson(error.to_string()))?;
    if value.is_null() {
        return Ok(T::default());
    }
    if !value.is_object() {
        return Err(ApiError::JsonShape(
            "the request body must be a JSON object".into(),
        ));
    }
    serde_json::from_value(value).map_err(|error| ApiError::JsonShape(shape_error(&error)))
}

/// serde's message, except that an unknown field is not named: the name is the client's own text,
/// which may be a secret sent in the wrong place, and error descriptions get logged and shown.
/// serde writes the name before its list of expected fields, so the list starts at the *last*
/// ", expected": the name itself may contain that text.
fn shape_error(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.strip_prefix("unknown field `") {
        Some(rest) => match rest.rsplit_once(", expected") {
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

/// Whether the `Content-Type` essence (parameters such as `charset` aside) is `expected`, ASCII
/// case ignored (RFC 9110 8.3.1). Compared as bytes, without a `str` conversion first: every OAuth
/// request passes here. Bytes beyond ASCII in the parameters do not matter, deliberately: RFC 9110
/// 5.6.4 allows them in a quoted parameter value, and no parameter is read.
fn has_media_type(request: &HttpRequest, expected: &str) -> bool {
    let Some(content_type) = request.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let content_type = content_type.as_bytes();
    let essence = match memchr::memchr(b';', content_type) {
        Some(at) => &content_type[..at],
        None => content_type,
    };
    essence
        .trim_ascii()
        .eq_ignore_ascii_case(expected.as_bytes())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::http::admin::{CreateTokenBody, RegenerateBody, TokenActionBody};

    /// The input of the `admin_json` fuzz target's first crash (`fuzz/`): the target's own check
    /// was wrong (the name "expe" is part of serde's fixed text), but the input stays a test of
    /// the exact message.
    #[test]
    fn unknown_fields_named_like_the_expected_ones_get_the_fixed_message() {
        let body = br#"{ "scopon": " fed", "expieescriptkon`, ires_at`, `scoon": " fed", "expieescriptkon`, , ires_at`, `scoon": " fed", "expe": "reamd )w\/\\r:ite"}"#;
        for message in [
            shape_message::<CreateTokenBody>(body),
            shape_message::<RegenerateBody>(body),
            shape_message::<TokenActionBody>(body),
        ] {
            assert!(
                [
                    "the body has an unknown field; expected one of `description`, `expires_at`, \
                     `scope`, `audience`",
                    "the body has an unknown field; expected one of `description`, `audience`, \
                     `expires_at`",
                    "the body has an unknown field; expected `description`",
                ]
                .contains(&message.as_str()),
                "{message}"
            );
        }
    }

    #[test]
    fn the_media_type_is_the_essence_in_any_case_with_parameters_aside() {
        let with = |value: &[u8]| {
            let request = actix_web::test::TestRequest::default()
                .insert_header((
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_bytes(value).unwrap(),
                ))
                .to_http_request();
            has_media_type(&request, "application/json")
        };
        for accepted in [
            &b"application/json"[..],
            b"Application/JSON",
            b" application/json ; charset=utf-8",
            b"application/json;charset=\xff",
        ] {
            assert!(with(accepted), "{accepted:?}");
        }
        for refused in [
            &b""[..],
            b"application/jsonx",
            b"application/json-patch+json",
            b"text/plain; x=application/json",
            b"application/\xffjson",
        ] {
            assert!(!with(refused), "{refused:?}");
        }
        let without = actix_web::test::TestRequest::default().to_http_request();
        assert!(!has_media_type(&without, "application/json"));
    }

    fn shape_message<T: DeserializeOwned + Default>(body: &[u8]) -> String {
        match parse_json::<T>(body) {
            Err(ApiError::JsonShape(message)) => message,
            _ => panic!("not a shape error"),
        }
    }

    /// Found by schemathesis: the document allows `null` for the optional action bodies.
    #[test]
    fn null_is_no_body() {
        let body = parse_json::<TokenActionBody>(b" null ").unwrap();
        assert_eq!(body.description, None);
        for not_an_object in [&b"[]"[..], b"\"x\"", b"1", b"true"] {
            assert!(matches!(
                parse_json::<TokenActionBody>(not_an_object),
                Err(ApiError::JsonShape(_))
            ));
        }
    }

    /// `audience` takes any JSON value, so a wrong one is refused by the audience rule, which
    /// names the field and never quotes the client's text, rather than by serde here.
    #[test]
    fn any_audience_value_parses_for_the_audience_rule_to_judge() {
        for audience in [
            json!("rs_x\"\\é"),
            json!(5),
            json!({ "a": 1 }),
            json!([]),
            json!([1, "x", null]),
            json!(null),
        ] {
            let body = json!({ "description": "d", "audience": audience }).to_string();
            assert!(
                parse_json::<CreateTokenBody>(body.as_bytes()).is_ok(),
                "{body}"
            );
            let body = json!({ "audience": audience }).to_string();
            assert!(
                parse_json::<RegenerateBody>(body.as_bytes()).is_ok(),
                "{body}"
            );
        }
    }

    /// Found by `an_unknown_field_name_is_never_echoed`: a name holding serde's own ", expected"
    /// used to leave its tail in the message.
    #[test]
    fn an_unknown_field_named_like_the_message_is_not_echoed() {
        let body = br#"{"a, expected twp_SECRET": 1}"#;
        let Err(ApiError::JsonShape(message)) = parse_json::<CreateTokenBody>(body) else {
            panic!("an unknown field was accepted");
        };
        assert_eq!(
            message,
            "the body has an unknown field; expected one of `description`, `expires_at`, `scope`, \
             `audience`"
        );
    }
}

/// Properties of the admin API's JSON parsing: any bytes and any JSON value end in a body or a
/// typed error, and an unknown field's name, which may be a misplaced secret, is never echoed.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;
    use crate::http::admin::{CreateTokenBody, RegenerateBody, TokenActionBody};

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("description".to_string()),
                        Just("expires_at".to_string()),
                        Just("scope".to_string()),
                        Just("audience".to_string()),
                        ".{0,8}",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    /// What any admin JSON body may turn into: the body, or one of the two JSON errors.
    fn parses_or_is_a_json_error<T: DeserializeOwned + Default>(
        body: &[u8],
    ) -> Result<(), TestCaseError> {
        match parse_json::<T>(body) {
            Ok(_) | Err(ApiError::MalformedJson(_) | ApiError::JsonShape(_)) => Ok(()),
            Err(other) => Err(TestCaseError::fail(format!("unexpected error {other:?}"))),
        }
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_are_a_json_error(body in prop::collection::vec(any::<u8>(), 0..256)) {
            parses_or_is_a_json_error::<CreateTokenBody>(&body)?;
            parses_or_is_a_json_error::<RegenerateBody>(&body)?;
            parses_or_is_a_json_error::<TokenActionBody>(&body)?;
        }

        /// Valid JSON is never "malformed"; only an object (or `null`, no body) can be a body.
        #[test]
        fn any_json_value_is_a_body_or_a_shape_error(value in json_value()) {
            let body = serde_json::to_vec(&value).unwrap();
            for result in [
                parse_json::<CreateTokenBody>(&body).map(drop),
                parse_json::<RegenerateBody>(&body).map(drop),
                parse_json::<TokenActionBody>(&body).map(drop),
            ] {
                match result {
                    Ok(()) => prop_assert!(value.is_object() || value.is_null()),
                    Err(ApiError::JsonShape(_)) => {}
                    Err(other) => prop_assert!(false, "unexpected error {:?}", other),
                }
            }
        }

        #[test]
        fn create_bodies_round_trip(
            description in ".{0,40}",
            expires_at in prop::option::of(".{0,30}"),
            scope in prop::option::of(".{0,30}"),
        ) {
            let mut object = json!({ "description": description });
            if let Some(expires_at) = &expires_at {
                object["expires_at"] = json!(expires_at);
            }
            if let Some(scope) = &scope {
                object["scope"] = json!(scope);
            }
            let body: CreateTokenBody = parse_json(&serde_json::to_vec(&object).unwrap()).unwrap();
            prop_assert_eq!(body.description, description);
            prop_assert_eq!(body.expires_at, expires_at);
            prop_assert_eq!(body.scope, scope);
        }

        /// serde names an unknown field in its message (`unknown field `…`, expected …`); the
        /// name is the client's text and must not come back, whatever characters it holds.
        #[test]
        fn an_unknown_field_name_is_never_echoed(
            before in "(, expected|`|one of|[a-z ]){0,6}",
            after in "(, expected|`|one of|[a-z ]){0,6}",
            known: bool,
        ) {
            let name = format!("{before}twp_SECRET{after}");
            let mut object = json!({ name: 1 });
            if known {
                object["description"] = json!("ok");
            }
            let body = serde_json::to_vec(&object).unwrap();
            for result in [
                parse_json::<CreateTokenBody>(&body).map(drop),
                parse_json::<RegenerateBody>(&body).map(drop),
                parse_json::<TokenActionBody>(&body).map(drop),
            ] {
                let Err(ApiError::JsonShape(message)) = result else {
                    return Err(TestCaseError::fail("an unknown field was accepted"));
                };
                prop_assert!(!message.contains("SECRET"), "{}", message);
            }
        }
    }
}
