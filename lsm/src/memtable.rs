//! The memtable: the tree's in-memory, multi-version write buffer.
//!
//! Owns every version written since the last flush, sorted by the internal key order
//! ([`compare_internal`](crate::compare_internal): user key ascending, LSN descending) in a
//! lock-free skip list (`crossbeam-skiplist`), so readers never block the writer nor each
//! other, and memory is reclaimed by crossbeam-epoch once no reader can reach it.
//!
//! Invariants:
//! - One writer at a time (applies serialize on a writer lock readers never take); LSNs
//!   strictly increase across applies, and one apply stamps all its writes with its LSN.
//! - Each (user key, LSN) appears at most once: a batch keeps only its last write per key.
//! - Versions are never overwritten or removed, so a read view at any LSN stays answerable.
//! - [`Memtable::max_lsn`] is published only after every write of its batch is inserted, so a
//!   reader whose view is at most the published LSN never sees a torn batch.
//! - A tombstone is stored as a [`ValueKind::Delete`] key with an empty value.

use std::collections::HashSet;
use std::ops::{Bound, RangeBounds};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_skiplist::SkipMap;
use crossbeam_skiplist::map::Entry;

use crate::internal_key::{InternalKey, LSN_MAX, ValueKind};
use crate::memtable_iter::{MemtableRange, MemtableRangeRev};

/// Estimated bytes a version costs beyond its key and value: the skip-list node (tower of
/// pointers, reference count), the two `Vec` headers and allocator slack.
const ENTRY_OVERHEAD_BYTES: usize = 96;
/// Bytes of the internal key's trailer (LSN and kind), counted with the key.
const TRAILER_BYTES: usize = 8;

thread_local! {
    static SEEK_KEY: std::cell::RefCell<InternalKey> =
        std::cell::RefCell::new(InternalKey::seek_key(b"", 0));
}

/// The skip list's bounds over internal keys.
pub(crate) type InternalBounds = (Bound<InternalKey>, Bound<InternalKey>);

/// A concurrent, multi-version, sorted in-memory table.
pub struct Memtable {
    map: SkipMap<InternalKey, Vec<u8>>,
    /// The last applied LSN + 1 (0: none yet), held while applying: the writer lock.
    writer: Mutex<u64>,
    /// The published `max_lsn + 1` (0: none yet), stored after a batch is fully inserted.
    published: AtomicU64,
    approximate_bytes: AtomicUsize,
}

/// One version in a memtable: a user key, the LSN that wrote it, and its value or tombstone.
///
/// Holds a reference on the skip-list node, so its bytes stay valid while it lives.
pub struct MemtableEntry<'a> {
    entry: Entry<'a, InternalKey, Vec<u8>>,
}

impl Memtable {
    /// An empty memtable.
    pub fn new() -> Self {
        Self {
            map: SkipMap::new(),
            writer: Mutex::new(0),
            published: AtomicU64::new(0),
            approximate_bytes: AtomicUsize::new(0),
        }
    }

    /// Writes `batch` at `lsn`: each `(user key, Some(value))` is a put, each `(user key,
    /// None)` a delete. Within the batch the last write to a key wins.
    ///
    /// # Panics
    /// If `lsn` is not above every LSN applied before, or exceeds [`LSN_MAX`]: the caller (the
    /// Db) stamps batches with increasing LSNs, so either is a bug.
    pub fn apply<K: AsRef<[u8]>, V: AsRef<[u8]>>(&self, lsn: u64, batch: &[(K, Option<V>)]) {
        assert!(lsn <= LSN_MAX, "LSN {lsn} exceeds the maximum {LSN_MAX}");
        let mut last = self
            .writer
            .lock()
            .expect("a panicking apply already broke the memtable");
        if let Some(prev) = last.checked_sub(1) {
            assert!(lsn > prev, "lsn regressed: {lsn} <= {prev}");
        }
        // A batch of one write (every write of an LSM loaded key by key) has nothing to
        // deduplicate: it skips the set and its allocation.
        let dedup = batch.len() > 1;
        let mut seen: HashSet<&[u8]> = if dedup {
            HashSet::with_capacity(batch.len())
        } else {
            HashSet::new()
        };
        let mut bytes = 0;
        for (key, value) in batch.iter().rev() {
            let key = key.as_ref();
            if dedup && !seen.insert(key) {
                continue;
            }
            let (kind, value) = match value {
                Some(v) => (ValueKind::Put, v.as_ref().to_vec()),
                None => (ValueKind::Delete, Vec::new()),
            };
            bytes += entry_bytes(key.len(), value.len());
            self.map.insert(InternalKey::new(key, lsn, kind), value);
        }
        self.approximate_bytes.fetch_add(bytes, Ordering::Relaxed);
        *last = lsn + 1;
        self.published.store(lsn + 1, Ordering::Release);
    }

