//! Brute-force throttling of client authentication: the rule and the bounded memory it keeps.
//! Applied by `service::client_auth::throttled` around every use case that authenticates a client
//! (token, invalidate, revoke, introspect); answered as 429 by `http::error`.
//!
//! The rule (RFC 6819 4.3.5 and 5.1.4.2.3; OWASP ASVS 5.0 6.1.1 and 6.3.1: throttling must not let
//! a third party lock a legitimate client out). Failed authentications are counted in a fixed
//! window that starts at the first failure, and only two counts ever lock:
//! - per **(client id, source address)**: the guesser's own pair. Locking it stops that address
//!   guessing that client's secret and nobody else;
//! - per **source address**: one address guessing many client ids. A pair that authenticated
//!   successfully within [`TRUSTED_PAIR_DAYS`] days is exempt from this lock (it keeps its own pair
//!   count), so a partner or NAT gateway shared by many sites cannot be used to lock all of them.
//!
//! A correct secret from an address whose own counts are under their limits is therefore always
//! accepted, whatever other addresses do with the same client id. Failures per client id across
//! all addresses are counted too, as an **alarm**, never a lock: the first time they pass
//! `client_attack_alarm` in a window, [`Throttle::record_failure`] reports it once (the service
//! logs it, records `client_under_attack` in the audit trail and counts it in `/metrics`). With
//! 256-bit secrets the guessing is hopeless; a lock is what would hurt.
//!
//! While a pair or an address is locked, its attempts are refused before their credentials are
//! looked at, correct ones included: telling a correct secret from a wrong one needs the database
//! query the lock exists to save, and answering it differently would tell a guesser when they hit.
//! Successes do not reset a count, so they cannot be interleaved to keep guessing.
//!
//! Memory is fixed: each table holds at most `capacity` entries of a few dozen bytes. Client ids
//! are kept as a keyed 64-bit hash (SipHash-1-3 under a key derived from the server secret, so
//! collisions cannot be aimed), never as the string an attacker chose. When a table is full,
//! expired windows go first, then the entries furthest from a lock, so rotating through random
//! client ids evicts those ids and not the locks they were meant to flush out. IPv6 addresses
//! count per /64, the block one subscriber usually holds.
//!
//! **Across nodes**, the pair and address counts hold for the deployment: every node hands the
//! failures it counted to the database about once a second ([`Throttle::take_unpublished`]) and
//! takes the deployment's counts back ([`Throttle::merge_shared`]), so N nodes allow at most the
//! limit plus about one second's worth of failures per node, not N times the limit. The key is the
//! same on every node, so every node names a pair alike. Successes write nothing: trusted pairs and
//! the alarm's count stay per process, and a restart forgets the trusted pairs (a pair is trusted
//! again at its next success).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// Failures per (client id, address) pair within one window before that pair is locked.
pub const DEFAULT_CLIENT_FAILURES: u32 = 10;
/// Failures per source address within one window: larger, since one address may carry many
/// clients (a NAT, a shared host).
pub const DEFAULT_ADDRESS_FAILURES: u32 = 50;
/// Failures per client id across all addresses within one window that raise the alarm.
pub const DEFAULT_CLIENT_ATTACK_ALARM: u32 = 100;
/// Length of a window, and so of a lock.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// Entries per table: about 5 MB for the four tables, full.
pub const DEFAULT_CAPACITY: usize = 100_000;
/// How long a successful authentication exempts its (client id, address) pair from the address
/// lock.
pub const TRUSTED_PAIR_DAYS: u64 = 30;
const TRUSTED_PAIR_TIME: Duration = Duration::from_secs(TRUSTED_PAIR_DAYS * 86_400);
/// A trusted pair's time is refreshed by a success at most this often, so a client in steady use
/// costs a shared read lock per success, not a write.
const TRUST_REFRESH: Duration = Duration::from_secs(3600);

/// The operator's limits (`serve --throttle-*`, `--client-attack-alarm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleLimits {
    /// Failures per (client id, address) pair per window; 0 turns the pair lock off.
    pub client_failures: u32,
    /// Failures per source address per window; 0 turns the per-address lock off.
    pub address_failures: u32,
    /// Failures per client id across all addresses per window that raise the alarm; 0: no alarm.
    pub client_attack_alarm: u32,
    pub window: Duration,
    /// Most entries per table (pairs, addresses, client ids, trusted pairs).
    pub capacity: usize,
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        Self {
            client_failures: DEFAULT_CLIENT_FAILURES,
            address_failures: DEFAULT_ADDRESS_FAILURES,
            client_attack_alarm: DEFAULT_CLIENT_ATTACK_ALARM,
            window: DEFAULT_WINDOW,
            capacity: DEFAULT_CAPACITY,
        }
    }
}

