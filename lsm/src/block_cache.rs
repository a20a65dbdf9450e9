//! The block cache: data blocks of SSTs held in memory under one byte budget, shared by every
//! SST reader of every tree that is handed the same `Arc<BlockCache>` (DESIGN.md, "Engines":
//! one Db-wide block cache).
//!
//! Keys are `(file number, block offset)`. File numbers come from
//! [`BlockCache::new_file_number`], one per opened SST reader, so that readers of different
//! trees (each with its own file names) never collide. Values are *block images*: the block
//! in its uncompressed form, laid out as an uncompressed block is stored (body, compression
//! tag `0`, crc32 of the body), after the stored block's checksum was verified and, for a
//! compressed block, after it was decompressed (docs/format/sstable.md, "Block images and the block cache").
//!
//! Layout: `2^k` shards (at most 16, fewer for small budgets so that a shard holds at least
//! [`SHARD_CAPACITY_MIN`] bytes), picked by a hash of the key; each shard is a
//! `parking_lot::Mutex` around an LRU list in a slab (O(1) lookup, insert, touch and evict), so
//! that readers on different cores rarely meet on one lock. Each entry is charged its bytes
//! plus [`ENTRY_CHARGE_OVERHEAD`]; a shard evicts from its cold end until its usage is within
//! its share of the budget, and an entry larger than a shard's share is not cached at all.
//!
//! Invariants (checked by [`BlockCache::check_invariants`]): in every shard, usage equals the
//! sum of the charges of its entries and never exceeds the shard's capacity; the shard
//! capacities add up to the cache's; the LRU list and the map hold the same entries. Lock
//! order: at most one shard lock is held at a time.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Bytes charged for each cached block on top of its length: the map slot, the list node and
/// the `Arc` header, rounded up.
pub const ENTRY_CHARGE_OVERHEAD: usize = 96;
/// The most shards a cache is split into.
pub const SHARD_COUNT_MAX: usize = 16;
/// A cache is split into fewer shards when each would otherwise hold less than this.
pub const SHARD_CAPACITY_MIN: usize = 256 * 1024;

const _: () = assert!(SHARD_COUNT_MAX.is_power_of_two());

/// A block's key: the reader's cache file number and the block's file offset.
type CacheKey = (u64, u64);

/// The end of an LRU list.
const NIL: usize = usize::MAX;

/// A sharded LRU cache of block images with a byte budget. Thread-safe; share it as
/// `Arc<BlockCache>`.
#[derive(Debug)]
pub struct BlockCache {
    shards: Box<[Mutex<Shard>]>,
    /// `shards.len() - 1`; the count is a power of two.
    shard_mask: u64,
    capacity_bytes: usize,
    next_file_number: AtomicU64,
}

impl BlockCache {
    /// A cache that holds at most `capacity_bytes` of charged bytes (block lengths plus
    /// [`ENTRY_CHARGE_OVERHEAD`] each). A capacity of 0 caches nothing.
    pub fn new(capacity_bytes: usize) -> Arc<Self> {
        let count = shard_count(capacity_bytes);
        let base = capacity_bytes / count;
        let extra = capacity_bytes % count;
        let shards: Box<[Mutex<Shard>]> = (0..count)
            .map(|i| Mutex::new(Shard::new(base + usize::from(i < extra))))
            .collect();
        Arc::new(Self {
            shard_mask: count as u64 - 1,
            shards,
            capacity_bytes,
            next_file_number: AtomicU64::new(1),
        })
    }

    /// A file number no other caller of this cache has been given: the key space of one SST
    /// reader. Starts at 1.
    pub fn new_file_number(&self) -> u64 {
        self.next_file_number.fetch_add(1, Ordering::Relaxed)
    }

    /// The block image cached under `(file_number, offset)`, marking it recently used.
    pub fn get(&self, file_number: u64, offset: u64) -> Option<Arc<[u8]>> {
        self.shard(file_number, offset)
            .lock()
            .get((file_number, offset))
    }

