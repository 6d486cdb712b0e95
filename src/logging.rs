//! The process's log on stderr: env_logger, set up once by `cli::run`, in text (env_logger's own
//! format) or JSON (`--log-format json`: one object per line with `time`, `level`, `target`,
//! `message`, and `request_id` on the lines written while a request is handled). The request lines
//! of `http::access_log` are written in the same format.
//!
//! Also the id of the request a thread is working for, which the JSON lines carry. What an id is
//! and where it comes from is `http::request_id`'s business; here it is only text to copy.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Write as _};
use std::sync::OnceLock;
use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

/// How log lines are written: `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `[2026-11-30T07:05:01Z INFO  tokenwarden] message`, env_logger's default.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The format of the one logger of the process; like the logger itself, set once.
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Installs the logger: `RUST_LOG` filters, else `default_filter`.
pub fn init(format: LogFormat, default_filter: &str) {
    let _ = FORMAT.set(format);
    builder(format, default_filter).init();
}

/// The logger [`init`] installs, for tests that point it elsewhere.
pub fn builder(format: LogFormat, default_filter: &str) -> env_logger::Builder {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter));
    if format == LogFormat::Json {
        builder.format(write_json);
    }
    builder
}

/// The format [`init`] chose; text before (when nothing is logged anyway).
pub fn format() -> LogFormat {
    FORMAT.get().copied().unwrap_or_default()
}

/// One JSON log line, fields in this order.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: &'a str,
    level: &'a str,
    target: &'a str,
    #[serde(serialize_with = "display")]
    message: &'a fmt::Arguments<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

/// The message as a JSON string, escaped by serde_json as it is formatted.
fn display<S: Serializer>(message: &&fmt::Arguments<'_>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(message)
}

fn write_json(out: &mut env_logger::fmt::Formatter, record: &log::Record<'_>) -> io::Result<()> {
    let request_id = request_id();
    let line = JsonLine {
        time: &rfc3339_millis(SystemTime::now()),
        level: record.level().as_str(),
        target: record.target(),
        message: record.args(),
        request_id: request_id.as_ref().map(RequestId::as_str),
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

/// `2026-11-30T07:05:01.123Z`: RFC 3339 in UTC, to the millisecond.
fn rfc3339_millis(at: SystemTime) -> String {
    DateTime::<Utc>::from(at).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The longest request id log lines carry, in bytes (`http::request_id` accepts no longer one).
pub const REQUEST_ID_CAPACITY: usize = 128;

/// A request id as log lines carry it, kept inline so that setting and copying it never
/// allocates.
#[derive(Clone, Copy)]
pub struct RequestId {
    len: u8,
    bytes: [u8; REQUEST_ID_CAPACITY],
}

impl RequestId {
    /// `None` for a text longer than [`REQUEST_ID_CAPACITY`].
    pub fn new(text: &str) -> Option<Self> {
        let len = u8::try_from(text.len())
            .ok()
            .filter(|len| usize::from(*len) <= REQUEST_ID_CAPACITY)?;
        let mut bytes = [0; REQUEST_ID_CAPACITY];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Some(Self { len, bytes })
    }

    pub fn as_str(&self) -> &str {
        // Whole `&str` in, so whole characters out.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl Default for RequestId {
    /// The empty id.
    fn default() -> Self {
        Self {
            len: 0,
            bytes: [0; REQUEST_ID_CAPACITY],
        }
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

thread_local! {
    /// The request this thread is working for, if any.
    static REQUEST_ID: Cell<Option<RequestId>> = const { Cell::new(None) };
}

/// Runs `work` with `id` as the id of the request this thread works for: lines it logs carry it.
/// The previous id is back afterwards, even if `work` panics.
pub fn with_request_id<R>(id: Option<RequestId>, work: impl FnOnce() -> R) -> R {
    struct Restore(Option<RequestId>);
    impl Drop for Restore {
        fn drop(&mut self) {
            REQUEST_ID.set(self.0);
        }
    }
    let _restore = Restore(REQUEST_ID.replace(id));
    work()
}

/// The id of the request this thread is working for.
pub fn request_id() -> Option<RequestId> {
    REQUEST_ID.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_is_set_for_the_work_only() {
        assert!(request_id().is_none());
        let outer = RequestId::new("outer");
        let inner = RequestId::new("inner");
        with_request_id(outer, || {
            assert_eq!(request_id().unwrap().as_str(), "outer");
            let unwound = std::panic::catch_unwind(|| {
                with_request_id(inner, || {
                    assert_eq!(request_id().unwrap().as_str(), "inner");
                    panic!("the work fails");
                })
            });
            assert!(unwound.is_err());
            assert_eq!(request_id().unwrap().as_str(), "outer");
        });
        assert!(request_id().is_none());
    }

    #[test]
    fn request_ids_hold_up_to_their_capacity() {
        let longest = "x".repeat(REQUEST_ID_CAPACITY);
        assert_eq!(RequestId::new(&longest).unwrap().as_str(), longest);
        assert!(RequestId::new(&format!("{longest}x")).is_none());
        assert_eq!(RequestId::new("").unwrap().as_str(), "");
    }
}
