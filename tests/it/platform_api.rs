//! The platform API: platform admins provision sites over HTTP (`POST /admin/v1/sites`, `PATCH
//! /admin/v1/sites/{site_key}`), recorded in the audit trail; site managers get 403 `forbidden`.

use reqwest::blocking::Response;
use serde_json::{json, Value};

use crate::helpers::{assert_admin_error, assert_oauth_error, SiteKeys, TestApp};

crate::on_both_backends!(
    a_platform_admin_creates_a_site_whose_credentials_work_at_once,
    a_platform_admin_renames_disables_and_enables_a_site,
    bad_site_bodies_are_422_naming_the_field_and_change_nothing,
    site_managers_may_not_create_or_change_sites,
);

fn patch(app: &TestApp, token: &str, path: &str, body: &Value) -> Response {
    app.client
        .patch(app.url(path))
        .bearer_auth(token)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap()
}

fn site_path(site_key: &str) -> String {
    format!("/admin/v1/sites/{site_key}")
}

fn a_platform_admin_creates_a_site_whose_credentials_work_at_once(app: TestApp) {
    let admin = app.create_platform_admin("Provisioner");
    let token = app.admin_token(&admin);
    let response = app.admin_post(
        &token,
        "/admin/v1/sites",
        Some(&json!({ "name": "  Signed-up Shop  " })),
    );
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let created: Value = response.json().unwrap();
    let site = SiteKeys {
        site_key: created["site_key"].as_str().unwrap().to_string(),
        auth_key: created["auth_key"].as_str().unwrap().to_string(),
    };
    assert_eq!(location, site_path(&site.site_key));
    assert_eq!(created["name"], "Signed-up Shop");
    assert_eq!(created["enabled"], true);
    assert!(site.auth_key.starts_with("twk_"), "{created}");
    assert!(app.primary_token(&site).starts_with("twp_"));
    let shown = app.admin_get_ok(&token, &location);
    assert_eq!(shown["name"], "Signed-up Shop");
    assert!(
        !shown.to_string().contains(&site.auth_key),
        "shown once only"
    );
    let recorded = app.db.count(&format!(
        "SELECT COUNT(*) AS n FROM audit_events WHERE action = 'site_created' \
         AND actor_kind = 'admin' AND actor_id = '{}' AND target = '{}'",
        admin.client_id, site.site_key
    ));
    assert_eq!(recorded, 1);
}

fn a_platform_admin_renames_disables_and_enables_a_site(app: TestApp) {
    let site = app.create_site("Old Name");
    let other = app.create_site("Other Shop");
    let admin = app.create_platform_admin("Site Keeper");
    let token = app.admin_token(&admin);
    let path = site_path(&site.site_key);
    let primary = app.primary_token(&site);

    let renamed = patch(&app, &token, &path, &json!({ "name": "New Name" }));
    assert_eq!(renamed.status(), 200);
    let renamed: Value = renamed.json().unwrap();
    assert_eq!(renamed["name"], "New Name");
    assert_eq!(renamed["enabled"], true);

    let disabled: Value = patch(&app, &token, &path, &json!({ "enabled": false }))
        .json()
        .unwrap();
    assert_eq!(disabled["enabled"], false);
    assert_oauth_error(
        app.post_form(
            "/oauth2/token",
            Some((&site.site_key, &site.auth_key)),
            "grant_type=client_credentials",
        ),
        401,
        "invalid_client",
    );
    let listed = app.admin_get_ok(&token, "/admin/v1/sites?enabled=false");
    let keys: Vec<&str> = listed["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|site| site["site_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, [site.site_key.as_str()]);
    let enabled_only = app.admin_get_ok(&token, "/admin/v1/sites?enabled=true");
    assert!(enabled_only.to_string().contains(&other.site_key));
    assert!(!enabled_only.to_string().contains(&site.site_key));

    let both: Value = patch(
        &app,
        &token,
        &path,
        &json!({ "name": "New Name", "enabled": true }),
    )
    .json()
    .unwrap();
    assert_eq!(both["enabled"], true);
    assert_eq!(
        app.primary_token(&site),
        primary,
        "the same token comes back"
    );

    let actions = |action: &str| {
        app.db.count(&format!(
            "SELECT COUNT(*) AS n FROM audit_events WHERE action = '{action}' \
             AND target = '{}' AND actor_id = '{}'",
            site.site_key, admin.client_id
        ))
    };
    assert_eq!(
        actions("site_renamed"),
        1,
        "renaming to the same name records nothing"
    );
    assert_eq!(actions("site_disabled"), 1);
    assert_eq!(actions("site_enabled"), 1);
}

