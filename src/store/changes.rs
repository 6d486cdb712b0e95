//! Noticing writes, by this process or any other, so that caches above the store stay exact, and
//! holding every write's answer until no node can still answer as if it had not happened.
//!
//! **What changed.** A write that can change a cached answer says what it touched as
//! [`ChangeTag`]s (a token's digest, a site, a site key, a resource server), recorded in its own
//! transaction; a write that cannot (usage times, audit rows, failed-authentication counts) records
//! nothing and invalidates nothing. A cached answer is stamped ([`Stamp`]) with the tags it depends
//! on and the epoch read *before* its query; it is served only while none of its tags was
//! invalidated at or after that epoch ([`ChangeFeed::is_current`]). Tags are hashed into a fixed
//! table of epochs, so two tags may share a slot: that costs a needless refill, never a stale
//! answer. A change the feed cannot describe (too many tags, an unreadable record, a gap in the
//! numbering, a listener that reconnects) invalidates everything, so exactness never depends on
//! the fine-grained path.
//!
//! **How each process hears of it.**
//! - SQLite: the write inserts a row into `change_log`. `PRAGMA data_version` on a dedicated
//!   connection changes whenever another connection (another process such as the CLI, or this
//!   process's pool) has committed; every [`ChangeFeed::observe`] first compares the WAL-index
//!   header in shared memory with the one seen before the last pragma (`sqlite_probe.rs`), and only
//!   after a commit asks the pragma and reads the log rows past the last one applied. Either way
//!   the request after any write, in any process, sees it: on one machine the rule below holds
//!   without leases.
//! - PostgreSQL: the write takes a number from `change_seq` under a transaction-level advisory
//!   lock held until it commits, so numbers follow commit order, and sends them with its tags in a
//!   `NOTIFY` (delivered to every listening node, in commit order). A listener thread per node
//!   applies them, and a jump in the numbering invalidates everything.
//!
//! **Linearizable revocation across nodes (PostgreSQL).** Once a write's answer has been sent, no
//! node answers any later request from a cache as if the write had not happened. Each node's
//! listener holds a lease in `cache_leases`, renewed on the listener's own connection together
//! with the number of the last change it applied. A node answers from its caches only while its
//! listener is connected and its lease, counted on its own clock from *before* the renewal was
//! sent, has not run out; the row's `lease_until` is set by the database *after* receiving the
//! renewal, so the node's own deadline always comes first. A write, after its commit, waits until
//! this node's listener has applied it and every other node with a live lease has confirmed it
//! ([`crate::store::Store::await_change`]). So when the answer is sent, every node either has
//! applied the change (its caches check each entry against the invalidated tags before serving
//! it) or holds no lease (its caches are bypassed). A node registers before it starts caching,
//! under the same advisory lock, with the last number committed then, and starts with empty
//! caches: a write it never hears of committed before anything it caches was read. A node that
//! stops confirming (a stalled listener, a partition) delays answers by at most its remaining
//! lease, which is shorter than the pool's connection timeout.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection};

use super::schema::change_log;
use super::sqlite_probe::{Header, ProbeConnection};
use super::StoreError;

/// The channel every writer notifies on PostgreSQL.
pub const CHANNEL: &str = "tokenwarden_changes";
/// Serialises the numbering of changes with their commits (ASCII "twchange").
const CHANGE_LOCK_KEY: i64 = 0x7477_6368_616e_6765;
/// Slots of the epoch table; a power of two, so a tag's slot is its low bits. 16,384 eight-byte
/// epochs (128 KiB) stay in a core's L2 cache, which every cached answer's check reads.
const SLOTS: usize = 1 << 14;
/// Beyond this many tags a write is recorded as "everything": a `NOTIFY` payload is limited to
/// 8,000 bytes, and a bulk change touches most of a cache anyway.
const MAX_TAGS: usize = 400;
/// Recorded for a change that names no tags: every cached answer is invalidated.
const EVERYTHING: &str = "*";
/// How often the listener looks for notifications: every wake-up takes the CPU from a request, and
/// a change's answer waits up to this long once per node.
const POLL_INTERVAL: Duration = Duration::from_millis(2);
const RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// How often a waiting write asks again whether every node has applied its change.
pub(crate) const CONFIRMATION_POLL: Duration = Duration::from_millis(1);
/// How long `change_log` rows are kept (SQLite): a process that has not looked for this long
/// finds a gap and empties its caches.
pub(crate) const CHANGE_LOG_RETENTION: chrono::TimeDelta = chrono::TimeDelta::hours(1);
/// The longest the listener's bounds may be (`conninfo::bounded_by`: `tcp_user_timeout`,
/// keepalives), shorter than `--db-timeout-ms` when that is longer. Without them a network
/// partition, which closes nothing, would leave the listener waiting until TCP gives up (minutes).
pub(crate) const LISTENER_TIMEOUT: Duration = Duration::from_secs(2);

/// What a cached answer depends on, and what a write changed: one number per thing, the same in
/// every process and every version (the first eight bytes of a SHA-256 over a kind byte and the
/// thing's identifier), because one node's write is described to the others by these numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChangeTag(u64);

