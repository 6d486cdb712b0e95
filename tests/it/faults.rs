//! What production does to a server: the database going away and coming back, the process killed
//! mid-write, the SQLite disk filling up or turning read-only. Each scenario checks the client
//! sees a prompt RFC 6749 5.2 answer (503 `temporarily_unavailable`, never a 500 or a hang), that
//! nothing acknowledged is lost or half-applied, and that service resumes without a restart.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::cli::{create_site, site_keys, start_server, succeed_json, tokenwarden, Running};
use crate::helpers::{
    assert_oauth_error, create_admin, form_request, introspect_at, test_secret, Backend,
    ServerProcess, SiteKeys, TestApp, TestDatabase,
};

crate::per_backend!(killing_the_server_mid_write_loses_nothing_acknowledged);

/// How long a request may take to be refused while the database is away: the pool's connection
/// timeout (500 ms here) plus generous scheduling slack, far below any client's patience.
const PROMPT: Duration = Duration::from_secs(3);

/// PostgreSQL refusing every connection and dropping the open ones (as when it stops or
/// restarts): every endpoint that needs it answers 503 `temporarily_unavailable` promptly, and
/// once it is back every endpoint works again with the same data, without a restart.
#[test]
fn a_database_outage_gets_prompt_503s_everywhere_and_service_resumes_by_itself() {
    let Some(db) = TestDatabase::create(Backend::Postgres) else {
        return;
    };
    // Two connections: opening ten TLS connections within the short timeout is not the point.
    let app = TestApp::spawn_with(db, |config| {
        config.pool.max_connections = 2;
        config.pool.connection_timeout = Duration::from_millis(500);
    });
    let site = app.create_site("Outage Store");
    let token = app.primary_token(&site);
    let resource_server = app.create_resource_server("Outage API");
    let admin = app.create_platform_admin("Outage Admin");
    let admin_token = app.admin_token(&admin);
    let requests = OutageRequests {
        app: &app,
        site: &site,
        token: &token,
        resource_server: (&resource_server.client_id, &resource_server.client_secret),
        admin_token: &admin_token,
    };
    requests.all_succeed();

    let name = database_name(&app.db.url);
    let mut postgres = postgres_admin();
    postgres.execute(&format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
    ));
    // The node's caches stand down once its change listener has lost the database; until then
    // a cached answer is still exact, because no other node can write either.
    let deadline = Instant::now() + PROMPT;
    while app.context.store.changes().is_live() {
        assert!(Instant::now() < deadline, "the listener never noticed");
        std::thread::sleep(Duration::from_millis(5));
    }
    for (what, response) in requests.each() {
        let started = Instant::now();
        let response = response();
        let took = started.elapsed();
        assert!(took < PROMPT, "{what}: answered after {took:?}");
        assert_oauth_error(response, 503, "temporarily_unavailable");
    }

    postgres.execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.client.get(app.url("/readyz")).send().unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "service did not resume");
        std::thread::sleep(Duration::from_millis(50));
    }
    requests.all_succeed();
    assert_eq!(app.primary_token(&site), token, "the primary survived");
}

