//! The one place that reads the wall clock. Called only at the edges (HTTP handlers, CLI commands);
//! everything below takes `now` as an argument. `clippy.toml` forbids `Utc::now` elsewhere.

use chrono::NaiveDateTime;

/// The current time in UTC, as stored in the database.
#[allow(clippy::disallowed_methods)]
pub fn now() -> NaiveDateTime {
    chrono::Utc::now().naive_utc()
}
