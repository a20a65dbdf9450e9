//! Reads one SST file: opens it by validating the footer and loading the filter and index
//! blocks, then answers point reads at an LSN view and iterates forward. Layout:
//! docs/format/sstable.md ("File layout"), constants in `sst_format.rs`.
//!
//! Every byte read is input: malformed bytes give [`Error::Corruption`] with the file offset
//! and the field, never a panic. [`SstReader::open`] checks the footer (magic, version, crc32,
//! LSN range, block placement), the filter block's crc32 and structure, and the whole index:
//! its block checksum, that every key is a well-formed internal key, that keys strictly
//! increase, and that the handles tile the data region from offset 0 to the filter block with
//! no gap. A data block is checked (crc32 and structure) each time it is read; the iterator
//! also checks that each block's keys are internal keys and that its last key is the one the
//! index names.
//!
//! A point read probes the bloom filter first and reads no data block when it says absent;
//! otherwise it reads exactly one data block (a positional read).

use std::cmp::Ordering;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use popdb_io::FileRef;

use crate::block_reader::Block;
use crate::bloom::BloomFilter;
use crate::error::{CorruptionKind, Error, Result};
use crate::internal_key::{InternalKey, ValueKind, compare_internal};
use crate::sst_format::{BlockHandle, FILTER_CRC_SIZE, FOOTER_SIZE, Footer};

/// One index entry: the last key of a data block, and where the block is.
#[derive(Clone, Debug)]
struct IndexEntry {
    last_key: Vec<u8>,
    handle: BlockHandle,
}

/// An open, validated SST file.
#[derive(Debug)]
pub struct SstReader {
    file: FileRef,
    footer: Footer,
    /// The bloom filter's bytes (validated at open).
    filter: Vec<u8>,
    index: Vec<IndexEntry>,
    data_block_reads: AtomicU64,
}

impl SstReader {
    /// Opens `file` as an SST: reads and validates the footer, the filter block and the index
    /// block.
    ///
    /// # Errors
    /// [`Error::Io`] if a read fails; [`Error::Corruption`] if the bytes are not a valid SST
    /// (a file of another version gives `UnsupportedVersion`).
    pub fn open(file: FileRef) -> Result<Self> {
        let file_len = file.len().map_err(|e| Error::io("sst len", e))?;
        if file_len < FOOTER_SIZE as u64 {
            return Err(Error::file_corruption(
                0,
                "sst footer",
                CorruptionKind::Truncated {
                    needed: FOOTER_SIZE as u64,
                    available: file_len,
                },
            ));
        }
        let mut raw = [0u8; FOOTER_SIZE];
        let footer_at = file_len - FOOTER_SIZE as u64;
        file.read_exact_at(&mut raw, footer_at)
            .map_err(|e| Error::io("sst read", e))?;
        let footer = Footer::decode(&raw, file_len)?;

        let filter = read_handle(&file, footer.filter)?;
        let crc_at = filter.len() - FILTER_CRC_SIZE;
        let expected = u32::from_le_bytes(filter[crc_at..].try_into().expect("4 bytes"));
        let actual = popdb_io::crc32(&filter[..crc_at]);
        if expected != actual {
            return Err(Error::file_corruption(
                footer.filter.offset + crc_at as u64,
                "sst filter crc32",
                CorruptionKind::ChecksumMismatch { expected, actual },
            ));
        }
        let mut filter = filter;
        filter.truncate(crc_at);
        BloomFilter::decode(&filter).map_err(|e| e.at_file_offset(footer.filter.offset))?;

        let index = load_index(&file, &footer)?;
        Ok(Self {
            file,
            footer,
            filter,
            index,
            data_block_reads: AtomicU64::new(0),
        })
    }

    /// The footer read at open.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// The number of data blocks in the file.
    pub fn data_block_count(&self) -> usize {
        self.index.len()
    }

    /// Data blocks read from the file since open (by [`SstReader::get`] and iterators).
    pub fn data_block_reads(&self) -> u64 {
        self.data_block_reads.load(AtomicOrdering::Relaxed)
    }

