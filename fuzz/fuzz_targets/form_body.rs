//! `Params::parse` and the four OAuth request parsers on any body: an error is always
//! `invalid_request` (or the request-level codes), and accepted credentials are printable ASCII.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenwarden::domain::oauth_error::OAuthErrorCode;
use tokenwarden::domain::request::{
    AuthorizationHeader, ClientCredentials, FormRequest, IntrospectionRequest, InvalidateRequest,
    Params, RevocationRequest, TokenRequest,
};

fuzz_target!(|body: &[u8]| {
    let params = match Params::parse(body) {
        Ok(params) => params,
        Err(err) => {
            assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
            return;
        }
    };
    let absent = || AuthorizationHeader::Absent;
    let accepted: Vec<ClientCredentials> = [
        TokenRequest::parse(absent(), &params).map(|r| r.credentials),
        InvalidateRequest::parse(absent(), &params).map(|r| r.credentials),
        RevocationRequest::parse(absent(), &params).map(|r| r.credentials),
        IntrospectionRequest::parse(absent(), &params).map(|r| r.credentials),
    ]
    .into_iter()
    .flatten()
    .collect();
    let printable = |text: &str| text.bytes().all(|b| (0x20..=0x7E).contains(&b));
    for credentials in accepted {
        assert!(printable(&credentials.client_id));
        assert!(printable(credentials.secret.expose()));
        assert_eq!(
            params.get("client_id"),
            Some(credentials.client_id.as_str())
        );
    }
});
