//! `POST /oauth2/introspect` (RFC 7662): answers, authentication, bad input, and exactness when
//! other writers (another node, the CLI) change tokens under a cache.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{
    assert_eventually, assert_oauth_error, test_secret, wait_for_live_change_feed, ServerProcess,
    TestApp, TestNode,
};

crate::on_both_backends!(
    an_active_primary_token_is_described_and_an_invalidated_one_is_not,
    inactive_answers_carry_nothing_but_active_false,
    only_resource_servers_may_introspect,
    bad_introspection_requests_get_clear_errors,
    a_deleted_resource_server_is_refused_at_once,
    disabling_a_site_deactivates_its_tokens_on_the_next_request,
    last_used_at_is_written_in_batches,
    usage_batches_keep_the_latest_time_per_token,
    usage_flushes_leave_the_cache_warm,
    introspection_does_not_write_and_shutdown_flushes_usage,
    exactness_holds_with_the_cache_switched_off,
    another_process_sees_an_invalidation_once_it_is_answered,
    resource_servers_are_managed_with_the_cli,
);

fn an_active_primary_token_is_described_and_an_invalidated_one_is_not(app: TestApp) {
    let site = app.create_site("Tea Shop");
    let resource_server = app.create_resource_server("Orders API");
    let token = app.primary_token(&site);
    let answer = app.introspect(&resource_server, &token);
    assert_eq!(answer["active"], true);
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["client_id"], site.site_key.as_str());
    assert_eq!(answer["sub"], site.site_key.as_str());
    assert_eq!(answer["token_kind"], "primary");
    assert_eq!(answer["site_name"], "Tea Shop");
    let issued_at = answer["iat"].as_i64().expect("iat");
    assert!((tokenwarden::clock::now().and_utc().timestamp() - issued_at).abs() < 60);
    let object = answer.as_object().unwrap();
    assert!(
        !object.contains_key("exp") && !object.contains_key("scope"),
        "{answer}"
    );

    assert_eq!(app.invalidate(&site, &token).status(), 200);
    assert_eq!(
        app.introspect(&resource_server, &token),
        json!({"active": false})
    );
    let renewed = app.primary_token(&site);
    assert_eq!(app.introspect(&resource_server, &renewed)["active"], true);
    assert_eq!(
        app.introspect(&resource_server, &token),
        json!({"active": false})
    );
}

fn inactive_answers_carry_nothing_but_active_false(app: TestApp) {
    let resource_server = app.create_resource_server("Catalog API");
    let site = app.create_site("Pen Shop");
    let token = app.primary_token(&site);
    let mut bad_checksum = token.clone();
    bad_checksum.replace_range(10..11, if &token[10..11] == "A" { "B" } else { "A" });
    let never_issued = tokenwarden::domain::token::mint(
        tokenwarden::domain::token::SecretKind::PrimaryToken,
        &[3u8; 32],
    );
    for value in [
        "unknown".to_string(),
        bad_checksum,
        token.replace("twp_", "tws_"),
        never_issued.expose().to_string(),
        site.auth_key.clone(),
        format!("{token}%00"),
        "tw%F0%9F%98%80".to_string(),
        "<script>".to_string(),
    ] {
        assert_eq!(
            app.introspect(&resource_server, &value),
            json!({"active": false}),
            "{value}"
        );
    }
}

fn only_resource_servers_may_introspect(app: TestApp) {
    let site = app.create_site("Cup Shop");
    let token = app.primary_token(&site);
    let resource_server = app.create_resource_server("Stock API");
    let by_site = app.post_form(
        "/oauth2/introspect",
        Some((&site.site_key, &site.auth_key)),
        &format!("token={token}"),
    );
    let description = assert_oauth_error(by_site, 401, "invalid_client");
    let wrong_secret = app.post_form(
        "/oauth2/introspect",
        Some((&resource_server.client_id, "twr_wrong")),
        &format!("token={token}"),
    );
    assert_eq!(
        wrong_secret.headers()["www-authenticate"],
        "Basic realm=\"tokenwarden\""
    );
    assert_eq!(
        assert_oauth_error(wrong_secret, 401, "invalid_client"),
        description
    );
    let anonymous = app.post_form("/oauth2/introspect", None, &format!("token={token}"));
    assert_oauth_error(anonymous, 401, "invalid_client");
    let by_body = app.post_form(
        "/oauth2/introspect",
        None,
        &format!(
            "token={token}&client_id={}&client_secret={}",
            resource_server.client_id, resource_server.client_secret
        ),
    );
    assert_eq!(by_body.status(), 200);
    assert_eq!(by_body.json::<Value>().unwrap()["active"], true);
}

