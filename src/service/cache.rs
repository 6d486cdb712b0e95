//! A bounded map of answers, each served only while nothing it depends on has changed.
//!
//! Exactness comes from the store's `ChangeFeed`: callers observe it before they query the
//! database ([`observe_changes`]), and the answer is stored with a stamp of that moment and the
//! [`ChangeTag`]s it depends on; the feed says whether a stamp is still current, so a write
//! invalidates only the answers it touched, on every node. An answer filled while a write was
//! committing can never be served. When the feed empties everything (its floor moves), the first
//! fill after that starts a new map, so memory follows what was asked since. Capacity bounds
//! memory whatever keys an attacker sends: when full, the map is replaced (a refill costs one
//! query per key, and a full map under attack would be useless anyway). A replaced map is freed
//! after the lock is released, so readers never wait on that.
//!
//! [`cached`] is the one way services read through such a cache, with a [`Reach`] that says
//! whether a miss may go to the database (in `web::block`) or must give up (on the HTTP worker).

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use super::ServiceError;
use crate::store::{ChangeFeed, ChangeTag, Stamp, Store, StoreError};

/// `S` hashes the keys: the default (SipHash with a random key) for keys a client chooses, where
/// a predictable hash would let it make keys collide; [`ByDigestPrefix`] for keyed digests.
#[derive(Debug)]
pub struct StampedCache<K, V, S = RandomState> {
    entries: RwLock<Entries<K, V, S>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// The entries filled since the feed's floor was last seen to move.
#[derive(Debug)]
struct Entries<K, V, S> {
    floor: u64,
    map: HashMap<K, (Stamp, V), S>,
}

impl<K: Hash + Eq, V: Clone, S: BuildHasher + Default> StampedCache<K, V, S> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: RwLock::new(Entries {
                floor: 0,
                map: HashMap::default(),
            }),
            capacity: capacity.max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The value cached for `key`, if nothing it depends on has changed since it was read.
    pub fn get<Q>(&self, key: &Q, feed: &ChangeFeed) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let found = entries
            .map
            .get(key)
            .filter(|(stamp, _)| feed.is_current(stamp))
            .map(|(_, value)| value.clone());
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Counts a miss that led to a database read. Not counted in `get`, so a memory-only attempt
    /// followed by a database read is one miss, not two.
    pub fn note_miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Stores `value` under `stamp`. A value already out of date (a write committed while it was
    /// read) could never be served: dropped.
    pub fn put(&self, key: K, stamp: Stamp, value: V, feed: &ChangeFeed) {
        if !feed.is_current(&stamp) {
            return;
        }
        let floor = feed.floor();
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        let mut replaced = None;
        if floor > entries.floor
            || (entries.map.len() >= self.capacity && !entries.map.contains_key(&key))
        {
            replaced = Some(std::mem::take(&mut entries.map));
            entries.floor = entries.floor.max(floor);
        }
        entries.map.insert(key, (stamp, value));
        drop(entries);
        drop(replaced);
    }

    /// (hits, misses) since start, for metrics.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

/// Hashes a key that is itself a keyed digest (an HMAC under the server's secret, such as
/// `crypto::Keys::token_digest`) by its first eight bytes. SipHash protects a map from keys chosen
/// to collide; a client cannot choose the digest of what it sends without the server's secret, and
/// the digest's bytes are already uniform. SipHash over a 32-byte digest was about 270
/// instructions of every introspection (docs/performance.md). Only for keys that hash as one byte
/// slice (`Vec<u8>`, `[u8]`): other keys would hash by whatever their first writes happen to be.
pub type ByDigestPrefix = BuildHasherDefault<DigestPrefixHasher>;

/// The hasher of [`ByDigestPrefix`]: each write's first eight bytes, XORed together. A byte slice
/// is hashed as two writes, its length (the same for every digest) and its bytes.
#[derive(Debug, Default)]
pub struct DigestPrefixHasher(u64);

impl Hasher for DigestPrefixHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut prefix = [0u8; 8];
        let taken = bytes.len().min(prefix.len());
        prefix[..taken].copy_from_slice(&bytes[..taken]);
        self.0 ^= u64::from_le_bytes(prefix);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Whether a lookup that misses its cache may go to the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// On the HTTP worker: a miss gives up (`None`) and the caller retries in `web::block`.
    MemoryOnly,
    Database,
}

/// The moment answers are read at, for stamping what is filled from here on.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    feed: &'a ChangeFeed,
    epoch: u64,
}

/// Observes the change feed, once per request and before any query: every change committed
/// before is applied to the caches from here on. `None` when the caches are off (then there is
/// nothing to check, and on SQLite no `PRAGMA` to pay for) or may not answer (the PostgreSQL
/// listener is not connected or this node's cache lease has run out): then every answer is a load.
pub fn observe_changes(store: &Store, caches_on: bool) -> Result<Option<Observed<'_>>, StoreError> {
    if !caches_on {
        return Ok(None);
    }
    let feed = store.changes();
    Ok(feed.observe()?.map(|epoch| Observed { feed, epoch }))
}

