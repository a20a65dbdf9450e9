//! Range iterators over a memtable at a read view, forwards and backwards.
//!
//! Each yields, per user key within its bounds, only the newest version at or below the view
//! (tombstones included, so a merge above can shadow older data), in user-key order. Versions
//! above the view, which a concurrent writer may be inserting, are skipped; every version at
//! or below a published view was inserted before the view was taken, so the scan sees whole
//! batches.
//!
//! Invariant: the skip list yields versions in internal-key order, so the versions of one user
//! key are adjacent, newest first going forwards and oldest first going backwards.

use crossbeam_skiplist::map::{Entry, Range};

use crate::internal_key::InternalKey;
use crate::memtable::{InternalBounds, MemtableEntry};

type SkipRange<'a> = Range<'a, InternalKey, InternalBounds, InternalKey, Vec<u8>>;
type SkipEntry<'a> = Entry<'a, InternalKey, Vec<u8>>;

/// Ascending scan of a memtable at a view; see [`Memtable::range`](crate::Memtable::range).
pub struct MemtableRange<'a> {
    inner: SkipRange<'a>,
    view_lsn: u64,
    /// The last version yielded: the rest of its user key's versions are older, so skipped.
    last: Option<SkipEntry<'a>>,
}

impl<'a> MemtableRange<'a> {
    pub(crate) fn new(inner: SkipRange<'a>, view_lsn: u64) -> Self {
        Self {
            inner,
            view_lsn,
            last: None,
        }
    }
}

impl<'a> Iterator for MemtableRange<'a> {
    type Item = MemtableEntry<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let entry = self.inner.next()?;
            let key = entry.key();
            if key.lsn() > self.view_lsn {
                continue;
            }
            if let Some(last) = &self.last
                && last.key().user_key() == key.user_key()
            {
                continue;
            }
            self.last = Some(entry.clone());
            return Some(MemtableEntry::new(entry));
        }
    }
}

/// Descending scan of a memtable at a view; see
/// [`Memtable::range_rev`](crate::Memtable::range_rev).
pub struct MemtableRangeRev<'a> {
    inner: SkipRange<'a>,
    view_lsn: u64,
    /// The first version of the next user key, read while finishing the previous one.
    peeked: Option<SkipEntry<'a>>,
}

impl<'a> MemtableRangeRev<'a> {
    pub(crate) fn new(inner: SkipRange<'a>, view_lsn: u64) -> Self {
        Self {
            inner,
            view_lsn,
            peeked: None,
        }
    }
}

impl<'a> Iterator for MemtableRangeRev<'a> {
    type Item = MemtableEntry<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let first = self.peeked.take().or_else(|| self.inner.next_back())?;
            // Backwards, one user key's versions come oldest first: the last one at or below
            // the view is the newest visible.
            let mut visible = (first.key().lsn() <= self.view_lsn).then(|| first.clone());
            while let Some(entry) = self.inner.next_back() {
                if entry.key().user_key() != first.key().user_key() {
                    self.peeked = Some(entry);
                    break;
                }
                if entry.key().lsn() <= self.view_lsn {
                    visible = Some(entry);
                }
            }
            if let Some(entry) = visible {
                return Some(MemtableEntry::new(entry));
            }
        }
    }
}

impl std::fmt::Debug for MemtableRange<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemtableRange")
            .field("view_lsn", &self.view_lsn)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for MemtableRangeRev<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemtableRangeRev")
            .field("view_lsn", &self.view_lsn)
            .finish_non_exhaustive()
    }
}
