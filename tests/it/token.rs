//! `POST /oauth2/token`: the client credentials grant and the primary token (RFC 6749 4.4, 5.1),
//! and the exactness of the cache that answers repeat requests from memory.

use reqwest::blocking::Response;
use serde_json::Value;

use crate::cli::{site_keys, succeed, succeed_json, tokenwarden};
use crate::helpers::{
    assert_eventually, assert_oauth_error, wait_for_live_change_feed, SiteKeys, TestApp, TestNode,
};

crate::on_both_backends!(
    issues_a_bearer_token_without_expiry_and_with_no_store,
    returns_the_same_token_on_every_request_and_by_either_auth_method,
    invalidation_makes_the_next_request_mint_a_new_token,
    repeat_requests_are_answered_from_memory_and_stay_exact,
    another_node_and_the_cli_are_heard_within_the_bound,
    with_the_cache_off_every_request_reads_the_database,
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

fn token_request(node: &TestNode, site: &SiteKeys) -> Response {
    node.post_form(
        "/oauth2/token",
        Some((&site.site_key, &site.auth_key)),
        "grant_type=client_credentials",
    )
}

fn repeat_requests_are_answered_from_memory_and_stay_exact(app: TestApp) {
    wait_for_live_change_feed(&app);
    let site = app.create_site("Repeat Store");
    let first = app.primary_token(&site);
    // Minting moved the generation on (on PostgreSQL a second time when the node's own
    // notification arrives, within milliseconds); then a request fills the caches again.
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(app.primary_token(&site), first);
    let (hits_before, misses_before) = app.context.grants.cache_counts();
    for _ in 0..3 {
        assert_eq!(app.primary_token(&site), first);
    }
    let (hits, misses) = app.context.grants.cache_counts();
    assert_eq!(hits, hits_before + 3, "repeat requests are cache hits");
    assert_eq!(misses, misses_before, "and read nothing");

    // Refusals answered from memory are the same refusals.
    let wrong_key = SiteKeys {
        auth_key: "twk_wrong".into(),
        ..site.clone()
    };
    let unknown = SiteKeys {
        site_key: "site_AAAAAAAAAAAAAAAAAAAA".into(),
        ..site.clone()
    };
    for _ in 0..2 {
        assert_oauth_error(token_request(&app, &wrong_key), 401, "invalid_client");
        assert_oauth_error(token_request(&app, &unknown), 401, "invalid_client");
    }
    let scoped = app.post_form(
        "/oauth2/token",
        Some((&site.site_key, &site.auth_key)),
        "grant_type=client_credentials&scope=admin",
    );
    assert_oauth_error(scoped, 400, "invalid_scope");

    // Writes through this node are seen by its very next request.
    assert_eq!(app.invalidate(&site, &first).status(), 200);
    let second = app.primary_token(&site);
    assert_ne!(second, first);
    assert_eq!(app.cached_primary_token(&site), second);
    let rotated = tokenwarden::service::sites::rotate_auth_key(
        &app.context,
        &crate::helpers::operator(),
        &site.site_key,
        tokenwarden::domain::rotation::Overlap::NONE,
        tokenwarden::clock::now(),
    )
    .unwrap();
    assert_oauth_error(token_request(&app, &site), 401, "invalid_client");
    let rotated = SiteKeys {
        site_key: site.site_key.clone(),
        auth_key: rotated.auth_key.expose().to_string(),
    };
    assert_eq!(app.cached_primary_token(&rotated), second);
    app.set_site_enabled(&site, false);
    assert_oauth_error(token_request(&app, &rotated), 401, "invalid_client");
}

/// Node B caches the site and its token; node A invalidates, then the CLI disables, enables and
/// rotates. B must see each within issue 3's bound: at its next request on SQLite, within a
/// second (milliseconds, by NOTIFY) on PostgreSQL.
fn another_node_and_the_cli_are_heard_within_the_bound(app: TestApp) {
    let node_b = TestNode::spawn(&app.db, |_| {});
    wait_for_live_change_feed(&app);
    wait_for_live_change_feed(&node_b);
    let site = app.create_site("Cluster Store");
    let token = app.primary_token(&site);
    assert_eq!(node_b.cached_primary_token(&site), token);

    assert_eq!(app.invalidate(&site, &token).status(), 200);
    let mut renewed = String::new();
    assert_eventually(&app, || {
        renewed = node_b.primary_token(&site);
        renewed != token
    });
    assert_eq!(app.primary_token(&site), renewed);

    assert_eq!(node_b.cached_primary_token(&site), renewed);
    succeed(tokenwarden(&app.db.url).args(["site", "disable", &site.site_key]));
    assert_eventually(&app, || token_request(&node_b, &site).status() == 401);
    assert_oauth_error(token_request(&node_b, &site), 401, "invalid_client");
    succeed(tokenwarden(&app.db.url).args(["site", "enable", &site.site_key]));
    assert_eventually(&app, || token_request(&node_b, &site).status() == 200);
    assert_eq!(node_b.primary_token(&site), renewed);

    assert_eq!(node_b.cached_primary_token(&site), renewed);
    let rotated = site_keys(&succeed_json(tokenwarden(&app.db.url).args([
        "site",
        "rotate-auth-key",
        &site.site_key,
        "--json",
    ])));
    assert_eventually(&app, || token_request(&node_b, &site).status() == 401);
    assert_eq!(node_b.primary_token(&rotated), renewed);
}

/// `--introspection-cache off` switches the token endpoint's caches off too: a write that no
/// change feed hears of (plain SQL, no NOTIFY) is seen by the next request.
fn with_the_cache_off_every_request_reads_the_database(app: TestApp) {
    let uncached = TestNode::spawn(&app.db, |config| config.introspection_cache = false);
    let site = app.create_site("Uncached Store");
    let token = uncached.primary_token(&site);
    assert_eq!(uncached.primary_token(&site), token);
    app.db.execute(&format!(
        "UPDATE sites SET enabled = false WHERE site_key = '{}'",
        site.site_key
    ));
    assert_oauth_error(token_request(&uncached, &site), 401, "invalid_client");
    app.db.execute(&format!(
        "UPDATE sites SET enabled = true WHERE site_key = '{}'",
        site.site_key
    ));
    assert_eq!(uncached.primary_token(&site), token);
    app.db
        .execute("UPDATE tokens SET active = false WHERE slot = 0");
    assert_ne!(uncached.primary_token(&site), token);
    assert_eq!(uncached.context.grants.cache_counts(), (0, 0));
}
