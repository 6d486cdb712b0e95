//! Nothing usable at rest: a complete copy of the database (SQLite's files byte for byte, every
//! PostgreSQL table as text) holds no auth key, no token value and not the server secret, in any
//! of the encodings they could have been stored in.

use std::fs;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use serde_json::{json, Value};
use tokenwarden::config::{self, SecretSource};
use tokenwarden::domain::admin::Role;
use tokenwarden::service::{admins, sites};

use crate::helpers::{AdminKeys, Backend, SiteKeys, TestApp, TestDatabase};

#[test]
fn sqlite_database_files_hold_no_secrets() {
    database_holds_no_secrets(Backend::Sqlite);
}

#[test]
fn postgres_tables_hold_no_secrets() {
    database_holds_no_secrets(Backend::Postgres);
}

/// What the scenario handed out (must not be in the dump) and what it stored in clear or as a
/// digest (must be, or the dump proves nothing).
#[derive(Default)]
struct Handed {
    auth_keys: Vec<String>,
    tokens: Vec<String>,
    site_keys: Vec<String>,
    digests: Vec<Vec<u8>>,
}

fn database_holds_no_secrets(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    // A random secret rather than the shared test one: a repeated byte could match by chance.
    let secret = config::generate_encoded_secret().expect("randomness");
    let server_secret = secret.expose().to_string();
    let app = TestApp::spawn_with(db, |config| config.secret = SecretSource::Value(secret));
    let handed = exercise(&app);

    let dump = match backend {
        Backend::Sqlite => sqlite_files(&app),
        Backend::Postgres => postgres_tables(&app),
    };

    for site_key in &handed.site_keys {
        assert!(
            dump.contains(site_key.as_str()),
            "the dump misses {site_key}"
        );
    }
    for digest in &handed.digests {
        let stored = match backend {
            Backend::Sqlite => latin1(digest),
            Backend::Postgres => hex(digest),
        };
        assert!(dump.contains(&stored), "the dump misses a digest");
    }
    for (what, value) in handed
        .auth_keys
        .iter()
        .map(|value| ("auth key", value))
        .chain(handed.tokens.iter().map(|value| ("token", value)))
    {
        for (form, needle) in minted_value_forms(value) {
            assert!(
                !dump.contains(&needle),
                "{what} {value} is stored as {form}"
            );
        }
    }
    let raw_secret = URL_SAFE_NO_PAD.decode(&server_secret).unwrap();
    for (form, needle) in [
        ("base64url", server_secret.clone()),
        ("raw bytes", latin1(&raw_secret)),
        ("hex", hex(&raw_secret)),
        ("HEX", hex(&raw_secret).to_uppercase()),
    ] {
        assert!(
            !dump.contains(&needle),
            "the server secret is stored as {form}"
        );
    }
}

/// Two sites with regenerated tokens and a rotated auth key, an admin with admin tokens, and
/// non-primary tokens created and regenerated: every write path for secrets.
fn exercise(app: &TestApp) -> Handed {
    let mut handed = Handed::default();
    let first = app.create_site("Secret Store");
    let second = app.create_site("Other Store");

    let token = app.primary_token(&first);
    assert_eq!(app.primary_token(&first), token);
    assert_eq!(app.invalidate(&first, &token).status(), 200);
    let reminted = app.primary_token(&first);
    assert_ne!(reminted, token);
    handed.tokens.extend([token, reminted.clone()]);

    let other_token = app.primary_token(&second);
    let revoked = app.post_form(
        "/oauth2/revoke",
        Some((&second.site_key, &second.auth_key)),
        &format!("token={other_token}"),
    );
    assert_eq!(revoked.status(), 200);
    let rotated = sites::rotate_auth_key(
        &app.context,
        &crate::helpers::operator(),
        &second.site_key,
        tokenwarden::domain::rotation::Overlap::NONE,
        tokenwarden::clock::now(),
    )
    .expect("rotate");
    let second_now = SiteKeys {
        auth_key: rotated.auth_key.expose().to_string(),
        ..second.clone()
    };
    let other_reminted = app.primary_token(&second_now);
    assert_ne!(other_reminted, other_token);
    handed.tokens.extend([other_token, other_reminted.clone()]);

    handed.auth_keys.extend([
        first.auth_key.clone(),
        second.auth_key.clone(),
        second_now.auth_key.clone(),
    ]);
    let (admin, admin_secret) = admins::create(
        &app.context,
        &crate::helpers::operator(),
        "Secret Keeper",
        Role::PlatformAdmin,
        &[],
        tokenwarden::clock::now(),
    )
    .expect("an admin");
    let admin = AdminKeys {
        client_id: admin.admin.client_id,
        client_secret: admin_secret.expose().to_string(),
        name: admin.admin.name,
    };
    let admin_tokens = [app.admin_token(&admin), app.admin_token(&admin)];
    let tokens_path = format!("/admin/v1/sites/{}/tokens", first.site_key);
    let created = app.admin_post(
        &admin_tokens[0],
        &tokens_path,
        Some(&json!({"description": "Partner"})),
    );
    assert_eq!(created.status(), 201);
    let created: Value = created.json().unwrap();
    let regenerated = app.admin_post(
        &admin_tokens[0],
        &format!("{tokens_path}/{}/regenerate", created["id"]),
        None,
    );
    assert_eq!(regenerated.status(), 200);
    let regenerated: Value = regenerated.json().unwrap();
    let secondary_values = [&created, &regenerated].map(|answer| {
        answer["value"]
            .as_str()
            .expect("a value in the answer")
            .to_string()
    });
    handed.tokens.extend(secondary_values.iter().cloned());
    handed.tokens.extend(admin_tokens.iter().cloned());
    handed.auth_keys.push(admin.client_secret.clone());

    handed.site_keys.extend([first.site_key, second.site_key]);
    let keys = &app.context.keys;
    handed.digests.extend([
        keys.token_digest(&secondary_values[1]),
        keys.token_digest(&admin_tokens[1]),
        keys.client_secret_digest(&admin.client_secret),
    ]);
    handed.digests.extend([
        keys.token_digest(&reminted),
        keys.token_digest(&other_reminted),
        keys.client_secret_digest(&first.auth_key),
        keys.client_secret_digest(&second_now.auth_key),
    ]);
    handed
}

