//! The only diesel code: connection pools for both backends, the schema, migrations and queries.
//!
//! Callers above this module never learn which backend they are on. Each query body is written
//! once and compiled once per backend by [`with_connection!`] and [`write_transaction!`]: an enum of
//! two pools rather than `diesel::MultiConnection`, so PostgreSQL errors keep their real message
//! ("connection refused") and dialect features (`ON CONFLICT`, `RETURNING`) stay available.
//!
//! Lookups by a unique key use `.get_result()`, not `.first()`: `.first()` binds its `LIMIT` as a
//! parameter, which makes SQLite re-prepare the statement on every execution (~125,000
//! instructions per query, docs/performance.md).

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, ManageConnection, Pool};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

mod admin_sessions;
mod admins;
pub(crate) mod audit;
mod backups;
mod changes;
mod conninfo;
mod introspection;
mod resource_servers;
pub mod schema;
mod site_search;
mod site_tokens;
mod sites;
mod sqlite_probe;
mod throttle;
mod tokens;

pub use admins::{AdminChange, AdminUpdate, NewAdmin};
pub use backups::{settle_sqlite_file, EndedSessions};
pub use changes::{ChangeFeed, ChangeTag, Stamp};
pub use conninfo::Conninfo;
pub use resource_servers::{ResourceServerAccess, ResourceServerChange};
pub use site_tokens::{
    Author, BulkChangeOutcome, BulkRefusal, NewSecondaryToken, NewTokenOutcome, TokenChange,
    TokenChangeOutcome,
};
pub use sites::SiteAuthentication;
pub use throttle::FailureCount;
pub use tokens::{InvalidationOutcome, NewPrimaryValue, PrimaryToken, PrimaryTokenOutcome};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
/// Advisory lock key serialising migrations across PostgreSQL clients (ASCII "twmigrat").
const MIGRATION_LOCK_KEY: i64 = 0x7477_6d69_6772_6174;

/// A migration error, or a database error around it, as one message.
#[derive(Debug)]
struct MigrationFailed(String);

impl From<diesel::result::Error> for MigrationFailed {
    fn from(error: diesel::result::Error) -> Self {
        Self(error.to_string())
    }
}
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had within the pool's timeout: the database is down or saturated.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[from] diesel::r2d2::PoolError),
    /// SQLite cannot open or write its file: a missing or read-only directory, a read-only disk.
    #[error(
        "{0}: the file's directory must exist and be writable (SQLite keeps its -wal and -shm \
         files beside the database), on a disk that is not read-only"
    )]
    SqliteFileUnwritable(String),
    #[error("a database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("database migrations failed: {0}")]
    Migration(String),
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    #[error("cannot open a change-notification connection: {0}")]
    Listener(String),
    /// A stored value is outside what the schema's CHECK constraints allow; a bug or manual edit.
    #[error("unexpected value in {0}")]
    UnexpectedValue(&'static str),
    /// A change was committed, but not every node confirmed it in time: its answer is not a
    /// success (the caller may repeat it; every change is idempotent).
    #[error("a change was saved but not every node confirmed it in time")]
    Unconfirmed,
    /// A write kept losing a race it is designed to retry; should not happen outside a bug.
    #[error("a concurrent update kept conflicting with {0}")]
    Contention(&'static str),
    /// An operation only an SQLite database has (a file copy).
    #[error(
        "this works on an SQLite database only; back up PostgreSQL with its own tools (pg_dump, \
         base backups), see docs/operations.md"
    )]
    NotSqlite,
}

impl StoreError {
    /// Failures that say "try again later" rather than "this server is broken": the database is
    /// unreachable or busy, or (SQLite) its disk is full or read-only. The operator reads the
    /// cause in the log; the file is intact (SQLite rolls the transaction back) and writes work
    /// again once space or write access returns.
    pub fn is_unavailable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            StoreError::Unavailable(_) | StoreError::Unconfirmed => true,
            StoreError::Query(Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _)) => true,
            StoreError::Query(Error::DatabaseError(_, info)) => [
                "database is locked",
                "no connection to the server",
                "canceling statement due to statement timeout",
                "server closed the connection unexpectedly",
                "terminating connection",
                "could not receive data from server",
                "could not send data to server",
                "in a read-only transaction",
                "database or disk is full",
                "attempt to write a readonly database",
            ]
            .iter()
            .any(|message| info.message().contains(message)),
            _ => false,
        }
    }
}

