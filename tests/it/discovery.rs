//! RFC 8414 metadata, health checks and Prometheus metrics.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::Connection;
use serde_json::Value;

use crate::helpers::{Backend, TestApp, TestDatabase, TestNode};

crate::on_both_backends!(
    metadata_describes_the_endpoints_under_the_issuer,
    health_checks_answer_json,
    metrics_count_requests_and_token_events,
);

fn metadata_describes_the_endpoints_under_the_issuer(app: TestApp) {
    let metadata = app.get_json("/.well-known/oauth-authorization-server");
    let issuer = metadata["issuer"].as_str().unwrap();
    assert_eq!(issuer, app.base_url);
    assert_eq!(metadata["token_endpoint"], format!("{issuer}/oauth2/token"));
    assert_eq!(
        metadata["revocation_endpoint"],
        format!("{issuer}/oauth2/revoke")
    );
    assert_eq!(
        metadata["introspection_endpoint"],
        format!("{issuer}/oauth2/introspect")
    );
    assert_eq!(
        metadata["grant_types_supported"],
        serde_json::json!(["client_credentials"])
    );
    for field in [
        "token_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
    ] {
        assert_eq!(
            metadata[field],
            serde_json::json!(["client_secret_basic", "client_secret_post"]),
            "{field}"
        );
    }

    let configured = TestNode::spawn(&app.db, |config| {
        config.issuer = Some("https://auth.example.com/".into());
    });
    let metadata: Value = configured
        .client
        .get(configured.url("/.well-known/oauth-authorization-server"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(metadata["issuer"], "https://auth.example.com");
    assert_eq!(
        metadata["token_endpoint"],
        "https://auth.example.com/oauth2/token"
    );
}

fn health_checks_answer_json(app: TestApp) {
    for path in ["/healthz", "/readyz"] {
        let response = app.client.get(app.url(path)).send().unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.json::<Value>().unwrap()["status"], "ok");
    }
}

fn metrics_count_requests_and_token_events(app: TestApp) {
    let site = app.create_site("Metered Shop");
    let token = app.primary_token(&site);
    app.primary_token(&site);
    assert_eq!(app.invalidate(&site, &token).status(), 200);
    let rs = app.create_resource_server("Metered API");
    app.introspect(&rs, &app.primary_token(&site));
    app.client
        .get(app.url("/no/such/path?secret=x"))
        .send()
        .unwrap();
    let wrong_method = app.client.get(app.url("/oauth2/token")).send().unwrap();
    assert_eq!(wrong_method.status(), 405);
    let response = app.client.get(app.url("/metrics")).send().unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().unwrap();
    for expected in [
        r#"tokenwarden_http_requests_total{endpoint="/oauth2/token",status="200"} 3"#,
        r#"tokenwarden_http_requests_total{endpoint="/oauth2/invalidate_token",status="200"} 1"#,
        r#"tokenwarden_http_requests_total{endpoint="unmatched",status="404"} 1"#,
        r#"tokenwarden_http_requests_total{endpoint="/oauth2/token",status="405"} 1"#,
        r#"tokenwarden_http_request_duration_seconds_count{endpoint="/oauth2/introspect",status="200"} 1"#,
        r#"tokenwarden_http_request_duration_seconds_bucket{le="#,
        "tokenwarden_tokens_minted_total 2",
        "tokenwarden_tokens_invalidated_total 1",
        "tokenwarden_introspection_cache_misses_total",
        "tokenwarden_db_pool_connections",
        "tokenwarden_db_pool_idle_connections",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    assert!(!text.contains("secret=x") && !text.contains(&token));
    // SQLite's heap is reported beside the pool (the soak separates it from the rest of the
    // resident set); PostgreSQL keeps its memory in its own processes, so there is no such line.
    let sqlite_bytes = text
        .lines()
        .find_map(|line| line.strip_prefix("tokenwarden_sqlite_memory_bytes "))
        .map(|value| value.parse::<i64>().unwrap());
    match app.db.backend {
        Backend::Sqlite => assert!(sqlite_bytes.is_some_and(|bytes| bytes > 0), "{text}"),
        Backend::Postgres => assert_eq!(sqlite_bytes, None, "{text}"),
    }
}

/// `/readyz` reports a database that refuses connections as 503 JSON, promptly, and recovers by
/// itself when the database comes back.
#[test]
fn readiness_follows_the_database() {
    let Some(db) = TestDatabase::create(Backend::Postgres) else {
        return;
    };
    // Two connections: opening ten TLS connections within the short timeout is not the point.
    let node = TestNode::spawn(&db, |config| {
        config.pool.max_connections = 2;
        config.pool.connection_timeout = Duration::from_millis(500);
    });
    let name = db
        .url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let admin_url = std::env::var("TOKENWARDEN_TEST_POSTGRES_URL").unwrap();
    let mut admin = diesel::PgConnection::establish(&admin_url).unwrap();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
        ))
        .unwrap();
    let started = std::time::Instant::now();
    let response = node.client.get(node.url("/readyz")).send().unwrap();
    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    admin
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .unwrap();
    let response = node.client.get(node.url("/readyz")).send().unwrap();
    assert_eq!(response.status(), 200);
}

/// The PostgreSQL pool does not ping every connection it hands out (`store::PgManager`). When
/// the database drops every connection (a restart), the request that meets the first dead one
/// fails with 503; that loss makes the pool check each other connection once before handing it
/// out, so no further request fails.
#[test]
fn a_database_dropping_every_connection_costs_at_most_one_failed_request() {
    let Some(db) = TestDatabase::create(Backend::Postgres) else {
        return;
    };
    let node = TestNode::spawn(&db, |config| {
        config.pool.connection_timeout = Duration::from_secs(3);
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while node.context.store.pool_state().idle_connections < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "the pool never filled"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let name = db
        .url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    let admin_url = std::env::var("TOKENWARDEN_TEST_POSTGRES_URL").unwrap();
    let mut admin = diesel::PgConnection::establish(&admin_url).unwrap();
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let backends = format!("SELECT pid FROM pg_stat_activity WHERE datname = '{name}'");
    admin
        .batch_execute(&format!("CREATE TEMPORARY TABLE dropped AS {backends}"))
        .unwrap();
    let mut count = |sql: &str| -> i64 {
        diesel::RunQueryDsl::get_result::<Count>(diesel::sql_query(sql), &mut admin)
            .unwrap()
            .n
    };
    assert!(count("SELECT COUNT(*) AS n FROM dropped") >= 10);
    count("SELECT COUNT(pg_terminate_backend(pid)) AS n FROM dropped");
    // pg_terminate_backend only signals; wait until those backends are gone.
    while count("SELECT COUNT(*) AS n FROM pg_stat_activity WHERE pid IN (SELECT pid FROM dropped)")
        > 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the backends did not exit"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let statuses: Vec<u16> = (0..20)
        .map(|_| {
            node.client
                .get(node.url("/readyz"))
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
        .collect();
    eprintln!("after the database dropped every connection: {statuses:?}");
    let failed = statuses.iter().filter(|status| **status != 200).count();
    assert!(failed <= 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|status| [200, 503].contains(status)),
        "{statuses:?}"
    );
}
