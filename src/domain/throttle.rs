//! Brute-force throttling of client authentication: the rule and the bounded memory it keeps.
//! Applied by `service::client_auth::throttled` around every use case that authenticates a client
//! (token, invalidate, revoke, introspect); answered as 429 by `http::error`.
//!
//! The rule (RFC 6819 4.3.5, "Obtaining Client Secret by Online Guessing", countermeasure 5.1.4.2.3
//! "Lock Accounts"): failed authentications are counted per client id and per source address in a
//! fixed window that starts at the first failure. A key that reaches its limit is locked until its
//! window ends. While locked, every attempt under that client id or from that address is refused
//! before its credentials are looked at, correct ones included: telling a correct secret from a
//! wrong one needs the database query the lock exists to save, and answering it differently would
//! tell a guesser when they hit. Successes do not reset a count, so they cannot be interleaved to
//! keep guessing. The price is the one RFC 6819 5.1.4.2.3 names: whoever knows a client id (site
//! keys are not secret) can lock that client out for a window; the defaults keep that window to a
//! minute, and a limit of 0 turns either count off.
//!
//! Memory is fixed: each table holds at most `capacity` entries of a few dozen bytes. Client ids
//! are kept as a keyed 64-bit hash (a random key per process, so collisions cannot be aimed), never
//! as the string an attacker chose. When a table is full, expired windows go first, then the
//! entries furthest from a lock, so rotating through random client ids evicts those ids and not
//! the locks they were meant to flush out. IPv6 addresses count per /64, the block one subscriber
//! usually holds.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures per client id within one window before it is locked.
pub const DEFAULT_CLIENT_FAILURES: u32 = 10;
/// Failures per source address within one window: larger, since one address may carry many
/// clients (a NAT, a shared host).
pub const DEFAULT_ADDRESS_FAILURES: u32 = 50;
/// Length of a window, and so of a lock.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// Entries per table: about 5 MB for both tables, full.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// The operator's limits (`serve --throttle-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleLimits {
    /// Failures per client id per window; 0 turns the per-client lock off.
    pub client_failures: u32,
    /// Failures per source address per window; 0 turns the per-address lock off.
    pub address_failures: u32,
    pub window: Duration,
    /// Most client ids, and most addresses, tracked at once.
    pub capacity: usize,
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        Self {
            client_failures: DEFAULT_CLIENT_FAILURES,
            address_failures: DEFAULT_ADDRESS_FAILURES,
            window: DEFAULT_WINDOW,
            capacity: DEFAULT_CAPACITY,
        }
    }
}

/// An authentication attempt refused because its client id or source address is locked.
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
    /// The source address; `None` when the transport has none (a Unix socket, a test harness).
    pub address: Option<IpAddr>,
    pub at: Instant,
}

/// Which key a failure has just locked, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locked {
    ClientId,
    Address(IpAddr),
}

/// The failure counts of one process. Cheap to consult: one mutex, two hash lookups.
#[derive(Debug)]
pub struct Throttle {
    limits: ThrottleLimits,
    hasher: RandomState,
    tables: Mutex<Tables>,
    refused: AtomicU64,
}

#[derive(Debug)]
struct Tables {
    clients: Table<u64>,
    addresses: Table<IpAddr>,
}

impl Throttle {
    pub fn new(limits: ThrottleLimits) -> Self {
        Self {
            limits,
            hasher: RandomState::new(),
            tables: Mutex::new(Tables {
                clients: Table::new(limits.capacity),
                addresses: Table::new(limits.capacity),
            }),
            refused: AtomicU64::new(0),
        }
    }