/// Where the data lives, parsed from `--database` / `TOKENWARDEN_DATABASE_URL`.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(Conninfo),
}

impl DatabaseUrl {
    /// `postgres://…`, `postgresql://…` or libpq's `keyword=value …` form is PostgreSQL;
    /// `sqlite://PATH`, `sqlite:PATH` or a bare path (without `=`) is an SQLite file (created on
    /// first use). Anything else is refused with a message, never taken for a file name.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let sqlite_path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"));
        if sqlite_path.is_none()
            && (url.starts_with("postgres") || Conninfo::looks_like_keywords(url))
        {
            return Conninfo::parse(url)
                .map(Self::Postgres)
                .map_err(StoreError::InvalidUrl);
        }
        let path = sqlite_path.unwrap_or(url);
        if path.trim().is_empty()
            || path == ":memory:"
            || path.contains("://")
            || path.chars().any(char::is_control)
        {
            return Err(StoreError::InvalidUrl(
                "expected postgres://…, a libpq connection string (host=… dbname=…), \
                 sqlite://PATH or a file path"
                    .into(),
            ));
        }
        Ok(Self::Sqlite(PathBuf::from(path)))
    }
}

/// Shows the URL without any password, so it can be logged.
impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(conninfo) => conninfo.fmt(f),
        }
    }
}

/// Pool sizing and timeouts.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// How long a request waits for a connection before it is answered 503.
    pub connection_timeout: Duration,
    /// SQLite only: how long a writer waits for the file lock.
    pub busy_timeout: Duration,
    /// PostgreSQL only: how long a node's caches may answer after its last confirmed renewal,
    /// and so the longest a write waits for a node that stopped confirming. Shorter than
    /// `connection_timeout`.
    pub cache_lease: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            connection_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            cache_lease: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct PoolState {
    pub connections: u32,
    pub idle_connections: u32,
}

#[derive(Clone)]
pub(crate) enum Pools {
    Sqlite(Pool<ConnectionManager<SqliteConnection>>),
    Postgres(Pool<PgManager>),
}

/// Handle to the database; cheap to clone (the pools are reference-counted).
#[derive(Clone)]
pub struct Store {
    pub(crate) pools: Pools,
    changes: Arc<ChangeFeed>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pools {
            Pools::Sqlite(_) => f.write_str("Store(sqlite)"),
            Pools::Postgres(_) => f.write_str("Store(postgres)"),
        }
    }
}

/// Runs `$body` with `$conn` bound to a pooled connection of whichever backend is in use; the body
/// is compiled once per backend.
macro_rules! with_connection {
    ($store:expr, |$conn:ident| $body:expr) => {
        match &$store.pools {
            $crate::store::Pools::Sqlite(pool) => {
                let $conn: &mut diesel::sqlite::SqliteConnection = &mut *pool.get()?;
                $body
            }
            $crate::store::Pools::Postgres(pool) => {
                let $conn: &mut diesel::pg::PgConnection = &mut *pool.get()?;
                $body
            }
        }
    };
}

