//! The admin scope (issue 4): admin tokens from `/oauth2/token`, who may call the admin API, and
//! what each admin endpoint does to a site's tokens, on both backends. Admins are created with the
//! real CLI (`helpers::create_admin`) on the database the in-process server uses.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, SecondsFormat, TimeDelta, Utc};
use reqwest::blocking::Response;
use serde_json::{json, Value};
use tokenwarden::domain::token::{self, SecretKind};
use tokenwarden::service::usage::Flush;

use crate::helpers::{
    assert_admin_error, assert_oauth_error, race, AdminKeys, Backend, SiteKeys, TestApp,
    TestDatabase, TestNode,
};

crate::on_both_backends!(
    // Admin tokens from /oauth2/token
    admin_credentials_get_a_new_short_lived_admin_token_on_every_request,
    admin_credentials_with_any_other_scope_are_invalid_scope,
    site_credentials_asking_for_the_admin_scope_are_invalid_scope,
    wrong_admin_credentials_are_invalid_client,
    resource_servers_see_admin_tokens_as_inactive,
    // Who may call the admin API
    admin_api_without_authorization_is_401_with_a_bare_bearer_challenge,
    unknown_and_malformed_bearer_values_are_401_invalid_token,
    site_tokens_on_the_admin_api_are_403_insufficient_scope,
    the_bearer_scheme_name_is_case_insensitive,
    // Sites
    platform_admin_lists_every_site_sorted_by_name_with_token_counts,
    one_site_is_the_same_object_as_in_the_list,
    site_search_is_a_case_insensitive_literal_substring_of_name_or_key,
    site_list_pages_with_limit_and_offset_and_defaults_to_100,
    out_of_range_or_malformed_paging_is_invalid_request,
    site_manager_sees_only_assigned_sites_and_gets_404_elsewhere,
    // Tokens
    creating_a_token_answers_201_with_location_and_the_value_once,
    a_created_token_with_expiry_introspects_with_exp,
    token_list_orders_primary_then_active_then_inactive,
    last_used_at_appears_once_a_token_is_used,
    last_used_at_is_written_once_per_usage_resolution,
    regenerate_replaces_the_value_and_refuses_the_old_one_at_once,
    regenerating_an_inactive_token_keeps_it_inactive,
    invalidate_and_validate_take_effect_at_once_and_repeats_add_no_event,
    history_names_the_acting_admin_oldest_first,
    regenerate_with_a_new_description_records_regenerated_then_description_changed,
    an_invalid_description_on_an_action_changes_nothing,
    the_primary_is_managed_only_through_oauth,
    the_primary_history_continues_after_the_integrator_replaces_it,
    non_primary_tokens_cannot_be_invalidated_through_oauth,
    the_tenth_non_primary_create_is_token_limit_reached,
    the_primary_can_still_be_issued_beside_nine_non_primary_tokens,
    twenty_concurrent_creates_on_a_site_with_eight_tokens_leave_exactly_ten,
    // Bad input
    unknown_foreign_and_non_numeric_token_ids_are_404,
    unknown_sites_and_admin_paths_are_404,
    descriptions_outside_the_rules_are_422_naming_the_field,
    descriptions_inside_the_rules_are_accepted_and_stored_trimmed,
    expires_at_in_the_past_unparsable_or_too_far_ahead_is_422,
    an_expired_token_introspects_inactive,
    scope_is_refused_when_no_scopes_are_configured,
    malformed_json_is_400_and_wrong_shapes_are_422,
    a_json_body_with_another_content_type_is_415,
    a_body_over_16_kib_is_413,
    a_wrong_method_on_an_admin_path_is_405_with_allow,
    unauthenticated_requests_get_the_challenge_before_anything_else_is_read,
    a_malformed_bearer_header_is_invalid_request_with_a_challenge,
    unknown_json_fields_are_refused_without_repeating_their_names,
    expired_tokens_are_listed_as_expired_after_the_usable_ones,
    responses_carrying_a_token_value_are_not_cacheable,
);

// Scenarios that need a server configured differently: `fn name(backend: Backend)`.
crate::per_backend!(sqlite_configured, postgres_configured;
    admin_token_lifetime_is_configurable_and_expired_admin_tokens_are_401,
    scope_must_be_a_subset_of_the_configured_scopes_and_is_introspected,
    the_furthest_expiry_follows_max_token_lifetime,
);

/// The members of every token view.
const VIEW_FIELDS: [&str; 12] = [
    "active",
    "audience",
    "description",
    "expired",
    "expires_at",
    "generated_at",
    "id",
    "kind",
    "last_used_at",
    "masked_value",
    "retired_at",
    "scope",
];

// ---------------------------------------------------------------------------------------------
// Fixtures and helpers
// ---------------------------------------------------------------------------------------------

/// A site, a platform admin and one of its admin tokens.
struct Scene {
    site: SiteKeys,
    admin: AdminKeys,
    token: String,
}

fn scene(app: &TestApp, site_name: &str) -> Scene {
    let site = app.create_site(site_name);
    let admin = app.create_platform_admin("Platform Admin");
    let token = app.admin_token(&admin);
    Scene { site, admin, token }
}

fn site_path(site: &SiteKeys) -> String {
    format!("/admin/v1/sites/{}", site.site_key)
}

fn tokens_path(site: &SiteKeys) -> String {
    format!("/admin/v1/sites/{}/tokens", site.site_key)
}

fn token_path(site: &SiteKeys, id: i64) -> String {
    format!("/admin/v1/sites/{}/tokens/{id}", site.site_key)
}

/// A created (or regenerated) non-primary token: its id, its full value and the whole answer.
struct Created {
    id: i64,
    value: String,
    body: Value,
}

/// `POST …/tokens` with `body`; panics unless 201.
fn create_token(app: &TestApp, admin_token: &str, site: &SiteKeys, body: Value) -> Created {
    let response = app.admin_post(admin_token, &tokens_path(site), Some(&body));
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.text().unwrap();
    assert_eq!(status, 201, "create {body}: {text}");
    let answer: Value = serde_json::from_str(&text).expect("a JSON body");
    let created = with_value(answer, &format!("create {body}"));
    assert_eq!(
        location,
        Some(token_path(site, created.id)),
        "Location of create {body}"
    );
    created
}

fn create_named(app: &TestApp, admin_token: &str, site: &SiteKeys, description: &str) -> Created {
    create_token(
        app,
        admin_token,
        site,
        json!({ "description": description }),
    )
}

/// Checks an answer that carries the full value (create, regenerate).
fn with_value(answer: Value, what: &str) -> Created {
    assert_token_view(&answer, true, what);
    let value = answer["value"].as_str().unwrap().to_string();
    assert_eq!(
        token::recognise(&value),
        Ok(SecretKind::SecondaryToken),
        "{what}: value {value:?} is not a non-primary token"
    );
    assert_eq!(answer["masked_value"], masked(&value), "{what}: {answer}");
    assert_eq!(answer["kind"], "secondary", "{what}: {answer}");
    Created {
        id: answer["id"].as_i64().unwrap(),
        value,
        body: answer,
    }
}

/// The answer without `value`: what a later GET must show.
fn without_value(answer: &Value) -> Value {
    let mut view = answer.clone();
    view.as_object_mut().unwrap().remove("value");
    view
}

/// What an admin is shown instead of `value`.
fn masked(value: &str) -> String {
    format!("{}…{}", &value[..4], &value[value.len() - 4..])
}

/// Checks the members and their types of a token view (plus `value` when `with_value`).
fn assert_token_view(view: &Value, with_value: bool, what: &str) {
    let object = view
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {view}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = VIEW_FIELDS.to_vec();
    if with_value {
        expected.push("value");
        expected.sort_unstable();
    }
    assert_eq!(keys, expected, "{what}: members of {view}");
    assert!(view["id"].is_i64(), "{what}: id {view}");
    assert!(
        view["kind"] == "primary" || view["kind"] == "secondary",
        "{what}: kind {view}"
    );
    assert!(view["description"].is_string(), "{what}: {view}");
    assert!(view["active"].is_boolean(), "{what}: {view}");
    let masked_value = view["masked_value"].as_str().unwrap_or_default();
    let chars: Vec<char> = masked_value.chars().collect();
    assert!(
        chars.len() == 9 && chars[4] == '…' && masked_value.starts_with("tw"),
        "{what}: masked_value {masked_value:?}"
    );
    rfc3339(&view["generated_at"], what);
    for nullable_time in ["last_used_at", "expires_at"] {
        if !view[nullable_time].is_null() {
            rfc3339(&view[nullable_time], what);
        }
    }
    assert!(
        view["scope"].is_null() || view["scope"].is_string(),
        "{what}: scope {view}"
    );
}

fn rfc3339(value: &Value, what: &str) -> DateTime<FixedOffset> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: {value} is not an RFC 3339 string"));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{what}: {text:?} is not RFC 3339: {e}"))
}

/// The server's clock, as `DateTime<Utc>`.
fn now() -> DateTime<Utc> {
    tokenwarden::clock::now().and_utc()
}

/// An instant `offset` from now, whole seconds, in RFC 3339 with `Z`.
fn instant_from_now(offset: TimeDelta) -> String {
    (now() + offset).to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn list_tokens(app: &TestApp, admin_token: &str, site: &SiteKeys) -> Vec<Value> {
    let listed = app.admin_get_ok(admin_token, &tokens_path(site));
    assert_eq!(
        listed.as_object().map(|o| o.len()),
        Some(1),
        "only tokens: {listed}"
    );
    let tokens = listed["tokens"]
        .as_array()
        .unwrap_or_else(|| panic!("no tokens array: {listed}"))
        .clone();
    for view in &tokens {
        assert_token_view(view, false, "token list");
    }
    tokens
}

fn get_token(app: &TestApp, admin_token: &str, site: &SiteKeys, id: i64) -> Value {
    let view = app.admin_get_ok(admin_token, &token_path(site, id));
    assert_token_view(&view, false, &format!("GET token {id}"));
    view
}

/// `POST …/tokens/{id}/{action}` (regenerate, validate, invalidate); panics unless 200.
fn act(
    app: &TestApp,
    admin_token: &str,
    site: &SiteKeys,
    id: i64,
    action: &str,
    body: Option<Value>,
) -> Value {
    let path = format!("{}/{action}", token_path(site, id));
    let response = app.admin_post(admin_token, &path, body.as_ref());
    let status = response.status();
    let text = response.text().unwrap();
    assert_eq!(status, 200, "{action} {id} with {body:?}: {text}");
    let answer: Value = serde_json::from_str(&text).expect("a JSON body");
    assert_token_view(&answer, action == "regenerate", action);
    answer
}

fn act_response(
    app: &TestApp,
    admin_token: &str,
    site: &SiteKeys,
    id: &str,
    action: &str,
    body: Option<&Value>,
) -> Response {
    let path = format!("{}/tokens/{id}/{action}", site_path(site));
    app.admin_post(admin_token, &path, body)
}

/// The token's history events, checked for shape.
fn history(app: &TestApp, admin_token: &str, site: &SiteKeys, id: i64) -> Vec<Value> {
    let answer = app.admin_get_ok(admin_token, &format!("{}/history", token_path(site, id)));
    let events = answer["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events array: {answer}"))
        .clone();
    let mut previous: Option<DateTime<FixedOffset>> = None;
    for event in &events {
        let mut keys: Vec<&str> = event
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["actor", "detail", "event", "occurred_at"], "{event}");
        let occurred_at = rfc3339(&event["occurred_at"], "history");
        if let Some(previous) = previous {
            assert!(previous <= occurred_at, "oldest first: {answer}");
        }
        previous = Some(occurred_at);
        assert!(
            event["detail"].is_null() || event["detail"].is_string(),
            "{event}"
        );
        assert!(
            event["actor"]["kind"] == "admin" || event["actor"]["kind"] == "site",
            "{event}"
        );
        assert!(event["actor"]["name"].is_string(), "{event}");
    }
    events
}

