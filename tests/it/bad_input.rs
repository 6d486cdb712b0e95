//! Errors and bad input on the OAuth endpoints: every refusal is
//! the RFC 6749 5.2 JSON with the right status and headers, and none of them echoes a secret.

use std::io::Cursor;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::blocking::{Body, Response};
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::helpers::{assert_oauth_error, SiteKeys, TestApp};

crate::on_both_backends!(
    missing_grant_type_is_invalid_request,
    missing_client_credentials_are_invalid_client,
    repeated_parameters_are_invalid_request,
    a_body_that_is_not_form_urlencoded_is_invalid_request,
    an_empty_body_is_invalid_request,
    an_unknown_grant_type_is_unsupported_grant_type,
    any_scope_for_a_site_is_invalid_scope,
    a_malformed_basic_header_is_invalid_request,
    non_utf8_bytes_in_the_body_are_invalid_request,
    unknown_site_and_wrong_auth_key_get_the_same_invalid_client,
    failed_basic_authentication_carries_the_basic_challenge,
    a_disabled_site_is_invalid_client,
    credentials_by_basic_and_in_the_body_are_invalid_request,
    a_body_over_the_limit_with_content_length_is_413,
    a_chunked_body_over_the_limit_is_413,
    an_unknown_path_is_404_json,
    a_wrong_method_is_405_json_with_allow,
    basic_credentials_are_form_urlencoded_before_base64,
    another_authorization_scheme_is_invalid_client,
    error_answers_never_contain_an_auth_key_or_a_token,
);

const FORM: &str = "application/x-www-form-urlencoded";
const CHALLENGE: &str = "Basic realm=\"tokenwarden\"";
/// The body size limit of `Config::for_tests` (the default, 16 KiB).
const LIMIT: usize = 16 * 1024;

fn body_credentials(site: &SiteKeys) -> String {
    format!(
        "client_id={}&client_secret={}",
        site.site_key, site.auth_key
    )
}

fn basic_header(user_pass: impl AsRef<[u8]>) -> String {
    format!("Basic {}", STANDARD.encode(user_pass))
}

fn site_basic(site: &SiteKeys) -> String {
    basic_header(format!("{}:{}", site.site_key, site.auth_key))
}

/// POSTs `body` exactly as given, with the given `Content-Type` and `Authorization` (if any).
fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    authorization: Option<&str>,
    body: impl Into<Body>,
) -> Response {
    let mut request = app.client.post(app.url(path)).body(body);
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    if let Some(authorization) = authorization {
        request = request.header("Authorization", authorization);
    }
    request.send().expect("the request reaches the server")
}

/// [`assert_oauth_error`] plus the headers every error answer has: `Pragma: no-cache`, and the
/// Basic challenge on a 401 (RFC 6749 5.2, RFC 9110 15.5.2) and on nothing else.
fn expect_error(response: Response, status: u16, error: &str) -> (HeaderMap, String) {
    let headers = response.headers().clone();
    let description = assert_oauth_error(response, status, error);
    assert_eq!(
        headers.get("pragma").map(|v| v.to_str().unwrap()),
        Some("no-cache")
    );
    let challenge = headers.get("www-authenticate").map(|v| v.to_str().unwrap());
    if status == 401 {
        assert_eq!(challenge, Some(CHALLENGE));
    } else {
        assert_eq!(challenge, None, "no challenge on a {status}");
    }
    (headers, description)
}

/// An error answer read raw, to compare whole bodies or search them.
struct RawAnswer {
    status: u16,
    headers: HeaderMap,
    text: String,
}

fn raw(response: Response) -> RawAnswer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().expect("a readable body");
    RawAnswer {
        status,
        headers,
        text,
    }
}

impl RawAnswer {
    /// Checks the RFC 6749 5.2 body: exactly `error` and `error_description`, with `error` as given.
    fn assert_error(&self, status: u16, error: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        let body: Value = serde_json::from_str(&self.text).expect("a JSON error body");
        let object = body.as_object().expect("a JSON object");
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["error", "error_description"], "{body}");
        assert_eq!(body["error"], error, "{body}");
    }
}

fn missing_grant_type_is_invalid_request(app: TestApp) {
    let site = app.create_site("Missing Grant Store");
    for body in [
        body_credentials(&site),
        // RFC 6749 3.1: a parameter without a value is treated as omitted.
        format!("grant_type=&{}", body_credentials(&site)),
    ] {
        let (_, description) = expect_error(
            app.post_form("/oauth2/token", None, &body),
            400,
            "invalid_request",
        );
        assert_eq!(description, "parameter grant_type is required");
    }
    let (_, description) = expect_error(
        app.post_form(
            "/oauth2/token",
            Some((&site.site_key, &site.auth_key)),
            "scope_hint=none",
        ),
        400,
        "invalid_request",
    );
    assert_eq!(description, "parameter grant_type is required");
}

