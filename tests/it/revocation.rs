//! Revocation that always works: the operator's and platform admins' emergency brake for a
//! leaked primary token, RFC 7009 revocation of the site's own non-primary tokens (refused: they
//! belong to the admin scope) and of admin tokens, and an admin ending its own session.

use serde_json::{json, Value};

use crate::helpers::{
    assert_admin_error, assert_eventually, assert_oauth_error, AdminKeys, SiteKeys, TestApp,
};

crate::on_both_backends!(
    the_operator_invalidates_a_leaked_primary_token_from_the_cli,
    a_platform_admin_invalidates_a_primary_token_and_site_managers_may_not,
    revoking_an_own_non_primary_token_is_unsupported_and_it_stays_active,
    an_admin_ends_its_own_token_by_revocation_or_sign_out,
);

fn revoke(app: &TestApp, site: &SiteKeys, token: &str) -> reqwest::blocking::Response {
    app.post_form(
        "/oauth2/revoke",
        Some((&site.site_key, &site.auth_key)),
        &format!("token={token}"),
    )
}

fn primary_history(app: &TestApp, admin_token: &str, site: &SiteKeys) -> Vec<Value> {
    let tokens = app.admin_get_ok(
        admin_token,
        &format!("/admin/v1/sites/{}/tokens", site.site_key),
    );
    let primary = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|token| token["kind"] == "primary")
        .expect("a primary token")
        .clone();
    let history = app.admin_get_ok(
        admin_token,
        &format!(
            "/admin/v1/sites/{}/tokens/{}/history",
            site.site_key, primary["id"]
        ),
    );
    history["events"].as_array().unwrap().clone()
}

fn the_operator_invalidates_a_leaked_primary_token_from_the_cli(app: TestApp) {
    let site = app.create_site("Leaky Store");
    let api = app.create_resource_server("Checking API");
    let leaked = app.cached_primary_token(&site);
    assert_eq!(app.introspect(&api, &leaked)["active"], true);

    let answer = crate::cli::succeed_json(
        crate::cli::tokenwarden(&app.db.url)
            .env("USER", "night-operator")
            .args(["site", "invalidate-primary", &site.site_key, "--json"]),
    );
    assert_eq!(
        answer,
        json!({ "site_key": site.site_key, "invalidated": true })
    );
    assert_eventually(&app, || app.introspect(&api, &leaked)["active"] == false);
    let fresh = app.primary_token(&site);
    assert_ne!(fresh, leaked, "the next token request mints a new value");
    assert_eq!(app.introspect(&api, &fresh)["active"], true);

    let admin = app.create_platform_admin("History Reader");
    let admin_token = app.admin_token(&admin);
    let events = primary_history(&app, &admin_token, &site);
    assert!(
        events.iter().any(|event| event["event"] == "invalidated"
            && event["actor"] == json!({ "kind": "operator", "name": "night-operator" })),
        "{events:?}"
    );
    let audit = app.db.count(&format!(
        "SELECT COUNT(*) AS n FROM audit_events WHERE action = 'primary_token_invalidated' \
         AND actor_kind = 'operator' AND actor_id = 'night-operator' AND target LIKE '{}/tokens/%'",
        site.site_key
    ));
    assert_eq!(audit, 1);

    // The fresh value is invalidated in turn (text output); then nothing is active any more,
    // which the answer says, and which records nothing.
    crate::cli::succeed(crate::cli::tokenwarden(&app.db.url).args([
        "site",
        "invalidate-primary",
        &site.site_key,
    ]));
    let recorded =
        "SELECT COUNT(*) AS n FROM audit_events WHERE action = 'primary_token_invalidated'";
    assert_eq!(app.db.count(recorded), 2);
    let again = crate::cli::succeed_json(crate::cli::tokenwarden(&app.db.url).args([
        "site",
        "invalidate-primary",
        &site.site_key,
        "--json",
    ]));
    assert_eq!(again["invalidated"], false);
    assert_eq!(
        app.db.count(recorded),
        2,
        "nothing invalidated, nothing recorded"
    );

    let unknown = crate::cli::run(crate::cli::tokenwarden(&app.db.url).args([
        "site",
        "invalidate-primary",
        "site_nosuchsitenosuchsit",
    ]));
    assert_eq!(unknown.status.code(), Some(1), "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("site_nosuchsitenosuchsit"),
        "{}",
        unknown.stderr
    );
    assert!(unknown.stdout.is_empty());
}