impl ChangeTag {
    /// The token whose value has this keyed digest (its row, its audience; or its absence).
    pub fn token(value_digest: &[u8]) -> Self {
        Self::of(b'T', value_digest)
    }

    /// The site with this id: its row, its primary token, and every answer about its tokens.
    pub fn site(site_id: i64) -> Self {
        Self::of(b'S', &site_id.to_be_bytes())
    }

    /// Whatever is found under this site key: the site's authentication (or its absence).
    pub fn site_key(site_key: &str) -> Self {
        Self::of(b'K', site_key.as_bytes())
    }

    /// The resource server with this client id: its credentials, its site limits, and the
    /// audiences it is a member of.
    pub fn resource_server(client_id: &str) -> Self {
        Self::of(b'R', client_id.as_bytes())
    }

    fn of(kind: u8, identifier: &[u8]) -> Self {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(&[kind]);
        context.update(identifier);
        let digest = context.finish();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_ref()[..8]);
        Self(u64::from_be_bytes(first))
    }

    fn slot(self) -> usize {
        // The low bits of a SHA-256 prefix: uniform.
        (self.0 as usize) & (SLOTS - 1)
    }
}

/// What a write transaction changed, filled in by its body (`write_transaction!`). It starts as
/// "everything": a body that says nothing empties every cache, so forgetting costs refills, never
/// exactness.
#[derive(Debug)]
pub(crate) struct Changed {
    scope: Scope,
}

#[derive(Debug)]
enum Scope {
    Everything,
    Tags(Vec<ChangeTag>),
    /// A write no cached answer depends on: nothing is recorded, nobody waits.
    Nothing,
}

impl Changed {
    pub(crate) fn everything() -> Self {
        Self {
            scope: Scope::Everything,
        }
    }

    /// Names one thing the write changed; the first call narrows "everything" to what is named.
    pub(crate) fn tag(&mut self, tag: ChangeTag) {
        match &mut self.scope {
            Scope::Tags(tags) => tags.push(tag),
            Scope::Everything | Scope::Nothing => self.scope = Scope::Tags(vec![tag]),
        }
    }

    /// For writes that change no cached answer (admins and their sessions are never cached).
    pub(crate) fn nothing(&mut self) {
        self.scope = Scope::Nothing;
    }

    /// What is recorded: `None` for nothing, `*` for everything, else the tags in hexadecimal.
    fn record(&self) -> Option<String> {
        match &self.scope {
            Scope::Nothing => None,
            Scope::Tags(tags) if tags.len() <= MAX_TAGS => Some(
                tags.iter()
                    .map(|tag| format!("{:016x}", tag.0))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            Scope::Tags(_) | Scope::Everything => Some(EVERYTHING.to_string()),
        }
    }
}

/// When a cached answer was filled and which epoch slots it depends on.
#[derive(Debug, Clone)]
pub struct Stamp {
    filled: u64,
    slots: Slots,
}

/// A stamp's slots: inline for the common answers (a token and its site, a site key, a resource
/// server), so checking a cached answer follows no pointer; on the heap beyond that.
#[derive(Debug, Clone)]
enum Slots {
    Inline { len: u8, slots: [u16; 3] },
    Spilled(Box<[u16]>),
}

impl Slots {
    fn of(tags: &[ChangeTag]) -> Self {
        let slot = |tag: &ChangeTag| tag.slot() as u16;
        match tags {
            [] | [_] | [_, _] | [_, _, _] => {
                let mut slots = [0; 3];
                for (kept, tag) in slots.iter_mut().zip(tags) {
                    *kept = slot(tag);
                }
                Self::Inline {
                    len: tags.len() as u8,
                    slots,
                }
            }
            _ => Self::Spilled(tags.iter().map(slot).collect()),
        }
    }

    fn as_slice(&self) -> &[u16] {
        match self {
            Self::Inline { len, slots } => &slots[..usize::from(*len)],
            Self::Spilled(slots) => slots,
        }
    }
}

/// The epoch table: an invalidation takes the next epoch and raises its tags' slots to it (or the
/// floor, for everything). An answer filled at epoch `e` (read before its query) is current while
/// the floor and each of its slots are at most `e`: an invalidation applied before the epoch was
/// read happened after the write committed, so the query saw the write; one applied after it
/// raises a slot past `e`.
struct Epochs {
    clock: AtomicU64,
    floor: AtomicU64,
    slots: Box<[AtomicU64]>,
    /// Invalidations applied, for metrics and tests: (by tag, of everything).
    tagged: AtomicU64,
    everything: AtomicU64,
}

impl Epochs {
    fn new() -> Self {
        Self {
            clock: AtomicU64::new(1),
            floor: AtomicU64::new(0),
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            tagged: AtomicU64::new(0),
            everything: AtomicU64::new(0),
        }
    }

    fn invalidate(&self, tags: &[ChangeTag]) {
        let epoch = self.clock.fetch_add(1, Ordering::AcqRel) + 1;
        for tag in tags {
            self.slots[tag.slot()].fetch_max(epoch, Ordering::AcqRel);
        }
        self.tagged.fetch_add(1, Ordering::Relaxed);
    }