/// RFC 6749 5.2: `invalid_client` covers "no client authentication included", so a request
/// without credentials, or with only half of the body pair (RFC 6749 2.3.1 requires both), is a
/// 401 rather than a 400.
fn missing_client_credentials_are_invalid_client(app: TestApp) {
    let site = app.create_site("Anonymous Store");
    for body in [
        "grant_type=client_credentials".to_string(),
        format!("grant_type=client_credentials&client_id={}", site.site_key),
        format!(
            "grant_type=client_credentials&client_secret={}",
            site.auth_key
        ),
        format!(
            "grant_type=client_credentials&client_id={}&client_secret=",
            site.site_key
        ),
    ] {
        expect_error(
            app.post_form("/oauth2/token", None, &body),
            401,
            "invalid_client",
        );
    }
}

/// RFC 6749 3.1: "Request and response parameters MUST NOT be included more than once."
fn repeated_parameters_are_invalid_request(app: TestApp) {
    let site = app.create_site("Echo Store");
    let credentials = body_credentials(&site);
    for (body, name) in [
        (
            format!("grant_type=client_credentials&grant_type=client_credentials&{credentials}"),
            "grant_type",
        ),
        (
            format!("grant_type=client_credentials&{credentials}&client_id=someone_else"),
            "client_id",
        ),
        (
            format!("grant_type=&grant_type=client_credentials&{credentials}"),
            "grant_type",
        ),
        (
            format!("grant_type=client_credentials&scope=&scope=&{credentials}"),
            "scope",
        ),
    ] {
        let (_, description) = expect_error(
            app.post_form("/oauth2/token", None, &body),
            400,
            "invalid_request",
        );
        assert_eq!(description, format!("parameter {name} is repeated"));
    }
    // A name the server does not know is not echoed: it may be a secret sent in the wrong place.
    let (_, description) = expect_error(
        app.post_form(
            "/oauth2/token",
            None,
            &format!("grant_type=client_credentials&{credentials}&padding=1&padding=2"),
        ),
        400,
        "invalid_request",
    );
    assert_eq!(description, "a parameter is repeated");
    // With Basic credentials the body alone carries the repetition.
    expect_error(
        app.post_form(
            "/oauth2/token",
            Some((&site.site_key, &site.auth_key)),
            "grant_type=client_credentials&grant_type=password",
        ),
        400,
        "invalid_request",
    );
    // The other endpoints parse the same way.
    let token = app.primary_token(&site);
    let (_, description) = expect_error(
        app.post_form(
            "/oauth2/invalidate_token",
            Some((&site.site_key, &site.auth_key)),
            &format!("access_token={token}&access_token={token}"),
        ),
        400,
        "invalid_request",
    );
    assert_eq!(description, "parameter access_token is repeated");
    expect_error(
        app.post_form(
            "/oauth2/revoke",
            Some((&site.site_key, &site.auth_key)),
            &format!("token={token}&token=other"),
        ),
        400,
        "invalid_request",
    );
    assert_eq!(app.primary_token(&site), token, "nothing was invalidated");
}

/// RFC 6749 4.4.2 and 3.2: the token request is `application/x-www-form-urlencoded`.
fn a_body_that_is_not_form_urlencoded_is_invalid_request(app: TestApp) {
    let site = app.create_site("Json Store");
    let form = format!("grant_type=client_credentials&{}", body_credentials(&site));
    let json = serde_json::json!({
        "grant_type": "client_credentials",
        "client_id": site.site_key,
        "client_secret": site.auth_key,
    })
    .to_string();
    let expected = "the request body must be application/x-www-form-urlencoded";
    for (content_type, body) in [
        (Some("application/json"), json.clone()),
        (Some("text/plain"), form.clone()),
        (Some("multipart/form-data; boundary=x"), form.clone()),
        (Some("application/x-www-form-urlencodedx"), form.clone()),
        (None, form.clone()),
        (None, json),
    ] {
        let (_, description) = expect_error(
            post_raw(&app, "/oauth2/token", content_type, None, body),
            400,
            "invalid_request",
        );
        assert_eq!(description, expected, "{content_type:?}");
    }
    // Basic credentials do not make a JSON body acceptable.
    expect_error(
        post_raw(
            &app,
            "/oauth2/token",
            Some("application/json"),
            Some(&site_basic(&site)),
            r#"{"grant_type":"client_credentials"}"#,
        ),
        400,
        "invalid_request",
    );
    // The media type is matched case-insensitively and may carry parameters (RFC 9110 8.3.1).
    let accepted = post_raw(
        &app,
        "/oauth2/token",
        Some("Application/X-WWW-Form-URLEncoded; charset=UTF-8"),
        None,
        form,
    );
    assert_eq!(accepted.status(), 200);
}