    /// Caches `image` under `(file_number, offset)`, replacing any image cached there, and
    /// evicts the least recently used images of its shard until the shard is within budget.
    /// Returns whether the image was cached: an image whose charge exceeds its shard's
    /// capacity is not (and any older image under the key is dropped).
    pub fn insert(&self, file_number: u64, offset: u64, image: Arc<[u8]>) -> bool {
        self.shard(file_number, offset)
            .lock()
            .insert((file_number, offset), image)
    }

    /// Drops every image of `file_number` (for a deleted file; optional, since unused images
    /// age out). Takes time proportional to the number of cached images.
    pub fn erase_file(&self, file_number: u64) {
        for shard in &*self.shards {
            shard.lock().erase_file(file_number);
        }
    }

    /// Lookups that found their image.
    pub fn hits(&self) -> u64 {
        self.sum(|s| s.hits)
    }

    /// Lookups that found nothing.
    pub fn misses(&self) -> u64 {
        self.sum(|s| s.misses)
    }

    /// Images cached (a replacement counts; a refused oversized image does not).
    pub fn inserts(&self) -> u64 {
        self.sum(|s| s.inserts)
    }

    /// Images dropped to make room for others.
    pub fn evictions(&self) -> u64 {
        self.sum(|s| s.evictions)
    }

    /// Charged bytes held now: at most [`BlockCache::capacity_bytes`].
    pub fn usage_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().usage).sum()
    }

    /// The budget given at construction.
    pub fn capacity_bytes(&self) -> usize {
        self.capacity_bytes
    }

    /// Images held now.
    pub fn entry_count(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }

    /// The number of shards (a power of two, at most [`SHARD_COUNT_MAX`]).
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Checks every shard's invariants (module header). O(entries): for tests.
    ///
    /// # Panics
    /// If one does not hold.
    pub fn check_invariants(&self) {
        let mut capacity = 0;
        for shard in &*self.shards {
            let shard = shard.lock();
            shard.check_invariants();
            capacity += shard.capacity;
        }
        assert_eq!(capacity, self.capacity_bytes, "shard capacities add up");
    }

    fn shard(&self, file_number: u64, offset: u64) -> &Mutex<Shard> {
        // A different mix from the map's hasher, so that a shard's keys still spread over
        // the map's buckets.
        let h = (file_number.rotate_left(32) ^ offset).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let index = (h >> 32) & self.shard_mask;
        &self.shards[index as usize]
    }

    fn sum(&self, field: impl Fn(&Shard) -> u64) -> u64 {
        self.shards.iter().map(|s| field(&s.lock())).sum()
    }
}

/// The number of shards for a budget: the largest power of two up to [`SHARD_COUNT_MAX`]
/// that leaves each shard at least [`SHARD_CAPACITY_MIN`] bytes, and at least one.
fn shard_count(capacity_bytes: usize) -> usize {
    let mut count = SHARD_COUNT_MAX;
    while count > 1 && capacity_bytes / count < SHARD_CAPACITY_MIN {
        count /= 2;
    }
    count
}

/// One shard: an LRU list threaded through a slab of nodes, and a map from key to slot.
#[derive(Debug)]
struct Shard {
    capacity: usize,
    usage: usize,
    map: HashMap<CacheKey, usize, BuildHasherDefault<KeyHasher>>,
    nodes: Vec<Node>,
    /// Slots of `nodes` not in the list.
    free: Vec<usize>,
    /// Most recently used.
    head: usize,
    /// Least recently used: the next to evict.
    tail: usize,
    hits: u64,
    misses: u64,
    inserts: u64,
    evictions: u64,
}

#[derive(Debug)]
struct Node {
    key: CacheKey,
    /// `None` exactly when the slot is free.
    image: Option<Arc<[u8]>>,
    charge: usize,
    prev: usize,
    next: usize,
}

