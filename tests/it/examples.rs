//! The two examples (`examples/client.rs`, `examples/resource_server.rs`) run against a real
//! server, so they cannot rot: the client obtains the primary token once, caches it, reuses it,
//! renews it, and recovers from an invalidation; the resource server answers RFC 6750 errors.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::blocking::Response;
use serde_json::Value;

use crate::helpers::{ResourceServerKeys, SiteKeys, TestApp};

crate::on_both_backends!(
    the_client_caches_its_token_and_renews_it_through_the_resource_server,
    the_resource_server_answers_rfc_6750_errors,
    a_positive_cache_keeps_an_invalidated_token_working_until_its_ttl,
);

const CREATED: &str = "SELECT COUNT(*) AS n FROM token_events WHERE event = 'created'";

fn the_client_caches_its_token_and_renews_it_through_the_resource_server(app: TestApp) {
    let site = app.create_site("Example Tea Shop");
    let api = ResourceServer::start(&app, &app.create_resource_server("Orders API"), None);
    let client = ClientRun::new(&app, &site, &api);

    // First run: obtains the token, caches it (owner-only), and the API sees the site.
    let first = client.run("call");
    assert_eq!(answer(&first)["site"], site.site_key.as_str());
    assert!(stderr(&first).contains("obtained the primary token"));
    assert_eq!(app.db.count(CREATED), 1);
    let cached = client.cache_contents();
    let token = cached_token(&cached);
    assert!(token.starts_with("twp_"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&client.cache)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the cache file is owner-only");
    }
    client.assert_never_printed(&first, &[&token, &site.auth_key]);

    // Second run: reuses the cached token; nothing new is minted.
    let second = client.run("call");
    assert_eq!(answer(&second)["site"], site.site_key.as_str());
    assert!(stderr(&second).contains("using the cached token"));
    assert_eq!(
        client.cache_contents(),
        cached,
        "the cache file is unchanged"
    );
    assert_eq!(app.db.count(CREATED), 1, "no new token was minted");

    // `renew`: the old token is invalidated at once (the API's positive cache is off) and the
    // client holds a new one.
    let renewed = client.run("renew");
    client.assert_never_printed(&renewed, &[&token, &site.auth_key]);
    assert_invalid_token(api.get_orders(&app, Some(&token)));
    let new_token = cached_token(&client.cache_contents());
    assert_ne!(new_token, token);
    assert_eq!(app.db.count(CREATED), 2);
    let after_renewal = client.run("call");
    assert_eq!(answer(&after_renewal)["site"], site.site_key.as_str());
    assert!(stderr(&after_renewal).contains("using the cached token"));

    // Someone else invalidates the token (a leak reported): the next call is refused with
    // invalid_token, and the client drops its token and gets a fresh one, once.
    assert_eq!(app.invalidate(&site, &new_token).status(), 200);
    let recovered = client.run("call");
    assert_eq!(answer(&recovered)["site"], site.site_key.as_str());
    assert!(
        stderr(&recovered).contains("dropping it"),
        "{}",
        stderr(&recovered)
    );
    let third_token = cached_token(&client.cache_contents());
    assert!(third_token != new_token && third_token != token);
    assert_eq!(app.db.count(CREATED), 3);
    client.assert_never_printed(&recovered, &[&new_token, &third_token, &site.auth_key]);

    // `token` prints the masked form only.
    let shown = client.run("token");
    let masked = String::from_utf8_lossy(&shown.stdout).trim().to_string();
    assert_eq!(
        masked,
        format!("twp_…{}", &third_token[third_token.len() - 4..])
    );
}

fn the_resource_server_answers_rfc_6750_errors(app: TestApp) {
    let site = app.create_site("Example Pen Shop");
    let api = ResourceServer::start(&app, &app.create_resource_server("Pens API"), None);

    let missing = api.get_orders(&app, None);
    assert_eq!(missing.status(), 401);
    assert_eq!(
        missing.headers()["www-authenticate"],
        "Bearer realm=\"example\""
    );
    let other_scheme = app
        .client
        .get(api.url("/orders"))
        .basic_auth(&site.site_key, Some(&site.auth_key))
        .send()
        .unwrap();
    assert_eq!(other_scheme.status(), 401);
    assert_eq!(
        other_scheme.headers()["www-authenticate"],
        "Bearer realm=\"example\""
    );
    let malformed = app
        .client
        .get(api.url("/orders"))
        .header("Authorization", "Bearer a b")
        .send()
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert!(www_authenticate(&malformed).contains("error=\"invalid_request\""));
    assert_invalid_token(api.get_orders(&app, Some("twp_unknown")));

    let token = app.primary_token(&site);
    let ok = api.get_orders(&app, Some(&token));
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().unwrap();
    assert_eq!(body["site"], site.site_key.as_str());
    assert_eq!(body["site_name"], "Example Pen Shop");
    assert_eq!(
        app.client.get(api.url("/healthz")).send().unwrap().status(),
        200
    );
}

/// The trade-off the example's comment explains: with a positive cache, an invalidated token keeps
/// working at that API for up to the TTL; without one (and at tokenwarden) it is refused at once.
fn a_positive_cache_keeps_an_invalidated_token_working_until_its_ttl(app: TestApp) {
    let site = app.create_site("Example Cup Shop");
    let keys = app.create_resource_server("Cups API");
    let uncached = ResourceServer::start(&app, &keys, None);
    let cached = ResourceServer::start(&app, &keys, Some(60_000));
    let token = app.primary_token(&site);
    assert_eq!(uncached.get_orders(&app, Some(&token)).status(), 200);
    assert_eq!(cached.get_orders(&app, Some(&token)).status(), 200);

    assert_eq!(app.invalidate(&site, &token).status(), 200);
    assert_invalid_token(uncached.get_orders(&app, Some(&token)));
    assert_eq!(app.introspect(&keys, &token)["active"], false);
    assert_eq!(
        cached.get_orders(&app, Some(&token)).status(),
        200,
        "a cached positive answer outlives the invalidation"
    );
}