fn bad_site_bodies_are_422_naming_the_field_and_change_nothing(app: TestApp) {
    let site = app.create_site("Kept Shop");
    let admin = app.create_platform_admin("Careful Admin");
    let token = app.admin_token(&admin);
    let sites_before = app.db.count("SELECT COUNT(*) AS n FROM sites");
    for (body, field) in [
        (json!({}), Some("name")),
        (json!({ "name": "   " }), Some("name")),
        (json!({ "name": "x".repeat(101) }), Some("name")),
        (json!({ "name": "Tab\there" }), Some("name")),
        (json!({ "name": "Shop", "owner": "me" }), None),
        (json!({ "name": 7 }), None),
    ] {
        let response = app.admin_post(&token, "/admin/v1/sites", Some(&body));
        let answer = assert_admin_error(response, 422, "validation_failed", &body.to_string());
        if let Some(field) = field {
            assert_eq!(answer["field"], field, "{body}");
        }
    }
    assert_eq!(
        app.db.count("SELECT COUNT(*) AS n FROM sites"),
        sites_before
    );

    let path = site_path(&site.site_key);
    for (body, field) in [
        (json!({}), Some("body")),
        (json!({ "name": "" }), Some("name")),
        (json!({ "enabled": "no" }), None),
        (json!({ "name": "Shop", "colour": "red" }), None),
    ] {
        let response = patch(&app, &token, &path, &body);
        let answer = assert_admin_error(response, 422, "validation_failed", &body.to_string());
        if let Some(field) = field {
            assert_eq!(answer["field"], field, "{body}");
        }
    }
    let unknown = patch(
        &app,
        &token,
        "/admin/v1/sites/site_nosuchsitenosuchsit",
        &json!({ "enabled": false }),
    );
    assert_admin_error(unknown, 404, "not_found", "an unknown site");
    let shown = app.admin_get_ok(&token, &path);
    assert_eq!(
        (shown["name"].clone(), shown["enabled"].clone()),
        (json!("Kept Shop"), json!(true))
    );
    let bad_filter = app.admin_get(&token, "/admin/v1/sites?enabled=maybe");
    assert_admin_error(bad_filter, 400, "invalid_request", "enabled=maybe");
    let delete = app
        .client
        .delete(app.url(&path))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(delete.status(), 405);
    assert_eq!(delete.headers()["allow"], "GET, PATCH");
}

fn site_managers_may_not_create_or_change_sites(app: TestApp) {
    let site = app.create_site("Managed Shop");
    let manager = app.create_site_manager("Shop Manager", &[&site]);
    let token = app.admin_token(&manager);
    let sites_before = app.db.count("SELECT COUNT(*) AS n FROM sites");
    assert_admin_error(
        app.admin_post(
            &token,
            "/admin/v1/sites",
            Some(&json!({ "name": "Sneaky Shop" })),
        ),
        403,
        "forbidden",
        "create",
    );
    assert_admin_error(
        patch(
            &app,
            &token,
            &site_path(&site.site_key),
            &json!({ "enabled": false }),
        ),
        403,
        "forbidden",
        "disable",
    );
    assert_eq!(
        app.db.count("SELECT COUNT(*) AS n FROM sites"),
        sites_before
    );
    let shown = app.admin_get_ok(&token, &site_path(&site.site_key));
    assert_eq!(
        shown["enabled"], true,
        "a site manager still reads its site: {shown}"
    );
}