impl Shard {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            usage: 0,
            map: HashMap::default(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            hits: 0,
            misses: 0,
            inserts: 0,
            evictions: 0,
        }
    }

    fn get(&mut self, key: CacheKey) -> Option<Arc<[u8]>> {
        let Some(&slot) = self.map.get(&key) else {
            self.misses += 1;
            return None;
        };
        self.hits += 1;
        self.unlink(slot);
        self.push_front(slot);
        let image = self.nodes[slot].image.clone();
        assert!(image.is_some(), "a mapped slot is live");
        image
    }

    fn insert(&mut self, key: CacheKey, image: Arc<[u8]>) -> bool {
        if let Some(&slot) = self.map.get(&key) {
            self.remove(slot);
        }
        let charge = image.len().saturating_add(ENTRY_CHARGE_OVERHEAD);
        if charge > self.capacity {
            return false;
        }
        let node = Node {
            key,
            image: Some(image),
            charge,
            prev: NIL,
            next: NIL,
        };
        let slot = if let Some(slot) = self.free.pop() {
            self.nodes[slot] = node;
            slot
        } else {
            self.nodes.push(node);
            self.nodes.len() - 1
        };
        self.push_front(slot);
        self.map.insert(key, slot);
        self.usage += charge;
        self.inserts += 1;
        while self.usage > self.capacity {
            // The new image alone fits, so the list's cold end is another image.
            assert_ne!(self.tail, slot, "evicting the image just inserted");
            self.remove(self.tail);
            self.evictions += 1;
        }
        true
    }

    fn erase_file(&mut self, file_number: u64) {
        let mut slot = self.head;
        while slot != NIL {
            let next = self.nodes[slot].next;
            if self.nodes[slot].key.0 == file_number {
                self.remove(slot);
            }
            slot = next;
        }
    }

    /// Takes a live slot out of the list and the map, and frees it.
    fn remove(&mut self, slot: usize) {
        self.unlink(slot);
        let node = &mut self.nodes[slot];
        assert!(node.image.take().is_some(), "removing a free slot");
        self.usage -= node.charge;
        self.map.remove(&node.key);
        self.free.push(slot);
    }

    fn unlink(&mut self, slot: usize) {
        let (prev, next) = (self.nodes[slot].prev, self.nodes[slot].next);
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next].prev = prev;
        }
        self.nodes[slot].prev = NIL;
        self.nodes[slot].next = NIL;
    }

    fn push_front(&mut self, slot: usize) {
        self.nodes[slot].prev = NIL;
        self.nodes[slot].next = self.head;
        if self.head == NIL {
            self.tail = slot;
        } else {
            self.nodes[self.head].prev = slot;
        }
        self.head = slot;
    }

    fn check_invariants(&self) {
        assert!(
            self.usage <= self.capacity,
            "shard usage {} over capacity {}",
            self.usage,
            self.capacity
        );
        let (mut count, mut charged, mut prev) = (0, 0, NIL);
        let mut slot = self.head;
        while slot != NIL {
            let node = &self.nodes[slot];
            assert_eq!(node.prev, prev, "list links agree");
            let image = node.image.as_ref().expect("a listed slot is live");
            assert_eq!(node.charge, image.len() + ENTRY_CHARGE_OVERHEAD);
            assert_eq!(self.map.get(&node.key), Some(&slot), "map and list agree");
            count += 1;
            charged += node.charge;
            assert!(count <= self.nodes.len(), "the list has a cycle");
            prev = slot;
            slot = node.next;
        }
        assert_eq!(self.tail, prev, "tail is the list's last node");
        assert_eq!(count, self.map.len(), "list and map hold the same entries");
        assert_eq!(charged, self.usage, "usage is the sum of the charges");
        assert_eq!(
            count + self.free.len(),
            self.nodes.len(),
            "slots are live or free"
        );
    }
}