/// Like [`with_connection!`], inside a transaction that may change what introspection or
/// authentication answers. The body gets `$changed`, a [`changes::Changed`] on which it names what
/// it changed (`changed.tag(ChangeTag::site(id))`); one that names nothing invalidates every cache.
/// The record is written in the same transaction, and the macro returns only once every cache that
/// could still answer as if the write had not happened has applied it (`Store::await_change`).
///
/// On SQLite it is `BEGIN IMMEDIATE`: a deferred transaction that reads and then writes fails at
/// once with `SQLITE_BUSY` when another connection committed in between, whatever the busy
/// timeout. Its commit is `synchronous = FULL`, with automatic checkpoints, whatever the pooled
/// connection was left with (unnoticed writes relax both for their own commit): an invalidation
/// must survive a power failure. On PostgreSQL it also notifies every node (delivered at commit).
///
/// The body runs in a closure of its own, so an early `return Ok(…)` in it still records what it
/// changed.
macro_rules! write_transaction {
    ($store:expr, |$conn:ident, $changed:ident| $body:expr) => {
        (|| -> Result<_, $crate::store::StoreError> {
            let mut changed = $crate::store::changes::Changed::everything();
            match &$store.pools {
                $crate::store::Pools::Sqlite(pool) => {
                    let conn: &mut diesel::sqlite::SqliteConnection = &mut *pool.get()?;
                    diesel::connection::SimpleConnection::batch_execute(
                        conn,
                        $crate::store::changes::DURABLE_COMMITS,
                    )?;
                    let value = conn.immediate_transaction(|conn| {
                        let $changed = &mut changed;
                        let value = $crate::store::run_body(conn, |$conn| $body)?;
                        $crate::store::ChangeFeed::record_sqlite(conn, &changed)?;
                        Ok::<_, $crate::store::StoreError>(value)
                    })?;
                    $store.changes().after_sqlite_commit()?;
                    Ok(value)
                }
                $crate::store::Pools::Postgres(pool) => {
                    // The connection goes back to the pool before the wait, which needs one.
                    let mut pooled = pool.get()?;
                    let conn: &mut diesel::pg::PgConnection = &mut *pooled;
                    let (value, seq) = conn.transaction(|conn| {
                        let $changed = &mut changed;
                        let value = $crate::store::run_body(conn, |$conn| $body)?;
                        let seq = $crate::store::ChangeFeed::record_postgres(conn, &changed)?;
                        Ok::<_, $crate::store::StoreError>((value, seq))
                    })?;
                    drop(pooled);
                    if let Some(seq) = seq {
                        $store.await_change(seq)?;
                    }
                    Ok(value)
                }
            }
        })()
    };
}

/// The assignments of a secret rotation's one `UPDATE` (a site's auth key, a resource server's or an
/// admin's client secret): `$digest` becomes the current digest; the current one moves to
/// `$previous` until `$valid_until` when the rotation has an overlap (`Some`), and `$previous` is
/// cleared when it has none. The database reads the current digest from the row it updates, so
/// concurrent rotations of one client queue on its row lock (SQLite: one writer at a time) and
/// leave one current digest and at most one previous, never one that no rotation returned.
macro_rules! secret_rotation {
    ($current:expr, $previous:expr, $previous_valid_until:expr, $digest:expr, $valid_until:expr) => {
        (
            $previous.eq(diesel::dsl::case_when(
                diesel::IntoSql::into_sql::<diesel::sql_types::Bool>($valid_until.is_some()),
                $current,
            )),
            $previous_valid_until.eq($valid_until),
            $current.eq($digest),
        )
    };
}

pub(crate) use {secret_rotation, with_connection, write_transaction};

/// Runs a [`write_transaction!`] body as a closure of its own, so that an early `return` in the
/// body leaves only the body and the change is still recorded.
pub(crate) fn run_body<C, T>(
    conn: &mut C,
    body: impl FnOnce(&mut C) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    body(conn)
}