fn event_names(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event["event"].as_str().unwrap_or("?"))
        .collect()
}

/// Asserts a 401/403 from the admin API with a Bearer challenge carrying `error="…"`.
fn assert_bearer_refusal(response: Response, status: u16, error: &str, what: &str) -> String {
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("{what}: no WWW-Authenticate on the {status}"));
    assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
    assert!(
        challenge.contains(&format!("error=\"{error}\"")),
        "{what}: {challenge}"
    );
    assert_admin_error(response, status, error, what);
    challenge
}

/// Asserts a 422 `validation_failed` about `field`, naming it in `error_description`.
fn assert_validation_failed(response: Response, field: &str, what: &str) {
    let body = assert_admin_error(response, 422, "validation_failed", what);
    assert_eq!(body["field"], field, "{what}: {body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.contains(field),
        "{what}: error_description does not name {field}: {description:?}"
    );
}

fn token_count_in_db(app: &TestApp, site: &SiteKeys) -> i64 {
    app.db.count(&format!(
        "SELECT COUNT(*) AS n FROM tokens t JOIN sites s ON s.id = t.site_id \
         WHERE s.site_key = '{}'",
        site.site_key
    ))
}

/// POSTs `body` bytes as given with `content_type` (if any).
fn post_raw(
    app: &TestApp,
    admin_token: &str,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::blocking::Body>,
) -> Response {
    let mut request = app
        .client
        .post(app.url(path))
        .bearer_auth(admin_token)
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    request.send().expect("the request reaches the server")
}

/// A well-formed value of `kind` (valid checksum) that the server never issued.
fn never_issued(kind: SecretKind) -> String {
    token::mint(kind, &[7u8; token::RANDOM_BYTES])
        .expose()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Admin tokens from /oauth2/token
// ---------------------------------------------------------------------------------------------

/// Checks a successful admin grant and returns the token.
fn assert_admin_grant(response: Response, expires_in: u64, what: &str) -> String {
    let status = response.status();
    let cache_control = response
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.text().unwrap();
    assert_eq!(status, 200, "{what}: {text}");
    assert_eq!(cache_control.as_deref(), Some("no-store"), "{what}");
    let body: Value = serde_json::from_str(&text).expect("a JSON body");
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["access_token", "expires_in", "scope", "token_type"],
        "{what}: {body}"
    );
    assert_eq!(body["token_type"], "Bearer", "{what}: {body}");
    assert_eq!(body["expires_in"], expires_in, "{what}: {body}");
    assert_eq!(body["scope"], "admin", "{what}: {body}");
    let token = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        token::recognise(&token),
        Ok(SecretKind::AdminToken),
        "{what}: {token:?} is not an admin token"
    );
    token
}

fn admin_credentials_get_a_new_short_lived_admin_token_on_every_request(app: TestApp) {
    app.create_site("Any Store");
    let admin = app.create_platform_admin("Grant Admin");
    let body_credentials = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        admin.client_id, admin.client_secret
    );
    let basic = Some((admin.client_id.as_str(), admin.client_secret.as_str()));
    let tokens = [
        (
            "Basic, scope=admin",
            app.post_form(
                "/oauth2/token",
                basic,
                "grant_type=client_credentials&scope=admin",
            ),
        ),
        (
            "Basic, no scope",
            app.post_form("/oauth2/token", basic, "grant_type=client_credentials"),
        ),
        (
            "body credentials, scope=admin",
            app.post_form(
                "/oauth2/token",
                None,
                &format!("{body_credentials}&scope=admin"),
            ),
        ),
        (
            "body credentials, no scope",
            app.post_form("/oauth2/token", None, &body_credentials),
        ),
    ]
    .map(|(what, response)| (what, assert_admin_grant(response, 3600, what)));
    let distinct: BTreeSet<&str> = tokens.iter().map(|(_, token)| token.as_str()).collect();
    assert_eq!(distinct.len(), 4, "each request mints a new admin token");
    for (what, token) in &tokens {
        let listed = app.admin_get_ok(token, "/admin/v1/sites");
        assert_eq!(listed["total"], 1, "token from {what}: {listed}");
    }
}

fn admin_credentials_with_any_other_scope_are_invalid_scope(app: TestApp) {
    let admin = app.create_platform_admin("Scoped Admin");
    let basic = Some((admin.client_id.as_str(), admin.client_secret.as_str()));
    for scope in [
        "read",
        "admin%20read",
        "read%20admin",
        "ADMIN",
        "admins",
        "admin%3Aread",
    ] {
        let response = app.post_form(
            "/oauth2/token",
            basic,
            &format!("grant_type=client_credentials&scope={scope}"),
        );
        assert_eq!(response.status(), 400, "scope={scope}");
        assert_oauth_error(response, 400, "invalid_scope");
        let by_body = app.post_form(
            "/oauth2/token",
            None,
            &format!(
                "grant_type=client_credentials&scope={scope}&client_id={}&client_secret={}",
                admin.client_id, admin.client_secret
            ),
        );
        assert_eq!(by_body.status(), 400, "scope={scope} by body");
        assert_oauth_error(by_body, 400, "invalid_scope");
    }
}

fn site_credentials_asking_for_the_admin_scope_are_invalid_scope(app: TestApp) {
    let site = app.create_site("Ambitious Store");
    for scope in ["admin", "admin%20read"] {
        let response = app.post_form(
            "/oauth2/token",
            Some((&site.site_key, &site.auth_key)),
            &format!("grant_type=client_credentials&scope={scope}"),
        );
        assert_eq!(response.status(), 400, "site asking for scope={scope}");
        assert_oauth_error(response, 400, "invalid_scope");
    }
    // Nothing was issued on the way: the site's first token request still mints its primary.
    assert_eq!(token_count_in_db(&app, &site), 0);
    assert!(app.primary_token(&site).starts_with("twp_"));
}

fn wrong_admin_credentials_are_invalid_client(app: TestApp) {
    let site = app.create_site("Credential Store");
    let admin = app.create_platform_admin("Right Admin");
    let other = app.create_platform_admin("Other Admin");
    let wrong_secret = never_issued(SecretKind::AdminSecret);
    let cases: [(&str, &str, &str); 6] = [
        ("a never-issued secret", &admin.client_id, &wrong_secret),
        (
            "another admin's secret",
            &admin.client_id,
            &other.client_secret,
        ),
        ("a site's auth key", &admin.client_id, &site.auth_key),
        (
            "an unknown client id",
            "adm_AAAAAAAAAAAAAAAAAAAA",
            &admin.client_secret,
        ),
        (
            "a site key with the admin's secret",
            &site.site_key,
            &admin.client_secret,
        ),
        (
            "a truncated secret",
            &admin.client_id,
            &admin.client_secret[..20],
        ),
    ];
    for (what, client_id, secret) in cases {
        for scope in ["&scope=admin", ""] {
            let response = app.post_form(
                "/oauth2/token",
                Some((client_id, secret)),
                &format!("grant_type=client_credentials{scope}"),
            );
            assert_eq!(response.status(), 401, "{what} ({scope:?})");
            assert_oauth_error(response, 401, "invalid_client");
        }
        let by_body = app.post_form(
            "/oauth2/token",
            None,
            &format!(
                "grant_type=client_credentials&scope=admin&client_id={client_id}&client_secret={secret}"
            ),
        );
        assert_eq!(by_body.status(), 401, "{what} by body");
        assert_oauth_error(by_body, 401, "invalid_client");
    }
    // The right credentials still work after all that.
    app.admin_token(&admin);
}

fn resource_servers_see_admin_tokens_as_inactive(app: TestApp) {
    let resource_server = app.create_resource_server("Orders API");
    let admin = app.create_platform_admin("Hidden Admin");
    let token = app.admin_token(&admin);
    assert_eq!(
        app.introspect(&resource_server, &token),
        json!({"active": false}),
        "an admin token introspected by a resource server"
    );
    let with_hint = app.post_form(
        "/oauth2/introspect",
        Some((&resource_server.client_id, &resource_server.client_secret)),
        &format!("token={token}&token_type_hint=access_token"),
    );
    assert_eq!(with_hint.status(), 200);
    assert_eq!(
        with_hint.json::<Value>().unwrap(),
        json!({"active": false}),
        "with token_type_hint=access_token"
    );
    // Still a working admin token: introspection did not spend it.
    app.admin_get_ok(&token, "/admin/v1/sites");
}

// ---------------------------------------------------------------------------------------------
// Who may call the admin API
// ---------------------------------------------------------------------------------------------

/// Every admin endpoint as (method, path, JSON body for POSTs) for a site and a token id.
fn every_endpoint(site: &SiteKeys, id: i64) -> Vec<(reqwest::Method, String, Option<Value>)> {
    let token = token_path(site, id);
    vec![
        (reqwest::Method::GET, "/admin/v1/sites".into(), None),
        (reqwest::Method::GET, site_path(site), None),
        (reqwest::Method::GET, tokens_path(site), None),
        (
            reqwest::Method::POST,
            tokens_path(site),
            Some(json!({"description": "Sneaky"})),
        ),
        (reqwest::Method::GET, token.clone(), None),
        (reqwest::Method::GET, format!("{token}/history"), None),
        (reqwest::Method::POST, format!("{token}/regenerate"), None),
        (reqwest::Method::POST, format!("{token}/validate"), None),
        (reqwest::Method::POST, format!("{token}/invalidate"), None),
    ]
}

fn send(
    app: &TestApp,
    method: &reqwest::Method,
    path: &str,
    body: &Option<Value>,
    authorization: Option<&str>,
) -> Response {
    let mut request = app.client.request(method.clone(), app.url(path));
    if let Some(authorization) = authorization {
        request = request.header("Authorization", authorization);
    }
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    request.send().expect("the request reaches the server")
}

fn admin_api_without_authorization_is_401_with_a_bare_bearer_challenge(app: TestApp) {
    let scene = scene(&app, "Guarded Store");
    let secondary = create_named(&app, &scene.token, &scene.site, "Guarded Partner");
    let resource_server = app.create_resource_server("Guard API");
    for (method, path, body) in every_endpoint(&scene.site, secondary.id) {
        let what = format!("{method} {path} without Authorization");
        let response = send(&app, &method, &path, &body, None);
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(
            challenge.as_deref(),
            Some("Bearer realm=\"tokenwarden\""),
            "{what}: RFC 6750 3.1, no error attribute without credentials"
        );
        assert_admin_error(response, 401, "invalid_token", &what);
    }
    // Nothing happened: one token, still the same and active.
    assert_eq!(token_count_in_db(&app, &scene.site), 1);
    assert_eq!(
        app.introspect(&resource_server, &secondary.value)["active"],
        true
    );
}

