//! Rotating a site's auth key with an overlap (`POST /admin/v1/sites/{site_key}/auth-key`): both
//! keys authenticate the site until the overlap ends, then only the new one; at most two keys are
//! ever valid, also under concurrent rotations; every node refuses a replaced key from the answer
//! on. Platform admins rotate any site, site managers the sites they manage.

use reqwest::blocking::Response;
use serde_json::{json, Value};

use crate::helpers::{
    assert_admin_error, assert_oauth_error, race, seconds_from_now, wait_for_live_change_feed,
    SiteKeys, TestApp, TestNode,
};

crate::on_both_backends!(
    a_rotation_answers_the_new_key_once_and_records_the_overlap,
    both_keys_work_at_every_site_endpoint_until_the_overlap_ends,
    without_an_overlap_the_old_key_stops_at_once_on_every_node,
    a_rotation_during_an_overlap_ends_the_older_one,
    concurrent_rotations_leave_one_current_key_and_at_most_one_previous,
    bad_bodies_and_unknown_sites_are_refused_and_rotate_nothing,
    site_managers_rotate_the_auth_keys_of_their_sites_only,
);

fn auth_key_path(site: &SiteKeys) -> String {
    format!("/admin/v1/sites/{}/auth-key", site.site_key)
}

/// `POST …/auth-key` as `token` on `node`, with `body` as JSON (or no body at all).
fn rotate(node: &TestNode, token: &str, site: &SiteKeys, body: Option<&Value>) -> Response {
    node.admin_post(token, &auth_key_path(site), body)
}

/// Rotates with `{"overlap_seconds": secs}`, or with no body for `None`, which must succeed.
fn rotate_ok(
    node: &TestNode,
    token: &str,
    site: &SiteKeys,
    overlap: Option<i64>,
) -> (SiteKeys, Option<String>) {
    let body = overlap.map(|secs| json!({ "overlap_seconds": secs }));
    rotated(rotate(node, token, site, body.as_ref()), site)
}

