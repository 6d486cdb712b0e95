//! Noticing writes, by this process or any other, so that caches above the store stay exact.
//!
//! The feed is a generation number. Every write that can change an introspection or
//! authentication answer moves it forward; a cache entry remembers the generation it was filled
//! under and is used only while that is still the current one. Readers take the generation *before*
//! querying the database, so an entry filled while a write was committing can never be served.
//!
//! - SQLite: `PRAGMA data_version` on a dedicated connection changes whenever another connection
//!   (another process such as the CLI, or this process's pool) has committed. Every
//!   [`ChangeFeed::generation`] call first compares the WAL-index header in shared memory with the
//!   one seen before the last pragma (`sqlite_probe.rs`); only when it differs, that is after a
//!   commit, is the pragma asked again. Either way the request after any write sees it.
//! - PostgreSQL: every write transaction also runs `pg_notify('tokenwarden_changes', '')`, delivered
//!   to all nodes at commit; a listener thread per node moves the generation within milliseconds.
//!   Writes through this node move it synchronously after commit. While the listener is not
//!   connected, notifications may be lost, so the feed reports itself not live and caches are
//!   bypassed until it has reconnected.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::BigInt;
use diesel::sqlite::Sqlite;
use diesel::{Connection, PgConnection, QueryResult, RunQueryDsl, SqliteConnection};

use super::sqlite_probe::{Header, ProbeConnection};
use super::StoreError;

/// The channel every writer notifies on PostgreSQL.
pub const CHANNEL: &str = "tokenwarden_changes";
/// Run inside every PostgreSQL write transaction (see `write_transaction!`).
pub(crate) const NOTIFY: &str = "SELECT pg_notify('tokenwarden_changes', '')";
const POLL_INTERVAL: Duration = Duration::from_millis(2);
const LISTENER_HEALTH_CHECK: Duration = Duration::from_secs(1);
const RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// How long the listener's health check may stay unacknowledged by the network before the kernel
/// drops its connection (libpq's `tcp_user_timeout`, milliseconds). Without it a network partition,
/// which closes nothing, would leave the check waiting until TCP gives up (minutes), the node still
/// "live", and its caches answering without hearing other nodes' writes.
const LISTENER_TCP_USER_TIMEOUT_MS: u32 = 2_000;

pub struct ChangeFeed {
    generation: AtomicU64,
    live: AtomicBool,
    sqlite_probe: Option<Mutex<SqliteProbe>>,
    /// Raised while [`ChangeFeed::write_unnoticed`] may hold the probe across a commit.
    adopting: AtomicBool,
}

struct SqliteProbe {
    connection: Option<ProbeConnection>,
    path: String,
    last_seen: i64,
    /// The WAL-index header read just before the pragma that gave `last_seen`: while the header
    /// still reads the same, no commit has completed since, and `last_seen` is still current.
    header_seen: Option<Header>,
}

/// `PRAGMA data_version` as a query type of its own. `diesel::sql_query` is never cached, so it
/// was parsed and planned on every call (~8,000 instructions, docs/performance.md); a type with a
/// static query id is prepared once per connection and kept in diesel's statement cache, so each
/// check only resets and steps the prepared statement. Stepping it runs the pragma again: the
/// value is read at execution, not at preparation.
#[derive(Debug, Clone, Copy, QueryId)]
struct DataVersion;

impl QueryFragment<Sqlite> for DataVersion {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        out.push_sql("PRAGMA data_version");
        Ok(())
    }
}

impl Query for DataVersion {
    type SqlType = BigInt;
}

