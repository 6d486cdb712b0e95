//! Token audiences: the `audience` of a non-primary token in the admin API (create, regenerate,
//! every view), what introspection answers each resource server (`aud` inside the audience,
//! `{"active": false}` outside it), deleting a resource server, and refused audiences.

use reqwest::blocking::Response;
use serde_json::{json, Value};

use crate::cli::{succeed, tokenwarden};
use crate::helpers::{
    assert_admin_error, assert_eventually, race, wait_for_live_change_feed, ResourceServerKeys,
    SiteKeys, TestApp,
};
use crate::resource_server_limits::answer_from_memory;

crate::on_both_backends!(
    a_token_with_an_audience_is_seen_only_by_its_audience_and_names_it,
    regenerate_keeps_the_audience_unless_the_body_gives_one,
    deleting_a_resource_server_removes_it_from_every_audience,
    tokens_created_while_their_resource_server_is_deleted_are_refused_or_lose_it,
    bad_audiences_are_422_naming_the_field_and_change_nothing,
);

/// A site and a platform admin's admin token.
struct Scene {
    site: SiteKeys,
    token: String,
}

fn scene(app: &TestApp, site_name: &str) -> Scene {
    wait_for_live_change_feed(app);
    let site = app.create_site(site_name);
    let admin = app.create_platform_admin("Audience Admin");
    let token = app.admin_token(&admin);
    Scene { site, token }
}

fn tokens_path(site: &SiteKeys) -> String {
    format!("/admin/v1/sites/{}/tokens", site.site_key)
}

fn token_path(site: &SiteKeys, id: i64) -> String {
    format!("{}/{id}", tokens_path(site))
}

fn ok_json(response: Response, status: u16, what: &str) -> Value {
    let actual = response.status().as_u16();
    let text = response.text().unwrap();
    assert_eq!(actual, status, "{what}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
}

/// `POST …/tokens` with `body`; the 201 answer.
fn create(app: &TestApp, scene: &Scene, body: Value) -> Value {
    let response = app.admin_post(&scene.token, &tokens_path(&scene.site), Some(&body));
    ok_json(response, 201, &format!("create {body}"))
}

/// `POST …/tokens/{id}/{action}` with `body`; the 200 answer.
fn act(app: &TestApp, scene: &Scene, id: i64, action: &str, body: Option<Value>) -> Value {
    let path = format!("{}/{action}", token_path(&scene.site, id));
    let response = app.admin_post(&scene.token, &path, body.as_ref());
    ok_json(response, 200, &format!("{action} {id} with {body:?}"))
}

fn view(app: &TestApp, scene: &Scene, id: i64) -> Value {
    app.admin_get_ok(&scene.token, &token_path(&scene.site, id))
}

fn listed(app: &TestApp, scene: &Scene, id: i64) -> Value {
    let list = app.admin_get_ok(&scene.token, &tokens_path(&scene.site));
    list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|token| token["id"] == id)
        .unwrap_or_else(|| panic!("token {id} is not listed: {list}"))
        .clone()
}

fn value(answer: &Value) -> String {
    answer["value"]
        .as_str()
        .unwrap_or_else(|| panic!("no value in {answer}"))
        .to_string()
}

fn id(answer: &Value) -> i64 {
    answer["id"].as_i64().unwrap()
}

/// The client ids, sorted: the order views and `aud` list them in.
fn ids(servers: &[&ResourceServerKeys]) -> Value {
    let mut ids: Vec<&str> = servers.iter().map(|rs| rs.client_id.as_str()).collect();
    ids.sort_unstable();
    json!(ids)
}

fn inactive() -> Value {
    json!({"active": false})
}