fn unknown_and_malformed_bearer_values_are_401_invalid_token(app: TestApp) {
    let scene = scene(&app, "Probed Store");
    let secondary = create_named(&app, &scene.token, &scene.site, "Probed Partner");
    let resource_server = app.create_resource_server("Probe API");
    let mut bad_checksum = scene.token.clone();
    bad_checksum.replace_range(
        10..11,
        if &scene.token[10..11] == "A" {
            "B"
        } else {
            "A"
        },
    );
    let candidates = [
        ("a word", "unknown".to_string()),
        ("a bare prefix", "twa_".to_string()),
        (
            "a never-issued admin token",
            never_issued(SecretKind::AdminToken),
        ),
        ("an admin token with a bad checksum", bad_checksum),
        ("an admin token upper-cased", scene.token.to_uppercase()),
        ("an admin token with a suffix", format!("{}A", scene.token)),
        (
            "the admin's client secret",
            scene.admin.client_secret.clone(),
        ),
        ("a site's auth key", scene.site.auth_key.clone()),
        (
            "a resource server's secret",
            resource_server.client_secret.clone(),
        ),
        ("2 KiB of text", "x".repeat(2048)),
    ];
    for (what, value) in candidates {
        for (method, path, body) in every_endpoint(&scene.site, secondary.id) {
            let what = format!("{method} {path} with {what}");
            let response = send(
                &app,
                &method,
                &path,
                &body,
                Some(&format!("Bearer {value}")),
            );
            assert_bearer_refusal(response, 401, "invalid_token", &what);
        }
    }
    assert_eq!(token_count_in_db(&app, &scene.site), 1);
    assert_eq!(
        app.introspect(&resource_server, &secondary.value)["active"],
        true
    );
}

fn site_tokens_on_the_admin_api_are_403_insufficient_scope(app: TestApp) {
    let scene = scene(&app, "Scope Store");
    let resource_server = app.create_resource_server("Scope API");
    let primary = app.primary_token(&scene.site);
    let secondary = create_named(&app, &scene.token, &scene.site, "Scope Partner");
    for (kind, value) in [
        ("the primary token", &primary),
        ("a non-primary token", &secondary.value),
    ] {
        for (method, path, body) in every_endpoint(&scene.site, secondary.id) {
            let what = format!("{method} {path} with {kind}");
            let response = send(
                &app,
                &method,
                &path,
                &body,
                Some(&format!("Bearer {value}")),
            );
            let challenge = assert_bearer_refusal(response, 403, "insufficient_scope", &what);
            assert!(
                challenge.contains("scope=\"admin\""),
                "{what}: RFC 6750 3: the scope needed: {challenge}"
            );
        }
    }
    assert_eq!(token_count_in_db(&app, &scene.site), 2, "nothing created");
    assert_eq!(
        app.introspect(&resource_server, &secondary.value)["active"],
        true,
        "nothing invalidated"
    );
    assert_eq!(app.primary_token(&scene.site), primary, "nothing replaced");
    // A site token that is no longer active is no token at all.
    assert_eq!(app.invalidate(&scene.site, &primary).status(), 200);
    let response = app.admin_get(&primary, "/admin/v1/sites");
    assert_bearer_refusal(
        response,
        401,
        "invalid_token",
        "GET /admin/v1/sites with an invalidated primary",
    );
}

/// RFC 9110 11.1: the authentication scheme name is case-insensitive.
fn the_bearer_scheme_name_is_case_insensitive(app: TestApp) {
    let scene = scene(&app, "Case Store");
    for scheme in ["bearer", "BEARER"] {
        let response = app
            .client
            .get(app.url("/admin/v1/sites"))
            .header("Authorization", format!("{scheme} {}", scene.token))
            .send()
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "Authorization: {scheme} <admin token>"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Sites
// ---------------------------------------------------------------------------------------------

/// `GET /admin/v1/sites?QUERY` as `token`; checks the shape and returns (sites, total), which is
/// exact: these tests hold far fewer than 10,000 sites.
fn list_sites(app: &TestApp, token: &str, query: &[(&str, &str)]) -> (Vec<Value>, i64) {
    let response = app
        .client
        .get(app.url("/admin/v1/sites"))
        .query(query)
        .bearer_auth(token)
        .send()
        .unwrap();
    let status = response.status();
    let text = response.text().unwrap();
    assert_eq!(status, 200, "GET /admin/v1/sites {query:?}: {text}");
    let listed: Value = serde_json::from_str(&text).unwrap();
    let mut keys: Vec<&str> = listed
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["next", "sites", "total", "total_exact"],
        "{query:?}: {listed}"
    );
    assert_eq!(listed["total_exact"], true, "{query:?}: {listed}");
    let sites = listed["sites"].as_array().unwrap().clone();
    for site in &sites {
        assert_site_object(site, &format!("{query:?}"));
    }
    let total = listed["total"]
        .as_i64()
        .unwrap_or_else(|| panic!("{query:?}: total {listed}"));
    (sites, total)
}

fn assert_site_object(site: &Value, what: &str) {
    let mut keys: Vec<&str> = site
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created_at",
            "enabled",
            "name",
            "previous_auth_key_valid_until",
            "site_key",
            "token_count"
        ],
        "{what}: {site}"
    );
    let created = rfc3339(&site["created_at"], what).with_timezone(&Utc);
    assert!(
        created <= now() && now() - created < TimeDelta::minutes(5),
        "{what}: created just now, not {created}"
    );
    assert!(site["token_count"].is_i64(), "{what}: {site}");
    assert!(site["enabled"].is_boolean(), "{what}: {site}");
    assert!(
        site["previous_auth_key_valid_until"].is_null(),
        "{what}: {site}"
    );
}

fn names(sites: &[Value]) -> Vec<&str> {
    sites
        .iter()
        .map(|site| site["name"].as_str().unwrap())
        .collect()
}

fn platform_admin_lists_every_site_sorted_by_name_with_token_counts(app: TestApp) {
    let charlie = app.create_site("Charlie Store");
    let alpha = app.create_site("Alpha Store");
    let bravo = app.create_site("Bravo Store");
    let admin = app.create_platform_admin("Lister");
    let token = app.admin_token(&admin);

    let (sites, total) = list_sites(&app, &token, &[]);
    assert_eq!(
        names(&sites),
        ["Alpha Store", "Bravo Store", "Charlie Store"]
    );
    assert_eq!(total, 3);
    assert!(
        sites.iter().all(|site| site["token_count"] == 0),
        "{sites:?}"
    );

    // Alpha: primary + two non-primary, one of them inactive (still a token). Bravo: primary.
    app.primary_token(&alpha);
    create_named(&app, &token, &alpha, "First Partner");
    let second = create_named(&app, &token, &alpha, "Second Partner");
    act(&app, &token, &alpha, second.id, "invalidate", None);
    app.primary_token(&bravo);
    // Charlie disabled through the CLI.
    crate::cli::succeed(crate::cli::tokenwarden(&app.db.url).args([
        "site",
        "disable",
        &charlie.site_key,
    ]));

    let (sites, total) = list_sites(&app, &token, &[]);
    assert_eq!(total, 3);
    let expected = [
        (&alpha, "Alpha Store", 3, true),
        (&bravo, "Bravo Store", 1, true),
        (&charlie, "Charlie Store", 0, false),
    ];
    for (site, (keys, name, count, enabled)) in sites.iter().zip(expected) {
        assert_site_object(site, name);
        assert_eq!(
            *site,
            json!({
                "site_key": keys.site_key,
                "name": name,
                "enabled": enabled,
                "created_at": site["created_at"],
                "token_count": count,
                "previous_auth_key_valid_until": null,
            }),
            "{name}"
        );
    }
}

fn one_site_is_the_same_object_as_in_the_list(app: TestApp) {
    let scene = scene(&app, "Single Store");
    let other = app.create_site("Other Single Store");
    app.primary_token(&scene.site);
    create_named(&app, &scene.token, &scene.site, "Single Partner");
    let (sites, _) = list_sites(&app, &scene.token, &[]);
    for site in [&scene.site, &other] {
        let one = app.admin_get_ok(&scene.token, &site_path(site));
        assert_site_object(&one, &site.site_key);
        let listed = sites
            .iter()
            .find(|entry| entry["site_key"] == site.site_key.as_str())
            .unwrap_or_else(|| panic!("{} not listed", site.site_key));
        assert_eq!(&one, listed, "GET {}", site_path(site));
    }
    let one = app.admin_get_ok(&scene.token, &site_path(&scene.site));
    assert_eq!(one["token_count"], 2, "{one}");
    assert_eq!(one["name"], "Single Store", "{one}");
}

fn site_search_is_a_case_insensitive_literal_substring_of_name_or_key(app: TestApp) {
    let alpha = app.create_site("Alphabet Store");
    app.create_site("alphabetic Gear");
    app.create_site("100% Cotton");
    app.create_site("ÉCOLE Supplies");
    let bravo = app.create_site("Bravo Shop");
    let admin = app.create_platform_admin("Searcher");
    let token = app.admin_token(&admin);
    let key_part = bravo.site_key[5..15].to_string();
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("alphab".into(), vec!["Alphabet Store", "alphabetic Gear"]),
        ("ALPHAB".into(), vec!["Alphabet Store", "alphabetic Gear"]),
        ("store".into(), vec!["Alphabet Store"]),
        ("STORE".into(), vec!["Alphabet Store"]),
        // A literal percent sign, not a LIKE wildcard (anywhere from 3 characters on).
        ("0% c".into(), vec!["100% Cotton"]),
        ("% c".into(), vec!["100% Cotton"]),
        (key_part.clone(), vec!["Bravo Shop"]),
        (key_part.to_uppercase(), vec!["Bravo Shop"]),
        (key_part.to_lowercase(), vec!["Bravo Shop"]),
        (alpha.site_key.clone(), vec!["Alphabet Store"]),
        ("no such text".into(), vec![]),
        // Letters beyond ASCII fold too, on both backends.
        ("école".into(), vec!["ÉCOLE Supplies"]),
        ("ÉCOLE".into(), vec!["ÉCOLE Supplies"]),
    ];
    for (q, expected) in cases {
        let (sites, total) = list_sites(&app, &token, &[("q", q.as_str())]);
        assert_eq!(names(&sites), expected, "q={q:?}");
        assert_eq!(total, expected.len() as i64, "total for q={q:?}");
    }
    // total counts every match, not the page.
    let (sites, total) = list_sites(&app, &token, &[("q", "alphab"), ("limit", "1")]);
    assert_eq!(names(&sites), ["Alphabet Store"]);
    assert_eq!(total, 2, "q=alphab&limit=1");
    // A site manager searches only its own sites.
    let manager = app.create_site_manager("Narrow Searcher", &[&alpha]);
    let manager_token = app.admin_token(&manager);
    let (sites, total) = list_sites(&app, &manager_token, &[("q", "alphab")]);
    assert_eq!(names(&sites), ["Alphabet Store"], "site manager, q=alphab");
    assert_eq!(total, 1);
    let (sites, total) = list_sites(&app, &manager_token, &[("q", key_part.as_str())]);
    assert!(
        sites.is_empty() && total == 0,
        "another site's key: {sites:?}"
    );
}

/// Query parameters of a `GET`.
type Query<'a> = &'a [(&'a str, &'a str)];

fn site_list_pages_with_limit_and_offset_and_defaults_to_100(app: TestApp) {
    for letter in ["E", "C", "A", "D", "B"] {
        app.create_site(&format!("Page {letter}"));
    }
    let admin = app.create_platform_admin("Pager");
    let token = app.admin_token(&admin);
    let cases: [(Query, &[&str]); 7] = [
        (&[], &["Page A", "Page B", "Page C", "Page D", "Page E"]),
        (&[("limit", "2")], &["Page A", "Page B"]),
        (&[("limit", "2"), ("offset", "2")], &["Page C", "Page D"]),
        (&[("offset", "4")], &["Page E"]),
        (&[("offset", "5")], &[]),
        (&[("offset", "500"), ("limit", "1000")], &[]),
        (
            &[("limit", "1000"), ("offset", "0")],
            &["Page A", "Page B", "Page C", "Page D", "Page E"],
        ),
    ];
    for (query, expected) in cases {
        let (sites, total) = list_sites(&app, &token, query);
        assert_eq!(names(&sites), expected, "{query:?}");
        assert_eq!(total, 5, "total for {query:?}");
    }
    // 101 sites: 100 without a limit, all of them with limit=1000.
    for index in 0..96 {
        app.create_site(&format!("Bulk {index:03}"));
    }
    let (sites, total) = list_sites(&app, &token, &[]);
    assert_eq!((sites.len(), total), (100, 101), "the default limit");
    let (sites, total) = list_sites(&app, &token, &[("limit", "1000")]);
    assert_eq!((sites.len(), total), (101, 101), "limit=1000");
    let (sites, _) = list_sites(&app, &token, &[("offset", "100")]);
    assert_eq!(sites.len(), 1, "offset=100");
}