/// An authentication attempt refused because its pair or its source address is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed client authentications; retry in {retry_after_secs} s")]
pub struct Throttled {
    /// Whole seconds until the lock ends, rounded up (`Retry-After`, RFC 9110 10.2.3).
    pub retry_after_secs: u64,
}

/// Where an attempt comes from and when (a monotonic instant: a lock must not stretch or vanish
/// when the wall clock is set).
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// The client's address (`http::client_address`); `None` when the transport has none (a Unix
    /// socket, a test harness).
    pub address: Option<IpAddr>,
    pub at: Instant,
}

/// What one failure has just caused, for the log, the audit trail and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailureOutcome {
    /// The (client id, address) pair reached its limit with this failure.
    pub pair_locked: bool,
    /// The address (IPv6: its /64) reached its limit with this failure.
    pub address_locked: Option<IpAddr>,
    /// The client id passed the alarm with this failure.
    pub alarm: Option<Alarm>,
}

/// A client id failing more often than the alarm allows, from how many addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alarm {
    pub failures: u32,
    pub addresses: u32,
}

/// The failure counts of one process. Cheap to consult: a shared lock and two or three lookups.
#[derive(Debug)]
pub struct Throttle {
    limits: ThrottleLimits,
    /// SipHash-1-3 keys for client ids, derived from the server secret: the same on every node.
    hash_keys: (u64, u64),
    tables: RwLock<Tables>,
    refused: AtomicU64,
    alarms: AtomicU64,
    /// Whether counts were exchanged with the other nodes yet (see [`Throttle::first_share`]).
    shared_once: AtomicBool,
}

/// An attempt [`Throttle::admit`] let through, with its pair already hashed.
#[derive(Debug, Clone, Copy)]
pub struct Admitted {
    pair: Pair,
}

/// A (client id, address) pair: the client id's keyed hash and the address key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pair {
    client: u64,
    address: Option<IpAddr>,
}

#[derive(Debug)]
struct Tables {
    pairs: Table<Pair>,
    addresses: Table<IpAddr>,
    /// Failures per client id over all addresses: the alarm's count, never a lock.
    clients: Table<u64>,
    /// Pairs that authenticated successfully, with the time of their last success.
    trusted: HashMap<Pair, Instant>,
    /// Failures counted here and not yet handed to the other nodes, with the start of the window
    /// they were counted in.
    unpublished: HashMap<SharedKey, (u32, Instant)>,
}

/// A count the nodes share: a (client id, address) pair's or an address's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SharedKey {
    Pair(Pair),
    Address(IpAddr),
}

impl SharedKey {
    /// The key as the store keeps it: a kind byte, the client id's hash for a pair, then the
    /// address (its length, then its bytes; length 0 for an attempt without one).
    pub fn to_bytes(self) -> Vec<u8> {
        let (kind, client, address) = match self {
            SharedKey::Pair(pair) => (1u8, Some(pair.client), pair.address),
            SharedKey::Address(address) => (2u8, None, Some(address)),
        };
        let mut bytes = vec![kind];
        if let Some(client) = client {
            bytes.extend_from_slice(&client.to_be_bytes());
        }
        match address {
            None => bytes.push(0),
            Some(IpAddr::V4(v4)) => {
                bytes.push(4);
                bytes.extend_from_slice(&v4.octets());
            }
            Some(IpAddr::V6(v6)) => {
                bytes.push(16);
                bytes.extend_from_slice(&v6.octets());
            }
        }
        bytes
    }

    /// The key [`SharedKey::to_bytes`] wrote; `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&kind, rest) = bytes.split_first()?;
        let (client, rest) = match kind {
            1 => {
                let (client, rest) = rest.split_first_chunk::<8>()?;
                (Some(u64::from_be_bytes(*client)), rest)
            }
            2 => (None, rest),
            _ => return None,
        };
        let (&length, rest) = rest.split_first()?;
        let address = match (length, rest.len()) {
            (0, 0) => None,
            (4, 4) => Some(IpAddr::from(<[u8; 4]>::try_from(rest).ok()?)),
            (16, 16) => Some(IpAddr::from(<[u8; 16]>::try_from(rest).ok()?)),
            _ => return None,
        };
        match (client, address) {
            (Some(client), address) => Some(SharedKey::Pair(Pair { client, address })),
            (None, Some(address)) => Some(SharedKey::Address(address)),
            (None, None) => None,
        }
    }
}

/// A node's new failures for one shared key, to add to the deployment's count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unpublished {
    pub key: SharedKey,
    pub failures: u32,
    /// When the window they were counted in started.
    pub started: Instant,
}

