//! Writes one SST file from entries given in strictly increasing internal-key order. Layout:
//! docs/format/sstable.md ("File layout"), constants in `sst_format.rs`.
//!
//! Data blocks are cut when they reach the target size (a single large entry makes one
//! large block) and, when the options ask for zstd, stored compressed if that saves at least
//! an eighth of the block (`block_compression.rs`); each block's last key and handle go into
//! the index block, each distinct user key into the bloom filter. [`SstWriter::finish`] writes the filter block, the index
//! block and the footer, then syncs the file's data.
//!
//! Durability: the writer syncs the file (`sync_data`) and nothing else. It does not name,
//! rename or create the file, and it does not sync the directory: the caller must sync the
//! directory holding the file before relying on the file existing after a crash.
//!
//! Invariants, asserted (a violation is a caller bug that would write a file no reader can
//! search): keys strictly increase under [`compare_internal`](crate::compare_internal); the
//! file is written from offset 0 and is empty to start with; blocks tile the file with no gap.

use std::cmp::Ordering;

use popdb_io::FileRef;

use crate::block_builder::BlockBuilder;
use crate::block_compression::{BlockCompressor, Compression};
use crate::block_format::RESTART_INTERVAL_DEFAULT;
use crate::bloom::{BITS_PER_KEY_DEFAULT, BloomBuilder};
use crate::error::{Error, Result};
use crate::internal_key::InternalKey;
use crate::sst_format::{BLOCK_SIZE_DEFAULT, BlockHandle, Footer};

/// How an [`SstWriter`] shapes its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SstWriterOptions {
    /// A data block is cut once its encoded size reaches this many bytes.
    pub block_size: usize,
    /// Entries between restart points in data blocks.
    pub restart_interval: usize,
    /// Bloom filter bits per distinct user key.
    pub bits_per_key: usize,
    /// How data blocks are stored (index and filter blocks are never compressed).
    pub compression: Compression,
}

impl Default for SstWriterOptions {
    fn default() -> Self {
        Self {
            block_size: BLOCK_SIZE_DEFAULT,
            restart_interval: RESTART_INTERVAL_DEFAULT,
            bits_per_key: BITS_PER_KEY_DEFAULT,
            compression: Compression::None,
        }
    }
}

/// What a finished SST holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SstSummary {
    /// Bytes of the file.
    pub file_size: u64,
    /// The footer written.
    pub footer: Footer,
    /// Data blocks written.
    pub data_blocks: usize,
    /// Data blocks stored compressed (at most `data_blocks`).
    pub data_blocks_compressed: usize,
}

/// Builds an SST into an empty file. Call [`SstWriter::add`] per entry, then
/// [`SstWriter::finish`]; a writer dropped unfinished leaves a file with no footer, which no
/// reader opens.
#[derive(Debug)]
pub struct SstWriter {
    file: FileRef,
    options: SstWriterOptions,
    block: BlockBuilder,
    index: BlockBuilder,
    bloom: BloomBuilder,
    compressor: BlockCompressor,
    /// Bytes written so far (the next block's offset).
    offset: u64,
    /// The previous entry's encoded key, if any.
    last_key: Option<Vec<u8>>,
    entry_count: u64,
    smallest_lsn: u64,
    largest_lsn: u64,
    data_blocks: usize,
    data_blocks_compressed: usize,
}

impl SstWriter {
    /// A writer into `file`, which must be empty.
    ///
    /// # Panics
    /// If `options.block_size` is 0, a zstd level is outside zstd's range, or the other
    /// options are invalid for the block and bloom builders.
    pub fn new(file: FileRef, options: SstWriterOptions) -> Self {
        assert!(options.block_size >= 1, "block size must be at least 1");
        Self {
            file,
            options,
            block: BlockBuilder::new(options.restart_interval),
            index: BlockBuilder::new(RESTART_INTERVAL_DEFAULT),
            bloom: BloomBuilder::new(options.bits_per_key),
            compressor: BlockCompressor::new(options.compression),
            offset: 0,
            last_key: None,
            entry_count: 0,
            smallest_lsn: 0,
            largest_lsn: 0,
            data_blocks: 0,
            data_blocks_compressed: 0,
        }
    }

