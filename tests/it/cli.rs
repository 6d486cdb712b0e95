//! The `tokenwarden` binary as an operator runs it: `site …` commands against the same database as
//! a running server, the server secret file, and `serve [--demo]`. Also the process helpers `logs`
//! uses.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokenwarden::config::SecretSource;

use crate::helpers::{
    assert_eventually, assert_oauth_error, test_secret, wait_for_live_change_feed, Backend,
    SiteKeys, TestApp, TestDatabase, TestNode,
};

crate::per_backend!(
    create_prints_one_json_object_whose_credentials_work,
    create_in_text_mode_shows_the_auth_key_once,
    list_prints_one_json_object_with_token_counts,
    rotate_replaces_the_auth_key_and_keeps_the_token,
    rotate_with_an_overlap_keeps_the_old_key_until_the_printed_end,
    disable_refuses_the_site_and_enable_restores_its_same_token,
    unknown_site_keys_fail_with_a_clear_message,
    invalid_site_names_are_refused,
);

/// How long a child process may take to start or answer before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Process helpers (also used by `logs`)
// ---------------------------------------------------------------------------------------------

/// `tokenwarden --database URL` with the test secret and no other `TOKENWARDEN_*` or `RUST_LOG`
/// from the environment running the tests.
pub(crate) fn tokenwarden(database: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokenwarden"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TOKENWARDEN_") {
            command.env_remove(name);
        }
    }
    command
        .env_remove("RUST_LOG")
        .env("TOKENWARDEN_SECRET", test_secret())
        .current_dir(std::env::temp_dir())
        .arg("--database")
        .arg(database);
    command
}

/// What a finished command left behind.
#[derive(Debug)]
pub(crate) struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

pub(crate) fn run(command: &mut Command) -> Finished {
    let output = command
        .stdin(Stdio::null())
        .output()
        .expect("the tokenwarden binary runs");
    Finished {
        status: output.status,
        stdout: String::from_utf8(output.stdout).expect("UTF-8 on stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 on stderr"),
    }
}

/// Runs the command and insists on exit code 0.
pub(crate) fn succeed(command: &mut Command) -> Finished {
    let finished = run(command);
    assert!(
        finished.status.success(),
        "{command:?} failed: {}\nstdout: {}",
        finished.stderr,
        finished.stdout
    );
    finished
}

/// Runs a `--json` command: stdout must be exactly one JSON object on one line.
pub(crate) fn succeed_json(command: &mut Command) -> Value {
    let finished = succeed(command);
    assert_eq!(
        finished.stdout.lines().count(),
        1,
        "one line: {:?}",
        finished.stdout
    );
    assert!(finished.stdout.ends_with('\n'));
    let value: Value = serde_json::from_str(&finished.stdout)
        .unwrap_or_else(|e| panic!("not one JSON value ({e}): {:?}", finished.stdout));
    assert!(value.is_object(), "{value}");
    value
}

/// `site create --name NAME --json`, as the credentials an integrator would receive.
pub(crate) fn create_site(database: &str, name: &str) -> SiteKeys {
    let created =
        succeed_json(tokenwarden(database).args(["site", "create", "--name", name, "--json"]));
    site_keys(&created)
}

pub(crate) fn site_keys(value: &Value) -> SiteKeys {
    let field = |name: &str| {
        value[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {value}"))
            .to_string()
    };
    SiteKeys {
        site_key: field("site_key"),
        auth_key: field("auth_key"),
    }
}

/// A port nobody listens on right now (bound and released at once; the OS will not hand it out
/// again immediately).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("an ephemeral port")
        .port()
}