/// The map's hasher for `(u64, u64)` keys: cheap mixing (the keys are ours, not an
/// attacker's), then a splitmix64 finalizer so that every output bit depends on every input
/// bit.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(23) ^ v).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    }

    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(len: usize, fill: u8) -> Arc<[u8]> {
        std::iter::repeat_n(fill, len).collect()
    }

    /// A one-shard cache holding exactly `blocks` images of `len` bytes.
    fn one_shard(blocks: usize, len: usize) -> Arc<BlockCache> {
        let cache = BlockCache::new(blocks * (len + ENTRY_CHARGE_OVERHEAD));
        assert_eq!(cache.shard_count(), 1);
        cache
    }

    #[test]
    fn cache_hit_returns_the_inserted_bytes() {
        let cache = one_shard(4, 100);
        assert!(cache.get(1, 0).is_none());
        assert!(cache.insert(1, 0, image(100, 7)));
        assert_eq!(cache.get(1, 0).unwrap(), image(100, 7));
        assert!(cache.get(2, 0).is_none(), "another file's block");
        assert_eq!((cache.hits(), cache.misses(), cache.inserts()), (1, 2, 1));
        assert_eq!(cache.usage_bytes(), 100 + ENTRY_CHARGE_OVERHEAD);
        cache.check_invariants();
    }

    #[test]
    fn cache_full_evicts_least_recently_used() {
        let cache = one_shard(3, 10);
        for offset in 0..3 {
            assert!(cache.insert(1, offset, image(10, offset as u8)));
        }
        assert!(
            cache.get(1, 0).is_some(),
            "touch block 0: block 1 is now coldest"
        );
        assert!(cache.insert(1, 3, image(10, 3)));
        assert!(cache.get(1, 1).is_none(), "block 1 evicted");
        for offset in [0, 2, 3] {
            assert_eq!(cache.get(1, offset).unwrap(), image(10, offset as u8));
        }
        assert_eq!(cache.evictions(), 1);
        assert_eq!(cache.usage_bytes(), cache.capacity_bytes());
        cache.check_invariants();
    }

    #[test]
    fn cache_oversized_image_is_not_cached() {
        let cache = one_shard(2, 10);
        assert!(cache.insert(1, 0, image(10, 1)));
        let too_big = cache.capacity_bytes() - ENTRY_CHARGE_OVERHEAD + 1;
        assert!(!cache.insert(1, 1, image(too_big, 2)));
        assert!(cache.get(1, 1).is_none());
        assert!(
            cache.get(1, 0).is_some(),
            "nothing evicted for a refused image"
        );
        // A refused replacement drops the old image under that key.
        assert!(!cache.insert(1, 0, image(too_big, 3)));
        assert!(cache.get(1, 0).is_none());
        assert_eq!(cache.usage_bytes(), 0);
        cache.check_invariants();
    }

    #[test]
    fn cache_replacement_recharges() {
        let cache = one_shard(4, 100);
        assert!(cache.insert(1, 0, image(10, 1)));
        assert!(cache.insert(1, 0, image(100, 2)));
        assert_eq!(cache.get(1, 0).unwrap(), image(100, 2));
        assert_eq!(cache.entry_count(), 1);
        assert_eq!(cache.usage_bytes(), 100 + ENTRY_CHARGE_OVERHEAD);
        cache.check_invariants();
    }

    #[test]
    fn cache_erase_file_drops_only_that_file() {
        let cache = BlockCache::new(1 << 24);
        for offset in 0..50 {
            cache.insert(1, offset, image(5, 1));
            cache.insert(2, offset, image(5, 2));
        }
        cache.erase_file(1);
        assert_eq!(cache.entry_count(), 50);
        assert!((0..50).all(|o| cache.get(1, o).is_none() && cache.get(2, o).is_some()));
        cache.check_invariants();
    }

    #[test]
    fn cache_zero_capacity_caches_nothing() {
        let cache = BlockCache::new(0);
        assert!(!cache.insert(1, 0, image(0, 0)));
        assert_eq!(cache.entry_count(), 0);
        cache.check_invariants();
    }

    #[test]
    fn cache_shard_count_follows_the_budget() {
        assert_eq!(shard_count(0), 1);
        assert_eq!(shard_count(SHARD_CAPACITY_MIN * 2 - 1), 1);
        assert_eq!(shard_count(SHARD_CAPACITY_MIN * 2), 2);
        assert_eq!(shard_count(SHARD_CAPACITY_MIN * 16), 16);
        assert_eq!(shard_count(usize::MAX), 16);
        let cache = BlockCache::new(SHARD_CAPACITY_MIN * 16 + 5);
        assert_eq!(cache.shard_count(), 16);
        cache.check_invariants();
    }

    #[test]
    fn cache_file_numbers_are_unique() {
        let cache = BlockCache::new(0);
        let a = cache.new_file_number();
        let b = cache.new_file_number();
        assert!(a >= 1 && b > a);
    }
}