    /// The newest version of `user_key` with LSN at or below `view_lsn`, tombstones included
    /// (a delete shadows older data below the memtable); `None` if there is none here.
    pub fn get(&self, user_key: &[u8], view_lsn: u64) -> Option<MemtableEntry<'_>> {
        // The seek key's buffer is reused by every get on the thread: no allocation.
        let entry = SEEK_KEY.with_borrow_mut(|seek| {
            seek.set_seek_key(user_key, view_lsn);
            self.map.lower_bound(Bound::Included(&*seek))
        })?;
        (entry.key().user_key() == user_key).then_some(MemtableEntry { entry })
    }

    /// The newest version at or below `view_lsn` of each user key within `bounds`, in
    /// ascending user-key order, tombstones included.
    pub fn range<R: RangeBounds<[u8]>>(&self, bounds: R, view_lsn: u64) -> MemtableRange<'_> {
        MemtableRange::new(self.map.range(internal_bounds(&bounds)), view_lsn)
    }

    /// As [`Memtable::range`], in descending user-key order.
    pub fn range_rev<R: RangeBounds<[u8]>>(
        &self,
        bounds: R,
        view_lsn: u64,
    ) -> MemtableRangeRev<'_> {
        MemtableRangeRev::new(self.map.range(internal_bounds(&bounds)), view_lsn)
    }

    /// The skip list itself, for cursors and flushes that walk every version.
    pub(crate) fn skip_map(&self) -> &SkipMap<InternalKey, Vec<u8>> {
        &self.map
    }

    /// An estimate of the memory the memtable holds: keys, values and per-version overhead.
    /// The flush trigger compares it with the budget.
    pub fn approximate_bytes(&self) -> usize {
        self.approximate_bytes.load(Ordering::Relaxed)
    }

    /// The number of versions held (every LSN of every key).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no version is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The LSN of the last fully applied batch, if any: a read view at or below it sees whole
    /// batches only.
    pub fn max_lsn(&self) -> Option<u64> {
        self.published.load(Ordering::Acquire).checked_sub(1)
    }

    /// Checks the memtable's invariants: versions in strict internal-key order, each at or
    /// below the published LSN, tombstones empty, and the byte estimate matching the contents.
    /// O(n): for tests and the simulator. Call while no apply is in progress.
    ///
    /// # Panics
    /// If an invariant is broken.
    pub fn check_invariants(&self) {
        let max = self.max_lsn();
        let mut previous: Option<Entry<'_, InternalKey, Vec<u8>>> = None;
        let mut count = 0;
        let mut bytes = 0;
        for entry in &self.map {
            let key = entry.key();
            let lsn = key.lsn();
            let max = max.expect("a memtable with versions has a published LSN");
            assert!(lsn <= max, "version at lsn {lsn} above max_lsn {max}");
            if key.kind() == ValueKind::Delete {
                assert!(
                    entry.value().is_empty(),
                    "tombstone at lsn {lsn} has a value"
                );
            }
            if let Some(prev) = &previous {
                assert!(
                    prev.key() < key,
                    "memtable out of order: {:?} then {key:?}",
                    prev.key()
                );
            }
            count += 1;
            bytes += entry_bytes(key.user_key().len(), entry.value().len());
            previous = Some(entry);
        }
        assert_eq!(count, self.len(), "len disagrees with the versions held");
        assert_eq!(bytes, self.approximate_bytes(), "byte estimate drifted");
    }
}

impl Default for Memtable {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Memtable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memtable")
            .field("len", &self.len())
            .field("max_lsn", &self.max_lsn())
            .field("approximate_bytes", &self.approximate_bytes())
            .finish_non_exhaustive()
    }
}

impl<'a> MemtableEntry<'a> {
    pub(crate) fn new(entry: Entry<'a, InternalKey, Vec<u8>>) -> Self {
        Self { entry }
    }

    /// The internal key (user key, LSN, kind).
    pub fn internal_key(&self) -> &InternalKey {
        self.entry.key()
    }

    /// The user key.
    pub fn user_key(&self) -> &[u8] {
        self.entry.key().user_key()
    }