/// Sets the pragmas every SQLite connection needs: a busy timeout so writers queue instead of
/// failing, full fsync at commit (relaxed only by the usage flush, for its own commit:
/// `UnnoticedWrite`) and foreign keys (off by default in SQLite); and replaces `lower()` with a
/// Unicode-aware one, as PostgreSQL's is (see `site_search::lower`). WAL mode belongs to the
/// file, not the connection: [`enter_wal_mode`] sets it once before the pool opens.
#[derive(Debug)]
struct SqlitePragmas {
    busy_timeout: Duration,
}

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {}; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
            self.busy_timeout.as_millis()
        ))
        .map_err(diesel::r2d2::Error::QueryError)?;
        site_search::lower_utils::register_impl(conn, |text: String| text.to_lowercase())
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Puts an SQLite file into WAL mode, so readers never wait for the writer, before any pooled
/// connection opens it.
///
/// Every pooled connection setting WAL itself raced on a fresh file: r2d2 opens a pool's
/// connections concurrently, and a connection that finds the file switching journal modes under
/// it gets `SQLITE_BUSY` at once, without the busy timeout's wait (seen as r2d2 logging "database
/// is locked" on one CLI command in five on a fresh file). Another process starting on the same
/// fresh file can still race this one, so a busy answer is retried until the busy timeout is spent.
///
/// This is the first access to the file, so it is also where a missing or read-only directory or
/// disk shows: that is reported as [`StoreError::SqliteFileUnwritable`], which says what to fix.
fn enter_wal_mode(path: &str, busy_timeout: Duration) -> Result<(), StoreError> {
    let unwritable = |cause: String| StoreError::SqliteFileUnwritable(cause);
    // SQLite itself would open a file it cannot write read-only, without a word, whenever its
    // -shm file is left over from an earlier process: reads would work and every write fail.
    match std::fs::OpenOptions::new().append(true).open(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            return Err(unwritable(format!("{path}: {err}")));
        }
        _ => {}
    }
    let mut conn = SqliteConnection::establish(path).map_err(|err| unwritable(err.to_string()))?;
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = {}",
        busy_timeout.as_millis()
    ))?;
    let deadline = std::time::Instant::now() + busy_timeout;
    loop {
        match conn.batch_execute("PRAGMA journal_mode = WAL") {
            Err(diesel::result::Error::DatabaseError(_, info))
                if info.message().contains("database is locked")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(diesel::result::Error::DatabaseError(_, info))
                if ["unable to open", "readonly"]
                    .iter()
                    .any(|cause| info.message().contains(cause)) =>
            {
                return Err(unwritable(info.message().to_string()));
            }
            outcome => return Ok(outcome?),
        }
    }
}

/// The PostgreSQL pool's connection manager: diesel's, with a health check that costs no round
/// trip.
///
/// r2d2's default check on checkout is diesel's `SELECT 1`: a second round trip for every query,
/// which cost a third of `/oauth2/token`'s throughput on PostgreSQL (docs/performance.md). Simply
/// switching it off would rely on diesel's `has_broken` alone, which looks only at the
/// transaction state, so a dead connection could go back into the pool and fail the requests
/// that took it (seen once under load in `tests/it/faults.rs`: libpq's "no connection to the
/// server", then a 500). So instead:
/// - a connection is discarded when it comes back from a request broken: diesel's check, or
///   libpq finding it gone ([`is_gone`], a non-blocking read); and the loss makes every other
///   connection of the pool suspect: each is pinged once, at its next checkout (`is_valid`), and
///   replaced if dead. A database restart therefore costs one failed request (503
///   `temporarily_unavailable`, `http/error.rs`), not one per pooled connection;
/// - otherwise a checkout costs one atomic load and the same non-blocking read, which also
///   catches a connection the server closed while it sat idle (an idle timeout, a terminated
///   backend).
///
/// The price: a connection that dies silently while idle (a firewall forgetting the flow, a
/// network partition: nothing arrives on its socket) fails the one request that takes it next,
/// with 503 once TCP gives up; it is then replaced, and the others are checked.
///
/// Every connection is bounded: libpq's keepalives, `tcp_user_timeout` and `connect_timeout`
/// from `--db-timeout-ms` (`conninfo::bounded_by`), and `statement_timeout` set when it opens,
/// so no database call outlasts the timeout, not only the wait for a pooled connection. And when
/// the change listener loses its connection (`retirements`), every connection opened before is
/// replaced at its next checkout: after a failover none keeps talking to a primary that was cut
/// off but not stopped.
#[derive(Debug)]
pub(crate) struct PgManager {
    diesel: ConnectionManager<PgConnection>,
    /// `SET statement_timeout` for each new connection.
    statement_timeout: Duration,
    /// Moves on whenever a connection of this pool comes back broken.
    losses: AtomicU64,
    /// Moves on whenever the change listener loses its connection (`ChangeFeed`).
    retirements: Arc<AtomicU64>,
}

