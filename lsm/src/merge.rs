//! Merges the cursors of several sources into one stream of internal-key entries, in one
//! direction chosen at construction. Used by range scans (then filtered by a read view in
//! [`crate::range`]) and by compaction (every version, to decide which to keep).
//!
//! Sources are given newest first. Two sources may hold the same internal key (a record
//! replayed after a restart into a memtable while an SST already holds it); the newer source
//! then comes first forwards and last backwards, so in both directions the consumer's "last
//! seen wins" or "first seen wins" rule picks the newer copy.
//!
//! The smallest (or largest) cursor is found by a linear scan: a tree has few sources (one or
//! two memtables, a handful of L0 files, one cursor per deeper level), and a scan keeps every
//! step free of allocation.

use std::cmp::Ordering;

use crate::cursor::Cursor;
use crate::error::Result;
use crate::internal_key::{InternalKey, compare_internal};

/// Which way a merge runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Ascending user keys.
    Forward,
    /// Descending user keys.
    Backward,
}

/// A merged stream over cursors, positioned at its current entry.
pub(crate) struct Merge<'v> {
    cursors: Vec<Cursor<'v>>,
    direction: Direction,
    /// The cursor holding the current entry; `None` when exhausted.
    current: Option<usize>,
}

impl<'v> Merge<'v> {
    /// A merge over `cursors` (newest source first), positioned at the first entry at or
    /// after `target` (forwards) or at or before it (backwards); `None` starts at the very
    /// first (or last) entry.
    pub(crate) fn new(
        cursors: Vec<Cursor<'v>>,
        direction: Direction,
        target: Option<&InternalKey>,
    ) -> Result<Self> {
        let mut merge = Self {
            cursors,
            direction,
            current: None,
        };
        for cursor in &mut merge.cursors {
            match direction {
                Direction::Forward => cursor.seek(target)?,
                Direction::Backward => cursor.seek_for_prev(target)?,
            }
        }
        merge.pick();
        Ok(merge)
    }

    pub(crate) fn valid(&self) -> bool {
        self.current.is_some()
    }

    /// The current encoded internal key. Requires: valid.
    pub(crate) fn key(&self) -> &[u8] {
        self.cursors[self.current.expect("key() on an exhausted merge")].key()
    }

    /// The current value. Requires: valid.
    pub(crate) fn value(&self) -> &[u8] {
        self.cursors[self.current.expect("value() on an exhausted merge")].value()
    }

    /// Steps past the current entry. Requires: valid.
    pub(crate) fn advance(&mut self) -> Result<()> {
        let i = self.current.expect("advance() on an exhausted merge");
        let step = match self.direction {
            Direction::Forward => self.cursors[i].next(),
            Direction::Backward => self.cursors[i].prev(),
        };
        if let Err(e) = step {
            self.current = None;
            return Err(e);
        }
        self.pick();
        Ok(())
    }

    /// Points `current` at the cursor with the smallest key (forwards) or largest
    /// (backwards); ties go to the newer source forwards and the older one backwards.
    fn pick(&mut self) {
        let mut best: Option<usize> = None;
        for (i, cursor) in self.cursors.iter().enumerate() {
            if !cursor.valid() {
                continue;
            }
            let Some(b) = best else {
                best = Some(i);
                continue;
            };
            let order = compare_internal(cursor.key(), self.cursors[b].key());
            let better = match self.direction {
                Direction::Forward => order == Ordering::Less,
                Direction::Backward => order != Ordering::Less,
            };
            if better {
                best = Some(i);
            }
        }
        self.current = best;
    }
}