    fn invalidate_everything(&self) {
        let epoch = self.clock.fetch_add(1, Ordering::AcqRel) + 1;
        self.floor.fetch_max(epoch, Ordering::AcqRel);
        self.everything.fetch_add(1, Ordering::Relaxed);
    }

    /// Applies one recorded change (`Changed::record`); an unreadable record is everything.
    fn apply(&self, record: &str) {
        let tags: Option<Vec<ChangeTag>> = (record != EVERYTHING)
            .then(|| {
                record
                    .split(' ')
                    .map(|hex| u64::from_str_radix(hex, 16).ok().map(ChangeTag))
                    .collect()
            })
            .flatten();
        match tags {
            Some(tags) if !tags.is_empty() => self.invalidate(&tags),
            _ => self.invalidate_everything(),
        }
    }
}

/// This node's cache lease (PostgreSQL).
struct Lease {
    node_id: String,
    /// Where the listener connects: the operator's connection string with its bounds (it may
    /// hold a password: never logged).
    conninfo: String,
    /// Moved on when the listener loses its connection, which retires every pooled connection
    /// opened before (`PgManager`).
    pool_retirements: Arc<AtomicU64>,
    duration: Duration,
    origin: Instant,
    /// Nanoseconds after `origin` until which caches may answer; 0 while no lease is held.
    valid_until: AtomicU64,
    /// The number of the last change this node's caches have applied.
    applied: AtomicI64,
}

impl Lease {
    fn holds(&self) -> bool {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        now < self.valid_until.load(Ordering::Acquire)
    }

    /// Extends the local deadline to nine tenths of `duration` after `sent`, the moment before
    /// the renewal that the database acknowledged was sent (the tenth allows for the node's and
    /// the database's clocks running at slightly different rates).
    fn renewed(&self, sent: Instant) {
        let until = sent.duration_since(self.origin) + self.duration * 9 / 10;
        let until = u64::try_from(until.as_nanos()).unwrap_or(u64::MAX);
        self.valid_until.store(until, Ordering::Release);
    }

    fn lost(&self) {
        self.valid_until.store(0, Ordering::Release);
    }
}

pub struct ChangeFeed {
    epochs: Epochs,
    live: AtomicBool,
    sqlite_probe: Option<Mutex<SqliteProbe>>,
    lease: Option<Lease>,
}

struct SqliteProbe {
    connection: Option<ProbeConnection>,
    /// Reads `change_log`; a separate connection, as the probe's raw one only runs the pragma.
    log_reader: Option<SqliteConnection>,
    path: String,
    last_seen: i64,
    /// The WAL-index header read just before the pragma that gave `last_seen`: while the header
    /// still reads the same, no commit has completed since, and `last_seen` is still current.
    header_seen: Option<Header>,
    /// The last `change_log` row applied; `None` until the first reading, which empties the caches.
    last_applied: Option<i64>,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed")
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

impl ChangeFeed {
    /// For SQLite: live at once, driven by `PRAGMA data_version` and `change_log` on the database
    /// at `path`.
    pub(crate) fn sqlite(path: String) -> Self {
        Self {
            epochs: Epochs::new(),
            live: AtomicBool::new(true),
            sqlite_probe: Some(Mutex::new(SqliteProbe {
                connection: None,
                log_reader: None,
                path,
                last_seen: -1,
                header_seen: None,
                last_applied: None,
            })),
            lease: None,
        }
    }

    /// For PostgreSQL: not live until [`ChangeFeed::listen`] holds a lease; a lease lasts
    /// `lease_duration` from each renewal. The listener connects with `conninfo`; when it loses
    /// its connection it moves `pool_retirements` on.
    pub(crate) fn postgres(
        lease_duration: Duration,
        conninfo: String,
        pool_retirements: Arc<AtomicU64>,
    ) -> Self {
        let random = crate::crypto::random_bytes::<6>().map_or_else(
            |_| String::from("unrandom"),
            |bytes| bytes.iter().map(|b| format!("{b:02x}")).collect(),
        );
        Self {
            epochs: Epochs::new(),
            live: AtomicBool::new(false),
            sqlite_probe: None,
            lease: Some(Lease {
                node_id: format!("{}-{}", std::process::id(), random),
                conninfo,
                pool_retirements,
                duration: lease_duration,
                origin: Instant::now(),
                valid_until: AtomicU64::new(0),
                applied: AtomicI64::new(0),
            }),
        }
    }

    /// The epoch to stamp answers filled from here on, after applying every change committed
    /// before this call (SQLite: by any process; PostgreSQL: by any node whose answer has been
    /// sent). `None` when caches must not answer: the PostgreSQL listener is not connected or its
    /// lease has run out. Call it once per request, before any query.
    pub fn observe(&self) -> Result<Option<u64>, StoreError> {
        if let Some(probe) = &self.sqlite_probe {
            self.notice(&mut probe.lock().unwrap_or_else(PoisonError::into_inner))?;
        }
        Ok(self
            .is_live()
            .then(|| self.epochs.clock.load(Ordering::Acquire)))
    }

