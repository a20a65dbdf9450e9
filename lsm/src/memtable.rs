//! The memtable: the tree's in-memory, multi-version write buffer.
//!
//! Owns every version written since the last flush, sorted by the internal key order
//! ([`compare_internal`](crate::compare_internal): user key ascending, LSN descending) in an
//! arena-backed skip list ([`crate::skiplist`]): one writer at a time, lock-free readers that
//! never block the writer nor each other. Each version is one arena node holding its key and
//! value; nothing is freed until the memtable drops, which is what lets readers go without
//! reference counts. Read views, cursors and flushes reach a memtable through an `Arc` (the
//! tree state holds it), and [`MemtableEntry`] and the iterators borrow it, so no node is
//! freed under a reader.
//!
//! Invariants:
//! - One writer at a time (applies serialize on a writer lock readers never take); LSNs
//!   strictly increase across applies, and one apply stamps all its writes with its LSN.
//! - Each (user key, LSN) appears at most once: a batch keeps only its last write per key.
//! - Versions are never overwritten or removed, so a read view at any LSN stays answerable.
//! - [`Memtable::max_lsn`] is published only after every write of its batch is inserted, so a
//!   reader whose view is at most the published LSN never sees a torn batch.
//! - A tombstone is stored as a [`ValueKind::Delete`] key with an empty value.
//! - [`Memtable::approximate_bytes`] is the arena bytes its versions take, exactly.

use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::internal_key::{LSN_MAX, ValueKind, compare_internal, compare_user_keys};
use crate::memtable_iter::{MemtableRange, MemtableRangeRev};
use crate::skiplist::{self, Probe, SkipList};

/// A concurrent, multi-version, sorted in-memory table.
pub struct Memtable {
    /// The versions; its writer lock serializes applies.
    list: SkipList,
    /// The published `max_lsn + 1` (0: none yet), stored after a batch is fully inserted.
    /// Only the holder of the writer lock stores it.
    published: AtomicU64,
}

/// One version in a memtable: a user key, the LSN that wrote it, and its value or tombstone.
///
/// Borrows the memtable, whose versions are never freed while it lives.
#[derive(Clone, Copy)]
pub struct MemtableEntry<'a> {
    entry: skiplist::Entry<'a>,
}

impl Memtable {
    /// An empty memtable, sized for a budget of 4 MiB.
    pub fn new() -> Self {
        Self::with_budget(4 << 20)
    }

    /// An empty memtable sized for about `budget` bytes of versions (the tree's
    /// `memtable_size_max`): its hash index of user keys gets one bucket (8 bytes, beside the
    /// versions' arena) per 128 bytes of budget. It may hold more; reads of a memtable far
    /// past its budget walk longer chains.
    pub fn with_budget(budget: usize) -> Self {
        Self {
            list: SkipList::with_budget(budget),
            published: AtomicU64::new(0),
        }
    }

    /// Writes `batch` at `lsn`: each `(user key, Some(value))` is a put, each `(user key,
    /// None)` a delete. Within the batch the last write to a key wins.
    ///
    /// # Panics
    /// If `lsn` is not above every LSN applied before, or exceeds [`LSN_MAX`]: the caller (the
    /// Db) stamps batches with increasing LSNs, so either is a bug. Also if a key or value is
    /// too large for the memtable's encoding (16 MiB keys, 4 GiB values; the tree's limits
    /// are far lower).
    pub fn apply<K: AsRef<[u8]>, V: AsRef<[u8]>>(&self, lsn: u64, batch: &[(K, Option<V>)]) {
        assert!(lsn <= LSN_MAX, "LSN {lsn} exceeds the maximum {LSN_MAX}");
        let mut writer = self.list.writer();
        if let Some(prev) = self.published.load(Ordering::Relaxed).checked_sub(1) {
            assert!(lsn > prev, "lsn regressed: {lsn} <= {prev}");
        }
        // Last write first: an insert skips a key that already has a version at this LSN,
        // which only a later write of this batch can have made.
        for (key, value) in batch.iter().rev() {
            let (kind, value) = match value {
                Some(v) => (ValueKind::Put, v.as_ref()),
                None => (ValueKind::Delete, &[][..]),
            };
            writer.insert_first_at_lsn(key.as_ref(), lsn << 8 | u64::from(kind.tag()), value);
        }
        self.published.store(lsn + 1, Ordering::Release);
    }