/// Requests keep coming while PostgreSQL refuses every connection for a while (10 s here): each
/// is answered 200 or 503 `temporarily_unavailable`, never a 500 and never after a hang, and once
/// PostgreSQL accepts connections again the token endpoint answers 200 within 5 s.
#[test]
fn requests_during_a_long_refusal_get_200_or_503_and_service_returns_within_5_s() {
    let Some(db) = TestDatabase::create(Backend::Postgres) else {
        return;
    };
    let app = Arc::new(TestApp::spawn_with(db, |config| {
        config.pool.connection_timeout = Duration::from_millis(500);
        config.pool.cache_lease = Duration::from_millis(300);
    }));
    let site = app.create_site("Refused Store");
    let token = app.primary_token(&site);
    let api = app.create_resource_server("Refused API");
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let load = {
        let (app, site, running, token) =
            (app.clone(), site.clone(), running.clone(), token.clone());
        std::thread::spawn(move || {
            let mut statuses: HashMap<u16, usize> = HashMap::new();
            let mut slowest = Duration::ZERO;
            while running.load(Ordering::Acquire) {
                for request in 0..2 {
                    let started = Instant::now();
                    let response = if request == 0 {
                        app.post_form(
                            "/oauth2/token",
                            Some((&site.site_key, &site.auth_key)),
                            "grant_type=client_credentials",
                        )
                    } else {
                        app.post_form(
                            "/oauth2/introspect",
                            Some((&api.client_id, &api.client_secret)),
                            &format!("token={token}"),
                        )
                    };
                    slowest = slowest.max(started.elapsed());
                    let status = response.status().as_u16();
                    if status == 503 {
                        assert_oauth_error(response, 503, "temporarily_unavailable");
                    }
                    *statuses.entry(status).or_default() += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (statuses, slowest)
        })
    };

    std::thread::sleep(Duration::from_millis(500));
    let name = database_name(&app.db.url);
    let mut postgres = postgres_admin();
    postgres.execute(&format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
    ));
    std::thread::sleep(Duration::from_secs(10));
    postgres.execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"));
    let allowed = Instant::now();
    let site_credentials = Some((site.site_key.as_str(), site.auth_key.as_str()));
    while app
        .post_form(
            "/oauth2/token",
            site_credentials,
            "grant_type=client_credentials",
        )
        .status()
        != 200
    {
        assert!(
            allowed.elapsed() < Duration::from_secs(5),
            "no 200 within 5 s of PostgreSQL accepting connections again"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let recovered_after = allowed.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    running.store(false, Ordering::Release);
    let (statuses, slowest) = load.join().expect("the load thread");
    eprintln!("statuses {statuses:?}, slowest {slowest:?}, recovered after {recovered_after:?}");
    assert!(
        statuses.keys().all(|status| [200, 503].contains(status)),
        "{statuses:?}"
    );
    assert!(
        statuses.get(&503).copied().unwrap_or(0) > 10,
        "{statuses:?}"
    );
    assert!(
        statuses.get(&200).copied().unwrap_or(0) > 10,
        "{statuses:?}"
    );
    assert!(slowest < PROMPT, "a request took {slowest:?}");
    assert_eq!(app.primary_token(&site), token, "the primary survived");
}

/// A request to send again and again, named for failure messages.
type Request<'a> = Box<dyn Fn() -> Response + 'a>;

/// One request per kind of endpoint that needs the database.
struct OutageRequests<'a> {
    app: &'a TestApp,
    site: &'a SiteKeys,
    token: &'a str,
    resource_server: (&'a str, &'a str),
    admin_token: &'a str,
}

impl OutageRequests<'_> {
    fn each(&self) -> Vec<(&'static str, Request<'_>)> {
        let app = self.app;
        let site = (self.site.site_key.as_str(), self.site.auth_key.as_str());
        vec![
            (
                "token",
                Box::new(move || {
                    app.post_form("/oauth2/token", Some(site), "grant_type=client_credentials")
                }),
            ),
            (
                "introspect",
                Box::new(move || {
                    app.post_form(
                        "/oauth2/introspect",
                        Some(self.resource_server),
                        &format!("token={}", self.token),
                    )
                }),
            ),
            (
                "invalidate_token of another value",
                Box::new(move || {
                    app.post_form(
                        "/oauth2/invalidate_token",
                        Some(site),
                        "access_token=twp_not_this_sites_primary",
                    )
                }),
            ),
            (
                "admin list",
                Box::new(move || app.admin_get(self.admin_token, "/admin/v1/sites")),
            ),
            (
                "readyz",
                Box::new(move || app.client.get(app.url("/readyz")).send().unwrap()),
            ),
        ]
    }

    fn all_succeed(&self) {
        for (what, response) in self.each() {
            let response = response();
            let status = response.status();
            // Invalidating a value that is not the site's primary is a 400 by design; the point
            // is that the database was reached to find that out.
            let expected = if what.starts_with("invalidate") {
                400
            } else {
                200
            };
            assert_eq!(status, expected, "{what}: {}", response.text().unwrap());
        }
        let active = self
            .app
            .post_form(
                "/oauth2/introspect",
                Some(self.resource_server),
                &format!("token={}", self.token),
            )
            .json::<Value>()
            .unwrap();
        assert_eq!(active["active"], true, "{active}");
    }
}

fn database_name(url: &str) -> String {
    let path = url.rsplit('/').next().unwrap_or_default();
    path.split('?').next().unwrap_or_default().to_string()
}

/// A connection to the PostgreSQL server's maintenance database, to act on a test database.
struct PostgresAdmin(diesel::PgConnection);

fn postgres_admin() -> PostgresAdmin {
    use diesel::Connection;
    let url = std::env::var("TOKENWARDEN_TEST_POSTGRES_URL").expect("PostgreSQL is configured");
    PostgresAdmin(diesel::PgConnection::establish(&url).expect("connect to PostgreSQL"))
}

impl PostgresAdmin {
    fn execute(&mut self, sql: &str) {
        diesel::connection::SimpleConnection::batch_execute(&mut self.0, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

// ---------------------------------------------------------------------------------------------
// kill -9 under load
// ---------------------------------------------------------------------------------------------

/// Sites under load at once: one integrator and one site manager working on each.
const SITES: usize = 4;

/// The real binary under a mixed load (integrators minting and invalidating their primaries, an
/// admin creating, invalidating and validating tokens) is killed with SIGKILL mid-stream. After a
/// restart every acknowledged write is there, the one write in flight per worker is either wholly
/// applied or not at all, and the invariants hold: at most one active primary and at most 10
/// tokens per site, and each token's history replays to its current state.
fn killing_the_server_mid_write_loses_nothing_acknowledged(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let sites: Vec<SiteKeys> = (0..SITES)
        .map(|n| create_site(&db.url, &format!("Kill Store {n}")))
        .collect();
    let admin = create_admin(&db.url, "Kill Admin", "platform-admin", &[]);
    let resource_server = succeed_json(tokenwarden(&db.url).args([
        "resource-server",
        "create",
        "--name",
        "Kill API",
        "--json",
    ]));

    let mut server = ServerProcess::start(&db.url, &[]);
    let base_url = server.base_url.clone();
    let admin_token = {
        let response = form_request(
            &Client::new(),
            format!("{base_url}/oauth2/token"),
            Some((&admin.client_id, &admin.client_secret)),
            "grant_type=client_credentials&scope=admin",
        )
        .send()
        .unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Value>().unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let progress = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = sites
        .iter()
        .cloned()
        .map(|site| {
            let base_url = base_url.clone();
            let progress = progress.clone();
            std::thread::spawn(move || integrator_load(&base_url, &site, progress))
        })
        .chain(sites.iter().map(|site| {
            let (base_url, token, site_key) =
                (base_url.clone(), admin_token.clone(), site.site_key.clone());
            let progress = progress.clone();
            std::thread::spawn(move || admin_load(&base_url, &token, &site_key, progress))
        }))
        .collect();
    // Kill mid-stream once enough writes were acknowledged to mean something.
    let deadline = Instant::now() + Duration::from_secs(30);
    while progress.load(Ordering::Relaxed) < 100 {
        assert!(Instant::now() < deadline, "the load never got going");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill();
    let journals: Vec<Journal> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let acknowledged: usize = journals.iter().map(|j| j.acknowledged().len()).sum();
    let in_flight = journals.iter().filter(|j| j.in_flight().is_some()).count();
    eprintln!("killed after {acknowledged} acknowledged writes, {in_flight} in flight");
    assert!(
        acknowledged > 20,
        "too little load to mean anything: {acknowledged}"
    );

    let server = ServerProcess::start(&db.url, &[]);
    let client = Client::new();
    let admin_token = form_request(
        &client,
        format!("{}/oauth2/token", server.base_url),
        Some((&admin.client_id, &admin.client_secret)),
        "grant_type=client_credentials&scope=admin",
    )
    .send()
    .unwrap()
    .json::<Value>()
    .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let active = |token: &str| {
        introspect_at(&client, &server.base_url, &resource_server, token)["active"] == true
    };
    let get = |path: &str| -> Value {
        let response = client
            .get(format!("{}{path}", server.base_url))
            .bearer_auth(&admin_token)
            .send()
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.json().unwrap()
    };

    for journal in &journals {
        journal.check_primary(&active);
    }
    for site in &sites {
        let path = format!("/admin/v1/sites/{}/tokens", site.site_key);
        let tokens = get(&path)["tokens"].as_array().unwrap().clone();
        assert!(
            tokens.len() <= 10,
            "{}: {} tokens",
            site.site_key,
            tokens.len()
        );
        let active_primaries = tokens
            .iter()
            .filter(|t| t["kind"] == "primary" && t["active"] == true)
            .count();
        assert!(active_primaries <= 1, "{}: {tokens:?}", site.site_key);
        for token in &tokens {
            let history = get(&format!("{path}/{}/history", token["id"]));
            assert_eq!(
                replay(&history),
                token["active"].as_bool().unwrap(),
                "{token}: {history}"
            );
        }
    }
    for journal in &journals {
        let Some(site_key) = &journal.admin_site else {
            continue;
        };
        let listed: HashMap<i64, bool> = get(&format!("/admin/v1/sites/{site_key}/tokens"))
            ["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["id"].as_i64().unwrap(), t["active"].as_bool().unwrap()))
            .collect();
        for (id, expected) in journal.expected_states() {
            assert_eq!(
                listed.get(&id),
                Some(&expected),
                "token {id} of {site_key}: an acknowledged write was lost"
            );
        }
    }
}

/// What a history says the token's state is: created, validated and regenerated leave or make
/// it active unless invalidated later; only `invalidated` makes it inactive.
fn replay(history: &Value) -> bool {
    let mut active = false;
    for event in history["events"].as_array().expect("an events array") {
        match event["event"].as_str().unwrap() {
            "created" | "validated" => active = true,
            "invalidated" => active = false,
            "regenerated" | "description_changed" => {}
            other => panic!("unknown event {other} in {history}"),
        }
    }
    active
}

/// One write a worker sent, and whether the server acknowledged it with a 2xx.
#[derive(Debug, Clone)]
enum Operation {
    /// `/oauth2/token` answered this value.
    Minted(String),
    /// `/oauth2/invalidate_token` of this value.
    Invalidated(String),
    /// Admin create of a token with this id (known only when acknowledged).
    Created(Option<i64>),
    /// Admin invalidate or validate of this token id; `true` for validate.
    SetActive(i64, bool),
}

#[derive(Debug, Default)]
struct Journal {
    /// Each operation with whether it was acknowledged; only the last may be unacknowledged.
    operations: Vec<(Operation, bool)>,
    /// The site an admin worker managed.
    admin_site: Option<String>,
    /// Acknowledged writes of every worker of the test, so it knows when to kill.
    progress: Arc<AtomicUsize>,
}

impl Journal {
    /// The last operation got its 2xx.
    fn acknowledge(&mut self) {
        if let Some(last) = self.operations.last_mut() {
            last.1 = true;
        }
        self.progress.fetch_add(1, Ordering::Relaxed);
    }

    fn acknowledged(&self) -> Vec<&Operation> {
        self.operations
            .iter()
            .filter(|(_, acked)| *acked)
            .map(|(operation, _)| operation)
            .collect()
    }

    /// The one operation that was sent and never answered, if the kill caught one.
    fn in_flight(&self) -> Option<&Operation> {
        match self.operations.last() {
            Some((operation, false)) => Some(operation),
            _ => None,
        }
    }

    /// Checks an integrator's last acknowledged write against the restarted server: a mint
    /// stays active unless the invalidation in flight may have reached it; an invalidation holds.
    fn check_primary(&self, active: &impl Fn(&str) -> bool) {
        match self.acknowledged().last() {
            Some(Operation::Minted(value)) => {
                let may_be_invalidated =
                    matches!(self.in_flight(), Some(Operation::Invalidated(v)) if v == value);
                if !may_be_invalidated {
                    assert!(active(value), "an acknowledged mint was lost");
                }
            }
            Some(Operation::Invalidated(value)) => {
                assert!(!active(value), "an acknowledged invalidation was lost");
            }
            _ => {}
        }
    }

    /// An admin worker's expectations: each acknowledged token's state after its last
    /// acknowledged switch (created tokens start active), leaving out the token whose switch
    /// was in flight.
    fn expected_states(&self) -> HashMap<i64, bool> {
        let mut states = HashMap::new();
        for operation in self.acknowledged() {
            match operation {
                Operation::Created(Some(id)) => states.insert(*id, true),
                Operation::SetActive(id, state) => states.insert(*id, *state),
                _ => None,
            };
        }
        if let Some(Operation::SetActive(id, _)) = self.in_flight() {
            states.remove(id);
        }
        states
    }
}

/// Sends `request` and journals it: acknowledged on a 2xx, stop on a connection error (the kill).
/// Anything else (a 4xx or 5xx) fails the test: the load only sends valid requests.
fn send(
    journal: &mut Journal,
    operation: Operation,
    request: reqwest::blocking::RequestBuilder,
) -> Option<Value> {
    journal.operations.push((operation, false));
    let response = request.send().ok()?;
    let status = response.status();
    let body: Value = response.json().ok()?;
    if status.as_u16() == 409 && body["error"] == "token_limit_reached" {
        journal.operations.pop();
        return Some(body);
    }
    assert!(status.is_success(), "{status}: {body}");
    journal.acknowledge();
    Some(body)
}

fn integrator_load(base_url: &str, site: &SiteKeys, progress: Arc<AtomicUsize>) -> Journal {
    let client = Client::new();
    let credentials = Some((site.site_key.as_str(), site.auth_key.as_str()));
    let mut journal = Journal {
        progress,
        ..Journal::default()
    };
    loop {
        let request = form_request(
            &client,
            format!("{base_url}/oauth2/token"),
            credentials,
            "grant_type=client_credentials",
        );
        journal
            .operations
            .push((Operation::Minted(String::new()), false));
        let Ok(response) = request.send() else {
            journal.operations.pop();
            return journal;
        };
        assert_eq!(response.status(), 200);
        let Ok(body) = response.json::<Value>() else {
            return journal;
        };
        let value = body["access_token"].as_str().unwrap().to_string();
        journal.operations.last_mut().unwrap().0 = Operation::Minted(value.clone());
        journal.acknowledge();
        let request = form_request(
            &client,
            format!("{base_url}/oauth2/invalidate_token"),
            credentials,
            &format!("access_token={value}"),
        );
        if send(&mut journal, Operation::Invalidated(value), request).is_none() {
            return journal;
        }
    }
}

fn admin_load(
    base_url: &str,
    admin_token: &str,
    site_key: &str,
    progress: Arc<AtomicUsize>,
) -> Journal {
    let client = Client::new();
    let tokens = format!("{base_url}/admin/v1/sites/{site_key}/tokens");
    let mut journal = Journal {
        admin_site: Some(site_key.to_string()),
        progress,
        ..Journal::default()
    };
    let mut created = Vec::new();
    for round in 0.. {
        let request = client
            .post(&tokens)
            .bearer_auth(admin_token)
            .json(&json!({ "description": format!("Partner {round}") }));
        let Some(body) = send(&mut journal, Operation::Created(None), request) else {
            return journal;
        };
        match body["id"].as_i64() {
            Some(id) => {
                journal.operations.last_mut().unwrap().0 = Operation::Created(Some(id));
                journal.acknowledge();
                created.push(id);
            }
            None => break,
        }
    }
    if created.is_empty() {
        return journal;
    }
    for round in 0.. {
        let id = created[round % created.len()];
        let validate = (round / created.len()) % 2 == 1;
        let action = if validate { "validate" } else { "invalidate" };
        let request = client
            .post(format!("{tokens}/{id}/{action}"))
            .bearer_auth(admin_token);
        if send(&mut journal, Operation::SetActive(id, validate), request).is_none() {
            return journal;
        }
    }
    journal
}

// ---------------------------------------------------------------------------------------------
// SQLite on a full or read-only disk
// ---------------------------------------------------------------------------------------------

/// The real binary on an SQLite file in a small tmpfs of its own, mounted in a private mount
/// namespace (`unshare`), so the test can fill the disk or make it read-only without touching
/// the machine. The test reaches the files through `/proc/PID/root`.
struct ConfinedServer {
    process: Running,
    address: SocketAddr,
    /// The mount point as the server sees it.
    mount: PathBuf,
    _dir: TempDir,
}

/// `unshare … sh -c 'mount a 4 MiB tmpfs on DIR/disk && BEFORE exec tokenwarden --database
/// sqlite://DIR/disk/tokenwarden.db'`, to which the caller appends a command; `before` is shell
/// run first inside the namespace. `None` (a skip) where mount namespaces are not permitted,
/// except under `CI=true`.
fn confined_command(dir: &Path, before: &str) -> Option<Command> {
    let probe = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .status();
    if !probe.is_ok_and(|status| status.success()) {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "this test needs `unshare --mount` (root in a sandbox that allows mounts)"
        );
        eprintln!("skipped: mount namespaces are not permitted here");
        return None;
    }
    let mount = dir.join("disk");
    std::fs::create_dir(&mount).unwrap();
    let mut command = Command::new("unshare");
    command
        .env("TOKENWARDEN_SECRET", test_secret())
        .env("RUST_LOG", "warn")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size=4m tokenwarden-test \"$1\" && shift && {before} exec \"$@\""
        ))
        .arg("sh")
        .arg(&mount)
        .arg(env!("CARGO_BIN_EXE_tokenwarden"))
        .arg("--database")
        .arg(confined_database(dir));
    Some(command)
}

fn confined_database(dir: &Path) -> String {
    format!("sqlite://{}/disk/tokenwarden.db", dir.display())
}

impl ConfinedServer {
    fn start() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mut command = confined_command(dir.path(), "")?;
        // No background usage writes, so a copy taken between requests is consistent.
        let (mut process, address) = start_server(
            &mut command,
            &["--usage-flush-secs", "3600"],
            &dir.path().join("stderr"),
        );
        process.wait_until_listening(address);
        Some(Self {
            process,
            address,
            mount: dir.path().join("disk"),
            _dir: dir,
        })
    }

    /// A path under the mount point, as seen from outside the namespace. Only for plain file
    /// operations: SQLite resolves the `/proc/PID/root` link and would open a file outside.
    fn outside(&self, name: &str) -> PathBuf {
        let inside = self.mount.join(name);
        PathBuf::from(format!(
            "/proc/{}/root{}",
            self.process.0.id(),
            inside.display()
        ))
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// `tokenwarden ARGS… --json` on the server's database, run inside its mount namespace.
    fn cli(&self, args: &[&str]) -> Value {
        let mut command = Command::new("nsenter");
        command
            .env("TOKENWARDEN_SECRET", test_secret())
            .args(["-t", &self.process.0.id().to_string(), "-m"])
            .arg(env!("CARGO_BIN_EXE_tokenwarden"))
            .arg("--database")
            .arg(format!("sqlite://{}/tokenwarden.db", self.mount.display()))
            .args(args)
            .arg("--json");
        succeed_json(&mut command)
    }

    /// SQLite's own check of a copy of the files, taken while the server is idle.
    fn integrity_check(&self) -> String {
        use diesel::{Connection, RunQueryDsl};
        #[derive(diesel::QueryableByName)]
        struct Check {
            #[diesel(sql_type = diesel::sql_types::Text)]
            integrity_check: String,
        }
        let copy = tempfile::tempdir().unwrap();
        for suffix in ["", "-wal"] {
            let name = format!("tokenwarden.db{suffix}");
            std::fs::copy(self.outside(&name), copy.path().join(&name)).unwrap();
        }
        let path = copy.path().join("tokenwarden.db");
        let mut conn = diesel::SqliteConnection::establish(&path.to_string_lossy()).unwrap();
        diesel::sql_query("PRAGMA integrity_check")
            .get_result::<Check>(&mut conn)
            .unwrap()
            .integrity_check
    }
}

fn mint(client: &Client, server: &ConfinedServer, site: &SiteKeys) -> Response {
    form_request(
        client,
        server.url("/oauth2/token"),
        Some((&site.site_key, &site.auth_key)),
        "grant_type=client_credentials",
    )
    .send()
    .unwrap()
}

/// A full disk: writes get 503 `temporarily_unavailable` (never a 500), reads go on, the file
/// stays intact, and writes work again as soon as space returns, without a restart.
#[test]
fn sqlite_on_a_full_disk_refuses_writes_clearly_and_recovers_when_space_returns() {
    let Some(server) = ConfinedServer::start() else {
        return;
    };
    let client = Client::new();
    let reader = site_keys(&server.cli(&["site", "create", "--name", "Reading Store"]));
    let response = mint(&client, &server, &reader);
    let body = response.json::<Value>().unwrap();
    let token = body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_string();
    let writer = site_keys(&server.cli(&["site", "create", "--name", "Writing Store"]));
    let resource_server = server.cli(&["resource-server", "create", "--name", "Disk API"]);
    let introspect = || introspect_at(&client, &server.url(""), &resource_server, &token);

    let filler = server.outside("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    drop(file);

    // Each round writes twice (a mint, an invalidation); the WAL file may hold a few rounds in
    // space it already has, so keep going until the disk refuses one.
    let mut refused = None;
    for _ in 0..500 {
        let response = mint(&client, &server, &writer);
        if response.status() != 200 {
            refused = Some(response);
            break;
        }
        let value = response.json::<Value>().unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        let response = form_request(
            &client,
            server.url("/oauth2/invalidate_token"),
            Some((&writer.site_key, &writer.auth_key)),
            &format!("access_token={value}"),
        )
        .send()
        .unwrap();
        if response.status() != 200 {
            refused = Some(response);
            break;
        }
    }
    let refused = refused.expect("a full disk refused no write");
    assert_oauth_error(refused, 503, "temporarily_unavailable");
    assert_eq!(introspect()["active"], true, "reads go on");

    std::fs::remove_file(&filler).unwrap();
    assert_eq!(
        mint(&client, &server, &writer).status(),
        200,
        "writes resume"
    );
    assert_eq!(introspect()["active"], true);
    assert_eq!(server.integrity_check(), "ok");
}

/// A disk that is read-only when the server starts: it refuses to start, saying why, instead of
/// serving and failing every write; the file is untouched.
#[test]
fn sqlite_on_a_read_only_disk_refuses_to_start_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let created = dir.path().join("created.json");
    let before = format!(
        "{bin} --database {database} site create --name 'Frozen Store' --json > {created} && \
         mount -o remount,ro {mount} && ",
        bin = env!("CARGO_BIN_EXE_tokenwarden"),
        database = confined_database(dir.path()),
        created = created.display(),
        mount = dir.path().join("disk").display(),
    );
    let Some(mut command) = confined_command(dir.path(), &before) else {
        return;
    };
    let mut server = Running(
        command
            .args(["serve", "--bind", "127.0.0.1:0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the server started on a read-only disk"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let finished = server.finish();
    let stderr = String::from_utf8_lossy(&finished.stderr);
    assert_eq!(finished.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot open the database")
            && stderr.contains("must exist and be writable"),
        "{stderr}"
    );
    let site: Value = serde_json::from_str(&std::fs::read_to_string(&created).unwrap()).unwrap();
    assert!(
        site["site_key"].is_string(),
        "the site was created before: {site}"
    );
}

/// The pool's only connection has its backend terminated between two requests: the request that
/// meets it may fail with 503, never 500, and the connection leaves the pool, so the requests
/// after it succeed (`store::PgManager`).
#[test]
fn a_connection_that_died_between_reads_leaves_the_pool() {
    let Some(db) = TestDatabase::create(Backend::Postgres) else {
        return;
    };
    let app = TestApp::spawn_with(db, |config| {
        config.pool.max_connections = 1;
        config.introspection_cache = false;
    });
    let site = app.create_site("Pool Store");
    let token = app.primary_token(&site);
    let resource_server = app.create_resource_server("Pool API");
    let introspect = || {
        app.post_form(
            "/oauth2/introspect",
            Some((&resource_server.client_id, &resource_server.client_secret)),
            &format!("token={token}"),
        )
        .status()
        .as_u16()
    };
    assert_eq!(introspect(), 200);

    let name = database_name(&app.db.url);
    postgres_admin().execute(&format!(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
         WHERE datname = '{name}' AND pid <> pg_backend_pid();"
    ));
    let statuses: Vec<u16> = (0..5).map(|_| introspect()).collect();
    assert!([200, 503].contains(&statuses[0]), "{statuses:?}");
    assert!(
        statuses[1..].iter().all(|status| *status == 200),
        "{statuses:?}"
    );
}
