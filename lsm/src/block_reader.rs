//! Reads one uncompressed SST block (a data block's image or an index block): validates its
//! trailer and restart offsets once, then iterates and seeks without allocating (one reused
//! key buffer). Layout: docs/format/sstable.md ("Data block"), constants in
//! `block_format.rs`; compressed data blocks are turned into uncompressed images first
//! (`block_compression.rs`).
//!
//! Every byte is input: malformed bytes give [`Error::Corruption`], never a panic.
//! [`Block::decode`] checks the crc32, the compression tag (`0` only), the restart count and
//! every restart offset (the first is 0, they strictly increase, all lie inside the entries);
//! the iterator checks each entry's lengths as it decodes it, that every restart offset falls
//! on an entry boundary, and that entries at restart offsets store their full key. Key order
//! is the builder's assert, covered by the crc.
//!
//! The cursor state lives in `BlockCursor`, apart from the bytes, so that [`BlockIter`] can
//! borrow a block while the SST iterator owns its block as an `Arc<[u8]>` and rebuilds the
//! borrowed [`Block`] view (from a `BlockShape`) on each step.

use std::cmp::Ordering;

use crate::block_format::{
    COMPRESSION_NONE, CRC_SIZE, EntryHeader, RESTART_COUNT_SIZE, RESTART_OFFSET_SIZE, TRAILER_SIZE,
};
use crate::error::{CorruptionKind, Error, Result};
use crate::internal_key::compare_internal;

/// A validated data block, borrowing its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Block<'a> {
    /// The entries region.
    entries: &'a [u8],
    /// The restart offsets, `RESTART_OFFSET_SIZE` bytes each.
    restarts: &'a [u8],
    restart_count: usize,
}

/// Where a validated block's regions lie in its bytes, so that an owner of the bytes (an
/// `Arc<[u8]>` held by the SST iterator) can rebuild the [`Block`] view on each step without
/// validating again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BlockShape {
    entries_len: usize,
    restart_count: usize,
}

impl BlockShape {
    /// The block view of `bytes`, which must be the bytes this shape was taken from.
    ///
    /// # Panics
    /// If `bytes` is shorter than the shape (a caller bug: the shape and the bytes travel
    /// together).
    pub(crate) fn view(self, bytes: &[u8]) -> Block<'_> {
        let restarts_end = self.entries_len + self.restart_count * RESTART_OFFSET_SIZE;
        Block {
            entries: &bytes[..self.entries_len],
            restarts: &bytes[self.entries_len..restarts_end],
            restart_count: self.restart_count,
        }
    }
}

impl<'a> Block<'a> {
    /// Validates `bytes` as a whole uncompressed block: its crc32, its compression tag (which
    /// must be `COMPRESSION_NONE`) and its restart offsets.
    pub fn decode(bytes: &'a [u8]) -> Result<Self> {
        check_crc(bytes)?;
        Self::decode_verified(bytes)
    }

    /// As [`Block::decode`], for bytes whose crc32 was already verified (a block image
    /// from the block cache): checks the length, the tag and the restart offsets only.
    pub(crate) fn decode_verified(bytes: &'a [u8]) -> Result<Self> {
        let body_len = check_tag(bytes)?;
        let count_at = body_len - RESTART_COUNT_SIZE;
        let restart_count = read_u32(bytes, count_at) as usize;
        let restarts_len = (restart_count as u64) * (RESTART_OFFSET_SIZE as u64);
        if restarts_len > count_at as u64 {
            return Err(Error::corruption(
                count_at,
                "block restart count",
                CorruptionKind::InvalidValue {
                    found: restart_count as u64,
                },
            ));
        }
        let restarts_at = count_at - restarts_len as usize;
        let block = Self {
            entries: &bytes[..restarts_at],
            restarts: &bytes[restarts_at..count_at],
            restart_count,
        };
        block.check_restarts(restarts_at)?;
        Ok(block)
    }