    /// The newest version of `user_key` with LSN at or below `view_lsn`, tombstones included
    /// (a delete shadows older data below the memtable); `None` if there is none here.
    pub fn get(&self, user_key: &[u8], view_lsn: u64) -> Option<MemtableEntry<'_>> {
        // An empty memtable (a fresh one after a freeze or a reopen, which every read that
        // goes on to the SSTs probes first) answers without hashing the key and reading a
        // cold bucket. A view sees the count of every batch it covers: the count is raised
        // before the batch's LSN is published.
        if self.is_empty() {
            return None;
        }
        // The hash index names the newest version; older ones follow it in list order. A
        // view usually sees the newest (only writes after the view was taken are skipped).
        let mut entry = self.list.newest(user_key)?;
        while entry.trailer() >> 8 > view_lsn {
            entry = entry.next().filter(|e| e.user_key() == user_key)?;
        }
        Some(MemtableEntry { entry })
    }

    /// The newest version at or below `view_lsn` of each user key within `bounds`, in
    /// ascending user-key order, tombstones included.
    pub fn range<R: RangeBounds<[u8]>>(&self, bounds: R, view_lsn: u64) -> MemtableRange<'_> {
        let start = match bounds.start_bound() {
            Bound::Included(k) => self
                .list
                .lower_bound(|e| compare_user_keys(e.user_key(), k).is_lt()),
            Bound::Excluded(k) => self
                .list
                .lower_bound(|e| compare_user_keys(e.user_key(), k).is_le()),
            Bound::Unbounded => self.list.first(),
        };
        MemtableRange::new(
            start.map(|entry| MemtableEntry { entry }),
            owned(bounds.end_bound()),
            view_lsn,
        )
    }

    /// As [`Memtable::range`], in descending user-key order.
    pub fn range_rev<R: RangeBounds<[u8]>>(
        &self,
        bounds: R,
        view_lsn: u64,
    ) -> MemtableRangeRev<'_> {
        let start = match bounds.end_bound() {
            Bound::Included(k) => self
                .list
                .last_before(|e| compare_user_keys(e.user_key(), k).is_le()),
            Bound::Excluded(k) => self
                .list
                .last_before(|e| compare_user_keys(e.user_key(), k).is_lt()),
            Bound::Unbounded => self.list.last(),
        };
        MemtableRangeRev::new(
            start.map(|entry| MemtableEntry { entry }),
            owned(bounds.start_bound()),
            view_lsn,
        )
    }

    /// The first version at or after the encoded internal key `target` (see
    /// [`compare_internal`]), or the first of all when `None`.
    pub(crate) fn seek(&self, target: Option<&[u8]>) -> Option<MemtableEntry<'_>> {
        let entry = match target.map(split_internal) {
            Some((user, trailer)) => {
                let probe = Probe::new(user, trailer);
                self.list.lower_bound(|e| e.cmp_probe(&probe).is_lt())
            }
            None => self.list.first(),
        };
        entry.map(|entry| MemtableEntry { entry })
    }

    /// The last version at or before the encoded internal key `target`, or the last of all
    /// when `None`.
    pub(crate) fn seek_for_prev(&self, target: Option<&[u8]>) -> Option<MemtableEntry<'_>> {
        let entry = match target.map(split_internal) {
            Some((user, trailer)) => {
                let probe = Probe::new(user, trailer);
                self.list.last_before(|e| e.cmp_probe(&probe).is_le())
            }
            None => self.list.last(),
        };
        entry.map(|entry| MemtableEntry { entry })
    }

    /// Every version, in internal-key order: for flushes and splits.
    pub(crate) fn versions(&self) -> impl Iterator<Item = MemtableEntry<'_>> {
        self.list.iter().map(|entry| MemtableEntry { entry })
    }

    /// The memory the memtable's versions take: the arena bytes of their nodes (tower,
    /// lengths, key, value and alignment). The flush trigger compares it with the budget.
    pub fn approximate_bytes(&self) -> usize {
        self.list.bytes()
    }

    /// The arena memory the memtable holds: [`Memtable::approximate_bytes`] plus the unused
    /// tails of its blocks and the block it allocated ahead (up to 2 MiB each), resident
    /// or about to be. Its hash buckets are not counted.
    pub fn allocated_bytes(&self) -> usize {
        self.list.allocated_bytes()
    }

    /// The number of versions held (every LSN of every key).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether no version is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The LSN of the last fully applied batch, if any: a read view at or below it sees whole
    /// batches only.
    pub fn max_lsn(&self) -> Option<u64> {
        self.published.load(Ordering::Acquire).checked_sub(1)
    }

    /// Checks the memtable's invariants: the skip list's structure, versions in strict
    /// internal-key order, each at or below the published LSN, tombstones empty, and the byte
    /// count matching the contents. O(n): for tests and the simulator. Call while no apply is
    /// in progress.
    ///
    /// # Panics
    /// If an invariant is broken.
    pub fn check_invariants(&self) {
        self.list.check_structure();
        let max = self.max_lsn();
        let mut previous: Option<MemtableEntry<'_>> = None;
        for entry in self.versions() {
            let lsn = entry.lsn();
            let max = max.expect("a memtable with versions has a published LSN");
            assert!(lsn <= max, "version at lsn {lsn} above max_lsn {max}");
            assert!(
                entry.kind() == ValueKind::Put || entry.raw_value().is_empty(),
                "tombstone at lsn {lsn} has a value"
            );
            if let Some(prev) = previous {
                assert!(
                    compare_internal(prev.encoded_key(), entry.encoded_key())
                        == std::cmp::Ordering::Less,
                    "memtable out of order: {prev:?} then {entry:?}"
                );
            }
            previous = Some(entry);
        }
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
    /// The encoded internal key (user key, then the 8-byte trailer `lsn << 8 | kind`).
    pub fn encoded_key(&self) -> &'a [u8] {
        self.entry.key()
    }

    /// The user key.
    pub fn user_key(&self) -> &'a [u8] {
        self.entry.user_key()
    }

    /// The LSN that wrote this version.
    pub fn lsn(&self) -> u64 {
        self.entry.trailer() >> 8
    }

    /// Whether this version is a put or a delete.
    pub fn kind(&self) -> ValueKind {
        ValueKind::from_tag(self.entry.trailer() as u8).expect("the memtable writes known kinds")
    }

    /// The value of a put; `None` for a tombstone.
    pub fn value(&self) -> Option<&'a [u8]> {
        match self.kind() {
            ValueKind::Put => Some(self.entry.value()),
            ValueKind::Delete => None,
        }
    }

    /// The stored value bytes: a put's value, empty for a tombstone.
    pub(crate) fn raw_value(self) -> &'a [u8] {
        self.entry.value()
    }

    /// The next version in internal-key order.
    pub(crate) fn next(self) -> Option<MemtableEntry<'a>> {
        self.entry.next().map(|entry| MemtableEntry { entry })
    }

    /// The previous version in internal-key order.
    pub(crate) fn prev(self) -> Option<MemtableEntry<'a>> {
        self.entry.prev().map(|entry| MemtableEntry { entry })
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

