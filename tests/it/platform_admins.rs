//! The platform API's admins: platform admins create, list, read and change admins over HTTP
//! (`/admin/v1/admins`), recorded in the audit trail; nobody disables or demotes itself, and no
//! change leaves no enabled platform admin, even when two platform admins race; site managers get
//! 403 `forbidden`.

use serde_json::{json, Value};

use tokenwarden::service::admins::RequestedChange;

use crate::helpers::{assert_admin_error, assert_oauth_error, race, AdminKeys, TestApp};

crate::on_both_backends!(
    a_platform_admin_creates_lists_and_changes_admins,
    a_disabled_admins_token_stops_working_at_once,
    an_admin_cannot_disable_or_demote_itself,
    two_platform_admins_disabling_each_other_leave_one_enabled,
    the_last_enabled_platform_admin_is_kept_inside_the_transaction,
    bad_admin_bodies_are_422_naming_the_field_and_unknown_admins_404,
    site_managers_may_not_see_or_change_admins,
);

const ADMINS: &str = "/admin/v1/admins";
/// Has a site key's shape, names no site.
const NO_SUCH_SITE: &str = "site_AAAAAAAAAAAAAAAAAAAA";

fn admin_path(client_id: &str) -> String {
    format!("{ADMINS}/{client_id}")
}

/// `POST /admin/v1/admins`, insisting on 201; the credentials and the answer.
fn create(app: &TestApp, token: &str, body: &Value) -> (AdminKeys, Value) {
    let response = app.admin_post(token, ADMINS, Some(body));
    let status = response.status();
    let headers = response.headers().clone();
    let created: Value = response.json().unwrap();
    assert_eq!(status, 201, "{body}: {created}");
    assert_eq!(headers["cache-control"], "no-store");
    let keys = AdminKeys {
        client_id: created["client_id"].as_str().unwrap().to_string(),
        client_secret: created["client_secret"].as_str().unwrap().to_string(),
        name: created["name"].as_str().unwrap().to_string(),
    };
    assert_eq!(headers["location"], admin_path(&keys.client_id).as_str());
    assert!(keys.client_id.starts_with("adm_"), "{created}");
    assert!(keys.client_secret.starts_with("twm_"), "{created}");
    (keys, created)
}

fn patch_ok(app: &TestApp, token: &str, client_id: &str, body: &Value) -> Value {
    let response = app.admin_patch(token, &admin_path(client_id), body);
    let status = response.status();
    let answer: Value = response.json().unwrap();
    assert_eq!(status, 200, "{body}: {answer}");
    answer
}

fn recorded(app: &TestApp, actor: &AdminKeys, action: &str, target: &str) -> i64 {
    app.db.count(&format!(
        "SELECT COUNT(*) AS n FROM audit_events WHERE action = '{action}' \
         AND actor_kind = 'admin' AND actor_id = '{}' AND target = '{target}'",
        actor.client_id
    ))
}