/// The deployment's count for one shared key, as the store has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedWindow {
    pub key: SharedKey,
    pub failures: u32,
    /// How long before the merge its window started (by the nodes' wall clocks, which agree to
    /// far better than a window).
    pub age: Duration,
}

impl Throttle {
    /// `hash_keys` must be the same on every node of a deployment (derived from the server secret)
    /// and unknown to clients, so that nobody can aim collisions.
    pub fn new(limits: ThrottleLimits, hash_keys: (u64, u64)) -> Self {
        Self {
            limits,
            hash_keys,
            tables: RwLock::new(Tables {
                pairs: Table::new(limits.capacity),
                addresses: Table::new(limits.capacity),
                clients: Table::new(limits.capacity),
                trusted: HashMap::new(),
                unpublished: HashMap::new(),
            }),
            refused: AtomicU64::new(0),
            alarms: AtomicU64::new(0),
            shared_once: AtomicBool::new(false),
        }
    }

    /// Whether any count is kept, and so worth sharing with the other nodes.
    pub fn shares_counts(&self) -> bool {
        self.limits.client_failures > 0 || self.limits.address_failures > 0
    }

    /// `true` the first time only: the first exchange reads every open window.
    pub fn first_share(&self) -> bool {
        !self.shared_once.swap(true, Ordering::AcqRel)
    }

    fn pair(&self, client_id: &str, origin: &Origin) -> Pair {
        let (k0, k1) = self.hash_keys;
        let mut hasher = siphasher::sip::SipHasher13::new_with_keys(k0, k1);
        client_id.hash(&mut hasher);
        Pair {
            client: hasher.finish(),
            address: origin.address.map(address_key),
        }
    }

