//! `serve --tls-cert --tls-key`: the real binary serving HTTPS with a certificate made in the
//! test, refusing plain HTTP on that port, failing to start with a message that names a bad file,
//! and the warning about plain HTTP on an address other than loopback.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::Value;

use crate::cli::{create_site, run, tokenwarden, Running};
use crate::helpers::{Backend, TestDatabase};

const PLAINTEXT_WARNING: &str = "serving plain HTTP on";

/// A self-signed certificate for 127.0.0.1 and its key, as PEM files in `dir`.
struct SelfSigned {
    cert: PathBuf,
    key: PathBuf,
    key_pem: String,
}

fn self_signed(dir: &Path, name: &str) -> SelfSigned {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
        .expect("a self-signed certificate");
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let key_pem = made.signing_key.serialize_pem();
    fs::write(&cert, made.cert.pem()).unwrap();
    fs::write(&key, &key_pem).unwrap();
    SelfSigned { cert, key, key_pem }
}

/// `serve --bind BIND EXTRA…` with stderr in `log`; returns once the server logged the address
/// it listens on, which follows any start-up warning.
fn serve(database: &str, bind: &str, extra: &[&str], log: &Path) -> (Running, SocketAddr) {
    let child = tokenwarden(database)
        .args(["serve", "--workers", "1", "--bind", bind])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(log).expect("a log file"))
        .spawn()
        .expect("the server starts");
    let mut server = Running(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = fs::read_to_string(log).unwrap();
        if let Some(rest) = text.split("listening on ").nth(1) {
            let url = rest.split_whitespace().next().unwrap();
            let address = url.split("://").nth(1).unwrap().parse().unwrap();
            return (server, address);
        }
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!("the server exited with {status}: {text}");
        }
        assert!(
            Instant::now() < deadline,
            "the server did not start: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn https_client(certificate: &Path) -> Client {
    let pem = fs::read(certificate).unwrap();
    Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .expect("an HTTPS client")
}

#[test]
fn token_requests_work_over_https_and_plain_http_is_refused() {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
    let site = create_site(&db.url, "Secure Store");
    let files = self_signed(db.dir.path(), "server");
    let log = db.dir.path().join("tls.log");
    let (_server, bound) = serve(
        &db.url,
        "0.0.0.0:0",
        &[
            "--tls-cert",
            files.cert.to_str().unwrap(),
            "--tls-key",
            files.key.to_str().unwrap(),
        ],
        &log,
    );
    let base = format!("https://127.0.0.1:{}", bound.port());
    let client = https_client(&files.cert);

    let response = client
        .post(format!("{base}/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", site.site_key.as_str()),
            ("client_secret", site.auth_key.as_str()),
        ])
        .send()
        .expect("an HTTPS answer");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    let body: Value = response.json().unwrap();
    assert!(body["access_token"].as_str().unwrap().starts_with("twp_"));

    let metadata: Value = client
        .get(format!("{base}/.well-known/oauth-authorization-server"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let issuer = format!("https://{bound}");
    assert_eq!(metadata["issuer"], issuer.as_str(), "{metadata}");
    assert_eq!(
        metadata["token_endpoint"],
        format!("{issuer}/oauth2/token").as_str()
    );

    let plain = Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", bound.port()))
        .timeout(Duration::from_secs(10))
        .send();
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
    let untrusting = Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap()
        .get(format!("{base}/healthz"))
        .send();
    assert!(untrusting.is_err(), "an unknown certificate was accepted");

    let text = fs::read_to_string(&log).unwrap();
    assert!(!text.contains(PLAINTEXT_WARNING), "{text}");
}

#[test]
fn plain_http_warns_on_other_addresses_than_loopback() {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
    for (bind, warned) in [("0.0.0.0:0", true), ("127.0.0.1:0", false)] {
        let log = db.dir.path().join("plain.log");
        let (_server, bound) = serve(&db.url, bind, &[], &log);
        let text = fs::read_to_string(&log).unwrap();
        let warning = text.lines().find(|line| line.contains(PLAINTEXT_WARNING));
        assert_eq!(warning.is_some(), warned, "{bind}: {text}");
        if let Some(line) = warning {
            assert!(line.contains(" WARN "), "{line}");
            assert!(line.contains(&bound.to_string()), "{line}");
            assert!(line.contains("RFC 6749 1.6, 10.9"), "{line}");
        }
    }
}

/// Start-up fails with exit code 1 and a message naming the file at fault, and never shows what
/// the key file holds.
#[test]
fn bad_certificate_or_key_files_stop_the_start_with_a_clear_message() {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
    let dir = db.dir.path();
    let good = self_signed(dir, "good");
    let other = self_signed(dir, "other");
    let missing = dir.join("missing.pem");
    let garbage = dir.join("garbage.pem");
    fs::write(
        &garbage,
        "-----BEGIN PRIVATE KEY-----\nnot!base64\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let path = |path: &Path| path.to_str().unwrap().to_string();
    let cases = [
        (
            path(&missing),
            path(&good.key),
            vec![path(&missing), "cannot read".into()],
        ),
        (
            path(&good.cert),
            path(&missing),
            vec![path(&missing), "cannot read".into()],
        ),
        (
            path(&good.key),
            path(&good.key),
            vec![path(&good.key), "no PEM certificate".into()],
        ),
        (
            path(&good.cert),
            path(&good.cert),
            vec![path(&good.cert), "no PEM private key".into()],
        ),
        (
            path(&good.cert),
            path(&garbage),
            vec![path(&garbage), "no PEM private key".into()],
        ),
        (
            path(&good.cert),
            path(&other.key),
            vec![path(&other.key), path(&good.cert), "does not fit".into()],
        ),
    ];
    for (cert, key, expected) in cases {
        let finished = run(tokenwarden(&db.url).args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ]));
        assert_eq!(
            finished.status.code(),
            Some(1),
            "{cert} {key}: {finished:?}"
        );
        let error = finished
            .stderr
            .lines()
            .find(|line| line.starts_with("error: "))
            .unwrap_or_else(|| panic!("no error line: {}", finished.stderr));
        for part in &expected {
            assert!(error.contains(part.as_str()), "{part:?} not in {error}");
        }
        for key_pem in [&good.key_pem, &other.key_pem] {
            for line in key_pem.lines().filter(|line| !line.starts_with("-----")) {
                assert!(!finished.stderr.contains(line), "key material in {error}");
            }
        }
        assert!(
            !finished.stderr.contains("not!base64"),
            "{}",
            finished.stderr
        );
    }
}

#[test]
fn a_certificate_without_its_key_is_a_usage_error() {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
    let files = self_signed(db.dir.path(), "lonely");
    let finished =
        run(tokenwarden(&db.url).args(["serve", "--tls-cert", files.cert.to_str().unwrap()]));
    assert_eq!(finished.status.code(), Some(2), "{finished:?}");
    assert!(finished.stderr.contains("--tls-key"), "{}", finished.stderr);
    let finished = run(tokenwarden(&db.url)
        .env("TOKENWARDEN_TLS_KEY", files.key.to_str().unwrap())
        .args(["serve"]));
    assert_eq!(finished.status.code(), Some(2), "{finished:?}");
    assert!(
        finished.stderr.contains("--tls-cert"),
        "{}",
        finished.stderr
    );
}