fn bad_introspection_requests_get_clear_errors(app: TestApp) {
    let rs = app.create_resource_server("Edge API");
    let credentials = Some((rs.client_id.as_str(), rs.client_secret.as_str()));
    for body in ["", "token=", "token_type_hint=access_token"] {
        let response = app.post_form("/oauth2/introspect", credentials, body);
        assert_oauth_error(response, 400, "invalid_request");
    }
    let repeated = app.post_form("/oauth2/introspect", credentials, "token=a&token=b");
    assert!(assert_oauth_error(repeated, 400, "invalid_request").contains("repeated"));
    let huge = format!("token={}", "A".repeat(10 * 1024 * 1024));
    let response = app.post_form("/oauth2/introspect", credentials, &huge);
    assert_oauth_error(response, 413, "invalid_request");
    let as_json = app
        .client
        .post(app.url("/oauth2/introspect"))
        .basic_auth(&rs.client_id, Some(&rs.client_secret))
        .json(&json!({"token": "x"}))
        .send()
        .unwrap();
    assert_oauth_error(as_json, 400, "invalid_request");
    let hinted = app.post_form(
        "/oauth2/introspect",
        credentials,
        "token=nope&token_type_hint=something_unknown",
    );
    assert_eq!(hinted.json::<Value>().unwrap(), json!({"active": false}));
}

fn a_deleted_resource_server_is_refused_at_once(app: TestApp) {
    let site = app.create_site("Bag Shop");
    let token = app.primary_token(&site);
    let resource_server = app.create_resource_server("Short-lived API");
    assert_eq!(app.introspect(&resource_server, &token)["active"], true);
    tokenwarden::service::resource_servers::delete(
        &app.context,
        &crate::helpers::operator(),
        &resource_server.client_id,
        tokenwarden::clock::now(),
    )
    .unwrap();
    let response = app.post_form(
        "/oauth2/introspect",
        Some((&resource_server.client_id, &resource_server.client_secret)),
        &format!("token={token}"),
    );
    assert_oauth_error(response, 401, "invalid_client");
}

/// The CLI is another process writing to the same database while the server runs. On SQLite the
/// very next request sees its write (`PRAGMA data_version`); on PostgreSQL it arrives by NOTIFY, so
/// the bound is the listener's delay (milliseconds), checked here against 1 s.
fn disabling_a_site_deactivates_its_tokens_on_the_next_request(app: TestApp) {
    let site = app.create_site("Lamp Shop");
    let resource_server = app.create_resource_server("Lamp API");
    let token = app.primary_token(&site);
    wait_for_live_change_feed(&app);
    assert_eq!(app.introspect(&resource_server, &token)["active"], true);
    assert_eq!(app.introspect(&resource_server, &token)["active"], true);
    run_cli(&app, &["site", "disable", &site.site_key]);
    assert_eventually(&app, || {
        app.introspect(&resource_server, &token) == json!({"active": false})
    });
    run_cli(&app, &["site", "enable", &site.site_key]);
    assert_eventually(&app, || {
        app.introspect(&resource_server, &token)["active"] == true
    });
}

