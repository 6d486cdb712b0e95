//! The audit trail: every CLI and admin API change, sign-ins, ended sessions and failed client
//! authentications (aggregated) are recorded; `tokenwarden audit list` and `GET /admin/v1/audit`
//! read them back with filters and a cursor; nothing in it is a secret or unescaped client text.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokenwarden::config::Config;

use crate::helpers::{assert_admin_error, Backend, TestApp, TestDatabase};

crate::on_both_backends!(
    every_cli_change_is_recorded_with_the_operator_and_no_secret,
    admin_api_changes_and_sign_ins_are_recorded_with_the_admin_and_address,
    the_audit_api_pages_with_a_cursor_and_filters,
    site_managers_are_forbidden_and_bad_queries_are_invalid_requests,
    events_past_the_retention_are_pruned,
);

crate::per_backend!(sqlite_aggregation, postgres_aggregation; failed_authentications_are_aggregated_per_client_id_and_address);

fn audit_cli(app: &TestApp, args: &[&str]) -> Vec<Value> {
    let listed = crate::cli::succeed_json(
        crate::cli::tokenwarden(&app.db.url)
            .args(["audit", "list", "--json"])
            .args(args),
    );
    listed["events"].as_array().expect("events").clone()
}

fn actions(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|event| event["action"].as_str().unwrap().to_string())
        .collect()
}

fn every_cli_change_is_recorded_with_the_operator_and_no_secret(app: TestApp) {
    let cli = |args: &[&str]| {
        crate::cli::succeed_json(
            crate::cli::tokenwarden(&app.db.url)
                .env("USER", "ops-ana")
                .args(args)
                .arg("--json"),
        )
    };
    let site = cli(&["site", "create", "--name", "Audited \"Store\"\n"]);
    let site_key = site["site_key"].as_str().unwrap().to_string();
    let rotated = cli(&["site", "rotate-auth-key", &site_key]);
    cli(&["site", "disable", &site_key]);
    cli(&["site", "enable", &site_key]);
    cli(&["site", "invalidate-primary", &site_key]);
    let api = cli(&[
        "resource-server",
        "create",
        "--name",
        "Audited API",
        "--site",
        &site_key,
    ]);
    let api_id = api["client_id"].as_str().unwrap().to_string();
    let other_site = cli(&["site", "create", "--name", "Other Store"]);
    let other_key = other_site["site_key"].as_str().unwrap();
    cli(&["resource-server", "assign", &api_id, "--site", other_key]);
    cli(&["resource-server", "unassign", &api_id, "--site", other_key]);
    cli(&[
        "resource-server",
        "rotate-secret",
        &api_id,
        "--overlap",
        "1h",
    ]);
    cli(&["resource-server", "delete", &api_id]);
    let admin = cli(&[
        "admin",
        "create",
        "--name",
        "Audited Manager",
        "--role",
        "site-manager",
        "--site",
        &site_key,
    ]);
    let admin_id = admin["client_id"].as_str().unwrap().to_string();
    let second = cli(&["site", "create", "--name", "Second Store"]);
    let second_key = second["site_key"].as_str().unwrap();
    cli(&["admin", "assign", &admin_id, "--site", second_key]);
    cli(&["admin", "unassign", &admin_id, "--site", second_key]);
    cli(&["admin", "disable", &admin_id]);
    cli(&["admin", "enable", &admin_id]);
    cli(&["admin", "rotate-secret", &admin_id]);

    let events = audit_cli(&app, &["--actor", "ops-ana"]);
    let mut listed = actions(&events);
    listed.reverse();
    assert_eq!(
        listed,
        [
            "site_created",
            "auth_key_rotated",
            "site_disabled",
            "site_enabled",
            "resource_server_created",
            "site_created",
            "resource_server_sites_assigned",
            "resource_server_sites_unassigned",
            "resource_server_secret_rotated",
            "resource_server_deleted",
            "admin_created",
            "site_created",
            "admin_sites_assigned",
            "admin_sites_unassigned",
            "admin_disabled",
            "admin_enabled",
            "admin_secret_rotated",
        ],
        "newest first, every change (invalidate-primary found no active token)"
    );
    for event in &events {
        assert_eq!(event["actor"]["kind"], "operator", "{event}");
        assert!(
            event["actor"]["name"]
                .as_str()
                .is_some_and(|name| name.starts_with("uid ")),
            "the effective user id beside the self-reported name: {event}"
        );
        assert_eq!(event["outcome"], "success", "{event}");
    }
    assert_eq!(events.last().unwrap()["target"], site_key.as_str());
    assert_eq!(
        events.last().unwrap()["detail"],
        "name Audited \\\"Store\\\"",
        "client text is escaped (names are trimmed, quotes escaped)"
    );
    let text = serde_json::to_string(&events).unwrap();
    for secret in [
        &site["auth_key"],
        &rotated["auth_key"],
        &api["client_secret"],
        &admin["client_secret"],
    ] {
        assert!(
            !text.contains(secret.as_str().unwrap()),
            "a secret in the trail"
        );
    }
    let text_mode = crate::cli::succeed(crate::cli::tokenwarden(&app.db.url).args([
        "audit",
        "list",
        "--action",
        "site_disabled",
    ]));
    assert!(
        text_mode.stdout.contains("site_disabled"),
        "{}",
        text_mode.stdout
    );
    assert!(
        text_mode.stdout.contains("operator:ops-ana"),
        "{}",
        text_mode.stdout
    );
    assert!(
        !text_mode.stdout.contains("site_enabled"),
        "{}",
        text_mode.stdout
    );
    for bad in [
        vec!["--since", "yesterday"],
        vec!["--until", "2026-13-40T00:00:00Z"],
        vec!["--limit", "0"],
        vec!["--action", "dropped_tables"],
    ] {
        let refused = crate::cli::run(
            crate::cli::tokenwarden(&app.db.url)
                .args(["audit", "list"])
                .args(&bad),
        );
        assert_eq!(
            refused.status.code(),
            Some(2),
            "{bad:?}: {}",
            refused.stderr
        );
        assert!(
            refused.stderr.contains(bad[1]),
            "{bad:?}: {}",
            refused.stderr
        );
    }
}