    /// Refuses the attempt if its client id or its source address is locked.
    pub fn admit(&self, client_id: &str, origin: &Origin) -> Result<(), Throttled> {
        let client = self.hasher.hash_one(client_id);
        let tables = self.lock();
        let window = self.limits.window;
        let by_client =
            tables
                .clients
                .locked_until(&client, self.limits.client_failures, window, origin.at);
        let by_address = origin.address.map(address_key).and_then(|address| {
            tables
                .addresses
                .locked_until(&address, self.limits.address_failures, window, origin.at)
        });
        drop(tables);
        match by_client.max(by_address) {
            None => Ok(()),
            Some(until) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                let remaining = until.saturating_duration_since(origin.at);
                Err(Throttled {
                    retry_after_secs: remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0),
                })
            }
        }
    }

    /// Counts a failed authentication against the client id and the source address; returns the
    /// keys this failure has just locked.
    pub fn record_failure(&self, client_id: &str, origin: &Origin) -> Vec<Locked> {
        let client = self.hasher.hash_one(client_id);
        let window = self.limits.window;
        let mut tables = self.lock();
        let mut locked = Vec::new();
        if self.limits.client_failures > 0
            && tables.clients.record(client, window, origin.at) == self.limits.client_failures
        {
            locked.push(Locked::ClientId);
        }
        if let Some(address) = origin.address.filter(|_| self.limits.address_failures > 0) {
            let key = address_key(address);
            if tables.addresses.record(key, window, origin.at) == self.limits.address_failures {
                locked.push(Locked::Address(key));
            }
        }
        locked
    }

    /// How long a lock lasts.
    pub fn window(&self) -> Duration {
        self.limits.window
    }

    /// Attempts refused since start, for metrics.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave the counts inconsistent in a way that matters.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// IPv4 as is (IPv4-mapped IPv6 too); IPv6 by its /64.