fn out_of_range_or_malformed_paging_is_invalid_request(app: TestApp) {
    let scene = scene(&app, "Paging Store");
    for query in [
        "limit=0",
        "limit=1001",
        "limit=5000",
        "limit=abc",
        "limit=-1",
        "limit=1.5",
        "limit=99999999999999999999",
        "offset=-1",
        "offset=abc",
        "offset=99999999999999999999",
    ] {
        let response = app.admin_get(&scene.token, &format!("/admin/v1/sites?{query}"));
        assert_admin_error(response, 400, "invalid_request", query);
    }
    for query in ["limit=1", "limit=1000", "offset=0"] {
        app.admin_get_ok(&scene.token, &format!("/admin/v1/sites?{query}"));
    }
}

/// The body of a 404 with the site key replaced, so an unassigned and a nonexistent site's
/// answers can be compared even if the message echoes the key.
fn not_found_text(response: Response, site_key: &str, what: &str) -> String {
    let status = response.status();
    let text = response.text().unwrap();
    assert_eq!(status, 404, "{what}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"], "not_found", "{what}: {body}");
    text.replace(site_key, "SITE")
}

fn site_manager_sees_only_assigned_sites_and_gets_404_elsewhere(app: TestApp) {
    let mine = app.create_site("Mine Store");
    let theirs = app.create_site("Theirs Store");
    let also_mine = app.create_site("Also Mine Store");
    let platform = app.create_platform_admin("Platform Admin");
    let platform_token = app.admin_token(&platform);
    let manager = app.create_site_manager("Site Manager", &[&mine, &also_mine]);
    let token = app.admin_token(&manager);
    let resource_server = app.create_resource_server("Manager API");
    let their_token = create_named(&app, &platform_token, &theirs, "Their Partner");

    let (sites, total) = list_sites(&app, &token, &[]);
    assert_eq!(names(&sites), ["Also Mine Store", "Mine Store"]);
    assert_eq!(total, 2);
    let (sites, total) = list_sites(&app, &platform_token, &[]);
    assert_eq!(
        names(&sites),
        ["Also Mine Store", "Mine Store", "Theirs Store"]
    );
    assert_eq!(total, 3);
    app.admin_get_ok(&token, &site_path(&mine));
    app.admin_get_ok(&token, &tokens_path(&also_mine));

    let nowhere = SiteKeys {
        site_key: "site_AAAAAAAAAAAAAAAAAAAA".into(),
        auth_key: String::new(),
    };
    for (method, path_of, body) in [
        (reqwest::Method::GET, "", None),
        (reqwest::Method::GET, "/tokens", None),
        (
            reqwest::Method::POST,
            "/tokens",
            Some(json!({"description": "Intruder"})),
        ),
        (reqwest::Method::GET, "/tokens/{id}", None),
        (reqwest::Method::GET, "/tokens/{id}/history", None),
        (reqwest::Method::POST, "/tokens/{id}/regenerate", None),
        (reqwest::Method::POST, "/tokens/{id}/invalidate", None),
        (reqwest::Method::POST, "/tokens/{id}/validate", None),
    ] {
        let suffix = path_of.replace("{id}", &their_token.id.to_string());
        let unassigned = format!("{}{suffix}", site_path(&theirs));
        let nonexistent = format!("{}{suffix}", site_path(&nowhere));
        let bearer = format!("Bearer {token}");
        let unassigned_text = not_found_text(
            send(&app, &method, &unassigned, &body, Some(&bearer)),
            &theirs.site_key,
            &format!("site manager: {method} {unassigned}"),
        );
        let nonexistent_text = not_found_text(
            send(&app, &method, &nonexistent, &body, Some(&bearer)),
            &nowhere.site_key,
            &format!("site manager: {method} {nonexistent}"),
        );
        assert_eq!(
            unassigned_text, nonexistent_text,
            "{method} …{suffix}: an unassigned site must look like a nonexistent one"
        );
    }
    // Through an assigned site's path, the other site's token id is not found either.
    assert_admin_error(
        app.admin_get(&token, &token_path(&mine, their_token.id)),
        404,
        "not_found",
        "another site's token id under an assigned site",
    );
    assert_eq!(token_count_in_db(&app, &theirs), 1, "nothing created");
    assert_eq!(
        app.introspect(&resource_server, &their_token.value)["active"],
        true,
        "nothing regenerated or invalidated"
    );
    assert_eq!(
        event_names(&history(&app, &platform_token, &theirs, their_token.id)),
        ["created"]
    );
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

fn creating_a_token_answers_201_with_location_and_the_value_once(app: TestApp) {
    let scene = scene(&app, "Partner Store");
    let resource_server = app.create_resource_server("Partner API");
    let before = now();
    let created = create_named(&app, &scene.token, &scene.site, "Partner One");
    let body = &created.body;
    assert_eq!(body["description"], "Partner One", "{body}");
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["expires_at"], Value::Null, "{body}");
    assert_eq!(body["scope"], Value::Null, "{body}");
    assert_eq!(body["last_used_at"], Value::Null, "{body}");
    let generated_at = rfc3339(&body["generated_at"], "create");
    assert!(
        (generated_at.timestamp() - before.timestamp()).abs() <= 60,
        "generated_at {generated_at} is not now"
    );

    // Later reads show the same view, masked, never the value.
    let view = without_value(body);
    assert_eq!(get_token(&app, &scene.token, &scene.site, created.id), view);
    let listed = list_tokens(&app, &scene.token, &scene.site);
    assert_eq!(listed, vec![view.clone()]);
    for path in [
        tokens_path(&scene.site),
        token_path(&scene.site, created.id),
        format!("{}/history", token_path(&scene.site, created.id)),
        site_path(&scene.site),
        "/admin/v1/sites".to_string(),
    ] {
        let text = app.admin_get(&scene.token, &path).text().unwrap();
        assert!(
            !text.contains(&created.value) && !text.contains(&created.value[4..47]),
            "GET {path} shows the value: {text}"
        );
    }

    // The token works at once, as a non-primary token of its site.
    let answer = app.introspect(&resource_server, &created.value);
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["token_kind"], "secondary", "{answer}");
    assert_eq!(
        answer["client_id"],
        scene.site.site_key.as_str(),
        "{answer}"
    );
    let object = answer.as_object().unwrap();
    assert!(
        !object.contains_key("exp") && !object.contains_key("scope"),
        "no expiry or scope was set: {answer}"
    );
    assert_eq!(
        answer["iat"].as_i64(),
        Some(generated_at.timestamp()),
        "{answer}"
    );

    let events = history(&app, &scene.token, &scene.site, created.id);
    assert_eq!(event_names(&events), ["created"]);
    assert_eq!(
        events[0]["actor"],
        json!({"kind": "admin", "name": scene.admin.name})
    );
    // Each create makes a new token with its own value and id.
    let second = create_named(&app, &scene.token, &scene.site, "Partner Two");
    assert_ne!(second.id, created.id);
    assert_ne!(second.value, created.value);
}