fn admin_api_changes_and_sign_ins_are_recorded_with_the_admin_and_address(app: TestApp) {
    let site = app.create_site("API Store");
    let admin = app.create_platform_admin("Auditor Admin");
    let token = app.admin_token(&admin);
    let created = app.admin_post(
        &token,
        &format!("/admin/v1/sites/{}/tokens", site.site_key),
        Some(&json!({ "description": "Nightly export" })),
    );
    assert_eq!(created.status(), 201);
    let created: Value = created.json().unwrap();
    let id = created["id"].as_i64().unwrap();
    let token_path = format!("/admin/v1/sites/{}/tokens/{id}", site.site_key);
    for action in ["invalidate", "validate", "regenerate"] {
        let response = app.admin_post(&token, &format!("{token_path}/{action}"), None);
        assert_eq!(response.status(), 200, "{action}");
    }
    let renamed = app.admin_post(
        &token,
        &format!("{token_path}/validate"),
        Some(&json!({ "description": "Weekly export" })),
    );
    assert_eq!(renamed.status(), 200);

    let page = app.admin_get_ok(
        &token,
        &format!("/admin/v1/audit?actor={}", admin.client_id),
    );
    let events = page["events"].as_array().unwrap();
    let mut listed = actions(events);
    listed.reverse();
    assert_eq!(
        listed,
        [
            "admin_signed_in",
            "token_created",
            "token_invalidated",
            "token_validated",
            "token_regenerated",
            "token_description_changed",
        ]
    );
    let target = format!("{}/tokens/{id}", site.site_key);
    for event in events {
        assert_eq!(event["actor"]["kind"], "admin");
        assert_eq!(event["actor"]["name"], "Auditor Admin");
        assert_eq!(event["source_address"], "127.0.0.1");
        if event["action"] != "admin_signed_in" {
            assert_eq!(event["target"], target.as_str(), "{event}");
        }
    }
    assert_eq!(events[0]["detail"], "description Weekly export");
    let value = created["value"].as_str().unwrap();
    assert!(
        !page.to_string().contains(value),
        "a token value in the trail"
    );
    assert!(
        !page.to_string().contains(&token),
        "the admin token in the trail"
    );
}