    /// An iterator over the block, positioned nowhere (call a seek first).
    #[expect(
        clippy::iter_not_returning_iterator,
        reason = "a seekable cursor whose steps can fail, not an Iterator"
    )]
    pub fn iter(&self) -> BlockIter<'a> {
        BlockIter {
            block: *self,
            cursor: BlockCursor::new(self),
        }
    }

    /// The number of restart points (0 only for an empty block).
    pub fn restart_count(&self) -> usize {
        self.restart_count
    }

    /// Whether the block holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where the regions lie, to rebuild this view from the same bytes later.
    pub(crate) fn shape(&self) -> BlockShape {
        BlockShape {
            entries_len: self.entries.len(),
            restart_count: self.restart_count,
        }
    }

    fn restart(&self, index: usize) -> usize {
        read_u32(self.restarts, index * RESTART_OFFSET_SIZE) as usize
    }

    fn check_restarts(&self, restarts_at: usize) -> Result<()> {
        if self.entries.is_empty() != (self.restart_count == 0) {
            return Err(Error::corruption(
                restarts_at,
                "block restart count",
                CorruptionKind::InvalidValue {
                    found: self.restart_count as u64,
                },
            ));
        }
        let mut prev = None;
        for i in 0..self.restart_count {
            let offset = self.restart(i);
            let valid = match prev {
                None => offset == 0,
                Some(p) => offset > p && offset < self.entries.len(),
            };
            if !valid {
                return Err(Error::corruption(
                    restarts_at + i * RESTART_OFFSET_SIZE,
                    "block restart offset",
                    CorruptionKind::InvalidValue {
                        found: offset as u64,
                    },
                ));
            }
            prev = Some(offset);
        }
        Ok(())
    }
}

/// Checks the length and the crc32 of a stored block (any compression tag).
pub(crate) fn check_crc(bytes: &[u8]) -> Result<()> {
    let min = RESTART_COUNT_SIZE + TRAILER_SIZE;
    if bytes.len() < min {
        return Err(Error::corruption(
            0,
            "block",
            CorruptionKind::Truncated {
                needed: min as u64,
                available: bytes.len() as u64,
            },
        ));
    }
    let crc_at = bytes.len() - CRC_SIZE;
    let expected = read_u32(bytes, crc_at);
    let actual = popdb_io::crc32(&bytes[..crc_at]);
    if expected != actual {
        return Err(Error::corruption(
            crc_at,
            "block crc32",
            CorruptionKind::ChecksumMismatch { expected, actual },
        ));
    }
    Ok(())
}

/// Checks the length and that the compression tag says "none"; returns the length before
/// the trailer.
fn check_tag(bytes: &[u8]) -> Result<usize> {
    let min = RESTART_COUNT_SIZE + TRAILER_SIZE;
    if bytes.len() < min {
        return Err(Error::corruption(
            0,
            "block",
            CorruptionKind::Truncated {
                needed: min as u64,
                available: bytes.len() as u64,
            },
        ));
    }
    let tag_at = bytes.len() - TRAILER_SIZE;
    let tag = bytes[tag_at];
    if tag != COMPRESSION_NONE {
        return Err(Error::corruption(
            tag_at,
            "block compression tag",
            CorruptionKind::InvalidTag { tag },
        ));
    }
    Ok(tag_at)
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let raw = bytes[at..at + 4].try_into().expect("4 bytes");
    u32::from_le_bytes(raw)
}

/// A cursor over a [`Block`]'s entries. Valid after a successful seek that found an entry;
/// [`BlockIter::key`] and [`BlockIter::value`] may only be called while valid. A method that
/// returns an error leaves the cursor invalid.
#[derive(Clone, Debug)]
pub struct BlockIter<'a> {
    block: Block<'a>,
    cursor: BlockCursor,
}

impl<'a> BlockIter<'a> {
    /// Whether the cursor is at an entry.
    pub fn valid(&self) -> bool {
        self.cursor.valid()
    }

    /// The current entry's key.
    ///
    /// # Panics
    /// If the cursor is not valid.
    pub fn key(&self) -> &[u8] {
        assert!(self.valid(), "key() on an invalid block iterator");
        self.cursor.key()
    }

    /// The current entry's value, borrowed from the block.
    ///
    /// # Panics
    /// If the cursor is not valid.
    pub fn value(&self) -> &'a [u8] {
        assert!(self.valid(), "value() on an invalid block iterator");
        self.cursor.value(&self.block)
    }

    /// Moves to the first entry (invalid if the block is empty).
    pub fn seek_to_first(&mut self) -> Result<()> {
        self.cursor.seek_to_first(&self.block)
    }

    /// Moves to the last entry (invalid if the block is empty).
    pub fn seek_to_last(&mut self) -> Result<()> {
        self.cursor.seek_to_last(&self.block)
    }

    /// Moves to the first entry whose key is at or after `target` under
    /// [`compare_internal`]; invalid if there is none.
    pub fn seek(&mut self, target: &[u8]) -> Result<()> {
        self.cursor.seek(&self.block, target)
    }

    /// Moves to the next entry (invalid past the last).
    ///
    /// # Panics
    /// If the cursor is not valid.
    #[expect(
        clippy::should_implement_trait,
        reason = "a cursor step that can fail, not Iterator::next"
    )]
    pub fn next(&mut self) -> Result<()> {
        self.cursor.next(&self.block)
    }

    /// Moves to the previous entry (invalid before the first), re-scanning from the restart
    /// point before the current entry.
    ///
    /// # Panics
    /// If the cursor is not valid.
    pub fn prev(&mut self) -> Result<()> {
        self.cursor.prev(&self.block)
    }
}

