//! Rotating a resource server's or an admin's client secret with an overlap (`POST
//! /admin/v1/resource-servers/{client_id}/secret`, `POST /admin/v1/admins/{client_id}/secret` and
//! the CLI's `rotate-secret`): both secrets authenticate until the overlap ends, then only the new
//! one; at most two are ever valid, also under concurrent rotations; every node refuses a replaced
//! secret from the answer on. Platform admins only.

use reqwest::blocking::Response;
use serde_json::{json, Value};

use crate::helpers::{
    assert_admin_error, assert_oauth_error, race, seconds_from_now, wait_for_live_change_feed,
    AdminKeys, ResourceServerKeys, TestApp, TestNode,
};

crate::on_both_backends!(
    a_resource_server_keeps_its_old_secret_for_the_overlap_only,
    without_an_overlap_the_old_secret_stops_at_once_on_every_node,
    a_rotation_during_an_overlap_ends_the_older_one,
    concurrent_rotations_leave_one_current_secret_and_at_most_one_previous,
    an_admin_keeps_its_old_secret_and_its_tokens_through_a_rotation,
    bad_bodies_unknown_clients_and_site_managers_rotate_nothing,
    the_cli_rotates_secrets_and_keeps_the_last_platform_admin,
);

/// Whose secret a test rotates.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    ResourceServer,
    Admin,
}

/// A client id and secret of either kind.
#[derive(Debug, Clone)]
struct Client {
    kind: Kind,
    client_id: String,
    client_secret: String,
}

impl From<&ResourceServerKeys> for Client {
    fn from(keys: &ResourceServerKeys) -> Self {
        Client {
            kind: Kind::ResourceServer,
            client_id: keys.client_id.clone(),
            client_secret: keys.client_secret.clone(),
        }
    }
}

impl From<&AdminKeys> for Client {
    fn from(keys: &AdminKeys) -> Self {
        Client {
            kind: Kind::Admin,
            client_id: keys.client_id.clone(),
            client_secret: keys.client_secret.clone(),
        }
    }
}

impl Client {
    fn path(&self) -> String {
        match self.kind {
            Kind::ResourceServer => format!("/admin/v1/resource-servers/{}", self.client_id),
            Kind::Admin => format!("/admin/v1/admins/{}", self.client_id),
        }
    }

    fn audited_action(&self) -> &'static str {
        match self.kind {
            Kind::ResourceServer => "resource_server_secret_rotated",
            Kind::Admin => "admin_secret_rotated",
        }
    }

    fn with_secret(&self, client_secret: &str) -> Client {
        Client {
            client_secret: client_secret.to_string(),
            ..self.clone()
        }
    }
}

/// `POST {client}/secret` as `token` on `node`, with `body` as JSON (or no body at all).
fn rotate(node: &TestNode, token: &str, client: &Client, body: Option<&Value>) -> Response {
    node.admin_post(token, &format!("{}/secret", client.path()), body)
}

/// Rotates with `{"overlap_seconds": secs}`, or with no body for `None`, which must succeed: the
/// client with its new secret, and when the replaced one stops.
fn rotate_ok(
    node: &TestNode,
    token: &str,
    client: &Client,
    overlap: Option<i64>,
) -> (Client, Option<String>) {
    let body = overlap.map(|secs| json!({ "overlap_seconds": secs }));
    let response = rotate(node, token, client, body.as_ref());
    let status = response.status();
    let cache_control = response.headers().get("cache-control").cloned();
    let text = response.text().unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(cache_control.unwrap(), "no-store", "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["client_id"], client.client_id.as_str(), "{answer}");
    let secret = answer["client_secret"].as_str().unwrap();
    let prefix = match client.kind {
        Kind::ResourceServer => "twr_",
        Kind::Admin => "twm_",
    };
    assert!(secret.starts_with(prefix), "{answer}");
    assert_ne!(secret, client.client_secret);
    (
        client.with_secret(secret),
        answer["previous_valid_until"].as_str().map(str::to_string),
    )
}

/// Whether `client`'s credentials authenticate at `node` (introspection for a resource server, an
/// admin token for an admin): 200, or the one refusal, 401 `invalid_client`.
fn authenticates(node: &TestNode, client: &Client) -> bool {
    let credentials = Some((client.client_id.as_str(), client.client_secret.as_str()));
    let response = match client.kind {
        Kind::ResourceServer => node.post_form(
            "/oauth2/introspect",
            credentials,
            "token=twp_not_a_stored_token",
        ),
        Kind::Admin => node.post_form(
            "/oauth2/token",
            credentials,
            "grant_type=client_credentials&scope=admin",
        ),
    };
    match response.status().as_u16() {
        200 => true,
        401 => {
            assert_oauth_error(response, 401, "invalid_client");
            false
        }
        other => panic!("{client:?}: {other} {}", response.text().unwrap()),
    }
}

/// `previous_secret_valid_until` as the platform API shows the client, alone and in its list.
fn shown_previous_end(node: &TestNode, token: &str, client: &Client) -> Value {
    let one = node.admin_get_ok(token, &client.path());
    let (list, member) = match client.kind {
        Kind::ResourceServer => ("/admin/v1/resource-servers", "resource_servers"),
        Kind::Admin => ("/admin/v1/admins", "admins"),
    };
    let listed = node.admin_get_ok(token, list);
    let entry = listed[member]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["client_id"] == client.client_id.as_str())
        .cloned();
    assert_eq!(entry, Some(one.clone()), "{listed}");
    one["previous_secret_valid_until"].clone()
}