/// Runs the CLI against the app's database; returns its stdout.
fn run_cli(app: &TestApp, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["--database", &app.db.url])
        .args(args)
        .env("TOKENWARDEN_SECRET", test_secret())
        .output()
        .expect("run the CLI");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn resource_servers_are_managed_with_the_cli(app: TestApp) {
    let created: Value = serde_json::from_str(&run_cli(
        &app,
        &[
            "resource-server",
            "create",
            "--name",
            "Billing API",
            "--json",
        ],
    ))
    .expect("one JSON object");
    let keys = crate::helpers::ResourceServerKeys {
        client_id: created["client_id"].as_str().unwrap().to_string(),
        client_secret: created["client_secret"].as_str().unwrap().to_string(),
    };
    assert!(keys.client_id.starts_with("rs_") && keys.client_secret.starts_with("twr_"));
    let site = app.create_site("Billing Shop");
    let token = app.primary_token(&site);
    assert_eq!(app.introspect(&keys, &token)["active"], true);

    let listed: Value =
        serde_json::from_str(&run_cli(&app, &["resource-server", "list", "--json"])).unwrap();
    let servers = listed["resource_servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0]["name"], "Billing API");
    assert!(!listed.to_string().contains(&keys.client_secret));

    run_cli(&app, &["resource-server", "delete", &keys.client_id]);
    assert_eventually(&app, || {
        let response = app.post_form(
            "/oauth2/introspect",
            Some((&keys.client_id, &keys.client_secret)),
            &format!("token={token}"),
        );
        response.status() == 401
    });
}

fn last_used_at_is_written_in_batches(app: TestApp) {
    let site = app.create_site("Clock Shop");
    let resource_server = app.create_resource_server("Clock API");
    let token = app.primary_token(&site);
    let used = "SELECT COUNT(*) AS n FROM tokens WHERE last_used_at IS NOT NULL";
    assert_eq!(app.db.count(used), 0, "issuing a token is not a use");
    for _ in 0..5 {
        app.introspect(&resource_server, &token);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.db.count(used) == 0 {
        assert!(Instant::now() < deadline, "last_used_at was never written");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The flush writes a whole batch per statement (`Store::record_token_use`): a time never moves
/// backwards, a use from before the value was generated is not its use, a token listed twice keeps
/// its latest time, and a batch longer than one statement is written whole.
fn usage_batches_keep_the_latest_time_per_token(app: TestApp) {
    let at = |day: i64| {
        chrono::DateTime::from_timestamp(4_102_444_800 + day * 86_400, 0)
            .expect("a time in 2100")
            .naive_utc()
    };
    let mut ids = Vec::new();
    for name in ["Batch One", "Batch Two", "Batch Three"] {
        let site = app.create_site(name);
        app.primary_token(&site);
        ids.push(
            app.db
                .count("SELECT CAST(MAX(id) AS BIGINT) AS n FROM tokens"),
        );
    }
    let used_on = |id: i64, day: &str| {
        app.db.count(&format!(
            "SELECT COUNT(*) AS n FROM tokens WHERE id = {id} AND last_used_at = '{day} 00:00:00'"
        ))
    };
    let store = &app.context.store;
    let before_generation = chrono::DateTime::from_timestamp(0, 0)
        .expect("the epoch")
        .naive_utc();
    store
        .record_token_use(&[
            (ids[0], at(2)),
            (ids[1], before_generation),
            (ids[2], at(5)),
            (ids[2], at(1)),
        ])
        .expect("flush");
    assert_eq!(used_on(ids[0], "2100-01-03"), 1);
    assert_eq!(used_on(ids[2], "2100-01-06"), 1, "the latest of two uses");
    assert_eq!(
        app.db.count(&format!(
            "SELECT COUNT(*) AS n FROM tokens WHERE id = {} AND last_used_at IS NULL",
            ids[1]
        )),
        1,
        "a use from before the value was generated"
    );
    store.record_token_use(&[(ids[0], at(1))]).expect("flush");
    assert_eq!(used_on(ids[0], "2100-01-03"), 1, "moved backwards");
    // Unknown ids first, so the real uses fall in the batch's third statement.
    let mut long_batch: Vec<_> = (0..1_200).map(|n| (1_000_000_000 + n, at(9))).collect();
    long_batch.extend([(ids[0], at(3)), (ids[1], at(4))]);
    store.record_token_use(&long_batch).expect("flush");
    assert_eq!(used_on(ids[0], "2100-01-04"), 1);
    assert_eq!(used_on(ids[1], "2100-01-05"), 1);
}

/// A flush of `last_used_at` changes no answer, so it must not empty the cache: on SQLite it is
/// committed without moving the generation when it is the only commit (`ChangeFeed`), on
/// PostgreSQL it sends no notification. The test app flushes every 200 ms.
fn usage_flushes_leave_the_cache_warm(app: TestApp) {
    wait_for_live_change_feed(&app);
    let site = app.create_site("Warm Shop");
    let resource_server = app.create_resource_server("Warm API");
    let token = app.primary_token(&site);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(app.introspect(&resource_server, &token)["active"], true);
    let (_, misses_when_warm) = app.context.introspection.cache_counts();
    let used = "SELECT COUNT(*) AS n FROM tokens WHERE last_used_at IS NOT NULL";
    // Each round records a later use, which the next flush writes.
    for _ in 0..3 {
        assert_eq!(app.introspect(&resource_server, &token)["active"], true);
        std::thread::sleep(Duration::from_millis(450));
    }
    assert_eq!(app.introspect(&resource_server, &token)["active"], true);
    assert_eq!(app.db.count(used), 1, "the flushes wrote");
    let (hits, misses) = app.context.introspection.cache_counts();
    assert_eq!(
        misses, misses_when_warm,
        "a flush emptied the cache ({hits} hits)"
    );
}

/// Issue 3: "Introspection never writes synchronously to the database." With an hour-long flush
/// interval nothing is written while the node runs; a graceful stop writes the batch.
fn introspection_does_not_write_and_shutdown_flushes_usage(app: TestApp) {
    let slow_flushing = TestNode::spawn(&app.db, |config| {
        config.usage_flush_interval = Duration::from_secs(3600);
    });
    let site = app.create_site("Quiet Shop");
    let resource_server = app.create_resource_server("Quiet API");
    let token = app.primary_token(&site);
    for _ in 0..3 {
        assert_eq!(
            slow_flushing.introspect(&resource_server, &token)["active"],
            true
        );
    }
    let used = "SELECT COUNT(*) AS n FROM tokens WHERE last_used_at IS NOT NULL";
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        app.db.count(used),
        0,
        "introspection wrote on the request path"
    );
    drop(slow_flushing);
    assert_eq!(
        app.db.count(used),
        1,
        "the stopping node did not flush its usage batch"
    );
}

fn exactness_holds_with_the_cache_switched_off(app: TestApp) {
    let uncached = TestNode::spawn(&app.db, |config| config.introspection_cache = false);
    let site = app.create_site("Plain Shop");
    let resource_server = app.create_resource_server("Plain API");
    let token = uncached.primary_token(&site);
    assert_eq!(
        uncached.introspect(&resource_server, &token)["active"],
        true
    );
    assert_eq!(app.invalidate(&site, &token).status(), 200);
    assert_eq!(
        uncached.introspect(&resource_server, &token),
        json!({"active": false})
    );
    let metrics = uncached
        .client
        .get(uncached.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("tokenwarden_introspection_cache_hits_total 0"),
        "{metrics}"
    );
}

/// Node B (a separate process) caches a token as active; node A invalidates it; B must say
/// inactive to the first request after the invalidation's answer.
fn another_process_sees_an_invalidation_once_it_is_answered(app: TestApp) {
    let node_b = ServerProcess::start(&app.db.url, &[]);
    let site = app.create_site("Cluster Shop");
    let resource_server = app.create_resource_server("Cluster API");
    let token = app.primary_token(&site);
    let ask_b = || -> Value {
        let response = app
            .client
            .post(format!("{}/oauth2/introspect", node_b.base_url))
            .basic_auth(
                &resource_server.client_id,
                Some(&resource_server.client_secret),
            )
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().unwrap()
    };
    // Until B answers from its cache, this test would prove nothing about cache exactness.
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache_hits(&app, &node_b.base_url) == 0 {
        assert!(
            Instant::now() < deadline,
            "node B never answered from its cache"
        );
        assert_eq!(ask_b()["active"], true);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(app.invalidate(&site, &token).status(), 200);
    assert_eq!(
        ask_b()["active"],
        false,
        "node B after the invalidation's answer"
    );
}

fn cache_hits(app: &TestApp, base_url: &str) -> u64 {
    let metrics = app
        .client
        .get(format!("{base_url}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("tokenwarden_introspection_cache_hits_total "))
        .and_then(|value| value.trim().parse().ok())
        .expect("the cache hit counter is exported")
}