/// Every encoding a minted value (`<prefix><43 base64url chars><checksum>`) could be stored in.
fn minted_value_forms(value: &str) -> Vec<(&'static str, String)> {
    assert_eq!(value.len(), 53, "{value}");
    let body = &value[4..47];
    let random = URL_SAFE_NO_PAD.decode(body).expect("a base64url body");
    assert_eq!(random.len(), 32);
    vec![
        ("the value", value.to_string()),
        ("its body", body.to_string()),
        ("its hex", hex(value.as_bytes())),
        ("its HEX", hex(value.as_bytes()).to_uppercase()),
        ("its random bytes", latin1(&random)),
        ("the random bytes' hex", hex(&random)),
        ("the random bytes' HEX", hex(&random).to_uppercase()),
        ("the random bytes in base64", STANDARD.encode(&random)),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Bytes as a string of the chars U+0000..U+00FF, so `str::contains` (fast even in a debug build)
/// can search binary data: UTF-8 is self-synchronising, so a match is a match of the bytes.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&byte| char::from(byte)).collect()
}

/// Every file of the SQLite database (main file, WAL, shared memory), read while the server runs,
/// so rows not yet checkpointed into the main file are included, as are freed pages.
fn sqlite_files(app: &TestApp) -> String {
    let database = app.db.sqlite_path().expect("an SQLite database");
    let mut files = Vec::new();
    let mut dump = String::new();
    for entry in fs::read_dir(app.db.dir.path()).expect("the database directory") {
        let path = entry.expect("a directory entry").path();
        files.push(path.file_name().unwrap().to_string_lossy().into_owned());
        dump.push_str(&latin1(&fs::read(&path).expect("a readable file")));
    }
    assert!(
        files.iter().any(|name| database.ends_with(name)),
        "{files:?}"
    );
    dump
}

#[derive(QueryableByName)]
struct TextRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    text: String,
}

/// Every row of every table in the public schema, in PostgreSQL's text form (`bytea` as `\x` hex).
fn postgres_tables(app: &TestApp) -> String {
    let mut conn = PgConnection::establish(&app.db.url).expect("a PostgreSQL connection");
    let tables: Vec<String> = diesel::sql_query(
        "SELECT tablename::text AS text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .load::<TextRow>(&mut conn)
    .expect("the table list")
    .into_iter()
    .map(|row| row.text)
    .collect();
    for expected in ["sites", "tokens", "token_events", "admins", "admin_tokens"] {
        assert!(tables.iter().any(|table| table == expected), "{tables:?}");
    }
    let mut dump = String::new();
    for table in &tables {
        let rows = diesel::sql_query(format!("SELECT t::text AS text FROM \"{table}\" t"))
            .load::<TextRow>(&mut conn)
            .unwrap_or_else(|e| panic!("dump {table}: {e}"));
        for row in rows {
            dump.push_str(&row.text);
            dump.push('\n');
        }
    }
    dump
}
