//! A bounded map whose entries are valid only under the generation they were filled in.
//!
//! Exactness comes from the store's `ChangeFeed`: callers read the generation before they query the
//! database and store the answer under it; any later write moves the generation on and every older
//! entry stops being served. Generations only grow, so an older entry can never be served again:
//! the map holds one generation's entries, and the first fill under a newer one replaces it with an
//! empty one, so memory follows the keys asked about since the last write rather than every key
//! ever asked about. Capacity bounds memory whatever keys an attacker sends: when full, the map is
//! replaced too (a refill costs one query per key, and a full map under attack would be useless
//! anyway). A replaced map is freed after the lock is released, so readers never wait on that.
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
use crate::store::{Store, StoreError};

/// `S` hashes the keys: the default (SipHash with a random key) for keys a client chooses, where
/// a predictable hash would let it make keys collide; [`ByDigestPrefix`] for keyed digests.
#[derive(Debug)]
pub struct GenerationCache<K, V, S = RandomState> {
    entries: RwLock<Entries<K, V, S>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// The entries of one generation.
#[derive(Debug)]
struct Entries<K, V, S> {
    generation: u64,
    map: HashMap<K, V, S>,
}

impl<K: Hash + Eq, V: Clone, S: BuildHasher + Default> GenerationCache<K, V, S> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: RwLock::new(Entries {
                generation: 0,
                map: HashMap::default(),
            }),
            capacity: capacity.max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The value cached for `key` if it was filled under `generation`.
    pub fn get<Q>(&self, key: &Q, generation: u64) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let found = (entries.generation == generation)
            .then(|| entries.map.get(key).cloned())
            .flatten();
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

    /// Stores `value` as filled under `generation`. A fill under an older generation than the
    /// map's (a slow query overtaken by a write and a newer fill) could never be served: dropped.
    pub fn put(&self, key: K, generation: u64, value: V) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if generation < entries.generation {
            return;
        }
        let mut replaced = None;
        if generation > entries.generation
            || (entries.map.len() >= self.capacity && !entries.map.contains_key(&key))
        {
            replaced = Some(std::mem::take(&mut entries.map));
            entries.generation = generation;
        }
        entries.map.insert(key, value);
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

/// The generation to read and fill caches under: `None` when the caches are off (then there is
/// nothing to check, and on SQLite no `PRAGMA` to pay for) or the change feed is not live (then
/// a missed write could go unnoticed, so no cache may answer). With [`Reach::MemoryOnly`] also
/// `None` while the check would have to wait (`ChangeFeed::generation_without_waiting`): nothing
/// is answered from memory then, and the request takes the database path, which waits. Read it
/// once per request, before any query: answers cached under an older generation are stale.
pub fn current_generation(
    store: &Store,
    caches_on: bool,
    reach: Reach,
) -> Result<Option<u64>, StoreError> {
    let changes = store.changes();
    if !caches_on || !changes.is_live() {
        return Ok(None);
    }
    match reach {
        Reach::MemoryOnly => changes.generation_without_waiting(),
        Reach::Database => changes.generation().map(Some),
    }
}

/// Answers from `cache` when an entry of this `generation` exists, else loads and fills it; with
/// [`Reach::MemoryOnly`] a load is not allowed and the answer is `None`. Without a cache or a live
/// change feed (`generation` is `None`) every answer is a load.
pub fn cached<K, Q, V, S>(
    cache: Option<&GenerationCache<K, V, S>>,
    generation: Option<u64>,
    reach: Reach,
    key: &Q,
    load: impl FnOnce() -> Result<V, StoreError>,
) -> Result<Option<V>, ServiceError>
where
    K: Borrow<Q> + Hash + Eq,
    Q: ToOwned<Owned = K> + Hash + Eq + ?Sized,
    V: Clone,
    S: BuildHasher + Default,
{
    let hit = match (cache, generation) {
        (Some(cache), Some(generation)) => cache.get(key, generation),
        _ => None,
    };
    if let Some(value) = hit {
        return Ok(Some(value));
    }
    if reach == Reach::MemoryOnly {
        return Ok(None);
    }
    let value = load()?;
    if let (Some(cache), Some(generation)) = (cache, generation) {
        cache.note_miss();
        cache.put(key.to_owned(), generation, value.clone());
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_serve_only_their_own_generation() {
        let cache = GenerationCache::<_, _>::new(10);
        cache.put("a", 1, 10);
        assert_eq!(cache.get(&"a", 1), Some(10));
        assert_eq!(cache.get(&"a", 2), None);
        assert_eq!(cache.get(&"b", 1), None);
        cache.note_miss();
        assert_eq!(cache.counts(), (1, 1));
    }

    #[test]
    fn the_map_never_grows_past_its_capacity() {
        let cache = GenerationCache::<_, _>::new(3);
        for key in 0..100 {
            cache.put(key, 0, key);
            assert!(cache.entries.read().unwrap().map.len() <= 3);
        }
        assert_eq!(cache.get(&99, 0), Some(99));
    }

    /// Entries that can never be served again do not stay: memory follows what was asked since
    /// the last write, not everything ever asked (the soak's slow rise, docs/performance.md).
    #[test]
    fn a_newer_generation_empties_the_map_and_older_fills_are_dropped() {
        let cache = GenerationCache::<_, _>::new(1000);
        for key in 0..100 {
            cache.put(key, 1, key);
        }
        cache.put(500, 2, 500);
        assert_eq!(cache.entries.read().unwrap().map.len(), 1);
        assert_eq!(cache.get(&500, 2), Some(500));
        assert_eq!(cache.get(&7, 1), None);

        cache.put(7, 1, 7);
        assert_eq!(cache.get(&7, 1), None, "a fill overtaken by a newer one");
        assert_eq!(cache.get(&7, 2), None);
        assert_eq!(cache.get(&500, 2), Some(500), "the newer entries stay");
    }

    /// Digests that share their first eight bytes share a hash and are still told apart; a
    /// lookup by slice finds what was stored as a `Vec` (both hash the length, then the bytes).
    #[test]
    fn digest_keys_hash_by_prefix_and_compare_whole() {
        let cache = GenerationCache::<Vec<u8>, u8, ByDigestPrefix>::new(10);
        let one = [[7u8; 8], [1; 8], [1; 8], [1; 8]].concat();
        let other = [[7u8; 8], [2; 8], [2; 8], [2; 8]].concat();
        let hash = |key: &[u8]| ByDigestPrefix::default().hash_one(key);
        assert_eq!(hash(&one), hash(&other));
        assert_ne!(
            hash(&one),
            hash(&[[8u8; 8], [1; 8], [1; 8], [1; 8]].concat())
        );
        cache.put(one.clone(), 1, 1);
        cache.put(other.clone(), 1, 2);
        assert_eq!(cache.get(one.as_slice(), 1), Some(1));
        assert_eq!(cache.get(other.as_slice(), 1), Some(2));
        assert_eq!(cache.get(&[0u8; 32][..], 1), None);
    }
}
