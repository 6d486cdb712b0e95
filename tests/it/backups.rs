//! `tokenwarden backup` and `tokenwarden restore`: a copy taken while the server runs, an existing
//! file refused unless `--force`, and a restore that ends the tokens a backup would bring back
//! (one invalidated after the backup is active in it), unless told to keep them.

use reqwest::blocking::Client;
use serde_json::Value;

use crate::cli::{run, succeed_json, tokenwarden};
use crate::helpers::{form_request, introspect_at, Backend, ServerProcess, TestApp, TestDatabase};

fn token_at(client: &Client, server: &ServerProcess, site: &crate::helpers::SiteKeys) -> String {
    let answer: Value = form_request(
        client,
        format!("{}/oauth2/token", server.base_url),
        Some((&site.site_key, &site.auth_key)),
        "grant_type=client_credentials",
    )
    .send()
    .expect("the token request reaches the server")
    .json()
    .expect("a JSON answer");
    answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {answer}"))
        .to_string()
}

fn active_at(client: &Client, server: &ServerProcess, api: &Value, token: &str) -> bool {
    introspect_at(client, &server.base_url, api, token)["active"] == true
}

#[test]
fn a_restore_ends_the_tokens_a_backup_would_bring_back() {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite");
    let url = db.url.clone();
    let copy = db.dir.path().join("copy.db");
    let copy_arg = copy.to_str().unwrap();
    let site = crate::cli::create_site(&url, "Backed Up Shop");
    let api = succeed_json(tokenwarden(&url).args([
        "resource-server",
        "create",
        "--name",
        "Checker",
        "--json",
    ]));
    let client = Client::new();
    let mut server = ServerProcess::start(&url, &[]);
    let first = token_at(&client, &server, &site);
    assert!(active_at(&client, &server, &api, &first));

    // Taken while the server runs; then the first token is invalidated and a second minted.
    let backup = succeed_json(tokenwarden(&url).args(["backup", "--to", copy_arg, "--json"]));
    assert!(backup["bytes"].as_u64().unwrap() > 0, "{backup}");
    assert_eq!(backup["file"], copy_arg);
    let invalidated = form_request(
        &client,
        format!("{}/oauth2/invalidate_token", server.base_url),
        Some((&site.site_key, &site.auth_key)),
        &format!("access_token={first}"),
    )
    .send()
    .unwrap();
    assert_eq!(invalidated.status(), 200);
    let second = token_at(&client, &server, &site);
    assert_ne!(second, first);

    // An existing file is refused without --force, and left as it was.
    let before = std::fs::read(&copy).unwrap();
    let refused = run(tokenwarden(&url).args(["backup", "--to", copy_arg]));
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains("exists; use --force"),
        "{}",
        refused.stderr
    );
    assert_eq!(std::fs::read(&copy).unwrap(), before);

    // --keep-tokens shows what a restore would bring back: the invalidated token, active again.
    server.kill();
    let kept = succeed_json(tokenwarden(&url).args([
        "restore",
        "--from",
        copy_arg,
        "--keep-tokens",
        "--json",
    ]));
    assert_eq!(kept["tokens_ended"], Value::Null, "{kept}");
    assert_eq!(kept["taken_at"], backup["taken_at"], "{kept}");
    let mut server = ServerProcess::start(&url, &[]);
    assert!(active_at(&client, &server, &api, &first), "revived");
    assert!(
        !active_at(&client, &server, &api, &second),
        "not in the backup"
    );

    // The default restore ends it, and the site's next request mints a new one.
    server.kill();
    let restored = succeed_json(tokenwarden(&url).args(["restore", "--from", copy_arg, "--json"]));
    assert_eq!(restored["tokens_ended"], 1, "{restored}");
    assert_eq!(restored["taken_at"], backup["taken_at"], "{restored}");
    let server = ServerProcess::start(&url, &[]);
    assert!(
        !active_at(&client, &server, &api, &first),
        "ended by the restore"
    );
    assert!(!active_at(&client, &server, &api, &second));
    let third = token_at(&client, &server, &site);
    assert!(third != first && third != second);
    assert!(active_at(&client, &server, &api, &third));

    let events = succeed_json(tokenwarden(&url).args([
        "audit",
        "list",
        "--action",
        "backup_restored",
        "--json",
    ]));
    let events = events["events"].as_array().unwrap();
    assert_eq!(
        events.len(),
        1,
        "the kept restore ended nothing: {events:?}"
    );
    let detail = events[0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!(
            "restored from a backup taken at {}",
            backup["taken_at"].as_str().unwrap()
        )),
        "{detail}"
    );
    // The restored file is whole on its own: no -wal or -shm of the replaced one was kept.
    assert!(std::fs::read_dir(db.dir.path()).unwrap().all(|entry| !entry
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("tokenwarden-")));
}

/// PostgreSQL is backed up with its own tools; after restoring a dump, `restore` without a file
/// ends the tokens of the database as it is.
#[test]
fn on_postgresql_backup_is_refused_and_restore_ends_the_restored_tokens() {
    let Some(db) = TestDatabase::create(Backend::Postgres) else {
        return;
    };
    let app = TestApp::spawn_on(db);
    let site = app.create_site("Dumped Shop");
    let api = app.create_resource_server("Dumped API");
    let token = app.primary_token(&site);
    assert_eq!(app.introspect(&api, &token)["active"], true);

    let file = app.db.dir.path().join("never.db");
    let refused = run(tokenwarden(&app.db.url).args(["backup", "--to", file.to_str().unwrap()]));
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains("SQLite database only"),
        "{}",
        refused.stderr
    );
    assert!(!file.exists());

    let restored = succeed_json(tokenwarden(&app.db.url).args(["restore", "--json"]));
    assert_eq!(restored["tokens_ended"], 1, "{restored}");
    assert_eq!(restored["taken_at"], Value::Null, "{restored}");
    assert_eq!(app.introspect(&api, &token)["active"], false);
    assert_ne!(app.primary_token(&site), token);
}