    /// Appends an entry.
    ///
    /// # Errors
    /// [`Error::Io`] if writing a finished data block fails; the writer must then be dropped.
    ///
    /// # Panics
    /// If `key` does not sort strictly after the previous key, or its LSN is 0.
    pub fn add(&mut self, key: &InternalKey, value: &[u8]) -> Result<()> {
        let encoded = key.encoded();
        if let Some(last) = &self.last_key {
            assert!(
                crate::compare_internal(last, encoded) == Ordering::Less,
                "sst keys out of order: {last:02x?} then {encoded:02x?}"
            );
            if last[..last.len() - 8] != *key.user_key() {
                self.bloom.add_key(key.user_key());
            }
        } else {
            self.bloom.add_key(key.user_key());
        }
        let lsn = key.lsn();
        assert!(
            lsn >= 1,
            "LSN 0 names no record and is never written to an SST"
        );
        if self.entry_count == 0 {
            self.smallest_lsn = lsn;
            self.largest_lsn = lsn;
        } else {
            self.smallest_lsn = self.smallest_lsn.min(lsn);
            self.largest_lsn = self.largest_lsn.max(lsn);
        }
        self.entry_count += 1;
        self.block.add(encoded, value);
        let last = self.last_key.get_or_insert_with(Vec::new);
        last.clear();
        last.extend_from_slice(encoded);
        if self.block.size_estimate() >= self.options.block_size {
            self.flush_block()?;
        }
        Ok(())
    }

    /// Writes the pending data block, if any, and indexes it under its last key.
    fn flush_block(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let block = std::mem::replace(
            &mut self.block,
            BlockBuilder::new(self.options.restart_interval),
        );
        let last_key = block.last_key().to_vec();
        let (stored, compressed) = self.compressor.seal(block.finish());
        let handle = self.write(&stored)?;
        self.index.add(&last_key, &handle.encode());
        self.data_blocks += 1;
        self.data_blocks_compressed += usize::from(compressed);
        Ok(())
    }

    /// Writes `bytes` at the current offset; returns where they went.
    fn write(&mut self, bytes: &[u8]) -> Result<BlockHandle> {
        let size = u32::try_from(bytes.len()).expect("the block builder keeps blocks below 4 GiB");
        let handle = BlockHandle {
            offset: self.offset,
            size,
        };
        self.file
            .write_all_at(bytes, self.offset)
            .map_err(|e| Error::io("sst write", e))?;
        self.offset = handle.end();
        Ok(handle)
    }

    /// Writes the last data block, the filter block, the index block and the footer, then
    /// syncs the file's data. The caller syncs the directory.
    ///
    /// # Errors
    /// [`Error::Io`] if a write or the sync fails; the file must then be discarded.
    pub fn finish(mut self) -> Result<SstSummary> {
        self.flush_block()?;
        let mut filter = self.bloom.finish();
        let crc = popdb_io::crc32(&filter);
        filter.extend_from_slice(&crc.to_le_bytes());
        let filter = self.write(&filter)?;
        let index = std::mem::take(&mut self.index).finish();
        let index = self.write(&index)?;
        let footer = Footer {
            index,
            filter,
            entry_count: self.entry_count,
            smallest_lsn: self.smallest_lsn,
            largest_lsn: self.largest_lsn,
        };
        self.write(&footer.encode())?;
        self.file
            .sync_data()
            .map_err(|e| Error::io("sst sync", e))?;
        Ok(SstSummary {
            file_size: self.offset,
            footer,
            data_blocks: self.data_blocks,
            data_blocks_compressed: self.data_blocks_compressed,
        })
    }
}
