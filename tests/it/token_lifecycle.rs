//! A non-primary token's life cycle past creation, on both backends over real HTTP: retiring one
//! token (its slot freed, its value refused at once, its history kept), bulk actions (all or
//! nothing), the site-wide history, and expiry that does not waste a slot (a new `expires_at` on
//! regenerate and validate; `--require-token-expiry` and `--default-token-lifetime-days`).

use std::time::Duration;

use chrono::{SecondsFormat, TimeDelta};
use reqwest::blocking::Response;
use serde_json::{json, Value};

use crate::helpers::{
    assert_admin_error, wait_for_live_change_feed, Backend, SiteKeys, TestApp, TestDatabase,
    TestNode,
};

crate::on_both_backends!(
    retiring_frees_the_slot_refuses_the_value_and_keeps_the_history,
    retiring_the_primary_is_409_and_retiring_twice_is_404,
    bulk_actions_change_every_token_or_none,
    bulk_refusals_name_the_id_and_change_nothing,
    bulk_bad_input_is_422_naming_the_field,
    site_history_pages_newest_first_with_each_description_at_the_time,
    site_history_bad_paging_is_refused,
    an_expired_token_needs_a_new_expiry_to_be_regenerated_or_validated,
    the_limit_notice_tells_the_truth,
    a_retirement_holds_on_every_node_when_its_answer_arrives,
);

crate::per_backend!(configured_sqlite, configured_postgres;
    require_token_expiry_refuses_a_token_without_one_and_a_default_fills_it,
);

struct Scene {
    site: SiteKeys,
    token: String,
}

fn scene(app: &TestApp, name: &str) -> Scene {
    let site = app.create_site(name);
    let admin = app.create_platform_admin("Lifecycle Admin");
    let token = app.admin_token(&admin);
    Scene { site, token }
}

fn tokens_path(site: &SiteKeys) -> String {
    format!("/admin/v1/sites/{}/tokens", site.site_key)
}

fn token_path(site: &SiteKeys, id: i64) -> String {
    format!("/admin/v1/sites/{}/tokens/{id}", site.site_key)
}

fn bulk_path(site: &SiteKeys) -> String {
    format!("/admin/v1/sites/{}/tokens/bulk", site.site_key)
}

fn history_path(site: &SiteKeys) -> String {
    format!("/admin/v1/sites/{}/history", site.site_key)
}

