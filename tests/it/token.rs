//! `POST /oauth2/token`: the client credentials grant and the primary token (RFC 6749 4.4, 5.1).

use serde_json::Value;

use crate::helpers::{assert_oauth_error, TestApp};

crate::on_both_backends!(
    issues_a_bearer_token_without_expiry_and_with_no_store,
    returns_the_same_token_on_every_request_and_by_either_auth_method,
    invalidation_makes_the_next_request_mint_a_new_token,
);

fn issues_a_bearer_token_without_expiry_and_with_no_store(app: TestApp) {
    let site = app.create_site("Shoe Store");
    let response = app.post_form(
        "/oauth2/token",
        None,
        &format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            site.site_key, site.auth_key
        ),
    );
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let body: Value = response.json().unwrap();
    let object = body.as_object().unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["access_token"].as_str().unwrap().starts_with("twp_"));
    assert!(!object.contains_key("expires_in"), "{body}");
    assert_eq!(object.len(), 2, "{body}");
}

fn returns_the_same_token_on_every_request_and_by_either_auth_method(app: TestApp) {
    let site = app.create_site("Hat Store");
    let first = app.primary_token(&site);
    assert_eq!(app.primary_token(&site), first);
    let by_basic = app.post_form(
        "/oauth2/token",
        Some((&site.site_key, &site.auth_key)),
        "grant_type=client_credentials",
    );
    assert_eq!(by_basic.status(), 200);
    let body: Value = by_basic.json().unwrap();
    assert_eq!(body["access_token"], first.as_str());
    let other = app.create_site("Other Store");
    assert_ne!(app.primary_token(&other), first);
}

fn invalidation_makes_the_next_request_mint_a_new_token(app: TestApp) {
    let site = app.create_site("Sock Store");
    let first = app.primary_token(&site);
    assert_eq!(app.invalidate(&site, &first).status(), 200);
    let second = app.primary_token(&site);
    assert_ne!(second, first);
    assert_eq!(app.primary_token(&site), second);
    // The old value again: harmless. The new one is untouched by that.
    assert_eq!(app.invalidate(&site, &first).status(), 200);
    assert_eq!(app.primary_token(&site), second);
    let wrong = app.post_form(
        "/oauth2/token",
        Some((&site.site_key, "twk_wrong")),
        "grant_type=client_credentials",
    );
    assert_oauth_error(wrong, 401, "invalid_client");
}
