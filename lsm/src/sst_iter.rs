//! A cursor over one SST's entries in internal-key order, forward and backward. Layout:
//! docs/format/sstable.md ("File layout", "Reading").
//!
//! The cursor holds one data block image (`Arc<[u8]>`, shared with the block cache when the
//! reader has one) and a block cursor over it; keys are rebuilt in one reused buffer and
//! values are borrowed from the image, so stepping allocates nothing within a block.
//!
//! Every entry the cursor lands on is checked: its key is a well-formed internal key, and it
//! is its block's last entry exactly when its key is the one the index names for the block
//! (so a block that ends early or runs on past its index key is `Corruption`). A method that
//! returns an error leaves the cursor invalid; bytes from disk never make it panic.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::block_reader::{Block, BlockCursor, BlockShape};
use crate::error::Result;
use crate::internal_key::{self, compare_internal};
use crate::sst_reader::{SstReader, bad_key, ends_early};

/// A cursor over an [`SstReader`]'s entries, in internal-key order. Valid after a seek that
/// found an entry; [`SstIter::key`] and [`SstIter::value`] may only be called while valid.
/// A method that returns an error leaves the cursor invalid.
///
/// Invariant: valid exactly when a block image is loaded and the block cursor is at an
/// entry, and then `block` is that block's index.
#[derive(Debug)]
pub struct SstIter<'r> {
    reader: &'r SstReader,
    /// The loaded block's index; meaningful only while `image` is `Some`.
    block: usize,
    image: Option<Arc<[u8]>>,
    /// Where the regions of `image` lie.
    shape: BlockShape,
    cursor: BlockCursor,
}

impl<'r> SstIter<'r> {
    /// An invalid cursor over `reader`.
    pub(crate) fn new(reader: &'r SstReader) -> Self {
        Self {
            reader,
            block: 0,
            image: None,
            shape: BlockShape::default(),
            cursor: BlockCursor::default(),
        }
    }

    /// Whether the cursor is at an entry.
    pub fn valid(&self) -> bool {
        self.image.is_some() && self.cursor.valid()
    }

    /// The current entry's encoded internal key.
    ///
    /// # Panics
    /// If the cursor is not valid.
    pub fn key(&self) -> &[u8] {
        assert!(self.valid(), "key() on an invalid sst iterator");
        self.cursor.key()
    }

    /// The current entry's value.
    ///
    /// # Panics
    /// If the cursor is not valid.
    pub fn value(&self) -> &[u8] {
        assert!(self.valid(), "value() on an invalid sst iterator");
        let image = self.image.as_ref().expect("valid, so loaded");
        self.cursor.value(&self.shape.view(image))
    }

    /// Moves to the first entry (invalid if the file is empty).
    ///
    /// # Errors
    /// As [`SstReader::get`].
    pub fn seek_to_first(&mut self) -> Result<()> {
        self.guard(Self::seek_to_first_inner)
    }

    /// Moves to the last entry (invalid if the file is empty).
    ///
    /// # Errors
    /// As [`SstReader::get`].
    pub fn seek_to_last(&mut self) -> Result<()> {
        self.guard(Self::seek_to_last_inner)
    }

    /// Moves to the first entry whose key is at or after the encoded internal key `target`
    /// under [`compare_internal`]; invalid if there is none.
    ///
    /// # Errors
    /// As [`SstReader::get`].
    pub fn seek(&mut self, target: &[u8]) -> Result<()> {
        self.guard(|it| it.seek_inner(target))
    }

