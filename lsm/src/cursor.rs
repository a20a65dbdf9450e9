//! Cursors over the internal-key entries of one source of a read view: a memtable, an L0 SST
//! or a whole level of L1+ SSTs. The merge above them ([`crate::merge`]) drives one direction
//! at a time: `seek` then `next` forwards, `seek_for_prev` then `prev` backwards.
//!
//! Every cursor yields encoded internal keys in [`compare_internal`] order, every version of
//! every key, tombstones included; view filtering and shadowing happen in the merge.
//! A method that returns an error leaves the cursor invalid.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::error::Result;
use crate::internal_key::{InternalKey, compare_internal};
use crate::memtable::{Memtable, MemtableEntry};
use crate::sst_iter::SstIter;
use crate::version::SstHandle;

/// A cursor over one source.
pub(crate) enum Cursor<'v> {
    /// A memtable's skip list.
    Mem(MemCursor<'v>),
    /// One SST (an L0 file).
    Sst(SstIter<'v>),
    /// The non-overlapping files of one level, in key order.
    Level(LevelCursor<'v>),
}

impl<'v> Cursor<'v> {
    pub(crate) fn memtable(mem: &'v Memtable) -> Self {
        Self::Mem(MemCursor { mem, at: None })
    }

    pub(crate) fn sst(file: &'v SstHandle) -> Self {
        Self::Sst(file.reader.iter())
    }

    pub(crate) fn level(files: &'v [Arc<SstHandle>]) -> Self {
        Self::Level(LevelCursor {
            files,
            file: files.len(),
            iter: None,
        })
    }

    pub(crate) fn valid(&self) -> bool {
        match self {
            Self::Mem(c) => c.at.is_some(),
            Self::Sst(c) => c.valid(),
            Self::Level(c) => c.iter.as_ref().is_some_and(SstIter::valid),
        }
    }

    /// The current encoded internal key. Requires: valid.
    pub(crate) fn key(&self) -> &[u8] {
        match self {
            Self::Mem(c) => c.entry().encoded_key(),
            Self::Sst(c) => c.key(),
            Self::Level(c) => c.file_iter().key(),
        }
    }

    /// The current value. Requires: valid.
    pub(crate) fn value(&self) -> &[u8] {
        match self {
            Self::Mem(c) => c.entry().raw_value(),
            Self::Sst(c) => c.value(),
            Self::Level(c) => c.file_iter().value(),
        }
    }

    /// Moves to the first entry at or after `target`, or the very first when `None`.
    pub(crate) fn seek(&mut self, target: Option<&InternalKey>) -> Result<()> {
        match (self, target) {
            (Self::Mem(c), t) => {
                c.at = c.mem.seek(t.map(InternalKey::encoded));
                Ok(())
            }
            (Self::Sst(c), Some(t)) => c.seek(t.encoded()),
            (Self::Sst(c), None) => c.seek_to_first(),
            (Self::Level(c), t) => c.seek(t.map(InternalKey::encoded)),
        }
    }

    /// Moves to the last entry at or before `target`, or the very last when `None`.
    pub(crate) fn seek_for_prev(&mut self, target: Option<&InternalKey>) -> Result<()> {
        match (self, target) {
            (Self::Mem(c), t) => {
                c.at = c.mem.seek_for_prev(t.map(InternalKey::encoded));
                Ok(())
            }
            (Self::Sst(c), Some(t)) => c.seek_for_prev(t.encoded()),
            (Self::Sst(c), None) => c.seek_to_last(),
            (Self::Level(c), t) => c.seek_for_prev(t.map(InternalKey::encoded)),
        }
    }

    /// Moves to the next entry. Requires: valid.
    pub(crate) fn next(&mut self) -> Result<()> {
        match self {
            Self::Mem(c) => {
                c.at = c.entry().next();
                Ok(())
            }
            Self::Sst(c) => c.next(),
            Self::Level(c) => c.next(),
        }
    }

    /// Moves to the previous entry. Requires: valid.
    pub(crate) fn prev(&mut self) -> Result<()> {
        match self {
            Self::Mem(c) => {
                c.at = c.entry().prev();
                Ok(())
            }
            Self::Sst(c) => c.prev(),
            Self::Level(c) => c.prev(),
        }
    }
}

/// A position in a memtable. The memtable (borrowed for `'v`) frees no version while it lives.
pub(crate) struct MemCursor<'v> {
    mem: &'v Memtable,
    at: Option<MemtableEntry<'v>>,
}

impl<'v> MemCursor<'v> {
    fn entry(&self) -> MemtableEntry<'v> {
        self.at.expect("memtable cursor used while invalid")
    }
}

/// A cursor over the files of one level (L1 or deeper), opening each file's iterator as it
/// reaches it.
pub(crate) struct LevelCursor<'v> {
    files: &'v [Arc<SstHandle>],
    /// The file `iter` reads; `files.len()` when none.
    file: usize,
    iter: Option<SstIter<'v>>,
}

impl<'v> LevelCursor<'v> {
    fn file_iter(&self) -> &SstIter<'v> {
        self.iter.as_ref().expect("level cursor used while invalid")
    }

    fn open(&mut self, file: usize) -> Option<&mut SstIter<'v>> {
        if file >= self.files.len() {
            self.file = self.files.len();
            self.iter = None;
            return None;
        }
        self.file = file;
        Some(self.iter.insert(self.files[file].reader.iter()))
    }

    fn seek(&mut self, target: Option<&[u8]>) -> Result<()> {
        let first = target.map_or(0, |t| {
            self.files
                .partition_point(|f| compare_internal(&f.meta.largest, t) == Ordering::Less)
        });
        let Some(iter) = self.open(first) else {
            return Ok(());
        };
        match target {
            Some(t) => iter.seek(t)?,
            None => iter.seek_to_first()?,
        }
        self.skip_forward()
    }

    fn seek_for_prev(&mut self, target: Option<&[u8]>) -> Result<()> {
        let after = target.map_or(self.files.len(), |t| {
            self.files
                .partition_point(|f| compare_internal(&f.meta.smallest, t) != Ordering::Greater)
        });
        let Some(last) = after.checked_sub(1) else {
            self.open(self.files.len());
            return Ok(());
        };
        let iter = self.open(last).expect("an index below len");
        match target {
            Some(t) => iter.seek_for_prev(t)?,
            None => iter.seek_to_last()?,
        }
        self.skip_backward()
    }

    fn next(&mut self) -> Result<()> {
        self.iter
            .as_mut()
            .expect("next on an invalid level cursor")
            .next()?;
        self.skip_forward()
    }

    fn prev(&mut self) -> Result<()> {
        self.iter
            .as_mut()
            .expect("prev on an invalid level cursor")
            .prev()?;
        self.skip_backward()
    }

    /// Past the end of a file, moves to the start of the next (files are never empty, but a
    /// bounded loop costs nothing).
    fn skip_forward(&mut self) -> Result<()> {
        while self.iter.as_ref().is_some_and(|i| !i.valid()) {
            let next = self.file + 1;
            match self.open(next) {
                Some(iter) => iter.seek_to_first()?,
                None => break,
            }
        }
        Ok(())
    }

    fn skip_backward(&mut self) -> Result<()> {
        while self.iter.as_ref().is_some_and(|i| !i.valid()) {
            let Some(prev) = self.file.checked_sub(1) else {
                self.open(self.files.len());
                break;
            };
            self.open(prev)
                .expect("an index below len")
                .seek_to_last()?;
        }
        Ok(())
    }
}