/// A pooled PostgreSQL connection; dereferences to diesel's `PgConnection`.
pub(crate) struct PgSession {
    connection: PgConnection,
    /// `losses` when this connection last proved alive (was opened or answered a ping).
    alive_at: u64,
    /// `retirements` when it was opened.
    opened_at: u64,
}

impl std::ops::Deref for PgSession {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.connection
    }
}

impl std::ops::DerefMut for PgSession {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.connection
    }
}

impl PgManager {
    fn new(conninfo: String, statement_timeout: Duration, retirements: Arc<AtomicU64>) -> Self {
        Self {
            diesel: ConnectionManager::new(conninfo),
            statement_timeout,
            losses: AtomicU64::new(0),
            retirements,
        }
    }
}

impl ManageConnection for PgManager {
    type Connection = PgSession;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<PgSession, Self::Error> {
        let alive_at = self.losses.load(Ordering::Acquire);
        let opened_at = self.retirements.load(Ordering::Acquire);
        let mut connection = self.diesel.connect()?;
        connection
            .batch_execute(&format!(
                "SET statement_timeout = {}",
                self.statement_timeout.as_millis().max(1)
            ))
            .map_err(diesel::r2d2::Error::QueryError)?;
        Ok(PgSession {
            connection,
            alive_at,
            opened_at,
        })
    }

    fn is_valid(&self, session: &mut PgSession) -> Result<(), Self::Error> {
        if session.opened_at != self.retirements.load(Ordering::Acquire) {
            return Err(diesel::r2d2::Error::ConnectionError(
                diesel::ConnectionError::BadConnection(
                    "opened before the change listener lost its connection".into(),
                ),
            ));
        }
        let losses = self.losses.load(Ordering::Acquire);
        if session.alive_at != losses || is_gone(&mut session.connection) {
            self.diesel.is_valid(&mut session.connection)?;
            session.alive_at = losses;
        }
        Ok(())
    }

    /// diesel's own check looks only at the transaction state, so a connection that died during
    /// a plain read would go back into the pool and fail every request that took it.
    fn has_broken(&self, session: &mut PgSession) -> bool {
        let broken =
            self.diesel.has_broken(&mut session.connection) || is_gone(&mut session.connection);
        if broken {
            self.losses.fetch_add(1, Ordering::AcqRel);
        }
        broken
    }
}

/// Whether libpq knows the connection is gone, or finds the server's goodbye (a terminated or
/// restarted backend) waiting on its socket. `PQconsumeInput`, which diesel runs for
/// `notifications_iter`, reads without blocking and fails in both cases: a system call, no round
/// trip. Pooled connections never `LISTEN`, so no notification is lost by reading them.
fn is_gone(connection: &mut PgConnection) -> bool {
    connection
        .notifications_iter()
        .next()
        .is_some_and(|notification| notification.is_err())
}

impl Store {
    /// Returns once the change numbered `seq` can no longer be missed by any cache (PostgreSQL):
    /// this node's listener has applied it (or this node's caches are off), and every other node
    /// with a live lease has confirmed it. A node that neither confirms nor renews is waited for
    /// until its lease runs out, at most the lease duration; the wait gives up, with an error,
    /// after twice that (a change's answer is then never a success the caches could contradict).
    pub(crate) fn await_change(&self, seq: i64) -> Result<(), StoreError> {
        let (Pools::Postgres(pool), Some(lease)) = (&self.pools, self.changes.lease_duration())
        else {
            return Ok(());
        };
        let (poll, longest) = (changes::CONFIRMATION_POLL, lease * 2);
        let started = std::time::Instant::now();
        let waited_too_long = || started.elapsed() > longest;
        while let Some(applied) = self.changes.own_applied() {
            if applied >= seq {
                break;
            }
            if waited_too_long() {
                return Err(StoreError::Unconfirmed);
            }
            std::thread::sleep(poll / 4);
        }
        let conn: &mut PgConnection = &mut *pool.get()?;
        loop {
            let waiting = changes::nodes_behind(conn, self.changes.node_id(), seq)?;
            if waiting == 0 {
                return Ok(());
            }
            if waited_too_long() {
                log::warn!(
                    "{waiting} node(s) neither confirmed change {seq} nor let their cache lease                      run out within {longest:?}"
                );
                return Err(StoreError::Unconfirmed);
            }
            std::thread::sleep(poll);
        }
    }