    /// The newest version of `user_key` at or below `view_lsn`: its kind, LSN and value (empty
    /// for a delete). `None` if the file holds no such version.
    ///
    /// # Errors
    /// [`Error::Io`] if the read fails; [`Error::Corruption`] if the data block is damaged.
    pub fn get(&self, user_key: &[u8], view_lsn: u64) -> Result<Option<(ValueKind, u64, Vec<u8>)>> {
        if !self.filter().may_contain(user_key) {
            return Ok(None);
        }
        let target = InternalKey::seek_key(user_key, view_lsn);
        let i = self.index_seek(target.encoded());
        let Some(entry) = self.index.get(i) else {
            return Ok(None);
        };
        let bytes = self.read_data_block(entry.handle)?;
        let at = entry.handle.offset;
        let block = Block::decode(&bytes).map_err(|e| e.at_file_offset(at))?;
        let mut it = block.iter();
        it.seek(target.encoded())
            .map_err(|e| e.at_file_offset(at))?;
        if !it.valid() {
            return Err(ends_early(at));
        }
        let key = parse_key(it.key(), at)?;
        if key.user_key() != user_key {
            return Ok(None);
        }
        Ok(Some((key.kind(), key.lsn(), it.value().to_vec())))
    }

    /// A forward iterator over every entry, positioned nowhere (call a seek first).
    #[expect(
        clippy::iter_not_returning_iterator,
        reason = "a seekable cursor whose steps can fail, not an Iterator"
    )]
    pub fn iter(&self) -> SstIter<'_> {
        SstIter {
            reader: self,
            block: self.index.len(),
            entries: Vec::new(),
            pos: 0,
        }
    }

    fn filter(&self) -> BloomFilter<'_> {
        BloomFilter::decode(&self.filter).expect("validated at open")
    }

    /// The first block whose last key is at or after `target`.
    fn index_seek(&self, target: &[u8]) -> usize {
        self.index
            .partition_point(|e| compare_internal(&e.last_key, target) == Ordering::Less)
    }

    fn read_data_block(&self, handle: BlockHandle) -> Result<Vec<u8>> {
        self.data_block_reads.fetch_add(1, AtomicOrdering::Relaxed);
        read_handle(&self.file, handle)
    }

    /// Reads, validates and decodes data block `i` in full.
    fn load_block(&self, i: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let entry = &self.index[i];
        let at = entry.handle.offset;
        let bytes = self.read_data_block(entry.handle)?;
        let block = Block::decode(&bytes).map_err(|e| e.at_file_offset(at))?;
        let mut it = block.iter();
        let mut out = Vec::new();
        it.seek_to_first().map_err(|e| e.at_file_offset(at))?;
        while it.valid() {
            parse_key(it.key(), at)?;
            out.push((it.key().to_vec(), it.value().to_vec()));
            it.next().map_err(|e| e.at_file_offset(at))?;
        }
        match out.last() {
            Some((key, _)) if *key == entry.last_key => Ok(out),
            _ => Err(ends_early(at)),
        }
    }
}

/// A data block whose last key is not the one its index entry names.
fn ends_early(at: u64) -> Error {
    Error::file_corruption(
        at,
        "sst data block last key",
        CorruptionKind::InvalidValue { found: at },
    )
}

fn parse_key(bytes: &[u8], block_at: u64) -> Result<InternalKey> {
    InternalKey::from_encoded(bytes.to_vec()).ok_or_else(|| {
        Error::file_corruption(
            block_at,
            "sst internal key",
            CorruptionKind::InvalidValue {
                found: bytes.len() as u64,
            },
        )
    })
}

/// Reads the bytes a handle names. The handle was validated to lie inside the file.
fn read_handle(file: &FileRef, handle: BlockHandle) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; handle.size as usize];
    file.read_exact_at(&mut buf, handle.offset)
        .map_err(|e| Error::io("sst read", e))?;
    Ok(buf)
}

