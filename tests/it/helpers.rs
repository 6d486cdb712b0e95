//! Test harness: a database of its own per test, the real server on an OS-chosen port, helpers to
//! talk to it over real HTTP.
//!
//! PostgreSQL tests use `TOKENWARDEN_TEST_POSTGRES_URL` (an admin connection); each creates a fresh
//! database there and drops it afterwards, so tests run in parallel. Without the variable they are
//! skipped, except under `CI=true`, where they fail.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;

use actix_web::dev::ServerHandle;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use reqwest::blocking::{Client, Response};
use serde_json::Value;
use tempfile::TempDir;
use tokenwarden::config::{Config, SecretSource};
use tokenwarden::domain::secret::Secret;
use tokenwarden::service::{sites, Context};
use tokenwarden::store::DatabaseUrl;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The server secret every test uses, in `TOKENWARDEN_SECRET` form.
pub fn test_secret() -> String {
    URL_SAFE_NO_PAD.encode([42u8; 32])
}

/// Who the tests' direct service calls are recorded as in the audit trail.
pub fn operator() -> tokenwarden::domain::audit::Requester {
    tokenwarden::domain::audit::Requester::operator(Some("tests"), None)
}

/// A database that exists for one test only.
pub struct TestDatabase {
    pub backend: Backend,
    /// What `--database` takes.
    pub url: String,
    pub dir: TempDir,
    /// Drops the PostgreSQL database when the test ends.
    _postgres: Option<PostgresDatabase>,
}

struct PostgresDatabase {
    admin_url: String,
    name: String,
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&self.admin_url) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

impl TestDatabase {
    /// `None` when the backend is PostgreSQL and no server is configured outside CI.
    pub fn create(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        match backend {
            Backend::Sqlite => Some(Self {
                backend,
                url: format!("sqlite://{}", dir.path().join("tokenwarden.db").display()),
                dir,
                _postgres: None,
            }),
            Backend::Postgres => {
                let admin_url = match std::env::var("TOKENWARDEN_TEST_POSTGRES_URL") {
                    Ok(url) if !url.is_empty() => url,
                    _ if std::env::var("CI").as_deref() == Ok("true") => {
                        panic!("CI=true but TOKENWARDEN_TEST_POSTGRES_URL is not set")
                    }
                    _ => {
                        eprintln!("skipped: TOKENWARDEN_TEST_POSTGRES_URL is not set");
                        return None;
                    }
                };
                let mut admin = PgConnection::establish(&admin_url).unwrap_or_else(|e| {
                    panic!("cannot connect to TOKENWARDEN_TEST_POSTGRES_URL: {e}")
                });
                let name = format!("tw_test_{}", random_suffix());
                admin
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .expect("CREATE DATABASE");
                let url = replace_database_name(&admin_url, &name);
                Some(Self {
                    backend,
                    url,
                    dir,
                    _postgres: Some(PostgresDatabase { admin_url, name }),
                })
            }
        }
    }

    pub fn database_url(&self) -> DatabaseUrl {
        DatabaseUrl::parse(&self.url).expect("a valid test database URL")
    }

