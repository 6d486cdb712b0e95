//! Hardening: brute-force throttling of client authentication on every endpoint that
//! authenticates a client, and the bounds on connections (slow clients, idle connections,
//! connection count, header size). Over real HTTP; throttling on both backends.

use std::collections::HashMap;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::{LazyLock, Mutex, Once};
use std::time::{Duration, Instant};

use diesel::connection::{set_default_instrumentation, Instrumentation, InstrumentationEvent};
use reqwest::blocking::{Client, Response};
use tokenwarden::config::{Config, ConnectionLimits};
use tokenwarden::domain::client_address::{parse_trusted_proxy, ForwardedHeaders, TrustedProxies};
use tokenwarden::domain::throttle::ThrottleLimits;

use crate::helpers::{assert_oauth_error, Backend, ResourceServerKeys, TestApp, TestDatabase};

crate::per_backend!(
    a_third_party_cannot_lock_a_site_out_of_its_token_or_its_revocation,
    a_locked_pair_gets_429_even_with_the_right_key_and_other_clients_do_not,
    a_client_under_attack_from_many_addresses_raises_one_alarm_and_no_lock,
    a_client_that_authenticated_from_an_address_is_exempt_from_its_lock,
    admin_sign_in_is_throttled,
    invalidate_and_revoke_failures_lock_the_client_id_on_every_endpoint,
    introspection_is_throttled_per_resource_server,
    an_address_over_its_limit_is_refused_for_every_client_and_forwarded_for_is_not_trusted,
    throttled_requests_make_no_database_query,
    a_flood_of_random_tokens_reads_no_table,
    two_nodes_allow_the_limit_once_not_once_each,
);

/// A lock short enough to wait out in a test.
const WINDOW: Duration = Duration::from_secs(3);

/// A server whose throttle locks a client id after `client_failures` and an address after
/// `address_failures` failed authentications, for [`WINDOW`].
fn spawn(backend: Backend, client_failures: u32, address_failures: u32) -> Option<TestApp> {
    spawn_adjusted(backend, client_failures, address_failures, |_| {})
}

fn spawn_adjusted(
    backend: Backend,
    client_failures: u32,
    address_failures: u32,
    adjust: impl FnOnce(&mut Config),
) -> Option<TestApp> {
    let db = TestDatabase::create(backend)?;
    Some(TestApp::spawn_with(db, |config| {
        config.throttle = ThrottleLimits {
            client_failures,
            address_failures,
            window: WINDOW,
            ..ThrottleLimits::default()
        };
        adjust(config);
    }))
}

fn token_request(app: &TestApp, client_id: &str, secret: &str) -> Response {
    app.post_form(
        "/oauth2/token",
        Some((client_id, secret)),
        "grant_type=client_credentials",
    )
}

/// Checks a throttling answer: 429, `Retry-After` in whole seconds within the window, the RFC
/// 6749 5.2 body with `temporarily_unavailable`, no Basic challenge.
fn assert_throttled(response: Response) {
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!(
        (1..=WINDOW.as_secs() + 1).contains(&retry_after),
        "{retry_after}"
    );
    assert!(response.headers().get("www-authenticate").is_none());
    assert_oauth_error(response, 429, "temporarily_unavailable");
}

fn wait_out_the_window() {
    std::thread::sleep(WINDOW + Duration::from_millis(100));
}

fn wrong(secret: &str) -> String {
    // Same format, other characters: a plausible guess that fails.
    let mut guess: Vec<char> = secret.chars().collect();
    let last = guess.len() - 1;
    guess[last] = if guess[last] == 'A' { 'B' } else { 'A' };
    guess.into_iter().collect()
}