    /// Deletes change-log rows past their retention (SQLite; PostgreSQL keeps no log); how many.
    pub fn prune_change_log(&self, now: chrono::NaiveDateTime) -> Result<usize, StoreError> {
        match &self.pools {
            Pools::Sqlite(pool) => {
                use changes::UnnoticedWrite;
                let conn: &mut SqliteConnection = &mut *pool.get()?;
                conn.unnoticed_transaction(|conn| ChangeFeed::prune_log(conn, now))
            }
            Pools::Postgres(_) => Ok(0),
        }
    }

    /// The feed caches consult to stay exact.
    pub fn changes(&self) -> &ChangeFeed {
        &self.changes
    }

    /// Starts listening for other nodes' writes (PostgreSQL); SQLite needs no listener. The
    /// listener stops when `stop` is set.
    pub fn start_change_listener(&self, stop: Arc<AtomicBool>) {
        if let Pools::Postgres(_) = &self.pools {
            self.changes.listen(stop);
        }
    }

    /// Opens the pool and applies pending migrations.
    ///
    /// The pool opens all its connections before this returns (r2d2's checked build), within the
    /// connection timeout. Letting them open in the background instead made a short CLI command
    /// exit while libpq was still in a TLS handshake on another thread, and OpenSSL's exit
    /// handlers then crashed the process (one run in 60).
    pub fn open(url: &DatabaseUrl, settings: &PoolSettings) -> Result<Self, StoreError> {
        let store = match url {
            DatabaseUrl::Sqlite(path) => {
                enter_wal_mode(&path.to_string_lossy(), settings.busy_timeout)?;
                let manager = ConnectionManager::<SqliteConnection>::new(path.to_string_lossy());
                // No `SELECT 1` on checkout: an SQLite connection is a file handle, which does not
                // go away; diesel's `has_broken` still drops one left in a transaction. For the
                // same reason connections are never retired for age or idleness (r2d2's defaults,
                // 30 and 10 minutes): replacing one gains nothing, empties its page cache, and
                // SQLite keeps a closed connection's file open while the process's other
                // connections hold locks on it (POSIX locks are per process), which a 30-minute
                // soak saw as one open file more than the pool (docs/performance.md, "Soak").
                let pool = Pool::builder()
                    .max_size(settings.max_connections)
                    .connection_timeout(settings.connection_timeout)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .test_on_check_out(false)
                    .connection_customizer(Box::new(SqlitePragmas {
                        busy_timeout: settings.busy_timeout,
                    }))
                    .build(manager)?;
                Store {
                    pools: Pools::Sqlite(pool),
                    changes: Arc::new(ChangeFeed::sqlite(path.to_string_lossy().into_owned())),
                }
            }
            DatabaseUrl::Postgres(conninfo) => {
                for (host, reason) in conninfo::unresolvable_hosts(conninfo) {
                    log::warn!(
                        "database host {host} does not resolve ({reason}); libpq skips it, so \
                         connections go to the other hosts only"
                    );
                }
                let timeout = settings.connection_timeout;
                let retirements = Arc::new(AtomicU64::new(0));
                // Named, unless the operator named them, so that operators (and the tests) can
                // tell the pool's connections from the listener's in `pg_stat_activity`.
                let mut pool_settings = conninfo::bounded_by(timeout);
                pool_settings.push(("fallback_application_name", "tokenwarden".to_string()));
                let manager = PgManager::new(
                    conninfo.with_settings(&pool_settings),
                    timeout,
                    Arc::clone(&retirements),
                );
                // The checkout test is `PgManager::is_valid`, which pings only connections made
                // suspect by a lost one (see `PgManager`).
                let pool = Pool::builder()
                    .max_size(settings.max_connections)
                    .connection_timeout(timeout)
                    .test_on_check_out(true)
                    .build(manager)?;
                let listener_conninfo = conninfo.with_settings(&conninfo::bounded_by(
                    timeout.min(changes::LISTENER_TIMEOUT),
                ));
                Store {
                    pools: Pools::Postgres(pool),
                    changes: Arc::new(ChangeFeed::postgres(
                        settings.cache_lease,
                        listener_conninfo,
                        retirements,
                    )),
                }
            }
        };
        store.migrate()?;
        Ok(store)
    }

