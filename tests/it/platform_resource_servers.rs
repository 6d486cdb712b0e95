//! The platform API's resource servers: platform admins create, list, read and delete them over
//! HTTP (`/admin/v1/resource-servers`), recorded in the audit trail; site managers get 403
//! `forbidden`.

use serde_json::{json, Value};

use crate::helpers::{
    assert_admin_error, assert_oauth_error, ResourceServerKeys, SiteKeys, TestApp,
};

crate::on_both_backends!(
    a_platform_admin_creates_lists_reads_and_deletes_a_resource_server,
    a_resource_server_created_with_sites_sees_only_their_tokens,
    bad_resource_server_bodies_are_422_naming_the_field_and_change_nothing,
    unknown_resource_servers_are_404,
    site_managers_may_not_see_or_change_resource_servers,
);

const RESOURCE_SERVERS: &str = "/admin/v1/resource-servers";
/// Has a site key's shape, names no site.
const NO_SUCH_SITE: &str = "site_AAAAAAAAAAAAAAAAAAAA";

fn resource_server_path(client_id: &str) -> String {
    format!("{RESOURCE_SERVERS}/{client_id}")
}

/// `POST /admin/v1/resource-servers`, insisting on 201; the credentials and the answer.
fn create(app: &TestApp, token: &str, body: &Value) -> (ResourceServerKeys, Value) {
    let response = app.admin_post(token, RESOURCE_SERVERS, Some(body));
    assert_eq!(response.status(), 201, "{body}");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let created: Value = response.json().unwrap();
    let keys = ResourceServerKeys {
        client_id: created["client_id"].as_str().unwrap().to_string(),
        client_secret: created["client_secret"].as_str().unwrap().to_string(),
    };
    assert_eq!(location, resource_server_path(&keys.client_id));
    assert!(keys.client_id.starts_with("rs_"), "{created}");
    assert!(keys.client_secret.starts_with("twr_"), "{created}");
    (keys, created)
}

fn introspection(
    app: &TestApp,
    server: &ResourceServerKeys,
    token: &str,
) -> reqwest::blocking::Response {
    app.post_form(
        "/oauth2/introspect",
        Some((&server.client_id, &server.client_secret)),
        &format!("token={token}"),
    )
}

fn a_platform_admin_creates_lists_reads_and_deletes_a_resource_server(app: TestApp) {
    let site = app.create_site("Served Shop");
    let primary = app.primary_token(&site);
    let admin = app.create_platform_admin("Integrator Desk");
    let token = app.admin_token(&admin);

    let (server, created) = create(&app, &token, &json!({ "name": "  Orders API  " }));
    assert_eq!(created["name"], "Orders API");
    assert_eq!(created["site_keys"], Value::Null, "{created}");
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(app.introspect(&server, &primary)["active"], true);

    let listed = app.admin_get_ok(&token, RESOURCE_SERVERS);
    let entries = listed["resource_servers"].as_array().unwrap();
    let entry = entries
        .iter()
        .find(|entry| entry["client_id"] == server.client_id.as_str())
        .unwrap_or_else(|| panic!("not listed: {listed}"));
    assert_eq!(entry["name"], "Orders API");
    assert_eq!(entry["site_keys"], Value::Null);
    assert_eq!(entry["created_at"], created["created_at"]);
    let shown = app.admin_get_ok(&token, &resource_server_path(&server.client_id));
    assert_eq!(&shown, entry);
    for answer in [&listed, &shown] {
        assert!(
            !answer.to_string().contains(&server.client_secret),
            "the secret is shown once only: {answer}"
        );
    }

    let deleted = app.admin_delete(&token, &resource_server_path(&server.client_id));
    assert_eq!(deleted.status(), 204);
    assert_oauth_error(
        introspection(&app, &server, &primary),
        401,
        "invalid_client",
    );
    assert_admin_error(
        app.admin_get(&token, &resource_server_path(&server.client_id)),
        404,
        "not_found",
        "a deleted resource server",
    );
    assert_admin_error(
        app.admin_delete(&token, &resource_server_path(&server.client_id)),
        404,
        "not_found",
        "deleted twice",
    );

    let recorded = |action: &str| {
        app.db.count(&format!(
            "SELECT COUNT(*) AS n FROM audit_events WHERE action = '{action}' \
             AND actor_kind = 'admin' AND actor_id = '{}' AND target = '{}'",
            admin.client_id, server.client_id
        ))
    };
    assert_eq!(recorded("resource_server_created"), 1);
    assert_eq!(recorded("resource_server_deleted"), 1);
    let trail = app.admin_get_ok(&token, "/admin/v1/audit");
    assert!(
        !trail.to_string().contains(&server.client_secret),
        "{trail}"
    );
}

