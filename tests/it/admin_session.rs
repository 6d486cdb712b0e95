//! `GET /admin/v1/sessions/current`: who an admin token signs in as (client id, name, role, a site
//! manager's sites, as they are now) and when that token stops working; refused like every admin
//! API request when the token does not work. Ending the session is in `revocation.rs`.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::blocking::Response;
use serde_json::{json, Value};

use crate::helpers::{assert_oauth_error, AdminKeys, Backend, TestApp, TestDatabase};

crate::on_both_backends!(
    the_session_names_the_admin_its_role_and_sites_as_they_are_now,
    each_admin_token_answers_with_its_own_expiry,
    a_token_that_does_not_work_gets_no_session,
);

crate::per_backend!(sqlite_short_lived, postgres_short_lived; an_expired_admin_token_gets_no_session);

const PATH: &str = "/admin/v1/sessions/current";

fn current(app: &TestApp, token: &str) -> Response {
    app.admin_get(token, PATH)
}

/// An admin token, and when the server says it expires (`expires_in` from `/oauth2/token`), to
/// within the time the request took.
fn sign_in(app: &TestApp, admin: &AdminKeys) -> (String, DateTime<Utc>, DateTime<Utc>) {
    let before = now();
    let response = app.admin_token_request(admin);
    let after = now();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().unwrap();
    let lifetime = TimeDelta::seconds(body["expires_in"].as_i64().unwrap());
    (
        body["access_token"].as_str().unwrap().to_string(),
        before + lifetime,
        after + lifetime,
    )
}

fn now() -> DateTime<Utc> {
    tokenwarden::clock::now().and_utc()
}

fn session(app: &TestApp, token: &str) -> Value {
    let response = current(app, token);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().unwrap();
    let mut members: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(
        members,
        [
            "client_id",
            "expires_at",
            "name",
            "role",
            "sites",
            "token_terms"
        ],
        "{body}"
    );
    body
}

fn expires_at(session: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(session["expires_at"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("expires_at is not RFC 3339 ({e}): {session}"))
        .with_timezone(&Utc)
}

/// `expires_at` is whole seconds, so it may lie up to a second before the earliest expiry.
fn assert_expires_between(session: &Value, earliest: DateTime<Utc>, latest: DateTime<Utc>) {
    let at = expires_at(session);
    assert!(
        at > earliest - TimeDelta::seconds(1) && at <= latest,
        "expires_at {at} not within {earliest}..{latest}: {session}"
    );
}

fn the_session_names_the_admin_its_role_and_sites_as_they_are_now(app: TestApp) {
    let tea = app.create_site("Tea Shop");
    let books = app.create_site("Book Nook");
    let garden = app.create_site("Garden Supplies");
    let platform_admin = app.create_platform_admin("Ada Ops");
    let manager = app.create_site_manager("Tea Manager", &[&tea, &books]);

    let (token, earliest, latest) = sign_in(&app, &platform_admin);
    let shown = session(&app, &token);
    assert_eq!(shown["client_id"], platform_admin.client_id);
    assert_eq!(shown["name"], "Ada Ops");
    assert_eq!(shown["role"], "platform-admin");
    assert_eq!(
        shown["sites"],
        Value::Null,
        "a platform admin manages every site"
    );
    assert_expires_between(&shown, earliest, latest);

    let (manager_token, earliest, latest) = sign_in(&app, &manager);
    let shown = session(&app, &manager_token);
    assert_eq!(shown["client_id"], manager.client_id);
    assert_eq!(shown["name"], "Tea Manager");
    assert_eq!(shown["role"], "site-manager");
    let mut assigned = vec![tea.site_key.clone(), books.site_key.clone()];
    assigned.sort();
    assert_eq!(shown["sites"], json!(assigned), "sorted site keys");
    assert_expires_between(&shown, earliest, latest);

    // Changes made while the token lives show at once.
    let manager_path = format!("/admin/v1/admins/{}", manager.client_id);
    let changed = app.admin_patch(
        &token,
        &manager_path,
        &json!({ "sites": [garden.site_key] }),
    );
    assert_eq!(changed.status(), 200);
    assert_eq!(
        session(&app, &manager_token)["sites"],
        json!([garden.site_key])
    );
    let promoted = app.admin_patch(&token, &manager_path, &json!({ "role": "platform-admin" }));
    assert_eq!(promoted.status(), 200);
    let shown = session(&app, &manager_token);
    assert_eq!(shown["role"], "platform-admin");
    assert_eq!(shown["sites"], Value::Null);
}

fn each_admin_token_answers_with_its_own_expiry(app: TestApp) {
    let admin = app.create_platform_admin("Ada Ops");
    let (first, _, _) = sign_in(&app, &admin);
    std::thread::sleep(Duration::from_millis(1100));
    let (second, earliest, latest) = sign_in(&app, &admin);
    let second_session = session(&app, &second);
    assert_expires_between(&second_session, earliest, latest);
    assert!(
        expires_at(&session(&app, &first)) < expires_at(&second_session),
        "the older token expires first"
    );

    // Ending one session leaves the other.
    let ended = app.admin_delete(&first, PATH);
    assert_eq!(ended.status(), 204);
    assert_oauth_error(current(&app, &first), 401, "invalid_token");
    assert_eq!(session(&app, &second)["name"], "Ada Ops");
}

fn a_token_that_does_not_work_gets_no_session(app: TestApp) {
    let site = app.create_site("Tea Shop");
    let admin = app.create_platform_admin("Ada Ops");
    let colleague = app.create_platform_admin("Bea Ops");
    let token = app.admin_token(&admin);

    let missing = app.client.get(app.url(PATH)).send().unwrap();
    assert_eq!(
        missing.headers()["www-authenticate"],
        "Bearer realm=\"tokenwarden\""
    );
    assert_oauth_error(missing, 401, "invalid_token");
    let unknown = current(&app, &format!("twa_{}", "A".repeat(49)));
    assert_eq!(
        unknown.headers()["www-authenticate"],
        "Bearer realm=\"tokenwarden\", error=\"invalid_token\""
    );
    assert_oauth_error(unknown, 401, "invalid_token");
    assert_oauth_error(current(&app, "twa_short"), 401, "invalid_token");
    assert_oauth_error(
        current(&app, &app.primary_token(&site)),
        403,
        "insufficient_scope",
    );

    let post = app.admin_post(&token, PATH, None);
    assert_eq!(post.headers()["allow"], "GET, DELETE");
    assert_oauth_error(post, 405, "method_not_allowed");

    // Disabled by a colleague: the token stops at once.
    assert_eq!(session(&app, &token)["name"], "Ada Ops");
    let colleague_token = app.admin_token(&colleague);
    let disabled = app.admin_patch(
        &colleague_token,
        &format!("/admin/v1/admins/{}", admin.client_id),
        &json!({ "enabled": false }),
    );
    assert_eq!(disabled.status(), 200);
    assert_oauth_error(current(&app, &token), 401, "invalid_token");
}

fn an_expired_admin_token_gets_no_session(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let app = TestApp::spawn_with(db, |config| config.admin_token_ttl = Duration::from_secs(1));
    let admin = app.create_platform_admin("Ada Ops");
    let (token, earliest, latest) = sign_in(&app, &admin);
    assert_expires_between(&session(&app, &token), earliest, latest);
    std::thread::sleep(Duration::from_millis(1100));
    assert_oauth_error(current(&app, &token), 401, "invalid_token");
}
