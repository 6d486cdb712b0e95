//! Exactness under writes, across nodes: once a change's answer has been sent, no node answers from
//! a cache as if it had not happened; a node that cannot hear changes or has lost its lease does
//! not answer from its cache at all; and a write invalidates only the answers it touches.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use reqwest::blocking::Client;
use serde_json::Value;

use crate::helpers::{
    form_request, wait_for_live_change_feed, ResourceServerKeys, ServerProcess, SiteKeys, TestApp,
    TestDatabase, TestNode,
};

crate::on_both_backends!(
    no_node_answers_an_invalidated_token_active_after_the_invalidation_answered,
    a_cli_change_holds_on_every_node_when_the_command_returns,
    a_write_invalidates_only_the_answers_it_touches,
);

/// Rounds of the race below; each ends with at least [`CHECKS_AFTER`] checks per watching node
/// sent after the invalidation's answer came back.
const ROUNDS: usize = 250;
const CHECKS_AFTER: usize = 15;

/// One node invalidates a site's primary token while the two others introspect it in tight
/// loops; any `"active": true` to a check sent after the invalidation's 200 came back fails. The
/// invalidating node changes each round, so every node is both writer and watcher; the tokens
/// were answered from each watcher's cache before the round (their first check fills it).
fn no_node_answers_an_invalidated_token_active_after_the_invalidation_answered(app: TestApp) {
    let b = ServerProcess::start(&app.db.url, &[]);
    let c = ServerProcess::start(&app.db.url, &[]);
    let nodes = [app.base_url.clone(), b.base_url.clone(), c.base_url.clone()];
    let site = app.create_site("Raced Store");
    let api = app.create_resource_server("Raced API");
    let client = Client::new();
    let mut checked_after = 0;
    let mut stale = Vec::new();
    for round in 0..ROUNDS {
        let writer = &nodes[round % 3];
        let watchers: Vec<&String> = nodes.iter().filter(|node| *node != writer).collect();
        let token = token_from(&client, writer, &site);
        for watcher in &watchers {
            assert_eq!(
                introspect_at(&client, watcher, &api, &token)["active"],
                true
            );
        }
        let acknowledged = Mutex::new(None::<Instant>);
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let checks: Vec<_> = watchers
                .iter()
                .map(|watcher| {
                    let (client, acknowledged, done, api, token) =
                        (&client, &acknowledged, &done, &api, &token);
                    scope.spawn(move || {
                        let mut answers = Vec::new();
                        while !done.load(Ordering::Acquire) {
                            let sent = Instant::now();
                            let active =
                                introspect_at(client, watcher, api, token)["active"] == true;
                            answers.push((sent, active));
                            let after = acknowledged.lock().unwrap().map_or(0, |at| {
                                answers.iter().filter(|(sent, _)| *sent > at).count()
                            });
                            if after >= CHECKS_AFTER {
                                break;
                            }
                        }
                        answers
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(2));
            let response = invalidate_at(&client, writer, &site, &token);
            assert_eq!(response.status(), 200);
            let at = Instant::now();
            *acknowledged.lock().unwrap() = Some(at);
            let deadline = at + Duration::from_secs(10);
            for (watcher, check) in watchers.iter().zip(checks) {
                let answers = check.join().expect("a watcher thread");
                for (sent, active) in answers.into_iter().filter(|(sent, _)| *sent > at) {
                    checked_after += 1;
                    if active {
                        stale.push(format!(
                            "round {round}: {watcher} answered active {:?} after {writer} \
                             acknowledged the invalidation",
                            sent - at
                        ));
                    }
                }
                assert!(Instant::now() < deadline, "the watchers never finished");
            }
            done.store(true, Ordering::Release);
        });
    }
    eprintln!(
        "{checked_after} checks sent after an acknowledged invalidation, {} stale",
        stale.len()
    );
    assert!(checked_after >= ROUNDS * 2 * CHECKS_AFTER);
    assert!(
        stale.is_empty(),
        "{} stale answers:\n{}",
        stale.len(),
        stale.join("\n")
    );
}

/// The CLI is a writer too: `site invalidate-primary` returns only once no server's cache can
/// still answer the token active, on any node.
fn a_cli_change_holds_on_every_node_when_the_command_returns(app: TestApp) {
    let b = ServerProcess::start(&app.db.url, &[]);
    let site = app.create_site("Braked Store");
    let api = app.create_resource_server("Braked API");
    let client = Client::new();
    for _ in 0..10 {
        let token = app.primary_token(&site);
        for node in [&app.base_url, &b.base_url] {
            for _ in 0..3 {
                assert_eq!(introspect_at(&client, node, &api, &token)["active"], true);
            }
        }
        let output = crate::cli::tokenwarden(&app.db.url)
            .args(["site", "invalidate-primary", &site.site_key])
            .output()
            .expect("run the CLI");
        assert!(output.status.success(), "{output:?}");
        for node in [&app.base_url, &b.base_url] {
            assert_eq!(
                introspect_at(&client, node, &api, &token)["active"],
                false,
                "{node} after the CLI returned"
            );
        }
    }
}

/// Writes to other sites (a mint, an invalidation, a new non-primary token, a new site, a new
/// resource server) leave the answers about this site's token in the cache; a write to the token
/// itself does not.
fn a_write_invalidates_only_the_answers_it_touches(app: TestApp) {
    let hot = app.create_site("Hot Store");
    let busy = app.create_site("Busy Store");
    let api = app.create_resource_server("Hot API");
    let admin = app.create_platform_admin("Busy Admin");
    let admin_token = app.admin_token(&admin);
    let token = app.primary_token(&hot);
    assert_eq!(app.introspect(&api, &token)["active"], true);
    let (_, misses_before) = app.context.introspection.cache_counts();
    let (hits_before, _) = app.context.introspection.cache_counts();
    let unrelated_writes: [&dyn Fn(); 5] = [
        &|| {
            let busy_token = app.primary_token(&busy);
            assert_eq!(app.invalidate(&busy, &busy_token).status(), 200);
        },
        &|| {
            app.primary_token(&busy);
        },
        &|| {
            app.create_site("Another Store");
        },
        &|| {
            app.create_resource_server("Another API");
        },
        &|| {
            let path = format!("/admin/v1/sites/{}/tokens", busy.site_key);
            let body = serde_json::json!({ "description": "Reports" });
            let response = app.admin_post(&admin_token, &path, Some(&body));
            assert_eq!(response.status(), 201);
        },
    ];
    for write in unrelated_writes {
        write();
        assert_eq!(app.introspect(&api, &token)["active"], true);
    }
    let (hits, misses) = app.context.introspection.cache_counts();
    assert_eq!(
        misses, misses_before,
        "an unrelated write emptied the cache"
    );
    assert_eq!(hits, hits_before + 5);

    assert_eq!(app.invalidate(&hot, &token).status(), 200);
    assert_eq!(app.introspect(&api, &token)["active"], false);
    assert_eq!(
        app.context.introspection.cache_counts().1,
        misses_before + 1
    );
}

/// A node whose listener stalls (here its lease renewal waits on a row lock, so it can apply no
/// notification) is waited for by a change on another node until its lease has run out, and no
/// longer: the change's answer comes after the stalled node stopped answering from its cache, and
/// before twice the lease. When the listener recovers, the node empties its caches before it
/// answers from them again.
#[test]
fn a_change_waits_for_a_stalled_node_until_its_lease_ran_out() {
    let Some(db) = TestDatabase::create(crate::helpers::Backend::Postgres) else {
        return;
    };
    let lease = Duration::from_millis(600);
    let app = TestApp::spawn_on(db);
    let stalled = TestNode::spawn(&app.db, |config| config.pool.cache_lease = lease);
    wait_for_live_change_feed(&app);
    wait_for_live_change_feed(&stalled);
    let site = app.create_site("Stalled Store");
    let api = app.create_resource_server("Stalled API");
    let token = app.primary_token(&site);
    assert_eq!(stalled.introspect(&api, &token)["active"], true);
    let (hits, _) = stalled.context.introspection.cache_counts();
    assert_eq!(stalled.introspect(&api, &token)["active"], true);
    assert_eq!(
        stalled.context.introspection.cache_counts().0,
        hits + 1,
        "cached"
    );

    let node_id = stalled.context.store.changes().node_id().to_string();
    let mut lock = PgConnection::establish(&app.db.url).expect("connect to PostgreSQL");
    lock.batch_execute(&format!(
        "BEGIN; SELECT 1 FROM cache_leases WHERE node_id = '{node_id}' FOR UPDATE"
    ))
    .expect("lock the node's lease");
    // Renewals run every quarter lease: the next one now waits on the lock, and the lease still
    // holds, so the stalled node would answer from its cache without hearing the change.
    std::thread::sleep(lease / 3);
    assert!(stalled.context.store.changes().is_live(), "too slow a test");
    let started = Instant::now();
    assert_eq!(app.invalidate(&site, &token).status(), 200);
    let waited = started.elapsed();
    assert!(
        !stalled.context.store.changes().is_live(),
        "the invalidation answered while the stalled node's lease still held ({waited:?})"
    );
    assert!(waited < lease * 2, "the invalidation waited {waited:?}");
    let (hits, misses) = stalled.context.introspection.cache_counts();
    assert_eq!(stalled.introspect(&api, &token)["active"], false);
    assert_eq!(
        stalled.context.introspection.cache_counts(),
        (hits, misses),
        "no cache was consulted"
    );
    eprintln!("the invalidation waited {waited:?} for a stalled node (lease {lease:?})");

    lock.batch_execute("ROLLBACK").expect("release the lease");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !stalled.context.store.changes().is_live() {
        assert!(Instant::now() < deadline, "the lease was never renewed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(stalled.introspect(&api, &token)["active"], false);
    let renewed = app.primary_token(&site);
    assert_eq!(stalled.introspect(&api, &renewed)["active"], true);
}

/// A node killed without a goodbye (SIGKILL) leaves its lease behind: changes wait for it until
/// the lease has run out, and no longer.
#[test]
fn a_killed_node_delays_changes_by_at_most_its_lease() {
    let Some(db) = TestDatabase::create(crate::helpers::Backend::Postgres) else {
        return;
    };
    let app = TestApp::spawn_on(db);
    let mut killed = ServerProcess::start(&app.db.url, &["--cache-lease-ms", "400"]);
    let site = app.create_site("Killed Store");
    let api = app.create_resource_server("Killed API");
    let token = app.primary_token(&site);
    let client = Client::new();
    assert_eq!(
        introspect_at(&client, &killed.base_url, &api, &token)["active"],
        true
    );
    killed.kill();
    let started = Instant::now();
    assert_eq!(app.invalidate(&site, &token).status(), 200);
    let waited = started.elapsed();
    assert!(waited < Duration::from_millis(800), "waited {waited:?}");
    assert_eq!(app.introspect(&api, &token)["active"], false);
    eprintln!("an invalidation waited {waited:?} for a killed node (lease 400 ms)");
    let started = Instant::now();
    let renewed = app.primary_token(&site);
    assert_eq!(app.invalidate(&site, &renewed).status(), 200);
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "the dead node's lease still delays changes: {:?}",
        started.elapsed()
    );
}

/// A node whose change listener died (its backend terminated) answers nothing from its cache
/// until it has listened again; a change made meanwhile on another node holds there at once.
#[test]
fn a_node_with_a_dead_listener_never_answers_from_its_cache() {
    let Some(db) = TestDatabase::create(crate::helpers::Backend::Postgres) else {
        return;
    };
    let app = TestApp::spawn_on(db);
    let other = TestNode::spawn(&app.db, |_| {});
    wait_for_live_change_feed(&app);
    wait_for_live_change_feed(&other);
    let site = app.create_site("Deaf Store");
    let api = app.create_resource_server("Deaf API");
    for _ in 0..5 {
        let token = app.primary_token(&site);
        assert_eq!(other.introspect(&api, &token)["active"], true);
        assert_eq!(other.introspect(&api, &token)["active"], true);
        let node_id = other.context.store.changes().node_id().to_string();
        let mut admin = PgConnection::establish(&app.db.url).expect("connect to PostgreSQL");
        admin
            .batch_execute(&format!(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
                 WHERE application_name = 'tokenwarden-listener {node_id}'"
            ))
            .expect("terminate the listener");
        // Noticed by the listener itself, long before its lease (0.9 s) would run out.
        let terminated = Instant::now();
        while other.context.store.changes().is_live() {
            assert!(
                terminated.elapsed() < Duration::from_millis(300),
                "a dead listener left the caches answering"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(app.invalidate(&site, &token).status(), 200);
        assert_eq!(other.introspect(&api, &token)["active"], false);
        wait_for_live_change_feed(&other);
    }
}

fn token_from(client: &Client, node: &str, site: &SiteKeys) -> String {
    let response = form_request(
        client,
        format!("{node}/oauth2/token"),
        None,
        &format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            site.site_key, site.auth_key
        ),
    )
    .send()
    .expect("the token request reaches the server");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().expect("a JSON body");
    body["access_token"].as_str().expect("a token").to_string()
}

fn invalidate_at(
    client: &Client,
    node: &str,
    site: &SiteKeys,
    token: &str,
) -> reqwest::blocking::Response {
    form_request(
        client,
        format!("{node}/oauth2/invalidate_token"),
        Some((&site.site_key, &site.auth_key)),
        &format!("access_token={token}"),
    )
    .send()
    .expect("the invalidation reaches the server")
}

fn introspect_at(client: &Client, node: &str, api: &ResourceServerKeys, token: &str) -> Value {
    let response = form_request(
        client,
        format!("{node}/oauth2/introspect"),
        Some((&api.client_id, &api.client_secret)),
        &format!("token={token}"),
    )
    .send()
    .expect("the introspection request reaches the server");
    assert_eq!(response.status(), 200);
    response.json().expect("a JSON introspection answer")
}

/// A lease as long as the database timeout (or longer), or below 50 ms, is refused at start with
/// exit code 2 and a message naming the flags; the default pair is accepted.
#[test]
fn a_cache_lease_not_shorter_than_the_database_timeout_is_refused() {
    let db = TestDatabase::create(crate::helpers::Backend::Sqlite).expect("SQLite");
    let run = |args: &[&str]| {
        let output = crate::cli::tokenwarden(&db.url)
            .args(args)
            .args(["site", "list"])
            .output()
            .expect("run the CLI");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["--cache-lease-ms", "5000"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--cache-lease-ms (5000) must be shorter than --db-timeout-ms (5000)"),
        "{stderr}"
    );
    let (code, stderr) = run(&["--cache-lease-ms", "900", "--db-timeout-ms", "800"]);
    assert_eq!(code, Some(2), "{stderr}");
    let (code, stderr) = run(&["--cache-lease-ms", "10"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--cache-lease-ms"), "{stderr}");
    let (code, stderr) = run(&[]);
    assert_eq!(code, Some(0), "{stderr}");
}
