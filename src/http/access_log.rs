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
pub(crate) fn record(method: &Method, path: &str, status: u16, latency: Duration) {
    let first_of_turn = PENDING.with(|pending| {
        let mut pending = lock(pending);
        let first = pending.lines.is_empty();
        pending.append(
            SystemTime::now(),
            format_args!(
                "{method} {path} {status} {:.6}ms",
                latency.as_secs_f64() * 1000.0
            ),
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
    fn append(&mut self, now: SystemTime, message: std::fmt::Arguments<'_>) {
        let second = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if second != self.second || self.timestamp.is_empty() {
            self.second = second;
            self.timestamp = DateTime::<Utc>::from(now)
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
        }
        // Writing into a String cannot fail.
        let _ = writeln!(
            self.lines,
            "[{} INFO  {ACCESS_LOG}] {message}",
            self.timestamp
        );
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
        let message = "POST /oauth2/token 200 1.389448ms";
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
        pending.append(at, format_args!("{message}"));
        assert_eq!(pending.lines, expected);

        pending.append(at + Duration::from_millis(1500), format_args!("{message}"));
        let later = pending.lines.lines().nth(1).unwrap();
        assert_ne!(
            later,
            expected.trim_end(),
            "the timestamp follows the clock"
        );
        pending.lines.clear();
    }
}