    /// Refuses the attempt if its pair is locked, or its address is locked and the pair is not a
    /// trusted one. An admitted attempt keeps its pair for [`Throttle::record_success`].
    pub fn admit(&self, client_id: &str, origin: &Origin) -> Result<Admitted, Throttled> {
        let pair = self.pair(client_id, origin);
        let window = self.limits.window;
        let tables = self.read();
        let by_pair =
            tables
                .pairs
                .locked_until(&pair, self.limits.client_failures, window, origin.at);
        let by_address = pair
            .address
            .and_then(|address| {
                tables.addresses.locked_until(
                    &address,
                    self.limits.address_failures,
                    window,
                    origin.at,
                )
            })
            .filter(|_| !tables.is_trusted(&pair, origin.at));
        drop(tables);
        match by_pair.max(by_address) {
            None => Ok(Admitted { pair }),
            Some(until) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                let remaining = until.saturating_duration_since(origin.at);
                Err(Throttled {
                    retry_after_secs: remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0),
                })
            }
        }
    }

    /// Notes a successful authentication of an admitted attempt: its pair is trusted for
    /// [`TRUSTED_PAIR_DAYS`] days. A pair trusted within the last hour costs a shared lock and one
    /// lookup (this runs on every successful introspection).
    pub fn record_success(&self, admitted: &Admitted, origin: &Origin) {
        if self.limits.address_failures == 0 {
            return;
        }
        let pair = admitted.pair;
        let fresh = self
            .read()
            .trusted
            .get(&pair)
            .is_some_and(|&at| origin.at.saturating_duration_since(at) < TRUST_REFRESH);
        if fresh {
            return;
        }
        let mut tables = self.write();
        if !tables.trusted.contains_key(&pair) && tables.trusted.len() >= self.limits.capacity {
            make_room_for_trust(&mut tables.trusted, self.limits.capacity, origin.at);
        }
        tables.trusted.insert(pair, origin.at);
    }

    /// Counts a failed authentication against the pair, the address and the client id.
    pub fn record_failure(&self, client_id: &str, origin: &Origin) -> FailureOutcome {
        let pair = self.pair(client_id, origin);
        let window = self.limits.window;
        let mut tables = self.write();
        let mut outcome = FailureOutcome::default();
        let in_pair = tables.pairs.record(pair, window, origin.at);
        if self.limits.client_failures > 0 {
            tables.note_unpublished(SharedKey::Pair(pair), origin.at, self.limits.capacity);
            if in_pair == self.limits.client_failures {
                outcome.pair_locked = true;
            }
        }
        if let Some(address) = pair.address.filter(|_| self.limits.address_failures > 0) {
            let in_address = tables.addresses.record(address, window, origin.at);
            let key = SharedKey::Address(address);
            tables.note_unpublished(key, origin.at, self.limits.capacity);
            if in_address == self.limits.address_failures {
                outcome.address_locked = Some(address);
            }
        }
        if self.limits.client_attack_alarm > 0 {
            let failures = tables.clients.record(pair.client, window, origin.at);
            // An address counts once per window of the client id: its pair remembers the start of
            // the client-id window it was last counted in.
            let client_window = tables.clients.started(&pair.client);
            if tables.pairs.mark_counted(&pair, client_window) {
                tables.clients.count_address(&pair.client);
            }
            if failures == self.limits.client_attack_alarm.saturating_add(1) {
                let addresses = tables.clients.addresses(&pair.client);
                self.alarms.fetch_add(1, Ordering::Relaxed);
                outcome.alarm = Some(Alarm {
                    failures,
                    addresses,
                });
            }
        }
        outcome
    }

    /// The failures counted here since the last call, for the other nodes (called about once a
    /// second: the most the other nodes' counts lag behind).
    pub fn take_unpublished(&self) -> Vec<Unpublished> {
        let taken = std::mem::take(&mut self.write().unpublished);
        taken
            .into_iter()
            .map(|(key, (failures, started))| Unpublished {
                key,
                failures,
                started,
            })
            .collect()
    }

    /// Takes the deployment's counts at `at`: each key's count becomes the larger of the count
    /// here and the deployment's plus what was counted here since it was taken, in the window the
    /// deployment has for it. Windows that have ended are left out.
    pub fn merge_shared(&self, windows: &[SharedWindow], at: Instant) {
        let window = self.limits.window;
        let mut tables = self.write();
        for shared in windows.iter().filter(|shared| shared.age < window) {
            let started = at.checked_sub(shared.age).unwrap_or(at);
            let pending = tables
                .unpublished
                .get(&shared.key)
                .map_or(0, |(failures, _)| *failures);
            let failures = shared.failures.saturating_add(pending);
            match shared.key {
                SharedKey::Pair(pair) => tables.pairs.merge(pair, started, failures, window, at),
                SharedKey::Address(address) => tables
                    .addresses
                    .merge(address, started, failures, window, at),
            }
        }
    }

    /// How long a lock lasts.
    pub fn window(&self) -> Duration {
        self.limits.window
    }

    /// Attempts refused since start, for metrics.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Alarms raised since start, for metrics.
    pub fn alarms(&self) -> u64 {
        self.alarms.load(Ordering::Relaxed)
    }

    // A panic while holding the lock cannot leave the counts inconsistent in a way that matters.
    fn read(&self) -> RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Tables {
    /// One more failure for the other nodes. Bounded like the tables: past `capacity` keys, a new
    /// key is counted here only.
    fn note_unpublished(&mut self, key: SharedKey, at: Instant, capacity: usize) {
        let started = match key {
            SharedKey::Pair(pair) => self.pairs.started(&pair),
            SharedKey::Address(address) => self.addresses.started(&address),
        }
        .unwrap_or(at);
        if self.unpublished.len() >= capacity && !self.unpublished.contains_key(&key) {
            return;
        }
        let entry = self.unpublished.entry(key).or_insert((0, started));
        entry.0 = entry.0.saturating_add(1);
    }

    fn is_trusted(&self, pair: &Pair, now: Instant) -> bool {
        self.trusted
            .get(pair)
            .is_some_and(|&at| now.saturating_duration_since(at) < TRUSTED_PAIR_TIME)
    }
}

/// Frees an eighth of the trusted pairs: those past their time first, then the longest unused.
fn make_room_for_trust(trusted: &mut HashMap<Pair, Instant>, capacity: usize, now: Instant) {
    trusted.retain(|_, at| now.saturating_duration_since(*at) < TRUSTED_PAIR_TIME);
    let capacity = capacity.max(1);
    let target = capacity - (capacity / 8).max(1);
    if trusted.len() <= target {
        return;
    }
    let mut ranked: Vec<(Instant, Pair)> = trusted.iter().map(|(pair, at)| (*at, *pair)).collect();
    let excess = trusted.len() - target;
    ranked.select_nth_unstable_by_key(excess - 1, |&(at, _)| at);
    for (_, pair) in &ranked[..excess] {
        trusted.remove(pair);
    }
}

/// IPv4 as is (IPv4-mapped IPv6 too); IPv6 by its /64: the block one subscriber usually holds.
pub fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(
                u128::from(v6) & 0xffff_ffff_ffff_ffff_0000_0000_0000_0000,
            )),
        },
    }
}

/// Failures of one key in its current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
    /// The client-id table only: addresses that failed for this client id in this window.
    addresses: u32,
    /// The pair table only: the start of the client-id window this pair's address was last
    /// counted in.
    counted_in: Option<Instant>,
}

/// A map of at most `capacity` windows.
#[derive(Debug)]
struct Table<K> {
    windows: HashMap<K, Window>,
    capacity: usize,
}