/// A child process that is killed when the test ends, passing or failing.
pub(crate) struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// Waits for the child to exit and collects what it printed on its (piped, small) outputs.
    pub(crate) fn finish(&mut self) -> std::process::Output {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        if let Some(mut pipe) = self.0.stdout.take() {
            pipe.read_to_end(&mut stdout).expect("the child's stdout");
        }
        if let Some(mut pipe) = self.0.stderr.take() {
            pipe.read_to_end(&mut stderr).expect("the child's stderr");
        }
        let status = self.0.wait().expect("the child's exit status");
        std::process::Output {
            status,
            stdout,
            stderr,
        }
    }

    /// Waits until the server accepts connections; fails at once if it exited.
    pub(crate) fn wait_until_listening(&mut self, address: SocketAddr) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().expect("the child's status") {
                panic!("the server exited with {status} before listening on {address}");
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "the server did not listen on {address}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `serve EXTRA… --bind 127.0.0.1:<free port>` with stdout piped and stderr sent to `stderr_file`.
pub(crate) fn start_server(
    command: &mut Command,
    extra: &[&str],
    stderr_file: &Path,
) -> (Running, SocketAddr) {
    let address: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let child = command
        .arg("serve")
        .args(extra)
        .args(["--workers", "1", "--bind", &address.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(stderr_file).expect("a stderr file"))
        .spawn()
        .expect("the server starts");
    (Running(child), address)
}

/// Lines the child prints on stdout, read on a thread so the test can wait with a deadline.
fn stdout_lines(server: &mut Running) -> mpsc::Receiver<String> {
    let stdout = server.0.stdout.take().expect("stdout is piped");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Collects stdout lines until one satisfies `last`; panics with what it saw at the deadline.
fn read_until(lines: &mpsc::Receiver<String>, last: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let done = last(&line);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(_) => panic!("stdout ended or stalled; it said: {seen:#?}"),
        }
    }
}

fn token_request(app: &TestApp, site: &SiteKeys) -> reqwest::blocking::Response {
    app.post_form(
        "/oauth2/token",
        None,
        &format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            site.site_key, site.auth_key
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// site …
// ---------------------------------------------------------------------------------------------

fn create_prints_one_json_object_whose_credentials_work(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let url = db.url.clone();
    let created = succeed_json(tokenwarden(&url).args([
        "site",
        "create",
        "--name",
        "  Shoe Store ",
        "--json",
    ]));
    let object = created.as_object().unwrap();
    let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["auth_key", "name", "site_key"], "{created}");
    assert_eq!(created["name"], "Shoe Store", "the name is trimmed");
    let site = site_keys(&created);
    assert!(site.site_key.starts_with("site_"), "{created}");
    assert!(site.auth_key.starts_with("twk_"), "{created}");

    let app = TestApp::spawn_on(db);
    let token = app.primary_token(&site);
    assert!(token.starts_with("twp_"));
    // A second site from the CLI while the server runs: its own credentials and token.
    let other = create_site(&url, "Hat Store");
    assert_ne!(other.site_key, site.site_key);
    assert_ne!(other.auth_key, site.auth_key);
    assert_ne!(app.primary_token(&other), token);
}

fn create_in_text_mode_shows_the_auth_key_once(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let created = succeed(tokenwarden(&db.url).args(["site", "create", "--name", "Text Store"]));
    let value_after = |label: &str| {
        let lines: Vec<&str> = created
            .stdout
            .lines()
            .filter_map(|line| line.trim().strip_prefix(label))
            .collect();
        assert_eq!(lines.len(), 1, "one {label:?} line in {:?}", created.stdout);
        lines[0].trim().to_string()
    };
    let site = SiteKeys {
        site_key: value_after("site key:"),
        auth_key: value_after("auth key:"),
    };
    assert!(site.auth_key.starts_with("twk_"), "{}", created.stdout);
    assert_eq!(created.stdout.matches(&site.auth_key).count(), 1);
    assert!(created.stdout.contains("Text Store"));
    assert!(created.stdout.contains("once"), "{}", created.stdout);
    assert!(
        !created.stdout.trim_start().starts_with('{'),
        "text, not JSON"
    );
    assert_eq!(created.stderr, "");

    let app = TestApp::spawn_on(db);
    assert!(app.primary_token(&site).starts_with("twp_"));
}

fn list_prints_one_json_object_with_token_counts(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let url = db.url.clone();
    let empty = succeed_json(tokenwarden(&url).args(["site", "list", "--json"]));
    assert_eq!(empty, serde_json::json!({ "sites": [] }));

    let with_token = create_site(&url, "Busy Store");
    let without_token = create_site(&url, "Quiet Store");
    let app = TestApp::spawn_on(db);
    let first = app.primary_token(&with_token);
    assert_eq!(app.invalidate(&with_token, &first).status(), 200);
    app.primary_token(&with_token);

    let listed = succeed_json(tokenwarden(&url).args(["site", "list", "--json"]));
    assert_eq!(listed.as_object().unwrap().len(), 1, "{listed}");
    let sites = listed["sites"].as_array().expect("a sites array");
    assert_eq!(sites.len(), 2, "{listed}");
    let entry = |keys: &SiteKeys| {
        sites
            .iter()
            .find(|site| site["site_key"] == keys.site_key.as_str())
            .unwrap_or_else(|| panic!("{} missing from {listed}", keys.site_key))
    };
    // The primary slot keeps its row when its value is regenerated: still one token.
    assert_eq!(entry(&with_token)["token_count"], 1, "{listed}");
    assert_eq!(entry(&with_token)["name"], "Busy Store");
    assert_eq!(entry(&with_token)["enabled"], true);
    assert_eq!(entry(&without_token)["token_count"], 0, "{listed}");
    assert_eq!(entry(&without_token)["name"], "Quiet Store");
    let listed_text = listed.to_string();
    for secret in [&with_token.auth_key, &without_token.auth_key, &first] {
        assert!(
            !listed_text.contains(secret.as_str()),
            "a list shows no secrets"
        );
    }

    let text = succeed(tokenwarden(&url).args(["site", "list"]));
    assert!(
        text.stdout.contains(&with_token.site_key),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("Quiet Store"), "{}", text.stdout);
    assert!(!text.stdout.contains("twk_"), "{}", text.stdout);
}

/// A site created with the CLI on a fresh database, and a server on it whose cache holds the
/// site's primary token; `None` without PostgreSQL.
fn cli_site_with_a_cached_token(
    backend: Backend,
    name: &str,
) -> Option<(TestApp, SiteKeys, String)> {
    let db = TestDatabase::create(backend)?;
    let site = create_site(&db.url, name);
    let app = TestApp::spawn_on(db);
    wait_for_live_change_feed(&app);
    let token = app.cached_primary_token(&site);
    Some((app, site, token))
}

fn rotate_replaces_the_auth_key_and_keeps_the_token(backend: Backend) {
    let Some((app, old, token)) = cli_site_with_a_cached_token(backend, "Rotating Store") else {
        return;
    };
    let url = app.db.url.clone();

    let rotated =
        succeed_json(tokenwarden(&url).args(["site", "rotate-auth-key", &old.site_key, "--json"]));
    let new = site_keys(&rotated);
    assert_eq!(new.site_key, old.site_key);
    assert!(new.auth_key.starts_with("twk_"), "{rotated}");
    assert_ne!(new.auth_key, old.auth_key);

    // The server caches site authentication: on SQLite its very next request sees the CLI's
    // write, on PostgreSQL the notification arrives within the bound (milliseconds).
    assert_eventually(&app, || token_request(&app, &old).status() == 401);
    assert_oauth_error(token_request(&app, &old), 401, "invalid_client");
    assert_eq!(app.primary_token(&new), token, "rotation keeps the token");

    assert_eq!(app.cached_primary_token(&new), token);
    let again = succeed(tokenwarden(&url).args(["site", "rotate-auth-key", &old.site_key]));
    let newest = again
        .stdout
        .split_whitespace()
        .find(|word| word.starts_with("twk_"))
        .unwrap_or_else(|| panic!("no auth key in {:?}", again.stdout))
        .to_string();
    assert_eq!(again.stdout.matches(&newest).count(), 1);
    assert_eventually(&app, || token_request(&app, &new).status() == 401);
    assert_oauth_error(token_request(&app, &new), 401, "invalid_client");
    let newest = SiteKeys {
        auth_key: newest,
        ..new
    };
    assert_eq!(app.primary_token(&newest), token);
}

/// `--overlap`: the old key keeps working until the end printed (and listed), then stops; a
/// rotation without one ends it at once.
fn rotate_with_an_overlap_keeps_the_old_key_until_the_printed_end(backend: Backend) {
    let Some((app, old, token)) = cli_site_with_a_cached_token(backend, "Overlapping Store") else {
        return;
    };
    let url = app.db.url.clone();

    let asked_at = tokenwarden::clock::now().and_utc();
    let rotated = succeed_json(tokenwarden(&url).args([
        "site",
        "rotate-auth-key",
        &old.site_key,
        "--overlap",
        "2s",
        "--json",
    ]));
    let new = site_keys(&rotated);
    let until = rotated["previous_valid_until"]
        .as_str()
        .unwrap_or_else(|| panic!("no previous_valid_until in {rotated}"));
    let ends = chrono::DateTime::parse_from_rfc3339(until).unwrap();
    let overlap = ends.signed_duration_since(asked_at).num_milliseconds();
    assert!(
        (1_000..=3_500).contains(&overlap),
        "{rotated}: {overlap} ms"
    );
    assert!(until.ends_with('Z'), "{until}");
    assert_eq!(app.primary_token(&new), token);
    assert_eq!(
        app.primary_token(&old),
        token,
        "the old key works meanwhile"
    );
    let listed = succeed_json(tokenwarden(&url).args(["site", "list", "--json"]));
    assert_eq!(
        listed["sites"][0]["previous_auth_key_valid_until"], until,
        "{listed}"
    );
    let text = succeed(tokenwarden(&url).args(["site", "list"]));
    assert!(text.stdout.contains(until), "{}", text.stdout);

    let wait = ends.signed_duration_since(tokenwarden::clock::now().and_utc())
        + chrono::TimeDelta::milliseconds(50);
    std::thread::sleep(wait.to_std().unwrap_or_default());
    assert_oauth_error(token_request(&app, &old), 401, "invalid_client");
    assert_eq!(app.primary_token(&new), token);
    let listed = succeed_json(tokenwarden(&url).args(["site", "list", "--json"]));
    assert_eq!(
        listed["sites"][0]["previous_auth_key_valid_until"],
        Value::Null,
        "{listed}"
    );

    // Text mode says when the old key stops; a rotation without --overlap stops it at once.
    let again = succeed(tokenwarden(&url).args([
        "site",
        "rotate-auth-key",
        &old.site_key,
        "--overlap",
        "1h",
    ]));
    assert!(
        again.stdout.contains("the old auth key works until "),
        "{}",
        again.stdout
    );
    let last =
        succeed_json(tokenwarden(&url).args(["site", "rotate-auth-key", &old.site_key, "--json"]));
    assert_eq!(last["previous_valid_until"], Value::Null, "{last}");
    let last = site_keys(&last);
    assert_eventually(&app, || token_request(&app, &new).status() == 401);
    assert_eq!(app.primary_token(&last), token);
}

/// `--overlap` takes seconds or a number with s, m, h or d, up to 7 days; anything else is a usage
/// error (exit code 2) naming the value, and rotates nothing.
#[test]
fn overlap_durations_parse_and_bad_ones_exit_2_naming_the_value() {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite");
    let site = create_site(&db.url, "Duration Store");
    for (given, secs) in [("90", 90), ("30m", 1_800), ("7d", 604_800)] {
        let asked_at = tokenwarden::clock::now().and_utc().timestamp();
        let rotated = succeed_json(tokenwarden(&db.url).args([
            "site",
            "rotate-auth-key",
            &site.site_key,
            "--overlap",
            given,
            "--json",
        ]));
        let until = rotated["previous_valid_until"].as_str().unwrap();
        let until = chrono::DateTime::parse_from_rfc3339(until)
            .unwrap()
            .timestamp();
        assert!(
            (secs..=secs + 3).contains(&(until - asked_at)),
            "{given}: {rotated}"
        );
    }
    let listed = || succeed_json(tokenwarden(&db.url).args(["site", "list", "--json"]));
    let before = listed();
    for bad in ["8d", "604801", "1.5h", "-5", "soon", ""] {
        let failed = run(tokenwarden(&db.url).args([
            "site",
            "rotate-auth-key",
            &site.site_key,
            &format!("--overlap={bad}"),
        ]));
        assert_eq!(failed.status.code(), Some(2), "{bad:?}: {failed:?}");
        assert_eq!(failed.stdout, "", "{bad:?}");
        assert!(
            failed.stderr.contains(&format!("'{bad}'")) && failed.stderr.contains("--overlap"),
            "{bad:?}: {}",
            failed.stderr
        );
    }
    assert_eq!(listed(), before, "a refused value rotates nothing");
}

fn disable_refuses_the_site_and_enable_restores_its_same_token(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let url = db.url.clone();
    let site = create_site(&url, "Paused Store");
    let bystander = create_site(&url, "Open Store");
    let app = TestApp::spawn_on(db);
    wait_for_live_change_feed(&app);
    let token = app.cached_primary_token(&site);
    let bystander_token = app.primary_token(&bystander);

    let disabled =
        succeed_json(tokenwarden(&url).args(["site", "disable", &site.site_key, "--json"]));
    assert_eq!(
        disabled,
        serde_json::json!({ "site_key": site.site_key, "enabled": false })
    );
    let listed = succeed_json(tokenwarden(&url).args(["site", "list", "--json"]));
    let entry = listed["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["site_key"] == site.site_key.as_str())
        .cloned()
        .unwrap();
    assert_eq!(entry["enabled"], false, "{listed}");

    // Refused at once (on PostgreSQL: once the notification has arrived, within the bound), by
    // body and by Basic, for getting and for giving up its token.
    assert_eventually(&app, || token_request(&app, &site).status() == 401);
    assert_oauth_error(token_request(&app, &site), 401, "invalid_client");
    let by_basic = app.post_form(
        "/oauth2/token",
        Some((&site.site_key, &site.auth_key)),
        "grant_type=client_credentials",
    );
    assert_oauth_error(by_basic, 401, "invalid_client");
    assert_oauth_error(app.invalidate(&site, &token), 401, "invalid_client");
    assert_oauth_error(app.revoke(&site, &token), 401, "invalid_client");
    // Other sites are unaffected.
    assert_eq!(app.primary_token(&bystander), bystander_token);

    let enabled = succeed(tokenwarden(&url).args(["site", "enable", &site.site_key]));
    assert!(
        enabled.stdout.contains(&site.site_key),
        "{}",
        enabled.stdout
    );
    // The refused invalidation changed nothing: the very same token comes back.
    assert_eventually(&app, || token_request(&app, &site).status() == 200);
    assert_eq!(app.primary_token(&site), token);
    assert_eq!(app.invalidate(&site, &token).status(), 200);
    assert_ne!(app.primary_token(&site), token);
}

fn unknown_site_keys_fail_with_a_clear_message(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let known = create_site(&db.url, "Known Store");
    let unknown = "site_AAAAAAAAAAAAAAAAAAAA";
    for command in ["rotate-auth-key", "disable", "enable"] {
        for json in [false, true] {
            let mut invocation = tokenwarden(&db.url);
            invocation.args(["site", command, unknown]);
            if json {
                invocation.arg("--json");
            }
            let failed = run(&mut invocation);
            assert_eq!(failed.status.code(), Some(1), "{command}: {failed:?}");
            assert_eq!(failed.stdout, "", "{command}: nothing for scripts to parse");
            assert_eq!(
                failed.stderr.trim(),
                format!("error: no site has the key {unknown}"),
                "{command}"
            );
        }
    }
    // The known site was not touched by any of that.
    let app = TestApp::spawn_on(db);
    assert!(app.primary_token(&known).starts_with("twp_"));
}

fn invalid_site_names_are_refused(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    for (name, message) in [
        ("", "name must not be empty"),
        ("   ", "name must not be empty"),
        ("a\u{7}b", "name must not contain control characters"),
        (&"x".repeat(101), "name must be at most 100 characters"),
    ] {
        let failed = run(tokenwarden(&db.url).args(["site", "create", "--name", name, "--json"]));
        assert_eq!(failed.status.code(), Some(1), "{name:?}: {failed:?}");
        assert_eq!(failed.stdout, "", "{name:?}");
        assert!(
            failed.stderr.starts_with("error: ") && failed.stderr.contains(message),
            "{name:?}: {}",
            failed.stderr
        );
    }
    let listed = succeed_json(tokenwarden(&db.url).args(["site", "list", "--json"]));
    assert_eq!(listed, serde_json::json!({ "sites": [] }));
}

/// The first command on a fresh SQLite file opens the pool's connections concurrently; they used
/// to race each other switching the file to WAL, and one command in five printed an r2d2 "database
/// is locked" error before its answer (store::enter_wal_mode). Twenty fresh files make a
/// regression all but certain to show.
#[test]
fn commands_on_a_fresh_sqlite_file_print_nothing_but_their_answer() {
    for attempt in 0..20 {
        let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
        let listed = run(tokenwarden(&db.url).args(["site", "list", "--json"]));
        assert!(listed.status.success(), "attempt {attempt}: {listed:?}");
        assert_eq!(listed.stderr, "", "attempt {attempt}");
        assert_eq!(listed.stdout, "{\"sites\":[]}\n", "attempt {attempt}");
    }
}

// ---------------------------------------------------------------------------------------------
// The server secret
// ---------------------------------------------------------------------------------------------

#[test]
fn sqlite_without_a_secret_creates_a_private_secret_file_that_later_commands_reuse() {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
    let url = db.url.clone();
    let secret_path = db.dir.path().join("tokenwarden.secret");
    let without_secret = || {
        let mut command = tokenwarden(&url);
        command.env_remove("TOKENWARDEN_SECRET");
        command
    };

    let site = site_keys(&succeed_json(without_secret().args([
        "site",
        "create",
        "--name",
        "Local Store",
        "--json",
    ])));
    let mode = fs::metadata(&secret_path)
        .unwrap_or_else(|e| panic!("{} was not created: {e}", secret_path.display()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {:o}", mode & 0o777);
    let secret = fs::read_to_string(&secret_path).unwrap();
    assert_eq!(secret.trim().len(), 43, "32 bytes in base64url: {secret:?}");
    assert_ne!(secret.trim(), test_secret());

    // A server reading the same file accepts what the first command created…
    let app = TestApp::spawn_with(db, |config| {
        config.secret = SecretSource::File(secret_path.clone());
    });
    let token = app.primary_token(&site);
    // …and a second command signs with the same secret: its new auth key works on that server.
    let rotated = site_keys(&succeed_json(without_secret().args([
        "site",
        "rotate-auth-key",
        &site.site_key,
        "--json",
    ])));
    assert_eq!(app.primary_token(&rotated), token);
    assert_oauth_error(token_request(&app, &site), 401, "invalid_client");
    assert_eq!(fs::read_to_string(&secret_path).unwrap(), secret);
    let mode = fs::metadata(&secret_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// A secret file anyone else can read stops the start, with the file and the fix named.
#[test]
fn a_secret_file_readable_by_others_stops_the_start() {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
    let secret_path = db.dir.path().join("tokenwarden.secret");
    let without_secret = || {
        let mut command = tokenwarden(&db.url);
        command.env_remove("TOKENWARDEN_SECRET");
        command
    };
    succeed(without_secret().args(["site", "list"]));
    fs::set_permissions(&secret_path, fs::Permissions::from_mode(0o644)).unwrap();
    for args in [vec!["site", "list"], vec!["serve", "--bind", "127.0.0.1:0"]] {
        let refused = run(without_secret().args(&args));
        assert_eq!(
            refused.status.code(),
            Some(1),
            "{args:?}: {}",
            refused.stderr
        );
        assert!(
            refused.stderr.contains(&secret_path.display().to_string())
                && refused.stderr.contains("chmod 600"),
            "{args:?}: {}",
            refused.stderr
        );
    }
}

/// `--help` of every command names environment variables but never shows their values (a
/// database URL holds a password).
#[test]
fn help_never_prints_the_value_of_an_environment_variable() {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["site"],
        &["site", "create"],
        &["site", "list"],
        &["site", "invalidate-primary"],
        &["resource-server", "create"],
        &["admin", "create"],
        &["audit", "list"],
        &["secret", "generate"],
    ];
    let help = |path: &[&str], env: &[(String, String)]| {
        let mut command = tokenwarden(&db.url);
        command.args(path).arg("--help").envs(env.iter().cloned());
        let finished = succeed(&mut command);
        finished.stdout
    };
    let mut names = std::collections::BTreeSet::new();
    for path in commands {
        for part in help(path, &[]).split("[env: ").skip(1) {
            names.insert(part.split(']').next().unwrap().to_string());
        }
    }
    assert!(names.contains("TOKENWARDEN_DATABASE_URL"), "{names:?}");
    assert!(names.contains("TOKENWARDEN_TRUSTED_PROXIES"), "{names:?}");
    let env: Vec<(String, String)> = names
        .iter()
        .map(|name| (name.clone(), format!("s3cret-value-of-{name}")))
        .chain([(
            "TOKENWARDEN_DATABASE_URL".to_string(),
            "postgres://app:s3cret-password@db/tw".to_string(),
        )])
        .collect();
    for path in commands {
        let text = help(path, &env);
        assert!(!text.contains("s3cret"), "{path:?}:\n{text}");
        assert!(text.contains("--help"), "{path:?}: {text}");
    }
}

/// Commands (or a server and a command) starting at once on a fresh SQLite database all use the one
/// secret file that was written; none may read it half-written.
#[test]
fn concurrent_first_commands_agree_on_one_secret_file() {
    const RACERS: usize = 16;
    for round in 0..6 {
        let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
        // Migrated beforehand (with an explicit secret, so no file yet): only the secret races.
        succeed(tokenwarden(&db.url).args(["site", "list"]));
        let secret_path = db.dir.path().join("tokenwarden.secret");
        assert!(!secret_path.exists());
        let racers: Vec<Running> = (0..RACERS)
            .map(|racer| {
                let name = format!("Racer {round}-{racer}");
                let child = tokenwarden(&db.url)
                    .env_remove("TOKENWARDEN_SECRET")
                    .args(["site", "create", "--name", &name, "--json"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("the tokenwarden binary runs");
                Running(child)
            })
            .collect();
        let created: Vec<SiteKeys> = racers
            .into_iter()
            .map(|mut racer| {
                let output = racer.finish();
                assert!(
                    output.status.success(),
                    "round {round}: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                site_keys(&serde_json::from_slice(&output.stdout).expect("one JSON object"))
            })
            .collect();
        let app = TestApp::spawn_with(db, |config| {
            config.secret = SecretSource::File(secret_path.clone());
        });
        for site in &created {
            assert!(app.primary_token(site).starts_with("twp_"));
        }
    }
}

#[test]
fn postgres_without_a_secret_refuses_to_start_and_says_what_to_set() {
    let Some(db) = TestDatabase::create(Backend::Postgres) else {
        return;
    };
    for args in [
        &["site", "create", "--name", "No Secret Store", "--json"][..],
        &["site", "list"][..],
    ] {
        let failed = run(tokenwarden(&db.url)
            .env_remove("TOKENWARDEN_SECRET")
            .args(args));
        assert_eq!(failed.status.code(), Some(1), "{args:?}: {failed:?}");
        assert_eq!(failed.stdout, "");
        assert!(
            failed.stderr.contains("TOKENWARDEN_SECRET"),
            "{args:?}: {}",
            failed.stderr
        );
    }
    // Nothing was created on the way to that error.
    let listed = succeed_json(tokenwarden(&db.url).args(["site", "list", "--json"]));
    assert_eq!(listed, serde_json::json!({ "sites": [] }));
}

/// Replacing the server secret (docs/security.md, "Rotating the server secret"): every stored
/// credential was keyed with the old one, so the old auth key fails; once the auth key is rotated
/// under the new secret, the site's next token request gets a new primary token (the old one,
/// sealed under the old secret, is invalidated on the way) instead of a 500.
#[test]
fn after_a_server_secret_change_a_rotated_auth_key_gets_a_new_primary_token() {
    use base64::Engine as _;
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
    let site = create_site(&db.url, "Rotating Store");
    let old_token = TestNode::spawn(&db, |_| {}).primary_token(&site);

    let new_secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
    let node = TestNode::spawn(&db, |config| {
        config.secret =
            SecretSource::Value(tokenwarden::domain::secret::Secret::new(new_secret.clone()));
    });
    let request = |site: &SiteKeys| {
        node.post_form(
            "/oauth2/token",
            Some((&site.site_key, &site.auth_key)),
            "grant_type=client_credentials",
        )
    };
    assert_oauth_error(request(&site), 401, "invalid_client");
    let rotated = site_keys(&succeed_json(
        tokenwarden(&db.url)
            .env("TOKENWARDEN_SECRET", &new_secret)
            .args(["site", "rotate-auth-key", &site.site_key, "--json"]),
    ));
    let new_token = node.primary_token(&rotated);
    assert_ne!(new_token, old_token);
    assert_eq!(
        node.primary_token(&rotated),
        new_token,
        "stable from now on"
    );
    let resource_server = node.create_resource_server("Rotation API");
    assert_eq!(
        node.introspect(&resource_server, &new_token)["active"],
        true
    );
    assert_eq!(
        node.introspect(&resource_server, &old_token)["active"],
        false
    );
}

// ---------------------------------------------------------------------------------------------
// serve
// ---------------------------------------------------------------------------------------------

#[test]
fn serve_demo_creates_the_demo_site_once_and_prints_working_credentials() {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
    let client = reqwest::blocking::Client::new();
    let stderr_file = db.dir.path().join("serve.stderr");

    // First start: a fresh database, no secret configured (the file next to it is created).
    let (mut first, address) = start_server(
        tokenwarden(&db.url).env_remove("TOKENWARDEN_SECRET"),
        &["--demo"],
        &stderr_file,
    );
    let lines = stdout_lines(&mut first);
    let printed = read_until(&lines, |line| line.contains("curl "));
    let field = |label: &str| {
        printed
            .iter()
            .find_map(|line| line.trim().strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label:?} in {printed:#?}"))
            .trim()
            .to_string()
    };
    let demo = SiteKeys {
        site_key: field("site key:"),
        auth_key: field("auth key:"),
    };
    assert!(printed[0].contains("Demo Store"), "{printed:#?}");
    let curl = printed.last().unwrap();
    for part in [
        format!("http://{address}/oauth2/token"),
        "grant_type=client_credentials".to_string(),
        format!("client_id={}", demo.site_key),
        format!("client_secret={}", demo.auth_key),
    ] {
        assert!(curl.contains(&part), "{part} missing from {curl}");
    }
    let response = client
        .post(format!("http://{address}/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", demo.site_key.as_str()),
            ("client_secret", demo.auth_key.as_str()),
        ])
        .send()
        .expect("the demo server answers");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().unwrap();
    let token = body["access_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("twp_"), "{body}");
    drop(first);

    // Second start: the site exists; only its key is named.
    let (mut second, address) = start_server(
        tokenwarden(&db.url).env_remove("TOKENWARDEN_SECRET"),
        &["--demo"],
        &stderr_file,
    );
    let lines = stdout_lines(&mut second);
    let printed = read_until(&lines, |line| line.contains(&demo.site_key)).join("\n");
    assert!(printed.contains("exists"), "{printed}");
    assert!(!printed.contains(&demo.auth_key), "{printed}");
    assert!(!printed.contains("twk_"), "{printed}");
    assert!(!printed.contains("curl"), "{printed}");
    second.wait_until_listening(address);
    let response = client
        .post(format!("http://{address}/oauth2/token"))
        .basic_auth(&demo.site_key, Some(&demo.auth_key))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .expect("the demo server answers");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().unwrap();
    assert_eq!(
        body["access_token"],
        token.as_str(),
        "same secret, same token"
    );
    drop(second);

    let listed = succeed_json(
        tokenwarden(&db.url)
            .env_remove("TOKENWARDEN_SECRET")
            .args(["site", "list", "--json"]),
    );
    let sites = listed["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 1, "{listed}");
    assert_eq!(sites[0]["name"], "Demo Store");
}

#[test]
fn serve_without_demo_invents_no_data() {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
    let stderr_file = db.dir.path().join("serve.stderr");
    let (mut server, address) = start_server(&mut tokenwarden(&db.url), &[], &stderr_file);
    server.wait_until_listening(address);
    let response = reqwest::blocking::get(format!("http://{address}/openapi.json"))
        .expect("the server answers");
    assert_eq!(response.status(), 200);
    drop(server);
    let logged = fs::read_to_string(&stderr_file).unwrap();
    assert!(
        logged.contains(&format!("tokenwarden listening on http://{address}")),
        "{logged}"
    );
    let listed = succeed_json(tokenwarden(&db.url).args(["site", "list", "--json"]));
    assert_eq!(listed, serde_json::json!({ "sites": [] }));
}