fn address_key(address: IpAddr) -> IpAddr {
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
        let entry = self.windows.entry(key).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now >= entry.started + window {
            *entry = Window {
                started: now,
                failures: 0,
            };
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.failures
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
    /// (client ids, addresses) tracked.
    fn tracked(&self) -> (usize, usize) {
        let tables = self.lock();
        (tables.clients.windows.len(), tables.addresses.windows.len())
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
            window: Duration::from_secs(60),
            capacity: 1_000,
        }
    }

    fn from(address: &str, at: Instant) -> Origin {
        Origin {
            address: Some(address.parse().unwrap()),
            at,
        }
    }

    #[test]
    fn a_client_id_is_locked_at_its_limit_until_the_window_ends() {
        let throttle = Throttle::new(limits(3, 100));
        let start = Instant::now();
        let origin = from("192.0.2.1", start);
        for _ in 0..2 {
            assert!(throttle.record_failure("site", &origin).is_empty());
            assert_eq!(throttle.admit("site", &origin), Ok(()));
        }
        assert_eq!(
            throttle.record_failure("site", &origin),
            vec![Locked::ClientId]
        );
        let later = from("198.51.100.7", start + 10 * SECOND);
        assert_eq!(
            throttle.admit("site", &later),
            Err(Throttled {
                retry_after_secs: 50
            }),
            "a lock follows the client id to any address"
        );
        assert_eq!(throttle.admit("other", &later), Ok(()));
        assert_eq!(
            throttle.admit("site", &from("192.0.2.1", start + 60 * SECOND)),
            Ok(())
        );
        assert_eq!(throttle.refused(), 1);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let throttle = Throttle::new(limits(1, 100));
        let start = Instant::now();
        throttle.record_failure("site", &from("192.0.2.1", start));
        let at = start + Duration::from_millis(59_001);
        assert_eq!(
            throttle.admit("site", &from("192.0.2.1", at)),
            Err(Throttled {
                retry_after_secs: 1
            })
        );
    }

    #[test]
    fn an_address_is_locked_for_every_client_id() {
        let throttle = Throttle::new(limits(100, 3));
        let start = Instant::now();
        let origin = from("192.0.2.1", start);
        throttle.record_failure("a", &origin);
        throttle.record_failure("b", &origin);
        assert_eq!(
            throttle.record_failure("c", &origin),
            vec![Locked::Address("192.0.2.1".parse().unwrap())]
        );
        assert!(throttle.admit("d", &origin).is_err());
        assert_eq!(throttle.admit("d", &from("192.0.2.2", start)), Ok(()));
    }

    #[test]
    fn ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() {
        let throttle = Throttle::new(limits(100, 2));
        let start = Instant::now();
        throttle.record_failure("a", &from("2001:db8:1:2::1", start));
        throttle.record_failure("b", &from("2001:db8:1:2:ffff::9", start));
        assert!(throttle
            .admit("c", &from("2001:db8:1:2:abcd::1", start))
            .is_err());
        assert_eq!(throttle.admit("c", &from("2001:db8:1:3::1", start)), Ok(()));
        throttle.record_failure("a", &from("::ffff:192.0.2.1", start));
        throttle.record_failure("b", &from("192.0.2.1", start));
        assert!(throttle.admit("c", &from("192.0.2.1", start)).is_err());
    }

    #[test]
    fn a_failure_after_the_window_starts_a_new_count() {
        let throttle = Throttle::new(limits(2, 100));
        let start = Instant::now();
        throttle.record_failure("site", &from("192.0.2.1", start));
        let next_window = from("192.0.2.1", start + 61 * SECOND);
        assert!(throttle.record_failure("site", &next_window).is_empty());
        assert_eq!(throttle.admit("site", &next_window), Ok(()));
    }

    #[test]
    fn a_limit_of_zero_turns_that_count_off() {
        let throttle = Throttle::new(limits(0, 0));
        let origin = from("192.0.2.1", Instant::now());
        for _ in 0..1_000 {
            assert!(throttle.record_failure("site", &origin).is_empty());
        }
        assert_eq!(throttle.admit("site", &origin), Ok(()));
    }

    #[test]
    fn attempts_without_an_address_count_per_client_id_only() {
        let throttle = Throttle::new(limits(2, 1));
        let origin = Origin {
            address: None,
            at: Instant::now(),
        };
        assert!(throttle.record_failure("site", &origin).is_empty());
        assert_eq!(throttle.admit("other", &origin), Ok(()));
        assert_eq!(
            throttle.record_failure("site", &origin),
            vec![Locked::ClientId]
        );
    }

    #[test]
    fn capacity_holds_under_100k_distinct_client_ids_and_locks_survive() {
        let capacity = 1_000;
        let throttle = Throttle::new(ThrottleLimits {
            capacity,
            ..limits(3, 0)
        });
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
            let (clients, addresses) = throttle.tracked();
            assert!(clients <= capacity && addresses <= capacity, "{n}");
        }
        assert!(
            throttle.admit("victim", &from("192.0.2.9", start)).is_err(),
            "rotating client ids must not evict a lock"
        );
    }

    #[test]
    fn the_default_capacity_holds_too() {
        let throttle = Throttle::new(ThrottleLimits::default());
        let start = Instant::now();
        for n in 0..(DEFAULT_CAPACITY as u32 + 20_000) {
            let origin = Origin {
                address: Some(IpAddr::from(n.to_be_bytes())),
                at: start,
            };
            throttle.record_failure(&n.to_string(), &origin);
        }
        let (clients, addresses) = throttle.tracked();
        assert!(clients <= DEFAULT_CAPACITY && addresses <= DEFAULT_CAPACITY);
    }

    #[test]
    fn expired_windows_are_evicted_before_live_ones() {
        let throttle = Throttle::new(ThrottleLimits {
            capacity: 8,
            ..limits(2, 0)
        });
        let start = Instant::now();
        throttle.record_failure("live", &from("192.0.2.1", start + 59 * SECOND));
        for n in 0..7 {
            throttle.record_failure(&format!("old-{n}"), &from("192.0.2.1", start));
        }
        // Full: the next new id makes room at 60 s, when only "live" is still open.
        throttle.record_failure("new", &from("192.0.2.1", start + 60 * SECOND));
        assert_eq!(throttle.tracked().0, 2);
        assert_eq!(
            throttle.record_failure("live", &from("192.0.2.1", start + 60 * SECOND)),
            vec![Locked::ClientId]
        );
    }
}
