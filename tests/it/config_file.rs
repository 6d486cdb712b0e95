//! `--config FILE`: a TOML file of global and serve settings between the defaults and the
//! environment (defaults < file < environment < flags), its errors (exit 2 naming the key or the
//! file), and `tokenwarden config show`.

use std::fs;

use reqwest::blocking::Client;
use serde_json::Value;

use crate::cli::{start_server, succeed_json, tokenwarden};
use crate::helpers::{Backend, TestDatabase};

fn wrong_then_right(address: std::net::SocketAddr, site: &crate::helpers::SiteKeys) -> u16 {
    let client = Client::new();
    let attempt = |secret: &str| {
        crate::helpers::form_request(
            &client,
            format!("http://{address}/oauth2/token"),
            Some((&site.site_key, secret)),
            "grant_type=client_credentials",
        )
        .send()
        .unwrap()
        .status()
        .as_u16()
    };
    assert_eq!(attempt("twk_wrong"), 401);
    attempt(&site.auth_key)
}

/// A file's `throttle-client-failures = 1` reaches the server: one wrong key locks the pair. The
/// environment overrides the file, and a flag the environment.
#[test]
fn the_file_sits_between_the_defaults_and_the_environment() {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
    let file = db.dir.path().join("tokenwarden.toml");
    fs::write(
        &file,
        "throttle_client_failures = 1\nusage-flush-secs = 1\ntoken-scopes = \"-odd read\"\n",
    )
    .unwrap();
    let log = db.dir.path().join("serve.log");
    let cases: [(Option<&str>, &[&str], u16); 3] = [
        (None, &[], 429),
        (Some("100"), &[], 200),
        (Some("100"), &["--throttle-client-failures", "1"], 429),
    ];
    for (environment, flags, expected) in cases {
        let site = crate::cli::create_site(&db.url, "Configured Store");
        let mut command = tokenwarden(&db.url);
        command.arg("--config").arg(&file);
        if let Some(value) = environment {
            command.env("TOKENWARDEN_THROTTLE_CLIENT_FAILURES", value);
        }
        let (mut server, address) = start_server(&mut command, flags, &log);
        server.wait_until_listening(address);
        assert_eq!(
            wrong_then_right(address, &site),
            expected,
            "environment {environment:?}, flags {flags:?}"
        );
    }
}

#[test]
fn unknown_keys_wrong_types_and_unreadable_files_stop_the_start_naming_them() {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
    let write = |name: &str, text: &str| {
        let path = db.dir.path().join(name);
        fs::write(&path, text).unwrap();
        path
    };
    let cases = [
        (
            write("unknown.toml", "throttle-windw-secs = 5\n"),
            "throttle-windw-secs",
        ),
        (write("typed.toml", "workers = \"two\"\n"), "--workers"),
        (write("switch.toml", "demo = \"yes\"\n"), "\"demo\""),
        (write("table.toml", "[serve]\nworkers = 2\n"), "\"serve\""),
        (write("syntax.toml", "workers = \n"), "syntax.toml"),
        (
            write("range.toml", "throttle-window-secs = 0\n"),
            "--throttle-window-secs",
        ),
        (db.dir.path().join("missing.toml"), "missing.toml"),
    ];
    for (path, named) in cases {
        let output = crate::cli::run(tokenwarden(&db.url).arg("--config").arg(&path).args([
            "serve",
            "--bind",
            "127.0.0.1:0",
        ]));
        assert_eq!(output.status.code(), Some(2), "{path:?}: {}", output.stderr);
        assert!(
            output.stderr.contains(named),
            "{path:?} should name {named}: {}",
            output.stderr
        );
    }
    for (path, named) in [
        (write("array.toml", "workers = [1, 2]\n"), "\"workers\""),
        (
            write("empty.toml", "trusted-proxy = []\n"),
            "\"trusted-proxy\"",
        ),
        (
            write("twice.toml", "db_timeout_ms = 1\ndb-timeout-ms = 2\n"),
            "twice",
        ),
        (write("typed2.toml", "workers = \"two\"\n"), "--workers"),
    ] {
        for command in [vec!["site", "list"], vec!["config", "show"]] {
            let output = crate::cli::run(
                tokenwarden(&db.url)
                    .arg("--config")
                    .arg(&path)
                    .args(&command),
            );
            if named == "--workers" && command[0] == "site" {
                // A serve setting of the right shape but a bad value: only serve parses it.
                assert!(output.status.success(), "{path:?}: {}", output.stderr);
                continue;
            }
            assert_eq!(
                output.status.code(),
                Some(2),
                "{path:?} {command:?}: {}",
                output.stderr
            );
            assert!(
                output.stderr.contains(named),
                "{path:?} should name {named}: {}",
                output.stderr
            );
        }
    }
    // Serve settings do not stop other commands; unknown keys do.
    let serving = write("serve.toml", "workers = 2\n");
    crate::cli::succeed(
        tokenwarden(&db.url)
            .arg("--config")
            .arg(&serving)
            .args(["site", "list"]),
    );
    let unknown = db.dir.path().join("unknown.toml");
    let refused = crate::cli::run(
        tokenwarden(&db.url)
            .arg("--config")
            .arg(&unknown)
            .args(["site", "list"]),
    );
    assert_eq!(refused.status.code(), Some(2), "{}", refused.stderr);
}