fn an_empty_body_is_invalid_request(app: TestApp) {
    let site = app.create_site("Empty Store");
    for authorization in [None, Some(site_basic(&site))] {
        let (_, description) = expect_error(
            post_raw(
                &app,
                "/oauth2/token",
                Some(FORM),
                authorization.as_deref(),
                "",
            ),
            400,
            "invalid_request",
        );
        assert_eq!(description, "parameter grant_type is required");
    }
    // Only separators: still no parameters at all.
    expect_error(
        post_raw(&app, "/oauth2/token", Some(FORM), None, "&&&"),
        400,
        "invalid_request",
    );
    // An empty body without a Content-Type is refused for its type.
    expect_error(
        post_raw(&app, "/oauth2/token", None, Some(&site_basic(&site)), ""),
        400,
        "invalid_request",
    );
    let (_, description) = expect_error(
        post_raw(
            &app,
            "/oauth2/invalidate_token",
            Some(FORM),
            Some(&site_basic(&site)),
            "",
        ),
        400,
        "invalid_request",
    );
    assert_eq!(description, "parameter access_token is required");
}

/// RFC 6749 5.2 `unsupported_grant_type`.
fn an_unknown_grant_type_is_unsupported_grant_type(app: TestApp) {
    let site = app.create_site("Grant Store");
    for grant_type in [
        "password",
        "authorization_code",
        "refresh_token",
        "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer",
        "client_credentials_",
        "nonsense",
    ] {
        let (_, description) = expect_error(
            app.post_form(
                "/oauth2/token",
                None,
                &format!("grant_type={grant_type}&{}", body_credentials(&site)),
            ),
            400,
            "unsupported_grant_type",
        );
        assert_eq!(
            description, "only grant_type=client_credentials is supported",
            "{grant_type}"
        );
    }
    expect_error(
        app.post_form(
            "/oauth2/token",
            Some((&site.site_key, &site.auth_key)),
            "grant_type=password&username=a&password=b",
        ),
        400,
        "unsupported_grant_type",
    );
}

/// RFC 6749 5.2 `invalid_scope`: a site's primary token carries no scope, so any requested scope
/// (well-formed or not, RFC 6749 3.3) is refused, by either authentication method.
fn any_scope_for_a_site_is_invalid_scope(app: TestApp) {
    let site = app.create_site("Scope Store");
    for scope in [
        "admin",
        "read",
        "read+write",
        "admin%20read",
        "%22",
        "caf%C3%A9",
    ] {
        expect_error(
            app.post_form(
                "/oauth2/token",
                None,
                &format!(
                    "grant_type=client_credentials&scope={scope}&{}",
                    body_credentials(&site)
                ),
            ),
            400,
            "invalid_scope",
        );
        expect_error(
            app.post_form(
                "/oauth2/token",
                Some((&site.site_key, &site.auth_key)),
                &format!("grant_type=client_credentials&scope={scope}"),
            ),
            400,
            "invalid_scope",
        );
    }
    // An empty scope is an omitted one (RFC 6749 3.1): the token is issued.
    let response = app.post_form(
        "/oauth2/token",
        None,
        &format!(
            "grant_type=client_credentials&scope=&{}",
            body_credentials(&site)
        ),
    );
    assert_eq!(response.status(), 200);
}

fn a_malformed_basic_header_is_invalid_request(app: TestApp) {
    let site = app.create_site("Basic Store");
    let headers = [
        "Basic".to_string(),
        "Basic ".to_string(),
        "Basic !!!not-base64!!!".to_string(),
        format!("Basic {}", site.auth_key),
        basic_header(format!("{}{}", site.site_key, site.auth_key)),
        basic_header(format!(":{}", site.auth_key)),
        basic_header(format!("{}:", site.site_key)),
        basic_header([site.site_key.as_bytes(), b":\xff\xfe"].concat()),
        basic_header(format!("{}:%FF", site.site_key)),
    ];
    for header in &headers {
        let (_, description) = expect_error(
            post_raw(
                &app,
                "/oauth2/token",
                Some(FORM),
                Some(header),
                "grant_type=client_credentials",
            ),
            400,
            "invalid_request",
        );
        assert_eq!(
            description, "malformed HTTP Basic authorization header",
            "{header}"
        );
    }
    // A header value that is not even text.
    let response = app
        .client
        .post(app.url("/oauth2/token"))
        .header("Content-Type", FORM)
        .header(
            "Authorization",
            reqwest::header::HeaderValue::from_bytes(b"Basic \xff\xfe").unwrap(),
        )
        .body("grant_type=client_credentials")
        .send()
        .unwrap();
    expect_error(response, 400, "invalid_request");
}