fn audited(app: &TestApp, client: &Client, detail: &str) -> i64 {
    app.db.count(&format!(
        "SELECT COUNT(*) AS n FROM audit_events WHERE action = '{}' AND target = '{}' \
         AND detail = '{detail}'",
        client.audited_action(),
        client.client_id
    ))
}

fn no_trace_of(app: &TestApp, secret: &str) {
    let traces = app.db.count(&format!(
        "SELECT COUNT(*) AS n FROM audit_events WHERE detail LIKE '%{secret}%' \
         OR target LIKE '%{secret}%'"
    ));
    assert_eq!(traces, 0, "no secret in the audit trail");
}

/// Both secrets introspect (also from the node's cache) until the end the answer gave, then only
/// the new one; the views show the end while it runs.
fn a_resource_server_keeps_its_old_secret_for_the_overlap_only(app: TestApp) {
    wait_for_live_change_feed(&app);
    let admin = app.create_platform_admin("Secret Keeper");
    let token = app.admin_token(&admin);
    let old = Client::from(&app.create_resource_server("Orders API"));
    assert!(authenticates(&app, &old));
    assert_eq!(shown_previous_end(&app, &token, &old), Value::Null);

    let (new, until) = rotate_ok(&app, &token, &old, Some(2));
    let until = until.expect("an overlap has an end");
    assert!(until.ends_with('Z'), "{until}");
    let ends = chrono::DateTime::parse_from_rfc3339(&until).unwrap();
    for _ in 0..2 {
        assert!(authenticates(&app, &old) && authenticates(&app, &new));
    }
    assert_eq!(shown_previous_end(&app, &token, &old), json!(until));
    assert!(
        tokenwarden::clock::now().and_utc() < ends,
        "the checks before the end took too long"
    );
    let views = app.admin_get(&token, &old.path()).text().unwrap();
    assert!(!views.contains(&new.client_secret), "shown once: {views}");

    let wait = ends.signed_duration_since(tokenwarden::clock::now().and_utc())
        + chrono::TimeDelta::milliseconds(50);
    std::thread::sleep(wait.to_std().unwrap_or_default());
    assert!(!authenticates(&app, &old), "the overlap has ended");
    assert!(authenticates(&app, &new));
    assert_eq!(shown_previous_end(&app, &token, &old), Value::Null);

    assert_eq!(audited(&app, &old, "overlap 2 s"), 1);
    no_trace_of(&app, &new.client_secret);
}

/// A rotation answered by one node is in force on every node at once, caches included.
fn without_an_overlap_the_old_secret_stops_at_once_on_every_node(app: TestApp) {
    let node_b = TestNode::spawn(&app.db, |_| {});
    wait_for_live_change_feed(&app);
    wait_for_live_change_feed(&node_b);
    let admin = app.create_platform_admin("Node Rotator");
    let token = app.admin_token(&admin);
    let old = Client::from(&app.create_resource_server("Two Node API"));
    for node in [&app, &node_b] {
        assert!(authenticates(node, &old) && authenticates(node, &old));
    }

    let (new, until) = rotate_ok(&app, &token, &old, None);
    assert_eq!(until, None);
    assert!(!authenticates(&node_b, &old));
    assert!(!authenticates(&app, &old));
    assert!(authenticates(&node_b, &new));

    // An overlap from the other node, ended by a rotation without one.
    let token_b = node_b.admin_token(&admin);
    let (newer, _) = rotate_ok(&node_b, &token_b, &new, Some(600));
    assert!(authenticates(&app, &new) && authenticates(&app, &newer));
    let (newest, _) = rotate_ok(&node_b, &token_b, &newer, Some(0));
    assert!(!authenticates(&app, &new));
    assert!(!authenticates(&app, &newer));
    assert!(authenticates(&app, &newest));
    assert_eq!(audited(&app, &old, "overlap 0 s"), 2);
    assert_eq!(audited(&app, &old, "overlap 600 s"), 1);
}