impl RunQueryDsl<SqliteConnection> for DataVersion {}

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
                header_seen: None,
            })),
            adopting: AtomicBool::new(false),
        }
    }

    /// For PostgreSQL: not live until [`ChangeFeed::listen`] has a connection listening.
    pub(crate) fn postgres() -> Self {
        Self {
            generation: AtomicU64::new(0),
            live: AtomicBool::new(false),
            sqlite_probe: None,
            adopting: AtomicBool::new(false),
        }
    }

    /// The current generation, after noticing any write committed since the last call.
    pub fn generation(&self) -> Result<u64, StoreError> {
        if let Some(probe) = &self.sqlite_probe {
            self.notice(&mut probe.lock().unwrap_or_else(PoisonError::into_inner))?;
        }
        Ok(self.generation.load(Ordering::Acquire))
    }

    /// [`ChangeFeed::generation`] for the HTTP worker, which must not wait long: `None` while
    /// this process commits a write it adopts without moving the generation
    /// ([`ChangeFeed::write_unnoticed`] holds the SQLite probe from before that commit until it
    /// is adopted). The caller then asks [`ChangeFeed::generation`] where
    /// waiting is allowed, and learns the outcome instead of seeing the commit half-adopted. A
    /// probe held by another check (a header comparison, at most a pragma) is waited for.
    pub fn generation_without_waiting(&self) -> Result<Option<u64>, StoreError> {
        if let Some(probe) = &self.sqlite_probe {
            let mut probe = match probe.try_lock() {
                Ok(probe) => probe,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) if self.adopting.load(Ordering::Acquire) => {
                    return Ok(None)
                }
                Err(TryLockError::WouldBlock) => {
                    probe.lock().unwrap_or_else(PoisonError::into_inner)
                }
            };
            self.notice(&mut probe)?;
        }
        Ok(Some(self.generation.load(Ordering::Acquire)))
    }

    /// Runs the pragma when the WAL-index header has changed since the last reading, and moves
    /// the generation when the version has.
    fn notice(&self, probe: &mut SqliteProbe) -> Result<(), StoreError> {
        if !probe.unchanged_since_last_reading() {
            let reading = probe.read()?;
            if probe.record(reading) {
                self.advance();
            }
        }
        Ok(())
    }

    /// SQLite: runs `write` in a `BEGIN IMMEDIATE` transaction on `writer` and commits it without
    /// moving the generation, when that commit is provably the only one the probe would notice.
    /// For writes that change no cached answer (`last_used_at`), which otherwise empty every
    /// cache on each usage flush (docs/performance.md).
    ///
    /// `data_version` does not count commits, it only differs after any number of them, so the
    /// proof comes from two readings on each side of the commit:
    /// 1. inside the transaction (no other connection can commit while it holds the write lock),
    ///    the writer's own `data_version` and the probe's; a probe reading that differs from the
    ///    last one is an earlier commit by someone else, and moves the generation as usual;
    /// 2. after the commit, the probe's reading, then the writer's again. The writer's own commit
    ///    does not change its `data_version`, so an unchanged writer reading means nobody else
    ///    committed between the transaction and the probe's reading: the probe's new value is
    ///    ours alone and is adopted silently. Otherwise the generation moves as for any other
    ///    write.
    ///
    /// The probe lock is held from the first readings until the commit is adopted: a check that
    /// ran in between would see the new version before the second readings and move the
    /// generation, and did so for about one flush in three under load (each time a refill of
    /// every cached token). Checks that may wait (off the worker) wait; the worker's check
    /// ([`ChangeFeed::generation_without_waiting`]) does not, and its request goes the way of a
    /// cache miss instead. Checks that wait do so for the commit (writing its pages to the log;
    /// the usage flush commits without `fsync`, see `UnnoticedWrite for SqliteConnection`), and
    /// at worst for the writer's busy timeout, should its second `data_version` meet a lock
    /// (SQLite recovering the WAL index after a crashed writer).
    pub(crate) fn write_unnoticed<T>(
        &self,
        writer: &mut SqliteConnection,
        write: impl FnOnce(&mut SqliteConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_unnoticed_with(writer, write, || {})
    }

    /// [`ChangeFeed::write_unnoticed`] with `after_commit` run between the commit and the second
    /// readings, so tests can commit from another connection in that window.
    fn write_unnoticed_with<T>(
        &self,
        writer: &mut SqliteConnection,
        write: impl FnOnce(&mut SqliteConnection) -> Result<T, StoreError>,
        after_commit: impl FnOnce(),
    ) -> Result<T, StoreError> {
        let Some(probe) = &self.sqlite_probe else {
            return writer.immediate_transaction(write);
        };
        // Declared before the probe guard, so lowered only after the guard is dropped.
        let _adopting = Raised::raise(&self.adopting);
        // The guard leaves the transaction with the readings and is dropped after the second
        // ones (or with an error, the commit's included).
        let mut held = None;
        let value = writer.immediate_transaction(|writer| {
            let value = write(writer)?;
            let writer_version = DataVersion.get_result::<i64>(writer)?;
            let mut probe = probe.lock().unwrap_or_else(PoisonError::into_inner);
            let reading = probe.read()?;
            if probe.record(reading) {
                self.advance();
            }
            held = Some((probe, writer_version));
            Ok::<_, StoreError>(value)
        })?;
        after_commit();
        let Some((mut probe, writer_before)) = held else {
            return Ok(value);
        };
        // On failure nothing is recorded: the header seen is still the one from before the
        // commit, so the next check runs the pragma and notices it (and anyone else's).
        let reading = probe.read()?;
        let writer_after = DataVersion.get_result::<i64>(writer)?;
        if writer_after == writer_before {
            probe.record(reading);
        } else if probe.record(reading) {
            self.advance();
        }
        Ok(value)
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
        let mut connection = PgConnection::establish(&with_tcp_user_timeout(url))
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

/// A flag raised for as long as this value lives, whichever way its scope ends.
struct Raised<'a>(&'a AtomicBool);

impl<'a> Raised<'a> {
    fn raise(flag: &'a AtomicBool) -> Self {
        flag.store(true, Ordering::Release);
        Self(flag)
    }
}

impl Drop for Raised<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// `url` with [`LISTENER_TCP_USER_TIMEOUT_MS`] as libpq's `tcp_user_timeout`, unless the operator
/// set one in the URL.
fn with_tcp_user_timeout(url: &str) -> String {
    if url.contains("tcp_user_timeout=") {
        return url.to_string();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}tcp_user_timeout={LISTENER_TCP_USER_TIMEOUT_MS}")
}

/// A transaction for writes that change no cached answer (`last_used_at`): on SQLite committed
/// through [`ChangeFeed::write_unnoticed`]; on PostgreSQL a plain transaction, which sends no
/// notification. One query body serves both backends (`with_connection!`).
pub(crate) trait UnnoticedWrite: Connection + Sized {
    fn unnoticed_transaction<T>(
        &mut self,
        changes: &ChangeFeed,
        write: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>;
}

/// How every SQLite commit but the usage flush's runs: `fsync` at commit, and SQLite's default
/// automatic checkpoint (1,000 pages). `write_transaction!` sets it before it begins, and an
/// unnoticed write after its own commit.
pub(crate) const DURABLE_COMMITS: &str =
    "PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 1000";

impl UnnoticedWrite for SqliteConnection {
    /// [`ChangeFeed::write_unnoticed`] holds the probe from before the commit until it is adopted,
    /// so every cached answer in that time waits (docs/performance.md, "After the seventh fix": at
    /// 1,000,000 tokens the probe was held 20 to 220 ms per usage flush, and the p99 latency of
    /// active introspection was 12 to 34 ms). Two things made the commit long, and neither is
    /// needed for `last_used_at`:
    /// - the `fsync` of `synchronous = FULL`: this commit is `NORMAL`, durable at the next
    ///   checkpoint or full commit (a power failure may lose one batch of usage times, which are
    ///   approximate anyway; an interrupted process loses nothing, the log is in the page cache);
    /// - a checkpoint, which a commit that takes the log past `wal_autocheckpoint` pages runs
    ///   inside `COMMIT`: this commit does not checkpoint, and the log is checkpointed passively
    ///   afterwards, with the probe free.
    ///
    /// Both are per-connection settings on a pooled connection, reset after the write. Should a
    /// reset fail, the writes that change answers do not depend on it: `write_transaction!` sets
    /// both itself. A checkpoint that finds readers in the way does what it can and leaves the rest
    /// to the next one; only an error is logged.
    fn unnoticed_transaction<T>(
        &mut self,
        changes: &ChangeFeed,
        write: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.batch_execute("PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0")?;
        let written = changes.write_unnoticed(self, write);
        self.batch_execute(DURABLE_COMMITS)?;
        let value = written?;
        if let Err(error) = self.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
            log::debug!("usage flush: checkpoint left to a later commit: {error}");
        }
        Ok(value)
    }
}

impl UnnoticedWrite for PgConnection {
    fn unnoticed_transaction<T>(
        &mut self,
        _changes: &ChangeFeed,
        write: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.transaction(write)
    }
}

impl SqliteProbe {
    /// Whether the WAL-index header still reads as it did before the last pragma, so that no
    /// commit can have completed since. False whenever that cannot be told.
    fn unchanged_since_last_reading(&self) -> bool {
        let now = self.connection.as_ref().and_then(ProbeConnection::header);
        now.is_some() && now == self.header_seen
    }

    /// Stores a reading as the last one seen; true when its version differs from the previous.
    /// The header and the version are only ever stored together: a header stored without its
    /// version would make later checks skip the pragma that has not been heard yet.
    fn record(&mut self, reading: Reading) -> bool {
        let changed = reading.version != self.last_seen;
        self.last_seen = reading.version;
        self.header_seen = reading.header;
        changed
    }

    /// A failed query drops the connection; the next call opens a new one, whose first version
    /// counts as a change and so moves the generation (never a stale hit). A new connection's
    /// numbering starts afresh, so its first value may equal `last_seen` by coincidence: hence
    /// `last_seen` is reset rather than compared.
    fn read(&mut self) -> Result<Reading, StoreError> {
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => {
                let connection = ProbeConnection::open(&self.path).map_err(StoreError::Listener)?;
                self.last_seen = -1;
                self.header_seen = None;
                connection
            }
        };
        // Read before the pragma: a commit between the two then shows as a changed header at the
        // next check, which asks the pragma again (never the reverse).
        let header = connection.header();
        let version = connection.data_version().map_err(|message| {
            // As a query error, so a busy or full database is a 503 like any other query's.
            StoreError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::Unknown,
                Box::new(message),
            ))
        })?;
        self.connection = Some(connection);
        Ok(Reading { header, version })
    }
}