/// The position state of a block iterator, apart from the block's bytes: every method takes
/// the [`Block`] view it was created for (`BlockIter` holds a borrowed one; the SST iterator
/// rebuilds one from the `Arc<[u8]>` it owns). Holds the current key in one reused buffer.
///
/// Invariant: `current == len` (the block's entries length) exactly when invalid; otherwise
/// `current < next <= len` and `value` lies inside `current..next`.
#[derive(Clone, Debug, Default)]
pub(crate) struct BlockCursor {
    /// The bound block's entries length.
    len: usize,
    /// The current entry's full key.
    key: Vec<u8>,
    /// Offset of the current entry; `len` when invalid.
    current: usize,
    /// Offset of the entry after the current one.
    next: usize,
    value: std::ops::Range<usize>,
    /// The last restart point at or before `current`.
    restart_index: usize,
    /// Entries before `current` in its restart interval, decoded by the last backward step,
    /// nearest last: the next backward steps pop them instead of decoding the interval
    /// again. Emptied by any other move.
    back: Vec<BackEntry>,
    /// The keys of `back`, end to end.
    back_keys: Vec<u8>,
}

/// An entry remembered by a backward step ([`BlockCursor::prev`]).
#[derive(Clone, Debug)]
struct BackEntry {
    offset: usize,
    next: usize,
    value: std::ops::Range<usize>,
    restart_index: usize,
    /// Where its key starts in `back_keys` (it ends where the next one starts).
    key_start: usize,
}

impl BlockCursor {
    /// An invalid cursor over `block`.
    pub(crate) fn new(block: &Block<'_>) -> Self {
        let mut cursor = Self::default();
        cursor.reset(block);
        cursor
    }

    /// Binds the cursor to `block`, invalid, keeping the key buffer's capacity.
    pub(crate) fn reset(&mut self, block: &Block<'_>) {
        self.len = block.entries.len();
        self.restart_index = 0;
        self.invalidate();
    }

    pub(crate) fn valid(&self) -> bool {
        self.current < self.len
    }

    /// The current key. Requires: valid.
    pub(crate) fn key(&self) -> &[u8] {
        debug_assert!(self.valid(), "key() on an invalid block cursor");
        &self.key
    }

