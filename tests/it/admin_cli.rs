//! `tokenwarden admin …` (issue 4): creating, listing, assigning and disabling admin principals
//! with the real binary, what those changes do to a running server at once, and the server log of
//! admin actions (attributable, and never a token value).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::blocking::Client;
use serde_json::{json, Value};
use tokenwarden::domain::token::{self, SecretKind};

use crate::cli::{create_site, free_port, run, succeed, succeed_json, tokenwarden, Running};
use crate::helpers::{
    assert_admin_error, assert_oauth_error, create_admin, AdminKeys, Backend, TestApp, TestDatabase,
};

crate::per_backend!(
    create_prints_the_secret_once_and_stores_only_a_digest,
    create_in_text_mode_shows_the_secret_once,
    create_refuses_inconsistent_input_and_creates_nothing,
    list_shows_every_admin_without_secrets,
    assign_and_unassign_report_the_sites_after_the_change,
    assign_and_unassign_refuse_bad_targets,
    disabling_an_admin_refuses_its_tokens_at_once_and_enable_restores_it,
    unassigning_a_site_takes_effect_at_once,
    admin_actions_are_logged_with_action_admin_site_and_token_id,
    admin_api_logs_at_trace_hold_no_token_values,
);

const NOWHERE: &str = "site_AAAAAAAAAAAAAAAAAAAA";

/// `tokenwarden --database URL admin ARGS…`.
fn admin(database: &str, args: &[&str]) -> Command {
    let mut command = tokenwarden(database);
    command.arg("admin").args(args);
    command
}

fn admin_json(database: &str, args: &[&str]) -> Value {
    let mut command = admin(database, args);
    command.arg("--json");
    succeed_json(&mut command)
}

/// Runs an admin command that must fail: non-zero exit, nothing on stdout, a message on stderr.
fn refused(database: &str, args: &[&str]) {
    let mut command = admin(database, args);
    command.arg("--json");
    let failed = run(&mut command);
    assert!(
        !failed.status.success(),
        "admin {args:?} should fail: {failed:?}"
    );
    assert_eq!(
        failed.stdout, "",
        "admin {args:?}: nothing for scripts to parse"
    );
    assert!(
        !failed.stderr.trim().is_empty(),
        "admin {args:?}: no message on stderr"
    );
}

fn listed_admins(database: &str) -> Vec<Value> {
    let listed = admin_json(database, &["list"]);
    assert_eq!(
        listed.as_object().map(|o| o.len()),
        Some(1),
        "only admins: {listed}"
    );
    listed["admins"]
        .as_array()
        .unwrap_or_else(|| panic!("no admins array: {listed}"))
        .clone()
}

fn listed_admin(database: &str, client_id: &str) -> Value {
    listed_admins(database)
        .into_iter()
        .find(|entry| entry["client_id"] == client_id)
        .unwrap_or_else(|| panic!("{client_id} is not listed"))
}

fn sorted_sites(value: &Value) -> Vec<String> {
    let mut sites: Vec<String> = value["sites"]
        .as_array()
        .unwrap_or_else(|| panic!("no sites array: {value}"))
        .iter()
        .map(|site| site.as_str().unwrap().to_string())
        .collect();
    sites.sort();
    sites
}

fn sorted(keys: &[&str]) -> Vec<String> {
    let mut keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    keys.sort();
    keys
}