fn a_token_with_an_audience_is_seen_only_by_its_audience_and_names_it(app: TestApp) {
    let scene = scene(&app, "Audience Shop");
    let orders = app.create_resource_server("Orders API");
    let stock = app.create_resource_server("Stock API");
    let other = app.create_resource_server("Other API");
    let elsewhere = app.create_site("Elsewhere Shop");
    let limited_elsewhere = app.create_limited_resource_server("Elsewhere API", &[&elsewhere]);

    let created = create(
        &app,
        &scene,
        json!({
            "description": "Fulfilment partner",
            "audience": [orders.client_id, stock.client_id, orders.client_id, limited_elsewhere.client_id],
        }),
    );
    let audience = ids(&[&orders, &stock, &limited_elsewhere]);
    assert_eq!(
        created["audience"], audience,
        "duplicates collapsed: {created}"
    );
    let recorded = format!(
        "SELECT COUNT(*) AS n FROM audit_events WHERE action = 'token_created' \
         AND detail LIKE '%audience %{}%'",
        orders.client_id
    );
    assert_eq!(app.db.count(&recorded), 1, "the audience is on record");
    let token = value(&created);
    let mut shown = created.clone();
    shown.as_object_mut().unwrap().remove("value");
    assert_eq!(view(&app, &scene, id(&created)), shown);
    assert_eq!(listed(&app, &scene, id(&created)), shown);

    for member in [&orders, &stock] {
        let answer = app.introspect(member, &token);
        assert_eq!(answer["active"], true, "{answer}");
        assert_eq!(answer["aud"], audience, "RFC 7662 2.2 aud: {answer}");
        assert_eq!(answer["client_id"], scene.site.site_key.as_str());
    }
    assert_eq!(
        app.introspect(&other, &token),
        inactive(),
        "outside the audience"
    );
    assert_eq!(
        app.introspect(&limited_elsewhere, &token),
        inactive(),
        "in the audience, but limited to another site"
    );
    // Both checks are answered from memory once the caches are warm.
    assert_eq!(answer_from_memory(&app, &orders, &token)["aud"], audience);
    assert_eq!(answer_from_memory(&app, &other, &token), inactive());

    // Tokens without an audience, and primary tokens, carry no aud and are seen by everyone.
    let open = create(&app, &scene, json!({"description": "Open partner"}));
    assert_eq!(open["audience"], Value::Null, "{open}");
    let primary = app.primary_token(&scene.site);
    for token in [value(&open), primary] {
        let answer = app.introspect(&other, &token);
        assert_eq!(answer["active"], true, "{answer}");
        assert!(answer.get("aud").is_none(), "{answer}");
    }
    let primary_view =
        app.admin_get_ok(&scene.token, &tokens_path(&scene.site))["tokens"][0].clone();
    assert_eq!(primary_view["kind"], "primary");
    assert_eq!(primary_view["audience"], Value::Null);
    // `null` is no audience, as for the body's other optional members.
    let unset = create(
        &app,
        &scene,
        json!({"description": "Null partner", "audience": null}),
    );
    assert_eq!(unset["audience"], Value::Null, "{unset}");
}

fn regenerate_keeps_the_audience_unless_the_body_gives_one(app: TestApp) {
    let scene = scene(&app, "Regenerating Shop");
    let orders = app.create_resource_server("Orders API");
    let stock = app.create_resource_server("Stock API");
    let created = create(
        &app,
        &scene,
        json!({"description": "Partner", "audience": [orders.client_id]}),
    );
    let token_id = id(&created);

    let replaced_on_record = format!(
        "SELECT COUNT(*) AS n FROM audit_events WHERE action = 'token_regenerated' \
         AND detail LIKE 'audience %{}%'",
        stock.client_id
    );
    for body in [None, Some(json!({"description": "Partner, renamed"}))] {
        let regenerated = act(&app, &scene, token_id, "regenerate", body);
        assert_eq!(app.db.count(&replaced_on_record), 0);
        assert_eq!(regenerated["audience"], ids(&[&orders]), "{regenerated}");
        let token = value(&regenerated);
        assert_eq!(app.introspect(&orders, &token)["aud"], ids(&[&orders]));
        assert_eq!(app.introspect(&stock, &token), inactive());
    }

    let replaced = act(
        &app,
        &scene,
        token_id,
        "regenerate",
        Some(json!({"audience": [stock.client_id]})),
    );
    assert_eq!(replaced["audience"], ids(&[&stock]), "{replaced}");
    assert_eq!(
        app.db.count(&replaced_on_record),
        1,
        "the new audience is on record"
    );
    let token = value(&replaced);
    assert_eq!(app.introspect(&orders, &token), inactive());
    assert_eq!(app.introspect(&stock, &token)["aud"], ids(&[&stock]));
    assert_eq!(view(&app, &scene, token_id)["audience"], ids(&[&stock]));

    // Invalidating and validating leave the audience as it is, and take no audience.
    for action in ["invalidate", "validate"] {
        let changed = act(&app, &scene, token_id, action, None);
        assert_eq!(changed["audience"], ids(&[&stock]), "{action}: {changed}");
        let path = format!("{}/{action}", token_path(&scene.site, token_id));
        let body = json!({"audience": [orders.client_id]});
        let response = app.admin_post(&scene.token, &path, Some(&body));
        assert_admin_error(response, 422, "validation_failed", action);
    }
    assert_eq!(app.introspect(&stock, &token)["active"], true);

    // A token without an audience gets one by regenerating with it.
    let open = create(&app, &scene, json!({"description": "Open partner"}));
    let narrowed = act(
        &app,
        &scene,
        id(&open),
        "regenerate",
        Some(json!({"audience": [orders.client_id, stock.client_id]})),
    );
    assert_eq!(narrowed["audience"], ids(&[&orders, &stock]));
    let other = app.create_resource_server("Other API");
    assert_eq!(app.introspect(&other, &value(&narrowed)), inactive());
}