    /// The current value, from `block`. Requires: valid.
    pub(crate) fn value<'a>(&self, block: &Block<'a>) -> &'a [u8] {
        debug_assert!(self.valid(), "value() on an invalid block cursor");
        &block.entries[self.value.clone()]
    }

    /// Whether the current entry is the block's last. Requires: valid.
    pub(crate) fn at_last(&self) -> bool {
        self.next == self.len
    }

    pub(crate) fn seek_to_first(&mut self, block: &Block<'_>) -> Result<()> {
        self.invalidate();
        if block.restart_count == 0 {
            return Ok(());
        }
        self.seek_to_restart(block, 0)?;
        self.guard(|it| it.parse_next(block))
    }

    pub(crate) fn seek_to_last(&mut self, block: &Block<'_>) -> Result<()> {
        self.invalidate();
        let Some(last) = block.restart_count.checked_sub(1) else {
            return Ok(());
        };
        self.seek_to_restart(block, last)?;
        let end = block.entries.len();
        self.guard(|it| it.scan_until(block, end))
    }

    pub(crate) fn seek(&mut self, block: &Block<'_>, target: &[u8]) -> Result<()> {
        self.invalidate();
        if block.restart_count == 0 {
            return Ok(());
        }
        // The last restart point whose key is below `target` (or the first).
        let (mut lo, mut hi) = (0, block.restart_count - 1);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let key = restart_key(block, mid)?;
            if compare_internal(key, target) == Ordering::Less {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        self.seek_to_restart(block, lo)?;
        self.guard(|it| {
            loop {
                it.parse_next(block)?;
                if !it.valid() || compare_internal(&it.key, target) != Ordering::Less {
                    return Ok(());
                }
            }
        })
    }

    /// # Panics
    /// If the cursor is not valid.
    pub(crate) fn next(&mut self, block: &Block<'_>) -> Result<()> {
        assert!(self.valid(), "next() on an invalid block iterator");
        self.forget_back();
        self.guard(|it| it.parse_next(block))
    }

    /// # Panics
    /// If the cursor is not valid.
    pub(crate) fn prev(&mut self, block: &Block<'_>) -> Result<()> {
        assert!(self.valid(), "prev() on an invalid block iterator");
        if let Some(entry) = self.back.pop() {
            debug_assert_eq!(entry.next, self.current, "back stack out of step");
            self.key.clear();
            self.key
                .extend_from_slice(&self.back_keys[entry.key_start..]);
            self.back_keys.truncate(entry.key_start);
            self.current = entry.offset;
            self.next = entry.next;
            self.value = entry.value;
            self.restart_index = entry.restart_index;
            return Ok(());
        }
        let original = self.current;
        while block.restart(self.restart_index) >= original {
            if self.restart_index == 0 {
                self.invalidate();
                return Ok(());
            }
            self.restart_index -= 1;
        }
        self.seek_to_restart(block, self.restart_index)?;
        self.guard(|it| it.scan_back_until(block, original))
    }

    /// Decodes entries from the current restart point until the one whose end is `end`,
    /// stops there, and remembers the ones before it for the next backward steps.
    fn scan_back_until(&mut self, block: &Block<'_>, end: usize) -> Result<()> {
        loop {
            self.parse_next(block)?;
            if !self.valid() || self.next > end {
                self.forget_back();
                return Err(Error::corruption(
                    end,
                    "entry boundary",
                    CorruptionKind::InvalidValue { found: end as u64 },
                ));
            }
            if self.next == end {
                return Ok(());
            }
            self.back.push(BackEntry {
                offset: self.current,
                next: self.next,
                value: self.value.clone(),
                restart_index: self.restart_index,
                key_start: self.back_keys.len(),
            });
            self.back_keys.extend_from_slice(&self.key);
        }
    }

    fn forget_back(&mut self) {
        self.back.clear();
        self.back_keys.clear();
    }

    /// Runs `step`; on error leaves the cursor invalid.
    fn guard(&mut self, step: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        let result = step(self);
        if result.is_err() {
            self.invalidate();
        }
        result
    }

    pub(crate) fn invalidate(&mut self) {
        self.current = self.len;
        self.next = self.current;
        self.key.clear();
        self.forget_back();
    }

    /// Positions so that the next `parse_next` decodes the entry at restart `index`.
    fn seek_to_restart(&mut self, block: &Block<'_>, index: usize) -> Result<()> {
        if let Err(e) = restart_key(block, index) {
            self.invalidate();
            return Err(e);
        }
        self.key.clear();
        self.restart_index = index;
        self.next = block.restart(index);
        Ok(())
    }

    /// Decodes the entry at `self.next`, or becomes invalid at the end of the entries.
    fn parse_next(&mut self, block: &Block<'_>) -> Result<()> {
        let entries = block.entries;
        if self.next >= entries.len() {
            if self.restart_index + 1 < block.restart_count {
                // The last entry ran over the restarts after this one.
                let index = self.restart_index + 1;
                return Err(Error::corruption(
                    restart_at(block, index),
                    "block restart offset",
                    CorruptionKind::InvalidValue {
                        found: block.restart(index) as u64,
                    },
                ));
            }
            self.invalidate();
            return Ok(());
        }
        let offset = self.next;
        let header = EntryHeader::decode(entries, offset, self.key.len())?;
        while self.restart_index + 1 < block.restart_count
            && block.restart(self.restart_index + 1) <= offset
        {
            self.restart_index += 1;
            let restart = block.restart(self.restart_index);
            if restart != offset {
                // Decoding from the previous restart stepped over this one.
                return Err(Error::corruption(
                    restart_at(block, self.restart_index),
                    "block restart offset",
                    CorruptionKind::InvalidValue {
                        found: restart as u64,
                    },
                ));
            }
        }
        if block.restart(self.restart_index) == offset && header.shared != 0 {
            return Err(Error::corruption(
                offset,
                "restart entry shared_len",
                CorruptionKind::InvalidValue {
                    found: header.shared as u64,
                },
            ));
        }
        self.key.truncate(header.shared);
        self.key
            .extend_from_slice(&entries[header.key_start..header.value_start()]);
        self.value = header.value_start()..header.end();
        self.current = offset;
        self.next = header.end();
        Ok(())
    }

    /// Decodes entries until the one whose end is `end`, and stops there.
    fn scan_until(&mut self, block: &Block<'_>, end: usize) -> Result<()> {
        loop {
            self.parse_next(block)?;
            if !self.valid() || self.next > end {
                return Err(Error::corruption(
                    end,
                    "entry boundary",
                    CorruptionKind::InvalidValue { found: end as u64 },
                ));
            }
            if self.next == end {
                return Ok(());
            }
        }
    }
}

