//! The `Authorization` header parsers (HTTP Basic with RFC 6749 2.3.1 form-encoding, and Bearer)
//! on any bytes: an error is always `invalid_request`, and Basic credentials that were accepted
//! are found again after encoding them the RFC way.
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use tokenwarden::domain::oauth_error::OAuthErrorCode;
use tokenwarden::domain::request::{bearer_token, AuthorizationHeader};

fuzz_target!(|header: &[u8]| {
    match AuthorizationHeader::parse(Some(header)) {
        Err(err) => assert_eq!(err.code, OAuthErrorCode::InvalidRequest),
        Ok(AuthorizationHeader::Absent) => panic!("a header was present"),
        Ok(AuthorizationHeader::OtherScheme) => {}
        Ok(AuthorizationHeader::Basic(credentials)) => {
            assert!(!credentials.client_id.is_empty());
            assert!(!credentials.secret.expose().is_empty());
            let user_pass = format!(
                "{}:{}",
                utf8_percent_encode(&credentials.client_id, NON_ALPHANUMERIC),
                utf8_percent_encode(credentials.secret.expose(), NON_ALPHANUMERIC),
            );
            let again = format!("Basic {}", STANDARD.encode(user_pass));
            let Ok(AuthorizationHeader::Basic(decoded)) =
                AuthorizationHeader::parse(Some(again.as_bytes()))
            else {
                panic!("re-encoded credentials were refused");
            };
            assert_eq!(decoded.client_id, credentials.client_id);
            assert_eq!(decoded.secret.expose(), credentials.secret.expose());
        }
    }
    match bearer_token(Some(header)) {
        Err(err) => assert_eq!(err.code, OAuthErrorCode::InvalidRequest),
        Ok(Some(token)) => {
            assert!(!token.expose().is_empty());
            assert!(!token.expose().contains(char::is_whitespace));
        }
        Ok(None) => {}
    }
});