/// Three rotations, each with an overlap: after the third only the third secret and the second
/// (the one it replaced) work; the first's overlap ended with the third rotation.
fn a_rotation_during_an_overlap_ends_the_older_one(app: TestApp) {
    let admin = app.create_platform_admin("Thrice Rotator");
    let token = app.admin_token(&admin);
    let resource_server = Client::from(&app.create_resource_server("Thrice API"));
    let other_admin = Client::from(&app.create_platform_admin("Thrice Rotated"));
    for first in [resource_server, other_admin] {
        let (second, _) = rotate_ok(&app, &token, &first, Some(3600));
        let (third, _) = rotate_ok(&app, &token, &second, Some(3600));
        let (fourth, until) = rotate_ok(&app, &token, &third, Some(3600));
        let working: Vec<bool> = [&first, &second, &third, &fourth]
            .iter()
            .map(|client| authenticates(&app, client))
            .collect();
        assert_eq!(working, [false, false, true, true], "{first:?}");
        let left = seconds_from_now(&until.unwrap());
        assert!((3_598..=3_601).contains(&left), "{left}");
    }
}

/// Eight rotations at once, twice, of each kind: without an overlap exactly one of the secrets
/// authenticates, with one exactly two; never one no rotation answered, never the original.
fn concurrent_rotations_leave_one_current_secret_and_at_most_one_previous(app: TestApp) {
    let admin = app.create_platform_admin("Racing Rotator");
    let token = app.admin_token(&admin);
    let originals = [
        Client::from(&app.create_resource_server("Raced API")),
        Client::from(&app.create_platform_admin("Raced Admin")),
    ];
    let app = std::sync::Arc::new(app);
    for original in originals {
        for (overlap, survivors) in [(0, 1), (3600, 2)] {
            let (racing_app, racing_token, client) = (app.clone(), token.clone(), original.clone());
            let mut candidates = race(8, move |_| {
                rotate_ok(&racing_app, &racing_token, &client, Some(overlap)).0
            });
            candidates.push(original.clone());
            let working = candidates
                .iter()
                .filter(|client| authenticates(&app, client))
                .count();
            assert_eq!(working, survivors, "{original:?}, overlap {overlap}");
            let shown = shown_previous_end(&app, &token, &original);
            assert_eq!(shown.is_null(), overlap == 0, "{shown}");
        }
    }
}

/// An admin's replaced secret still gets admin tokens during the overlap, and admin tokens issued
/// before a rotation keep working; a platform admin may rotate its own secret.
fn an_admin_keeps_its_old_secret_and_its_tokens_through_a_rotation(app: TestApp) {
    let rotator_keys = app.create_platform_admin("Head Of Platform");
    let rotator = Client::from(&rotator_keys);
    let token = app.admin_token(&rotator_keys);
    let colleague_keys = app.create_platform_admin("Colleague");
    let colleague = Client::from(&colleague_keys);
    let colleague_token = app.admin_token(&colleague_keys);

    let (renewed, until) = rotate_ok(&app, &token, &colleague, Some(3600));
    assert!(authenticates(&app, &colleague) && authenticates(&app, &renewed));
    assert_eq!(shown_previous_end(&app, &token, &colleague), json!(until));
    let still = app.admin_get(&colleague_token, "/admin/v1/admins");
    assert_eq!(still.status(), 200, "a token issued before the rotation");

    let (own, until) = rotate_ok(&app, &token, &rotator, None);
    assert_eq!(until, None);
    assert!(!authenticates(&app, &rotator));
    assert!(authenticates(&app, &own));
    assert_eq!(app.admin_get(&token, "/admin/v1/admins").status(), 200);

    assert_eq!(audited(&app, &colleague, "overlap 3600 s"), 1);
    assert_eq!(audited(&app, &rotator, "overlap 0 s"), 1);
    let by_rotator = app.db.count(&format!(
        "SELECT COUNT(*) AS n FROM audit_events WHERE action = 'admin_secret_rotated' \
         AND actor_kind = 'admin' AND actor_id = '{}'",
        rotator.client_id
    ));
    assert_eq!(by_rotator, 2);
    no_trace_of(&app, &renewed.client_secret);
    no_trace_of(&app, &own.client_secret);
}

