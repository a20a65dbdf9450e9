//! Read views: a consistent, pinned view of a tree at one LSN while writes go on.
//!
//! A view holds the tree's state of the moment it was taken (the memtables and the version of
//! the level structure) and an LSN. Versions above the LSN are invisible, so writes applied
//! after the view leave it unchanged; flushes and compactions install new state without
//! touching the one a view holds, and files a compaction removes are deleted only once no
//! view holds them. Holding a view therefore holds memory and disk space: drop views
//! promptly.

use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use crate::cursor::Cursor;
use crate::error::Result;
use crate::internal_key::ValueKind;
use crate::memtable::Memtable;
use crate::merge::{Direction, Merge};
use crate::range::{RangeIter, prefix_bounds};
use crate::stats::Counters;
use crate::version::Version;

/// What the tree holds at one moment: the mutable memtable, frozen memtables waiting for
/// flush (oldest first) and the level structure.
#[derive(Debug)]
pub(crate) struct TreeState {
    pub(crate) mem: Arc<Memtable>,
    pub(crate) frozen: Vec<Arc<Frozen>>,
    pub(crate) version: Arc<Version>,
}

/// A memtable that takes no more writes, waiting for flush. Its versions at or below
/// `freeze_lsn` go to the SST; any above were copied to a newer memtable when it froze.
#[derive(Debug)]
pub(crate) struct Frozen {
    pub(crate) mem: Arc<Memtable>,
    pub(crate) freeze_lsn: u64,
    /// The smallest LSN it holds.
    pub(crate) min_lsn: u64,
}

/// A consistent view of a tree at one LSN.
#[derive(Debug, Clone)]
pub struct ReadView {
    pub(crate) state: Arc<TreeState>,
    pub(crate) lsn: u64,
    pub(crate) counters: Arc<Counters>,
}

/// A value and its version (the LSN that wrote it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The value's bytes.
    pub value: Vec<u8>,
    /// The LSN of the write that produced it.
    pub version: u64,
}

impl ReadView {
    /// The LSN the view reads at: every write at or below it is visible, none above.
    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    /// The value of `key` at this view and its version; `None` if absent or deleted.
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) or [`Error::Corruption`](crate::Error::Corruption)
    /// from an SST read.
    pub fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        let mut value = Vec::new();
        let version = self.get_into(key, &mut value)?;
        Ok(version.map(|version| Versioned { value, version }))
    }

    /// As [`ReadView::get`], with the value written into `value` (cleared first, left empty
    /// when absent); returns the version. A caller that reuses one buffer makes point reads
    /// that allocate nothing.
    ///
    /// # Errors
    /// As [`ReadView::get`].
    pub fn get_into(&self, key: &[u8], value: &mut Vec<u8>) -> Result<Option<u64>> {
        self.counters.count_get();
        value.clear();
        match self.get_versioned(key, value)? {
            Some((ValueKind::Put, version)) => Ok(Some(version)),
            Some((ValueKind::Delete, _)) | None => {
                value.clear();
                Ok(None)
            }
        }
    }

    /// The newest version of `key` at or below the view, tombstones included; a put's value
    /// goes into `value`.
    fn get_versioned(&self, key: &[u8], value: &mut Vec<u8>) -> Result<Option<(ValueKind, u64)>> {
        let state = &*self.state;
        let mems = std::iter::once(&state.mem).chain(state.frozen.iter().rev().map(|f| &f.mem));
        for mem in mems {
            if let Some(e) = mem.get(key, self.lsn) {
                value.extend_from_slice(e.value().unwrap_or_default());
                return Ok(Some((e.kind(), e.lsn())));
            }
        }
        let version = &state.version;
        let l0 = version.levels[0].iter().rev().filter(|f| f.may_hold(key));
        let deeper = (1..version.levels.len()).filter_map(|l| version.file_for(l, key));
        for file in l0.chain(deeper) {
            self.counters.count_sst_probe();
            if let Some(found) = file.reader.get_into(key, self.lsn, value)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// An ascending scan of the keys within `bounds`.
    ///
    /// # Errors
    /// As [`ReadView::get`].
    pub fn range<R: RangeBounds<[u8]>>(&self, bounds: R) -> Result<RangeIter<'_>> {
        self.scan(owned_bounds(&bounds), Direction::Forward)
    }

    /// A descending scan of the keys within `bounds`.
    ///
    /// # Errors
    /// As [`ReadView::get`].
    pub fn range_rev<R: RangeBounds<[u8]>>(&self, bounds: R) -> Result<RangeIter<'_>> {
        self.scan(owned_bounds(&bounds), Direction::Backward)
    }

    /// A scan of the keys starting with `prefix`, in `direction`.
    ///
    /// # Errors
    /// As [`ReadView::get`].
    pub fn prefix(&self, prefix: &[u8], direction: Direction) -> Result<RangeIter<'_>> {
        self.scan(prefix_bounds(prefix), direction)
    }

    /// A scan of the keys within `bounds` (lower, upper), in `direction`.
    ///
    /// # Errors
    /// As [`ReadView::get`].
    pub fn scan(
        &self,
        bounds: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        direction: Direction,
    ) -> Result<RangeIter<'_>> {
        self.counters.count_scan();
        let target = RangeIter::start_target(&bounds, direction);
        let merge = Merge::new(self.cursors(), direction, target.as_ref())?;
        RangeIter::new(merge, self.lsn, bounds, direction)
    }

    /// One cursor per source, newest first.
    fn cursors(&self) -> Vec<Cursor<'_>> {
        let state = &*self.state;
        let version = &state.version;
        let mut cursors = Vec::with_capacity(2 + state.frozen.len() + version.levels[0].len() + 6);
        cursors.push(Cursor::memtable(&state.mem));
        cursors.extend(state.frozen.iter().rev().map(|f| Cursor::memtable(&f.mem)));
        cursors.extend(version.levels[0].iter().rev().map(|f| Cursor::sst(f)));
        for files in &version.levels[1..] {
            if !files.is_empty() {
                cursors.push(Cursor::level(files));
            }
        }
        cursors
    }
}

fn owned_bounds<R: RangeBounds<[u8]>>(bounds: &R) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let own = |b: Bound<&[u8]>| match b {
        Bound::Included(k) => Bound::Included(k.to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    };
    (own(bounds.start_bound()), own(bounds.end_bound()))
}