fn a_created_token_with_expiry_introspects_with_exp(app: TestApp) {
    let scene = scene(&app, "Expiring Store");
    let resource_server = app.create_resource_server("Expiry API");
    let expires_at = instant_from_now(TimeDelta::days(30));
    let expected = DateTime::parse_from_rfc3339(&expires_at).unwrap();
    let created = create_token(
        &app,
        &scene.token,
        &scene.site,
        json!({"description": "Thirty Days", "expires_at": expires_at}),
    );
    assert_eq!(
        rfc3339(&created.body["expires_at"], "expires_at"),
        expected,
        "{}",
        created.body
    );
    let answer = app.introspect(&resource_server, &created.value);
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(
        answer["exp"].as_i64(),
        Some(expected.timestamp()),
        "{answer}"
    );

    // Another offset names the same kind of instant.
    let in_plus_two = (now() + TimeDelta::days(10))
        .with_timezone(&FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339_opts(SecondsFormat::Secs, false);
    let expected = DateTime::parse_from_rfc3339(&in_plus_two).unwrap();
    let created = create_token(
        &app,
        &scene.token,
        &scene.site,
        json!({"description": "Ten Days", "expires_at": in_plus_two}),
    );
    assert_eq!(
        rfc3339(&created.body["expires_at"], "expires_at"),
        expected,
        "{in_plus_two}: {}",
        created.body
    );
    assert_eq!(
        app.introspect(&resource_server, &created.value)["exp"].as_i64(),
        Some(expected.timestamp()),
        "{in_plus_two}"
    );
}

fn token_list_orders_primary_then_active_then_inactive(app: TestApp) {
    let scene = scene(&app, "Ordered Store");
    let a = create_named(&app, &scene.token, &scene.site, "Token A");
    let b = create_named(&app, &scene.token, &scene.site, "Token B");
    let c = create_named(&app, &scene.token, &scene.site, "Token C");
    let d = create_named(&app, &scene.token, &scene.site, "Token D");
    // The primary is minted last but listed first.
    let primary = app.primary_token(&scene.site);
    let listed = list_tokens(&app, &scene.token, &scene.site);
    assert_eq!(
        descriptions(&listed),
        [
            "Ordered Store Primary Token",
            "Token A",
            "Token B",
            "Token C",
            "Token D"
        ]
    );
    let first = &listed[0];
    assert_eq!(first["kind"], "primary", "{first}");
    assert_eq!(first["masked_value"], masked(&primary), "{first}");
    assert_eq!(first["active"], true, "{first}");
    assert_eq!(first["expires_at"], Value::Null, "{first}");
    assert_eq!(first["scope"], Value::Null, "{first}");
    assert!(listed[1..].iter().all(|view| view["kind"] == "secondary"));

    // B, then A, become inactive: inactive ones go last, in creation order.
    act(&app, &scene.token, &scene.site, b.id, "invalidate", None);
    act(&app, &scene.token, &scene.site, a.id, "invalidate", None);
    let listed = list_tokens(&app, &scene.token, &scene.site);
    assert_eq!(
        descriptions(&listed),
        [
            "Ordered Store Primary Token",
            "Token C",
            "Token D",
            "Token A",
            "Token B"
        ]
    );
    let active: Vec<bool> = listed
        .iter()
        .map(|view| view["active"].as_bool().unwrap())
        .collect();
    assert_eq!(active, [true, true, true, false, false]);
    let ids: Vec<i64> = listed.iter().map(|v| v["id"].as_i64().unwrap()).collect();
    assert_eq!(ids[1..], [c.id, d.id, a.id, b.id]);

    // An inactive primary is still listed first.
    assert_eq!(app.invalidate(&scene.site, &primary).status(), 200);
    let listed = list_tokens(&app, &scene.token, &scene.site);
    assert_eq!(listed[0]["kind"], "primary");
    assert_eq!(listed[0]["active"], false, "{}", listed[0]);
    assert_eq!(listed.len(), 5);
}

fn descriptions(views: &[Value]) -> Vec<&str> {
    views
        .iter()
        .map(|view| view["description"].as_str().unwrap())
        .collect()
}

fn last_used_at_appears_once_a_token_is_used(app: TestApp) {
    let scene = scene(&app, "Used Store");
    let resource_server = app.create_resource_server("Usage API");
    let created = create_named(&app, &scene.token, &scene.site, "Busy Partner");
    let unused = create_named(&app, &scene.token, &scene.site, "Idle Partner");
    assert_eq!(
        app.introspect(&resource_server, &created.value)["active"],
        true
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let view = loop {
        let view = get_token(&app, &scene.token, &scene.site, created.id);
        if !view["last_used_at"].is_null() {
            break view;
        }
        assert!(
            Instant::now() < deadline,
            "last_used_at never appeared: {view}"
        );
        thread::sleep(Duration::from_millis(50));
    };
    let used_at = rfc3339(&view["last_used_at"], "last_used_at");
    assert!((used_at.timestamp() - now().timestamp()).abs() <= 60);
    assert_eq!(
        get_token(&app, &scene.token, &scene.site, unused.id)["last_used_at"],
        Value::Null
    );
}

/// `--usage-resolution-secs` (`service::usage`) through a node whose flushes the test drives: once
/// a use is written, later ones are held back until the quiet time ends, which writes the latest,
/// and a stop writes what is still held back.
fn last_used_at_is_written_once_per_usage_resolution(app: TestApp) {
    let scene = scene(&app, "Steady Store");
    let resource_server = app.create_resource_server("Steady API");
    let created = create_named(&app, &scene.token, &scene.site, "Steady Partner");
    let node = TestNode::spawn(&app.db, |config| {
        config.usage_resolution = Duration::from_secs(3600);
        config.usage_flush_interval = Duration::from_secs(3600);
    });
    let flush_at = |at| {
        node.context
            .introspection
            .usage
            .flush(&node.context.store, at, Flush::Periodic)
            .expect("flush")
    };
    let introspect = || {
        assert_eq!(
            node.introspect(&resource_server, &created.value)["active"],
            true
        )
    };
    let last_used_at =
        || get_token(&app, &scene.token, &scene.site, created.id)["last_used_at"].clone();

    let now = tokenwarden::clock::now;
    let two_hours_on = || now() + TimeDelta::hours(2);
    // Stored times are shown to the second, hence the pauses between uses.
    let pause = || thread::sleep(Duration::from_millis(1_100));

    introspect();
    assert_eq!(flush_at(now()), 1, "a first use");
    let first = last_used_at();
    pause();
    introspect();
    assert_eq!(flush_at(now()), 0, "held back in the quiet time");
    assert_eq!(flush_at(two_hours_on()), 1, "the quiet time's end");
    let second = last_used_at();
    assert!(
        rfc3339(&second, "second") > rfc3339(&first, "first"),
        "the quiet time's end wrote {second}, not the use it held back"
    );
    pause();
    introspect();
    assert_eq!(
        flush_at(two_hours_on()),
        0,
        "held back in the next quiet time"
    );
    drop(node);
    let at_stop = last_used_at();
    assert!(
        rfc3339(&at_stop, "at stop") > rfc3339(&second, "second"),
        "the stop did not write the use held back: {at_stop} after {second}"
    );
}

fn regenerate_replaces_the_value_and_refuses_the_old_one_at_once(app: TestApp) {
    let scene = scene(&app, "Regen Store");
    let resource_server = app.create_resource_server("Regen API");
    let created = create_named(&app, &scene.token, &scene.site, "Rotating Partner");
    // Introspected first, so a cache holds the old value when it is replaced.
    assert_eq!(
        app.introspect(&resource_server, &created.value)["active"],
        true
    );
    thread::sleep(Duration::from_millis(1100));
    let answer = act(
        &app,
        &scene.token,
        &scene.site,
        created.id,
        "regenerate",
        None,
    );
    let regenerated = with_value(answer, "regenerate");
    assert_eq!(regenerated.id, created.id, "the same token");
    assert_ne!(regenerated.value, created.value);
    assert_eq!(regenerated.body["description"], "Rotating Partner");
    assert_eq!(regenerated.body["active"], true);
    assert!(
        rfc3339(&regenerated.body["generated_at"], "after")
            > rfc3339(&created.body["generated_at"], "before"),
        "generated_at moves: {} then {}",
        created.body,
        regenerated.body
    );
    assert_eq!(
        app.introspect(&resource_server, &created.value),
        json!({"active": false}),
        "the old value right after regeneration"
    );
    let answer = app.introspect(&resource_server, &regenerated.value);
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["token_kind"], "secondary", "{answer}");
    // The same view as the answer (last_used_at aside: the introspections above are uses).
    let mut view = get_token(&app, &scene.token, &scene.site, created.id);
    let mut expected = without_value(&regenerated.body);
    for v in [&mut view, &mut expected] {
        v.as_object_mut().unwrap().remove("last_used_at");
    }
    assert_eq!(view, expected);
    // A JSON body without a description is fine too.
    let again = with_value(
        act(
            &app,
            &scene.token,
            &scene.site,
            created.id,
            "regenerate",
            Some(json!({})),
        ),
        "regenerate with {}",
    );
    assert_eq!(
        app.introspect(&resource_server, &regenerated.value),
        json!({"active": false})
    );
    assert_eq!(
        app.introspect(&resource_server, &again.value)["active"],
        true
    );
    assert_eq!(
        event_names(&history(&app, &scene.token, &scene.site, created.id)),
        ["created", "regenerated", "regenerated"]
    );
    assert_eq!(
        token_count_in_db(&app, &scene.site),
        1,
        "regeneration adds no token"
    );
}

fn regenerating_an_inactive_token_keeps_it_inactive(app: TestApp) {
    let scene = scene(&app, "Dormant Store");
    let resource_server = app.create_resource_server("Dormant API");
    let created = create_named(&app, &scene.token, &scene.site, "Dormant Partner");
    act(
        &app,
        &scene.token,
        &scene.site,
        created.id,
        "invalidate",
        None,
    );
    let regenerated = with_value(
        act(
            &app,
            &scene.token,
            &scene.site,
            created.id,
            "regenerate",
            None,
        ),
        "regenerate an inactive token",
    );
    assert_eq!(regenerated.body["active"], false, "{}", regenerated.body);
    for (what, value) in [
        ("the new value", &regenerated.value),
        ("the old value", &created.value),
    ] {
        assert_eq!(
            app.introspect(&resource_server, value),
            json!({"active": false}),
            "{what} of an inactive token"
        );
    }
    let validated = act(
        &app,
        &scene.token,
        &scene.site,
        created.id,
        "validate",
        None,
    );
    assert_eq!(validated["active"], true);
    assert_eq!(validated["masked_value"], masked(&regenerated.value));
    assert_eq!(
        app.introspect(&resource_server, &regenerated.value)["active"],
        true,
        "the new value once validated"
    );
    assert_eq!(
        app.introspect(&resource_server, &created.value),
        json!({"active": false}),
        "validation does not bring back the old value"
    );
    assert_eq!(
        event_names(&history(&app, &scene.token, &scene.site, created.id)),
        ["created", "invalidated", "regenerated", "validated"]
    );
}

fn invalidate_and_validate_take_effect_at_once_and_repeats_add_no_event(app: TestApp) {
    let scene = scene(&app, "Switch Store");
    let resource_server = app.create_resource_server("Switch API");
    let created = create_named(&app, &scene.token, &scene.site, "Switched Partner");
    let bystander = create_named(&app, &scene.token, &scene.site, "Bystander");
    assert_eq!(
        app.introspect(&resource_server, &created.value)["active"],
        true
    );
    for round in 0..2 {
        let answer = act(
            &app,
            &scene.token,
            &scene.site,
            created.id,
            "invalidate",
            None,
        );
        assert_eq!(answer["active"], false, "invalidate #{round}: {answer}");
        assert_eq!(answer["masked_value"], masked(&created.value));
        assert_eq!(
            app.introspect(&resource_server, &created.value),
            json!({"active": false}),
            "the very next introspection after invalidate #{round}"
        );
    }
    for round in 0..2 {
        let body = (round == 1).then(|| json!({}));
        let answer = act(
            &app,
            &scene.token,
            &scene.site,
            created.id,
            "validate",
            body,
        );
        assert_eq!(answer["active"], true, "validate #{round}: {answer}");
        assert_eq!(
            app.introspect(&resource_server, &created.value)["active"],
            true,
            "the very next introspection after validate #{round}"
        );
    }
    assert_eq!(
        event_names(&history(&app, &scene.token, &scene.site, created.id)),
        ["created", "invalidated", "validated"],
        "a repeated invalidate or validate adds no event"
    );
    assert_eq!(
        app.introspect(&resource_server, &bystander.value)["active"],
        true
    );
    assert_eq!(
        event_names(&history(&app, &scene.token, &scene.site, bystander.id)),
        ["created"]
    );
}

fn history_names_the_acting_admin_oldest_first(app: TestApp) {
    let site = app.create_site("History Store");
    let platform = app.create_platform_admin("Platform Person");
    let manager = app.create_site_manager("Manager Person", &[&site]);
    let platform_token = app.admin_token(&platform);
    let manager_token = app.admin_token(&manager);
    let created = create_named(&app, &platform_token, &site, "Watched Partner");
    act(&app, &manager_token, &site, created.id, "invalidate", None);
    act(&app, &platform_token, &site, created.id, "validate", None);
    act(&app, &manager_token, &site, created.id, "regenerate", None);
    let events = history(&app, &manager_token, &site, created.id);
    assert_eq!(
        event_names(&events),
        ["created", "invalidated", "validated", "regenerated"]
    );
    let actors: Vec<&Value> = events.iter().map(|event| &event["actor"]).collect();
    let platform_actor = json!({"kind": "admin", "name": "Platform Person"});
    let manager_actor = json!({"kind": "admin", "name": "Manager Person"});
    assert_eq!(
        actors,
        [
            &platform_actor,
            &manager_actor,
            &platform_actor,
            &manager_actor
        ]
    );
    assert_eq!(history(&app, &platform_token, &site, created.id), events);
}

fn regenerate_with_a_new_description_records_regenerated_then_description_changed(app: TestApp) {
    let scene = scene(&app, "Renamed Store");
    let created = create_named(&app, &scene.token, &scene.site, "Old Name");
    let regenerated = act(
        &app,
        &scene.token,
        &scene.site,
        created.id,
        "regenerate",
        Some(json!({"description": "New Name"})),
    );
    assert_eq!(regenerated["description"], "New Name");
    // The same description again changes nothing.
    act(
        &app,
        &scene.token,
        &scene.site,
        created.id,
        "invalidate",
        Some(json!({"description": "New Name"})),
    );
    // A new one with another action, trimmed.
    let validated = act(
        &app,
        &scene.token,
        &scene.site,
        created.id,
        "validate",
        Some(json!({"description": "  Third Name  "})),
    );
    assert_eq!(validated["description"], "Third Name");
    assert_eq!(
        get_token(&app, &scene.token, &scene.site, created.id)["description"],
        "Third Name"
    );
    let events = history(&app, &scene.token, &scene.site, created.id);
    assert_eq!(
        event_names(&events),
        [
            "created",
            "regenerated",
            "description_changed",
            "invalidated",
            "validated",
            "description_changed"
        ]
    );
    assert_eq!(events[2]["detail"], "New Name", "{}", events[2]);
    assert_eq!(events[5]["detail"], "Third Name", "{}", events[5]);
    for event in &events {
        assert_eq!(
            event["actor"],
            json!({"kind": "admin", "name": scene.admin.name}),
            "{event}"
        );
    }
}

fn an_invalid_description_on_an_action_changes_nothing(app: TestApp) {
    let scene = scene(&app, "Careful Store");
    let resource_server = app.create_resource_server("Careful API");
    let created = create_named(&app, &scene.token, &scene.site, "Keep Name");
    for action in ["regenerate", "invalidate", "validate"] {
        for description in ["<script>", "a;b", &"x".repeat(101)] {
            let body = json!({ "description": description });
            let response = act_response(
                &app,
                &scene.token,
                &scene.site,
                &created.id.to_string(),
                action,
                Some(&body),
            );
            assert_validation_failed(response, "description", &format!("{action} with {body}"));
        }
    }
    let view = get_token(&app, &scene.token, &scene.site, created.id);
    assert_eq!(view, without_value(&created.body), "nothing changed");
    assert_eq!(
        app.introspect(&resource_server, &created.value)["active"],
        true,
        "the value was neither regenerated nor invalidated"
    );
    assert_eq!(
        event_names(&history(&app, &scene.token, &scene.site, created.id)),
        ["created"]
    );
}

fn the_primary_is_managed_only_through_oauth(app: TestApp) {
    let scene = scene(&app, "Managed Store");
    let resource_server = app.create_resource_server("Managed API");
    let primary = app.primary_token(&scene.site);
    let listed = list_tokens(&app, &scene.token, &scene.site);
    assert_eq!(listed.len(), 1);
    let view = listed[0].clone();
    assert_eq!(view["kind"], "primary");
    assert_eq!(view["description"], "Managed Store Primary Token");
    assert_eq!(view["masked_value"], masked(&primary));
    assert_eq!(view["active"], true);
    let id = view["id"].as_i64().unwrap();
    assert_eq!(get_token(&app, &scene.token, &scene.site, id), view);

    for action in ["regenerate", "validate", "invalidate"] {
        for body in [None, Some(json!({"description": "Renamed Primary"}))] {
            let response = act_response(
                &app,
                &scene.token,
                &scene.site,
                &id.to_string(),
                action,
                body.as_ref(),
            );
            assert_admin_error(
                response,
                409,
                "primary_token_managed_by_oauth",
                &format!("{action} the primary with {body:?}"),
            );
        }
    }
    assert_eq!(
        get_token(&app, &scene.token, &scene.site, id),
        view,
        "the primary is untouched"
    );
    assert_eq!(app.introspect(&resource_server, &primary)["active"], true);
    assert_eq!(app.primary_token(&scene.site), primary);
    let events = history(&app, &scene.token, &scene.site, id);
    assert_eq!(event_names(&events), ["created"]);
    assert_eq!(
        events[0]["actor"],
        json!({"kind": "site", "name": scene.site.site_key})
    );
}

fn the_primary_history_continues_after_the_integrator_replaces_it(app: TestApp) {
    let scene = scene(&app, "Continuing Store");
    let first = app.primary_token(&scene.site);
    let id = list_tokens(&app, &scene.token, &scene.site)[0]["id"]
        .as_i64()
        .unwrap();
    assert_eq!(app.invalidate(&scene.site, &first).status(), 200);
    let listed = list_tokens(&app, &scene.token, &scene.site);
    assert_eq!(listed[0]["kind"], "primary");
    assert_eq!(listed[0]["active"], false, "{}", listed[0]);
    assert_eq!(
        event_names(&history(&app, &scene.token, &scene.site, id)),
        ["created", "invalidated"]
    );

    let second = app.primary_token(&scene.site);
    assert_ne!(second, first);
    let listed = list_tokens(&app, &scene.token, &scene.site);
    assert_eq!(listed.len(), 1, "still one primary: {listed:?}");
    let view = &listed[0];
    assert_eq!(view["kind"], "primary");
    assert_eq!(view["active"], true, "{view}");
    assert_eq!(view["masked_value"], masked(&second), "{view}");
    assert_eq!(view["description"], "Continuing Store Primary Token");
    let events = history(
        &app,
        &scene.token,
        &scene.site,
        view["id"].as_i64().unwrap(),
    );
    assert_eq!(event_names(&events), ["created", "invalidated", "created"]);
    for event in &events {
        assert_eq!(
            event["actor"],
            json!({"kind": "site", "name": scene.site.site_key}),
            "{event}"
        );
    }
    let site = app.admin_get_ok(&scene.token, &site_path(&scene.site));
    assert_eq!(site["token_count"], 1, "{site}");
}

fn non_primary_tokens_cannot_be_invalidated_through_oauth(app: TestApp) {
    let scene = scene(&app, "Oauth Store");
    let resource_server = app.create_resource_server("Oauth API");
    app.primary_token(&scene.site);
    let created = create_named(&app, &scene.token, &scene.site, "Oauth Partner");
    let reference = assert_oauth_error(
        app.invalidate(&scene.site, &never_issued(SecretKind::PrimaryToken)),
        400,
        "invalid_request",
    );
    for (what, value) in [
        ("its own non-primary token", created.value.clone()),
        (
            "a never-issued non-primary token",
            never_issued(SecretKind::SecondaryToken),
        ),
    ] {
        let response = app.invalidate(&scene.site, &value);
        assert_eq!(response.status(), 400, "{what}");
        let description = assert_oauth_error(response, 400, "invalid_request");
        assert_eq!(
            description, reference,
            "{what}: the same message as for any other token"
        );
    }
    assert_eq!(
        app.introspect(&resource_server, &created.value)["active"],
        true,
        "still active"
    );
    assert_eq!(
        event_names(&history(&app, &scene.token, &scene.site, created.id)),
        ["created"]
    );
}

fn the_tenth_non_primary_create_is_token_limit_reached(app: TestApp) {
    let scene = scene(&app, "Full Store");
    app.primary_token(&scene.site);
    let mut ids = BTreeSet::new();
    for index in 1..=9 {
        ids.insert(create_named(&app, &scene.token, &scene.site, &format!("Partner {index}")).id);
    }
    assert_eq!(ids.len(), 9);
    let tenth = app.admin_post(
        &scene.token,
        &tokens_path(&scene.site),
        Some(&json!({"description": "Partner 10"})),
    );
    assert_admin_error(
        tenth,
        409,
        "token_limit_reached",
        "the 10th non-primary create",
    );
    // An inactive token still holds its slot.
    let first = *ids.iter().next().unwrap();
    act(&app, &scene.token, &scene.site, first, "invalidate", None);
    let again = app.admin_post(
        &scene.token,
        &tokens_path(&scene.site),
        Some(&json!({"description": "Partner 11"})),
    );
    assert_admin_error(
        again,
        409,
        "token_limit_reached",
        "a create after invalidating one of nine",
    );
    assert_eq!(token_count_in_db(&app, &scene.site), 10);
    assert_eq!(list_tokens(&app, &scene.token, &scene.site).len(), 10);
    assert_eq!(
        app.admin_get_ok(&scene.token, &site_path(&scene.site))["token_count"],
        10
    );
}

fn the_primary_can_still_be_issued_beside_nine_non_primary_tokens(app: TestApp) {
    let scene = scene(&app, "Late Primary Store");
    let resource_server = app.create_resource_server("Late API");
    for index in 1..=9 {
        create_named(&app, &scene.token, &scene.site, &format!("Early {index}"));
    }
    assert_admin_error(
        app.admin_post(
            &scene.token,
            &tokens_path(&scene.site),
            Some(&json!({"description": "Early 10"})),
        ),
        409,
        "token_limit_reached",
        "a 10th non-primary create before any primary exists",
    );
    let primary = app.primary_token(&scene.site);
    assert_eq!(app.introspect(&resource_server, &primary)["active"], true);
    assert_eq!(token_count_in_db(&app, &scene.site), 10);
    // Replacing the primary reuses its slot.
    assert_eq!(app.invalidate(&scene.site, &primary).status(), 200);
    let replaced = app.primary_token(&scene.site);
    assert_ne!(replaced, primary);
    assert_eq!(token_count_in_db(&app, &scene.site), 10);
    let listed = list_tokens(&app, &scene.token, &scene.site);
    assert_eq!(listed.len(), 10);
    assert_eq!(listed[0]["masked_value"], masked(&replaced));
}

fn twenty_concurrent_creates_on_a_site_with_eight_tokens_leave_exactly_ten(app: TestApp) {
    let scene = scene(&app, "Crowded Store");
    app.primary_token(&scene.site);
    for index in 1..=7 {
        create_named(&app, &scene.token, &scene.site, &format!("Seated {index}"));
    }
    assert_eq!(token_count_in_db(&app, &scene.site), 8);
    let app = Arc::new(app);
    let (racer_app, token, path) = (app.clone(), scene.token.clone(), tokens_path(&scene.site));
    let results = race(20, move |index| {
        let response = racer_app.admin_post(
            &token,
            &path,
            Some(&json!({ "description": format!("Racer {index}") })),
        );
        let status = response.status().as_u16();
        let body: Value = response.json().unwrap_or(Value::Null);
        (status, body)
    });
    let created: Vec<&Value> = results
        .iter()
        .filter(|(status, _)| *status == 201)
        .map(|(_, body)| body)
        .collect();
    let refused = results
        .iter()
        .filter(|(status, body)| *status == 409 && body["error"] == "token_limit_reached")
        .count();
    assert_eq!(
        (created.len(), refused),
        (2, 18),
        "20 racers for 2 free slots: {results:?}"
    );
    assert_ne!(created[0]["id"], created[1]["id"]);
    assert_eq!(token_count_in_db(&app, &scene.site), 10);
    assert_eq!(list_tokens(&app, &scene.token, &scene.site).len(), 10);
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

fn unknown_foreign_and_non_numeric_token_ids_are_404(app: TestApp) {
    let scene = scene(&app, "Own Store");
    let other = app.create_site("Foreign Store");
    let resource_server = app.create_resource_server("Foreign API");
    create_named(&app, &scene.token, &scene.site, "Own Partner");
    let foreign = create_named(&app, &scene.token, &other, "Foreign Partner");
    let foreign_id = foreign.id.to_string();
    for id in [
        "999999",
        foreign_id.as_str(),
        "abc",
        "-1",
        "0",
        "1.5",
        "1e3",
        "99999999999999999999",
        "%20",
        "1%00",
    ] {
        let base = format!("{}/{id}", tokens_path(&scene.site));
        for path in [base.clone(), format!("{base}/history")] {
            assert_admin_error(
                app.admin_get(&scene.token, &path),
                404,
                "not_found",
                &format!("GET {path}"),
            );
        }
        for action in ["regenerate", "validate", "invalidate"] {
            for body in [None, Some(json!({"description": "Hijacked"}))] {
                assert_admin_error(
                    act_response(&app, &scene.token, &scene.site, id, action, body.as_ref()),
                    404,
                    "not_found",
                    &format!("{action} token id {id:?} with {body:?}"),
                );
            }
        }
    }
    let view = get_token(&app, &scene.token, &other, foreign.id);
    assert_eq!(
        view,
        without_value(&foreign.body),
        "the other site's token is untouched"
    );
    assert_eq!(
        app.introspect(&resource_server, &foreign.value)["active"],
        true,
        "the other site's token still works"
    );
}

fn unknown_sites_and_admin_paths_are_404(app: TestApp) {
    let scene = scene(&app, "Known Store");
    let created = create_named(&app, &scene.token, &scene.site, "Known Partner");
    let long_key = "x".repeat(500);
    for key in [
        "site_AAAAAAAAAAAAAAAAAAAA",
        "nope",
        "%20",
        "site_%00",
        long_key.as_str(),
    ] {
        let base = format!("/admin/v1/sites/{key}");
        for path in [
            base.clone(),
            format!("{base}/tokens"),
            format!("{base}/tokens/{}", created.id),
        ] {
            assert_admin_error(
                app.admin_get(&scene.token, &path),
                404,
                "not_found",
                &format!("GET {path}"),
            );
        }
        assert_admin_error(
            app.admin_post(
                &scene.token,
                &format!("{base}/tokens"),
                Some(&json!({"description": "Nowhere"})),
            ),
            404,
            "not_found",
            &format!("create under site {key:?}"),
        );
    }
    for path in [
        "/admin/v1/nope".to_string(),
        "/admin/v2/sites".to_string(),
        format!("{}/tokens/{}/nope", site_path(&scene.site), created.id),
        format!("{}/nope", site_path(&scene.site)),
    ] {
        assert_admin_error(
            app.admin_get(&scene.token, &path),
            404,
            "not_found",
            &format!("GET {path}"),
        );
    }
    assert_eq!(app.db.count("SELECT COUNT(*) AS n FROM tokens"), 1);
}

fn descriptions_outside_the_rules_are_422_naming_the_field(app: TestApp) {
    let scene = scene(&app, "Strict Store");
    let bad: Vec<(&str, Value)> = vec![
        ("missing", json!({})),
        ("empty", json!({"description": ""})),
        ("only spaces", json!({"description": "   "})),
        ("101 characters", json!({"description": "x".repeat(101)})),
        (
            "101 non-ASCII letters",
            json!({"description": "é".repeat(101)}),
        ),
        ("markup", json!({"description": "<script>"})),
        ("a semicolon", json!({"description": "a;b"})),
        ("a tab", json!({"description": "tab\there"})),
        ("a newline", json!({"description": "new\nline"})),
        ("a carriage return", json!({"description": "cr\rhere"})),
        ("a NUL", json!({"description": "nul\u{0}here"})),
        ("a quote", json!({"description": "say \"hi\""})),
        ("an apostrophe", json!({"description": "O'Brien"})),
        ("a slash", json!({"description": "a/b"})),
        ("a backslash", json!({"description": "a\\b"})),
        ("a percent sign", json!({"description": "100%"})),
        ("an ampersand", json!({"description": "A&B"})),
        ("an exclamation mark", json!({"description": "Hi!"})),
        ("an emoji", json!({"description": "Partner 😀"})),
        (
            "a zero-width space",
            json!({"description": "zero\u{200b}width"}),
        ),
        (
            "a right-to-left override",
            json!({"description": "rtl\u{202e}gnp"}),
        ),
    ];
    for (what, body) in bad {
        let response = app.admin_post(&scene.token, &tokens_path(&scene.site), Some(&body));
        assert_validation_failed(
            response,
            "description",
            &format!("create with {what}: {body}"),
        );
    }
    assert_eq!(
        token_count_in_db(&app, &scene.site),
        0,
        "nothing was created"
    );
}

fn descriptions_inside_the_rules_are_accepted_and_stored_trimmed(app: TestApp) {
    let scene = scene(&app, "Lenient Store");
    let hundred = "x".repeat(100);
    let hundred_accented = "é".repeat(100);
    let good: [(&str, &str); 9] = [
        ("A", "A"),
        ("Café Partner", "Café Partner"),
        ("  Padded Name  ", "Padded Name"),
        ("a-b_c.d,e 1", "a-b_c.d,e 1"),
        ("Zürich Ünïcode", "Zürich Ünïcode"),
        ("日本語 Partner", "日本語 Partner"),
        (hundred.as_str(), hundred.as_str()),
        (hundred_accented.as_str(), hundred_accented.as_str()),
        (" 2024 Partner, Inc. ", "2024 Partner, Inc."),
    ];
    for (given, stored) in good {
        let created = create_named(&app, &scene.token, &scene.site, given);
        assert_eq!(created.body["description"], stored, "create with {given:?}");
        assert_eq!(
            get_token(&app, &scene.token, &scene.site, created.id)["description"],
            stored,
            "GET after create with {given:?}"
        );
    }
}

fn expires_at_in_the_past_unparsable_or_too_far_ahead_is_422(app: TestApp) {
    let scene = scene(&app, "Dated Store");
    let bad = [
        ("a minute ago", instant_from_now(TimeDelta::minutes(-1))),
        ("366 days ahead", instant_from_now(TimeDelta::days(366))),
        ("ten years ahead", instant_from_now(TimeDelta::days(3650))),
        ("a word", "tomorrow".to_string()),
        ("an impossible month", "2030-13-01T00:00:00Z".to_string()),
        ("no offset", "2030-01-01T00:00:00".to_string()),
        ("a date only", "2030-01-01".to_string()),
        ("empty", String::new()),
        ("1970", "1970-01-01T00:00:00Z".to_string()),
        ("year 10000", "+10000-01-01T00:00:00Z".to_string()),
    ];
    for (what, expires_at) in bad {
        let body = json!({"description": "Dated Partner", "expires_at": expires_at});
        let response = app.admin_post(&scene.token, &tokens_path(&scene.site), Some(&body));
        assert_validation_failed(
            response,
            "expires_at",
            &format!("expires_at {what}: {body}"),
        );
    }
    assert_eq!(
        token_count_in_db(&app, &scene.site),
        0,
        "nothing was created"
    );
    let within = instant_from_now(TimeDelta::days(364));
    let created = create_token(
        &app,
        &scene.token,
        &scene.site,
        json!({"description": "Dated Partner", "expires_at": within}),
    );
    assert_eq!(
        rfc3339(&created.body["expires_at"], "364 days ahead"),
        DateTime::parse_from_rfc3339(&within).unwrap()
    );
}

fn an_expired_token_introspects_inactive(app: TestApp) {
    let scene = scene(&app, "Brief Store");
    let resource_server = app.create_resource_server("Brief API");
    let expires_at = instant_from_now(TimeDelta::seconds(3));
    let deadline = DateTime::parse_from_rfc3339(&expires_at).unwrap();
    let created = create_token(
        &app,
        &scene.token,
        &scene.site,
        json!({"description": "Brief Partner", "expires_at": expires_at}),
    );
    let answer = app.introspect(&resource_server, &created.value);
    assert_eq!(answer["active"], true, "before {expires_at}: {answer}");
    assert_eq!(answer["exp"].as_i64(), Some(deadline.timestamp()));
    while now().timestamp() <= deadline.timestamp() {
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        app.introspect(&resource_server, &created.value),
        json!({"active": false}),
        "after {expires_at}"
    );
    // Still listed: expiry refuses the token, it does not delete it.
    assert_eq!(list_tokens(&app, &scene.token, &scene.site).len(), 1);
}

fn scope_is_refused_when_no_scopes_are_configured(app: TestApp) {
    let scene = scene(&app, "Unscoped Store");
    for scope in ["read", "admin", "read write"] {
        let body = json!({"description": "Scoped Partner", "scope": scope});
        let response = app.admin_post(&scene.token, &tokens_path(&scene.site), Some(&body));
        assert_validation_failed(
            response,
            "scope",
            &format!("scope {scope:?} with no scopes configured"),
        );
    }
    assert_eq!(token_count_in_db(&app, &scene.site), 0);
}

fn malformed_json_is_400_and_wrong_shapes_are_422(app: TestApp) {
    let scene = scene(&app, "Parsed Store");
    let created = create_named(&app, &scene.token, &scene.site, "Target Partner");
    let regenerate = format!("{}/regenerate", token_path(&scene.site, created.id));
    let malformed: [&[u8]; 8] = [
        b"{",
        b"{\"description\": \"Partner\"",
        b"not json",
        b"{'description': 'single quotes'}",
        b"{\"description\": \"Partner\"} trailing",
        b"{\"description\": \"\xff\xfe\"}",
        b"{\"description\": \"Partner\",}",
        b"",
    ];
    for body in malformed {
        let what = format!("create with {:?}", String::from_utf8_lossy(body));
        let response = post_raw(
            &app,
            &scene.token,
            &tokens_path(&scene.site),
            Some("application/json"),
            body.to_vec(),
        );
        assert_admin_error(response, 400, "invalid_request", &what);
        if !body.is_empty() {
            let response = post_raw(
                &app,
                &scene.token,
                &regenerate,
                Some("application/json"),
                body.to_vec(),
            );
            assert_admin_error(response, 400, "invalid_request", &format!("re{what}"));
        }
    }
    let wrong_shapes = [
        json!({"description": 5}),
        json!({"description": true}),
        json!({"description": null}),
        json!({"description": ["Partner"]}),
        json!({"description": "Partner", "colour": "red"}),
        json!({"description": "Partner", "expires_at": 1_893_456_000}),
        json!({"description": "Partner", "scope": ["read"]}),
        json!(["Array Partner"]),
        json!("Partner"),
        json!(42),
        json!(null),
    ];
    for body in wrong_shapes {
        let response = app.admin_post(&scene.token, &tokens_path(&scene.site), Some(&body));
        assert_admin_error(
            response,
            422,
            "validation_failed",
            &format!("create with {body}"),
        );
    }
    for body in [
        json!({"description": 5}),
        json!({"colour": "red"}),
        json!(["Array Partner"]),
    ] {
        let response = app.admin_post(&scene.token, &regenerate, Some(&body));
        assert_admin_error(
            response,
            422,
            "validation_failed",
            &format!("regenerate with {body}"),
        );
    }
    assert_eq!(
        token_count_in_db(&app, &scene.site),
        1,
        "nothing was created"
    );
    assert_eq!(
        get_token(&app, &scene.token, &scene.site, created.id),
        without_value(&created.body),
        "nothing was regenerated"
    );
}

fn a_json_body_with_another_content_type_is_415(app: TestApp) {
    let scene = scene(&app, "Typed Store");
    let created = create_named(&app, &scene.token, &scene.site, "Typed Partner");
    let body = json!({"description": "Typed Partner Two"}).to_string();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
        "multipart/form-data; boundary=x",
    ] {
        let response = post_raw(
            &app,
            &scene.token,
            &tokens_path(&scene.site),
            Some(content_type),
            body.clone(),
        );
        assert_admin_error(
            response,
            415,
            "invalid_request",
            &format!("create with Content-Type {content_type}"),
        );
        let response = post_raw(
            &app,
            &scene.token,
            &format!("{}/regenerate", token_path(&scene.site, created.id)),
            Some(content_type),
            body.clone(),
        );
        assert_admin_error(
            response,
            415,
            "invalid_request",
            &format!("regenerate with Content-Type {content_type}"),
        );
    }
    assert_eq!(
        token_count_in_db(&app, &scene.site),
        1,
        "nothing was created"
    );
    assert_eq!(
        get_token(&app, &scene.token, &scene.site, created.id),
        without_value(&created.body),
        "nothing was regenerated"
    );
    // Parameters and the case of the media type (RFC 9110 8.3.1) do not matter.
    for content_type in ["application/json; charset=utf-8", "Application/JSON"] {
        let response = post_raw(
            &app,
            &scene.token,
            &tokens_path(&scene.site),
            Some(content_type),
            json!({ "description": format!("Typed {}", content_type.len()) }).to_string(),
        );
        assert_eq!(
            response.status(),
            201,
            "create with Content-Type {content_type}"
        );
    }
}

fn a_body_over_16_kib_is_413(app: TestApp) {
    let scene = scene(&app, "Heavy Store");
    let created = create_named(&app, &scene.token, &scene.site, "Heavy Partner");
    let huge = json!({ "description": "x".repeat(17 * 1024) });
    let response = app.admin_post(&scene.token, &tokens_path(&scene.site), Some(&huge));
    assert_admin_error(
        response,
        413,
        "invalid_request",
        "create with a 17 KiB body",
    );
    let response = app.admin_post(
        &scene.token,
        &format!("{}/regenerate", token_path(&scene.site, created.id)),
        Some(&json!({ "description": "x".repeat(64 * 1024) })),
    );
    assert_admin_error(
        response,
        413,
        "invalid_request",
        "regenerate with a 64 KiB body",
    );
    assert_eq!(token_count_in_db(&app, &scene.site), 1);
    assert_eq!(
        get_token(&app, &scene.token, &scene.site, created.id),
        without_value(&created.body)
    );
}

fn a_wrong_method_on_an_admin_path_is_405_with_allow(app: TestApp) {
    use reqwest::Method;
    let scene = scene(&app, "Method Store");
    let created = create_named(&app, &scene.token, &scene.site, "Method Partner");
    let token = token_path(&scene.site, created.id);
    let cases: Vec<(String, Vec<&str>, Vec<Method>)> = vec![
        (
            "/admin/v1/sites".into(),
            vec!["GET", "POST"],
            vec![Method::PUT, Method::DELETE, Method::PATCH],
        ),
        (
            site_path(&scene.site),
            vec!["GET", "PATCH"],
            vec![Method::POST, Method::PUT, Method::DELETE],
        ),
        (
            tokens_path(&scene.site),
            vec!["GET", "POST"],
            vec![Method::PUT, Method::DELETE, Method::PATCH],
        ),
        (
            format!("{}/auth-key", site_path(&scene.site)),
            vec!["POST"],
            vec![Method::GET, Method::PUT, Method::DELETE, Method::PATCH],
        ),
        (
            token.clone(),
            vec!["GET", "DELETE"],
            vec![Method::POST, Method::PUT, Method::PATCH],
        ),
        (
            format!("{}/bulk", tokens_path(&scene.site)),
            vec!["POST"],
            vec![Method::GET, Method::PUT, Method::DELETE],
        ),
        (
            format!("{}/history", site_path(&scene.site)),
            vec!["GET"],
            vec![Method::POST, Method::DELETE],
        ),
        (
            format!("{token}/history"),
            vec!["GET"],
            vec![Method::POST, Method::DELETE],
        ),
        (
            format!("{token}/regenerate"),
            vec!["POST"],
            vec![Method::GET, Method::PUT, Method::DELETE],
        ),
        (
            format!("{token}/validate"),
            vec!["POST"],
            vec![Method::GET, Method::PUT],
        ),
        (
            format!("{token}/invalidate"),
            vec!["POST"],
            vec![Method::GET, Method::DELETE],
        ),
        (
            "/admin/v1/resource-servers".into(),
            vec!["GET", "POST"],
            vec![Method::PUT, Method::DELETE, Method::PATCH],
        ),
        (
            "/admin/v1/resource-servers/rs_AAAAAAAAAAAAAAAAAAAA".into(),
            vec!["GET", "DELETE"],
            vec![Method::POST, Method::PUT, Method::PATCH],
        ),
        (
            "/admin/v1/admins".into(),
            vec!["GET", "POST"],
            vec![Method::PUT, Method::DELETE, Method::PATCH],
        ),
        (
            "/admin/v1/admins/adm_AAAAAAAAAAAAAAAAAAAA".into(),
            vec!["GET", "PATCH"],
            vec![Method::POST, Method::PUT, Method::DELETE],
        ),
    ];
    for (path, allowed, methods) in cases {
        for method in methods {
            let what = format!("{method} {path}");
            let response = app
                .client
                .request(method.clone(), app.url(&path))
                .bearer_auth(&scene.token)
                .send()
                .unwrap();
            let allow = response
                .headers()
                .get("allow")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_else(|| panic!("{what}: no Allow header"));
            assert_admin_error(response, 405, "method_not_allowed", &what);
            let listed: BTreeSet<String> = allow
                .split(',')
                .map(|m| m.trim().to_ascii_uppercase())
                .filter(|m| m != "HEAD")
                .collect();
            let expected: BTreeSet<String> = allowed.iter().map(|m| m.to_string()).collect();
            assert_eq!(listed, expected, "{what}: Allow: {allow}");
        }
    }
    assert_eq!(
        get_token(&app, &scene.token, &scene.site, created.id),
        without_value(&created.body),
        "no wrong method changed anything"
    );
}

/// Not in the API contract, but the reason for RFC 6749 5.1's rule: an answer that carries a
/// secret must not be stored by caches.
fn responses_carrying_a_token_value_are_not_cacheable(app: TestApp) {
    let scene = scene(&app, "Private Store");
    let response = app.admin_post(
        &scene.token,
        &tokens_path(&scene.site),
        Some(&json!({"description": "Private Partner"})),
    );
    assert_eq!(response.status(), 201);
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store"),
        "the create answer carries the token value"
    );
    let id = response.json::<Value>().unwrap()["id"].as_i64().unwrap();
    let response = app.admin_post(
        &scene.token,
        &format!("{}/regenerate", token_path(&scene.site, id)),
        None,
    );
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store"),
        "the regenerate answer carries the token value"
    );
}