    /// Applies pending migrations, one process at a time: a server and a CLI command (or several
    /// nodes) starting together on a fresh database would otherwise both try to create the tables.
    /// SQLite: inside `BEGIN EXCLUSIVE`; PostgreSQL: under a transaction-scoped advisory lock.
    /// Each migration's own transaction nests inside as a savepoint.
    fn migrate(&self) -> Result<(), StoreError> {
        let failed =
            |err: Box<dyn std::error::Error + Send + Sync>| MigrationFailed(err.to_string());
        let outcome: Result<(), MigrationFailed> = match &self.pools {
            Pools::Sqlite(pool) => pool.get()?.exclusive_transaction(|conn| {
                conn.run_pending_migrations(SQLITE_MIGRATIONS)
                    .map(drop)
                    .map_err(failed)
            }),
            // A migration may take longer than a request's statement timeout.
            Pools::Postgres(pool) => pool.get()?.transaction(|conn| {
                conn.batch_execute(&format!(
                    "SET LOCAL statement_timeout = 0; \
                     SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
                ))?;
                conn.run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map(drop)
                    .map_err(failed)
            }),
        };
        outcome.map_err(|MigrationFailed(message)| StoreError::Migration(message))
    }

    /// Connections the pool holds now, for metrics.
    pub fn pool_state(&self) -> PoolState {
        let state = match &self.pools {
            Pools::Sqlite(pool) => pool.state(),
            Pools::Postgres(pool) => pool.state(),
        };
        PoolState {
            connections: state.connections,
            idle_connections: state.idle_connections,
        }
    }

    /// Bytes SQLite's allocator holds in this process (page caches, prepared statements, schema),
    /// for metrics; `None` on PostgreSQL, whose memory lives in its own server processes.
    /// Kept apart from the rest of the resident set so a soak can tell SQLite's page caches,
    /// which grow up to `cache_size` per connection, from a leak (docs/performance.md "Soak").
    pub fn sqlite_memory_bytes(&self) -> Option<i64> {
        match &self.pools {
            // SAFETY: `sqlite3_memory_used` reads SQLite's global allocator statistics under its
            // own mutex; it takes no arguments and is safe to call from any thread at any time.
            Pools::Sqlite(_) => Some(unsafe { libsqlite3_sys::sqlite3_memory_used() }),
            Pools::Postgres(_) => None,
        }
    }

    /// Round-trips a trivial query: is the database reachable right now?
    pub fn ping(&self) -> Result<(), StoreError> {
        with_connection!(self, |conn| conn.batch_execute("SELECT 1")?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(diesel::QueryableByName)]
    pub(super) struct Synchronous {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        synchronous: i64,
    }

    #[derive(diesel::QueryableByName)]
    pub(super) struct AutoCheckpoint {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        wal_autocheckpoint: i64,
    }

    /// SQLite's `synchronous` (2: FULL) and `wal_autocheckpoint` on `conn`; generic only because
    /// `write_transaction!` compiles its body for both backends.
    pub(super) fn durability_pragmas<C>(conn: &mut C) -> diesel::QueryResult<(i64, i64)>
    where
        diesel::query_builder::SqlQuery: diesel::query_dsl::LoadQuery<'static, C, Synchronous>
            + diesel::query_dsl::LoadQuery<'static, C, AutoCheckpoint>,
    {
        use diesel::RunQueryDsl;
        let synchronous =
            diesel::sql_query("PRAGMA synchronous").get_result::<Synchronous>(conn)?;
        let checkpoint =
            diesel::sql_query("PRAGMA wal_autocheckpoint").get_result::<AutoCheckpoint>(conn)?;
        Ok((synchronous.synchronous, checkpoint.wal_autocheckpoint))
    }

    /// The usage flush relaxes `synchronous` on a pooled connection for its own commit; a write
    /// that changes answers (an invalidation) commits with `FULL` whatever the connection it gets
    /// was left with.
    #[test]
    fn sqlite_write_transactions_commit_with_a_full_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::Sqlite(dir.path().join("tw.db"));
        let one_connection = PoolSettings {
            max_connections: 1,
            ..PoolSettings::default()
        };
        let store = Store::open(&url, &one_connection).unwrap();
        let Pools::Sqlite(pool) = &store.pools else {
            panic!("an SQLite store")
        };
        pool.get()
            .unwrap()
            .batch_execute("PRAGMA synchronous = OFF; PRAGMA wal_autocheckpoint = 0")
            .unwrap();
        let inside: (i64, i64) =
            write_transaction!(store, |conn, _changed| Ok(durability_pragmas(conn)?)).unwrap();
        assert_eq!(
            inside,
            (2, 1000),
            "FULL, SQLite's default automatic checkpoint"
        );
    }