fn a_platform_admin_creates_lists_and_changes_admins(app: TestApp) {
    let first = app.create_site("First Shop");
    let second = app.create_site("Second Shop");
    let root = app.create_platform_admin("Root Desk");
    let token = app.admin_token(&root);

    let (manager, created) = create(
        &app,
        &token,
        &json!({ "name": "Shop Manager", "role": "site-manager", "sites": [first.site_key] }),
    );
    assert_eq!(created["role"], "site-manager");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["site_keys"], json!([first.site_key]));
    let manager_token = app.admin_token(&manager);
    let seen = app.admin_get_ok(&manager_token, "/admin/v1/sites");
    assert_eq!(seen["total"], 1, "{seen}");

    let listed = app.admin_get_ok(&token, ADMINS);
    let admins = listed["admins"].as_array().unwrap();
    assert_eq!(admins.len(), 2, "{listed}");
    assert_eq!(admins[0]["client_id"], root.client_id.as_str());
    assert_eq!(admins[0]["role"], "platform-admin");
    assert_eq!(admins[0]["site_keys"], Value::Null);
    let shown = app.admin_get_ok(&token, &admin_path(&manager.client_id));
    assert_eq!(&shown, &admins[1]);
    for answer in [&listed, &shown] {
        assert!(
            !answer.to_string().contains(&manager.client_secret),
            "the secret is shown once only: {answer}"
        );
    }

    let moved = patch_ok(
        &app,
        &token,
        &manager.client_id,
        &json!({ "sites": [second.site_key] }),
    );
    assert_eq!(moved["site_keys"], json!([second.site_key]));
    assert_admin_error(
        app.admin_get(
            &manager_token,
            &format!("/admin/v1/sites/{}", first.site_key),
        ),
        404,
        "not_found",
        "a site taken away",
    );
    app.admin_get_ok(
        &manager_token,
        &format!("/admin/v1/sites/{}", second.site_key),
    );

    let promoted = patch_ok(
        &app,
        &token,
        &manager.client_id,
        &json!({ "role": "platform-admin" }),
    );
    assert_eq!(promoted["role"], "platform-admin");
    assert_eq!(promoted["site_keys"], Value::Null);
    assert_eq!(
        app.admin_get_ok(&manager_token, "/admin/v1/sites")["total"],
        2
    );
    let demoted = patch_ok(
        &app,
        &token,
        &manager.client_id,
        &json!({ "role": "site-manager", "sites": [first.site_key, second.site_key] }),
    );
    assert_eq!(demoted["role"], "site-manager");
    let mut both = [first.site_key.clone(), second.site_key.clone()];
    both.sort();
    assert_eq!(demoted["site_keys"], json!(both));

    let (other_root, created) = create(
        &app,
        &token,
        &json!({ "name": "Second Root", "role": "platform-admin" }),
    );
    assert_eq!(created["site_keys"], Value::Null);
    app.admin_get_ok(&app.admin_token(&other_root), ADMINS);

    let target = manager.client_id.as_str();
    assert_eq!(recorded(&app, &root, "admin_created", target), 1);
    assert_eq!(recorded(&app, &root, "admin_sites_assigned", target), 2);
    assert_eq!(recorded(&app, &root, "admin_sites_unassigned", target), 1);
    assert_eq!(recorded(&app, &root, "admin_role_changed", target), 2);
    let trail = app.admin_get_ok(&token, "/admin/v1/audit").to_string();
    for secret in [&manager.client_secret, &other_root.client_secret] {
        assert!(!trail.contains(secret.as_str()), "{trail}");
    }
}

fn a_disabled_admins_token_stops_working_at_once(app: TestApp) {
    let site = app.create_site("Watched Shop");
    let root = app.create_platform_admin("Root Desk");
    let token = app.admin_token(&root);
    let manager = app.create_site_manager("Leaving Manager", &[&site]);
    let manager_token = app.admin_token(&manager);
    app.admin_get_ok(&manager_token, "/admin/v1/sites");

    let disabled = patch_ok(
        &app,
        &token,
        &manager.client_id,
        &json!({ "enabled": false }),
    );
    assert_eq!(disabled["enabled"], false);
    assert_admin_error(
        app.admin_get(&manager_token, "/admin/v1/sites"),
        401,
        "invalid_token",
        "a disabled admin's token",
    );
    assert_oauth_error(app.admin_token_request(&manager), 401, "invalid_client");

    let enabled = patch_ok(
        &app,
        &token,
        &manager.client_id,
        &json!({ "enabled": true }),
    );
    assert_eq!(enabled["enabled"], true);
    assert_admin_error(
        app.admin_get(&manager_token, "/admin/v1/sites"),
        401,
        "invalid_token",
        "an old token stays revoked",
    );
    app.admin_get_ok(&app.admin_token(&manager), "/admin/v1/sites");
    assert_eq!(
        recorded(&app, &root, "admin_disabled", &manager.client_id),
        1
    );
    assert_eq!(
        recorded(&app, &root, "admin_enabled", &manager.client_id),
        1
    );
}

fn an_admin_cannot_disable_or_demote_itself(app: TestApp) {
    let site = app.create_site("Own Shop");
    let root = app.create_platform_admin("Root Desk");
    app.create_platform_admin("Other Root");
    let token = app.admin_token(&root);
    for body in [
        json!({ "enabled": false }),
        json!({ "role": "site-manager", "sites": [site.site_key] }),
        json!({ "enabled": false, "role": "platform-admin" }),
    ] {
        let response = app.admin_patch(&token, &admin_path(&root.client_id), &body);
        assert_admin_error(response, 409, "cannot_change_own_access", &body.to_string());
    }
    let unchanged = patch_ok(&app, &token, &root.client_id, &json!({ "enabled": true }));
    assert_eq!(unchanged["role"], "platform-admin");
    assert_eq!(unchanged["enabled"], true);
    assert_eq!(
        recorded(&app, &root, "admin_enabled", &root.client_id),
        0,
        "a change that changes nothing is not recorded"
    );
}