// ---------------------------------------------------------------------------------------------
// Configured servers
// ---------------------------------------------------------------------------------------------

fn admin_token_lifetime_is_configurable_and_expired_admin_tokens_are_401(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let app = TestApp::spawn_with(db, |config| config.admin_token_ttl = Duration::from_secs(2));
    let admin = app.create_platform_admin("Brief Admin");
    let token = assert_admin_grant(app.admin_token_request(&admin), 2, "a 2 s admin token");
    app.admin_get_ok(&token, "/admin/v1/sites");
    thread::sleep(Duration::from_millis(3200));
    for path in ["/admin/v1/sites", "/admin/v1/sites?limit=1"] {
        assert_bearer_refusal(
            app.admin_get(&token, path),
            401,
            "invalid_token",
            &format!("GET {path} with an expired admin token"),
        );
    }
    // The admin itself is fine: a new token works.
    let fresh = app.admin_token(&admin);
    app.admin_get_ok(&fresh, "/admin/v1/sites");
}

fn scope_must_be_a_subset_of_the_configured_scopes_and_is_introspected(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let app = TestApp::spawn_with(db, |config| {
        config.token_scopes = vec!["read".into(), "write".into()];
    });
    let scene = scene(&app, "Scoped Store");
    let resource_server = app.create_resource_server("Scoped API");
    for scope in ["read", "write", "read write"] {
        let created = create_token(
            &app,
            &scene.token,
            &scene.site,
            json!({"description": "Scoped Partner", "scope": scope}),
        );
        assert_eq!(created.body["scope"], scope, "{}", created.body);
        let answer = app.introspect(&resource_server, &created.value);
        assert_eq!(answer["active"], true, "scope {scope:?}: {answer}");
        assert_eq!(answer["scope"], scope, "scope {scope:?}: {answer}");
        assert_eq!(answer["token_kind"], "secondary");
    }
    for scope in ["admin", "delete", "read delete", "READ", "read,write"] {
        let body = json!({"description": "Overreaching Partner", "scope": scope});
        let response = app.admin_post(&scene.token, &tokens_path(&scene.site), Some(&body));
        assert_validation_failed(
            response,
            "scope",
            &format!("scope {scope:?} with read and write configured"),
        );
    }
    assert_eq!(token_count_in_db(&app, &scene.site), 3);
}

