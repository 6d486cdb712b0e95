//! Secrets never reach a log, in text or JSON, even at `RUST_LOG=trace`: the real binary serves
//! every endpoint and runs the credential-printing CLI commands while its output is captured, then
//! no auth key, token value, Basic header or server secret may appear in it, whole or in part.
//! Also the JSON format's lines, and the request id each request's lines carry.

use std::cell::Cell;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::Value;
use tokenwarden::config;

use crate::cli::{free_port, run, tokenwarden, Running};
use crate::helpers::{Backend, TestDatabase};

crate::per_backend!(
    logs_at_trace_hold_no_secrets,
    json_logs_at_trace_hold_no_secrets,
    each_request_id_is_in_its_response_and_its_requests_json_lines,
);

fn logs_at_trace_hold_no_secrets(backend: Backend) {
    logs_hold_no_secrets(backend, Format::Text);
}

fn json_logs_at_trace_hold_no_secrets(backend: Backend) {
    logs_hold_no_secrets(backend, Format::Json);
}

/// `--log-format`, `TOKENWARDEN_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
        }
    }

    /// What every request line, and no other, contains.
    fn request_line_mark(self) -> &'static str {
        match self {
            Format::Text => " INFO  tokenwarden::access] ",
            Format::Json => r#""target":"tokenwarden::access""#,
        }
    }
}