impl<K: Hash + Eq + Copy> Table<K> {
    fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            windows: HashMap::with_capacity(capacity.min(1024)),
            capacity,
        }
    }

    /// The end of `key`'s lock, if it has `limit` failures in a window that is still open.
    fn locked_until(&self, key: &K, limit: u32, window: Duration, now: Instant) -> Option<Instant> {
        let entry = self.windows.get(key).filter(|_| limit > 0)?;
        let end = entry.started + window;
        (entry.failures >= limit && now < end).then_some(end)
    }

    /// Adds a failure; returns the count in the current window.
    fn record(&mut self, key: K, window: Duration, now: Instant) -> u32 {
        if !self.windows.contains_key(&key) && self.windows.len() >= self.capacity {
            self.make_room(window, now);
        }
        let fresh = Window {
            started: now,
            failures: 0,
            addresses: 0,
            counted_in: None,
        };
        let entry = self.windows.entry(key).or_insert(fresh);
        if now >= entry.started + window {
            *entry = Window {
                counted_in: entry.counted_in,
                ..fresh
            };
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.failures
    }

    fn started(&self, key: &K) -> Option<Instant> {
        self.windows.get(key).map(|entry| entry.started)
    }

    /// Takes a count the nodes share: `key` has `failures` in the window that started at
    /// `started`, unless the count here is higher in a window still open.
    fn merge(&mut self, key: K, started: Instant, failures: u32, window: Duration, now: Instant) {
        if !self.windows.contains_key(&key) && self.windows.len() >= self.capacity {
            self.make_room(window, now);
        }
        let entry = self.windows.entry(key).or_insert(Window {
            started,
            failures: 0,
            addresses: 0,
            counted_in: None,
        });
        if now >= entry.started + window {
            entry.failures = 0;
            entry.started = started;
        }
        entry.started = entry.started.min(started);
        entry.failures = entry.failures.max(failures);
    }

    /// Whether `key` has not been counted in the window that started at `window_start` yet;
    /// remembers that it now has.
    fn mark_counted(&mut self, key: &K, window_start: Option<Instant>) -> bool {
        match self.windows.get_mut(key) {
            Some(entry) if entry.counted_in != window_start => {
                entry.counted_in = window_start;
                true
            }
            _ => false,
        }
    }

    fn count_address(&mut self, key: &K) {
        if let Some(entry) = self.windows.get_mut(key) {
            entry.addresses = entry.addresses.saturating_add(1);
        }
    }

    fn addresses(&self, key: &K) -> u32 {
        self.windows.get(key).map_or(0, |entry| entry.addresses)
    }

    /// Frees an eighth of the table, so the cost (a linear pass and selection, under the lock)
    /// is paid once per `capacity / 8` new keys: expired windows first, then the fewest failures,
    /// oldest first. Locks are the entries with the most failures, so they go last.
    fn make_room(&mut self, window: Duration, now: Instant) {
        self.windows.retain(|_, entry| now < entry.started + window);
        let target = self.capacity - (self.capacity / 8).max(1);
        if self.windows.len() <= target {
            return;
        }
        let mut ranked: Vec<(u32, Instant, K)> = self
            .windows
            .iter()
            .map(|(key, entry)| (entry.failures, entry.started, *key))
            .collect();
        let excess = self.windows.len() - target;
        // The `excess` lowest-ranked entries, in no particular order: no need to sort them all.
        ranked
            .select_nth_unstable_by_key(excess - 1, |&(failures, started, _)| (failures, started));
        for (_, _, key) in &ranked[..excess] {
            self.windows.remove(key);
        }
    }
}