/// Answers from `cache` when a current entry exists, else loads and fills it, stamped with what
/// `depends_on` says the answer depends on; with [`Reach::MemoryOnly`] a load is not allowed and
/// the answer is `None`. Without a cache or an observation every answer is a load.
pub fn cached<K, Q, V, S>(
    cache: Option<&StampedCache<K, V, S>>,
    observed: Option<Observed<'_>>,
    reach: Reach,
    key: &Q,
    depends_on: impl FnOnce(&V) -> Vec<ChangeTag>,
    load: impl FnOnce() -> Result<V, StoreError>,
) -> Result<Option<V>, ServiceError>
where
    K: Borrow<Q> + Hash + Eq,
    Q: ToOwned<Owned = K> + Hash + Eq + ?Sized,
    V: Clone,
    S: BuildHasher + Default,
{
    let hit = match (cache, observed) {
        (Some(cache), Some(observed)) => cache.get(key, observed.feed),
        _ => None,
    };
    if let Some(value) = hit {
        return Ok(Some(value));
    }
    if reach == Reach::MemoryOnly {
        return Ok(None);
    }
    let value = load()?;
    if let (Some(cache), Some(observed)) = (cache, observed) {
        cache.note_miss();
        let stamp = observed.feed.stamp(observed.epoch, &depends_on(&value));
        cache.put(key.to_owned(), stamp, value.clone(), observed.feed);
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry is served until something it depends on changes, and not after; entries that
    /// depend on other things stay.
    #[test]
    fn entries_serve_until_what_they_depend_on_changes() {
        let feed = ChangeFeed::detached();
        let cache = StampedCache::<_, _>::new(10);
        let epoch = feed.observe().unwrap().unwrap();
        cache.put("a", feed.stamp(epoch, &[ChangeTag::site(1)]), 10, &feed);
        cache.put("b", feed.stamp(epoch, &[ChangeTag::site(2)]), 20, &feed);
        assert_eq!(cache.get(&"a", &feed), Some(10));
        feed.apply_for_tests(&[ChangeTag::site(1)]);
        assert_eq!(cache.get(&"a", &feed), None);
        assert_eq!(cache.get(&"b", &feed), Some(20));
        assert_eq!(cache.get(&"c", &feed), None);
        cache.note_miss();
        assert_eq!(cache.counts(), (2, 1));
    }

    #[test]
    fn the_map_never_grows_past_its_capacity() {
        let feed = ChangeFeed::detached();
        let cache = StampedCache::<_, _>::new(3);
        let epoch = feed.observe().unwrap().unwrap();
        for key in 0..100 {
            cache.put(key, feed.stamp(epoch, &[]), key, &feed);
            assert!(cache.entries.read().unwrap().map.len() <= 3);
        }
        assert_eq!(cache.get(&99, &feed), Some(99));
    }

    /// A fill read before a change it depends on is dropped (it could never be served); a change
    /// to everything empties the map at the next fill, so memory follows what was asked since.
    #[test]
    fn stale_fills_are_dropped_and_everything_empties_the_map() {
        let feed = ChangeFeed::detached();
        let cache = StampedCache::<_, _>::new(1000);
        let before = feed.observe().unwrap().unwrap();
        for key in 0..100 {
            cache.put(key, feed.stamp(before, &[ChangeTag::site(key)]), key, &feed);
        }
        feed.apply_for_tests(&[ChangeTag::site(7)]);
        cache.put(7, feed.stamp(before, &[ChangeTag::site(7)]), 7, &feed);
        assert_eq!(cache.get(&7, &feed), None, "a fill overtaken by a change");
        assert_eq!(cache.get(&8, &feed), Some(8));

        feed.apply_for_tests(&[]);
        let after = feed.observe().unwrap().unwrap();
        cache.put(500, feed.stamp(after, &[]), 500, &feed);
        assert_eq!(cache.entries.read().unwrap().map.len(), 1);
        assert_eq!(cache.get(&500, &feed), Some(500));
    }

    /// Digests that share their first eight bytes share a hash and are still told apart; a
    /// lookup by slice finds what was stored as a `Vec` (both hash the length, then the bytes).
    #[test]
    fn digest_keys_hash_by_prefix_and_compare_whole() {
        let feed = ChangeFeed::detached();
        let epoch = feed.observe().unwrap().unwrap();
        let cache = StampedCache::<Vec<u8>, u8, ByDigestPrefix>::new(10);
        let one = [[7u8; 8], [1; 8], [1; 8], [1; 8]].concat();
        let other = [[7u8; 8], [2; 8], [2; 8], [2; 8]].concat();
        let hash = |key: &[u8]| ByDigestPrefix::default().hash_one(key);
        assert_eq!(hash(&one), hash(&other));
        assert_ne!(
            hash(&one),
            hash(&[[8u8; 8], [1; 8], [1; 8], [1; 8]].concat())
        );
        cache.put(one.clone(), feed.stamp(epoch, &[]), 1, &feed);
        cache.put(other.clone(), feed.stamp(epoch, &[]), 2, &feed);
        assert_eq!(cache.get(one.as_slice(), &feed), Some(1));
        assert_eq!(cache.get(other.as_slice(), &feed), Some(2));
        assert_eq!(cache.get(&[0u8; 32][..], &feed), None);
    }
}