/// Splits an encoded internal key into its user key and trailer, once, so a search compares
/// fields instead of re-splitting the target at every node.
fn split_internal(key: &[u8]) -> (&[u8], u64) {
    let (user, trailer) = key.split_at(
        key.len()
            .checked_sub(skiplist::TRAILER_BYTES)
            .expect("an internal key holds a trailer"),
    );
    let trailer: [u8; 8] = trailer.try_into().expect("the trailer is 8 bytes");
    (user, u64::from_le_bytes(trailer))
}

/// A bound the iterator keeps after the caller's bounds are gone.
fn owned(bound: Bound<&[u8]>) -> Bound<Vec<u8>> {
    match bound {
        Bound::Included(k) => Bound::Included(k.to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
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
        let footprints: usize = m.list.iter().map(skiplist::Entry::footprint).sum();
        assert_eq!(m.approximate_bytes(), footprints);
        // Each node: back pointer, lengths and hash chain link (24), a tower of at least one
        // pointer, a 1-byte key with its 8-byte trailer, no value, rounded up to 8.
        assert!(m.approximate_bytes() >= 2 * 48);
    }

    /// Batches of every size, over keys that already have older versions: each key keeps
    /// exactly one version at the batch's LSN, its last write's, and the older ones stay.
    #[test]
    fn memtable_batches_keep_the_last_write_per_key_over_older_versions() {
        use popdb_testkit::Rng;
        use std::collections::BTreeMap;
        let mut rng = Rng(11);
        let m = Memtable::new();
        let mut model: BTreeMap<(Vec<u8>, u64), Option<Vec<u8>>> = BTreeMap::new();
        for lsn in 1..=60u64 {
            let len = [1, 2, 16, 17, 200][(lsn % 5) as usize];
            let mut batch: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
            for i in 0..len {
                let key = format!("k{:02}", rng.below(40)).into_bytes();
                let value = (rng.below(3) != 0).then(|| format!("{lsn}.{i}").into_bytes());
                batch.push((key, value));
            }
            for (key, value) in &batch {
                model.insert((key.clone(), lsn), value.clone());
            }
            m.apply(lsn, &batch);
        }
        m.check_invariants();
        assert_eq!(m.len(), model.len());
        for ((key, lsn), value) in &model {
            let got = m.get(key, *lsn).expect("a version at its LSN");
            assert_eq!(got.lsn(), *lsn);
            assert_eq!(got.value(), value.as_deref(), "{key:?} at {lsn}");
        }
    }

    #[test]
    fn memtable_empty_batch_still_advances_the_lsn() {
        let m = Memtable::new();
        m.apply::<&[u8], &[u8]>(4, &[]);
        assert_eq!(m.max_lsn(), Some(4));
        assert!(m.is_empty());
        m.check_invariants();
    }

    /// The cursor primitives (seek, seek_for_prev, next, prev) against a sorted list of every
    /// encoded internal key, with targets between, on and around versions.
    #[test]
    fn memtable_seeks_match_a_sorted_model() {
        use crate::internal_key::InternalKey;
        use popdb_testkit::Rng;
        let mut rng = Rng(7);
        let m = Memtable::new();
        let mut all: Vec<Vec<u8>> = Vec::new();
        for lsn in 1..=300 {
            let key = vec![b'a' + rng.below(20) as u8; 1 + rng.below(3) as usize];
            let delete = rng.below(4) == 0;
            let value: Option<&[u8]> = (!delete).then_some(b"v");
            m.apply(lsn, &[(key.clone(), value)]);
            let kind = if delete {
                ValueKind::Delete
            } else {
                ValueKind::Put
            };
            all.push(InternalKey::new(&key, lsn, kind).encoded().to_vec());
        }
        m.check_invariants();
        all.sort_by(|a, b| compare_internal(a, b));
        let walked: Vec<Vec<u8>> = m.versions().map(|e| e.encoded_key().to_vec()).collect();
        assert_eq!(walked, all);
        let mut back = Vec::new();
        let mut at = m.seek_for_prev(None);
        while let Some(e) = at {
            back.push(e.encoded_key().to_vec());
            at = e.prev();
        }
        back.reverse();
        assert_eq!(back, all);
        for _ in 0..2_000 {
            let key = vec![b'a' + rng.below(21) as u8; rng.below(4) as usize];
            let target = InternalKey::seek_key(&key, rng.below(320))
                .encoded()
                .to_vec();
            let ge = all
                .iter()
                .position(|k| compare_internal(k, &target) != std::cmp::Ordering::Less);
            let got = m.seek(Some(&target));
            assert_eq!(got.map(|e| e.encoded_key()), ge.map(|i| &all[i][..]));
            if let Some(i) = ge {
                let next = got.and_then(MemtableEntry::next);
                assert_eq!(
                    next.map(|e| e.encoded_key()),
                    all.get(i + 1).map(|k| &k[..])
                );
            }
            let le = all
                .iter()
                .rposition(|k| compare_internal(k, &target) != std::cmp::Ordering::Greater);
            let got = m.seek_for_prev(Some(&target));
            assert_eq!(got.map(|e| e.encoded_key()), le.map(|i| &all[i][..]));
            if let Some(i) = le {
                let prev = got.and_then(MemtableEntry::prev);
                let want = i.checked_sub(1).map(|j| &all[j][..]);
                assert_eq!(prev.map(|e| e.encoded_key()), want);
            }
        }
        assert_eq!(
            m.seek(None).map(|e| e.encoded_key()),
            all.first().map(|k| &k[..])
        );
    }

    #[test]
    #[should_panic(expected = "lsn regressed")]
    fn memtable_repeated_lsn_panics() {
        let m = Memtable::new();
        put(&m, 2, b"a", b"");
        put(&m, 2, b"b", b"");
    }
}