/// The full key stored at restart `index`, borrowed from the block.
fn restart_key<'a>(block: &Block<'a>, index: usize) -> Result<&'a [u8]> {
    let offset = block.restart(index);
    let header = EntryHeader::decode(block.entries, offset, 0)?;
    if header.shared != 0 {
        return Err(Error::corruption(
            offset,
            "restart entry shared_len",
            CorruptionKind::InvalidValue {
                found: header.shared as u64,
            },
        ));
    }
    Ok(&block.entries[header.key_start..header.value_start()])
}

/// Offset in the block of restart offset `index` (for error reports).
fn restart_at(block: &Block<'_>, index: usize) -> usize {
    block.entries.len() + index * RESTART_OFFSET_SIZE
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BlockBuilder;

    #[test]
    fn empty_block_decodes_and_iterates_nothing() {
        let bytes = BlockBuilder::default().finish();
        let block = Block::decode(&bytes).unwrap();
        assert!(block.is_empty());
        let mut it = block.iter();
        it.seek_to_first().unwrap();
        assert!(!it.valid());
        it.seek_to_last().unwrap();
        assert!(!it.valid());
        it.seek(b"anything").unwrap();
        assert!(!it.valid());
    }

    #[test]
    fn restart_offsets_are_validated() {
        let mut b = BlockBuilder::new(1);
        b.add(&[1; 9], b"v");
        b.add(&[2; 9], b"v");
        let good = b.finish();
        let count_at = good.len() - TRAILER_SIZE - RESTART_COUNT_SIZE;
        for (at, value) in [
            (count_at - 8, 1u32),
            (count_at - 4, 0),
            (count_at - 4, 1000),
        ] {
            let mut bad = good.clone();
            bad[at..at + 4].copy_from_slice(&value.to_le_bytes());
            let crc_at = bad.len() - CRC_SIZE;
            let crc = popdb_io::crc32(&bad[..crc_at]);
            bad[crc_at..].copy_from_slice(&crc.to_le_bytes());
            let Err(Error::Corruption(c)) = Block::decode(&bad) else {
                panic!("restart {value} at {at} accepted");
            };
            assert_eq!(c.what, "block restart offset");
            assert_eq!(c.offset, at as u64);
        }
    }

    /// A value that runs over a later restart point: the block opens (its offsets are in
    /// range) but iterating must report the restart it stepped over, not yield one entry.
    #[test]
    fn an_entry_over_a_restart_point_is_refused() {
        let mut b = BlockBuilder::new(1);
        b.add(&[1; 9], b"v");
        b.add(&[2; 9], b"v");
        let mut bad = b.finish();
        bad[2] = 14; // value_len of entry 0: 1 -> 14, to the end of the entries
        let crc_at = bad.len() - CRC_SIZE;
        let crc = popdb_io::crc32(&bad[..crc_at]);
        bad[crc_at..].copy_from_slice(&crc.to_le_bytes());
        let block = Block::decode(&bad).unwrap();
        let mut it = block.iter();
        it.seek_to_first().unwrap();
        let Err(Error::Corruption(c)) = it.next() else {
            panic!("stepped over restart 1");
        };
        assert_eq!(c.what, "block restart offset");
        assert!(!it.valid());
    }

    /// `Block::decode` reads uncompressed blocks only: tag 1 (zstd) must have been
    /// decompressed into an image first, and other tags are unknown.
    #[test]
    fn block_decode_refuses_any_tag_but_none() {
        for tag in [1u8, 2, 0xff] {
            let mut bad = BlockBuilder::default().finish();
            let tag_at = bad.len() - TRAILER_SIZE;
            bad[tag_at] = tag;
            let crc = popdb_io::crc32(&bad[..=tag_at]);
            bad[tag_at + 1..].copy_from_slice(&crc.to_le_bytes());
            let Err(Error::Corruption(c)) = Block::decode(&bad) else {
                panic!("tag {tag} accepted");
            };
            assert_eq!(c.kind, CorruptionKind::InvalidTag { tag });
        }
    }
}