fn a_platform_admin_invalidates_a_primary_token_and_site_managers_may_not(app: TestApp) {
    let site = app.create_site("Braked Store");
    let api = app.create_resource_server("Checking API");
    let leaked = app.cached_primary_token(&site);
    let manager = app.create_site_manager("Store Manager", &[&site]);
    let manager_token = app.admin_token(&manager);
    let path = format!("/admin/v1/sites/{}/primary/invalidate", site.site_key);

    assert_admin_error(
        app.admin_post(&manager_token, &path, None),
        403,
        "forbidden",
        "a site manager",
    );
    assert_eq!(app.introspect(&api, &leaked)["active"], true);

    let admin: AdminKeys = app.create_platform_admin("Brake Holder");
    let admin_token = app.admin_token(&admin);
    let response = app.admin_post(&admin_token, &path, None);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().unwrap();
    assert_eq!(
        body,
        json!({ "site_key": site.site_key, "invalidated": true })
    );
    assert_eq!(app.introspect(&api, &leaked)["active"], false);
    let events = primary_history(&app, &admin_token, &site);
    assert!(
        events.iter().any(|event| event["event"] == "invalidated"
            && event["actor"] == json!({ "kind": "admin", "name": "Brake Holder" })),
        "{events:?}"
    );

    // The token actions on the primary stay the OAuth endpoints' business, for everyone.
    let primary_id = app.admin_get_ok(
        &admin_token,
        &format!("/admin/v1/sites/{}/tokens", site.site_key),
    )["tokens"][0]["id"]
        .as_i64()
        .unwrap();
    for token in [&admin_token, &manager_token] {
        for action in ["regenerate", "validate", "invalidate"] {
            let action_path = format!(
                "/admin/v1/sites/{}/tokens/{primary_id}/{action}",
                site.site_key
            );
            assert_admin_error(
                app.admin_post(token, &action_path, None),
                409,
                "primary_token_managed_by_oauth",
                &action_path,
            );
        }
    }
    assert_admin_error(
        app.admin_post(
            &admin_token,
            "/admin/v1/sites/site_nosuchsitenosuchsit/primary/invalidate",
            None,
        ),
        404,
        "not_found",
        "an unknown site",
    );
    let get = app.admin_get(&admin_token, &path);
    assert_eq!(get.status(), 405);
}

fn revoking_an_own_non_primary_token_is_unsupported_and_it_stays_active(app: TestApp) {
    let site = app.create_site("Own Tokens Store");
    let other = app.create_site("Other Store");
    let api = app.create_resource_server("Checking API");
    let admin = app.create_platform_admin("Token Maker");
    let admin_token = app.admin_token(&admin);
    let create = |site: &SiteKeys| -> String {
        let response = app.admin_post(
            &admin_token,
            &format!("/admin/v1/sites/{}/tokens", site.site_key),
            Some(&json!({ "description": "Warehouse sync" })),
        );
        assert_eq!(response.status(), 201);
        let body: Value = response.json().unwrap();
        body["value"].as_str().unwrap().to_string()
    };
    let own = create(&site);
    let others = create(&other);

    let description = assert_oauth_error(revoke(&app, &site, &own), 400, "unsupported_token_type");
    assert!(description.contains("admin scope"), "{description}");
    assert_eq!(app.introspect(&api, &own)["active"], true);

    assert_eq!(revoke(&app, &site, &others).status(), 200);
    assert_eq!(
        app.introspect(&api, &others)["active"],
        true,
        "another site's token"
    );
    let unknown = format!("tws_{}", "A".repeat(49));
    assert_eq!(revoke(&app, &site, &unknown).status(), 200);
    let primary = app.primary_token(&site);
    assert_eq!(revoke(&app, &site, &primary).status(), 200);
    assert_eq!(app.introspect(&api, &primary)["active"], false);
}

fn an_admin_ends_its_own_token_by_revocation_or_sign_out(app: TestApp) {
    let admin = app.create_platform_admin("Leaving Admin");
    let colleague = app.create_platform_admin("Staying Admin");
    let sites_path = "/admin/v1/sites";

    let first = app.admin_token(&admin);
    let colleagues = app.admin_token(&colleague);
    app.admin_get_ok(&first, sites_path);
    let revoked = app.post_form(
        "/oauth2/revoke",
        Some((&admin.client_id, &admin.client_secret)),
        &format!("token={first}&token_type_hint=access_token"),
    );
    assert_eq!(revoked.status(), 200);
    assert_oauth_error(app.admin_get(&first, sites_path), 401, "invalid_token");

    // Another admin's token is not this admin's to end: 200, and it keeps working.
    let not_mine = app.post_form(
        "/oauth2/revoke",
        Some((&admin.client_id, &admin.client_secret)),
        &format!("token={colleagues}"),
    );
    assert_eq!(not_mine.status(), 200);
    app.admin_get_ok(&colleagues, sites_path);

    let second = app.admin_token(&admin);
    let ended = app
        .client
        .delete(app.url("/admin/v1/sessions/current"))
        .bearer_auth(&second)
        .send()
        .unwrap();
    assert_eq!(ended.status(), 204);
    assert_eq!(ended.headers()["cache-control"], "no-store");
    assert_oauth_error(app.admin_get(&second, sites_path), 401, "invalid_token");
    let again = app
        .client
        .delete(app.url("/admin/v1/sessions/current"))
        .bearer_auth(&second)
        .send()
        .unwrap();
    assert_oauth_error(again, 401, "invalid_token");
    app.admin_get_ok(&colleagues, sites_path);

    let recorded = app.db.count(&format!(
        "SELECT COUNT(*) AS n FROM audit_events WHERE action = 'admin_token_revoked' \
         AND actor_id = '{}' AND source_address = '127.0.0.1'",
        admin.client_id
    ));
    assert_eq!(recorded, 2);
    let wrong_secret = app.post_form(
        "/oauth2/revoke",
        Some((&admin.client_id, "twm_wrong")),
        &format!("token={colleagues}"),
    );
    assert_oauth_error(wrong_secret, 401, "invalid_client");
}
