//! The process's log on stderr: env_logger, set up once by `cli::run`, in text (env_logger's own
//! format) or JSON (`--log-format json`: one object per line with `time`, `level`, `target` and
//! `message`). The request lines of `http::access_log` are written in the same format.

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
}

/// The message as a JSON string, escaped by serde_json as it is formatted.
fn display<S: Serializer>(message: &&fmt::Arguments<'_>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(message)
}

fn write_json(out: &mut env_logger::fmt::Formatter, record: &log::Record<'_>) -> io::Result<()> {
    let line = JsonLine {
        time: &rfc3339_millis(SystemTime::now()),
        level: record.level().as_str(),
        target: record.target(),
        message: record.args(),
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

/// `2026-11-30T07:05:01.123Z`: RFC 3339 in UTC, to the millisecond.
fn rfc3339_millis(at: SystemTime) -> String {
    DateTime::<Utc>::from(at).to_rfc3339_opts(SecondsFormat::Millis, true)
}