/// Request lines have a log target of their own, so operators can drop just them; by default
/// (`RUST_LOG` unset: info) they are written.
#[test]
fn request_lines_can_be_switched_off_alone() {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
    let site = crate::cli::create_site(&db.url, "Quiet Log Store");
    for (filter, request_lines_expected) in
        [(None, true), (Some("info,tokenwarden::access=warn"), false)]
    {
        let stderr_file = db.dir.path().join("filtered.log");
        let mut command = tokenwarden(&db.url);
        if let Some(filter) = filter {
            command.env("RUST_LOG", filter);
        }
        let (mut server, address) = crate::cli::start_server(&mut command, &[], &stderr_file);
        server.wait_until_listening(address);
        let client = Client::new();
        let wrong_key = crate::helpers::form_request(
            &client,
            format!("http://{address}/oauth2/token"),
            Some((&site.site_key, "twk_wrong")),
            "grant_type=client_credentials",
        );
        assert_eq!(wrong_key.send().unwrap().status(), 401);
        let request_line = "127.0.0.1 POST /oauth2/token 401 ";
        let deadline = Instant::now() + Duration::from_secs(10);
        while request_lines_expected
            && !fs::read_to_string(&stderr_file)
                .unwrap()
                .contains(request_line)
        {
            assert!(Instant::now() < deadline, "no request line");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(server);
        let logged = fs::read_to_string(&stderr_file).unwrap();
        assert!(logged.contains("tokenwarden listening on"), "{logged}");
        assert!(
            logged.contains("client authentication failed for site"),
            "other info lines stay: {logged}"
        );
        assert_eq!(
            logged.contains(&format!("tokenwarden::access] {request_line}")),
            request_lines_expected,
            "RUST_LOG={filter:?}: {logged}"
        );
    }
}

/// A request's id, its own or a generated one, comes back in `X-Request-Id` and is carried by
/// its request line and by the lines the service logs while handling it, on the HTTP worker and
/// in the blocking pool alike.
fn each_request_id_is_in_its_response_and_its_requests_json_lines(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let site = crate::cli::create_site(&db.url, "Traced Store");
    let stderr_file = db.dir.path().join("json.log");
    let (mut server, address) = crate::cli::start_server(
        &mut tokenwarden(&db.url),
        &["--log-format", "json"],
        &stderr_file,
    );
    server.wait_until_listening(address);
    let client = Client::new();
    let token_request = |auth_key: &str, id: Option<&str>| {
        let mut request = crate::helpers::form_request(
            &client,
            format!("http://{address}/oauth2/token"),
            Some((&site.site_key, auth_key)),
            "grant_type=client_credentials",
        );
        if let Some(id) = id {
            request = request.header("X-Request-Id", id);
        }
        let response = request.send().expect("the server answers");
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        (response.status().as_u16(), id)
    };

    let (status, wrong_key) = token_request("twk_wrong", Some("it-wrong-key-7"));
    assert_eq!((status, wrong_key.as_str()), (401, "it-wrong-key-7"));
    // The first request for a primary token mints it in the blocking pool (a logged write).
    let (status, minted) = token_request(&site.auth_key, None);
    assert_eq!(status, 200);
    assert!(is_generated(&minted), "{minted}");
    let too_long = "x".repeat(129);
    let (status, replaced) = token_request(&site.auth_key, Some(&too_long));
    assert_eq!(status, 200);
    assert!(is_generated(&replaced) && replaced != minted, "{replaced}");
    // With the site in the cache, a wrong key is refused on the HTTP worker itself.
    let (status, from_memory) = token_request("twk_wrong", Some("it-wrong-key-8"));
    assert_eq!((status, from_memory.as_str()), (401, "it-wrong-key-8"));

    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = fs::read_to_string(&stderr_file).unwrap();
        if request_lines(&text, Format::Json) >= 4 {
            break text;
        }
        assert!(Instant::now() < deadline, "request lines missing:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(server);
    assert_json_lines_with(&lines, &["it-wrong-key-7", "it-wrong-key-8"]);
    assert!(!lines.contains(&too_long), "{lines}");
    let of = |id: &str| -> Vec<Value> {
        lines
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|line| line["request_id"] == id)
            .collect()
    };
    let is_request_line = |line: &Value| line["target"] == "tokenwarden::access";
    for (id, status, message) in [
        (
            wrong_key.as_str(),
            401,
            "client authentication failed for site",
        ),
        (minted.as_str(), 200, "minted a new primary token for site"),
        (
            from_memory.as_str(),
            401,
            "client authentication failed for site",
        ),
    ] {
        let lines = of(id);
        let request_lines: Vec<&Value> = lines.iter().filter(|l| is_request_line(l)).collect();
        assert_eq!(request_lines.len(), 1, "{lines:?}");
        assert_eq!(request_lines[0]["status"], status);
        assert_eq!(request_lines[0]["path"], "/oauth2/token");
        assert_eq!(request_lines[0]["method"], "POST");
        assert!(
            lines
                .iter()
                .any(|line| line["message"].as_str().unwrap().starts_with(message)),
            "no {message:?} line carries {id}: {lines:?}"
        );
    }
    assert_eq!(
        of(&replaced).iter().filter(|l| is_request_line(l)).count(),
        1
    );
}

/// `--log-format` takes `text` or `json`, from the command line, the environment or the config
/// file; anything else stops every command with status 2, naming the value.
#[test]
fn an_unknown_log_format_stops_the_command_naming_it() {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
    let file = db.dir.path().join("tokenwarden.toml");
    fs::write(&file, "log-format = \"xml\"\n").unwrap();
    let refused = [
        run(tokenwarden(&db.url).args(["--log-format", "xml", "site", "list"])),
        run(tokenwarden(&db.url).args(["serve", "--log-format=xml"])),
        run(tokenwarden(&db.url)
            .env("TOKENWARDEN_LOG_FORMAT", "xml")
            .args(["site", "list"])),
        run(tokenwarden(&db.url)
            .arg("--config")
            .arg(&file)
            .args(["site", "list"])),
    ];
    for finished in refused {
        assert_eq!(finished.status.code(), Some(2), "{finished:?}");
        assert!(
            finished.stderr.contains("'xml'") && finished.stderr.contains("--log-format"),
            "{}",
            finished.stderr
        );
    }
    fs::write(&file, "log-format = \"json\"\n").unwrap();
    let shown = crate::cli::succeed_json(
        tokenwarden(&db.url)
            .arg("--config")
            .arg(&file)
            .args(["--json", "config", "show"]),
    );
    assert_eq!(
        shown["settings"]["log-format"],
        serde_json::json!({"value": "json", "source": "file"})
    );
}

/// One request log line per request: `CLIENT METHOD PATH STATUS LATENCYms`, path without query
/// string (the client is always 127.0.0.1 here, so the prefix is checked only where it is written).
const EXPECTED_REQUEST_LINES: [&str; 16] = [
    "POST /oauth2/token 200 ",
    "POST /oauth2/token 401 ",
    "POST /oauth2/token 400 ",
    "POST /oauth2/invalidate_token 200 ",
    "POST /oauth2/invalidate_token 400 ",
    "POST /oauth2/revoke 200 ",
    "POST /oauth2/revoke 401 ",
    "GET /openapi.json 200 ",
    "GET /no-such-path 404 ",
    "GET /oauth2/token 405 ",
    "POST /oauth2/introspect 200 ",
    "POST /oauth2/introspect 401 ",
    "GET /.well-known/oauth-authorization-server 200 ",
    "GET /healthz 200 ",
    "GET /readyz 200 ",
    "GET /metrics 200 ",
];

fn logs_hold_no_secrets(backend: Backend, format: Format) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let secret = config::generate_encoded_secret().expect("randomness");
    let secret = secret.expose().to_string();
    let traced = |args: &[&str]| {
        let mut command = tokenwarden(&db.url);
        command
            .env("TOKENWARDEN_SECRET", &secret)
            .env("TOKENWARDEN_LOG_FORMAT", format.name())
            .env("RUST_LOG", "trace")
            .args(args);
        command
    };
    // Auth keys and token values, as they are handed out.
    let mut minted: Vec<String> = Vec::new();
    let mut cli_stderr = String::new();

    let created = run(&mut traced(&[
        "site",
        "create",
        "--name",
        "Log Store",
        "--json",
    ]));
    assert!(created.status.success(), "{created:?}");
    cli_stderr.push_str(&created.stderr);
    let created: Value = serde_json::from_str(&created.stdout).expect("one JSON object");
    let site_key = created["site_key"].as_str().unwrap().to_string();
    let first_key = created["auth_key"].as_str().unwrap().to_string();
    minted.push(first_key.clone());

    let server_log = db.dir.path().join("server.log");
    let address: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let child = traced(&["serve", "--workers", "1", "--bind", &address.to_string()])
        .stdin(Stdio::null())
        .stdout(File::create(db.dir.path().join("server.stdout")).unwrap())
        .stderr(File::create(&server_log).unwrap())
        .spawn()
        .expect("the server starts");
    let mut server = Running(child);
    server.wait_until_listening(address);

    let http = Http {
        client: Client::new(),
        base: format!("http://{address}"),
        requests: Cell::new(0),
    };
    let body_auth = |auth_key: &str| {
        format!("grant_type=client_credentials&client_id={site_key}&client_secret={auth_key}")
    };

    // Tokens by body and by Basic, invalidated, revoked and minted again.
    let first_token = http.token(http.form("/oauth2/token", None, &body_auth(&first_key)));
    let by_basic = http.form(
        "/oauth2/token",
        Some((&site_key, &first_key)),
        "grant_type=client_credentials",
    );
    assert_eq!(http.token(by_basic), first_token);
    let invalidated = http.form(
        "/oauth2/invalidate_token",
        Some((&site_key, &first_key)),
        &format!("access_token={first_token}"),
    );
    assert_eq!(http.status(invalidated), 200);
    let second_token = http.token(http.form("/oauth2/token", None, &body_auth(&first_key)));
    assert_ne!(second_token, first_token);
    let revoked = http.form(
        "/oauth2/revoke",
        None,
        &format!("client_id={site_key}&client_secret={first_key}&token={second_token}"),
    );
    assert_eq!(http.status(revoked), 200);

    // A new auth key from the CLI; the old one is now a wrong key, by body and by Basic.
    let rotated = run(&mut traced(&[
        "site",
        "rotate-auth-key",
        &site_key,
        "--json",
    ]));
    assert!(rotated.status.success(), "{rotated:?}");
    cli_stderr.push_str(&rotated.stderr);
    let rotated: Value = serde_json::from_str(&rotated.stdout).expect("one JSON object");
    let new_key = rotated["auth_key"].as_str().unwrap().to_string();
    minted.push(new_key.clone());
    // The server caches site authentication and hears of the CLI's write at its next request on
    // SQLite, by NOTIFY within milliseconds on PostgreSQL: ask until the old key is refused.
    let heard_by = Instant::now() + Duration::from_secs(1);
    while http.status(http.form("/oauth2/token", None, &body_auth(&first_key))) != 401 {
        assert!(
            backend == Backend::Postgres && Instant::now() < heard_by,
            "the old auth key still works after the rotation"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let third_token = http.token(http.form(
        "/oauth2/token",
        Some((&site_key, &new_key)),
        "grant_type=client_credentials",
    ));
    assert_ne!(third_token, second_token);
    minted.extend([first_token, second_token.clone(), third_token.clone()]);
    for response in [
        http.form("/oauth2/token", None, &body_auth(&first_key)),
        http.form(
            "/oauth2/token",
            Some((&site_key, &first_key)),
            "grant_type=client_credentials",
        ),
        http.form(
            "/oauth2/revoke",
            Some((&site_key, &first_key)),
            &format!("token={third_token}"),
        ),
    ] {
        assert_eq!(http.status(response), 401);
    }

    // Bad requests that carry secrets: repeated, conflicting, unknown or misplaced.
    let bad_requests = [
        http.form(
            "/oauth2/token",
            None,
            &format!("{}&client_secret={new_key}", body_auth(&new_key)),
        ),
        http.form(
            "/oauth2/token",
            Some((&site_key, &new_key)),
            &body_auth(&new_key),
        ),
        http.form(
            "/oauth2/token",
            Some((&site_key, &new_key)),
            "grant_type=password",
        ),
        http.raw(
            http.client
                .post(http.url("/oauth2/token"))
                .header("Authorization", format!("Basic {new_key}"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials"),
        ),
        http.form(
            "/oauth2/invalidate_token",
            Some((&site_key, &new_key)),
            &format!("access_token={third_token}&access_token={third_token}"),
        ),
        http.form(
            "/oauth2/invalidate_token",
            Some((&site_key, &new_key)),
            &format!("access_token={second_token}x"),
        ),
    ];
    for response in bad_requests {
        assert_eq!(http.status(response), 400);
    }
    assert_eq!(
        http.status(http.raw(http.client.get(http.url("/openapi.json")))),
        200
    );
    let not_found = http
        .client
        .get(http.url(&format!("/no-such-path?access_token={third_token}")))
        .bearer_auth(&third_token);
    assert_eq!(http.status(http.raw(not_found)), 404);
    let wrong_method = http
        .client
        .get(http.url(&format!("/oauth2/token?client_secret={new_key}")));
    assert_eq!(http.status(http.raw(wrong_method)), 405);
    // A resource server from the CLI introspects the token by Basic and by body; a wrong secret.
    let resource_server = run(&mut traced(&[
        "resource-server",
        "create",
        "--name",
        "Log API",
        "--json",
    ]));
    assert!(resource_server.status.success(), "{resource_server:?}");
    cli_stderr.push_str(&resource_server.stderr);
    let resource_server: Value =
        serde_json::from_str(&resource_server.stdout).expect("one JSON object");
    let rs_id = resource_server["client_id"].as_str().unwrap().to_string();
    let rs_secret = resource_server["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    minted.push(rs_secret.clone());
    let introspections = [
        http.form(
            "/oauth2/introspect",
            Some((&rs_id, &rs_secret)),
            &format!("token={third_token}"),
        ),
        http.form(
            "/oauth2/introspect",
            None,
            &format!("client_id={rs_id}&client_secret={rs_secret}&token={third_token}"),
        ),
        http.form(
            "/oauth2/introspect",
            Some((&rs_id, &new_key)),
            &format!("token={third_token}"),
        ),
    ];
    let statuses: Vec<u16> = introspections.into_iter().map(|r| http.status(r)).collect();
    assert_eq!(statuses, [200, 200, 401]);
    for path in [
        "/.well-known/oauth-authorization-server",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert_eq!(
            http.status(http.raw(http.client.get(http.url(path)))),
            200,
            "{path}"
        );
    }
    // The token survived all of that.
    let still = http.form("/oauth2/token", None, &body_auth(&new_key));
    assert_eq!(http.token(still), third_token);

    // Request lines are logged once the response is done; wait for them before stopping.
    wait_for(
        &server_log,
        &EXPECTED_REQUEST_LINES,
        http.requests.get(),
        format,
    );
    drop(server);
    let logged = fs::read_to_string(&server_log).unwrap();
    match format {
        Format::Text => assert_text_request_lines(&logged),
        Format::Json => {
            assert_json_lines(&logged);
            assert_json_lines(&cli_stderr);
        }
    }
    let logged = logged + &fs::read_to_string(db.dir.path().join("server.stdout")).unwrap();

    assert!(
        logged.contains(&format!("tokenwarden listening on http://{address}")),
        "{logged}"
    );
    let trace = match format {
        Format::Text => " TRACE ",
        Format::Json => r#""level":"TRACE""#,
    };
    assert!(logged.contains(trace), "RUST_LOG=trace took effect");
    assert!(cli_stderr.contains("created site"), "{cli_stderr}");
    assert!(cli_stderr.contains("rotated the auth key"), "{cli_stderr}");
    assert!(
        cli_stderr.contains("created resource server"),
        "{cli_stderr}"
    );
    assert_eq!(
        request_lines(&logged, format),
        http.requests.get(),
        "one request line per request:\n{}",
        lines_containing(&logged, "tokenwarden::access")
    );

    let exposed: Vec<Exposed> = std::iter::once(Exposed::ServerSecret(secret))
        .chain(minted.into_iter().map(Exposed::Minted))
        .chain(
            [&first_key, &new_key]
                .map(|key| Exposed::BasicHeader(STANDARD.encode(format!("{site_key}:{key}")))),
        )
        .collect();
    for (source, text) in [("server log", &logged), ("CLI stderr", &cli_stderr)] {
        for secret in &exposed {
            for (form, needle) in forms(secret) {
                assert!(
                    !text.contains(&needle),
                    "the {source} shows {form} ({needle}): {}",
                    lines_containing(text, &needle)
                );
            }
        }
    }
}

/// A client that counts its requests, so the test knows how many log lines to expect.
struct Http {
    client: Client,
    base: String,
    requests: Cell<usize>,
}

impl Http {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn raw(&self, request: RequestBuilder) -> reqwest::blocking::Response {
        self.requests.set(self.requests.get() + 1);
        request.send().expect("the server answers")
    }

    fn form(
        &self,
        path: &str,
        basic: Option<(&str, &str)>,
        body: &str,
    ) -> reqwest::blocking::Response {
        self.raw(crate::helpers::form_request(
            &self.client,
            self.url(path),
            basic,
            body,
        ))
    }

    fn status(&self, response: reqwest::blocking::Response) -> u16 {
        response.status().as_u16()
    }

    fn token(&self, response: reqwest::blocking::Response) -> String {
        assert_eq!(response.status(), 200);
        let body: Value = response.json().expect("a JSON body");
        body["access_token"].as_str().expect("a token").to_string()
    }
}

/// Every form in which a secret, or a recognisable piece of it, could show up in a log line.
fn forms(secret: &Exposed) -> Vec<(String, String)> {
    let (value, random_part) = match secret {
        // `<prefix><43 base64url chars of randomness><checksum>`
        Exposed::Minted(value) => (value, &value[4..47]),
        Exposed::ServerSecret(value) => (value, value.as_str()),
        Exposed::BasicHeader(value) => return vec![("the value".into(), value.clone())],
    };
    let mut forms = vec![
        ("the value".to_string(), value.clone()),
        ("its hex".to_string(), hex(value.as_bytes())),
        (
            "the hex of its random bytes".to_string(),
            hex(&URL_SAFE_NO_PAD.decode(random_part).expect("base64url")),
        ),
    ];
    // Any 12 consecutive random characters (72 bits) betray a value split across log lines or
    // truncated.
    for start in 0..=random_part.len() - 12 {
        forms.push((
            format!("characters {start}..{} of its random part", start + 12),
            random_part[start..start + 12].to_string(),
        ));
    }
    forms
}

enum Exposed {
    /// An auth key or token value.
    Minted(String),
    ServerSecret(String),
    /// `Authorization: Basic …` as sent.
    BasicHeader(String),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn lines_containing(text: &str, needle: &str) -> String {
    text.lines()
        .filter(|line| line.contains(needle))
        .collect::<Vec<_>>()
        .join("\n")
}

fn request_lines(log: &str, format: Format) -> usize {
    log.lines()
        .filter(|line| line.contains(format.request_line_mark()))
        .count()
}

/// 32 lowercase hex digits: an id the server made.
fn is_generated(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// Text request lines end with the latency and the request id (generated: these requests
/// bring none).
fn assert_text_request_lines(log: &str) {
    for line in log
        .lines()
        .filter(|line| line.contains("tokenwarden::access]"))
    {
        let mut fields = line.rsplit(' ');
        let id = fields.next().unwrap();
        let latency = fields.next().unwrap();
        assert!(is_generated(id), "{line}");
        assert!(latency.ends_with("ms"), "{line}");
    }
}

/// Every line is one JSON object: `time` (RFC 3339, UTC), `level`, `target`, `message`; request
/// lines add the request's fields, every request line has a request id and lines outside a
/// request have none.
fn assert_json_lines(log: &str) {
    assert_json_lines_with(log, &[]);
}

/// [`assert_json_lines`] where request ids are generated ones or one of `given`.
fn assert_json_lines_with(log: &str, given: &[&str]) {
    let known_id = |id: &Value| {
        let id = id.as_str().expect("text");
        is_generated(id) || given.contains(&id)
    };
    for line in log.lines() {
        let object: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let object = object.as_object().expect("an object");
        let time = object["time"].as_str().expect("a time");
        let parsed = chrono::DateTime::parse_from_rfc3339(time).expect("RFC 3339");
        assert_eq!(parsed.offset().local_minus_utc(), 0, "UTC: {line}");
        assert!(time.ends_with('Z'), "{line}");
        for field in ["level", "target", "message"] {
            assert!(object[field].is_string(), "{field}: {line}");
        }
        if object["target"] == "tokenwarden::access" {
            let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
            fields.sort_unstable();
            assert_eq!(
                fields,
                [
                    "client_address",
                    "latency_ms",
                    "level",
                    "message",
                    "method",
                    "path",
                    "request_id",
                    "status",
                    "target",
                    "time"
                ],
                "{line}"
            );
            assert_eq!(object["level"], "INFO");
            assert_eq!(object["client_address"], "127.0.0.1");
            assert!(object["method"].is_string() && object["path"].is_string());
            assert!(object["status"].is_u64() && object["latency_ms"].is_f64());
            assert!(known_id(&object["request_id"]), "{line}");
        } else if let Some(id) = object.get("request_id") {
            assert!(known_id(id), "{line}");
        }
        if object["message"]
            .as_str()
            .unwrap()
            .starts_with("tokenwarden listening on")
        {
            assert!(object.get("request_id").is_none(), "{line}");
        }
    }
}

/// Rereads the log until every expected piece and `requests` request lines are in it; panics
/// naming what is missing.
fn wait_for(path: &Path, expected: &[&str], requests: usize, format: Format) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = fs::read_to_string(path).expect("the server log");
        let missing: Vec<&&str> = expected
            .iter()
            .filter(|line| !text.contains(**line))
            .collect();
        if missing.is_empty() && request_lines(&text, format) >= requests {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "request lines missing: {missing:?}, {} of {requests} logged\n{}",
            request_lines(&text, format),
            lines_containing(&text, "tokenwarden::access")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
