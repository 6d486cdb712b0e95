//! One log line per request, written in batches: each HTTP worker collects the lines of the
//! requests it finishes and writes them with one `write(2)` before it next waits for the network.
//!
//! A line per request written on its own cost about 2 µs of the worker's time per request
//! (formatting through `log` and env_logger, and a system call each), a sixth of a cached
//! introspection (docs/performance.md). The batch is bounded by the worker's current turn, not by
//! a timer: the first line of a turn schedules a flush task behind the requests already ready on
//! the worker, so under load one write carries many lines and when idle a line follows its response
//! within microseconds. What a crash can lose is the lines of the turn in progress, whose
//! responses may just have been sent; a graceful stop writes every worker's lines
//! ([`write_out_all`]), and a worker thread that ends writes its own.
//!
//! The lines follow the log's format (`logging`). In text they look like env_logger's,
//! `[2026-11-30T07:05:01Z INFO  tokenwarden::access] 203.0.113.9 POST /oauth2/token 200
//! 1.389448ms 4bf92f3577b34da6a3ce929d0e0e4736` (the last field is the request id); in JSON the
//! same message goes with the fields `method`, `path`, `status`, `latency_ms`, `client_address`
//! and `request_id`. They obey `RUST_LOG` like any other target
//! (`RUST_LOG=info,tokenwarden::access=warn` turns them off).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::Method;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::logging::{self, LogFormat};

/// The log target of the request lines.
pub const ACCESS_LOG: &str = "tokenwarden::access";

/// Whether request lines are wanted (`RUST_LOG`); when not, nothing else here runs.
pub(crate) fn enabled() -> bool {
    log::log_enabled!(target: ACCESS_LOG, log::Level::Info)
}

/// One request, as its line shows it: method, path (never the query string, which could carry a
/// token sent by mistake), status, latency and request id.
pub(crate) struct Request<'a> {
    /// `None` when the transport has no peer address.
    pub client: Option<IpAddr>,
    pub method: &'a Method,
    pub path: &'a str,
    pub status: u16,
    pub latency: Duration,
    pub request_id: &'a str,
}

/// Adds one request's line to this worker's batch. Runs on an actix worker only: the flush is a
/// task of the worker's own event loop.
pub(crate) fn record(request: &Request<'_>) {
    let first_of_turn = PENDING.with(|pending| {
        let mut pending = lock(pending);
        let first = pending.lines.is_empty();
        pending.append(logging::format(), SystemTime::now(), request);
        first
    });
    if first_of_turn {
        actix_web::rt::spawn(async { PENDING.with(|pending| lock(pending).write_out()) });
    }
}

/// Writes every worker's pending lines: called once the server has stopped, because nothing
/// waits for the worker threads to end (and their buffers with them) before the process exits.
pub(crate) fn write_out_all() {
    let workers = WORKERS.lock().unwrap_or_else(PoisonError::into_inner);
    for pending in workers.iter().filter_map(Weak::upgrade) {
        lock(&pending).write_out();
    }
}

thread_local! {
    /// This worker's lines not yet written; locked only by this thread but once at the end.
    static PENDING: Arc<Mutex<Pending>> = {
        let pending = Arc::new(Mutex::new(Pending::default()));
        let mut workers = WORKERS.lock().unwrap_or_else(PoisonError::into_inner);
        workers.retain(|worker| worker.strong_count() > 0);
        workers.push(Arc::downgrade(&pending));
        pending
    };
}

/// Every worker's buffer, for [`write_out_all`]; a buffer whose thread has ended is gone (its
/// `Drop` wrote it).
static WORKERS: Mutex<Vec<Weak<Mutex<Pending>>>> = Mutex::new(Vec::new());

fn lock(pending: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    /// The second `timestamp` was rendered for, and its text up to the seconds
    /// (`2026-11-30T07:05:01`): one rendering per second.
    second: u64,
    timestamp: String,
    /// The line being formatted: its message, and its time in JSON. Kept, like `lines`, for
    /// their allocations.
    message: String,
    time: String,
}

/// A request line in JSON: `logging`'s fields, then the request's.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: &'a str,
    level: &'a str,
    target: &'a str,
    message: &'a str,
    method: &'a str,
    path: &'a str,
    status: u16,
    latency_ms: f64,
    client_address: Option<IpAddr>,
    request_id: &'a str,
}