#[cfg(test)]
impl Throttle {
    /// (pairs, addresses) tracked.
    fn tracked(&self) -> (usize, usize) {
        let tables = self.read();
        (tables.pairs.windows.len(), tables.addresses.windows.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn limits(client_failures: u32, address_failures: u32) -> ThrottleLimits {
        ThrottleLimits {
            client_failures,
            address_failures,
            client_attack_alarm: 0,
            window: Duration::from_secs(60),
            capacity: 1_000,
        }
    }

    /// A successful authentication of `client_id` from `origin`.
    fn trust(throttle: &Throttle, client_id: &str, origin: &Origin) {
        let admitted = throttle.admit(client_id, origin).expect("not locked");
        throttle.record_success(&admitted, origin);
    }

    fn from(address: &str, at: Instant) -> Origin {
        Origin {
            address: Some(address.parse().unwrap()),
            at,
        }
    }

    #[test]
    fn shared_keys_survive_the_store_and_garbage_is_refused() {
        let throttle = Throttle::new(limits(3, 3), (7, 9));
        let at = Instant::now();
        for address in ["192.0.2.1", "2001:db8::1", "::ffff:192.0.2.9"] {
            let pair = throttle.pair("site_a", &from(address, at));
            for key in [
                SharedKey::Pair(pair),
                SharedKey::Address(pair.address.unwrap()),
            ] {
                assert_eq!(SharedKey::from_bytes(&key.to_bytes()), Some(key));
            }
        }
        let without = throttle.pair("site_a", &Origin { address: None, at });
        let key = SharedKey::Pair(without);
        assert_eq!(SharedKey::from_bytes(&key.to_bytes()), Some(key));
        for garbage in [
            &b""[..],
            b"\x03",
            b"\x02\x00",
            b"\x01\x00\x00",
            b"\x02\x04\x01\x02\x03",
        ] {
            assert_eq!(SharedKey::from_bytes(garbage), None, "{garbage:?}");
        }
        let other_node = Throttle::new(limits(3, 3), (7, 9));
        assert_eq!(
            other_node.pair("site_a", &from("192.0.2.1", at)),
            throttle.pair("site_a", &from("192.0.2.1", at))
        );
        let other_key = Throttle::new(limits(3, 3), (8, 9));
        assert_ne!(
            other_key.pair("site_a", &from("192.0.2.1", at)),
            throttle.pair("site_a", &from("192.0.2.1", at))
        );
    }

    /// Two nodes with a limit of 4: two failures on each lock the pair on both once they have
    /// exchanged their counts (the store's sum is played by a map here).
    #[test]
    fn nodes_that_exchange_counts_lock_at_the_deployments_limit() {
        let nodes = [
            Throttle::new(limits(4, 100), (1, 2)),
            Throttle::new(limits(4, 100), (1, 2)),
        ];
        let start = Instant::now();
        let attacker = from("192.0.2.1", start);
        let mut store: HashMap<SharedKey, u32> = HashMap::new();
        for node in &nodes {
            for _ in 0..2 {
                assert!(!node.record_failure("site", &attacker).pair_locked);
            }
            assert!(node.admit("site", &attacker).is_ok(), "2 of 4 here");
        }
        for node in &nodes {
            for unpublished in node.take_unpublished() {
                *store.entry(unpublished.key).or_default() += unpublished.failures;
            }
        }
        let later = start + SECOND;
        let windows: Vec<SharedWindow> = store
            .iter()
            .map(|(key, failures)| SharedWindow {
                key: *key,
                failures: *failures,
                age: SECOND,
            })
            .collect();
        for node in &nodes {
            node.merge_shared(&windows, later);
            let refused = node.admit("site", &from("192.0.2.1", later)).unwrap_err();
            assert_eq!(
                refused.retry_after_secs, 59,
                "the window that started a second ago"
            );
            assert!(node.admit("site", &from("198.51.100.7", later)).is_ok());
            assert!(
                node.take_unpublished().is_empty(),
                "nothing new to hand over"
            );
        }
        // A window that has ended elsewhere locks nothing here.
        let ended = [SharedWindow {
            key: *store.keys().next().unwrap(),
            failures: 50,
            age: Duration::from_secs(61),
        }];
        let fresh = Throttle::new(limits(4, 100), (1, 2));
        fresh.merge_shared(&ended, later);
        assert!(fresh.admit("site", &from("192.0.2.1", later)).is_ok());
    }

    #[test]
    fn a_pair_is_locked_at_its_limit_until_the_window_ends_and_no_one_else_is() {
        let throttle = Throttle::new(limits(3, 100), (1, 2));
        let start = Instant::now();
        let attacker = from("192.0.2.1", start);
        for _ in 0..2 {
            assert!(!throttle.record_failure("site", &attacker).pair_locked);
            assert!(throttle.admit("site", &attacker).is_ok());
        }
        assert!(throttle.record_failure("site", &attacker).pair_locked);
        let later = from("192.0.2.1", start + 10 * SECOND);
        assert_eq!(
            throttle.admit("site", &later).err(),
            Some(Throttled {
                retry_after_secs: 50
            })
        );
        assert!(
            throttle
                .admit("site", &from("198.51.100.7", start + 10 * SECOND))
                .is_ok(),
            "the same client id from any other address is admitted"
        );
        assert!(throttle.admit("other", &later).is_ok());
        assert!(throttle
            .admit("site", &from("192.0.2.1", start + 60 * SECOND))
            .is_ok());
        assert_eq!(throttle.refused(), 1);
    }

    #[test]
    fn failures_from_many_addresses_never_lock_the_client_id() {
        let throttle = Throttle::new(limits(3, 100), (1, 2));
        let start = Instant::now();
        for n in 0..250u32 {
            let origin = Origin {
                address: Some(IpAddr::from((0xc000_0200u32 + n).to_be_bytes())),
                at: start,
            };
            for _ in 0..2 {
                throttle.record_failure("site", &origin);
            }
        }
        assert!(throttle.admit("site", &from("203.0.113.9", start)).is_ok());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let throttle = Throttle::new(limits(1, 100), (1, 2));
        let start = Instant::now();
        throttle.record_failure("site", &from("192.0.2.1", start));
        let at = start + Duration::from_millis(59_001);
        assert_eq!(
            throttle.admit("site", &from("192.0.2.1", at)).err(),
            Some(Throttled {
                retry_after_secs: 1
            })
        );
    }

    #[test]
    fn an_address_guessing_many_client_ids_is_locked_for_every_untrusted_client_id() {
        let throttle = Throttle::new(limits(100, 3), (1, 2));
        let start = Instant::now();
        let origin = from("192.0.2.1", start);
        throttle.record_failure("a", &origin);
        throttle.record_failure("b", &origin);
        assert_eq!(
            throttle.record_failure("c", &origin).address_locked,
            Some("192.0.2.1".parse().unwrap())
        );
        assert!(throttle.admit("d", &origin).is_err());
        assert!(throttle.admit("d", &from("192.0.2.2", start)).is_ok());
    }

    #[test]
    fn a_pair_that_succeeded_is_exempt_from_the_address_lock_but_keeps_its_own_count() {
        let throttle = Throttle::new(limits(2, 3), (1, 2));
        let start = Instant::now();
        let gateway = from("192.0.2.1", start);
        trust(&throttle, "partner-site", &gateway);
        for id in ["x", "y", "z"] {
            throttle.record_failure(id, &gateway);
        }
        assert!(throttle.admit("stranger", &gateway).is_err());
        assert!(throttle.admit("partner-site", &gateway).is_ok());
        throttle.record_failure("partner-site", &gateway);
        throttle.record_failure("partner-site", &gateway);
        assert!(
            throttle.admit("partner-site", &gateway).is_err(),
            "its own pair count still locks"
        );
        let after_trust = from("192.0.2.1", start + TRUSTED_PAIR_TIME + SECOND);
        let throttle = Throttle::new(limits(2, 3), (1, 2));
        trust(&throttle, "partner-site", &gateway);
        for id in ["x", "y", "z"] {
            throttle.record_failure(id, &after_trust);
        }
        assert!(
            throttle.admit("partner-site", &after_trust).is_err(),
            "trust lasts 30 days"
        );
    }

    #[test]
    fn the_alarm_is_raised_once_per_window_with_the_number_of_addresses() {
        let throttle = Throttle::new(
            ThrottleLimits {
                client_attack_alarm: 5,
                ..limits(100, 100)
            },
            (1, 2),
        );
        let start = Instant::now();
        let mut alarms = Vec::new();
        for n in 0..20u32 {
            let origin = from(
                &format!("192.0.2.{}", n % 3),
                start + Duration::from_millis(n.into()),
            );
            if let Some(alarm) = throttle.record_failure("site", &origin).alarm {
                alarms.push(alarm);
            }
        }
        assert_eq!(
            alarms,
            [Alarm {
                failures: 6,
                addresses: 3
            }]
        );
        assert_eq!(throttle.alarms(), 1);
        let next_window = from("192.0.2.1", start + 61 * SECOND);
        assert!(throttle.admit("site", &next_window).is_ok(), "never a lock");
    }

    /// An address counts once per window of the client id, even when its pair's window started
    /// in the client id's previous window and is still open, and not twice when its pair's window
    /// restarts within one client-id window.
    #[test]
    fn the_alarm_counts_each_address_once_per_window_of_the_client_id() {
        let throttle = Throttle::new(
            ThrottleLimits {
                client_attack_alarm: 3,
                window: Duration::from_secs(60),
                ..limits(100, 100)
            },
            (1, 2),
        );
        let start = Instant::now();
        let at = |seconds: u64, address: &str| from(address, start + Duration::from_secs(seconds));
        throttle.record_failure("site", &at(0, "192.0.2.1"));
        throttle.record_failure("site", &at(50, "192.0.2.2"));
        // The client id's window restarts at 61 s; the pair of .2 is still in its window.
        let mut alarms = Vec::new();
        for (seconds, address) in [(61, "192.0.2.2"), (62, "192.0.2.2"), (63, "192.0.2.3")] {
            alarms.extend(throttle.record_failure("site", &at(seconds, address)).alarm);
        }
        alarms.extend(throttle.record_failure("site", &at(64, "192.0.2.2")).alarm);
        assert_eq!(
            alarms,
            [Alarm {
                failures: 4,
                addresses: 2
            }]
        );
    }

    #[test]
    fn ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() {
        let throttle = Throttle::new(limits(100, 2), (1, 2));
        let start = Instant::now();
        throttle.record_failure("a", &from("2001:db8:1:2::1", start));
        throttle.record_failure("b", &from("2001:db8:1:2:ffff::9", start));
        assert!(throttle
            .admit("c", &from("2001:db8:1:2:abcd::1", start))
            .is_err());
        assert!(throttle.admit("c", &from("2001:db8:1:3::1", start)).is_ok());
        throttle.record_failure("a", &from("::ffff:192.0.2.1", start));
        throttle.record_failure("b", &from("192.0.2.1", start));
        assert!(throttle.admit("c", &from("192.0.2.1", start)).is_err());
    }

    #[test]
    fn a_failure_after_the_window_starts_a_new_count() {
        let throttle = Throttle::new(limits(2, 100), (1, 2));
        let start = Instant::now();
        throttle.record_failure("site", &from("192.0.2.1", start));
        let next_window = from("192.0.2.1", start + 61 * SECOND);
        assert!(!throttle.record_failure("site", &next_window).pair_locked);
        assert!(throttle.admit("site", &next_window).is_ok());
    }

    #[test]
    fn a_limit_of_zero_turns_that_count_off() {
        let throttle = Throttle::new(limits(0, 0), (1, 2));
        let origin = from("192.0.2.1", Instant::now());
        for _ in 0..1_000 {
            assert_eq!(
                throttle.record_failure("site", &origin),
                FailureOutcome::default()
            );
        }
        assert!(throttle.admit("site", &origin).is_ok());
    }

    #[test]
    fn attempts_without_an_address_count_per_pair_only() {
        let throttle = Throttle::new(limits(2, 1), (1, 2));
        let origin = Origin {
            address: None,
            at: Instant::now(),
        };
        assert!(!throttle.record_failure("site", &origin).pair_locked);
        assert!(throttle.admit("other", &origin).is_ok());
        assert!(throttle.record_failure("site", &origin).pair_locked);
    }

    #[test]
    fn capacity_holds_under_100k_distinct_client_ids_and_locks_survive() {
        let capacity = 1_000;
        // An address limit no address reaches: trusted pairs are kept only while it is on.
        let throttle = Throttle::new(
            ThrottleLimits {
                capacity,
                ..limits(3, u32::MAX)
            },
            (1, 2),
        );
        let start = Instant::now();
        let origin = from("192.0.2.1", start);
        for _ in 0..3 {
            throttle.record_failure("victim", &origin);
        }
        for n in 0..100_000u32 {
            let origin = Origin {
                address: Some(IpAddr::from(n.to_be_bytes())),
                at: start + Duration::from_micros(u64::from(n)),
            };
            throttle.record_failure(&format!("random-{n}"), &origin);
            trust(&throttle, &format!("random-{n}"), &origin);
            let (pairs, addresses) = throttle.tracked();
            assert!(pairs <= capacity && addresses <= capacity, "{n}");
            assert!(throttle.read().trusted.len() <= capacity, "{n}");
        }
        assert!(
            throttle.admit("victim", &from("192.0.2.1", start)).is_err(),
            "rotating client ids must not evict a lock"
        );
    }

    #[test]
    fn the_default_capacity_holds_too() {
        let throttle = Throttle::new(ThrottleLimits::default(), (1, 2));
        let start = Instant::now();
        for n in 0..(DEFAULT_CAPACITY as u32 + 20_000) {
            let origin = Origin {
                address: Some(IpAddr::from(n.to_be_bytes())),
                at: start,
            };
            throttle.record_failure(&n.to_string(), &origin);
        }
        let (pairs, addresses) = throttle.tracked();
        assert!(pairs <= DEFAULT_CAPACITY && addresses <= DEFAULT_CAPACITY);
    }

    #[test]
    fn expired_windows_are_evicted_before_live_ones() {
        let throttle = Throttle::new(
            ThrottleLimits {
                capacity: 8,
                ..limits(2, 0)
            },
            (1, 2),
        );
        let start = Instant::now();
        throttle.record_failure("live", &from("192.0.2.1", start + 59 * SECOND));
        for n in 0..7 {
            throttle.record_failure(&format!("old-{n}"), &from("192.0.2.1", start));
        }
        // Full: the next new pair makes room at 60 s, when only "live" is still open.
        throttle.record_failure("new", &from("192.0.2.1", start + 60 * SECOND));
        assert_eq!(throttle.tracked().0, 2);
        assert!(
            throttle
                .record_failure("live", &from("192.0.2.1", start + 60 * SECOND))
                .pair_locked
        );
    }
}