/// Deleted by the CLI, another process: the server hears of it like of any other write.
fn deleting_a_resource_server_removes_it_from_every_audience(app: TestApp) {
    let scene = scene(&app, "Deleting Shop");
    let orders = app.create_resource_server("Orders API");
    let stock = app.create_resource_server("Stock API");
    let other = app.create_resource_server("Other API");
    let both = create(
        &app,
        &scene,
        json!({"description": "Both", "audience": [orders.client_id, stock.client_id]}),
    );
    let only_stock = create(
        &app,
        &scene,
        json!({"description": "Only stock", "audience": [stock.client_id]}),
    );
    let open = create(&app, &scene, json!({"description": "Open"}));
    for (token, reader) in [(&both, &orders), (&only_stock, &stock), (&open, &other)] {
        assert_eq!(app.introspect(reader, &value(token))["active"], true);
    }

    succeed(tokenwarden(&app.db.url).args(["resource-server", "delete", &stock.client_id]));
    assert_eventually(&app, || {
        app.introspect(&orders, &value(&both))["aud"] == ids(&[&orders])
    });
    assert_eq!(view(&app, &scene, id(&both))["audience"], ids(&[&orders]));
    // Its whole audience gone, the token is refused by every resource server, even those that
    // see every site; it is listed with an empty audience, not as having none.
    assert_eq!(view(&app, &scene, id(&only_stock))["audience"], json!([]));
    for reader in [&orders, &other] {
        assert_eq!(app.introspect(reader, &value(&only_stock)), inactive());
    }
    assert_eq!(view(&app, &scene, id(&open))["audience"], Value::Null);
    assert_eq!(app.introspect(&other, &value(&open))["active"], true);
    let stored = app.db.count(&format!(
        "SELECT COUNT(*) AS n FROM token_audiences WHERE token_id = {}",
        id(&only_stock)
    ));
    assert_eq!(stored, 0);

    // The stock API's id names nothing any more; a new audience brings the token back.
    let response = app.admin_post(
        &scene.token,
        &format!("{}/regenerate", token_path(&scene.site, id(&only_stock))),
        Some(&json!({"audience": [stock.client_id]})),
    );
    assert_audience_refused(
        response,
        "the deleted resource server",
        Some(&stock.client_id),
    );
    let revived = act(
        &app,
        &scene,
        id(&only_stock),
        "regenerate",
        Some(json!({"audience": [other.client_id]})),
    );
    assert_eq!(
        app.introspect(&other, &value(&revived))["aud"],
        ids(&[&other])
    );
}