    /// The LSN that wrote this version.
    pub fn lsn(&self) -> u64 {
        self.entry.key().lsn()
    }

    /// Whether this version is a put or a delete.
    pub fn kind(&self) -> ValueKind {
        self.entry.key().kind()
    }

    /// The value of a put; `None` for a tombstone.
    pub fn value(&self) -> Option<&[u8]> {
        match self.kind() {
            ValueKind::Put => Some(self.entry.value()),
            ValueKind::Delete => None,
        }
    }
}

impl std::fmt::Debug for MemtableEntry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemtableEntry")
            .field("user_key", &self.user_key())
            .field("lsn", &self.lsn())
            .field("value", &self.value())
            .finish()
    }
}

fn entry_bytes(user_key_len: usize, value_len: usize) -> usize {
    user_key_len + TRAILER_BYTES + value_len + ENTRY_OVERHEAD_BYTES
}

/// Maps user-key bounds onto internal-key bounds that take in every version of each user key
/// within them: the newest possible version of a key sorts first, the oldest last.
fn internal_bounds<R: RangeBounds<[u8]>>(bounds: &R) -> InternalBounds {
    let first = |k: &[u8]| InternalKey::new(k, LSN_MAX, ValueKind::Put);
    let last = |k: &[u8]| InternalKey::new(k, 0, ValueKind::Delete);
    let lower = match bounds.start_bound() {
        Bound::Included(k) => Bound::Included(first(k)),
        Bound::Excluded(k) => Bound::Excluded(last(k)),
        Bound::Unbounded => Bound::Unbounded,
    };
    let upper = match bounds.end_bound() {
        Bound::Included(k) => Bound::Included(last(k)),
        Bound::Excluded(k) => Bound::Excluded(first(k)),
        Bound::Unbounded => Bound::Unbounded,
    };
    (lower, upper)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(m: &Memtable, lsn: u64, key: &[u8], value: &[u8]) {
        m.apply(lsn, &[(key, Some(value))]);
    }

    #[test]
    fn memtable_get_sees_the_newest_version_at_the_view() {
        let m = Memtable::new();
        assert_eq!(m.max_lsn(), None);
        assert!(m.get(b"a", LSN_MAX).is_none());
        put(&m, 3, b"a", b"one");
        m.apply(5, &[(b"a", None::<&[u8]>)]);
        put(&m, 7, b"a", b"two");
        m.check_invariants();
        assert!(m.get(b"a", 2).is_none());
        let got = |view| {
            m.get(b"a", view)
                .map(|e| (e.value().map(<[u8]>::to_vec), e.lsn()))
        };
        assert_eq!(got(3), Some((Some(b"one".to_vec()), 3)));
        assert_eq!(got(4), Some((Some(b"one".to_vec()), 3)));
        assert_eq!(got(5), Some((None, 5)));
        assert_eq!(got(6), Some((None, 5)));
        assert_eq!(got(LSN_MAX), Some((Some(b"two".to_vec()), 7)));
        assert!(
            m.get(b"", LSN_MAX).is_none(),
            "the empty key is a distinct key"
        );
        assert!(m.get(b"a\0", LSN_MAX).is_none());
        assert_eq!(m.max_lsn(), Some(7));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn memtable_batch_keeps_the_last_write_per_key() {
        let m = Memtable::new();
        let batch: [(&[u8], Option<&[u8]>); 4] = [
            (b"k", Some(b"1")),
            (b"j", None),
            (b"k", None),
            (b"k", Some(b"")),
        ];
        m.apply(0, &batch);
        m.check_invariants();
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(b"k", 0).expect("written").value(), Some(&b""[..]));
        assert_eq!(m.get(b"j", 0).expect("written").value(), None);
        assert_eq!(
            m.approximate_bytes(),
            2 * (1 + TRAILER_BYTES + ENTRY_OVERHEAD_BYTES)
        );
    }

    #[test]
    fn memtable_empty_batch_still_advances_the_lsn() {
        let m = Memtable::new();
        m.apply::<&[u8], &[u8]>(4, &[]);
        assert_eq!(m.max_lsn(), Some(4));
        assert!(m.is_empty());
        m.check_invariants();
    }

    #[test]
    #[should_panic(expected = "lsn regressed")]
    fn memtable_repeated_lsn_panics() {
        let m = Memtable::new();
        put(&m, 2, b"a", b"");
        put(&m, 2, b"b", b"");
    }
}