impl Pending {
    /// Appends one line. Its message is `CLIENT METHOD PATH STATUS LATENCYms REQUEST_ID` (`-` for
    /// a client without an address), written piece by piece: through `format_args!` the line cost
    /// about 1,900 instructions, a thirtieth of a cached introspection (docs/performance.md).
    /// In text the line is `[timestamp INFO  tokenwarden::access] MESSAGE`.
    fn append(&mut self, format: LogFormat, now: SystemTime, request: &Request<'_>) {
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = since_epoch.as_secs();
        if second != self.second || self.timestamp.is_empty() {
            self.second = second;
            self.timestamp = DateTime::<Utc>::from(now)
                .format("%Y-%m-%dT%H:%M:%S")
                .to_string();
        }
        let message = &mut self.message;
        message.clear();
        match request.client {
            Some(address) => {
                let _ = write!(message, "{address}");
            }
            None => message.push('-'),
        }
        message.push(' ');
        message.push_str(request.method.as_str());
        message.push(' ');
        message.push_str(request.path);
        message.push(' ');
        push_decimal(message, u64::from(request.status), 1);
        message.push(' ');
        push_milliseconds(message, request.latency);
        message.push(' ');
        message.push_str(request.request_id);
        match format {
            LogFormat::Text => {
                let line = &mut self.lines;
                line.push(b'[');
                line.extend_from_slice(self.timestamp.as_bytes());
                line.extend_from_slice(b"Z INFO  ");
                line.extend_from_slice(ACCESS_LOG.as_bytes());
                line.extend_from_slice(b"] ");
                line.extend_from_slice(message.as_bytes());
            }
            LogFormat::Json => {
                let time = &mut self.time;
                time.clear();
                time.push_str(&self.timestamp);
                time.push('.');
                push_decimal(time, u64::from(since_epoch.subsec_millis()), 3);
                time.push('Z');
                let line = JsonLine {
                    time,
                    level: log::Level::Info.as_str(),
                    target: ACCESS_LOG,
                    message,
                    method: request.method.as_str(),
                    path: request.path,
                    status: request.status,
                    latency_ms: nanoseconds(request.latency) as f64 / 1e6,
                    client_address: request.client,
                    request_id: request.request_id,
                };
                // Writing to a `Vec` fails only for a value serde_json cannot represent; these
                // are strings and numbers.
                let _ = serde_json::to_writer(&mut self.lines, &line);
            }
        }
        self.lines.push(b'\n');
    }

    /// One write of every pending line; the buffer keeps its allocation. Like env_logger, a
    /// failed write to stderr is not reported anywhere (there is nowhere left to report it).
    fn write_out(&mut self) {
        if self.lines.is_empty() {
            return;
        }
        let _ = std::io::stderr().lock().write_all(&self.lines);
        self.lines.clear();
    }
}

/// `latency` in whole nanoseconds: u64 nanoseconds last 584 years, and u128 arithmetic is a
/// library call per digit.
fn nanoseconds(latency: Duration) -> u64 {
    u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX)
}

/// `latency` in milliseconds with six decimals (whole nanoseconds), as `{:.6}ms` would print it.
fn push_milliseconds(line: &mut String, latency: Duration) {
    let nanos = nanoseconds(latency);
    push_decimal(line, nanos / 1_000_000, 1);
    line.push('.');
    push_decimal(line, nanos % 1_000_000, 6);
    line.push_str("ms");
}

