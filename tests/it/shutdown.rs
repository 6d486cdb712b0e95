//! Stopping the real binary with SIGTERM or SIGINT, as systemd, Docker, Kubernetes or Ctrl-C do:
//! the request in flight is answered, new connections are refused, the process exits 0 and the
//! batched `last_used_at` times reach the database; `--shutdown-timeout-secs` bounds the wait.
//! Also that the binary's `--usage-resolution-secs` reaches the server it runs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::Value;

use crate::cli::{create_site, start_server, succeed_json, tokenwarden, Running};
use crate::helpers::{form_request, introspect_at, Backend, TestDatabase};

crate::per_backend!(a_stop_signal_finishes_the_request_in_flight_and_flushes_usage);

#[test]
fn sigint_stops_as_gracefully_as_sigterm() {
    stop_gracefully(Backend::Sqlite, "INT");
}

fn a_stop_signal_finishes_the_request_in_flight_and_flushes_usage(backend: Backend) {
    stop_gracefully(backend, "TERM");
}

const USED: &str = "SELECT COUNT(*) AS n FROM tokens WHERE last_used_at IS NOT NULL";

fn stop_gracefully(backend: Backend, signal: &str) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let log = db.dir.path().join("stop.log");
    // Usage is written only when the server stops, and the drain may take up to 20 s: a stop in
    // well under that proves the server waited for the request, not for the timeout.
    let served = serve_a_site(
        &db,
        &[
            "--usage-flush-secs",
            "3600",
            "--shutdown-timeout-secs",
            "20",
        ],
        &log,
    );
    let ServedSite {
        mut server,
        address,
        client,
        resource_server,
        token_body,
        token,
    } = served;
    let introspected = introspect_at(
        &client,
        &format!("http://{address}"),
        &resource_server,
        &token,
    );
    assert_eq!(introspected["active"], true);
    assert_eq!(db.count(USED), 0, "usage was written before the stop");
    // `client` keeps its idle keep-alive connection open: the stop must close it, not wait for it.

    let (mut in_flight, rest) = start_slow_request(address, &token_body);
    send_signal(&server, signal);
    wait_until_refused(address);
    in_flight.write_all(rest.as_bytes()).unwrap();
    let (answer, closed) = read_to_close(&mut in_flight);
    assert!(closed, "the connection was kept open: {answer}");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("\"access_token\""), "{answer}");

    let status = wait_for_exit(&mut server, Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert_eq!(db.count(USED), 1, "the usage batch was not flushed");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(&format!("SIG{signal} received")), "{text}");
    // Request lines are written in batches per worker turn; the stop loses none, not even the
    // line of the request finished during the drain.
    let token_lines = text
        .lines()
        .filter(|line| line.contains("tokenwarden::access] 127.0.0.1 POST /oauth2/token 200 "))
        .count();
    assert_eq!(token_lines, 2, "{text}");
    drop(client);
}

/// `--usage-resolution-secs` reaches the running server's usage recorder: with 0, a second use
/// of a token is written at the next flush, where the default (60 s) would hold it back for most
/// of a minute (47 to 60 s) after the first was written.
#[test]
fn the_usage_resolution_flag_reaches_the_running_server() {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
    let log = db.dir.path().join("resolution.log");
    let served = serve_a_site(
        &db,
        &["--usage-flush-secs", "1", "--usage-resolution-secs", "0"],
        &log,
    );
    let base = format!("http://{}", served.address);
    let use_token_until_written = || {
        let introspected = introspect_at(
            &served.client,
            &base,
            &served.resource_server,
            &served.token,
        );
        assert_eq!(introspected["active"], true);
        let deadline = Instant::now() + Duration::from_secs(10);
        while db.count(USED) == 0 {
            assert!(Instant::now() < deadline, "the use was not written");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    use_token_until_written();
    db.execute("UPDATE tokens SET last_used_at = NULL");
    use_token_until_written();
}

/// A running server (stopped when dropped) with one site, its primary token and a resource server.
struct ServedSite {
    server: Running,
    address: SocketAddr,
    client: Client,
    resource_server: Value,
    /// The site's `/oauth2/token` request body.
    token_body: String,
    token: String,
}

fn serve_a_site(db: &TestDatabase, serve_args: &[&str], log: &std::path::Path) -> ServedSite {
    let site = create_site(&db.url, "Closing Shop");
    let resource_server = succeed_json(tokenwarden(&db.url).args([
        "resource-server",
        "create",
        "--name",
        "Closing API",
        "--json",
    ]));
    let (mut server, address) = start_server(&mut tokenwarden(&db.url), serve_args, log);
    server.wait_until_listening(address);
    let client = Client::new();
    let token_body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        site.site_key, site.auth_key
    );
    let answer: Value = form_request(
        &client,
        format!("http://{address}/oauth2/token"),
        None,
        &token_body,
    )
    .send()
    .unwrap()
    .json()
    .unwrap();
    let token = answer["access_token"].as_str().unwrap().to_string();
    ServedSite {
        server,
        address,
        client,
        resource_server,
        token_body,
        token,
    }
}

/// A request that never finishes is cut off once the shutdown timeout has passed, and the process
/// still exits 0.
#[test]
fn the_shutdown_timeout_bounds_a_request_that_never_finishes() {
    let db = TestDatabase::create(Backend::Sqlite).expect("SQLite is always available");
    let log = db.dir.path().join("timeout.log");
    let (mut server, address) = start_server(
        &mut tokenwarden(&db.url),
        &["--shutdown-timeout-secs", "1"],
        &log,
    );
    server.wait_until_listening(address);
    let (mut stalled, _) = start_slow_request(address, "grant_type=client_credentials");
    let signalled = Instant::now();
    send_signal(&server, "TERM");
    let status = wait_for_exit(&mut server, Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let waited = signalled.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    let (answer, _) = read_to_close(&mut stalled);
    assert!(!answer.contains("200 OK"), "{answer}");
}

/// Opens a token request and sends its headers and half its body; returns the connection and the
/// rest of the body. The headers ask for `100 Continue`, and the body follows only once the server
/// has answered it: proof that a worker has taken the request in.
fn start_slow_request(address: SocketAddr, body: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    write!(
        stream,
        "POST /oauth2/token HTTP/1.1\r\nHost: {address}\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Expect: 100-continue\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.flush().unwrap();
    let mut interim = Vec::new();
    let mut byte = [0u8; 1];
    while !interim.ends_with(b"\r\n\r\n") {
        stream
            .read_exact(&mut byte)
            .expect("the server answers 100 Continue");
        interim.push(byte[0]);
    }
    let interim = String::from_utf8_lossy(&interim);
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
    stream.write_all(first.as_bytes()).unwrap();
    stream.flush().unwrap();
    (stream, rest.to_string())
}

fn send_signal(server: &Running, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(server.0.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// The listener closes as soon as the stop begins.
fn wait_until_refused(address: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "{address} still accepts connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Everything the server sends until it closes the connection, and whether it closed it before
/// the read timeout (a stopping server does not keep connections alive).
fn read_to_close(stream: &mut TcpStream) -> (String, bool) {
    let mut answer = Vec::new();
    let closed = stream.read_to_end(&mut answer).is_ok();
    (String::from_utf8_lossy(&answer).into_owned(), closed)
}

fn wait_for_exit(server: &mut Running, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}