/// Creates racing the deletion of their audience's resource server: each is either refused (the
/// resource server was gone) or stored and then loses it with the deletion, never a 500.
fn tokens_created_while_their_resource_server_is_deleted_are_refused_or_lose_it(app: TestApp) {
    let scene = scene(&app, "Racing Shop");
    let doomed = app.create_resource_server("Doomed API");
    let url = app.url(&tokens_path(&scene.site));
    let (token, client_id) = (scene.token.clone(), doomed.client_id.clone());
    let context = app.context.clone();
    let outcomes = race(9, move |index| {
        if index == 0 {
            tokenwarden::service::resource_servers::delete(
                &context,
                &crate::helpers::operator(),
                &client_id,
                tokenwarden::clock::now(),
            )
            .unwrap();
            return 0;
        }
        let body = json!({"description": format!("Racer {index}"), "audience": [client_id]});
        reqwest::blocking::Client::new()
            .post(&url)
            .bearer_auth(&token)
            .json(&body)
            .send()
            .unwrap()
            .status()
            .as_u16()
    });
    assert!(
        outcomes[1..]
            .iter()
            .all(|status| [201, 422].contains(status)),
        "{outcomes:?}"
    );
    let list = app.admin_get_ok(&scene.token, &tokens_path(&scene.site));
    let tokens = list["tokens"].as_array().unwrap();
    let created = outcomes[1..]
        .iter()
        .filter(|status| **status == 201)
        .count();
    assert_eq!(tokens.len(), created, "{list}");
    for token in tokens {
        assert_eq!(token["audience"], json!([]), "{token}");
    }
}

/// A 422 `validation_failed` naming `audience`, whose description stays within RFC 6749 5.2's
/// characters and holds the client's text only when that is a well-formed client id (`named`).
fn assert_audience_refused(response: Response, what: &str, named: Option<&str>) {
    let body = assert_admin_error(response, 422, "validation_failed", what);
    assert_eq!(body["field"], "audience", "{what}: {body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with("audience "),
        "{what}: {description}"
    );
    assert!(
        description
            .bytes()
            .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)),
        "{what}: outside RFC 6749 5.2: {description:?}"
    );
    if let Some(client_id) = named {
        assert!(description.contains(client_id), "{what}: {description}");
    }
}

fn bad_audiences_are_422_naming_the_field_and_change_nothing(app: TestApp) {
    let scene = scene(&app, "Refusing Shop");
    let orders = app.create_resource_server("Orders API");
    let stock = app.create_resource_server("Stock API");
    let target = create(
        &app,
        &scene,
        json!({"description": "Target", "audience": [orders.client_id]}),
    );
    let mut before = target.clone();
    before.as_object_mut().unwrap().remove("value");
    let regenerate = format!("{}/regenerate", token_path(&scene.site, id(&target)));
    let unknown = "rs_AAAAAAAAAAAAAAAAAAAA";
    let too_many: Vec<&str> = std::iter::repeat_n(orders.client_id.as_str(), 21).collect();
    let cases: Vec<(Value, Option<&str>)> = vec![
        (json!(orders.client_id), None),
        (json!({ "id": orders.client_id }), None),
        (json!(5), None),
        (json!(true), None),
        (json!([]), None),
        (json!(too_many), None),
        (json!([orders.client_id, 7]), None),
        (json!([orders.client_id, null]), None),
        (json!([[orders.client_id]]), None),
        (json!([{ "client_id": orders.client_id }]), None),
        (json!([orders.client_id, unknown]), Some(unknown)),
        (json!(["rs_\"quoted\"\\back\\slash"]), None),
        (json!(["rs_ÄÖÜäöüßéèêëçñ€☃"]), None),
        (json!(["</script><script>alert(1)</script>"]), None),
        (json!([""]), None),
        (json!([format!("{}\n", stock.client_id)]), None),
    ];
    for (audience, named) in &cases {
        let body = json!({"description": "Refused", "audience": audience});
        let response = app.admin_post(&scene.token, &tokens_path(&scene.site), Some(&body));
        assert_audience_refused(response, &format!("create with {audience}"), *named);
        let body = json!({"audience": audience});
        let response = app.admin_post(&scene.token, &regenerate, Some(&body));
        assert_audience_refused(response, &format!("regenerate with {audience}"), *named);
    }
    let list = app.admin_get_ok(&scene.token, &tokens_path(&scene.site));
    assert_eq!(
        list["tokens"].as_array().unwrap().len(),
        1,
        "nothing was created"
    );
    assert_eq!(
        view(&app, &scene, id(&target)),
        before,
        "nothing was regenerated"
    );

    // Twenty entries are allowed, duplicates counted before they collapse.
    let mut twenty: Vec<&str> = std::iter::repeat_n(orders.client_id.as_str(), 19).collect();
    twenty.push(&stock.client_id);
    let accepted = create(
        &app,
        &scene,
        json!({"description": "Twenty", "audience": twenty}),
    );
    assert_eq!(accepted["audience"], ids(&[&orders, &stock]));
}