    /// A stamp for an answer read after `observe` gave `filled`, depending on `tags`.
    pub fn stamp(&self, filled: u64, tags: &[ChangeTag]) -> Stamp {
        Stamp {
            filled,
            slots: Slots::of(tags),
        }
    }

    /// Whether an answer with this stamp may still be served: nothing it depends on has been
    /// invalidated since it was read.
    pub fn is_current(&self, stamp: &Stamp) -> bool {
        let epochs = &self.epochs;
        epochs.floor.load(Ordering::Acquire) <= stamp.filled
            && stamp.slots.as_slice().iter().all(|&slot| {
                epochs.slots[usize::from(slot)].load(Ordering::Acquire) <= stamp.filled
            })
    }

    /// The floor: answers filled before it are never current. Caches drop their entries when it
    /// moves past what they hold.
    pub fn floor(&self) -> u64 {
        self.epochs.floor.load(Ordering::Acquire)
    }

    /// (changes applied by their tags, changes that emptied everything), for `/metrics`.
    pub fn invalidations(&self) -> (u64, u64) {
        (
            self.epochs.tagged.load(Ordering::Relaxed),
            self.epochs.everything.load(Ordering::Relaxed),
        )
    }

    /// Whether caches may answer: always on SQLite; on PostgreSQL while the listener is connected
    /// and this node's lease holds.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire) && self.lease.as_ref().is_none_or(Lease::holds)
    }

    /// The lease duration (PostgreSQL), which bounds how long a write may wait for a node.
    pub(crate) fn lease_duration(&self) -> Option<Duration> {
        self.lease.as_ref().map(|lease| lease.duration)
    }

    /// The last change this node's caches applied, while they may answer (PostgreSQL). When they
    /// may not, nothing needs waiting for: they answer again only after emptying themselves.
    pub(crate) fn own_applied(&self) -> Option<i64> {
        let lease = self.lease.as_ref()?;
        self.is_live()
            .then(|| lease.applied.load(Ordering::Acquire))
    }

    /// This node's id in `cache_leases` and in its listener's `application_name` (PostgreSQL;
    /// empty otherwise).
    pub fn node_id(&self) -> &str {
        self.lease
            .as_ref()
            .map_or("", |lease| lease.node_id.as_str())
    }

    /// Runs the pragma when the WAL-index header has changed since the last reading, and applies
    /// the `change_log` rows committed since the last one applied.
    fn notice(&self, probe: &mut SqliteProbe) -> Result<(), StoreError> {
        if probe.unchanged_since_last_reading() {
            return Ok(());
        }
        let reading = probe.read()?;
        let changed = reading.version != probe.last_seen;
        if changed || probe.last_applied.is_none() {
            // Read after the pragma: every commit the pragma has seen is in the rows read.
            self.apply_log(probe)?;
        }
        probe.record(reading);
        Ok(())
    }

    /// Applies the log rows after the last one applied; the first time, or after a gap (rows
    /// pruned before this process read them), empties everything instead.
    fn apply_log(&self, probe: &mut SqliteProbe) -> Result<(), StoreError> {
        let mut reader = match probe.log_reader.take() {
            Some(reader) => reader,
            None => {
                // No busy timeout, as the probe's: this runs on the HTTP worker. Readers of a WAL
                // database are refused only while a crashed writer's index is being recovered;
                // that request is answered 503.
                let reader = SqliteConnection::establish(&probe.path)
                    .map_err(|error| StoreError::Listener(error.to_string()))?;
                probe.last_applied = None;
                reader
            }
        };
        let rows = match probe.last_applied {
            None => {
                let last = change_log::table
                    .select(diesel::dsl::max(change_log::seq))
                    .get_result::<Option<i64>>(&mut reader)?;
                self.epochs.invalidate_everything();
                probe.last_applied = Some(last.unwrap_or(0));
                Vec::new()
            }
            Some(after) => change_log::table
                .filter(change_log::seq.gt(after))
                .order(change_log::seq)
                .select((change_log::seq, change_log::tags))
                .load::<(i64, String)>(&mut reader)?,
        };
        for (seq, record) in rows {
            let expected = probe.last_applied.map_or(seq, |last| last + 1);
            if seq == expected {
                self.epochs.apply(&record);
            } else {
                self.epochs.invalidate_everything();
            }
            probe.last_applied = Some(seq);
        }
        probe.log_reader = Some(reader);
        Ok(())
    }

    /// Records what a write changed, inside its transaction (SQLite).
    pub(crate) fn record_sqlite(
        conn: &mut SqliteConnection,
        changed: &Changed,
    ) -> Result<(), StoreError> {
        if let Some(record) = changed.record() {
            // `recorded_at` is the database's clock (the column's default): it only ages rows.
            diesel::insert_into(change_log::table)
                .values(change_log::tags.eq(record))
                .execute(conn)?;
        }
        Ok(())
    }

