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

/// A database that exists for one test only.
pub struct TestDatabase {
    pub backend: Backend,
    /// What `--database` takes.
    pub url: String,
    pub dir: TempDir,
    postgres: Option<PostgresDatabase>,
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
                postgres: None,
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
                    postgres: Some(PostgresDatabase { admin_url, name }),
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

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
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
    pub db: TestDatabase,
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
        let mut config = Config::for_tests(db.database_url());
        config.secret = SecretSource::Value(Secret::new(test_secret()));
        adjust(&mut config);
        let context = tokenwarden::server::open_context(&config).expect("open the database");
        let (sender, receiver) = mpsc::channel::<(ServerHandle, SocketAddr)>();
        let server_context = context.clone();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let (server, address) =
                    tokenwarden::server::start(&config, server_context).expect("start the server");
                sender
                    .send((server.handle(), address))
                    .expect("report the address");
                server.await.expect("the server runs");
            })
        });
        let (handle, address) = receiver.recv().expect("the server started");
        Self {
            db,
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

    pub fn create_site(&self, name: &str) -> SiteKeys {
        let (_, credentials) = sites::create(&self.context, name, chrono::Utc::now().naive_utc())
            .expect("create a site");
        SiteKeys {
            site_key: credentials.site_key,
            auth_key: credentials.auth_key.expose().to_string(),
        }
    }

    /// POSTs a form body as given (already encoded), optionally with HTTP Basic credentials.
    pub fn post_form(&self, path: &str, basic: Option<(&str, &str)>, body: &str) -> Response {
        let mut request = self
            .client
            .post(self.url(path))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.to_string());
        if let Some((user, password)) = basic {
            request = request.basic_auth(user, Some(password));
        }
        request.send().expect("the request reaches the server")
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

    pub fn invalidate(&self, site: &SiteKeys, token: &str) -> Response {
        self.post_form(
            "/oauth2/invalidate_token",
            Some((&site.site_key, &site.auth_key)),
            &format!("access_token={token}"),
        )
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        actix_web::rt::System::new().block_on(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
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