/// RFC 6749 Appendix B: form values are UTF-8 once percent-decoded; anything else is refused.
fn non_utf8_bytes_in_the_body_are_invalid_request(app: TestApp) {
    let site = app.create_site("Bytes Store");
    let credentials = body_credentials(&site);
    let bodies: Vec<Vec<u8>> = vec![
        b"grant_type=client_credentials&client_id=%FF".to_vec(),
        [
            b"grant_type=client_credentials&",
            credentials.as_bytes(),
            b"&x=\xff",
        ]
        .concat(),
        [
            b"grant_type=client_\xffcredentials&",
            credentials.as_bytes(),
        ]
        .concat(),
        [
            b"grant_\xfftype=client_credentials&",
            credentials.as_bytes(),
        ]
        .concat(),
        [
            b"grant_type=client_credentials&",
            credentials.as_bytes(),
            b"&%C3=1",
        ]
        .concat(),
        [
            b"grant_type=client_credentials&",
            credentials.as_bytes(),
            b"&scope=%ED%A0%80",
        ]
        .concat(),
    ];
    for body in bodies {
        let (_, description) = expect_error(
            post_raw(&app, "/oauth2/token", Some(FORM), None, body.clone()),
            400,
            "invalid_request",
        );
        assert_eq!(
            description,
            "the request body is not valid UTF-8",
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
    expect_error(
        post_raw(
            &app,
            "/oauth2/invalidate_token",
            Some(FORM),
            Some(&site_basic(&site)),
            b"access_token=twp_\xff".to_vec(),
        ),
        400,
        "invalid_request",
    );
}

/// RFC 6749 5.2 `invalid_client`; the answer must not tell which site keys exist.
fn unknown_site_and_wrong_auth_key_get_the_same_invalid_client(app: TestApp) {
    let site = app.create_site("Known Store");
    let other = app.create_site("Other Store");
    let unknown_site = "tws_not_a_site_key";
    let wrong_keys = [
        (unknown_site, site.auth_key.as_str()),
        (site.site_key.as_str(), other.auth_key.as_str()),
        (site.site_key.as_str(), "twk_wrong"),
        (
            site.site_key.as_str(),
            &site.auth_key[..site.auth_key.len() - 1],
        ),
    ];
    let mut answers = Vec::new();
    for (site_key, auth_key) in wrong_keys {
        let by_basic = app.post_form(
            "/oauth2/token",
            Some((site_key, auth_key)),
            "grant_type=client_credentials",
        );
        answers.push(raw(by_basic));
        let by_body = app.post_form(
            "/oauth2/token",
            None,
            &format!("grant_type=client_credentials&client_id={site_key}&client_secret={auth_key}"),
        );
        answers.push(raw(by_body));
    }
    let first = &answers[0];
    first.assert_error(401, "invalid_client");
    for answer in &answers {
        assert_eq!(answer.status, 401);
        assert_eq!(answer.text, first.text, "identical bodies");
        assert_eq!(answer.headers.get("www-authenticate").unwrap(), CHALLENGE);
        assert_eq!(answer.headers.get("cache-control").unwrap(), "no-store");
    }
    // And through the checks every error answer gets.
    expect_error(
        app.post_form(
            "/oauth2/token",
            Some((unknown_site, &site.auth_key)),
            "grant_type=client_credentials",
        ),
        401,
        "invalid_client",
    );
}

/// RFC 6749 5.2: "the authorization server MUST respond with an HTTP 401 … and include the
/// WWW-Authenticate response header field matching the authentication scheme used by the client."
fn failed_basic_authentication_carries_the_basic_challenge(app: TestApp) {
    let site = app.create_site("Challenge Store");
    for path in [
        "/oauth2/token",
        "/oauth2/invalidate_token",
        "/oauth2/revoke",
    ] {
        let response = app.post_form(
            path,
            Some((&site.site_key, "twk_wrong")),
            "grant_type=client_credentials&access_token=x&token=x",
        );
        let (headers, _) = expect_error(response, 401, "invalid_client");
        let challenges: Vec<&str> = headers
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(challenges, [CHALLENGE], "{path}");
    }
}

fn a_disabled_site_is_invalid_client(app: TestApp) {
    let site = app.create_site("Closed Store");
    app.primary_token(&site);
    let wrong_key = raw(app.post_form(
        "/oauth2/token",
        Some((&site.site_key, "twk_wrong")),
        "grant_type=client_credentials",
    ));
    app.set_site_enabled(&site, false);
    let by_basic = raw(app.post_form(
        "/oauth2/token",
        Some((&site.site_key, &site.auth_key)),
        "grant_type=client_credentials",
    ));
    by_basic.assert_error(401, "invalid_client");
    assert_eq!(by_basic.text, wrong_key.text, "disabled looks like wrong");
    assert_eq!(by_basic.headers.get("www-authenticate").unwrap(), CHALLENGE);
    expect_error(
        app.post_form(
            "/oauth2/token",
            None,
            &format!("grant_type=client_credentials&{}", body_credentials(&site)),
        ),
        401,
        "invalid_client",
    );
    app.set_site_enabled(&site, true);
    app.primary_token(&site);
}

/// RFC 6749 2.3: "The client MUST NOT use more than one authentication method in each request."
fn credentials_by_basic_and_in_the_body_are_invalid_request(app: TestApp) {
    let site = app.create_site("Both Store");
    let other = app.create_site("Other Both Store");
    for body in [
        format!("grant_type=client_credentials&{}", body_credentials(&site)),
        format!("grant_type=client_credentials&client_id={}", site.site_key),
        format!(
            "grant_type=client_credentials&client_secret={}",
            site.auth_key
        ),
        format!("grant_type=client_credentials&{}", body_credentials(&other)),
    ] {
        let (_, description) = expect_error(
            app.post_form(
                "/oauth2/token",
                Some((&site.site_key, &site.auth_key)),
                &body,
            ),
            400,
            "invalid_request",
        );
        assert_eq!(
            description,
            "client credentials must be sent in only one way"
        );
    }
    let token = app.primary_token(&site);
    expect_error(
        app.post_form(
            "/oauth2/invalidate_token",
            Some((&site.site_key, &site.auth_key)),
            &format!("access_token={token}&{}", body_credentials(&site)),
        ),
        400,
        "invalid_request",
    );
    assert_eq!(app.primary_token(&site), token, "nothing was invalidated");
}

/// A valid token request padded with an ignored parameter to exactly `length` bytes.
fn padded_request(site: &SiteKeys, length: usize) -> String {
    let mut body = format!(
        "grant_type=client_credentials&{}&padding=",
        body_credentials(site)
    );
    body.push_str(&"x".repeat(length - body.len()));
    body
}

fn a_body_over_the_limit_with_content_length_is_413(app: TestApp) {
    let site = app.create_site("Big Store");
    let at_limit = app.post_form("/oauth2/token", None, &padded_request(&site, LIMIT));
    assert_eq!(
        at_limit.status(),
        200,
        "a body of exactly the limit is fine"
    );
    for length in [LIMIT + 1, 4 * LIMIT] {
        let response = app.post_form("/oauth2/token", None, &padded_request(&site, length));
        let (_, description) = expect_error(response, 413, "invalid_request");
        assert_eq!(
            description,
            format!("the request body must not exceed {LIMIT} bytes")
        );
    }
    // The size is refused before the type is looked at.
    expect_error(
        post_raw(
            &app,
            "/oauth2/revoke",
            Some("application/json"),
            None,
            vec![b'{'; LIMIT + 1],
        ),
        413,
        "invalid_request",
    );
}

/// Without `Content-Length` the server counts while reading and stops at the limit.
fn a_chunked_body_over_the_limit_is_413(app: TestApp) {
    let site = app.create_site("Chunked Store");
    let chunked = |body: String| {
        post_raw(
            &app,
            "/oauth2/token",
            Some(FORM),
            None,
            Body::new(Cursor::new(body.into_bytes())),
        )
    };
    assert_eq!(
        chunked(padded_request(&site, LIMIT)).status(),
        200,
        "a chunked body of exactly the limit is fine"
    );
    for length in [LIMIT + 1, 4 * LIMIT] {
        let (_, description) = expect_error(
            chunked(padded_request(&site, length)),
            413,
            "invalid_request",
        );
        assert_eq!(
            description,
            format!("the request body must not exceed {LIMIT} bytes")
        );
    }
}

fn an_unknown_path_is_404_json(app: TestApp) {
    for path in [
        "/",
        "/nope",
        "/oauth2/tokens",
        "/oauth2/token/extra",
        "/oauth2",
    ] {
        let (_, description) = expect_error(
            app.client.get(app.url(path)).send().unwrap(),
            404,
            "not_found",
        );
        assert_eq!(description, "no endpoint at this path", "{path}");
        expect_error(
            app.post_form(path, None, "grant_type=client_credentials"),
            404,
            "not_found",
        );
    }
}

fn a_wrong_method_is_405_json_with_allow(app: TestApp) {
    let post_only = [
        "/oauth2/token",
        "/oauth2/invalidate_token",
        "/oauth2/revoke",
        "/oauth2/introspect",
    ]
    .map(|path| (path, "POST", reqwest::Method::GET));
    let get_only = [
        "/.well-known/oauth-authorization-server",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ]
    .map(|path| (path, "GET", reqwest::Method::POST));
    for (path, allowed, other) in post_only.into_iter().chain(get_only) {
        for method in [
            other,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
            reqwest::Method::PATCH,
        ] {
            let response = app
                .client
                .request(method.clone(), app.url(path))
                .send()
                .unwrap();
            let (headers, description) = expect_error(response, 405, "method_not_allowed");
            assert_eq!(headers.get("allow").unwrap(), allowed, "{method} {path}");
            assert_eq!(
                description,
                "this endpoint does not accept that HTTP method"
            );
        }
    }
}

/// RFC 6749 2.3.1: client id and secret are `application/x-www-form-urlencoded` before they are
/// joined with `:` and base64-encoded, so a client that percent-encodes every byte authenticates.
fn basic_credentials_are_form_urlencoded_before_base64(app: TestApp) {
    let site = app.create_site("Encoded Store");
    let token = app.primary_token(&site);
    let encode_all =
        |value: &str| -> String { value.bytes().map(|b| format!("%{b:02X}")).collect() };
    let encode_some = |value: &str| value.replace('_', "%5F").replace('-', "%2D");
    for (user, password) in [
        (encode_all(&site.site_key), encode_all(&site.auth_key)),
        (encode_some(&site.site_key), encode_some(&site.auth_key)),
        (site.site_key.clone(), encode_all(&site.auth_key)),
    ] {
        let response = post_raw(
            &app,
            "/oauth2/token",
            Some(FORM),
            Some(&basic_header(format!("{user}:{password}"))),
            "grant_type=client_credentials",
        );
        assert_eq!(response.status(), 200, "{user}:{password}");
        let body: Value = response.json().unwrap();
        assert_eq!(body["access_token"], token.as_str());
    }
    // Decoding is not a looser comparison: an encoded wrong key still fails.
    let wrong = encode_all(&format!("{}x", site.auth_key));
    expect_error(
        post_raw(
            &app,
            "/oauth2/token",
            Some(FORM),
            Some(&basic_header(format!("{}:{wrong}", site.site_key))),
            "grant_type=client_credentials",
        ),
        401,
        "invalid_client",
    );
    // `+` is a space in form encoding, so a `+` where the key has none is a wrong key.
    let plus = site.auth_key.replacen('_', "+", 1);
    expect_error(
        post_raw(
            &app,
            "/oauth2/token",
            Some(FORM),
            Some(&basic_header(format!("{}:{plus}", site.site_key))),
            "grant_type=client_credentials",
        ),
        401,
        "invalid_client",
    );
}

/// RFC 6749 5.2: an "unsupported authentication method" is `invalid_client`.
fn another_authorization_scheme_is_invalid_client(app: TestApp) {
    let site = app.create_site("Bearer Store");
    let token = app.primary_token(&site);
    for (authorization, body) in [
        (
            "Bearer x".to_string(),
            "grant_type=client_credentials".to_string(),
        ),
        (
            format!("Bearer {token}"),
            "grant_type=client_credentials".to_string(),
        ),
        (
            "Bearer x".to_string(),
            format!("grant_type=client_credentials&{}", body_credentials(&site)),
        ),
        (
            format!("Digest username=\"{}\"", site.site_key),
            "grant_type=client_credentials".to_string(),
        ),
    ] {
        let (_, description) = expect_error(
            post_raw(
                &app,
                "/oauth2/token",
                Some(FORM),
                Some(&authorization),
                body,
            ),
            401,
            "invalid_client",
        );
        assert!(description.contains("unsupported client authentication method"));
    }
    expect_error(
        post_raw(
            &app,
            "/oauth2/invalidate_token",
            Some(FORM),
            Some(&format!("Bearer {token}")),
            format!("access_token={token}"),
        ),
        401,
        "invalid_client",
    );
    assert_eq!(app.primary_token(&site), token, "nothing was invalidated");
}

/// Fails if `text` holds `secret` or any 12-character piece of its random part.
fn assert_no_trace_of(text: &str, secret: &str, context: &str) {
    assert!(!text.contains(secret), "{context}: {text}");
    let random = &secret[4..];
    for start in 0..=random.len() - 12 {
        let piece = &random[start..start + 12];
        assert!(!text.contains(piece), "{context}: {piece:?} in {text}");
    }
}

/// Every kind of refusal, provoked with the auth key and tokens in every place a client might put
/// them: no answer carries them back, in its body or its headers.
fn error_answers_never_contain_an_auth_key_or_a_token(app: TestApp) {
    let site = app.create_site("Leak Store");
    let other = app.create_site("Other Leak Store");
    let token = app.primary_token(&site);
    let other_token = app.primary_token(&other);
    let secrets = [&site.auth_key, &token, &other.auth_key, &other_token];
    let credentials = body_credentials(&site);
    let basic = site_basic(&site);
    let form = Some(FORM);
    let send =
        |path: &str, content_type: Option<&str>, authorization: Option<&str>, body: &[u8]| {
            raw(post_raw(
                &app,
                path,
                content_type,
                authorization,
                body.to_vec(),
            ))
        };
    let cases: Vec<(RawAnswer, u16, &str)> = vec![
        (
            send(
                "/oauth2/token",
                form,
                None,
                format!("grant_type=password&{credentials}").as_bytes(),
            ),
            400,
            "unsupported_grant_type",
        ),
        (
            send(
                "/oauth2/token",
                form,
                None,
                format!("grant_type={token}&{credentials}").as_bytes(),
            ),
            400,
            "unsupported_grant_type",
        ),
        (
            send(
                "/oauth2/token",
                form,
                None,
                format!("grant_type=client_credentials&scope={token}&{credentials}").as_bytes(),
            ),
            400,
            "invalid_scope",
        ),
        (
            send(
                "/oauth2/token",
                form,
                None,
                format!(
                    "grant_type=client_credentials&{credentials}&client_secret={}",
                    site.auth_key
                )
                .as_bytes(),
            ),
            400,
            "invalid_request",
        ),
        (
            send(
                "/oauth2/token",
                form,
                None,
                format!("{}&{}", site.auth_key, site.auth_key).as_bytes(),
            ),
            400,
            "invalid_request",
        ),
        (
            send(
                "/oauth2/token",
                form,
                Some(&basic),
                format!("{token}&{token}").as_bytes(),
            ),
            400,
            "invalid_request",
        ),
        (
            send(
                "/oauth2/token",
                form,
                Some(&basic),
                format!("{token}=1&{token}=2").as_bytes(),
            ),
            400,
            "invalid_request",
        ),
        (
            send(
                "/oauth2/token",
                form,
                None,
                [
                    format!("grant_type=client_credentials&{credentials}&").as_bytes(),
                    b"\xff",
                ]
                .concat()
                .as_slice(),
            ),
            400,
            "invalid_request",
        ),
        (
            send(
                "/oauth2/token",
                Some("application/json"),
                None,
                serde_json::json!({"client_id": site.site_key, "client_secret": site.auth_key})
                    .to_string()
                    .as_bytes(),
            ),
            400,
            "invalid_request",
        ),
        (
            send(
                "/oauth2/token",
                form,
                Some(&basic),
                format!("grant_type=client_credentials&{credentials}").as_bytes(),
            ),
            400,
            "invalid_request",
        ),
        (
            send(
                "/oauth2/token",
                form,
                Some(&format!("Basic {}", site.auth_key)),
                b"grant_type=client_credentials",
            ),
            400,
            "invalid_request",
        ),
        (
            send(
                "/oauth2/token",
                form,
                Some(&format!("Bearer {token}")),
                b"grant_type=client_credentials",
            ),
            401,
            "invalid_client",
        ),
        (
            send(
                "/oauth2/token",
                form,
                Some(&basic_header(format!(
                    "{}:{}",
                    site.site_key, other.auth_key
                ))),
                b"grant_type=client_credentials",
            ),
            401,
            "invalid_client",
        ),
        (
            send(
                "/oauth2/token",
                form,
                None,
                format!(
                    "grant_type=client_credentials&client_id={}&client_secret={}",
                    other.site_key, site.auth_key
                )
                .as_bytes(),
            ),
            401,
            "invalid_client",
        ),
        (
            send(
                "/oauth2/invalidate_token",
                form,
                Some(&basic),
                format!("access_token={other_token}").as_bytes(),
            ),
            400,
            "invalid_request",
        ),
        (
            send(
                "/oauth2/invalidate_token",
                form,
                Some(&basic),
                format!("access_token={}", site.auth_key).as_bytes(),
            ),
            400,
            "invalid_request",
        ),
        (
            send(
                "/oauth2/invalidate_token",
                form,
                Some(&basic),
                format!("access_token={token}&access_token={token}").as_bytes(),
            ),
            400,
            "invalid_request",
        ),
        (
            send(
                "/oauth2/invalidate_token",
                form,
                Some(&basic_header(format!(
                    "{}:{}",
                    other.site_key, site.auth_key
                ))),
                format!("access_token={token}").as_bytes(),
            ),
            401,
            "invalid_client",
        ),
        (
            send(
                "/oauth2/revoke",
                form,
                Some(&basic),
                format!("token_type_hint={token}").as_bytes(),
            ),
            400,
            "invalid_request",
        ),
        (
            send(
                "/oauth2/revoke",
                form,
                None,
                format!("token={token}&{credentials}&padding={}", token.repeat(400)).as_bytes(),
            ),
            413,
            "invalid_request",
        ),
        (
            send(
                &format!("/oauth2/token/{token}"),
                form,
                Some(&basic),
                b"grant_type=client_credentials",
            ),
            404,
            "not_found",
        ),
    ];
    for (answer, status, error) in &cases {
        answer.assert_error(*status, error);
        for secret in secrets {
            assert_no_trace_of(&answer.text, secret, "body");
            for (name, value) in &answer.headers {
                assert_no_trace_of(
                    &String::from_utf8_lossy(value.as_bytes()),
                    secret,
                    name.as_str(),
                );
            }
        }
    }
    let wrong_method = raw(app
        .client
        .get(app.url(&format!(
            "/oauth2/token?access_token={token}&client_secret={}",
            site.auth_key
        )))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .unwrap());
    wrong_method.assert_error(405, "method_not_allowed");
    for secret in secrets {
        assert_no_trace_of(&wrong_method.text, secret, "405 body");
        for value in wrong_method.headers.values() {
            assert_no_trace_of(&String::from_utf8_lossy(value.as_bytes()), secret, "405");
        }
    }
    // None of it touched the tokens.
    assert_eq!(app.primary_token(&site), token);
    assert_eq!(app.primary_token(&other), other_token);
}

/// RFC 6749 5.2's character set for `error_description`.
fn within_description_charset(description: &str) -> bool {
    description
        .bytes()
        .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

/// Whatever a client sends the admin API (text with quotes, backslashes, control characters and
/// non-ASCII, unknown fields, values of the wrong type), the answer is a 4xx whose
/// `error_description` stays within RFC 6749 5.2's character set: client text is never echoed
/// as sent.
#[test]
fn admin_api_validation_errors_never_leave_the_description_charset() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config as ProptestConfig, TestRunner};

    let app = TestApp::spawn(crate::helpers::Backend::Sqlite).expect("SQLite is always available");
    let site = app.create_site("Property Store");
    let admin = app.create_platform_admin("Property Admin");
    let token = app.admin_token(&admin);
    let created = app.admin_post(
        &token,
        &format!("/admin/v1/sites/{}/tokens", site.site_key),
        Some(&serde_json::json!({ "description": "Target" })),
    );
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().unwrap()["id"].as_i64().unwrap();
    let text = prop_oneof![any::<String>(), "[\"\\\\\u{0}-\u{1f}\u{7f}é€😀a-z ]{0,40}",];
    let value = prop_oneof![
        text.clone().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
        prop::collection::vec(text.clone().prop_map(Value::from), 0..3).prop_map(Value::from),
    ];
    let field = prop_oneof![
        Just("description".to_string()),
        Just("expires_at".to_string()),
        Just("scope".to_string()),
        text.clone(),
    ];
    let body = prop::collection::btree_map(field, value, 0..4);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 200,
        ..ProptestConfig::default()
    });
    runner
        .run(&(body, any::<bool>()), |(fields, regenerate)| {
            let body = Value::Object(fields.into_iter().collect());
            let path = if regenerate {
                format!("/admin/v1/sites/{}/tokens/{id}/regenerate", site.site_key)
            } else {
                format!("/admin/v1/sites/{}/tokens", site.site_key)
            };
            let response = app.admin_post(&token, &path, Some(&body));
            let status = response.status().as_u16();
            prop_assert!(status < 500, "{status} for {body}");
            if status >= 400 {
                let answer: Value = response.json().unwrap();
                let description = answer["error_description"].as_str().unwrap_or_default();
                prop_assert!(
                    within_description_charset(description),
                    "{description:?} for {body}"
                );
            }
            Ok(())
        })
        .unwrap();
}