/// Reads and validates the whole index block.
fn load_index(file: &FileRef, footer: &Footer) -> Result<Vec<IndexEntry>> {
    let at = footer.index.offset;
    let bytes = read_handle(file, footer.index)?;
    let block = Block::decode(&bytes).map_err(|e| e.at_file_offset(at))?;
    let mut it = block.iter();
    it.seek_to_first().map_err(|e| e.at_file_offset(at))?;
    let mut index: Vec<IndexEntry> = Vec::new();
    let mut next_offset = 0u64;
    let invalid = |what: &'static str, found: u64| {
        Err(Error::file_corruption(
            at,
            what,
            CorruptionKind::InvalidValue { found },
        ))
    };
    while it.valid() {
        let key = parse_key(it.key(), at)?;
        if let Some(prev) = index.last()
            && compare_internal(&prev.last_key, key.encoded()) != Ordering::Less
        {
            return invalid("sst index key order", index.len() as u64);
        }
        let Some(handle) = BlockHandle::decode(it.value()) else {
            return invalid("sst index handle", it.value().len() as u64);
        };
        if handle.offset != next_offset {
            return invalid("sst index handle offset", handle.offset);
        }
        if (handle.size as usize) < crate::block_format::BLOCK_SIZE_MIN
            || handle.end() > footer.filter.offset
        {
            return invalid("sst index handle size", handle.size.into());
        }
        next_offset = handle.end();
        index.push(IndexEntry {
            last_key: key.encoded().to_vec(),
            handle,
        });
        it.next().map_err(|e| e.at_file_offset(at))?;
    }
    if next_offset != footer.filter.offset {
        return invalid("sst data region end", next_offset);
    }
    if index.is_empty() != (footer.entry_count == 0) {
        return invalid("sst index block entry count", index.len() as u64);
    }
    Ok(index)
}

/// A forward cursor over an [`SstReader`]'s entries, in internal-key order. Valid after a seek
/// that found an entry; [`SstIter::key`] and [`SstIter::value`] may only be called while
/// valid. A method that returns an error leaves the cursor invalid. Holds one decoded data
/// block at a time.
#[derive(Debug)]
pub struct SstIter<'r> {
    reader: &'r SstReader,
    /// The loaded block; `index.len()` when invalid.
    block: usize,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    pos: usize,
}

impl SstIter<'_> {
    /// Whether the cursor is at an entry.
    pub fn valid(&self) -> bool {
        self.pos < self.entries.len()
    }

    /// The current entry's encoded internal key.
    ///
    /// # Panics
    /// If the cursor is not valid.
    pub fn key(&self) -> &[u8] {
        assert!(self.valid(), "key() on an invalid sst iterator");
        &self.entries[self.pos].0
    }

    /// The current entry's value.
    ///
    /// # Panics
    /// If the cursor is not valid.
    pub fn value(&self) -> &[u8] {
        assert!(self.valid(), "value() on an invalid sst iterator");
        &self.entries[self.pos].1
    }

    /// Moves to the first entry (invalid if the file is empty).
    ///
    /// # Errors
    /// As [`SstReader::get`].
    pub fn seek_to_first(&mut self) -> Result<()> {
        self.load(0)
    }

    /// Moves to the first entry whose key is at or after the encoded internal key `target`;
    /// invalid if there is none.
    ///
    /// # Errors
    /// As [`SstReader::get`].
    pub fn seek(&mut self, target: &[u8]) -> Result<()> {
        let i = self.reader.index_seek(target);
        self.load(i)?;
        if !self.valid() {
            return Ok(());
        }
        self.pos = self
            .entries
            .partition_point(|(k, _)| compare_internal(k, target) == Ordering::Less);
        if !self.valid() {
            let at = self.reader.index[i].handle.offset;
            self.invalidate();
            return Err(ends_early(at));
        }
        Ok(())
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
        self.pos += 1;
        if self.pos == self.entries.len() {
            self.load(self.block + 1)?;
        }
        Ok(())
    }

    /// Loads block `i` and positions at its first entry, or becomes invalid past the last.
    fn load(&mut self, i: usize) -> Result<()> {
        self.invalidate();
        if i >= self.reader.index.len() {
            return Ok(());
        }
        self.entries = self.reader.load_block(i)?;
        self.block = i;
        Ok(())
    }

    fn invalidate(&mut self) {
        self.block = self.reader.index.len();
        self.entries.clear();
        self.pos = 0;
    }
}