    /// Moves to the last entry whose key is at or before the encoded internal key `target`
    /// under [`compare_internal`]; invalid if there is none.
    ///
    /// # Errors
    /// As [`SstReader::get`].
    pub fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        self.guard(|it| {
            it.seek_inner(target)?;
            if !it.valid() {
                return it.seek_to_last_inner();
            }
            if compare_internal(it.cursor.key(), target) == Ordering::Greater {
                return it.prev_inner();
            }
            Ok(())
        })
    }

    /// Moves to the next entry (invalid past the last).
    ///
    /// # Errors
    /// As [`SstReader::get`].
    ///
    /// # Panics
    /// If the cursor is not valid.
    #[expect(
        clippy::should_implement_trait,
        reason = "a cursor step that can fail, not Iterator::next"
    )]
    pub fn next(&mut self) -> Result<()> {
        assert!(self.valid(), "next() on an invalid sst iterator");
        self.guard(|it| {
            if it.cursor.at_last() {
                let next = it.block + 1;
                if next == it.reader.index.len() {
                    it.invalidate();
                    return Ok(());
                }
                return it.enter(next, BlockCursor::seek_to_first);
            }
            it.step(BlockCursor::next)?;
            it.check_entry()
        })
    }

    /// Moves to the previous entry (invalid before the first).
    ///
    /// # Errors
    /// As [`SstReader::get`].
    ///
    /// # Panics
    /// If the cursor is not valid.
    pub fn prev(&mut self) -> Result<()> {
        assert!(self.valid(), "prev() on an invalid sst iterator");
        self.guard(Self::prev_inner)
    }

    fn seek_to_first_inner(&mut self) -> Result<()> {
        self.invalidate();
        if self.reader.index.is_empty() {
            return Ok(());
        }
        self.enter(0, BlockCursor::seek_to_first)
    }

    fn seek_to_last_inner(&mut self) -> Result<()> {
        self.invalidate();
        let Some(last) = self.reader.index.len().checked_sub(1) else {
            return Ok(());
        };
        self.enter(last, BlockCursor::seek_to_last)
    }

    fn seek_inner(&mut self, target: &[u8]) -> Result<()> {
        self.invalidate();
        let i = self.reader.index_seek(target);
        if i == self.reader.index.len() {
            return Ok(());
        }
        // The block's last key is at or after `target`, so the block holds an answer.
        self.enter(i, |cursor, block| cursor.seek(block, target))
    }

    /// One entry back, into the previous block when the cursor is at its block's first.
    /// Requires: valid.
    fn prev_inner(&mut self) -> Result<()> {
        self.step(BlockCursor::prev)?;
        if self.cursor.valid() {
            return self.check_entry();
        }
        let Some(previous) = self.block.checked_sub(1) else {
            self.invalidate();
            return Ok(());
        };
        self.enter(previous, BlockCursor::seek_to_last)
    }

    /// Loads block `i` and positions in it with `position`, which must find an entry (the
    /// index promises the block holds one at or after any target below its last key).
    fn enter(
        &mut self,
        i: usize,
        position: impl FnOnce(&mut BlockCursor, &Block<'_>) -> Result<()>,
    ) -> Result<()> {
        self.load(i)?;
        self.step(position)?;
        if !self.cursor.valid() {
            return Err(ends_early(self.block_offset()));
        }
        self.check_entry()
    }

    /// Loads the image of block `i`, validates its structure and binds the cursor to it,
    /// positioned nowhere.
    fn load(&mut self, i: usize) -> Result<()> {
        self.invalidate();
        let at = self.reader.index.handle(i).offset;
        let image = self.reader.block_image(i)?;
        let block = Block::decode_verified(&image).map_err(|e| e.at_file_offset(at))?;
        self.shape = block.shape();
        self.cursor.reset(&block);
        self.block = i;
        self.image = Some(image);
        Ok(())
    }

    /// Runs a block cursor operation on the loaded block. Requires: a block is loaded.
    fn step(&mut self, op: impl FnOnce(&mut BlockCursor, &Block<'_>) -> Result<()>) -> Result<()> {
        let at = self.block_offset();
        let image = self.image.as_ref().expect("a block is loaded");
        let block = self.shape.view(image);
        op(&mut self.cursor, &block).map_err(|e| e.at_file_offset(at))
    }

    /// Checks the entry the cursor just landed on (module header). Requires: valid.
    fn check_entry(&self) -> Result<()> {
        let at = self.block_offset();
        let key = self.cursor.key();
        if internal_key::decode(key).is_none() {
            return Err(bad_key(key, at));
        }
        let named_last = key == self.reader.index.last_key(self.block);
        if named_last != self.cursor.at_last() {
            return Err(ends_early(at));
        }
        Ok(())
    }

    fn block_offset(&self) -> u64 {
        self.reader.index.handle(self.block).offset
    }

    /// Runs `op`; on error leaves the cursor invalid and tags the error with the file's id.
    fn guard(&mut self, op: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        let result = op(self);
        if let Err(e) = result {
            self.invalidate();
            return Err(e.with_file_id(self.reader.file_id()));
        }
        Ok(())
    }

    fn invalidate(&mut self) {
        self.image = None;
        self.cursor.invalidate();
    }
}