    /// Records what a write changed, inside its transaction, as the last thing before its commit
    /// (PostgreSQL): numbers it under the advisory lock (held until the commit, so numbers follow
    /// commit order) and notifies every node. The number, for [`crate::store::Store::await_change`].
    pub(crate) fn record_postgres(
        conn: &mut PgConnection,
        changed: &Changed,
    ) -> Result<Option<i64>, StoreError> {
        let Some(record) = changed.record() else {
            return Ok(None);
        };
        conn.batch_execute(&format!("SELECT pg_advisory_xact_lock({CHANGE_LOCK_KEY})"))?;
        let seq = diesel::select(diesel::dsl::sql::<BigInt>("nextval('change_seq')"))
            .get_result::<i64>(conn)?;
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<Text, _>(CHANNEL)
            .bind::<Text, _>(format!("{seq} {record}"))
            .execute(conn)?;
        Ok(Some(seq))
    }

    /// After a commit (SQLite): applies it to this process's caches before the answer is sent.
    pub(crate) fn after_sqlite_commit(&self) -> Result<(), StoreError> {
        self.observe().map(drop)
    }

    /// Prunes `change_log` rows older than [`CHANGE_LOG_RETENTION`] (SQLite); how many.
    pub(crate) fn prune_log(
        conn: &mut SqliteConnection,
        now: chrono::NaiveDateTime,
    ) -> Result<usize, StoreError> {
        Ok(diesel::delete(
            change_log::table.filter(change_log::recorded_at.lt(now - CHANGE_LOG_RETENTION)),
        )
        .execute(conn)?)
    }

    /// Starts the PostgreSQL listener thread; it runs until `stop` is set, then gives up its lease.
    /// A listener that loses its connection presumes it missed notifications (every cache entry
    /// is dropped and caches are bypassed until it is back) and that the database it reached may
    /// be cut off: every pooled connection opened before is replaced at its next use.
    pub(crate) fn listen(self: &Arc<Self>, stop: Arc<AtomicBool>) {
        let feed = Arc::clone(self);
        let spawned = thread::Builder::new()
            .name("tokenwarden-listen".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    if let Err(error) = feed.listen_once(&stop) {
                        log::warn!(
                            "change listener disconnected ({error}); caches bypassed and pooled \
                             connections replaced until it reconnects"
                        );
                        if let Some(lease) = &feed.lease {
                            lease.pool_retirements.fetch_add(1, Ordering::AcqRel);
                        }
                    }
                    feed.stop_caching();
                    if !stop.load(Ordering::Acquire) {
                        thread::sleep(RECONNECT_DELAY);
                    }
                }
            });
        if let Err(error) = spawned {
            log::error!("cannot start the change listener ({error}); caches stay bypassed");
        }
    }

    fn stop_caching(&self) {
        self.live.store(false, Ordering::Release);
        if let Some(lease) = &self.lease {
            lease.lost();
        }
        self.epochs.invalidate_everything();
    }

    fn listen_once(&self, stop: &AtomicBool) -> Result<(), StoreError> {
        let Some(lease) = &self.lease else {
            return Ok(());
        };
        let mut connection = PgConnection::establish(&lease.conninfo)
            .map_err(|error| StoreError::Listener(error.to_string()))?;
        // Leases need no durability (the table is unlogged); a renewal must not wait for a flush.
        connection.batch_execute(&format!(
            "SET synchronous_commit = off; SET application_name = 'tokenwarden-listener {}'; \
             LISTEN {CHANNEL}",
            lease.node_id
        ))?;
        let sent = Instant::now();
        let mut last = register(&mut connection, lease)?;
        lease.applied.store(last, Ordering::Release);
        // Anything committed before the registration may have been missed: start empty.
        self.epochs.invalidate_everything();
        lease.renewed(sent);
        self.live.store(true, Ordering::Release);
        log::info!(
            "listening for changes on channel {CHANNEL} as cache node {}",
            lease.node_id
        );
        let renew_every = lease.duration / 4;
        let mut last_renewal = sent;
        let result = loop {
            if stop.load(Ordering::Acquire) {
                break Ok(());
            }
            let mut applied = false;
            for notification in connection.notifications_iter() {
                let notification = notification?;
                let (seq, record) = notification
                    .payload
                    .split_once(' ')
                    .and_then(|(seq, record)| Some((seq.parse::<i64>().ok()?, record)))
                    .unwrap_or((last + 1, EVERYTHING));
                if seq <= last {
                    // Committed before the registration, whose empty caches already cover it.
                    continue;
                }
                if seq == last + 1 {
                    self.epochs.apply(record);
                } else {
                    // A number taken by a transaction that rolled back, or a missed notification.
                    self.epochs.invalidate_everything();
                }
                last = seq;
                applied = true;
            }
            if applied {
                lease.applied.store(last, Ordering::Release);
            }
            if applied || last_renewal.elapsed() >= renew_every {
                let sent = Instant::now();
                if let Err(error) = renew(&mut connection, lease, last) {
                    break Err(error);
                }
                if !lease.holds() {
                    // The lease ran out before this renewal (a stalled connection): writes in the
                    // meantime may have stopped waiting for this node, and their notifications
                    // may not be applied yet. Start empty, as after a reconnection. While the
                    // lease still held, the renewal was visible to every write that checked.
                    self.epochs.invalidate_everything();
                }
                lease.renewed(sent);
                last_renewal = sent;
            }
            thread::sleep(POLL_INTERVAL);
        };
        if result.is_ok() {
            self.live.store(false, Ordering::Release);
            lease.lost();
            let _ = diesel::sql_query("DELETE FROM cache_leases WHERE node_id = $1")
                .bind::<Text, _>(&lease.node_id)
                .execute(&mut connection);
        }
        result
    }
}