fn the_audit_api_pages_with_a_cursor_and_filters(app: TestApp) {
    for n in 0..7 {
        app.create_site(&format!("Paged Store {n}"));
    }
    let admin = app.create_platform_admin("Pager");
    let token = app.admin_token(&admin);
    let everything = app.admin_get_ok(&token, "/admin/v1/audit?limit=1000");
    let all_ids: Vec<i64> = everything["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["id"].as_i64().unwrap())
        .collect();
    assert!(all_ids.len() >= 9, "{everything}");
    assert!(
        all_ids.windows(2).all(|pair| pair[0] > pair[1]),
        "newest first"
    );
    assert_eq!(everything["next"], Value::Null);

    let mut paged = Vec::new();
    let mut path = "/admin/v1/audit?limit=3".to_string();
    loop {
        let page = app.admin_get_ok(&token, &path);
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 3);
        paged.extend(events.iter().map(|event| event["id"].as_i64().unwrap()));
        match page["next"].as_str() {
            Some(next) => path = format!("/admin/v1/audit?limit=3&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(paged, all_ids, "the pages cover every event once");

    let created = app.admin_get_ok(&token, "/admin/v1/audit?action=site_created");
    let created = created["events"].as_array().unwrap();
    assert_eq!(created.len(), 7);
    assert!(created
        .iter()
        .all(|event| event["action"] == "site_created"));
    let future = app.admin_get_ok(&token, "/admin/v1/audit?since=2999-01-01T00:00:00Z");
    assert_eq!(future["events"], json!([]));
    let past = app.admin_get_ok(&token, "/admin/v1/audit?until=2000-01-01T00:00:00%2B02:00");
    assert_eq!(past["events"], json!([]));
    let window = app.admin_get_ok(
        &token,
        "/admin/v1/audit?since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z&limit=1000",
    );
    assert_eq!(window["events"].as_array().unwrap().len(), all_ids.len());
}

fn site_managers_are_forbidden_and_bad_queries_are_invalid_requests(app: TestApp) {
    let site = app.create_site("Managed Store");
    let manager = app.create_site_manager("Curious Manager", &[&site]);
    let manager_token = app.admin_token(&manager);
    assert_admin_error(
        app.admin_get(&manager_token, "/admin/v1/audit"),
        403,
        "forbidden",
        "a site manager",
    );
    let admin = app.create_platform_admin("Query Admin");
    let token = app.admin_get_ok(&app.admin_token(&admin), "/admin/v1/audit");
    assert!(token["events"].as_array().is_some());
    let token = app.admin_token(&admin);
    for query in [
        "since=yesterday",
        "until=2026-12-01",
        "since=2026-12-01T25:00:00Z",
        "cursor=abc",
        "cursor=0",
        "limit=0",
        "limit=1001",
        "limit=many",
        "action=everything",
        "limit=1&limit=2",
    ] {
        let body = assert_admin_error(
            app.admin_get(&token, &format!("/admin/v1/audit?{query}")),
            400,
            "invalid_request",
            query,
        );
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description
                .bytes()
                .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e)),
            "{query}: {description}"
        );
    }
    let anonymous = app.client.get(app.url("/admin/v1/audit")).send().unwrap();
    assert_eq!(anonymous.status(), 401);
}

fn events_past_the_retention_are_pruned(app: TestApp) {
    app.create_site("Recent Store");
    app.db.execute(
        "INSERT INTO audit_events (occurred_at, actor_kind, actor_id, action, outcome, \
         occurrences, last_at) VALUES ('2020-01-01 00:00:00', 'operator', 'old-ops', \
         'site_created', 'success', 1, '2020-01-01 00:00:00')",
    );
    let count = "SELECT COUNT(*) AS n FROM audit_events";
    assert_eq!(app.db.count(count), 2);
    let pruned =
        tokenwarden::service::audit::prune(&app.context, tokenwarden::clock::now()).unwrap();
    assert_eq!(pruned, 1, "only the event older than 365 days");
    assert_eq!(app.db.count(count), 1);
}

/// Failed authentications cost no write per request: they are counted in memory and written
/// once their window is over, one row per client id and address, with a count. A client id that
/// names no client, or something that is no client id at all, is recorded as `(unknown)`.
fn failed_authentications_are_aggregated_per_client_id_and_address(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let app = TestApp::spawn_with(db, |config: &mut Config| {
        config.throttle.window = Duration::from_secs(3);
    });
    let site = app.create_site("Guessed Store");
    let attempt = |client_id: &str, secret: &str| {
        let response = app.post_form(
            "/oauth2/token",
            Some((client_id, secret)),
            "grant_type=client_credentials",
        );
        assert_eq!(response.status(), 401);
    };
    let pasted_secret = format!("twk_{}", "Q".repeat(49));
    for _ in 0..20 {
        attempt(&site.site_key, "twk_wrong");
    }
    for _ in 0..5 {
        attempt("site_nobodynobodynobody1", "twk_wrong");
    }
    for _ in 0..3 {
        attempt(&pasted_secret, "twk_wrong");
    }
    let rows = "SELECT COUNT(*) AS n FROM audit_events WHERE action = 'client_auth_failed'";
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.db.count(rows) < 3 {
        assert!(
            Instant::now() < deadline,
            "the failures never reached the trail"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let admin = app.create_platform_admin("Failure Reader");
    let token = app.admin_token(&admin);
    let page = app.admin_get_ok(&token, "/admin/v1/audit?action=client_auth_failed");
    let events = page["events"].as_array().unwrap();
    let mut counted: BTreeSet<(String, i64)> = BTreeSet::new();
    for event in events {
        assert_eq!(event["actor"]["kind"], "site");
        assert_eq!(event["outcome"], "failure");
        assert_eq!(event["source_address"], "127.0.0.1");
        assert!(event["occurred_at"].as_str() <= event["last_at"].as_str());
        counted.insert((
            event["actor"]["id"].as_str().unwrap().to_string(),
            event["occurrences"].as_i64().unwrap(),
        ));
    }
    assert_eq!(
        counted,
        BTreeSet::from([
            ("(unknown)".to_string(), 3),
            ("(unknown)".to_string(), 5),
            (site.site_key.clone(), 20),
        ])
    );
    assert!(!page.to_string().contains("site_nobodynobodynobody1"));
    assert!(!page.to_string().contains(&pasted_secret));
}