fn a_resource_server_created_with_sites_sees_only_their_tokens(app: TestApp) {
    let mine = app.create_site("Limited Shop");
    let other = app.create_site("Other Shop");
    let admin = app.create_platform_admin("Limiter");
    let token = app.admin_token(&admin);
    let (server, created) = create(
        &app,
        &token,
        &json!({ "name": "Shop API", "sites": [mine.site_key, mine.site_key] }),
    );
    assert_eq!(created["site_keys"], json!([mine.site_key]), "{created}");
    assert_eq!(
        app.introspect(&server, &app.primary_token(&mine))["active"],
        true
    );
    assert_eq!(
        app.introspect(&server, &app.primary_token(&other))["active"],
        false
    );
    let shown = app.admin_get_ok(&token, &resource_server_path(&server.client_id));
    assert_eq!(shown["site_keys"], json!([mine.site_key]));
}

fn bad_resource_server_bodies_are_422_naming_the_field_and_change_nothing(app: TestApp) {
    let site: SiteKeys = app.create_site("Real Shop");
    let admin = app.create_platform_admin("Careful Desk");
    let token = app.admin_token(&admin);
    let count = || app.db.count("SELECT COUNT(*) AS n FROM resource_servers");
    let secret_like = "twk_ThisCouldBeASecretSentInTheWrongField";
    for (body, field) in [
        (json!({}), Some("name")),
        (json!({ "sites": [site.site_key] }), Some("name")),
        (json!({ "name": "  " }), Some("name")),
        (json!({ "name": "x".repeat(101) }), Some("name")),
        (json!({ "name": "API", "sites": [] }), Some("sites")),
        (
            json!({ "name": "API", "sites": [NO_SUCH_SITE] }),
            Some("sites"),
        ),
        (
            json!({ "name": "API", "sites": [site.site_key, secret_like] }),
            Some("sites"),
        ),
        (json!({ "name": "API", "sites": "all" }), None),
        (json!({ "name": "API", "sites": [7] }), None),
        (json!({ "name": "API", "owner": "me" }), None),
        (json!({ "name": 7 }), None),
    ] {
        let response = app.admin_post(&token, RESOURCE_SERVERS, Some(&body));
        let answer = assert_admin_error(response, 422, "validation_failed", &body.to_string());
        if let Some(field) = field {
            assert_eq!(answer["field"], field, "{body}: {answer}");
        }
        assert!(!answer.to_string().contains(secret_like), "{answer}");
    }
    let unknown = app.admin_post(
        &token,
        RESOURCE_SERVERS,
        Some(&json!({ "name": "API", "sites": [NO_SUCH_SITE] })),
    );
    let answer = assert_admin_error(unknown, 422, "validation_failed", "an unknown site");
    assert!(
        answer["error_description"]
            .as_str()
            .unwrap()
            .contains(NO_SUCH_SITE),
        "the unknown key is named: {answer}"
    );
    assert_eq!(count(), 0);
    let wrong_method = app
        .client
        .put(app.url(RESOURCE_SERVERS))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_admin_error(wrong_method, 405, "method_not_allowed", "PUT");
}

fn unknown_resource_servers_are_404(app: TestApp) {
    let admin = app.create_platform_admin("Seeker");
    let token = app.admin_token(&admin);
    for client_id in ["rs_AAAAAAAAAAAAAAAAAAAA", "nothing-like-it", "twr_secret"] {
        let path = resource_server_path(client_id);
        assert_admin_error(app.admin_get(&token, &path), 404, "not_found", &path);
        assert_admin_error(app.admin_delete(&token, &path), 404, "not_found", &path);
    }
}

fn site_managers_may_not_see_or_change_resource_servers(app: TestApp) {
    let site = app.create_site("Managed Shop");
    let existing = app.create_resource_server("Existing API");
    let manager = app.create_site_manager("Shop Manager", &[&site]);
    let token = app.admin_token(&manager);
    let path = resource_server_path(&existing.client_id);
    for (what, response) in [
        ("list", app.admin_get(&token, RESOURCE_SERVERS)),
        (
            "create",
            app.admin_post(&token, RESOURCE_SERVERS, Some(&json!({ "name": "Mine" }))),
        ),
        ("get", app.admin_get(&token, &path)),
        ("delete", app.admin_delete(&token, &path)),
    ] {
        assert_admin_error(response, 403, "forbidden", what);
    }
    assert_eq!(
        app.db.count("SELECT COUNT(*) AS n FROM resource_servers"),
        1
    );
    let primary = app.primary_token(&site);
    assert_eq!(app.introspect(&existing, &primary)["active"], true);
}