    #[test]
    fn an_unreachable_database_is_unavailable_and_other_failures_are_not() {
        let pool_timeout = Pool::builder()
            .connection_timeout(Duration::from_millis(10))
            .build_unchecked(ConnectionManager::<PgConnection>::new(
                "postgres://127.0.0.1:1/none",
            ))
            .get()
            .err()
            .expect("nothing listens on port 1");
        assert!(StoreError::Unavailable(pool_timeout).is_unavailable());
        assert!(!StoreError::UnexpectedValue("test").is_unavailable());
        assert!(!StoreError::Query(diesel::result::Error::NotFound).is_unavailable());
    }

    #[test]
    fn urls_choose_the_backend_by_scheme() {
        for url in [
            "postgres://u@h/db",
            "postgresql://h/db",
            "postgres://u@h1:5432,h2:5432/db?target_session_attrs=read-write",
            "host=h1,h2 port=5432,5432 dbname=db target_session_attrs=read-write",
        ] {
            let parsed = DatabaseUrl::parse(url).unwrap();
            assert!(
                matches!(&parsed, DatabaseUrl::Postgres(conninfo) if conninfo.as_str() == url),
                "{url}"
            );
        }
        for (url, path) in [
            ("sqlite://data/tw.db", "data/tw.db"),
            ("sqlite:///var/lib/tw.db", "/var/lib/tw.db"),
            ("sqlite:tw.db", "tw.db"),
            ("tw.db", "tw.db"),
        ] {
            assert_eq!(
                DatabaseUrl::parse(url).unwrap(),
                DatabaseUrl::Sqlite(path.into())
            );
        }
        for bad in [
            "",
            "sqlite://",
            ":memory:",
            "mysql://h/db",
            "hots=h1 dbname=db",
            "host=h1 dbname",
            "data/tw=1.db",
            "tw\u{7}.db",
        ] {
            assert!(DatabaseUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/tw=1.db").unwrap(),
            DatabaseUrl::Sqlite("data/tw=1.db".into())
        );
    }

    #[test]
    fn debug_output_hides_postgres_passwords() {
        let url = DatabaseUrl::parse("postgres://app:s3cr%40t@db.internal:5432/tw?sslmode=require")
            .unwrap();
        let shown = format!("{url:?}");
        assert_eq!(shown, "postgres://app:<redacted>@db.internal:5432/tw");
        let url = DatabaseUrl::parse("postgres://db.internal/tw?password=s3cret").unwrap();
        assert_eq!(format!("{url:?}"), "postgres://db.internal/tw");
        let url = DatabaseUrl::parse("postgres://app:pa?ss@db/tw").unwrap();
        assert_eq!(format!("{url:?}"), "postgres://app:<redacted>@db/tw");
        let url = DatabaseUrl::parse("postgres://db.internal?password=p@ss").unwrap();
        let shown = format!("{url:?}");
        assert!(
            !shown.contains("password=p") && !shown.contains("p@"),
            "{shown}"
        );
    }
}