/// Two platform admins, each disabling the other at the same instant: exactly one succeeds. The
/// other is refused `last_platform_admin`, or, when the first change committed before its token
/// was checked, `invalid_token`. Several rounds, so that the two transactions overlap.
fn two_platform_admins_disabling_each_other_leave_one_enabled(app: TestApp) {
    let first = app.create_platform_admin("First Root");
    let second = app.create_platform_admin("Second Root");
    let enabled_platform_admins =
        "SELECT COUNT(*) AS n FROM admins WHERE role = 'platform-admin' AND enabled = TRUE";
    for round in 0..6 {
        let racers = [
            (app.admin_token(&first), second.client_id.clone()),
            (app.admin_token(&second), first.client_id.clone()),
        ];
        let (client, base) = (app.client.clone(), app.base_url.clone());
        let outcomes = race(2, move |index| {
            let (token, target) = &racers[index];
            let response = client
                .patch(format!("{base}{}", admin_path(target)))
                .bearer_auth(token)
                .header("Content-Type", "application/json")
                .body(json!({ "enabled": false }).to_string())
                .send()
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().unwrap();
            (
                status,
                body["error"].as_str().unwrap_or_default().to_string(),
            )
        });
        let succeeded = outcomes.iter().filter(|(status, _)| *status == 200).count();
        assert_eq!(succeeded, 1, "round {round}: {outcomes:?}");
        for (status, error) in &outcomes {
            assert!(
                *status == 200
                    || (*status, error.as_str()) == (409, "last_platform_admin")
                    || (*status, error.as_str()) == (401, "invalid_token"),
                "round {round}: {outcomes:?}"
            );
        }
        assert_eq!(app.db.count(enabled_platform_admins), 1, "round {round}");
        for admin in [&first, &second] {
            app.admin_cli(&["enable", &admin.client_id]);
        }
    }
}

/// The rule holds whoever asks: a platform admin disabled since its request was authenticated
/// (here through the CLI) cannot disable the last enabled one.
fn the_last_enabled_platform_admin_is_kept_inside_the_transaction(app: TestApp) {
    let first = app.create_platform_admin("First Root");
    let second = app.create_platform_admin("Second Root");
    let caller = app
        .context
        .store
        .admin(&first.client_id)
        .unwrap()
        .expect("the admin exists")
        .admin;
    app.admin_cli(&["disable", &first.client_id]);
    let refused = tokenwarden::service::admins::update_as_admin(
        &app.context,
        &caller,
        None,
        &second.client_id,
        &RequestedChange {
            enabled: Some(false),
            ..RequestedChange::default()
        },
        tokenwarden::clock::now(),
    );
    assert!(
        matches!(
            refused,
            Err(tokenwarden::service::ServiceError::Admin(
                tokenwarden::domain::admin::AdminRefusal::LastPlatformAdmin
            ))
        ),
        "{refused:?}"
    );
    let demoted = tokenwarden::service::admins::update_as_admin(
        &app.context,
        &caller,
        None,
        &second.client_id,
        &RequestedChange {
            role: Some("site-manager"),
            sites: Some(&[app.create_site("Some Shop").site_key]),
            ..RequestedChange::default()
        },
        tokenwarden::clock::now(),
    );
    assert!(
        matches!(
            demoted,
            Err(tokenwarden::service::ServiceError::Admin(
                tokenwarden::domain::admin::AdminRefusal::LastPlatformAdmin
            ))
        ),
        "{demoted:?}"
    );
    let token = app.admin_token(&second);
    let shown = app.admin_get_ok(&token, &admin_path(&second.client_id));
    assert_eq!(
        (shown["enabled"].clone(), shown["role"].clone()),
        (json!(true), json!("platform-admin"))
    );
}