/// `config show` prints every setting with its source, the database password redacted, and its
/// text is itself a config file the server accepts.
#[test]
fn config_show_prints_the_effective_settings_and_where_they_came_from() {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
    let file = db.dir.path().join("tokenwarden.toml");
    fs::write(
        &file,
        "database = \"postgres://app:s3cret-pw@db.internal/tw\"\nworkers = 3\n\
         trusted-proxy = [\"10.0.0.1\", \"fd00::/8\"]\nthrottle-window-secs = 30\n",
    )
    .unwrap();
    let settings = succeed_json(
        tokenwarden("postgres://app:s3cret-pw@db.internal/tw")
            .env("TOKENWARDEN_WORKERS", "5")
            .arg("--config")
            .arg(&file)
            .args(["--json", "config", "show"]),
    );
    let setting = |name: &str| settings["settings"][name].clone();
    assert_eq!(
        setting("workers"),
        serde_json::json!({"value": "5", "source": "environment"})
    );
    assert_eq!(setting("throttle-window-secs")["source"], "file");
    assert_eq!(
        setting("trusted-proxy")["value"],
        serde_json::json!(["10.0.0.1", "fd00::/8"])
    );
    assert_eq!(setting("database")["source"], "flag");
    assert_eq!(
        setting("database")["value"],
        "postgres://app:<redacted>@db.internal/tw"
    );
    assert_eq!(setting("bind")["source"], "default");
    assert!(!settings.to_string().contains("s3cret-pw"), "{settings}");

    // The text form is a config file the server accepts as it is.
    let text = crate::cli::succeed(
        tokenwarden(&db.url)
            .arg("--config")
            .arg(&file)
            .args(["config", "show"]),
    )
    .stdout;
    assert!(
        text.contains("throttle-window-secs = \"30\"  # file"),
        "{text}"
    );
    assert!(!text.contains("s3cret-pw"), "{text}");
    let round_trip = db.dir.path().join("shown.toml");
    fs::write(&round_trip, &text).unwrap();
    let again: Value = succeed_json(
        tokenwarden(&db.url)
            .arg("--config")
            .arg(&round_trip)
            .args(["--json", "config", "show"]),
    );
    assert_eq!(again["settings"]["throttle-window-secs"]["value"], "30");
}

/// Layers combine: a TLS certificate from the environment and its key from the file make a pair
/// (the start then fails on the missing files, exit 1, not on the command line, exit 2); a global
/// switch from the file applies to every command; the file's arguments go before a `--`.
#[test]
fn layers_combine_and_global_settings_from_the_file_apply_to_every_command() {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
    let site = crate::cli::create_site(&db.url, "Layered Shop");
    let file = db.dir.path().join("tokenwarden.toml");
    fs::write(&file, "json = true\ntls-key = \"/nonexistent/key.pem\"\n").unwrap();
    let started = crate::cli::run(
        tokenwarden(&db.url)
            .env("TOKENWARDEN_TLS_CERT", "/nonexistent/cert.pem")
            .arg("--config")
            .arg(&file)
            .args(["serve", "--bind", "127.0.0.1:0"]),
    );
    assert_eq!(started.status.code(), Some(1), "{}", started.stderr);
    assert!(started.stderr.contains("cert.pem"), "{}", started.stderr);

    let listed = crate::cli::succeed(
        tokenwarden(&db.url)
            .arg("--config")
            .arg(&file)
            .args(["site", "list"]),
    );
    let listed: Value =
        serde_json::from_str(listed.stdout.trim()).expect("json = true from the file");
    assert!(listed["sites"].is_array(), "{listed}");

    let disabled = crate::cli::succeed(tokenwarden(&db.url).arg("--config").arg(&file).args([
        "site",
        "disable",
        "--",
        &site.site_key,
    ]));
    let disabled: Value = serde_json::from_str(disabled.stdout.trim()).unwrap();
    assert_eq!(disabled["enabled"], false);
}