fn the_furthest_expiry_follows_max_token_lifetime(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let app = TestApp::spawn_with(db, |config| {
        config.max_token_lifetime = Duration::from_secs(86_400);
    });
    let scene = scene(&app, "Short Lived Store");
    let too_far = json!({
        "description": "Too Far",
        "expires_at": instant_from_now(TimeDelta::hours(49)),
    });
    let response = app.admin_post(&scene.token, &tokens_path(&scene.site), Some(&too_far));
    assert_validation_failed(
        response,
        "expires_at",
        &format!("{too_far} with a one-day maximum"),
    );
    create_token(
        &app,
        &scene.token,
        &scene.site,
        json!({
            "description": "Near Enough",
            "expires_at": instant_from_now(TimeDelta::hours(23)),
        }),
    );
    assert_eq!(token_count_in_db(&app, &scene.site), 1);
}

fn unauthenticated_requests_get_the_challenge_before_anything_else_is_read(app: TestApp) {
    let scene = scene(&app, "Guarded Store");
    let created = create_named(&app, &scene.token, &scene.site, "Guarded Partner");
    let requests: [(&str, String, Option<&str>, &[u8]); 6] = [
        (
            "POST",
            tokens_path(&scene.site),
            Some("application/json"),
            b"{bad",
        ),
        ("POST", tokens_path(&scene.site), Some("text/plain"), b"x"),
        (
            "POST",
            format!("{}/regenerate", token_path(&scene.site, created.id)),
            Some("application/json"),
            br#"{"nope": 1}"#,
        ),
        (
            "GET",
            format!("{}/abc", tokens_path(&scene.site)),
            None,
            b"",
        ),
        ("GET", "/admin/v1/sites?limit=0".to_string(), None, b""),
        (
            "GET",
            "/admin/v1/sites/site_%00/tokens".to_string(),
            None,
            b"",
        ),
    ];
    for (method, path, content_type, body) in requests {
        let mut request = app
            .client
            .request(method.parse().unwrap(), app.url(&path))
            .body(body.to_vec());
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        let response = request.send().unwrap();
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(challenge, "Bearer realm=\"tokenwarden\"", "{method} {path}");
        assert_admin_error(response, 401, "invalid_token", &format!("{method} {path}"));
    }
    assert_eq!(token_count_in_db(&app, &scene.site), 1);
}