fn keys_of(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Asserts that no copy of `secret` is stored: not in the SQLite files (any encoding a digest
/// column or text column could hold it in), not in any `admins` row on PostgreSQL.
fn assert_not_stored(db: &TestDatabase, secret: &str) {
    let needles = [
        secret.to_string(),
        hex(secret.as_bytes()),
        hex(&URL_SAFE_NO_PAD.decode(&secret[4..47]).unwrap()),
    ];
    match db.backend {
        Backend::Sqlite => {
            let base = db.sqlite_path().unwrap();
            let mut files = vec![base.clone()];
            for suffix in ["-wal", "-journal"] {
                let mut name = base.clone().into_os_string();
                name.push(suffix);
                files.push(name.into());
            }
            let raw = URL_SAFE_NO_PAD.decode(&secret[4..47]).unwrap();
            for file in files.iter().filter(|f| f.exists()) {
                let bytes = fs::read(file).unwrap();
                let text = String::from_utf8_lossy(&bytes);
                for needle in &needles {
                    assert!(
                        !text.contains(needle.as_str()),
                        "{} holds the admin secret as {needle}",
                        file.display()
                    );
                }
                assert!(
                    !bytes.windows(raw.len()).any(|w| w == raw.as_slice()),
                    "{} holds the admin secret's random bytes",
                    file.display()
                );
            }
        }
        Backend::Postgres => {
            for needle in &needles {
                let found = db.count(&format!(
                    "SELECT COUNT(*) AS n FROM admins a WHERE strpos(CAST(a AS TEXT), '{needle}') > 0"
                ));
                assert_eq!(found, 0, "an admins row holds the secret as {needle}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// admin create / list
// ---------------------------------------------------------------------------------------------

fn create_prints_the_secret_once_and_stores_only_a_digest(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let url = db.url.clone();
    let first = create_site(&url, "First Store");
    let second = create_site(&url, "Second Store");

    let platform = admin_json(
        &url,
        &["create", "--name", "Ops Lead", "--role", "platform-admin"],
    );
    assert_eq!(
        keys_of(&platform),
        [
            "client_id",
            "client_secret",
            "created_at",
            "enabled",
            "name",
            "role",
            "sites"
        ],
        "{platform}"
    );
    assert_eq!(platform["name"], "Ops Lead");
    assert_eq!(platform["role"], "platform-admin");
    assert_eq!(platform["sites"], json!([]));
    let client_id = platform["client_id"].as_str().unwrap().to_string();
    let secret = platform["client_secret"].as_str().unwrap().to_string();
    assert!(client_id.starts_with("adm_"), "{platform}");
    assert_eq!(
        token::recognise(&secret),
        Ok(SecretKind::AdminSecret),
        "{secret:?} is not an admin secret"
    );

    let manager = admin_json(
        &url,
        &[
            "create",
            "--name",
            "Shop Keeper",
            "--role",
            "site-manager",
            "--site",
            &first.site_key,
            "--site",
            &second.site_key,
        ],
    );
    assert_eq!(manager["role"], "site-manager", "{manager}");
    assert_eq!(
        sorted_sites(&manager),
        sorted(&[&first.site_key, &second.site_key])
    );
    let manager_secret = manager["client_secret"].as_str().unwrap().to_string();
    assert_ne!(manager_secret, secret);
    assert_ne!(manager["client_id"], platform["client_id"]);

    assert_eq!(db.count("SELECT COUNT(*) AS n FROM admins"), 2);
    assert_eq!(
        db.count("SELECT COUNT(*) AS n FROM admins WHERE length(secret_digest) >= 16"),
        2,
        "each admin has a digest"
    );
    assert_not_stored(&db, &secret);
    assert_not_stored(&db, &manager_secret);

    // The printed credentials work, and only they do.
    let app = TestApp::spawn_on(db);
    for (client_id, secret) in [
        (&client_id, &secret),
        (
            &manager["client_id"].as_str().unwrap().to_string(),
            &manager_secret,
        ),
    ] {
        let keys = AdminKeys {
            client_id: client_id.clone(),
            client_secret: secret.clone(),
            name: String::new(),
        };
        app.admin_token(&keys);
    }
    let swapped = app.post_form(
        "/oauth2/token",
        Some((&client_id, &manager_secret)),
        "grant_type=client_credentials&scope=admin",
    );
    assert_oauth_error(swapped, 401, "invalid_client");
}

fn create_in_text_mode_shows_the_secret_once(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let created = succeed(&mut admin(
        &db.url,
        &["create", "--name", "Text Admin", "--role", "platform-admin"],
    ));
    assert!(
        !created.stdout.trim_start().starts_with('{'),
        "text, not JSON: {}",
        created.stdout
    );
    // Every distinct value with `prefix` that stdout shows, and how often it shows it.
    let values = |prefix: &str| {
        let words: Vec<&str> = created
            .stdout
            .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .filter(|word| word.starts_with(prefix))
            .map(|word| word.trim_end_matches(['.', ',']))
            .collect();
        let distinct: BTreeSet<&str> = words.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            1,
            "one {prefix} value in {:?}",
            created.stdout
        );
        (words[0].to_string(), words.len())
    };
    let (client_id, _) = values("adm_");
    let (client_secret, shown) = values("twm_");
    assert_eq!(shown, 1, "the secret is shown once: {:?}", created.stdout);
    let keys = AdminKeys {
        client_id,
        client_secret,
        name: "Text Admin".into(),
    };
    assert!(created.stdout.contains("Text Admin"), "{}", created.stdout);
    let app = TestApp::spawn_on(db);
    app.admin_token(&keys);
}

fn create_refuses_inconsistent_input_and_creates_nothing(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let url = db.url.clone();
    let site = create_site(&url, "Only Store");
    let key = site.site_key.as_str();
    create_admin(&url, "Taken Name", "platform-admin", &[]);
    let cases: [&[&str]; 11] = [
        &[
            "create",
            "--name",
            "Lonely Manager",
            "--role",
            "site-manager",
        ],
        &[
            "create",
            "--name",
            "Scoped Platform",
            "--role",
            "platform-admin",
            "--site",
            key,
        ],
        &[
            "create",
            "--name",
            "Lost Manager",
            "--role",
            "site-manager",
            "--site",
            NOWHERE,
        ],
        &[
            "create",
            "--name",
            "Half Lost",
            "--role",
            "site-manager",
            "--site",
            key,
            "--site",
            NOWHERE,
        ],
        &["create", "--name", "Taken Name", "--role", "platform-admin"],
        &[
            "create",
            "--name",
            "Taken Name",
            "--role",
            "site-manager",
            "--site",
            key,
        ],
        &["create", "--name", "", "--role", "platform-admin"],
        &["create", "--name", "   ", "--role", "platform-admin"],
        &["create", "--name", "Root", "--role", "root"],
        &["create", "--role", "platform-admin"],
        &["create", "--name", "No Role"],
    ];
    for args in cases {
        refused(&url, args);
    }
    let admins = listed_admins(&url);
    assert_eq!(admins.len(), 1, "only the first admin exists: {admins:?}");
    assert_eq!(admins[0]["name"], "Taken Name");
    assert_eq!(db.count("SELECT COUNT(*) AS n FROM admins"), 1);
}

fn list_shows_every_admin_without_secrets(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let url = db.url.clone();
    assert_eq!(admin_json(&url, &["list"]), json!({"admins": []}));
    let first = create_site(&url, "List One");
    let second = create_site(&url, "List Two");
    let platform = create_admin(&url, "Alice Admin", "platform-admin", &[]);
    let manager = create_admin(
        &url,
        "Bob Manager",
        "site-manager",
        &[&first.site_key, &second.site_key],
    );
    let admins = listed_admins(&url);
    assert_eq!(admins.len(), 2, "{admins:?}");
    for (keys, role, sites) in [
        (&platform, "platform-admin", vec![]),
        (
            &manager,
            "site-manager",
            sorted(&[&first.site_key, &second.site_key]),
        ),
    ] {
        let entry = listed_admin(&url, &keys.client_id);
        assert_eq!(
            keys_of(&entry),
            [
                "client_id",
                "created_at",
                "enabled",
                "name",
                "role",
                "sites"
            ],
            "{entry}"
        );
        assert_eq!(entry["name"], keys.name.as_str(), "{entry}");
        assert_eq!(entry["role"], role, "{entry}");
        assert_eq!(entry["enabled"], true, "{entry}");
        assert_eq!(sorted_sites(&entry), sites, "{entry}");
        let created_at = entry["created_at"].as_str().unwrap_or_default();
        let created_at = chrono::DateTime::parse_from_rfc3339(created_at)
            .unwrap_or_else(|e| panic!("created_at {created_at:?}: {e}"));
        assert!(
            (tokenwarden::clock::now().and_utc().timestamp() - created_at.timestamp()).abs() < 300
        );
    }
    let json_text = admin_json(&url, &["list"]).to_string();
    let text = succeed(&mut admin(&url, &["list"])).stdout;
    for (form, output) in [("JSON", &json_text), ("text", &text)] {
        for secret in [&platform.client_secret, &manager.client_secret] {
            assert!(
                !output.contains(secret.as_str()),
                "{form} list shows a secret"
            );
        }
        assert!(!output.contains("twm_"), "{form} list: {output}");
    }
    for expected in [
        "Alice Admin",
        "Bob Manager",
        &platform.client_id,
        &manager.client_id,
    ] {
        assert!(text.contains(expected), "{expected} missing from {text}");
    }
}

// ---------------------------------------------------------------------------------------------
// admin assign / unassign
// ---------------------------------------------------------------------------------------------

fn assign_and_unassign_report_the_sites_after_the_change(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let url = db.url.clone();
    let [one, two, three] = ["One", "Two", "Three"].map(|name| create_site(&url, name).site_key);
    let manager = create_admin(&url, "Moving Manager", "site-manager", &[&one]);
    let id = manager.client_id.as_str();

    let assigned = admin_json(&url, &["assign", id, "--site", &two, "--site", &three]);
    assert_eq!(
        keys_of(&assigned),
        [
            "client_id",
            "created_at",
            "enabled",
            "name",
            "role",
            "sites"
        ],
        "{assigned}"
    );
    assert_eq!(assigned["client_id"], id);
    assert_eq!(sorted_sites(&assigned), sorted(&[&one, &two, &three]));
    assert_eq!(
        sorted_sites(&listed_admin(&url, id)),
        sorted(&[&one, &two, &three])
    );

    let unassigned = admin_json(&url, &["unassign", id, "--site", &one, "--site", &three]);
    assert_eq!(
        keys_of(&unassigned),
        [
            "client_id",
            "created_at",
            "enabled",
            "name",
            "role",
            "sites"
        ],
        "{unassigned}"
    );
    assert_eq!(unassigned["client_id"], id);
    assert_eq!(sorted_sites(&unassigned), sorted(&[&two]));
    assert_eq!(sorted_sites(&listed_admin(&url, id)), sorted(&[&two]));
}

fn assign_and_unassign_refuse_bad_targets(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let url = db.url.clone();
    let site = create_site(&url, "Target Store");
    let key = site.site_key.as_str();
    let platform = create_admin(&url, "Everywhere Admin", "platform-admin", &[]);
    let manager = create_admin(&url, "Somewhere Manager", "site-manager", &[key]);
    let other = create_site(&url, "Other Target Store");
    for args in [
        vec!["assign", platform.client_id.as_str(), "--site", key],
        vec!["assign", "adm_AAAAAAAAAAAAAAAAAAAA", "--site", key],
        vec!["unassign", "adm_AAAAAAAAAAAAAAAAAAAA", "--site", key],
        vec!["assign", manager.client_id.as_str(), "--site", NOWHERE],
        vec![
            "assign",
            manager.client_id.as_str(),
            "--site",
            &other.site_key,
            "--site",
            NOWHERE,
        ],
        vec!["disable", "adm_AAAAAAAAAAAAAAAAAAAA"],
        vec!["enable", "adm_AAAAAAAAAAAAAAAAAAAA"],
    ] {
        refused(&url, &args);
    }
    assert_eq!(
        listed_admin(&url, &platform.client_id)["sites"],
        json!([]),
        "a platform admin has no site list"
    );
    assert_eq!(
        sorted_sites(&listed_admin(&url, &manager.client_id)),
        sorted(&[key]),
        "refused assignments changed nothing"
    );
}

// ---------------------------------------------------------------------------------------------
// Changes seen by a running server at once
// ---------------------------------------------------------------------------------------------

fn disabling_an_admin_refuses_its_tokens_at_once_and_enable_restores_it(backend: Backend) {
    let Some(app) = TestApp::spawn(backend) else {
        return;
    };
    let site = app.create_site("Watched Store");
    let admin = app.create_platform_admin("Soon Disabled");
    // Another platform admin stays enabled: the last one cannot be disabled.
    app.create_platform_admin("Keeper");
    let bystander = app.create_site_manager("Bystander", &[&site]);
    let token = app.admin_token(&admin);
    let bystander_token = app.admin_token(&bystander);
    let tokens_path = format!("/admin/v1/sites/{}/tokens", site.site_key);
    app.admin_get_ok(&token, "/admin/v1/sites");
    app.admin_get_ok(&token, &tokens_path);

    let disabled = app.admin_cli(&["disable", &admin.client_id]);
    assert_eq!(
        disabled["client_id"],
        admin.client_id.as_str(),
        "{disabled}"
    );
    assert_eq!(disabled["enabled"], false, "{disabled}");
    assert_eq!(
        listed_admin(&app.db.url, &admin.client_id)["enabled"],
        false
    );

    for path in ["/admin/v1/sites", tokens_path.as_str()] {
        let response = app.admin_get(&token, path);
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer") && challenge.contains("error=\"invalid_token\""),
            "GET {path} by a disabled admin: {challenge:?}"
        );
        assert_admin_error(
            response,
            401,
            "invalid_token",
            &format!("GET {path} by a disabled admin"),
        );
    }
    let create = app.admin_post(
        &token,
        &tokens_path,
        Some(&json!({"description": "Too Late"})),
    );
    assert_admin_error(create, 401, "invalid_token", "create by a disabled admin");
    assert_eq!(
        app.db.count("SELECT COUNT(*) AS n FROM tokens"),
        0,
        "nothing was created"
    );
    assert_oauth_error(app.admin_token_request(&admin), 401, "invalid_client");
    let by_body = app.post_form(
        "/oauth2/token",
        None,
        &format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            admin.client_id, admin.client_secret
        ),
    );
    assert_oauth_error(by_body, 401, "invalid_client");
    // Other admins are unaffected.
    app.admin_get_ok(&bystander_token, &tokens_path);

    let enabled = app.admin_cli(&["enable", &admin.client_id]);
    assert_eq!(enabled["client_id"], admin.client_id.as_str(), "{enabled}");
    assert_eq!(enabled["enabled"], true, "{enabled}");
    let fresh = app.admin_token(&admin);
    app.admin_get_ok(&fresh, &tokens_path);
}

/// A 404's body with the site key replaced (the message may name the key it did not find).
fn not_found_text(response: reqwest::blocking::Response, site_key: &str, what: &str) -> String {
    let status = response.status();
    let text = response.text().unwrap();
    assert_eq!(status, 404, "{what}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"], "not_found", "{what}: {body}");
    text.replace(site_key, "SITE")
}

fn unassigning_a_site_takes_effect_at_once(backend: Backend) {
    let Some(app) = TestApp::spawn(backend) else {
        return;
    };
    let kept = app.create_site("Kept Store");
    let lost = app.create_site("Lost Store");
    let manager = app.create_site_manager("Shrinking Manager", &[&kept, &lost]);
    let token = app.admin_token(&manager);
    let lost_path = format!("/admin/v1/sites/{}", lost.site_key);
    app.admin_get_ok(&token, &lost_path);
    app.admin_get_ok(&token, &format!("{lost_path}/tokens"));
    let listed = app.admin_get_ok(&token, "/admin/v1/sites");
    assert_eq!(listed["total"], 2, "{listed}");

    let after = app.admin_cli(&["unassign", &manager.client_id, "--site", &lost.site_key]);
    assert_eq!(sorted_sites(&after), sorted(&[&kept.site_key]));

    // The very next requests with the same admin token.
    let nowhere_path = format!("/admin/v1/sites/{NOWHERE}");
    for suffix in ["", "/tokens"] {
        let lost_text = not_found_text(
            app.admin_get(&token, &format!("{lost_path}{suffix}")),
            &lost.site_key,
            &format!("GET {lost_path}{suffix} after unassign"),
        );
        let nowhere_text = not_found_text(
            app.admin_get(&token, &format!("{nowhere_path}{suffix}")),
            NOWHERE,
            &format!("GET {nowhere_path}{suffix}"),
        );
        assert_eq!(lost_text, nowhere_text, "unassigned looks like nonexistent");
    }
    let create = app.admin_post(
        &token,
        &format!("{lost_path}/tokens"),
        Some(&json!({"description": "After Unassign"})),
    );
    assert_admin_error(create, 404, "not_found", "create on an unassigned site");
    assert_eq!(app.db.count("SELECT COUNT(*) AS n FROM tokens"), 0);
    let listed = app.admin_get_ok(&token, "/admin/v1/sites");
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["sites"][0]["site_key"], kept.site_key.as_str());

    app.admin_cli(&["assign", &manager.client_id, "--site", &lost.site_key]);
    app.admin_get_ok(&token, &lost_path);
}

// ---------------------------------------------------------------------------------------------
// The server log
// ---------------------------------------------------------------------------------------------

fn admin_actions_are_logged_with_action_admin_site_and_token_id(backend: Backend) {
    let Some(logged) = exercise_with_log(backend, None) else {
        return;
    };
    for (action, stem, id) in &logged.actions {
        assert!(
            action_logged(
                &logged.text,
                &logged.admin_name,
                &logged.site_key,
                *id,
                stem
            ),
            "no log line names {action} ({stem}…), admin {:?}, site {} and token id {id}:\n{}",
            logged.admin_name,
            logged.site_key,
            lines_containing(&logged.text, &logged.site_key)
        );
    }
    assert_no_values(&logged, "the server log at the default level");
}

fn admin_api_logs_at_trace_hold_no_token_values(backend: Backend) {
    let Some(logged) = exercise_with_log(backend, Some("trace")) else {
        return;
    };
    assert!(
        logged.text.contains(" TRACE "),
        "RUST_LOG=trace took effect"
    );
    assert_no_values(&logged, "the server log at trace");
}

/// What a server logged while an admin used every admin endpoint.
struct Logged {
    text: String,
    cli_stderr: String,
    admin_name: String,
    site_key: String,
    /// (action, word stem a log line names it by, token id)
    actions: Vec<(&'static str, &'static str, i64)>,
    /// Secrets handed out: admin secret, admin token, token values.
    secrets: Vec<String>,
}

/// Runs the real binary as a server (`RUST_LOG` as given, else its default), has a platform admin
/// create, regenerate, invalidate and validate a token, and returns the log.
fn exercise_with_log(backend: Backend, rust_log: Option<&str>) -> Option<Logged> {
    let db = TestDatabase::create(backend)?;
    let with_level = |command: &mut Command| {
        if let Some(level) = rust_log {
            command.env("RUST_LOG", level);
        }
    };
    let site = create_site(&db.url, "Audit Store");
    let mut create = admin(
        &db.url,
        &[
            "create",
            "--name",
            "Audit Officer",
            "--role",
            "platform-admin",
            "--json",
        ],
    );
    with_level(&mut create);
    let created = run(&mut create);
    assert!(created.status.success(), "{created:?}");
    let cli_stderr = created.stderr.clone();
    let created_admin: Value = serde_json::from_str(&created.stdout).expect("one JSON object");
    let admin_keys = AdminKeys {
        client_id: created_admin["client_id"].as_str().unwrap().to_string(),
        client_secret: created_admin["client_secret"].as_str().unwrap().to_string(),
        name: "Audit Officer".into(),
    };

    let server_log = db.dir.path().join("server.log");
    let server_stdout = db.dir.path().join("server.stdout");
    let address: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut serve = tokenwarden(&db.url);
    with_level(&mut serve);
    let child = serve
        .args(["serve", "--workers", "1", "--bind", &address.to_string()])
        .stdin(Stdio::null())
        .stdout(File::create(&server_stdout).unwrap())
        .stderr(File::create(&server_log).unwrap())
        .spawn()
        .expect("the server starts");
    let mut server = Running(child);
    server.wait_until_listening(address);

    let client = Client::new();
    let base = format!("http://{address}");
    let grant = client
        .post(format!("{base}/oauth2/token"))
        .basic_auth(&admin_keys.client_id, Some(&admin_keys.client_secret))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=admin")
        .send()
        .unwrap();
    assert_eq!(grant.status(), 200);
    let admin_token = grant.json::<Value>().unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let tokens = format!("{base}/admin/v1/sites/{}/tokens", site.site_key);
    let post = |url: String, body: Option<Value>| -> Value {
        let mut request = client.post(&url).bearer_auth(&admin_token);
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().unwrap();
        let status = response.status();
        let text = response.text().unwrap();
        assert!(status.is_success(), "POST {url}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    };
    let created = post(
        tokens.clone(),
        Some(json!({"description": "Audited Partner"})),
    );
    let id = created["id"].as_i64().unwrap();
    let first_value = created["value"].as_str().unwrap().to_string();
    let regenerated = post(format!("{tokens}/{id}/regenerate"), None);
    let second_value = regenerated["value"].as_str().unwrap().to_string();
    post(
        format!("{tokens}/{id}/invalidate"),
        Some(json!({"description": "Audited Partner Paused"})),
    );
    post(format!("{tokens}/{id}/validate"), None);
    for path in [
        format!("{tokens}/{id}"),
        format!("{tokens}/{id}/history"),
        tokens.clone(),
    ] {
        let response = client.get(&path).bearer_auth(&admin_token).send().unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
    }

    let actions = vec![
        ("create", "creat", id),
        ("regenerate", "regenerat", id),
        ("invalidate", "invalidat", id),
        ("validate", "validat", id),
    ];
    // Log lines may be written after the answer: wait for one line per action.
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = fs::read_to_string(&server_log).unwrap();
        let all_there = actions
            .iter()
            .all(|(_, stem, id)| action_logged(&text, &admin_keys.name, &site.site_key, *id, stem));
        if all_there || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(server);
    let text = text + &fs::read_to_string(&server_stdout).unwrap();
    Some(Logged {
        text,
        cli_stderr,
        admin_name: admin_keys.name.clone(),
        site_key: site.site_key,
        actions,
        secrets: vec![
            admin_keys.client_secret,
            admin_token,
            first_value,
            second_value,
        ],
    })
}

fn assert_no_values(logged: &Logged, source: &str) {
    for secret in &logged.secrets {
        let random_part = &secret[4..47];
        let mut needles = vec![secret.clone()];
        for start in 0..=random_part.len() - 12 {
            needles.push(random_part[start..start + 12].to_string());
        }
        for needle in needles {
            for (what, text) in [
                (source, &logged.text),
                ("the CLI's stderr", &logged.cli_stderr),
            ] {
                assert!(
                    !text.contains(&needle),
                    "{what} shows (part of) {}…: {}",
                    &secret[..8],
                    lines_containing(text, &needle)
                );
            }
        }
    }
}

/// Whether one line of `text` names the action (by a word starting with `stem`), the admin, the
/// site and the token id.
fn action_logged(text: &str, admin_name: &str, site_key: &str, id: i64, stem: &str) -> bool {
    text.lines().any(|line| {
        line.contains(admin_name)
            && line.contains(site_key)
            && has_word(line, &id.to_string())
            && has_word_starting(line, stem)
    })
}

/// Whether `line` has `word` as a whole word (runs of letters and digits).
fn has_word(line: &str, word: &str) -> bool {
    line.split(|c: char| !c.is_alphanumeric())
        .any(|candidate| candidate == word)
}

/// Whether a word of `line` starts with `stem`, case-insensitively ("validat" does not match
/// "invalidated").
fn has_word_starting(line: &str, stem: &str) -> bool {
    line.split(|c: char| !c.is_alphanumeric())
        .any(|word| word.to_lowercase().starts_with(stem))
}

fn lines_containing(text: &str, needle: &str) -> String {
    text.lines()
        .filter(|line| line.contains(needle))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn serve_refuses_lifetimes_expiry_limits_and_usage_resolutions_out_of_range() {
    for args in [
        ["--admin-token-ttl-secs", "400000000000"],
        ["--admin-token-ttl-secs", "0"],
        ["--max-token-lifetime-days", "100000"],
        ["--usage-resolution-secs", "86401"],
    ] {
        // An unusable database: if the value were accepted, serve would fail with status 1.
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
            .args(["--database", "mysql://nowhere/none", "serve"])
            .args(args)
            .output()
            .expect("run tokenwarden");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(args[0]), "{args:?}: {stderr}");
    }
}
