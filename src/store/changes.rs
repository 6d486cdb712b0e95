//! Noticing writes, by this process or any other, so that caches above the store stay exact.
//!
//! The feed is a generation number. Every write that can change an introspection or
//! authentication answer moves it forward; a cache entry remembers the generation it was filled
//! under and is used only while that is still the current one. Readers take the generation *before*
//! querying the database, so an entry filled while a write was committing can never be served.
//!
//! - SQLite: `PRAGMA data_version` on a dedicated connection changes whenever another connection
//!   (another process such as the CLI, or this process's pool) has committed. It is asked on every
//!   [`ChangeFeed::generation`] call, so the request after any write sees it.
//! - PostgreSQL: every write transaction also runs `pg_notify('tokenwarden_changes', '')`, delivered
//!   to all nodes at commit; a listener thread per node moves the generation within milliseconds.
//!   Writes through this node move it synchronously after commit. While the listener is not
//!   connected, notifications may be lost, so the feed reports itself not live and caches are
//!   bypassed until it has reconnected.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl, SqliteConnection};

use super::StoreError;

/// The channel every writer notifies on PostgreSQL.
pub const CHANNEL: &str = "tokenwarden_changes";
/// Run inside every PostgreSQL write transaction (see `write_transaction!`).
pub(crate) const NOTIFY: &str = "SELECT pg_notify('tokenwarden_changes', '')";
const POLL_INTERVAL: Duration = Duration::from_millis(2);
const LISTENER_HEALTH_CHECK: Duration = Duration::from_secs(1);
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

pub struct ChangeFeed {
    generation: AtomicU64,
    live: AtomicBool,
    sqlite_probe: Option<Mutex<SqliteProbe>>,
}

struct SqliteProbe {
    connection: Option<SqliteConnection>,
    path: String,
    last_seen: i64,
}

#[derive(QueryableByName)]
struct DataVersion {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    data_version: i64,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed")
            .field("generation", &self.generation)
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

impl ChangeFeed {
    /// For SQLite: live at once, driven by `PRAGMA data_version` on the database at `path`.
    pub(crate) fn sqlite(path: String) -> Self {
        Self {
            generation: AtomicU64::new(0),
            live: AtomicBool::new(true),
            sqlite_probe: Some(Mutex::new(SqliteProbe {
                connection: None,
                path,
                last_seen: -1,
            })),
        }
    }

    /// For PostgreSQL: not live until [`ChangeFeed::listen`] has a connection listening.
    pub(crate) fn postgres() -> Self {
        Self {
            generation: AtomicU64::new(0),
            live: AtomicBool::new(false),
            sqlite_probe: None,
        }
    }

    /// The current generation, after noticing any write committed since the last call.
    pub fn generation(&self) -> Result<u64, StoreError> {
        if let Some(probe) = &self.sqlite_probe {
            let mut probe = probe
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let version = probe.data_version()?;
            if version != probe.last_seen {
                probe.last_seen = version;
                self.advance();
            }
        }
        Ok(self.generation.load(Ordering::Acquire))
    }

    /// Whether every write is guaranteed to be noticed; when not, caches must not answer.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Called after a write by this process has committed.
    pub(crate) fn advance(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Starts the PostgreSQL listener thread; it runs until `stop` is set.
    pub(crate) fn listen(self: &Arc<Self>, url: String, stop: Arc<AtomicBool>) {
        let feed = Arc::clone(self);
        let spawned = thread::Builder::new()
            .name("tokenwarden-listen".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    if let Err(error) = feed.listen_once(&url, &stop) {
                        log::warn!("change listener disconnected ({error}); caches bypassed until it reconnects");
                    }
                    feed.live.store(false, Ordering::Release);
                    feed.advance();
                    thread::sleep(RECONNECT_DELAY);
                }
            });
        if let Err(error) = spawned {
            log::error!("cannot start the change listener ({error}); caches stay bypassed");
        }
    }

    fn listen_once(&self, url: &str, stop: &AtomicBool) -> Result<(), StoreError> {
        let mut connection = PgConnection::establish(url)
            .map_err(|error| StoreError::Listener(error.to_string()))?;
        connection.batch_execute(&format!("LISTEN {CHANNEL}"))?;
        // Anything committed before LISTEN took effect was missed: start a fresh generation.
        self.advance();
        self.live.store(true, Ordering::Release);
        log::info!("listening for changes on channel {CHANNEL}");
        let mut last_check = Instant::now();
        while !stop.load(Ordering::Acquire) {
            let mut noticed = false;
            for notification in connection.notifications_iter() {
                notification?;
                noticed = true;
            }
            if noticed {
                self.advance();
            }
            if last_check.elapsed() >= LISTENER_HEALTH_CHECK {
                connection.batch_execute("SELECT 1")?;
                last_check = Instant::now();
            }
            thread::sleep(POLL_INTERVAL);
        }
        Ok(())
    }
}

impl SqliteProbe {
    /// A failed query drops the connection; the next call opens a new one, whose first version
    /// differs from `last_seen` and so moves the generation (never a stale hit).
    fn data_version(&mut self) -> Result<i64, StoreError> {
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => SqliteConnection::establish(&self.path)
                .map_err(|error| StoreError::Listener(error.to_string()))?,
        };
        let row =
            diesel::sql_query("PRAGMA data_version").get_result::<DataVersion>(&mut connection)?;
        self.connection = Some(connection);
        Ok(row.data_version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_notify_the_channel_listeners_listen_on() {
        assert!(NOTIFY.contains(&format!("'{CHANNEL}'")));
    }
}