/// One `PRAGMA data_version` and the WAL-index header read just before it.
struct Reading {
    header: Option<Header>,
    version: i64,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_listener_bounds_how_long_its_health_check_may_go_unanswered() {
        assert_eq!(
            super::with_tcp_user_timeout("postgres://u@h/db"),
            "postgres://u@h/db?tcp_user_timeout=2000"
        );
        assert_eq!(
            super::with_tcp_user_timeout("postgres://u@h/db?sslmode=disable"),
            "postgres://u@h/db?sslmode=disable&tcp_user_timeout=2000"
        );
        let chosen = "postgres://u@h/db?tcp_user_timeout=500";
        assert_eq!(super::with_tcp_user_timeout(chosen), chosen);
    }

    use super::*;
    use crate::store::tests::durability_pragmas;

    /// A fresh database in WAL mode with a table `t`, and a connection to it; keep the directory
    /// for as long as the database is used.
    fn wal_database() -> (tempfile::TempDir, String, SqliteConnection) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("feed.db").to_string_lossy().into_owned();
        let mut connection = SqliteConnection::establish(&path).unwrap();
        connection
            .batch_execute("PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER)")
            .unwrap();
        (dir, path, connection)
    }

    #[test]
    fn writers_notify_the_channel_listeners_listen_on() {
        assert!(NOTIFY.contains(&format!("'{CHANNEL}'")));
    }

    /// Every commit by another connection is noticed by the very next call, and nothing else
    /// moves the generation. The pragma runs only when the WAL-index header shows a commit since
    /// the last one.
    #[test]
    fn the_sqlite_probe_notices_each_commit_at_its_next_call_and_asks_the_pragma_only_then() {
        let (_dir, path, mut writer) = wal_database();
        let feed = ChangeFeed::sqlite(path.clone());
        let pragmas_run = || {
            let probe = feed.sqlite_probe.as_ref().unwrap().lock().unwrap();
            probe.connection.as_ref().map_or(0, |c| c.pragmas_run)
        };

        let mut generation = feed.generation().unwrap();
        for n in 0..50 {
            let pragmas = pragmas_run();
            for _ in 0..3 {
                assert_eq!(
                    feed.generation().unwrap(),
                    generation,
                    "no commit, no change"
                );
            }
            if n > 0 {
                assert_eq!(
                    pragmas_run(),
                    pragmas,
                    "without a commit, the WAL-index header answers alone"
                );
            }
            writer
                .batch_execute(&format!("INSERT INTO t VALUES ({n})"))
                .unwrap();
            let next = feed.generation().unwrap();
            assert!(
                next > generation,
                "commit {n} was not noticed by the next call"
            );
            generation = next;
        }
    }

    /// A reading taken but never recorded (a usage flush that fails after its probe reading)
    /// must not let the next check skip the pragma: the header it saw already holds another
    /// connection's commit, which the generation has not heard of yet.
    #[test]
    fn a_reading_left_unrecorded_does_not_hide_a_commit() {
        let (_dir, path, mut other) = wal_database();
        let feed = ChangeFeed::sqlite(path);
        let start = feed.generation().unwrap();
        other.batch_execute("INSERT INTO t VALUES (1)").unwrap();
        let probe = feed.sqlite_probe.as_ref().unwrap();
        let _unrecorded = probe.lock().unwrap().read().unwrap();
        assert!(
            feed.generation().unwrap() > start,
            "the commit went unnoticed"
        );
    }

    /// The usage flush commits without `fsync` and without a checkpoint inside `COMMIT`, then
    /// leaves the pooled connection as every other one is (`synchronous = FULL`, automatic
    /// checkpoints) and checkpoints the log itself.
    #[test]
    fn an_unnoticed_transaction_relaxes_durability_for_its_own_commit_only() {
        let (_dir, path, mut writer) = wal_database();
        writer.batch_execute("PRAGMA synchronous = FULL").unwrap();
        let feed = ChangeFeed::sqlite(path.clone());
        let inside = writer
            .unnoticed_transaction(&feed, |conn| {
                conn.batch_execute("INSERT INTO t VALUES (1)")?;
                Ok(durability_pragmas(conn)?)
            })
            .unwrap();
        assert_eq!(inside, (1, 0), "NORMAL, no automatic checkpoint");
        assert_eq!(
            durability_pragmas(&mut writer).unwrap(),
            (2, 1000),
            "FULL and SQLite's default automatic checkpoint again"
        );
        let mut other = SqliteConnection::establish(&path).unwrap();
        assert_eq!(
            diesel::select(diesel::dsl::sql::<BigInt>("(SELECT count(*) FROM t)"))
                .get_result::<i64>(&mut other)
                .unwrap(),
            1
        );
        // The flush checkpointed the log: the database file alone, without it, has the row.
        let copy = format!("{path}.copy");
        std::fs::copy(&path, &copy).unwrap();
        let mut copy = SqliteConnection::establish(&copy).unwrap();
        assert_eq!(
            diesel::select(diesel::dsl::sql::<BigInt>("(SELECT count(*) FROM t)"))
                .get_result::<i64>(&mut copy)
                .unwrap(),
            1
        );
    }

    /// The usage flush's commit keeps the generation only when it was the one commit the probe
    /// could see; any other commit, before, during the window after it, or later, moves it.
    #[test]
    fn an_unnoticed_write_keeps_the_generation_only_when_it_was_the_only_commit() {
        let (_dir, path, mut writer) = wal_database();
        let mut other = SqliteConnection::establish(&path).unwrap();
        let feed = ChangeFeed::sqlite(path.clone());
        let insert = |n: i32| {
            move |conn: &mut SqliteConnection| -> Result<(), StoreError> {
                conn.batch_execute(&format!("INSERT INTO t VALUES ({n})"))?;
                Ok(())
            }
        };

        let start = feed.generation().unwrap();
        feed.write_unnoticed(&mut writer, insert(1)).unwrap();
        assert_eq!(feed.generation().unwrap(), start, "alone: kept");
        other.batch_execute("SELECT * FROM t WHERE n = 1").unwrap();

        other.batch_execute("INSERT INTO t VALUES (2)").unwrap();
        feed.write_unnoticed(&mut writer, insert(3)).unwrap();
        let after_earlier = feed.generation().unwrap();
        assert!(
            after_earlier > start,
            "an earlier commit by another connection"
        );

        feed.write_unnoticed_with(&mut writer, insert(4), || {
            other.batch_execute("INSERT INTO t VALUES (5)").unwrap();
        })
        .unwrap();
        let after_racing = feed.generation().unwrap();
        assert!(
            after_racing > after_earlier,
            "a commit between ours and the second readings"
        );

        feed.write_unnoticed(&mut writer, insert(6)).unwrap();
        assert_eq!(feed.generation().unwrap(), after_racing);
        feed.write_unnoticed_with(&mut writer, insert(61), || {
            assert_eq!(
                feed.generation_without_waiting().unwrap(),
                None,
                "a check while the commit is being adopted neither waits nor decides"
            );
        })
        .unwrap();
        assert_eq!(
            feed.generation_without_waiting().unwrap(),
            Some(after_racing),
            "adopted: a check in between would have moved it"
        );
        other.batch_execute("INSERT INTO t VALUES (7)").unwrap();
        let after_later = feed.generation().unwrap();
        assert!(after_later > after_racing, "a later commit");
        writer.batch_execute("INSERT INTO t VALUES (8)").unwrap();
        let after_plain = feed.generation().unwrap();
        assert!(
            after_plain > after_later,
            "a plain write by the same connection"
        );

        let failed = feed.write_unnoticed(&mut writer, |conn| -> Result<(), StoreError> {
            conn.batch_execute("INSERT INTO t VALUES (9)")?;
            Err(StoreError::Contention("a test failure"))
        });
        assert!(failed.is_err());
        assert_eq!(feed.generation().unwrap(), after_plain, "rolled back");

        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            n: i32,
        }
        let rows: Vec<i32> = diesel::sql_query("SELECT n FROM t ORDER BY n")
            .load::<Row>(&mut other)
            .unwrap()
            .into_iter()
            .map(|row| row.n)
            .collect();
        assert_eq!(rows, [1, 2, 3, 4, 5, 6, 7, 8, 61]);
    }
}