fn in_days(days: i64) -> String {
    (tokenwarden::clock::now().and_utc() + TimeDelta::days(days))
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Creates a token; its id and value.
fn create(app: &TestApp, scene: &Scene, body: Value) -> (i64, String) {
    let response = app.admin_post(&scene.token, &tokens_path(&scene.site), Some(&body));
    let status = response.status();
    let answer: Value = response.json().unwrap();
    assert_eq!(status, 201, "create {body}: {answer}");
    (
        answer["id"].as_i64().unwrap(),
        answer["value"].as_str().unwrap().to_string(),
    )
}

fn create_named(app: &TestApp, scene: &Scene, description: &str) -> (i64, String) {
    create(app, scene, json!({ "description": description }))
}

fn listed_ids(app: &TestApp, scene: &Scene) -> Vec<i64> {
    app.admin_get_ok(&scene.token, &tokens_path(&scene.site))["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|token| token["id"].as_i64().unwrap())
        .collect()
}

fn retire(app: &TestApp, scene: &Scene, id: i64) -> Response {
    app.admin_delete(&scene.token, &token_path(&scene.site, id))
}

fn bulk(app: &TestApp, scene: &Scene, body: Value) -> Response {
    app.admin_post(&scene.token, &bulk_path(&scene.site), Some(&body))
}

fn ok_json(response: Response, what: &str) -> Value {
    let status = response.status();
    let text = response.text().unwrap();
    assert_eq!(status, 200, "{what}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn assert_validation_failed(response: Response, field: &str, what: &str) -> String {
    let body = assert_admin_error(response, 422, "validation_failed", what);
    assert_eq!(body["field"], field, "{what}: {body}");
    let description = body["error_description"].as_str().unwrap().to_string();
    assert!(description.contains(field), "{what}: {description}");
    description
}

/// Every event of the site's history, newest first, following `next`.
fn whole_site_history(app: &TestApp, scene: &Scene) -> Vec<Value> {
    let mut events = Vec::new();
    let mut path = format!("{}?limit=2", history_path(&scene.site));
    loop {
        let page = app.admin_get_ok(&scene.token, &path);
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => path = format!("{}?limit=2&cursor={next}", history_path(&scene.site)),
            None => return events,
        }
    }
}

fn audit_actions(app: &TestApp, scene: &Scene, action: &str) -> Vec<Value> {
    app.admin_get_ok(&scene.token, &format!("/admin/v1/audit?action={action}"))["events"]
        .as_array()
        .unwrap()
        .clone()
}

fn retiring_frees_the_slot_refuses_the_value_and_keeps_the_history(app: TestApp) {
    let scene = scene(&app, "Retiring Store");
    let resource_server = app.create_resource_server("Retiring API");
    app.primary_token(&scene.site);
    let tokens: Vec<(i64, String)> = (1..=9)
        .map(|index| create_named(&app, &scene, &format!("Partner {index}")))
        .collect();
    let (retired_id, retired_value) = tokens[3].clone();
    // Cached as active first, so the retirement must reach the cache.
    assert_eq!(
        app.introspect(&resource_server, &retired_value)["active"],
        true
    );
    let response = retire(&app, &scene, retired_id);
    assert_eq!(response.status(), 204);
    assert_eq!(response.headers().get("cache-control").unwrap(), "no-store");
    assert_eq!(
        app.introspect(&resource_server, &retired_value),
        json!({"active": false})
    );
    let listed = listed_ids(&app, &scene);
    assert_eq!(listed.len(), 9, "primary and eight others: {listed:?}");
    assert!(!listed.contains(&retired_id));
    assert_eq!(
        app.admin_get_ok(
            &scene.token,
            &format!("/admin/v1/sites/{}", scene.site.site_key)
        )["token_count"],
        9
    );
    let in_listing = app.admin_get_ok(
        &scene.token,
        &format!("/admin/v1/sites?q={}", scene.site.site_key),
    );
    assert_eq!(in_listing["sites"][0]["token_count"], 9, "{in_listing}");
    assert_admin_error(
        app.admin_get(&scene.token, &token_path(&scene.site, retired_id)),
        404,
        "not_found",
        "GET of a retired token",
    );
    // Its slot is free: a tenth token fits, an eleventh does not.
    let (replacement, _) = create_named(&app, &scene, "Replacement");
    assert_admin_error(
        app.admin_post(
            &scene.token,
            &tokens_path(&scene.site),
            Some(&json!({"description": "One Too Many"})),
        ),
        409,
        "token_limit_reached",
        "a create beside nine live non-primary tokens",
    );
    // Its own history and the site's keep it.
    let own = app.admin_get_ok(
        &scene.token,
        &format!("{}/history", token_path(&scene.site, retired_id)),
    );
    let events: Vec<&str> = own["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["created", "retired"]);
    let site_history = whole_site_history(&app, &scene);
    assert_eq!(site_history[0]["token_id"], replacement);
    assert_eq!(site_history[1]["token_id"], retired_id);
    assert_eq!(site_history[1]["event"], "retired");
    assert_eq!(site_history[1]["description"], "Partner 4");
    assert_eq!(site_history[1]["actor"]["name"], "Lifecycle Admin");
    // The audit trail records it.
    let audited = audit_actions(&app, &scene, "token_retired");
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(
        audited[0]["target"],
        format!("{}/tokens/{retired_id}", scene.site.site_key)
    );
}

fn retiring_the_primary_is_409_and_retiring_twice_is_404(app: TestApp) {
    let scene = scene(&app, "Twice Store");
    app.primary_token(&scene.site);
    let primary_id = listed_ids(&app, &scene)[0];
    assert_admin_error(
        retire(&app, &scene, primary_id),
        409,
        "primary_token_managed_by_oauth",
        "retiring the primary",
    );
    let (id, _) = create_named(&app, &scene, "Once");
    assert_eq!(retire(&app, &scene, id).status(), 204);
    assert_admin_error(retire(&app, &scene, id), 404, "not_found", "retiring twice");
    assert_admin_error(
        retire(&app, &scene, 987_654),
        404,
        "not_found",
        "retiring an unknown id",
    );
    // A retired token cannot be brought back by the other actions either.
    for action in ["validate", "invalidate", "regenerate"] {
        assert_admin_error(
            app.admin_post(
                &scene.token,
                &format!("{}/{action}", token_path(&scene.site, id)),
                None,
            ),
            404,
            "not_found",
            &format!("{action} of a retired token"),
        );
    }
    assert_eq!(audit_actions(&app, &scene, "token_retired").len(), 1);
}

fn bulk_actions_change_every_token_or_none(app: TestApp) {
    let scene = scene(&app, "Bulk Store");
    let resource_server = app.create_resource_server("Bulk API");
    let tokens: Vec<(i64, String)> = (1..=3)
        .map(|index| create_named(&app, &scene, &format!("Bulk {index}")))
        .collect();
    let ids: Vec<i64> = tokens.iter().map(|(id, _)| *id).collect();
    for (_, value) in &tokens {
        assert_eq!(app.introspect(&resource_server, value)["active"], true);
    }
    let answer = ok_json(
        bulk(
            &app,
            &scene,
            json!({"action": "invalidate", "ids": [ids[2], ids[0], ids[1]]}),
        ),
        "bulk invalidate",
    );
    let answered: Vec<i64> = answer["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|token| {
            assert_eq!(token["active"], false, "{token}");
            token["id"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(answered, ids);
    for (_, value) in &tokens {
        assert_eq!(
            app.introspect(&resource_server, value),
            json!({"active": false})
        );
    }
    let answer = ok_json(
        bulk(
            &app,
            &scene,
            json!({"action": "validate", "ids": [ids[0], ids[1]]}),
        ),
        "bulk validate",
    );
    assert!(answer["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .all(|token| token["active"] == true));
    assert_eq!(
        app.introspect(&resource_server, &tokens[0].1)["active"],
        true
    );
    assert_eq!(
        app.introspect(&resource_server, &tokens[2].1)["active"],
        false
    );
    let answer = ok_json(
        bulk(&app, &scene, json!({"action": "retire", "ids": ids})),
        "bulk retire",
    );
    assert!(answer["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .all(|token| token["retired_at"].is_string() && token["active"] == false));
    assert!(listed_ids(&app, &scene).is_empty());
    for (_, value) in &tokens {
        assert_eq!(
            app.introspect(&resource_server, value),
            json!({"active": false})
        );
    }
    // One event per token and action: 3 invalidated, 2 validated, 3 retired (plus 3 created).
    let history = whole_site_history(&app, &scene);
    let count = |event: &str| history.iter().filter(|e| e["event"] == event).count();
    assert_eq!(
        (
            count("created"),
            count("invalidated"),
            count("validated"),
            count("retired")
        ),
        (3, 3, 2, 3)
    );
    let audited = audit_actions(&app, &scene, "token_retired");
    assert_eq!(audited.len(), 3);
    assert!(audited
        .iter()
        .all(|event| event["detail"].as_str().unwrap().contains("bulk")));
}

fn bulk_refusals_name_the_id_and_change_nothing(app: TestApp) {
    let scene = scene(&app, "Careful Store");
    let other = app.create_site("Other Store");
    app.primary_token(&scene.site);
    let primary_id = listed_ids(&app, &scene)[0];
    let (first, _) = create_named(&app, &scene, "Careful 1");
    let (second, _) = create_named(&app, &scene, "Careful 2");
    let other_scene = Scene {
        site: other,
        token: scene.token.clone(),
    };
    let (foreign, _) = create_named(&app, &other_scene, "Foreign");
    let unchanged = || {
        let listed = app.admin_get_ok(&scene.token, &tokens_path(&scene.site));
        assert!(
            listed["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .all(|token| token["active"] == true),
            "{listed}"
        );
        assert_eq!(listed["tokens"].as_array().unwrap().len(), 3);
    };
    for action in ["invalidate", "retire"] {
        let body = assert_admin_error(
            bulk(
                &app,
                &scene,
                json!({"action": action, "ids": [first, 987_654, second]}),
            ),
            404,
            "not_found",
            &format!("{action} with an unknown id"),
        );
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("987654"),
            "{body}"
        );
        unchanged();
        let body = assert_admin_error(
            bulk(
                &app,
                &scene,
                json!({"action": action, "ids": [first, primary_id]}),
            ),
            409,
            "primary_token_managed_by_oauth",
            &format!("{action} with the primary"),
        );
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains(&primary_id.to_string()),
            "{body}"
        );
        unchanged();
        let description = assert_validation_failed(
            bulk(
                &app,
                &scene,
                json!({"action": action, "ids": [first, foreign]}),
            ),
            "ids",
            &format!("{action} with another site's id"),
        );
        assert!(description.contains(&foreign.to_string()), "{description}");
        unchanged();
    }
    // The other site's token was not touched either.
    let theirs = app.admin_get_ok(&scene.token, &token_path(&other_scene.site, foreign));
    assert_eq!(theirs["active"], true);
    assert_eq!(audit_actions(&app, &scene, "token_invalidated").len(), 0);
}

fn bulk_bad_input_is_422_naming_the_field(app: TestApp) {
    let scene = scene(&app, "Strict Store");
    let ids: Vec<i64> = (1..=9)
        .map(|index| create_named(&app, &scene, &format!("Strict {index}")).0)
        .collect();
    let mut ten = ids.clone();
    ten.push(ids[0] + 1000);
    let cases = [
        (json!({"action": "invalidate", "ids": []}), "ids", "no ids"),
        (json!({"action": "invalidate"}), "ids", "missing ids"),
        (
            json!({"action": "invalidate", "ids": ten}),
            "ids",
            "ten ids",
        ),
        (
            json!({"action": "invalidate", "ids": [ids[0], ids[1], ids[0]]}),
            "ids",
            "a repeated id",
        ),
        (
            json!({"action": "delete", "ids": [ids[0]]}),
            "action",
            "an unknown action",
        ),
        (json!({"ids": [ids[0]]}), "action", "no action"),
    ];
    for (body, field, what) in cases {
        assert_validation_failed(bulk(&app, &scene, body), field, what);
    }
    // All nine at once is the most and is fine.
    let answer = ok_json(
        bulk(&app, &scene, json!({"action": "invalidate", "ids": ids})),
        "nine ids",
    );
    assert_eq!(answer["tokens"].as_array().unwrap().len(), 9);
    // A wrong JSON type is refused before anything changes, like any admin body.
    let response = bulk(&app, &scene, json!({"action": "validate", "ids": "all"}));
    assert_eq!(response.status(), 422, "ids as a string");
}

fn site_history_pages_newest_first_with_each_description_at_the_time(app: TestApp) {
    let scene = scene(&app, "Storied Store");
    app.primary_token(&scene.site);
    let (id, _) = create_named(&app, &scene, "First Name");
    ok_json(
        app.admin_post(
            &scene.token,
            &format!("{}/invalidate", token_path(&scene.site, id)),
            Some(&json!({"description": "Second Name"})),
        ),
        "invalidate with a new description",
    );
    ok_json(
        app.admin_post(
            &scene.token,
            &format!("{}/validate", token_path(&scene.site, id)),
            None,
        ),
        "validate",
    );
    assert_eq!(retire(&app, &scene, id).status(), 204);
    let events = whole_site_history(&app, &scene);
    let summary: Vec<(String, String, Value)> = events
        .iter()
        .map(|event| {
            (
                event["token_id"].to_string(),
                event["event"].as_str().unwrap().to_string(),
                event["description"].clone(),
            )
        })
        .collect();
    let primary_id = events.last().unwrap()["token_id"].to_string();
    let id = id.to_string();
    assert_eq!(
        summary,
        [
            (id.clone(), "retired".into(), json!("Second Name")),
            (id.clone(), "validated".into(), json!("Second Name")),
            (
                id.clone(),
                "description_changed".into(),
                json!("Second Name")
            ),
            (id.clone(), "invalidated".into(), json!("First Name")),
            (id.clone(), "created".into(), json!("First Name")),
            (
                primary_id,
                "created".into(),
                events.last().unwrap()["description"].clone()
            ),
        ]
    );
    assert!(events.last().unwrap()["description"].is_string());
    // One page with everything has no next.
    let page = app.admin_get_ok(&scene.token, &history_path(&scene.site));
    assert_eq!(page["events"].as_array().unwrap().len(), 6);
    assert!(page["next"].is_null());
}

fn site_history_bad_paging_is_refused(app: TestApp) {
    let scene = scene(&app, "Paged Store");
    create_named(&app, &scene, "Paged");
    for cursor in ["abc", "-5", "0", "99999999999999999999"] {
        assert_validation_failed(
            app.admin_get(
                &scene.token,
                &format!("{}?cursor={cursor}", history_path(&scene.site)),
            ),
            "cursor",
            &format!("cursor {cursor}"),
        );
    }
    for limit in ["0", "1001", "x"] {
        assert_admin_error(
            app.admin_get(
                &scene.token,
                &format!("{}?limit={limit}", history_path(&scene.site)),
            ),
            400,
            "invalid_request",
            &format!("limit {limit}"),
        );
    }
    assert_admin_error(
        app.admin_get(&scene.token, "/admin/v1/sites/site_nosuchsite/history"),
        404,
        "not_found",
        "an unknown site",
    );
}

fn an_expired_token_needs_a_new_expiry_to_be_regenerated_or_validated(app: TestApp) {
    let scene = scene(&app, "Expiring Store");
    let resource_server = app.create_resource_server("Expiring API");
    let (id, value) = create(
        &app,
        &scene,
        json!({"description": "Expiring", "expires_at": in_days(1)}),
    );
    app.db.execute(&format!(
        "UPDATE tokens SET expires_at = '2020-01-01 00:00:00' WHERE id = {id}"
    ));
    let action = |name: &str, body: Option<Value>| {
        app.admin_post(
            &scene.token,
            &format!("{}/{name}", token_path(&scene.site, id)),
            body.as_ref(),
        )
    };
    for name in ["regenerate", "validate"] {
        let description = assert_validation_failed(
            action(name, None),
            "expires_at",
            &format!("{name} of an expired token without expires_at"),
        );
        assert!(
            description.contains("this token has expired; give a new expiry or retire it"),
            "{description}"
        );
        assert_validation_failed(
            action(name, Some(json!({"expires_at": "2020-01-01T00:00:00Z"}))),
            "expires_at",
            &format!("{name} of an expired token with a past expires_at"),
        );
    }
    assert_validation_failed(
        bulk(&app, &scene, json!({"action": "validate", "ids": [id]})),
        "ids",
        "bulk validate of an expired token",
    );
    // Invalidating needs no expiry; then validating with one brings it back.
    ok_json(action("invalidate", None), "invalidate an expired token");
    let new_expiry = in_days(30);
    let validated = ok_json(
        action("validate", Some(json!({"expires_at": new_expiry}))),
        "validate with a new expiry",
    );
    assert_eq!(validated["active"], true);
    assert_eq!(validated["expired"], false);
    assert_eq!(validated["expires_at"], new_expiry);
    assert_eq!(app.introspect(&resource_server, &value)["active"], true);
    // Regenerating with a new expiry sets it too.
    let later = in_days(60);
    let regenerated = ok_json(
        action("regenerate", Some(json!({"expires_at": later}))),
        "regenerate with a new expiry",
    );
    assert_eq!(regenerated["expires_at"], later);
    let new_value = regenerated["value"].as_str().unwrap();
    assert_eq!(app.introspect(&resource_server, new_value)["active"], true);
    assert_eq!(
        app.introspect(&resource_server, &value),
        json!({"active": false})
    );
}

fn the_limit_notice_tells_the_truth(app: TestApp) {
    let scene = scene(&app, "Crowded Store");
    app.primary_token(&scene.site);
    for index in 1..=9 {
        create_named(&app, &scene, &format!("Crowd {index}"));
    }
    let body = assert_admin_error(
        app.admin_post(
            &scene.token,
            &tokens_path(&scene.site),
            Some(&json!({"description": "Crowd 10"})),
        ),
        409,
        "token_limit_reached",
        "the tenth non-primary token",
    );
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains("retire"), "{description}");
    assert!(description.contains("new expiry"), "{description}");
}

/// A retirement (one token, or several in bulk) answers only once no node's cache can still
/// answer the token active: another node that cached it active refuses it on the next request.
fn a_retirement_holds_on_every_node_when_its_answer_arrives(app: TestApp) {
    let other = TestNode::spawn(&app.db, |_| {});
    wait_for_live_change_feed(&other);
    let scene = scene(&app, "Shared Store");
    let resource_server = app.create_resource_server("Shared API");
    let tokens: Vec<(i64, String)> = (1..=3)
        .map(|index| create_named(&app, &scene, &format!("Shared {index}")))
        .collect();
    for (_, value) in &tokens {
        for _ in 0..2 {
            assert_eq!(other.introspect(&resource_server, value)["active"], true);
        }
    }
    assert_eq!(retire(&app, &scene, tokens[0].0).status(), 204);
    assert_eq!(
        other.introspect(&resource_server, &tokens[0].1),
        json!({"active": false}),
        "the other node, right after the retirement answered"
    );
    ok_json(
        bulk(
            &app,
            &scene,
            json!({"action": "retire", "ids": [tokens[1].0, tokens[2].0]}),
        ),
        "bulk retire",
    );
    for (_, value) in &tokens[1..] {
        assert_eq!(
            other.introspect(&resource_server, value),
            json!({"active": false}),
            "the other node, right after the bulk retirement answered"
        );
    }
}

fn require_token_expiry_refuses_a_token_without_one_and_a_default_fills_it(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let required = TestApp::spawn_with(db, |config| config.require_token_expiry = true);
    let scene = scene(&required, "Required Store");
    let description = assert_validation_failed(
        required.admin_post(
            &scene.token,
            &tokens_path(&scene.site),
            Some(&json!({"description": "Forever"})),
        ),
        "expires_at",
        "a token without expiry on a server that requires one",
    );
    assert!(description.contains("required"), "{description}");
    assert_eq!(
        required.admin_get_ok(&scene.token, "/admin/v1/sessions/current")["token_terms"],
        json!({"max_lifetime_days": 365, "expiry_required": true, "default_lifetime_days": null})
    );
    create(
        &required,
        &scene,
        json!({"description": "Bounded", "expires_at": in_days(10)}),
    );
    drop(required);

    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let defaulted = TestApp::spawn_with(db, |config| {
        config.require_token_expiry = true;
        config.default_token_lifetime = Some(Duration::from_secs(7 * 86_400));
    });
    let second = self::scene(&defaulted, "Defaulted Store");
    assert_eq!(
        defaulted.admin_get_ok(&second.token, "/admin/v1/sessions/current")["token_terms"],
        json!({"max_lifetime_days": 365, "expiry_required": false, "default_lifetime_days": 7})
    );
    let response = defaulted.admin_post(
        &second.token,
        &tokens_path(&second.site),
        Some(&json!({"description": "Defaulted"})),
    );
    assert_eq!(response.status(), 201);
    let answer: Value = response.json().unwrap();
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(answer["expires_at"].as_str().unwrap()).unwrap();
    let expected = tokenwarden::clock::now().and_utc() + TimeDelta::days(7);
    assert!(
        (expires_at.timestamp() - expected.timestamp()).abs() < 60,
        "{answer}"
    );
}

/// `serve` refuses a default lifetime beyond the maximum at start, naming the flag (exit 2).
#[test]
fn a_default_lifetime_beyond_the_maximum_is_refused_at_start() {
    let database = std::env::temp_dir().join("never-opened-lifecycle.db");
    let output = crate::cli::tokenwarden(database.to_str().unwrap())
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--max-token-lifetime-days",
            "30",
            "--default-token-lifetime-days",
            "31",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--default-token-lifetime-days"), "{stderr}");
    assert!(stderr.contains("--max-token-lifetime-days"), "{stderr}");
}

/// The expiry settings come from the configuration file and the environment like every other
/// setting, and the file's default lifetime beyond the maximum stops the start too.
#[test]
fn the_expiry_settings_come_from_the_file_and_the_environment() {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
    let file = db.dir.path().join("tokenwarden.toml");
    std::fs::write(&file, "default-token-lifetime-days = 30\n").unwrap();
    let settings = crate::cli::succeed_json(
        crate::cli::tokenwarden(&db.url)
            .env("TOKENWARDEN_REQUIRE_TOKEN_EXPIRY", "true")
            .arg("--config")
            .arg(&file)
            .args(["--json", "config", "show"]),
    );
    let setting = |name: &str| settings["settings"][name].clone();
    assert_eq!(
        setting("default-token-lifetime-days"),
        json!({"value": "30", "source": "file"})
    );
    assert_eq!(setting("require-token-expiry")["source"], "environment");
    assert_eq!(setting("require-token-expiry")["value"], "true");

    std::fs::write(
        &file,
        "max-token-lifetime-days = 10\ndefault-token-lifetime-days = 11\n",
    )
    .unwrap();
    let output = crate::cli::tokenwarden(&db.url)
        .arg("--config")
        .arg(&file)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--default-token-lifetime-days"), "{stderr}");
}