    /// The SQLite file, for tests that inspect it raw.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        (self.backend == Backend::Sqlite).then(|| self.dir.path().join("tokenwarden.db"))
    }

    /// Runs SQL on this database over a connection of its own, as another program would: no
    /// change notification goes out, so only a server that reads the database can see it.
    pub fn execute(&self, sql: &str) {
        let result = match self.database_url() {
            DatabaseUrl::Sqlite(path) => {
                diesel::SqliteConnection::establish(&path.to_string_lossy())
                    .expect("open the SQLite test database")
                    .batch_execute(sql)
            }
            DatabaseUrl::Postgres(url) => PgConnection::establish(url.as_str())
                .expect("connect to the test database")
                .batch_execute(sql),
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Runs `SELECT COUNT(*) AS n …` (the query must name its count `n`) on this database.
    pub fn count(&self, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let query = diesel::sql_query(sql);
        let result = match self.database_url() {
            DatabaseUrl::Sqlite(path) => {
                let mut conn = diesel::SqliteConnection::establish(&path.to_string_lossy())
                    .expect("open the SQLite test database");
                diesel::RunQueryDsl::get_result::<Count>(query, &mut conn)
            }
            DatabaseUrl::Postgres(url) => {
                let mut conn =
                    PgConnection::establish(url.as_str()).expect("connect to the test database");
                diesel::RunQueryDsl::get_result::<Count>(query, &mut conn)
            }
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}")).n
    }
}

fn random_suffix() -> String {
    let bytes: [u8; 8] = tokenwarden::crypto::random_bytes().expect("randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn replace_database_name(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let (scheme, rest) = base.split_once("://").expect("a postgres:// URL");
    let authority = rest.split('/').next().unwrap_or_default();
    let mut replaced = format!("{scheme}://{authority}/{name}");
    if let Some(query) = query {
        replaced.push('?');
        replaced.push_str(query);
    }
    replaced
}

/// A running server on its own database.
pub struct TestApp {
    /// Declared first so it is dropped first: the server stops (and flushes its usage batch)
    /// before its database is dropped.
    node: TestNode,
    pub db: TestDatabase,
}

impl std::ops::Deref for TestApp {
    type Target = TestNode;

    fn deref(&self) -> &TestNode {
        &self.node
    }
}

/// One server (a "node") on some database, running in this process.
pub struct TestNode {
    pub base_url: String,
    pub context: Context,
    pub client: Client,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

/// A site's credentials, as an integrator holds them.
#[derive(Debug, Clone)]
pub struct SiteKeys {
    pub site_key: String,
    pub auth_key: String,
}

impl TestApp {
    pub fn spawn(backend: Backend) -> Option<Self> {
        TestDatabase::create(backend).map(Self::spawn_on)
    }

    pub fn spawn_on(db: TestDatabase) -> Self {
        Self::spawn_with(db, |_| {})
    }

    /// Starts the server with a tweaked configuration.
    pub fn spawn_with(db: TestDatabase, adjust: impl FnOnce(&mut Config)) -> Self {
        let node = TestNode::spawn(&db, adjust);
        Self { node, db }
    }
}

impl TestNode {
    /// Starts another server on `db`, as a second node behind a load balancer would be.
    pub fn spawn(db: &TestDatabase, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::for_tests(db.database_url());
        config.secret = SecretSource::Value(Secret::new(test_secret()));
        adjust(&mut config);
        let context = tokenwarden::server::open_context(&config).expect("open the database");
        let (sender, receiver) = mpsc::channel::<(ServerHandle, SocketAddr)>();
        let server_context = context.clone();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let started =
                    tokenwarden::server::start(&config, server_context).expect("start the server");
                sender
                    .send((started.server.handle(), started.address))
                    .expect("report the address");
                started.server.await.expect("the server runs");
                started.background.shutdown();
            })
        });
        let (handle, address) = receiver.recv().expect("the server started");
        Self {
            base_url: format!("http://{address}"),
            context,
            client: Client::builder().build().expect("an HTTP client"),
            handle,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `GET path`, which must answer 200 with JSON.
    pub fn get_json(&self, path: &str) -> Value {
        let response = self.client.get(self.url(path)).send().unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().expect("a JSON body")
    }

    pub fn create_site(&self, name: &str) -> SiteKeys {
        let (_, credentials) =
            sites::create(&self.context, &operator(), name, tokenwarden::clock::now())
                .expect("create a site");
        SiteKeys {
            site_key: credentials.site_key,
            auth_key: credentials.auth_key.expose().to_string(),
        }
    }

    /// Disables or enables a site, as the operator would.
    pub fn set_site_enabled(&self, site: &SiteKeys, enabled: bool) {
        sites::set_enabled(
            &self.context,
            &operator(),
            &site.site_key,
            enabled,
            tokenwarden::clock::now(),
        )
        .expect("change the site");
    }

    /// POSTs a form body as given (already encoded), optionally with HTTP Basic credentials.
    pub fn post_form(&self, path: &str, basic: Option<(&str, &str)>, body: &str) -> Response {
        form_request(&self.client, self.url(path), basic, body)
            .send()
            .expect("the request reaches the server")
    }

    /// Asks for the site's primary token with body credentials; panics unless it gets one.
    pub fn primary_token(&self, site: &SiteKeys) -> String {
        let response = self.post_form(
            "/oauth2/token",
            None,
            &format!(
                "grant_type=client_credentials&client_id={}&client_secret={}",
                site.site_key, site.auth_key
            ),
        );
        assert_eq!(response.status(), 200);
        let body: Value = response.json().expect("a JSON body");
        body["access_token"]
            .as_str()
            .expect("an access_token")
            .to_string()
    }

    /// Asks for the site's primary token until the node answers it from its cache, so that what a
    /// test checks next is the cache's exactness. A request right after a write fills the cache;
    /// on PostgreSQL the node's own notification of a write it made moves the generation once
    /// more, some milliseconds later.
    pub fn cached_primary_token(&self, site: &SiteKeys) -> String {
        let token = self.primary_token(site);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            let (hits_before, _) = self.context.grants.cache_counts();
            assert_eq!(self.primary_token(site), token);
            if self.context.grants.cache_counts().0 > hits_before {
                return token;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the node never answered from its cache"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    pub fn invalidate(&self, site: &SiteKeys, token: &str) -> Response {
        self.post_form(
            "/oauth2/invalidate_token",
            Some((&site.site_key, &site.auth_key)),
            &format!("access_token={token}"),
        )
    }

    /// RFC 7009 revocation of `token` with the site's Basic credentials.
    pub fn revoke(&self, site: &SiteKeys, token: &str) -> Response {
        self.post_form(
            "/oauth2/revoke",
            Some((&site.site_key, &site.auth_key)),
            &format!("token={token}"),
        )
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        actix_web::rt::System::new().block_on(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A POST of a form body as given (already encoded), optionally with HTTP Basic credentials.
pub fn form_request(
    client: &Client,
    url: String,
    basic: Option<(&str, &str)>,
    body: &str,
) -> reqwest::blocking::RequestBuilder {
    let request = client
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_string());
    match basic {
        Some((user, password)) => request.basic_auth(user, Some(password)),
        None => request,
    }
}

/// `POST {base_url}/oauth2/introspect` for `token`, as the resource server whose credentials
/// `tokenwarden resource-server create --json` printed in `resource_server`; the JSON answer.
pub fn introspect_at(
    client: &Client,
    base_url: &str,
    resource_server: &Value,
    token: &str,
) -> Value {
    let field = |name: &str| {
        resource_server[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {resource_server}"))
    };
    form_request(
        client,
        format!("{base_url}/oauth2/introspect"),
        Some((field("client_id"), field("client_secret"))),
        &format!("token={token}"),
    )
    .send()
    .expect("the introspection request reaches the server")
    .json()
    .expect("a JSON introspection answer")
}

/// Issue 3's bound for writes by another process (the CLI, another node): on SQLite the next
/// request sees them (`PRAGMA data_version`), so `condition` must hold on the first try; on
/// PostgreSQL they arrive by NOTIFY, so it must hold within a second (in practice milliseconds).
pub fn assert_eventually(app: &TestApp, mut condition: impl FnMut() -> bool) {
    if app.db.backend == Backend::Sqlite {
        assert!(
            condition(),
            "the next request did not see the other process's write"
        );
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "not seen within 1 s");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// A PostgreSQL node bypasses its caches until its listener is connected; wait for that so a
/// test exercises the caches. (An SQLite node's feed is live from the start.)
pub fn wait_for_live_change_feed(node: &TestNode) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !node.context.store.changes().is_live() {
        assert!(
            std::time::Instant::now() < deadline,
            "the change listener never connected"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Checks an RFC 6749 5.2 error answer and returns its description.
pub fn assert_oauth_error(response: Response, status: u16, error: &str) -> String {
    assert_eq!(response.status(), status, "status");
    let cache_control = response
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap_or_default().to_string());
    assert_eq!(cache_control.as_deref(), Some("no-store"));
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body: Value = response.json().expect("a JSON error body");
    assert_eq!(body["error"], error, "{body}");
    let description = body["error_description"]
        .as_str()
        .expect("an error_description")
        .to_string();
    assert!(!description.is_empty());
    description
}

/// Defines each listed scenario `fn name(app: TestApp)` as one test per backend:
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    let app = $crate::helpers::TestApp::spawn($crate::helpers::Backend::Sqlite)
                        .expect("SQLite is always available");
                    super::$name(app)
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    if let Some(app) = $crate::helpers::TestApp::spawn($crate::helpers::Backend::Postgres) {
                        super::$name(app)
                    }
                }
            )*
        }
    };
}

/// One `#[test]` per backend for each scenario `fn name(backend: Backend)`, for scenarios that set
/// up their own database or server; a scenario returns early when `TestDatabase::create` has no
/// PostgreSQL for it. The modules are `sqlite` and `postgres` unless named first.
#[macro_export]
macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {
        $crate::per_backend!(sqlite, postgres; $($name),*);
    };
    ($sqlite:ident, $postgres:ident; $($name:ident),* $(,)?) => {
        mod $sqlite {
            $(#[test] fn $name() { super::$name($crate::helpers::Backend::Sqlite) })*
        }
        mod $postgres {
            $(#[test] fn $name() { super::$name($crate::helpers::Backend::Postgres) })*
        }
    };
}

/// A resource server's credentials.
#[derive(Debug, Clone)]
pub struct ResourceServerKeys {
    pub client_id: String,
    pub client_secret: String,
}

impl TestNode {
    pub fn create_resource_server(&self, name: &str) -> ResourceServerKeys {
        self.create_limited_resource_server(name, &[])
    }

    /// A resource server limited to `sites`' tokens (every site's when empty).
    pub fn create_limited_resource_server(
        &self,
        name: &str,
        sites: &[&SiteKeys],
    ) -> ResourceServerKeys {
        let site_keys: Vec<String> = sites.iter().map(|site| site.site_key.clone()).collect();
        let (created, secret) = tokenwarden::service::resource_servers::create(
            &self.context,
            &operator(),
            name,
            &site_keys,
            tokenwarden::clock::now(),
        )
        .expect("create a resource server");
        ResourceServerKeys {
            client_id: created.client_id,
            client_secret: secret.expose().to_string(),
        }
    }

    /// Introspects `token` as `resource_server`; panics unless the answer is 200 JSON.
    pub fn introspect(&self, resource_server: &ResourceServerKeys, token: &str) -> Value {
        let response = self.post_form(
            "/oauth2/introspect",
            Some((&resource_server.client_id, &resource_server.client_secret)),
            &format!("token={token}"),
        );
        assert_eq!(response.status(), 200);
        response.json().expect("a JSON body")
    }
}

/// The real binary serving on a database, as a separate process (a second node, or the server a
/// CLI command runs beside). Killed when dropped.
pub struct ServerProcess {
    pub base_url: String,
    child: std::process::Child,
}

impl ServerProcess {
    pub fn start(database_url: &str, extra_args: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
            .args(["--database", database_url, "serve", "--bind"])
            .arg(format!("127.0.0.1:{port}"))
            .args(extra_args)
            .env("TOKENWARDEN_SECRET", test_secret())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start the tokenwarden binary");
        let process = Self {
            base_url: format!("http://127.0.0.1:{port}"),
            child,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let client = Client::new();
        while client
            .get(format!("{}/healthz", process.base_url))
            .send()
            .map_or(true, |response| response.status() != 200)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the server process did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        process
    }
}

impl ServerProcess {
    /// SIGKILL, as `kill -9` does: no graceful stop, no last flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Admins and the admin API (issue 4)
// ---------------------------------------------------------------------------------------------

/// An admin principal's credentials, as `tokenwarden admin create` prints them once.
#[derive(Debug, Clone)]
pub struct AdminKeys {
    pub client_id: String,
    pub client_secret: String,
    pub name: String,
}

/// `tokenwarden --database DATABASE admin create --name NAME --role ROLE [--site KEY]… --json`;
/// panics unless it succeeds with credentials in the documented formats.
pub fn create_admin(database: &str, name: &str, role: &str, site_keys: &[&str]) -> AdminKeys {
    let mut command = crate::cli::tokenwarden(database);
    command.args(["admin", "create", "--name", name, "--role", role]);
    for site_key in site_keys {
        command.args(["--site", site_key]);
    }
    command.arg("--json");
    let created = crate::cli::succeed_json(&mut command);
    let field = |field: &str| {
        created[field]
            .as_str()
            .unwrap_or_else(|| panic!("admin create: no {field} in {created}"))
            .to_string()
    };
    let admin = AdminKeys {
        client_id: field("client_id"),
        client_secret: field("client_secret"),
        name: field("name"),
    };
    assert!(admin.client_id.starts_with("adm_"), "{created}");
    assert!(admin.client_secret.starts_with("twm_"), "{created}");
    admin
}

impl TestApp {
    /// A platform admin created through the CLI on this app's database.
    pub fn create_platform_admin(&self, name: &str) -> AdminKeys {
        create_admin(&self.db.url, name, "platform-admin", &[])
    }

    /// A site manager for `sites`, created through the CLI on this app's database.
    pub fn create_site_manager(&self, name: &str, sites: &[&SiteKeys]) -> AdminKeys {
        let keys: Vec<&str> = sites.iter().map(|site| site.site_key.as_str()).collect();
        create_admin(&self.db.url, name, "site-manager", &keys)
    }

    /// Runs `tokenwarden admin ARGS… --json` on this app's database; panics unless it succeeds.
    pub fn admin_cli(&self, args: &[&str]) -> Value {
        crate::cli::succeed_json(
            crate::cli::tokenwarden(&self.db.url)
                .arg("admin")
                .args(args)
                .arg("--json"),
        )
    }
}

impl TestNode {
    /// `POST /oauth2/token` with the admin's Basic credentials and `scope=admin`; the response.
    pub fn admin_token_request(&self, admin: &AdminKeys) -> Response {
        self.post_form(
            "/oauth2/token",
            Some((&admin.client_id, &admin.client_secret)),
            "grant_type=client_credentials&scope=admin",
        )
    }

    /// A fresh admin token for `admin`; panics unless the grant succeeds.
    pub fn admin_token(&self, admin: &AdminKeys) -> String {
        let response = self.admin_token_request(admin);
        assert_eq!(response.status(), 200, "admin token for {}", admin.name);
        let body: Value = response.json().expect("a JSON body");
        let token = body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in {body}"))
            .to_string();
        assert!(token.starts_with("twa_"), "{body}");
        token
    }

    /// `GET path` with `Authorization: Bearer token`.
    pub fn admin_get(&self, token: &str, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .expect("the request reaches the server")
    }

    /// `POST path` with `Authorization: Bearer token` and, if given, `body` as
    /// `application/json`; without a body, no body and no `Content-Type` at all.
    pub fn admin_post(&self, token: &str, path: &str, body: Option<&Value>) -> Response {
        let request = self.client.post(self.url(path)).bearer_auth(token);
        let request = match body {
            Some(body) => request
                .header("Content-Type", "application/json")
                .body(body.to_string()),
            None => request,
        };
        request.send().expect("the request reaches the server")
    }

    /// `PATCH path` with `Authorization: Bearer token` and `body` as `application/json`.
    pub fn admin_patch(&self, token: &str, path: &str, body: &Value) -> Response {
        self.client
            .patch(self.url(path))
            .bearer_auth(token)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .expect("the request reaches the server")
    }

    /// `DELETE path` with `Authorization: Bearer token`.
    pub fn admin_delete(&self, token: &str, path: &str) -> Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .expect("the request reaches the server")
    }

    /// `GET path` as `token`, insisting on 200 JSON.
    pub fn admin_get_ok(&self, token: &str, path: &str) -> Value {
        let response = self.admin_get(token, path);
        let status = response.status();
        let text = response.text().expect("a readable body");
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {text}"))
    }
}

/// Checks an admin API error answer: the status, `application/json`, and an RFC 6749 5.2 body
/// with `error` as given and a non-empty `error_description`. Returns the body. `what` names the
/// request or input in failure messages.
pub fn assert_admin_error(response: Response, status: u16, error: &str, what: &str) -> Value {
    let actual = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    let text = response.text().expect("a readable body");
    assert_eq!(actual, status, "{what}: status (body {text})");
    assert!(
        content_type.starts_with("application/json"),
        "{what}: Content-Type {content_type:?} (body {text})"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: not a JSON error body ({e}): {text}"));
    assert_eq!(body["error"], error, "{what}: {body}");
    let description = body["error_description"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no error_description in {body}"));
    assert!(!description.is_empty(), "{what}: empty error_description");
    body
}

/// Runs `work` on `threads` threads released at the same instant; returns their results.
pub fn race<T: Send + 'static>(
    threads: usize,
    work: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    use std::sync::{Arc, Barrier};
    let barrier = Arc::new(Barrier::new(threads));
    let work = Arc::new(work);
    let handles: Vec<_> = (0..threads)
        .map(|index| {
            let (barrier, work) = (barrier.clone(), work.clone());
            std::thread::spawn(move || {
                barrier.wait();
                work(index)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("a racer panicked"))
        .collect()
}

/// Whole seconds from now until an RFC 3339 instant an answer gave (negative once past).
pub fn seconds_from_now(rfc3339: &str) -> i64 {
    let at = chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap();
    at.signed_duration_since(tokenwarden::clock::now().and_utc())
        .num_seconds()
}