fn bad_admin_bodies_are_422_naming_the_field_and_unknown_admins_404(app: TestApp) {
    let site = app.create_site("Real Shop");
    let root = app.create_platform_admin("Root Desk");
    let token = app.admin_token(&root);
    let manager = app.create_site_manager("Some Manager", &[&site]);
    let count = || app.db.count("SELECT COUNT(*) AS n FROM admins");
    let before = count();
    let secret_like = "twm_ThisCouldBeASecretSentInTheWrongField";
    for (body, field) in [
        (json!({}), Some("name")),
        (
            json!({ "name": "  ", "role": "platform-admin" }),
            Some("name"),
        ),
        (
            json!({ "name": "Root Desk", "role": "platform-admin" }),
            Some("name"),
        ),
        (json!({ "name": "New" }), Some("role")),
        (json!({ "name": "New", "role": "root" }), Some("role")),
        (
            json!({ "name": "New", "role": "site-manager" }),
            Some("sites"),
        ),
        (
            json!({ "name": "New", "role": "site-manager", "sites": [] }),
            Some("sites"),
        ),
        (
            json!({ "name": "New", "role": "site-manager", "sites": [NO_SUCH_SITE] }),
            Some("sites"),
        ),
        (
            json!({ "name": "New", "role": "site-manager", "sites": [secret_like] }),
            Some("sites"),
        ),
        (
            json!({ "name": "New", "role": "platform-admin", "sites": [site.site_key] }),
            Some("sites"),
        ),
        (json!({ "name": "New", "role": 1 }), None),
        (
            json!({ "name": "New", "role": "platform-admin", "team": "x" }),
            None,
        ),
    ] {
        let response = app.admin_post(&token, ADMINS, Some(&body));
        let answer = assert_admin_error(response, 422, "validation_failed", &body.to_string());
        if let Some(field) = field {
            assert_eq!(answer["field"], field, "{body}: {answer}");
        }
        assert!(!answer.to_string().contains(secret_like), "{answer}");
    }
    assert_eq!(count(), before);

    let path = admin_path(&manager.client_id);
    let root_path = admin_path(&root.client_id);
    for (path, body, field) in [
        (&path, json!({}), Some("body")),
        (&path, json!(null), Some("body")),
        (&path, json!({ "role": "boss" }), Some("role")),
        (&path, json!({ "sites": [] }), Some("sites")),
        (&path, json!({ "sites": [NO_SUCH_SITE] }), Some("sites")),
        (
            &root_path,
            json!({ "sites": [site.site_key] }),
            Some("sites"),
        ),
        (&path, json!({ "enabled": "no" }), None),
        (&path, json!({ "enabled": false, "colour": "red" }), None),
    ] {
        let response = app.admin_patch(&token, path, &body);
        let answer = assert_admin_error(response, 422, "validation_failed", &body.to_string());
        if let Some(field) = field {
            assert_eq!(answer["field"], field, "{body}: {answer}");
        }
    }
    let shown = app.admin_get_ok(&token, &path);
    assert_eq!(shown["enabled"], true);
    assert_eq!(shown["site_keys"], json!([site.site_key]));

    for client_id in ["adm_AAAAAAAAAAAAAAAAAAAA", "nothing-like-it"] {
        let unknown = admin_path(client_id);
        assert_admin_error(app.admin_get(&token, &unknown), 404, "not_found", &unknown);
        assert_admin_error(
            app.admin_patch(&token, &unknown, &json!({ "enabled": false })),
            404,
            "not_found",
            &unknown,
        );
    }
}

fn site_managers_may_not_see_or_change_admins(app: TestApp) {
    let site = app.create_site("Managed Shop");
    let root = app.create_platform_admin("Root Desk");
    let manager = app.create_site_manager("Shop Manager", &[&site]);
    let token = app.admin_token(&manager);
    let before = app.db.count("SELECT COUNT(*) AS n FROM admins");
    for (what, response) in [
        ("list", app.admin_get(&token, ADMINS)),
        (
            "create",
            app.admin_post(
                &token,
                ADMINS,
                Some(&json!({ "name": "Me Too", "role": "platform-admin" })),
            ),
        ),
        ("get", app.admin_get(&token, &admin_path(&root.client_id))),
        (
            "disable another",
            app.admin_patch(
                &token,
                &admin_path(&root.client_id),
                &json!({ "enabled": false }),
            ),
        ),
        (
            "promote itself",
            app.admin_patch(
                &token,
                &admin_path(&manager.client_id),
                &json!({ "role": "platform-admin" }),
            ),
        ),
    ] {
        assert_admin_error(response, 403, "forbidden", what);
    }
    assert_eq!(app.db.count("SELECT COUNT(*) AS n FROM admins"), before);
    app.admin_get_ok(&app.admin_token(&root), ADMINS);
}
