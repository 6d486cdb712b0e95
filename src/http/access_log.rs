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
//! The lines look like env_logger's, `[2026-11-30T07:05:01Z INFO  tokenwarden::access] POST
//! /oauth2/token 200 1.389448ms`, and obey `RUST_LOG` like any other target
//! (`RUST_LOG=info,tokenwarden::access=warn` turns them off).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::Method;
use chrono::{DateTime, Utc};

/// The log target of the request lines.
pub const ACCESS_LOG: &str = "tokenwarden::access";

/// Whether request lines are wanted (`RUST_LOG`); when not, nothing else here runs.
pub(crate) fn enabled() -> bool {
    log::log_enabled!(target: ACCESS_LOG, log::Level::Info)
}

/// Adds one request's line to this worker's batch: method, path (never the query string, which
/// could carry a token sent by mistake), status and latency in milliseconds. Runs on an actix
/// worker only: the flush is a task of the worker's own event loop.
pub(crate) fn record(
    client: Option<IpAddr>,
    method: &Method,
    path: &str,
    status: u16,
    latency: Duration,
) {
    let first_of_turn = PENDING.with(|pending| {
        let mut pending = lock(pending);
        let first = pending.lines.is_empty();
        pending.append(
            SystemTime::now(),
            client,
            method.as_str(),
            path,
            status,
            latency,
        );
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
    lines: String,
    /// The second `timestamp` was rendered for, and its text: one rendering per second.
    second: u64,
    timestamp: String,
}

impl Pending {
    /// Appends `[timestamp INFO  tokenwarden::access] CLIENT METHOD PATH STATUS LATENCYms` (`-`
    /// for a client without an address), piece by
    /// piece: through `format_args!` the line cost about 1,900 instructions, a thirtieth of a
    /// cached introspection (docs/performance.md).
    fn append(
        &mut self,
        now: SystemTime,
        client: Option<IpAddr>,
        method: &str,
        path: &str,
        status: u16,
        latency: Duration,
    ) {
        let second = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if second != self.second || self.timestamp.is_empty() {
            self.second = second;
            self.timestamp = DateTime::<Utc>::from(now)
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
        }
        let line = &mut self.lines;
        line.push('[');
        line.push_str(&self.timestamp);
        line.push_str(" INFO  ");
        line.push_str(ACCESS_LOG);
        line.push_str("] ");
        match client {
            Some(address) => {
                let _ = write!(line, "{address}");
            }
            None => line.push('-'),
        }
        line.push(' ');
        line.push_str(method);
        line.push(' ');
        line.push_str(path);
        line.push(' ');
        push_decimal(line, u64::from(status), 1);
        line.push(' ');
        push_milliseconds(line, latency);
        line.push('\n');
    }

    /// One write of every pending line; the buffer keeps its allocation. Like env_logger, a
    /// failed write to stderr is not reported anywhere (there is nowhere left to report it).
    fn write_out(&mut self) {
        if self.lines.is_empty() {
            return;
        }
        let _ = std::io::stderr().lock().write_all(self.lines.as_bytes());
        self.lines.clear();
    }
}

/// `latency` in milliseconds with six decimals (whole nanoseconds), as `{:.6}ms` would print it.
fn push_milliseconds(line: &mut String, latency: Duration) {
    // u64 nanoseconds last 584 years; u128 arithmetic is a library call per digit.
    let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
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

    /// The lines are byte for byte what env_logger's default format (which every other line
    /// uses) prints for the same record at the same second.
    #[test]
    fn lines_match_env_loggers_default_format() {
        let captured = Captured::default();
        let logger = env_logger::Builder::new()
            .parse_filters("info")
            .target(env_logger::Target::Pipe(Box::new(captured.clone())))
            .build();
        let message = "203.0.113.9 POST /oauth2/token 200 1.389448ms";
        log::Log::log(
            &logger,
            &log::Record::builder()
                .target(ACCESS_LOG)
                .level(log::Level::Info)
                .args(format_args!("{message}"))
                .build(),
        );
        let expected = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let timestamp = &expected[1..expected.find(' ').unwrap()];
        let at = SystemTime::from(DateTime::parse_from_rfc3339(timestamp).unwrap());

        let mut pending = Pending::default();
        let latency = Duration::from_nanos(1_389_448);
        let client = Some("203.0.113.9".parse().unwrap());
        pending.append(at, client, "POST", "/oauth2/token", 200, latency);
        assert_eq!(pending.lines, expected);

        let next_second = at + Duration::from_millis(1500);
        pending.append(next_second, None, "POST", "/oauth2/token", 200, latency);
        let later = pending.lines.lines().nth(1).unwrap();
        assert_ne!(
            later,
            expected.trim_end(),
            "the timestamp follows the clock"
        );
        pending.lines.clear();
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