/// A client on another loopback address (the whole 127.0.0.0/8 reaches the server on 127.0.0.1),
/// so the server sees a different source address.
fn client_from(address: &str) -> Client {
    Client::builder()
        .local_address(address.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

fn post_from(
    client: &Client,
    app: &TestApp,
    path: &str,
    basic: (&str, &str),
    body: &str,
) -> Response {
    crate::helpers::form_request(client, app.url(path), Some(basic), body)
        .send()
        .unwrap()
}

/// The attack of a third party who knows a site key: ten wrong auth keys from its address. The
/// site, from its own address, still gets its token, invalidates the stolen one and revokes; the
/// stolen token is refused from then on, and only the attacker's address stays locked.
fn a_third_party_cannot_lock_a_site_out_of_its_token_or_its_revocation(backend: Backend) {
    let Some(app) = spawn_adjusted(backend, 10, 50, |config| {
        config.throttle.window = Duration::from_secs(60);
    }) else {
        return;
    };
    let site = app.create_site("Attacked Store");
    let api = app.create_resource_server("Checking API");
    let stolen = app.primary_token(&site);
    let attacker = client_from("127.0.0.2");
    let guess = wrong(&site.auth_key);
    for attempt in 0..12 {
        let response = post_from(
            &attacker,
            &app,
            "/oauth2/invalidate_token",
            (&site.site_key, &guess),
            &format!("access_token={stolen}"),
        );
        let expected = if attempt < 10 { 401 } else { 429 };
        assert_eq!(response.status(), expected, "attempt {attempt}");
    }
    assert_throttled_for(post_from(
        &attacker,
        &app,
        "/oauth2/token",
        (&site.site_key, &site.auth_key),
        "grant_type=client_credentials",
    ));

    let owner = client_from("127.0.0.3");
    let token = post_from(
        &owner,
        &app,
        "/oauth2/token",
        (&site.site_key, &site.auth_key),
        "grant_type=client_credentials",
    );
    assert_eq!(token.status(), 200);
    let invalidated = post_from(
        &owner,
        &app,
        "/oauth2/invalidate_token",
        (&site.site_key, &site.auth_key),
        &format!("access_token={stolen}"),
    );
    assert_eq!(invalidated.status(), 200);
    let revoked = post_from(
        &owner,
        &app,
        "/oauth2/revoke",
        (&site.site_key, &site.auth_key),
        &format!("token={stolen}"),
    );
    assert_eq!(revoked.status(), 200);
    assert_eq!(app.introspect(&api, &stolen)["active"], false);
    assert_throttled_for(post_from(
        &attacker,
        &app,
        "/oauth2/revoke",
        (&site.site_key, &site.auth_key),
        &format!("token={stolen}"),
    ));
}

fn a_client_under_attack_from_many_addresses_raises_one_alarm_and_no_lock(backend: Backend) {
    let Some(app) = spawn_adjusted(backend, 3, 50, |config| {
        config.throttle.client_attack_alarm = 8;
        config.throttle.window = Duration::from_secs(60);
    }) else {
        return;
    };
    let site = app.create_site("Popular Target");
    for n in 0..4 {
        let attacker = client_from(&format!("127.0.1.{}", n + 1));
        for _ in 0..3 {
            assert_eq!(
                post_from(
                    &attacker,
                    &app,
                    "/oauth2/token",
                    (&site.site_key, &wrong(&site.auth_key)),
                    "grant_type=client_credentials",
                )
                .status(),
                401
            );
        }
    }
    assert!(app.primary_token(&site).starts_with("twp_"), "no lock");
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("tokenwarden_clients_under_attack_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tokenwarden_client_auth_failures_total{kind=\"site\"} 12"),
        "{metrics}"
    );
    let alarm = format!(
        "SELECT COUNT(*) AS n FROM audit_events WHERE action = 'client_under_attack' \
         AND target = '{}' AND detail LIKE '9 failed authentications from 3 addresses%'",
        site.site_key
    );
    wait_for(|| app.db.count(&alarm) == 1, "the alarm in the audit trail");
    // Each attacking address locked its own pair once, and nothing else was locked.
    let locks = format!(
        "SELECT COUNT(*) AS n FROM audit_events WHERE action = 'throttle_locked' \
         AND target = '{}' AND source_address LIKE '127.0.1.%'",
        site.site_key
    );
    wait_for(
        || app.db.count(&locks) == 4,
        "one throttle_locked event per pair",
    );
    assert_eq!(
        app.db
            .count("SELECT COUNT(*) AS n FROM audit_events WHERE action = 'throttle_locked'"),
        4
    );
}

fn a_client_that_authenticated_from_an_address_is_exempt_from_its_lock(backend: Backend) {
    let Some(app) = spawn(backend, 100, 4) else {
        return;
    };
    let partner = app.create_site("Partner Store");
    let stranger = app.create_site("Stranger Store");
    assert!(app.primary_token(&partner).starts_with("twp_"));
    for n in 0..4 {
        let random_id = format!("site_guess{n:0>15}");
        assert_oauth_error(
            token_request(&app, &random_id, "twk_guess"),
            401,
            "invalid_client",
        );
    }
    assert_throttled(token_request(&app, &stranger.site_key, &stranger.auth_key));
    assert!(app.primary_token(&partner).starts_with("twp_"));
}

/// Polls `condition` for up to five seconds (the background runner writes the audit trail).
fn wait_for(mut condition: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "never saw {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`assert_throttled`] for the longer windows of the tests above.
fn assert_throttled_for(response: Response) {
    assert!(response.headers().get("retry-after").is_some());
    assert_oauth_error(response, 429, "temporarily_unavailable");
}

fn a_locked_pair_gets_429_even_with_the_right_key_and_other_clients_do_not(backend: Backend) {
    let Some(app) = spawn(backend, 3, 50) else {
        return;
    };
    let victim = app.create_site("Guessed Store");
    let neighbour = app.create_site("Neighbour Store");
    for _ in 0..3 {
        assert_oauth_error(
            token_request(&app, &victim.site_key, &wrong(&victim.auth_key)),
            401,
            "invalid_client",
        );
    }
    assert_throttled(token_request(&app, &victim.site_key, &victim.auth_key));
    assert_throttled(token_request(
        &app,
        &victim.site_key,
        &wrong(&victim.auth_key),
    ));
    // Same address, another client id, under the address limit: unaffected.
    let token = app.primary_token(&neighbour);
    assert!(token.starts_with("twp_"));

    wait_out_the_window();
    assert!(app.primary_token(&victim).starts_with("twp_"));
}

fn admin_sign_in_is_throttled(backend: Backend) {
    let Some(app) = spawn(backend, 2, 50) else {
        return;
    };
    let admin = app.create_platform_admin("Guessed Admin");
    let other = app.create_platform_admin("Other Admin");
    for _ in 0..2 {
        assert_oauth_error(
            token_request(&app, &admin.client_id, &wrong(&admin.client_secret)),
            401,
            "invalid_client",
        );
    }
    assert_throttled(app.admin_token_request(&admin));
    app.admin_token(&other);
    wait_out_the_window();
    app.admin_token(&admin);
}

fn invalidate_and_revoke_failures_lock_the_client_id_on_every_endpoint(backend: Backend) {
    let Some(app) = spawn(backend, 2, 50) else {
        return;
    };
    let site = app.create_site("Invalidating Store");
    let token = app.primary_token(&site);
    let guess = wrong(&site.auth_key);
    assert_oauth_error(
        app.post_form(
            "/oauth2/invalidate_token",
            Some((&site.site_key, &guess)),
            &format!("access_token={token}"),
        ),
        401,
        "invalid_client",
    );
    assert_oauth_error(
        app.post_form(
            "/oauth2/revoke",
            Some((&site.site_key, &guess)),
            &format!("token={token}"),
        ),
        401,
        "invalid_client",
    );
    assert_throttled(app.invalidate(&site, &token));
    assert_throttled(app.post_form(
        "/oauth2/revoke",
        Some((&site.site_key, &site.auth_key)),
        &format!("token={token}"),
    ));
    assert_throttled(token_request(&app, &site.site_key, &site.auth_key));
    wait_out_the_window();
    assert_eq!(app.invalidate(&site, &token).status(), 200);
    assert_eq!(
        app.post_form(
            "/oauth2/revoke",
            Some((&site.site_key, &site.auth_key)),
            &format!("token={token}"),
        )
        .status(),
        200
    );
}

fn introspect(app: &TestApp, rs: &ResourceServerKeys, secret: &str, token: &str) -> Response {
    app.post_form(
        "/oauth2/introspect",
        Some((&rs.client_id, secret)),
        &format!("token={token}"),
    )
}

fn introspection_is_throttled_per_resource_server(backend: Backend) {
    let Some(app) = spawn(backend, 3, 50) else {
        return;
    };
    let site = app.create_site("Introspected Store");
    let token = app.primary_token(&site);
    let api = app.create_resource_server("Guessed API");
    let other_api = app.create_resource_server("Other API");
    for _ in 0..3 {
        assert_oauth_error(
            introspect(&app, &api, &wrong(&api.client_secret), &token),
            401,
            "invalid_client",
        );
    }
    assert_throttled(introspect(&app, &api, &api.client_secret, &token));
    assert_eq!(app.introspect(&other_api, &token)["active"], true);
    wait_out_the_window();
    assert_eq!(app.introspect(&api, &token)["active"], true);
}

fn an_address_over_its_limit_is_refused_for_every_client_and_forwarded_for_is_not_trusted(
    backend: Backend,
) {
    let Some(app) = spawn(backend, 100, 4) else {
        return;
    };
    let site = app.create_site("Innocent Store");
    for n in 0..4 {
        let random_id = format!("site_guess{n:0>15}");
        assert_oauth_error(
            token_request(&app, &random_id, "twk_guess"),
            401,
            "invalid_client",
        );
    }
    assert_throttled(token_request(&app, &site.site_key, &site.auth_key));
    let forwarded = crate::helpers::form_request(
        &app.client,
        app.url("/oauth2/token"),
        Some((&site.site_key, &site.auth_key)),
        "grant_type=client_credentials",
    )
    .header("X-Forwarded-For", "203.0.113.9")
    .header("Forwarded", "for=203.0.113.9")
    .send()
    .unwrap();
    assert_throttled(forwarded);
    wait_out_the_window();
    assert!(app.primary_token(&site).starts_with("twp_"));
}

/// Throttled requests are answered before any query: every query this test's database receives
/// is counted through diesel's instrumentation, with the caches off so that every request that
/// does get through reads the database.
/// Two nodes on one database, guessed at alternately, 20 guesses a second in all: the pair is
/// locked after about its limit of 10 failures for the deployment (each node may let through what
/// it sees between two exchanges of counts, every 200 ms here), not after 10 on each node.
fn two_nodes_allow_the_limit_once_not_once_each(backend: Backend) {
    let limits = |config: &mut Config| {
        config.throttle = ThrottleLimits {
            client_failures: 10,
            address_failures: 1_000,
            window: Duration::from_secs(60),
            ..ThrottleLimits::default()
        };
        config.throttle_share_interval = Duration::from_millis(200);
    };
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let app = TestApp::spawn_with(db, limits);
    let other = crate::helpers::TestNode::spawn(&app.db, limits);
    let site = app.create_site("Shared Store");
    let guess = wrong(&site.auth_key);
    let mut let_through = 0;
    for attempt in 0..40 {
        let node: &crate::helpers::TestNode = if attempt % 2 == 0 { &app } else { &other };
        let response = node.post_form(
            "/oauth2/token",
            Some((&site.site_key, &guess)),
            "grant_type=client_credentials",
        );
        match response.status().as_u16() {
            401 => let_through += 1,
            429 => {}
            other => panic!("attempt {attempt}: {other}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The limit, plus what each node may see in one interval (about 2 each at this pace), plus
    // slack for a late exchange; 20 would be the limit once per node.
    assert!(
        (10..=15).contains(&let_through),
        "{let_through} guesses were let through"
    );
    for node in [&*app, &other] {
        let right = node.post_form(
            "/oauth2/token",
            Some((&site.site_key, &site.auth_key)),
            "grant_type=client_credentials",
        );
        assert_throttled_for(right);
    }
}

fn throttled_requests_make_no_database_query(backend: Backend) {
    count_queries_per_database();
    let Some(app) = spawn_adjusted(backend, 2, 50, |config| {
        config.introspection_cache = false;
        // The audit trail's writes and the exchange of counts with other nodes are background
        // work, not per request.
        config.audit_flush_interval = Duration::from_secs(3600);
        config.throttle_share_interval = Duration::from_secs(3600);
    }) else {
        return;
    };
    let site = app.create_site("Counted Store");
    let api = app.create_resource_server("Counted API");
    let token = app.primary_token(&site);
    let guess = wrong(&site.auth_key);
    let before = queries_on(&app.db);
    assert_oauth_error(
        token_request(&app, &site.site_key, &guess),
        401,
        "invalid_client",
    );
    assert!(
        queries_on(&app.db) > before,
        "a request that is not throttled must show up in the count"
    );
    assert_oauth_error(
        token_request(&app, &site.site_key, &guess),
        401,
        "invalid_client",
    );
    for _ in 0..2 {
        assert_oauth_error(
            introspect(&app, &api, &wrong(&api.client_secret), &token),
            401,
            "invalid_client",
        );
    }
    let before = queries_on(&app.db);
    assert_throttled(token_request(&app, &site.site_key, &site.auth_key));
    assert_throttled(app.invalidate(&site, &token));
    assert_throttled(app.post_form(
        "/oauth2/revoke",
        Some((&site.site_key, &site.auth_key)),
        &format!("token={token}"),
    ));
    assert_throttled(introspect(&app, &api, &api.client_secret, &token));
    assert_eq!(queries_on(&app.db), before, "throttled requests queried");

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("tokenwarden_client_auth_throttled_total 4"),
        "{metrics}"
    );
    for (kind, failures) in [("site", 2), ("resource_server", 2), ("admin", 0)] {
        let line = format!("tokenwarden_client_auth_failures_total{{kind=\"{kind}\"}} {failures}");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
}

/// Introspection of random guesses (RFC 6819 4.6.3) in the shape of every token kind: each is
/// refused by the format check (its checksum fails) before any table is read, so a flood of them
/// costs the database nothing. On SQLite each request still asks `PRAGMA data_version`, which
/// reads the WAL index in shared memory, not a table (the cache's exactness check).
fn a_flood_of_random_tokens_reads_no_table(backend: Backend) {
    count_queries_per_database();
    // No usage flush or exchange of counts with other nodes during the flood: background work,
    // not per request.
    let Some(app) = spawn_adjusted(backend, 10, 50, |config| {
        config.usage_flush_interval = Duration::from_secs(3600);
        config.throttle_share_interval = Duration::from_secs(3600);
    }) else {
        return;
    };
    crate::helpers::wait_for_live_change_feed(&app);
    let site = app.create_site("Flooded Store");
    let api = app.create_resource_server("Flooded API");
    let token = app.primary_token(&site);
    // Each write above returned only once this node had applied it: the caches warmed now stay.
    assert_eq!(app.introspect(&api, &token)["active"], true);
    let before = table_queries_on(&app.db);
    for round in 0..200 {
        let guess = random_token_shape(["twp_", "tws_", "twa_", "twx_"][round % 4]);
        let answer = app.introspect(&api, &guess);
        assert_eq!(answer, serde_json::json!({ "active": false }), "{guess}");
    }
    assert_eq!(
        table_queries_on(&app.db),
        before,
        "random guesses read tables"
    );
}

/// A value shaped like a token: the prefix, then 49 random base64url characters.
fn random_token_shape(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes: [u8; 49] = tokenwarden::crypto::random_bytes().expect("randomness");
    let tail: String = bytes
        .iter()
        .map(|byte| char::from(ALPHABET[usize::from(byte % 64)]))
        .collect();
    format!("{prefix}{tail}")
}

/// Queries per database URL since the test process started.
static QUERIES: LazyLock<Mutex<HashMap<String, u64>>> = LazyLock::new(Mutex::default);

/// [`QUERIES`] but for `PRAGMA data_version`, the SQLite change check that reads no table.
static TABLE_QUERIES: LazyLock<Mutex<HashMap<String, u64>>> = LazyLock::new(Mutex::default);

/// Every diesel connection this process opens from now on counts its queries in [`QUERIES`] and
/// [`TABLE_QUERIES`]. The
/// PostgreSQL change listener's connection (the one that runs `LISTEN`) is left out: its lease
/// renewals run on their own clock, not on requests.
fn count_queries_per_database() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        set_default_instrumentation(|| {
            let mut url = None::<String>;
            let mut listener = false;
            let counter = move |event: InstrumentationEvent<'_>| match event {
                InstrumentationEvent::StartEstablishConnection { url: opened, .. } => {
                    url = Some(opened.to_string());
                }
                InstrumentationEvent::StartQuery { query, .. } => {
                    let query = query.to_string();
                    listener |= query.contains("LISTEN ");
                    if let (Some(url), false) = (&url, listener) {
                        *QUERIES.lock().unwrap().entry(url.clone()).or_default() += 1;
                        if !query.starts_with("PRAGMA data_version") {
                            *TABLE_QUERIES
                                .lock()
                                .unwrap()
                                .entry(url.clone())
                                .or_default() += 1;
                        }
                    }
                }
                _ => {}
            };
            Some(Box::new(counter) as Box<dyn Instrumentation>)
        })
        .expect("install the query counter");
    });
}

fn queries_on(db: &TestDatabase) -> u64 {
    count_on(&QUERIES, db)
}

fn table_queries_on(db: &TestDatabase) -> u64 {
    count_on(&TABLE_QUERIES, db)
}

fn count_on(counts: &Mutex<HashMap<String, u64>>, db: &TestDatabase) -> u64 {
    let marker = match db.backend {
        Backend::Sqlite => db.dir.path().display().to_string(),
        Backend::Postgres => db.url.rsplit('/').next().unwrap().to_string(),
    };
    counts
        .lock()
        .unwrap()
        .iter()
        .filter(|(url, _)| url.contains(&marker))
        .map(|(_, count)| count)
        .sum()
}

/// The real binary, configured by flags: a lock is logged once at info, naming the site key and
/// the address but no secret, and `--throttle-client-failures` sets the limit.
#[test]
fn serve_flags_set_the_limits_and_a_lock_is_logged_without_secrets() {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
    let site = crate::cli::create_site(&db.url, "Logged Store");
    let log_file = db.dir.path().join("throttle.log");
    let (mut server, address) = crate::cli::start_server(
        &mut crate::cli::tokenwarden(&db.url),
        &[
            "--throttle-client-failures",
            "2",
            "--throttle-address-failures",
            "3",
            "--throttle-window-secs",
            "60",
        ],
        &log_file,
    );
    server.wait_until_listening(address);
    let client = Client::new();
    let guess = wrong(&site.auth_key);
    let attempt = |secret: &str| {
        crate::helpers::form_request(
            &client,
            format!("http://{address}/oauth2/token"),
            Some((&site.site_key, secret)),
            "grant_type=client_credentials",
        )
        .send()
        .unwrap()
    };
    assert_eq!(attempt(&guess).status(), 401);
    assert_eq!(attempt(&guess).status(), 401);
    let refused = attempt(&site.auth_key);
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((59..=60).contains(&retry_after), "{retry_after}");
    // A third failure under another client id locks the address as well.
    let unknown = crate::helpers::form_request(
        &client,
        format!("http://{address}/oauth2/token"),
        Some(("site_unknownunknownunkn", &guess)),
        "grant_type=client_credentials",
    );
    assert_eq!(unknown.send().unwrap().status(), 401);

    let expected = [
        format!("throttling client id {}", site.site_key),
        "throttling address 127.0.0.1".to_string(),
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = fs::read_to_string(&log_file).unwrap();
        if expected.iter().all(|line| log.contains(line)) {
            break log;
        }
        assert!(Instant::now() < deadline, "no throttling lines in:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    for line in &expected {
        assert_eq!(log.matches(line.as_str()).count(), 1, "{log}");
        assert!(log
            .lines()
            .any(|logged| logged.contains(line.as_str()) && logged.contains("INFO")));
    }
    assert!(
        !log.contains(&site.auth_key) && !log.contains(&guess),
        "{log}"
    );
}

/// What a [`RawConnection`] saw before the server closed it.
struct Closed {
    after: Duration,
    answer: String,
}

/// A TCP connection driven byte by byte, as a slow or idle client would.
struct RawConnection(TcpStream);

impl RawConnection {
    fn open(app: &TestApp) -> Self {
        let address = app.base_url.trim_start_matches("http://");
        let stream = TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Self(stream)
    }

    /// Reads what is there; `true` once the server has closed the connection.
    fn read_into(&mut self, answer: &mut Vec<u8>) -> bool {
        let mut buffer = [0; 4096];
        match self.0.read(&mut buffer) {
            Ok(0) => true,
            Ok(n) => {
                answer.extend_from_slice(&buffer[..n]);
                false
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(_) => true,
        }
    }

    /// Sends `drip` every 200 ms (never a complete head) and runs `meanwhile` once, until the
    /// server closes the connection or `give_up` passes.
    fn drip_until_closed(
        &mut self,
        drip: &[u8],
        give_up: Duration,
        mut meanwhile: impl FnMut(),
    ) -> Option<Closed> {
        let started = Instant::now();
        let mut answer = Vec::new();
        let mut last_drip = None::<Instant>;
        let mut ran = false;
        while started.elapsed() < give_up {
            if last_drip.is_none_or(|at| at.elapsed() >= Duration::from_millis(200)) {
                // A write may fail once the server has closed; the read below notices.
                let _ = self.0.write_all(drip);
                last_drip = Some(Instant::now());
            }
            if !ran {
                meanwhile();
                ran = true;
            }
            if self.read_into(&mut answer) {
                return Some(Closed {
                    after: started.elapsed(),
                    answer: String::from_utf8_lossy(&answer).into_owned(),
                });
            }
        }
        None
    }
}

fn with_connections(adjust: impl FnOnce(&mut ConnectionLimits)) -> TestApp {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
    TestApp::spawn_with(db, |config| {
        config.workers = Some(1);
        adjust(&mut config.connections);
    })
}

fn healthz_within(app: &TestApp, limit: Duration) -> Result<u16, reqwest::Error> {
    let client = Client::builder().timeout(limit).build().unwrap();
    client
        .get(app.url("/healthz"))
        .send()
        .map(|response| response.status().as_u16())
}

#[test]
fn a_slowloris_client_is_cut_off_after_the_request_timeout_while_others_are_served() {
    let answer = drip_against_a_1_s_request_timeout(
        b"POST /oauth2/token HTTP/1.1\r\nHost: tokenwarden\r\n",
        b"X-Slow: a\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
}

/// actix bounds only the head; the body has the same time to arrive (`http::body`), then 408 JSON
/// and the connection is closed.
#[test]
fn a_body_sent_byte_by_byte_is_cut_off_after_the_request_timeout() {
    let answer = drip_against_a_1_s_request_timeout(
        b"POST /oauth2/token HTTP/1.1\r\nHost: tokenwarden\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n",
        b"a",
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        answer.contains(r#""error":"invalid_request""#),
        "{answer:?}"
    );
}

/// With a 1 s client request timeout, sends `start` and then `drip` again and again: the
/// connection must be closed after about 1 s (not before 0.5 s, well before 3 s), while a normal
/// request is answered meanwhile and afterwards. Returns what the server sent before closing.
fn drip_against_a_1_s_request_timeout(start: &[u8], drip: &[u8]) -> String {
    let app = with_connections(|limits| {
        limits.client_request_timeout = Duration::from_secs(1);
    });
    let mut slow = RawConnection::open(&app);
    slow.0.write_all(start).unwrap();
    let mut served = None;
    let closed = slow
        .drip_until_closed(drip, Duration::from_secs(6), || {
            served = Some(healthz_within(&app, Duration::from_secs(2)));
        })
        .expect("the slow client was never cut off");
    assert_eq!(served.unwrap().expect("answered meanwhile"), 200);
    assert!(
        closed.after >= Duration::from_millis(500) && closed.after < Duration::from_secs(3),
        "closed after {:?}",
        closed.after
    );
    assert_eq!(healthz_within(&app, Duration::from_secs(2)).unwrap(), 200);
    closed.answer
}

#[test]
fn an_idle_connection_is_closed_after_the_keep_alive_time() {
    let app = with_connections(|limits| {
        limits.keep_alive = Duration::from_secs(1);
    });
    let mut idle = RawConnection::open(&app);
    idle.0
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: tokenwarden\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while !String::from_utf8_lossy(&answer).ends_with('}') {
        assert!(!idle.read_into(&mut answer), "closed before answering");
        assert!(Instant::now() < deadline, "no answer");
    }
    let answered = Instant::now();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    while !idle.read_into(&mut answer) {
        assert!(
            answered.elapsed() < Duration::from_secs(3),
            "the idle connection stayed open"
        );
    }
    assert!(
        answered.elapsed() >= Duration::from_millis(800),
        "closed after {:?}, before the keep-alive time",
        answered.elapsed()
    );
}

#[test]
fn connections_over_the_limit_wait_until_one_closes() {
    let app = with_connections(|limits| {
        limits.max_connections = 2;
        limits.client_request_timeout = Duration::from_secs(30);
    });
    let held: Vec<RawConnection> = (0..2).map(|_| RawConnection::open(&app)).collect();
    // Let the single worker accept both before the third arrives.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        healthz_within(&app, Duration::from_millis(700)).is_err(),
        "a third connection was served while two were open"
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match healthz_within(&app, Duration::from_millis(700)) {
            Ok(status) => break assert_eq!(status, 200),
            Err(error) => assert!(Instant::now() < deadline, "never served: {error}"),
        }
    }
}

/// actix-http's fixed bound on a request head (128 KiB; not configurable in actix-web 4).
#[test]
fn a_request_head_over_128_kib_is_431() {
    let app = with_connections(|_| {});
    let mut big = RawConnection::open(&app);
    // Exactly the limit and never finished: the server reads all of it, so it closes with
    // nothing unread (which would reset the connection and could lose the answer).
    let mut head = String::from("GET /healthz HTTP/1.1\r\nHost: tokenwarden\r\nX-Padding: ");
    head.push_str(&"a".repeat(128 * 1024 - head.len()));
    big.0.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !big.read_into(&mut answer) && Instant::now() < deadline {}
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
}

/// actix-http 3 arms the request-head timeout for a connection's first request only: a client
/// that sends one request and then drips the next head is not cut off while it keeps sending
/// (docs/security.md). With keep-alive off there is no next request: the server closes each
/// connection after its answer.
#[test]
fn with_keep_alive_off_a_connection_carries_one_request() {
    let app = with_connections(|limits| {
        limits.keep_alive = Duration::ZERO;
    });
    let mut connection = RawConnection::open(&app);
    connection
        .0
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: tokenwarden\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while !connection.read_into(&mut answer) {
        assert!(Instant::now() < deadline, "the connection stayed open");
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer:?}"
    );
}

#[test]
fn the_openapi_document_lists_429_with_retry_after_where_clients_authenticate() {
    let app = with_connections(|_| {});
    let document = app.get_json("/openapi.json");
    for path in [
        "/oauth2/token",
        "/oauth2/invalidate_token",
        "/oauth2/revoke",
        "/oauth2/introspect",
    ] {
        let throttled = &document["paths"][path]["post"]["responses"]["429"];
        assert!(
            throttled["headers"]["Retry-After"].is_object(),
            "{path}: {throttled}"
        );
    }
}

/// Behind trusted proxies (here the whole loopback range) the client is the rightmost forwarded
/// address that is not itself a trusted proxy; what a client writes to the left is ignored.
#[test]
fn behind_trusted_proxies_the_rightmost_untrusted_forwarded_address_is_counted() {
    let app = spawn_adjusted(Backend::Sqlite, 2, 100, |config| {
        config.trusted_proxies = TrustedProxies::new(
            vec![parse_trusted_proxy("127.0.0.0/8").unwrap()],
            ForwardedHeaders::default(),
        );
    })
    .expect("SQLite is always available");
    let site = app.create_site("Proxied Store");
    let via = |header: &str, value: &str, secret: &str| {
        crate::helpers::form_request(
            &app.client,
            app.url("/oauth2/token"),
            Some((&site.site_key, secret)),
            "grant_type=client_credentials",
        )
        .header(header, value)
        .send()
        .unwrap()
    };
    let guess = wrong(&site.auth_key);
    // Two proxies: the outer one (127.0.0.7) appended the client, the inner one the outer one.
    for spoofed in ["198.51.100.1", "198.51.100.2"] {
        let chain = format!("{spoofed}, 203.0.113.9, 127.0.0.7");
        assert_oauth_error(
            via("X-Forwarded-For", &chain, &guess),
            401,
            "invalid_client",
        );
    }
    assert_throttled(via("X-Forwarded-For", "203.0.113.9", &site.auth_key));
    assert_throttled(via(
        "Forwarded",
        "for=198.51.100.3, for=203.0.113.9;proto=https, for=\"127.0.0.7:8443\"",
        &site.auth_key,
    ));
    assert_eq!(
        via("X-Forwarded-For", "203.0.113.10", &site.auth_key).status(),
        200
    );
    assert_eq!(
        via("Forwarded", "for=\"[2001:db8::1]:4711\"", &site.auth_key).status(),
        200
    );
    // Malformed or unusable headers mean the last trusted hop: the proxy, 127.0.0.1 itself.
    for (n, (header, value)) in [
        ("Forwarded", "for=unknown"),
        ("Forwarded", "for=_hidden"),
        ("Forwarded", "for=\"unterminated"),
        ("X-Forwarded-For", "not-an-address"),
    ]
    .into_iter()
    .enumerate()
    {
        let other = app.create_site(&format!("Proxied Store {n}"));
        for _ in 0..2 {
            let response = crate::helpers::form_request(
                &app.client,
                app.url("/oauth2/token"),
                Some((&other.site_key, &wrong(&other.auth_key))),
                "grant_type=client_credentials",
            )
            .header(header, value)
            .send()
            .unwrap();
            assert_oauth_error(response, 401, "invalid_client");
        }
        assert_throttled(token_request(&app, &other.site_key, &other.auth_key));
    }
}

/// Behind a proxy that appends only to `X-Forwarded-For` (and passes a client's own `Forwarded`
/// through), `--forwarded-headers x-forwarded-for` keeps a client from choosing its address with
/// `Forwarded`: failures count against the address the proxy appended.
#[test]
fn a_clients_own_forwarded_header_is_ignored_when_the_proxies_write_x_forwarded_for() {
    let app = spawn_adjusted(Backend::Sqlite, 2, 100, |config| {
        config.trusted_proxies = TrustedProxies::new(
            vec![parse_trusted_proxy("127.0.0.0/8").unwrap()],
            ForwardedHeaders::XForwardedFor,
        );
    })
    .expect("SQLite is always available");
    let site = app.create_site("Victim Store");
    let request = |forwarded: Option<&str>, appended: &str, secret: &str| {
        let request = crate::helpers::form_request(
            &app.client,
            app.url("/oauth2/token"),
            Some((&site.site_key, secret)),
            "grant_type=client_credentials",
        )
        .header("X-Forwarded-For", appended);
        match forwarded {
            Some(forwarded) => request.header("Forwarded", forwarded),
            None => request,
        }
        .send()
        .unwrap()
    };
    let guess = wrong(&site.auth_key);
    // The attacker (appended as 203.0.113.66 by the proxy) names the victim's address in its own
    // Forwarded header, to lock the victim's pair.
    for _ in 0..2 {
        let response = request(Some("for=198.51.100.50"), "203.0.113.66", &guess);
        assert_oauth_error(response, 401, "invalid_client");
    }
    assert_throttled(request(None, "203.0.113.66", &site.auth_key));
    let victim = request(None, "198.51.100.50", &site.auth_key);
    assert_eq!(
        victim.status(),
        200,
        "the victim's own address is not locked"
    );
}

#[test]
fn trusted_proxy_flags_refuse_bad_ranges_and_the_old_flag_with_exit_2() {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
    let run = |args: &[&str], env: Option<(&str, &str)>| {
        let mut command = crate::cli::tokenwarden(&db.url);
        command.arg("serve").args(args);
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    for bad in ["10.0.0.0/33", "proxy.example", "10.0.0/8"] {
        let (code, stderr) = run(&["--trusted-proxy", bad, "--bind", "127.0.0.1:0"], None);
        assert_eq!(code, Some(2), "{bad}: {stderr}");
        assert!(stderr.contains(bad), "{bad}: {stderr}");
    }
    let (code, stderr) = run(
        &["--bind", "127.0.0.1:0"],
        Some(("TOKENWARDEN_TRUSTED_PROXIES", "10.0.0.0/8,nonsense")),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("nonsense"), "{stderr}");
    let (code, stderr) = run(
        &[
            "--trusted-proxy",
            "10.0.0.1",
            "--forwarded-headers",
            "both",
            "--bind",
            "127.0.0.1:0",
        ],
        None,
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("both"), "{stderr}");
    let (code, stderr) = run(&["--trust-forwarded-for", "--bind", "127.0.0.1:0"], None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--trusted-proxy"), "{stderr}");
    let (code, stderr) = run(
        &["--bind", "127.0.0.1:0"],
        Some(("TOKENWARDEN_TRUST_FORWARDED_FOR", "true")),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--trusted-proxy"), "{stderr}");
}

/// actix-http's fixed bound on the number of headers (96; not configurable in actix-web 4).
#[test]
fn a_request_with_more_than_96_headers_is_431() {
    let app = with_connections(|_| {});
    let send = |count: usize| {
        let mut connection = RawConnection::open(&app);
        let mut head = String::from("GET /healthz HTTP/1.1\r\nHost: tokenwarden\r\n");
        for n in 1..count {
            head.push_str(&format!("X-Header-{n}: {n}\r\n"));
        }
        head.push_str("Connection: close\r\n\r\n");
        connection.0.write_all(head.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while !connection.read_into(&mut answer) && Instant::now() < deadline {}
        String::from_utf8_lossy(&answer).into_owned()
    };
    // Host, the X-Header-n and Connection: `count + 1` headers in all.
    let answer = send(95);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let answer = send(96);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
}