/// `value` in decimal, with leading zeros up to `min_digits`.
fn push_decimal(line: &mut String, mut value: u64, min_digits: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while value > 0 || digits.len() - start < min_digits {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    line.extend(digits[start..].iter().map(|&digit| char::from(digit)));
}

impl Drop for Pending {
    /// A worker thread that ends (a panic unwinding it, or shutdown) writes what it holds.
    fn drop(&mut self) {
        self.write_out();
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer env_logger can own while the test reads what it wrote.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What `logging`'s logger writes for the request line's message, and the time it wrote.
    fn logged(format: LogFormat, message: &str) -> (String, SystemTime) {
        let captured = Captured::default();
        let logger = logging::builder(format, "info")
            .parse_filters("info")
            .target(env_logger::Target::Pipe(Box::new(captured.clone())))
            .build();
        log::Log::log(
            &logger,
            &log::Record::builder()
                .target(ACCESS_LOG)
                .level(log::Level::Info)
                .args(format_args!("{message}"))
                .build(),
        );
        let written = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let time = match format {
            LogFormat::Text => written[1..written.find(' ').unwrap()].to_string(),
            LogFormat::Json => {
                let line: serde_json::Value = serde_json::from_str(&written).unwrap();
                line["time"].as_str().unwrap().to_string()
            }
        };
        let at = SystemTime::from(DateTime::parse_from_rfc3339(&time).unwrap());
        (written, at)
    }

    const MESSAGE: &str = "203.0.113.9 POST /oauth2/token 200 1.389448ms 4bf92f3577b34da6";

    fn token_request(client: Option<IpAddr>) -> Request<'static> {
        Request {
            client,
            method: &Method::POST,
            path: "/oauth2/token",
            status: 200,
            latency: Duration::from_nanos(1_389_448),
            request_id: "4bf92f3577b34da6",
        }
    }

    /// What `logging`'s logger writes for [`MESSAGE`], and the lines `Pending` writes for the same
    /// request at the same time, then `later` without a client address.
    fn written(format: LogFormat, later: Duration) -> (String, String) {
        let (expected, at) = logged(format, MESSAGE);
        let mut pending = Pending::default();
        let client = Some("203.0.113.9".parse().unwrap());
        pending.append(format, at, &token_request(client));
        pending.append(format, at + later, &token_request(None));
        let lines = String::from_utf8(std::mem::take(&mut pending.lines)).unwrap();
        (expected, lines)
    }

    /// In text the lines are byte for byte what env_logger's default format (which every other
    /// line uses) prints for the same record at the same second.
    #[test]
    fn text_lines_match_env_loggers_default_format() {
        let (expected, lines) = written(LogFormat::Text, Duration::from_millis(1500));
        assert_eq!(lines.lines().next().unwrap(), expected.trim_end());
        let later = lines.lines().nth(1).unwrap();
        assert_ne!(
            later,
            expected.trim_end(),
            "the timestamp follows the clock"
        );
        assert!(later.ends_with("] - POST /oauth2/token 200 1.389448ms 4bf92f3577b34da6"));
    }

    /// In JSON a line is what `logging` writes for the same message at the same millisecond, plus
    /// the request's fields.
    #[test]
    fn json_lines_are_loggings_lines_with_the_requests_fields() {
        let (expected, lines) = written(LogFormat::Json, Duration::ZERO);
        let lines: Vec<serde_json::Value> = lines
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let mut line = lines[0].clone();
        assert_eq!(
            line,
            serde_json::json!({
                "time": line["time"],
                "level": "INFO",
                "target": "tokenwarden::access",
                "message": MESSAGE,
                "method": "POST",
                "path": "/oauth2/token",
                "status": 200,
                "latency_ms": 1.389448,
                "client_address": "203.0.113.9",
                "request_id": "4bf92f3577b34da6",
            })
        );
        for request_field in [
            "method",
            "path",
            "status",
            "latency_ms",
            "client_address",
            "request_id",
        ] {
            line.as_object_mut().unwrap().remove(request_field);
        }
        let expected: serde_json::Value = serde_json::from_str(&expected).unwrap();
        assert_eq!(line, expected);
        assert_eq!(lines[1]["client_address"], serde_json::Value::Null);
    }

    #[test]
    fn latency_is_printed_in_milliseconds_to_the_nanosecond() {
        for (latency, printed) in [
            (Duration::ZERO, "0.000000ms"),
            (Duration::from_nanos(1), "0.000001ms"),
            (Duration::from_nanos(999_999), "0.999999ms"),
            (Duration::from_millis(1), "1.000000ms"),
            (Duration::from_micros(12_500_250), "12500.250000ms"),
        ] {
            let mut line = String::new();
            push_milliseconds(&mut line, latency);
            assert_eq!(line, printed);
            assert_eq!(
                line,
                format!("{:.6}ms", latency.as_secs_f64() * 1000.0),
                "as the float format prints it"
            );
        }
        let mut status = String::new();
        push_decimal(&mut status, 404, 1);
        assert_eq!(status, "404");
    }
}
