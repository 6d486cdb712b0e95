//! How a node connects to PostgreSQL: libpq's keyword form works as the URI does, a value that is
//! neither is refused (never taken for an SQLite file name), every database call is bounded by
//! `--db-timeout-ms` (a statement stuck behind a lock is answered 503 in time), and when the
//! change listener loses its connection every pooled connection opened before is replaced.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use serde_json::json;

use crate::helpers::{
    assert_admin_error, wait_for_live_change_feed, Backend, ServerProcess, TestApp, TestDatabase,
};

/// `postgres://user@host:port/db` as `host=… port=… user=… dbname=…`.
fn keyword_form(url: &str) -> String {
    let url = reqwest::Url::parse(url).expect("the test database URL parses");
    format!(
        "host={} port={} user={} dbname='{}' target_session_attrs=read-write",
        url.host_str().expect("a host"),
        url.port().unwrap_or(5432),
        url.username(),
        url.path().trim_start_matches('/')
    )
}

#[test]
fn a_libpq_keyword_string_reaches_the_database_and_a_misspelt_one_is_refused() {
    let Some(db) = TestDatabase::create(Backend::Postgres) else {
        return;
    };
    let keywords = keyword_form(&db.url);
    let site = crate::cli::create_site(&keywords, "Keyword Shop");
    let server = ServerProcess::start(&keywords, &[]);
    let response = crate::helpers::form_request(
        &reqwest::blocking::Client::new(),
        format!("{}/oauth2/token", server.base_url),
        Some((&site.site_key, &site.auth_key)),
        "grant_type=client_credentials",
    )
    .send()
    .expect("the token request reaches the server");
    assert_eq!(response.status(), 200);
    assert_eq!(
        db.count("SELECT COUNT(*) AS n FROM sites WHERE name = 'Keyword Shop'"),
        1
    );

    let workdir = tempfile::tempdir().expect("a working directory");
    for (misspelt, named) in [
        (keywords.replace("dbname=", "dbnme="), "\"dbnme\""),
        (
            format!("{keywords} password='s3cr3t-never-shown"),
            "\"password\"",
        ),
    ] {
        let refused = crate::cli::run(
            crate::cli::tokenwarden(&misspelt)
                .current_dir(workdir.path())
                .args(["site", "list"]),
        );
        assert_eq!(refused.status.code(), Some(1), "{refused:?}");
        assert!(refused.stderr.contains(named), "{}", refused.stderr);
        assert!(
            !refused.stderr.contains("s3cr3t-never-shown"),
            "no value is echoed: {}",
            refused.stderr
        );
        let created: Vec<_> = std::fs::read_dir(workdir.path()).unwrap().collect();
        assert!(created.is_empty(), "no file was created: {created:?}");
    }
}

/// A write blocked by a row lock that another client holds is cut off by the statement timeout
/// (here 1 s) and answered 503 `temporarily_unavailable`, instead of hanging until the lock goes.
#[test]
fn a_statement_stuck_behind_a_lock_is_answered_503_within_the_db_timeout() {
    let Some(db) = TestDatabase::create(Backend::Postgres) else {
        return;
    };
    let app = TestApp::spawn_with(db, |config| {
        config.pool.connection_timeout = Duration::from_millis(1_000);
        config.pool.cache_lease = Duration::from_millis(400);
    });
    let site = app.create_site("Locked Shop");
    let admin = app.create_platform_admin("Patient Admin");
    let token = app.admin_token(&admin);
    let path = format!("/admin/v1/sites/{}", site.site_key);

    let mut locker = PgConnection::establish(&app.db.url).expect("connect to PostgreSQL");
    locker
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM sites WHERE site_key = '{}' FOR UPDATE",
            site.site_key
        ))
        .expect("lock the site's row");
    let started = Instant::now();
    let stuck = app.admin_patch(&token, &path, &json!({ "name": "Renamed Shop" }));
    let waited = started.elapsed();
    assert_admin_error(stuck, 503, "temporarily_unavailable", "a locked row");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(2_500),
        "answered after {waited:?}"
    );
    locker.batch_execute("ROLLBACK").expect("release the lock");

    let renamed = app.admin_patch(&token, &path, &json!({ "name": "Renamed Shop" }));
    assert_eq!(renamed.status(), 200);
}

/// The listener's connection is terminated: the node replaces every pooled connection it opened
/// before, so after a failover none keeps reaching a primary that was cut off but not stopped.
#[test]
fn a_lost_listener_replaces_every_pooled_connection_opened_before() {
    let Some(db) = TestDatabase::create(Backend::Postgres) else {
        return;
    };
    let app = TestApp::spawn_on(db);
    wait_for_live_change_feed(&app);
    let site = app.create_site("Pooled Shop");
    app.primary_token(&site);
    app.db.execute(
        "CREATE TABLE old_pool AS SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'tokenwarden'",
    );
    let old = "SELECT COUNT(*) AS n FROM pg_stat_activity JOIN old_pool USING (pid)";
    assert!(app.db.count(old) > 0, "the pool holds connections");

    let node_id = app.context.store.changes().node_id().to_string();
    app.db.execute(&format!(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
         WHERE application_name = 'tokenwarden-listener {node_id}'"
    ));
    let terminated = Instant::now();
    while app.context.store.changes().is_live() {
        assert!(terminated.elapsed() < Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(2));
    }
    wait_for_live_change_feed(&app);
    app.primary_token(&site);
    let deadline = Instant::now() + Duration::from_secs(2);
    while app.db.count(old) > 0 {
        assert!(
            Instant::now() < deadline,
            "{} connections opened before the loss are still open",
            app.db.count(old)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        app.db.count(
            "SELECT COUNT(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'tokenwarden'"
        ) > 0,
        "new connections took their place"
    );
}

/// libpq skips a host whose name does not resolve, so a typo in a multi-host URL would only show
/// at the failover that needs that host: the start names it, and works through the others.
#[test]
fn a_multi_host_url_with_a_host_that_does_not_resolve_is_named_at_start() {
    let Some(db) = TestDatabase::create(Backend::Postgres) else {
        return;
    };
    let url = reqwest::Url::parse(&db.url).expect("the test database URL parses");
    let multi_host = format!(
        "postgres://{}@nosuchhost.invalid:5432,{}:{}{}?target_session_attrs=read-write",
        url.username(),
        url.host_str().expect("a host"),
        url.port().unwrap_or(5432),
        url.path()
    );
    let listed = crate::cli::succeed(crate::cli::tokenwarden(&multi_host).args(["site", "list"]));
    assert!(
        listed
            .stderr
            .contains("database host nosuchhost.invalid does not resolve"),
        "{}",
        listed.stderr
    );
    assert!(listed.stdout.starts_with("SITE KEY"), "{}", listed.stdout);
}