fn bad_bodies_unknown_clients_and_site_managers_rotate_nothing(app: TestApp) {
    let site = app.create_site("Managed Shop");
    let manager_keys = app.create_site_manager("Shop Manager", &[&site]);
    let manager = Client::from(&manager_keys);
    let manager_token = app.admin_token(&manager_keys);
    let admin = app.create_platform_admin("Careful Rotator");
    let token = app.admin_token(&admin);
    let clients = [
        Client::from(&app.create_resource_server("Steady API")),
        manager.clone(),
    ];
    for client in &clients {
        for body in [
            json!({ "overlap_seconds": -1 }),
            json!({ "overlap_seconds": 604_801 }),
            json!({ "overlap_seconds": 1.5 }),
            json!({ "overlap_seconds": "60" }),
            json!({ "overlap_seconds": [60] }),
        ] {
            let answer = assert_admin_error(
                rotate(&app, &token, client, Some(&body)),
                422,
                "validation_failed",
                &body.to_string(),
            );
            assert_eq!(answer["field"], "overlap_seconds", "{body}: {answer}");
        }
        for body in [
            json!({ "overlap_seconds": 60, "client_secret": "twr_chosen" }),
            json!([60]),
        ] {
            let answer = assert_admin_error(
                rotate(&app, &token, client, Some(&body)),
                422,
                "validation_failed",
                &body.to_string(),
            );
            assert!(!answer.to_string().contains("twr_chosen"), "{answer}");
        }
        let not_json = app
            .client
            .post(app.url(&format!("{}/secret", client.path())))
            .bearer_auth(&token)
            .header("Content-Type", "text/plain")
            .body("overlap_seconds=60")
            .send()
            .unwrap();
        assert_admin_error(not_json, 415, "invalid_request", "text/plain");
        // Site managers may not rotate anything here, not even their own secret.
        let refused = rotate(&app, &manager_token, client, None);
        assert_admin_error(refused, 403, "forbidden", "a site manager");
        assert!(authenticates(&app, client));
    }
    for unknown in [
        "/admin/v1/resource-servers/rs_nosuchserver000000000/secret",
        "/admin/v1/admins/adm_nosuchadmin000000000/secret",
        "/admin/v1/admins/nosuchadmin/secret",
    ] {
        let response = app.admin_post(&token, unknown, Some(&json!({ "overlap_seconds": 60 })));
        assert_admin_error(response, 404, "not_found", unknown);
    }
    let recorded = app.db.count(
        "SELECT COUNT(*) AS n FROM audit_events \
         WHERE action IN ('resource_server_secret_rotated', 'admin_secret_rotated')",
    );
    assert_eq!(recorded, 0);
    // Exactly the limit is fine.
    let (_, until) = rotate_ok(&app, &token, &clients[0], Some(604_800));
    let left = seconds_from_now(&until.unwrap());
    assert!((604_798..=604_801).contains(&left), "{left}");
}

/// `resource-server rotate-secret` and `admin rotate-secret` do what the API does, and `admin
/// disable` refuses to leave no enabled platform admin, as the API does.
fn the_cli_rotates_secrets_and_keeps_the_last_platform_admin(app: TestApp) {
    let old = Client::from(&app.create_resource_server("CLI API"));
    let rotated = crate::cli::succeed_json(crate::cli::tokenwarden(&app.db.url).args([
        "resource-server",
        "rotate-secret",
        &old.client_id,
        "--overlap",
        "1h",
        "--json",
    ]));
    assert_eq!(rotated["client_id"], old.client_id.as_str(), "{rotated}");
    let new = old.with_secret(rotated["client_secret"].as_str().unwrap());
    let left = seconds_from_now(rotated["previous_valid_until"].as_str().unwrap());
    assert!((3_598..=3_601).contains(&left), "{rotated}");
    assert!(authenticates(&app, &old) && authenticates(&app, &new));

    let only_admin = Client::from(&app.create_platform_admin("Only Platform Admin"));
    let rotated = app.admin_cli(&["rotate-secret", &only_admin.client_id]);
    assert_eq!(rotated["previous_valid_until"], Value::Null, "{rotated}");
    let renewed = only_admin.with_secret(rotated["client_secret"].as_str().unwrap());
    assert!(!authenticates(&app, &only_admin));
    assert!(authenticates(&app, &renewed));

    let text = crate::cli::succeed(crate::cli::tokenwarden(&app.db.url).args([
        "resource-server",
        "rotate-secret",
        &new.client_id,
    ]));
    assert!(
        text.stdout
            .contains("the old client secret no longer works"),
        "{}",
        text.stdout
    );

    let refused = crate::cli::run(crate::cli::tokenwarden(&app.db.url).args([
        "admin",
        "disable",
        &only_admin.client_id,
    ]));
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        refused.stderr.contains("last enabled platform admin"),
        "{}",
        refused.stderr
    );
    assert!(authenticates(&app, &renewed), "still enabled");
    let unknown = crate::cli::run(crate::cli::tokenwarden(&app.db.url).args([
        "admin",
        "rotate-secret",
        "adm_nosuchadmin000000000",
    ]));
    assert!(!unknown.status.success(), "{unknown:?}");
}