/// A successful rotation's answer: the site's new keys and when the replaced key stops.
fn rotated(response: Response, site: &SiteKeys) -> (SiteKeys, Option<String>) {
    let status = response.status();
    let cache_control = response.headers().get("cache-control").cloned();
    let text = response.text().unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(cache_control.unwrap(), "no-store", "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["site_key"], site.site_key.as_str(), "{answer}");
    let auth_key = answer["auth_key"].as_str().unwrap().to_string();
    assert!(auth_key.starts_with("twk_"), "{answer}");
    assert_ne!(auth_key, site.auth_key);
    let keys = SiteKeys {
        site_key: site.site_key.clone(),
        auth_key,
    };
    (
        keys,
        answer["previous_valid_until"].as_str().map(str::to_string),
    )
}

fn token_request(node: &TestNode, site: &SiteKeys) -> Response {
    node.post_form(
        "/oauth2/token",
        Some((&site.site_key, &site.auth_key)),
        "grant_type=client_credentials",
    )
}

/// Whether `site`'s credentials get a token from `node`: 200, or the one refusal, 401.
fn authenticates(node: &TestNode, site: &SiteKeys) -> bool {
    let response = token_request(node, site);
    match response.status().as_u16() {
        200 => true,
        401 => {
            assert_oauth_error(response, 401, "invalid_client");
            false
        }
        other => panic!("token request: {other} {}", response.text().unwrap()),
    }
}

/// The site as the admin API shows it, in the listing and on its own.
fn shown_previous_end(app: &TestApp, token: &str, site: &SiteKeys) -> Value {
    let one = app.admin_get_ok(token, &format!("/admin/v1/sites/{}", site.site_key));
    let listed = app.admin_get_ok(token, &format!("/admin/v1/sites?q={}", site.site_key));
    assert_eq!(listed["sites"][0], one, "{listed}");
    one["previous_auth_key_valid_until"].clone()
}

fn a_rotation_answers_the_new_key_once_and_records_the_overlap(app: TestApp) {
    let site = app.create_site("Rotating Shop");
    let admin = app.create_platform_admin("Key Keeper");
    let token = app.admin_token(&admin);
    let primary = app.primary_token(&site);
    assert_eq!(shown_previous_end(&app, &token, &site), Value::Null);

    let (new, until) = rotate_ok(&app, &token, &site, Some(3600));
    let until = until.expect("an overlap has an end");
    assert!(until.ends_with('Z'), "{until}");
    assert!(
        (3_598..=3_601).contains(&seconds_from_now(&until)),
        "{until}"
    );
    assert_eq!(app.primary_token(&new), primary, "the token stays the same");
    assert_eq!(app.primary_token(&site), primary, "the old key still works");

    assert_eq!(shown_previous_end(&app, &token, &site), json!(until));
    let patched: Value = app
        .client
        .patch(app.url(&format!("/admin/v1/sites/{}", site.site_key)))
        .bearer_auth(&token)
        .header("Content-Type", "application/json")
        .body(json!({ "name": "Rotated Shop" }).to_string())
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(patched["previous_auth_key_valid_until"], json!(until));
    let views = app.admin_get(&token, "/admin/v1/sites").text().unwrap();
    assert!(!views.contains(&new.auth_key), "shown once only: {views}");

    // Without a body: no overlap, and the previous key (the first) stops with the second.
    let (newest, until) = rotate_ok(&app, &token, &new, None);
    assert_eq!(until, None);
    assert!(!authenticates(&app, &new));
    assert!(!authenticates(&app, &site));
    assert!(authenticates(&app, &newest));
    assert_eq!(shown_previous_end(&app, &token, &site), Value::Null);

    let details = |detail: &str| {
        app.db.count(&format!(
            "SELECT COUNT(*) AS n FROM audit_events WHERE action = 'auth_key_rotated' \
             AND actor_kind = 'admin' AND actor_id = '{}' AND target = '{}' AND detail = '{detail}'",
            admin.client_id, site.site_key
        ))
    };
    assert_eq!(details("overlap 3600 s"), 1);
    assert_eq!(details("overlap 0 s"), 1);
    for key in [&new.auth_key, &newest.auth_key] {
        let traces = app.db.count(&format!(
            "SELECT COUNT(*) AS n FROM audit_events WHERE detail LIKE '%{key}%' \
             OR target LIKE '%{key}%'"
        ));
        assert_eq!(traces, 0, "no key in the audit trail");
    }
}

/// Wherever a site authenticates (token, invalidation, revocation), the replaced key works until
/// the end the answer gave, also for a node that answers the site from its cache, and not after.
fn both_keys_work_at_every_site_endpoint_until_the_overlap_ends(app: TestApp) {
    wait_for_live_change_feed(&app);
    let site = app.create_site("Overlap Shop");
    let admin = app.create_platform_admin("Overlap Admin");
    let token = app.admin_token(&admin);
    let (new, until) = rotate_ok(&app, &token, &site, Some(2));
    let until = until.expect("an end");
    let ends = chrono::DateTime::parse_from_rfc3339(&until).unwrap();

    let primary = app.cached_primary_token(&site);
    assert_eq!(app.cached_primary_token(&new), primary);
    for key in [&site, &new] {
        let primary = app.primary_token(key);
        assert_eq!(app.invalidate(key, &primary).status(), 200);
        let primary = app.primary_token(key);
        assert_eq!(app.revoke(key, &primary).status(), 200);
    }
    let primary = app.cached_primary_token(&site);
    assert!(
        tokenwarden::clock::now().and_utc() < ends,
        "the checks before the end took too long"
    );

    let wait = ends.signed_duration_since(tokenwarden::clock::now().and_utc())
        + chrono::TimeDelta::milliseconds(50);
    std::thread::sleep(wait.to_std().unwrap_or_default());
    let (hits, _) = app.context.grants.cache_counts();
    assert_oauth_error(token_request(&app, &site), 401, "invalid_client");
    assert_eq!(app.primary_token(&new), primary);
    assert!(
        app.context.grants.cache_counts().0 > hits,
        "the site was answered from the cache: its entry outlived the overlap harmlessly"
    );
    assert_oauth_error(app.invalidate(&site, &primary), 401, "invalid_client");
    assert_oauth_error(app.revoke(&site, &primary), 401, "invalid_client");
    assert_eq!(shown_previous_end(&app, &token, &site), Value::Null);
}

fn without_an_overlap_the_old_key_stops_at_once_on_every_node(app: TestApp) {
    let node_b = TestNode::spawn(&app.db, |_| {});
    wait_for_live_change_feed(&app);
    wait_for_live_change_feed(&node_b);
    let site = app.create_site("Two Node Shop");
    let admin = app.create_platform_admin("Node Admin");
    let token = app.admin_token(&admin);
    let primary = node_b.cached_primary_token(&site);
    app.cached_primary_token(&site);

    let (new, until) = rotate_ok(&app, &token, &site, Some(0));
    assert_eq!(until, None);
    // Right after the answer, without waiting: the write waited for every node's caches.
    assert_oauth_error(token_request(&node_b, &site), 401, "invalid_client");
    assert_oauth_error(token_request(&app, &site), 401, "invalid_client");
    assert_eq!(node_b.primary_token(&new), primary);

    // The same through the other node, with an overlap that a rotation without one ends.
    let token_b = node_b.admin_token(&admin);
    let (newer, _) = rotate_ok(&node_b, &token_b, &new, Some(600));
    assert_eq!(app.cached_primary_token(&new), primary);
    let (newest, _) = rotate_ok(&node_b, &token_b, &newer, None);
    assert_oauth_error(token_request(&app, &new), 401, "invalid_client");
    assert_oauth_error(token_request(&app, &newer), 401, "invalid_client");
    assert_eq!(app.primary_token(&newest), primary);
}

/// Three rotations, each with an overlap: after the third only the third key and the second (the
/// one it replaced) work; the first's overlap ended with the third rotation.
fn a_rotation_during_an_overlap_ends_the_older_one(app: TestApp) {
    let first = app.create_site("Thrice Rotated Shop");
    let admin = app.create_platform_admin("Rotator");
    let token = app.admin_token(&admin);
    let (second, _) = rotate_ok(&app, &token, &first, Some(3600));
    assert!(authenticates(&app, &first) && authenticates(&app, &second));
    let (third, _) = rotate_ok(&app, &token, &second, Some(3600));
    assert!(authenticates(&app, &second) && authenticates(&app, &third));
    assert!(!authenticates(&app, &first));
    let (fourth, _) = rotate_ok(&app, &token, &third, Some(3600));
    let working: Vec<bool> = [&first, &second, &third, &fourth]
        .iter()
        .map(|keys| authenticates(&app, keys))
        .collect();
    assert_eq!(working, [false, false, true, true]);
}

/// Eight rotations at once, twice: without an overlap exactly one of the keys authenticates, with
/// one exactly two (the current and the one the last rotation replaced); never a key no rotation
/// answered, never the original.
fn concurrent_rotations_leave_one_current_key_and_at_most_one_previous(app: TestApp) {
    let original = app.create_site("Raced Shop");
    let admin = app.create_platform_admin("Racing Admin");
    let token = app.admin_token(&admin);
    let app = std::sync::Arc::new(app);
    for (overlap, survivors) in [(0, 1), (3600, 2)] {
        let (racing_app, racing_token, site) = (app.clone(), token.clone(), original.clone());
        let answers = race(8, move |_| {
            rotate_ok(&racing_app, &racing_token, &site, Some(overlap)).0
        });
        let mut candidates = answers;
        candidates.push(original.clone());
        let working = candidates
            .iter()
            .filter(|keys| authenticates(&app, keys))
            .count();
        assert_eq!(working, survivors, "overlap {overlap}");
        assert!(!authenticates(&app, &original));
        let shown = shown_previous_end(&app, &token, &original);
        assert_eq!(shown.is_null(), overlap == 0, "{shown}");
    }
}

fn bad_bodies_and_unknown_sites_are_refused_and_rotate_nothing(app: TestApp) {
    let site = app.create_site("Steady Shop");
    let admin = app.create_platform_admin("Careful Rotator");
    let token = app.admin_token(&admin);
    for body in [
        json!({ "overlap_seconds": -1 }),
        json!({ "overlap_seconds": 604_801 }),
        json!({ "overlap_seconds": 1.5 }),
        json!({ "overlap_seconds": 60.0 }),
        json!({ "overlap_seconds": "60" }),
        json!({ "overlap_seconds": [60] }),
        json!({ "overlap_seconds": 18_446_744_073_709_551_615_u64 }),
    ] {
        let answer = assert_admin_error(
            rotate(&app, &token, &site, Some(&body)),
            422,
            "validation_failed",
            &body.to_string(),
        );
        assert_eq!(answer["field"], "overlap_seconds", "{body}: {answer}");
    }
    for body in [
        json!({ "overlap_seconds": 60, "auth_key": "twk_chosen" }),
        json!({ "overlap": 60 }),
        json!([60]),
        json!(60),
    ] {
        let answer = assert_admin_error(
            rotate(&app, &token, &site, Some(&body)),
            422,
            "validation_failed",
            &body.to_string(),
        );
        assert!(
            !answer.to_string().contains("twk_chosen"),
            "an unknown field is not named back: {answer}"
        );
    }
    let not_json = app
        .client
        .post(app.url(&auth_key_path(&site)))
        .bearer_auth(&token)
        .header("Content-Type", "text/plain")
        .body("overlap_seconds=60")
        .send()
        .unwrap();
    assert_admin_error(not_json, 415, "invalid_request", "text/plain");
    for unknown in ["site_nosuchsitenosuchsit", "nosuchsite"] {
        let response = app.admin_post(
            &token,
            &format!("/admin/v1/sites/{unknown}/auth-key"),
            Some(&json!({ "overlap_seconds": 60 })),
        );
        assert_admin_error(response, 404, "not_found", unknown);
    }
    assert!(authenticates(&app, &site));
    assert_eq!(shown_previous_end(&app, &token, &site), Value::Null);
    let recorded = app.db.count(
        "SELECT COUNT(*) AS n FROM audit_events WHERE action = 'auth_key_rotated' \
         AND actor_kind = 'admin'",
    );
    assert_eq!(recorded, 0);
    // Exactly the limit is fine.
    let (_, until) = rotate_ok(&app, &token, &site, Some(604_800));
    let left = seconds_from_now(&until.unwrap());
    assert!((604_798..=604_801).contains(&left), "{left}");
}

/// A site manager may rotate the auth key of a site they manage; another site is not found to
/// them, exactly like a site that does not exist (as everywhere in the admin API).
fn site_managers_rotate_the_auth_keys_of_their_sites_only(app: TestApp) {
    let managed = app.create_site("Managed Shop");
    let other = app.create_site("Other Shop");
    let manager = app.create_site_manager("Shop Manager", &[&managed]);
    let token = app.admin_token(&manager);

    let (new, until) = rotate_ok(&app, &token, &managed, Some(60));
    assert!(until.is_some());
    assert!(authenticates(&app, &new) && authenticates(&app, &managed));
    let shown = app.admin_get_ok(&token, &format!("/admin/v1/sites/{}", managed.site_key));
    assert_eq!(shown["previous_auth_key_valid_until"], json!(until));

    let refused = rotate(
        &app,
        &token,
        &other,
        Some(&json!({ "overlap_seconds": 60 })),
    );
    let answer = assert_admin_error(refused, 404, "not_found", "another site");
    assert_eq!(
        answer["error_description"],
        "no site with this key is managed by this admin"
    );
    assert!(authenticates(&app, &other));
    let recorded = app.db.count(&format!(
        "SELECT COUNT(*) AS n FROM audit_events WHERE action = 'auth_key_rotated' \
         AND actor_id = '{}' AND target = '{}'",
        manager.client_id, managed.site_key
    ));
    assert_eq!(recorded, 1);
    // The rest of the platform API stays closed to them.
    let create = app.admin_post(
        &token,
        "/admin/v1/sites",
        Some(&json!({ "name": "Sneaky Shop" })),
    );
    assert_admin_error(create, 403, "forbidden", "create");
}
