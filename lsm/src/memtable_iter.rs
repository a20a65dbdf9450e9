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

use std::ops::Bound;

use crate::memtable::MemtableEntry;

/// Ascending scan of a memtable at a view; see [`Memtable::range`](crate::Memtable::range).
pub struct MemtableRange<'a> {
    /// The next version to look at (already past the lower bound).
    at: Option<MemtableEntry<'a>>,
    upper: Bound<Vec<u8>>,
    view_lsn: u64,
    /// The last version yielded: the rest of its user key's versions are older, so skipped.
    last: Option<MemtableEntry<'a>>,
}

impl<'a> MemtableRange<'a> {
    pub(crate) fn new(
        start: Option<MemtableEntry<'a>>,
        upper: Bound<Vec<u8>>,
        view_lsn: u64,
    ) -> Self {
        Self {
            at: start,
            upper,
            view_lsn,
            last: None,
        }
    }
}

impl<'a> Iterator for MemtableRange<'a> {
    type Item = MemtableEntry<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let entry = self.at?;
            let key = entry.user_key();
            let inside = match &self.upper {
                Bound::Included(u) => key <= u.as_slice(),
                Bound::Excluded(u) => key < u.as_slice(),
                Bound::Unbounded => true,
            };
            if !inside {
                self.at = None;
                return None;
            }
            self.at = entry.next();
            if entry.lsn() > self.view_lsn {
                continue;
            }
            if let Some(last) = &self.last
                && last.user_key() == key
            {
                continue;
            }
            self.last = Some(entry);
            return Some(entry);
        }
    }
}

/// Descending scan of a memtable at a view; see
/// [`Memtable::range_rev`](crate::Memtable::range_rev).
pub struct MemtableRangeRev<'a> {
    /// The next version to look at (already below the upper bound).
    at: Option<MemtableEntry<'a>>,
    lower: Bound<Vec<u8>>,
    view_lsn: u64,
}

impl<'a> MemtableRangeRev<'a> {
    pub(crate) fn new(
        start: Option<MemtableEntry<'a>>,
        lower: Bound<Vec<u8>>,
        view_lsn: u64,
    ) -> Self {
        Self {
            at: start,
            lower,
            view_lsn,
        }
    }

    /// The version at the cursor if it lies within the lower bound, moving the cursor back.
    fn step(&mut self) -> Option<MemtableEntry<'a>> {
        let entry = self.at?;
        let key = entry.user_key();
        let inside = match &self.lower {
            Bound::Included(l) => key >= l.as_slice(),
            Bound::Excluded(l) => key > l.as_slice(),
            Bound::Unbounded => true,
        };
        if !inside {
            self.at = None;
            return None;
        }
        self.at = entry.prev();
        Some(entry)
    }
}

impl<'a> Iterator for MemtableRangeRev<'a> {
    type Item = MemtableEntry<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let first = self.step()?;
            // Backwards, one user key's versions come oldest first: the last one at or below
            // the view is the newest visible.
            let mut visible = (first.lsn() <= self.view_lsn).then_some(first);
            while let Some(entry) = self.at {
                if entry.user_key() != first.user_key() {
                    break;
                }
                self.at = entry.prev();
                if entry.lsn() <= self.view_lsn {
                    visible = Some(entry);
                }
            }
            if let Some(entry) = visible {
                return Some(entry);
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
