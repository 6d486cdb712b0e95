//! `X-Request-Id` over real HTTP: a sane id a request brings comes back on its response, whatever
//! the answer (success, OAuth error, 404, 405, 413, metrics, the admin page); any other, or none,
//! is replaced by a generated one. What the log does with the id is `logs`'s subject.

use std::io::{Read, Write};
use std::net::TcpStream;

use reqwest::blocking::{RequestBuilder, Response};

use crate::helpers::{form_request, TestApp};

crate::on_both_backends!(
    a_sane_request_id_comes_back_on_every_kind_of_answer,
    other_request_ids_are_replaced_by_generated_ones,
);

fn id_of(response: &Response) -> String {
    let ids: Vec<_> = response.headers().get_all("x-request-id").iter().collect();
    assert_eq!(ids.len(), 1, "one X-Request-Id: {:?}", response.headers());
    ids[0].to_str().expect("visible ASCII").to_string()
}

/// 32 lowercase hex digits: 16 random bytes.
fn is_generated(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

fn a_sane_request_id_comes_back_on_every_kind_of_answer(app: TestApp) {
    let site = app.create_site("Request Id Store");
    let token = app.primary_token(&site);
    let resource_server = app.create_resource_server("Request Id API");
    let form = |path: &str, basic: Option<(&str, &str)>, body: &str| {
        form_request(&app.client, app.url(path), basic, body)
    };
    let basic = Some((site.site_key.as_str(), site.auth_key.as_str()));
    let too_large = format!("grant_type=client_credentials&pad={}", "x".repeat(20_000));
    let requests: Vec<(&str, u16, RequestBuilder)> = vec![
        (
            "token",
            200,
            form("/oauth2/token", basic, "grant_type=client_credentials"),
        ),
        (
            "wrong key",
            401,
            form(
                "/oauth2/token",
                Some((&site.site_key, "twk_wrong")),
                "grant_type=client_credentials",
            ),
        ),
        (
            "introspection",
            200,
            form(
                "/oauth2/introspect",
                Some((&resource_server.client_id, &resource_server.client_secret)),
                &format!("token={token}"),
            ),
        ),
        (
            "bad request",
            400,
            form("/oauth2/token", basic, "grant_type=password&grant_type=x"),
        ),
        ("too large", 413, form("/oauth2/token", basic, &too_large)),
        ("not found", 404, app.client.get(app.url("/no-such-path"))),
        (
            "wrong method",
            405,
            app.client.get(app.url("/oauth2/token")),
        ),
        ("metrics", 200, app.client.get(app.url("/metrics"))),
        ("admin page", 200, app.client.get(app.url("/admin/"))),
        ("admin API", 401, app.client.get(app.url("/admin/v1/sites"))),
        ("readiness", 200, app.client.get(app.url("/readyz"))),
    ];
    for (what, status, request) in requests {
        let given = format!("it/{what}!~").replace(' ', "_");
        let response = request
            .header("X-Request-Id", &given)
            .send()
            .expect("the server answers");
        assert_eq!(response.status(), status, "{what}");
        assert_eq!(id_of(&response), given, "{what}");
    }
    let longest = "~".repeat(128);
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("X-Request-Id", &longest)
        .send()
        .unwrap();
    assert_eq!(id_of(&response), longest, "128 characters are kept");
}

fn other_request_ids_are_replaced_by_generated_ones(app: TestApp) {
    let site = app.create_site("Generated Id Store");
    let token = app.primary_token(&site);
    let send = |ids: &[&[u8]]| {
        let mut request = form_request(
            &app.client,
            app.url("/oauth2/token"),
            Some((&site.site_key, &site.auth_key)),
            "grant_type=client_credentials",
        );
        for id in ids {
            request = request.header(
                "X-Request-Id",
                reqwest::header::HeaderValue::from_bytes(id).unwrap(),
            );
        }
        let response = request.send().expect("the server answers");
        assert_eq!(response.status(), 200, "{ids:?}");
        id_of(&response)
    };
    let too_long = "a".repeat(129);
    let mut seen = Vec::new();
    for replaced in [
        &b"tab\tinside"[..],
        b"two words",
        b"",
        b"caf\xc3\xa9",
        too_long.as_bytes(),
        // A token sent in the wrong header is not echoed, nor logged.
        token.as_bytes(),
    ] {
        let id = send(&[replaced]);
        assert!(is_generated(&id), "{replaced:?} came back as {id:?}");
        assert_ne!(id.as_bytes(), replaced);
        seen.push(id);
    }
    let twice = send(&[b"first", b"second"]);
    assert!(is_generated(&twice), "two ids: {twice}");
    seen.push(twice);
    for _ in 0..3 {
        let id = send(&[]);
        assert!(is_generated(&id), "none given: {id}");
        seen.push(id);
    }
    let count = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), count, "every generated id is new: {seen:?}");

    // A control character other than tab does not get past actix's parser: 400 before any
    // route, which has no request to take an id from.
    let address = app.base_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\x01b\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("x-request-id"),
        "{answer}"
    );
}