fn assert_invalid_token(response: Response) {
    assert_eq!(response.status(), 401);
    let challenge = www_authenticate(&response);
    assert!(
        challenge.starts_with("Bearer realm=\"example\"")
            && challenge.contains("error=\"invalid_token\""),
        "{challenge}"
    );
}

fn www_authenticate(response: &Response) -> String {
    response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string()
}

fn answer(output: &Output) -> Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_slice(&output.stdout).expect("the API's JSON answer on stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn cached_token(contents: &str) -> String {
    let cached: Value = serde_json::from_str(contents).expect("the cache file is JSON");
    cached["access_token"].as_str().unwrap().to_string()
}

/// Variables (and prefixes) cargo sets for a crate it builds or a test it runs.
const SET_FOR_A_CRATE: [&str; 8] = [
    "OUT_DIR",
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
    "CARGO_CRATE_",
    "CARGO_BIN_",
    "CARGO_CFG_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
];

/// The example binaries, built once per test run (an integration test gets no `CARGO_BIN_EXE_` for
/// examples). Cargo reports where it put them.
fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<Vec<(String, PathBuf)>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--quiet", "--message-format=json"])
            .args(["--example", "client", "--example", "resource_server"])
            .stderr(Stdio::inherit());
        // Cargo gives this test process the variables it gives a crate being built. Build scripts
        // such as ring's rerun when they change, so a nested build that inherited them would
        // rebuild ring and everything above it here and again in the next ordinary build.
        for (name, _) in std::env::vars_os() {
            if SET_FOR_A_CRATE
                .iter()
                .any(|prefix| name.to_string_lossy().starts_with(prefix))
            {
                cargo.env_remove(name);
            }
        }
        let output = cargo.output().expect("run cargo build");
        assert!(output.status.success(), "cargo build --example failed");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter_map(|message| {
                let name = message["target"]["name"].as_str()?.to_string();
                let path = message["executable"].as_str()?;
                Some((name, PathBuf::from(path)))
            })
            .collect()
    });
    built
        .iter()
        .find(|(built_name, _)| built_name == name)
        .map(|(_, path)| path.clone())
        .unwrap_or_else(|| panic!("cargo did not report the {name} example"))
}

/// The resource_server example as a child process, killed when dropped.
struct ResourceServer {
    base_url: String,
    child: Child,
    _logs: tempfile::TempDir,
}

impl ResourceServer {
    fn start(app: &TestApp, keys: &ResourceServerKeys, cache_ttl_ms: Option<u64>) -> Self {
        let logs = tempfile::tempdir().unwrap();
        let log_path = logs.path().join("stderr.log");
        let mut command = Command::new(example("resource_server"));
        command
            .args(["--tokenwarden", &app.base_url, "--bind", "127.0.0.1:0"])
            .args(["--client-id", &keys.client_id])
            .env("RS_CLIENT_SECRET", &keys.client_secret)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log_path).unwrap());
        if let Some(ttl) = cache_ttl_ms {
            command.args(["--cache-ttl-ms", &ttl.to_string()]);
        }
        let mut child = command.spawn().expect("start the resource_server example");
        let mut first_line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut first_line);
        let server = Self {
            base_url: first_line
                .trim()
                .strip_prefix("listening on ")
                .map(str::to_string)
                .unwrap_or_default(),
            child,
            _logs: logs,
        };
        assert!(
            server.base_url.starts_with("http://127.0.0.1:"),
            "the example did not start: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while app
            .client
            .get(server.url("/healthz"))
            .send()
            .map_or(true, |r| r.status() != 200)
        {
            assert!(Instant::now() < deadline, "the example never answered");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn get_orders(&self, app: &TestApp, token: Option<&str>) -> Response {
        let mut request = app.client.get(self.url("/orders"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().expect("the example API answers")
    }
}

impl Drop for ResourceServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the client example for one site against one API, with a cache file of its own.
struct ClientRun {
    server: String,
    site: SiteKeys,
    api: String,
    cache: PathBuf,
    _dir: tempfile::TempDir,
}

impl ClientRun {
    fn new(app: &TestApp, site: &SiteKeys, api: &ResourceServer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            server: app.base_url.clone(),
            site: site.clone(),
            api: api.url("/orders"),
            cache: dir.path().join("token.json"),
            _dir: dir,
        }
    }

    /// Runs one command; panics unless it succeeds.
    fn run(&self, command: &str) -> Output {
        let output = Command::new(example("client"))
            .args(["--server", &self.server, "--site-key", &self.site.site_key])
            .args(["--api", &self.api, "--cache"])
            .arg(&self.cache)
            .arg(command)
            .env("AUTH_KEY", &self.site.auth_key)
            .output()
            .expect("run the client example");
        assert!(
            output.status.success(),
            "client {command} failed: {}",
            stderr(&output)
        );
        output
    }

    fn cache_contents(&self) -> String {
        read(&self.cache)
    }

    fn assert_never_printed(&self, output: &Output, secrets: &[&str]) {
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(output)
        );
        for secret in secrets {
            assert!(!printed.contains(secret), "a secret was printed: {printed}");
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("the cache file exists")
}