fn a_malformed_bearer_header_is_invalid_request_with_a_challenge(app: TestApp) {
    for header in ["Bearer", "Bearer a b", "Bearer    "] {
        let response = app
            .client
            .get(app.url("/admin/v1/sites"))
            .header("Authorization", header)
            .send()
            .unwrap();
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(
            challenge, "Bearer realm=\"tokenwarden\", error=\"invalid_request\"",
            "{header:?}"
        );
        assert_admin_error(response, 400, "invalid_request", header);
    }
}

fn unknown_json_fields_are_refused_without_repeating_their_names(app: TestApp) {
    let scene = scene(&app, "Quiet Store");
    let leaked = "twp_ThisCouldBeASecretPastedIntoTheWrongPlace";
    let response = app.admin_post(
        &scene.token,
        &tokens_path(&scene.site),
        Some(&json!({ "description": "Partner", leaked: true })),
    );
    let body = assert_admin_error(response, 422, "validation_failed", "unknown field");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(!description.contains(leaked), "{description}");
    assert!(description.contains("description"), "{description}");
}

fn expired_tokens_are_listed_as_expired_after_the_usable_ones(app: TestApp) {
    let scene = scene(&app, "Ageing Store");
    let soon = (tokenwarden::clock::now() + chrono::Duration::seconds(2))
        .and_utc()
        .to_rfc3339();
    let expiring = create_token(
        &app,
        &scene.token,
        &scene.site,
        json!({ "description": "Short Partner", "expires_at": soon }),
    );
    let lasting = create_named(&app, &scene.token, &scene.site, "Long Partner");
    assert_eq!(expiring.body["expired"], false, "{}", expiring.body);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let listed = list_tokens(&app, &scene.token, &scene.site);
    let order: Vec<i64> = listed
        .iter()
        .map(|token| token["id"].as_i64().unwrap())
        .collect();
    assert_eq!(order, [lasting.id, expiring.id], "{listed:?}");
    assert_eq!(listed[1]["expired"], true, "{}", listed[1]);
    assert_eq!(listed[1]["active"], true, "{}", listed[1]);
    assert_eq!(listed[0]["expired"], false, "{}", listed[0]);
}