/// Registers this node under the change lock, so no write is between its number and its commit:
/// returns the last number committed, which every later notification follows. Leases dead for an
/// hour are removed on the way.
fn register(connection: &mut PgConnection, lease: &Lease) -> Result<i64, StoreError> {
    connection.transaction(|conn| {
        conn.batch_execute(&format!(
            "SELECT pg_advisory_xact_lock({CHANGE_LOCK_KEY}); \
             DELETE FROM cache_leases WHERE lease_until < now() - interval '1 hour'"
        ))?;
        let last = diesel::select(diesel::dsl::sql::<BigInt>(
            "(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM change_seq)",
        ))
        .get_result::<i64>(conn)?;
        diesel::sql_query(
            "INSERT INTO cache_leases (node_id, lease_until, applied_seq) \
             VALUES ($1, now() + $2 * interval '1 millisecond', $3) \
             ON CONFLICT (node_id) DO UPDATE SET lease_until = EXCLUDED.lease_until, \
             applied_seq = EXCLUDED.applied_seq",
        )
        .bind::<Text, _>(&lease.node_id)
        .bind::<BigInt, _>(millis(lease.duration))
        .bind::<BigInt, _>(last)
        .execute(conn)?;
        Ok(last)
    })
}

/// Renews the lease and confirms the changes applied up to `applied`. A lease row that is gone
/// (removed as dead) ends this connection: the node registers again, with empty caches.
fn renew(connection: &mut PgConnection, lease: &Lease, applied: i64) -> Result<(), StoreError> {
    let updated = diesel::sql_query(
        "UPDATE cache_leases SET lease_until = now() + $2 * interval '1 millisecond', \
         applied_seq = $3 WHERE node_id = $1",
    )
    .bind::<Text, _>(&lease.node_id)
    .bind::<BigInt, _>(millis(lease.duration))
    .bind::<BigInt, _>(applied)
    .execute(connection)?;
    if updated == 0 {
        return Err(StoreError::Listener(
            "this node's cache lease was removed".into(),
        ));
    }
    Ok(())
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// How many nodes other than `own_node` hold a live lease and have not yet confirmed change `seq`.
pub(crate) fn nodes_behind(
    conn: &mut PgConnection,
    own_node: &str,
    seq: i64,
) -> Result<i64, StoreError> {
    Ok(diesel::select(
        diesel::dsl::sql::<BigInt>("(SELECT count(*) FROM cache_leases WHERE node_id <> ")
            .bind::<Text, _>(own_node)
            .sql(" AND lease_until > now() AND applied_seq < ")
            .bind::<BigInt, _>(seq)
            .sql(")"),
    )
    .get_result::<i64>(conn)?)
}

/// A transaction for writes that change no cached answer (usage times, audit rows): it records no
/// change, so no cache is invalidated and no node is waited for. One query body serves both
/// backends (`with_connection!`).
pub(crate) trait UnnoticedWrite: Connection + Sized {
    fn unnoticed_transaction<T>(
        &mut self,
        write: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>;
}

/// How every SQLite commit but the unnoticed ones runs: `fsync` at commit, and SQLite's default
/// automatic checkpoint (1,000 pages). `write_transaction!` sets it before it begins, and an
/// unnoticed write after its own commit.
pub(crate) const DURABLE_COMMITS: &str =
    "PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 1000";

impl UnnoticedWrite for SqliteConnection {
    /// Neither the `fsync` of `synchronous = FULL` nor a checkpoint inside `COMMIT` is needed for
    /// usage times or audit rows, and both made these commits long (docs/performance.md): this
    /// commit is `NORMAL`, durable at the next checkpoint or full commit (a power failure may lose
    /// one batch, which are approximate anyway; an interrupted process loses nothing, the log is
    /// in the page cache), and the log is checkpointed passively afterwards.
    ///
    /// Both are per-connection settings on a pooled connection, reset after the write. Should a
    /// reset fail, the writes that change answers do not depend on it: `write_transaction!` sets
    /// both itself. A checkpoint that finds readers in the way does what it can and leaves the rest
    /// to the next one; only an error is logged.
    fn unnoticed_transaction<T>(
        &mut self,
        write: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.batch_execute("PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0")?;
        let written = self.immediate_transaction(write);
        self.batch_execute(DURABLE_COMMITS)?;
        let value = written?;
        if let Err(error) = self.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
            log::debug!("unnoticed write: checkpoint left to a later commit: {error}");
        }
        Ok(value)
    }
}

impl UnnoticedWrite for PgConnection {
    fn unnoticed_transaction<T>(
        &mut self,
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

    /// Stores a reading as the last one seen, once the log rows it announced are applied. The
    /// header and the version are only ever stored together: a header stored without its version
    /// would make later checks skip the pragma that has not been heard yet.
    fn record(&mut self, reading: Reading) {
        self.last_seen = reading.version;
        self.header_seen = reading.header;
    }

    /// A failed query drops the connection; the next call opens a new one, whose first version
    /// counts as a change, so the log is read (never a stale hit). A new connection's numbering
    /// starts afresh, so its first value may equal `last_seen` by coincidence: hence `last_seen`
    /// is reset rather than compared.
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
impl ChangeFeed {
    /// A feed with no database behind it, live, for the caches' tests.
    pub(crate) fn detached() -> Self {
        Self {
            epochs: Epochs::new(),
            live: AtomicBool::new(true),
            sqlite_probe: None,
            lease: None,
        }
    }

    /// Applies a change as if another process had recorded it.
    pub(crate) fn apply_for_tests(&self, tags: &[ChangeTag]) {
        let mut changed = Changed::everything();
        for &tag in tags {
            changed.tag(tag);
        }
        self.epochs.apply(&changed.record().unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use diesel::sql_types::Integer;

    use super::*;
    use crate::store::tests::durability_pragmas;

    /// Tags are the same in every process (one node describes its writes to the others by them),
    /// and differ by kind even for the same identifier.
    #[test]
    fn tags_are_stable_and_kinds_apart() {
        assert_eq!(ChangeTag::site(7), ChangeTag::site(7));
        assert_ne!(ChangeTag::site(7), ChangeTag::site(8));
        assert_ne!(ChangeTag::site_key("7"), ChangeTag::resource_server("7"));
        // SHA-256 of "S" followed by 7 as eight big-endian bytes, first eight bytes.
        assert_eq!(ChangeTag::site(7).0, 0x2714_613a_2636_5f63);
    }

    #[test]
    fn a_write_records_nothing_its_tags_or_everything() {
        let mut changed = Changed::everything();
        assert_eq!(changed.record().as_deref(), Some(EVERYTHING));
        changed.nothing();
        assert_eq!(changed.record(), None);
        changed.tag(ChangeTag(0xab));
        changed.tag(ChangeTag(0x1234_5678_9abc_def0));
        assert_eq!(
            changed.record().as_deref(),
            Some("00000000000000ab 123456789abcdef0")
        );
        for n in 0..MAX_TAGS as u64 {
            changed.tag(ChangeTag(n));
        }
        assert_eq!(changed.record().as_deref(), Some(EVERYTHING), "too many");
    }

    /// An answer read before a change to something it depends on is never current again; one
    /// read after it is; answers that depend on other things stay current throughout.
    #[test]
    fn an_invalidation_ends_only_the_answers_that_depend_on_what_changed() {
        let feed = ChangeFeed::detached();
        let before = feed.observe().unwrap().unwrap();
        let token = feed.stamp(before, &[ChangeTag::token(b"a"), ChangeTag::site(1)]);
        let other = feed.stamp(before, &[ChangeTag::token(b"b"), ChangeTag::site(2)]);
        assert!(feed.is_current(&token) && feed.is_current(&other));

        feed.apply_for_tests(&[ChangeTag::site(1)]);
        assert!(!feed.is_current(&token), "its site changed");
        assert!(
            feed.is_current(&other),
            "another site's answer is untouched"
        );
        let after = feed.observe().unwrap().unwrap();
        assert!(feed.is_current(&feed.stamp(after, &[ChangeTag::site(1)])));

        feed.epochs.apply("not a record");
        assert!(
            !feed.is_current(&other),
            "an unreadable record ends everything"
        );
        assert!(!feed.is_current(&feed.stamp(after, &[])));
        assert_eq!(feed.invalidations(), (1, 1));
    }

    /// An answer that depends on more tags than a stamp holds inline (a token whose audience
    /// names several resource servers) is checked against every one of them.
    #[test]
    fn answers_with_many_tags_depend_on_each() {
        let feed = ChangeFeed::detached();
        let epoch = feed.observe().unwrap().unwrap();
        let tags: Vec<ChangeTag> = (0..6).map(ChangeTag::site).collect();
        let stamp = feed.stamp(epoch, &tags);
        assert!(matches!(stamp.slots, Slots::Spilled(_)));
        assert!(feed.is_current(&stamp));
        feed.apply_for_tests(&[ChangeTag::site(5)]);
        assert!(!feed.is_current(&stamp));
        let inline = feed.stamp(feed.observe().unwrap().unwrap(), &tags[..3]);
        assert!(matches!(inline.slots, Slots::Inline { len: 3, .. }));
        feed.apply_for_tests(&[ChangeTag::site(2)]);
        assert!(!feed.is_current(&inline));
    }

    /// A fresh database in WAL mode with the change log, a table `t`, and a connection to it;
    /// keep the directory for as long as the database is used.
    fn wal_database() -> (tempfile::TempDir, String, SqliteConnection) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("feed.db").to_string_lossy().into_owned();
        let mut connection = SqliteConnection::establish(&path).unwrap();
        connection
            .batch_execute(
                "PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER); \
                 CREATE TABLE change_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
                 tags TEXT NOT NULL, recorded_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)",
            )
            .unwrap();
        (dir, path, connection)
    }

    fn write(conn: &mut SqliteConnection, tags: &[ChangeTag]) {
        let mut changed = Changed::everything();
        if tags.is_empty() {
            changed.nothing();
        }
        for &tag in tags {
            changed.tag(tag);
        }
        conn.immediate_transaction(|conn| {
            conn.batch_execute("INSERT INTO t VALUES (1)")?;
            ChangeFeed::record_sqlite(conn, &changed)
        })
        .unwrap();
    }

    /// Every commit by another connection is noticed by the very next observation, through the
    /// log rows it wrote: only what it names is invalidated, and a commit that wrote no row
    /// (usage times) invalidates nothing. The pragma runs only when the WAL-index header shows a
    /// commit since the last one.
    #[test]
    fn the_sqlite_feed_applies_each_commits_log_rows_at_the_next_observation() {
        let (_dir, path, mut writer) = wal_database();
        let feed = ChangeFeed::sqlite(path.clone());
        let pragmas_run = || {
            let probe = feed.sqlite_probe.as_ref().unwrap().lock().unwrap();
            probe.connection.as_ref().map_or(0, |c| c.pragmas_run)
        };
        let first = feed.observe().unwrap().unwrap();
        assert_eq!(
            feed.invalidations(),
            (0, 1),
            "the first reading starts empty"
        );

        for n in 0..30i64 {
            let hot = feed.stamp(first, &[ChangeTag::site(1_000)]);
            let epoch = feed.observe().unwrap().unwrap();
            let written = feed.stamp(epoch, &[ChangeTag::site(n)]);
            let pragmas = pragmas_run();
            for _ in 0..3 {
                feed.observe().unwrap();
            }
            assert_eq!(
                pragmas_run(),
                pragmas,
                "without a commit, the header answers"
            );
            write(&mut writer, &[ChangeTag::site(n)]);
            feed.observe().unwrap();
            assert!(!feed.is_current(&written), "commit {n} went unnoticed");
            assert!(
                feed.is_current(&hot),
                "commit {n} ended an unrelated answer"
            );

            let unrelated = feed.stamp(feed.observe().unwrap().unwrap(), &[ChangeTag::site(n)]);
            write(&mut writer, &[]);
            feed.observe().unwrap();
            assert!(feed.is_current(&unrelated), "a commit without a change");
        }
        assert_eq!(feed.invalidations(), (30, 1));
    }

    /// A process that finds rows missing before the ones it reads (pruned while it was idle)
    /// empties everything; so does a fresh probe connection.
    #[test]
    fn a_gap_in_the_sqlite_log_empties_everything() {
        let (_dir, path, mut writer) = wal_database();
        let feed = ChangeFeed::sqlite(path);
        let epoch = feed.observe().unwrap().unwrap();
        let answer = feed.stamp(epoch, &[ChangeTag::site(1)]);
        write(&mut writer, &[ChangeTag::site(2)]);
        write(&mut writer, &[ChangeTag::site(3)]);
        writer
            .batch_execute("DELETE FROM change_log WHERE seq = (SELECT min(seq) FROM change_log)")
            .unwrap();
        feed.observe().unwrap();
        assert!(!feed.is_current(&answer));
        assert_eq!(feed.invalidations(), (0, 2));
    }

    /// Rows older than the retention go; newer ones, written with the database's own clock,
    /// stay.
    #[test]
    fn pruning_the_sqlite_log_keeps_the_last_hour() {
        let (_dir, _path, mut conn) = wal_database();
        write(&mut conn, &[ChangeTag::site(1)]);
        conn.batch_execute(
            "INSERT INTO change_log (tags, recorded_at) VALUES ('*', datetime('now', '-2 hours'))",
        )
        .unwrap();
        assert_eq!(
            ChangeFeed::prune_log(&mut conn, crate::clock::now()).unwrap(),
            1
        );
        let left = change_log::table
            .count()
            .get_result::<i64>(&mut conn)
            .unwrap();
        assert_eq!(left, 1);
    }

    /// Unnoticed writes commit without `fsync` and without a checkpoint inside `COMMIT`, then
    /// leave the pooled connection as every other one is (`synchronous = FULL`, automatic
    /// checkpoints) and checkpoint the log themselves.
    #[test]
    fn an_unnoticed_transaction_relaxes_durability_for_its_own_commit_only() {
        let (_dir, path, mut writer) = wal_database();
        writer.batch_execute("PRAGMA synchronous = FULL").unwrap();
        let inside = writer
            .unnoticed_transaction(|conn| {
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
        // The write checkpointed the log: the database file alone, without it, has the row.
        let copy = format!("{path}.copy");
        std::fs::copy(&path, &copy).unwrap();
        let mut copy = SqliteConnection::establish(&copy).unwrap();
        let count = diesel::select(diesel::dsl::sql::<Integer>("(SELECT count(*) FROM t)"))
            .get_result::<i32>(&mut copy)
            .unwrap();
        assert_eq!(count, 1);
    }
}
