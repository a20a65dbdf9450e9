//! Reads one SST file: opens it by validating the footer and loading the filter and index
//! blocks, then answers point reads at an LSN view and hands out iterators (`sst_iter.rs`).
//! Layout: docs/format/sstable.md ("File layout"), constants in `sst_format.rs`.
//!
//! Every byte read is input: malformed bytes give [`Error::Corruption`] with the file offset
//! and the field (and the file's id when the reader was given one), never a panic.
//! [`SstReader::open_with`] checks the footer (magic, version, crc32, LSN range, block
//! placement), the filter block's crc32 and structure, and the whole index: its block
//! checksum, that every key is a well-formed internal key, that keys strictly increase, and
//! that the handles tile the data region from offset 0 to the filter block with no gap. A data
//! block is checked (crc32, compression tag, declared size, structure) each time it is read
//! from the file; the iterator also checks that each entry's key is an internal key and that
//! a block's last entry is the one the index names.
//!
//! Data blocks are read as *images* (the block in uncompressed form, `block_compression.rs`),
//! through the shared [`BlockCache`] when the reader has one: a cached image costs no file
//! read. A point read probes the bloom filter first and touches no data block when it says
//! absent; otherwise it touches exactly one.

use std::cmp::Ordering;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use popdb_io::FileRef;

use crate::block_cache::BlockCache;
use crate::block_compression::decode_stored;
use crate::block_reader::{Block, BlockCursor};
use crate::bloom::BloomFilter;
use crate::error::{CorruptionKind, Error, Result};
use crate::internal_key::{self, InternalKey, ValueKind, compare_internal};
use crate::sst_format::{BlockHandle, FILTER_CRC_SIZE, FOOTER_SIZE, Footer, footer_version};
use crate::sst_iter::SstIter;

thread_local! {
    /// A point read's seek key and block cursor, reused by every read on the thread.
    static POINT_READ: std::cell::RefCell<(Vec<u8>, BlockCursor)> =
        std::cell::RefCell::new((Vec::new(), BlockCursor::default()));
}

/// How an [`SstReader`] reads its file.
#[derive(Clone, Debug, Default)]
pub struct SstReadOptions {
    /// The file's id (the tree's file number), put in every [`Error::Corruption`] the reader
    /// and its iterators return.
    pub file_id: Option<u64>,
    /// The shared cache data blocks go through; `None` reads every block from the file.
    pub cache: Option<Arc<BlockCache>>,
}

/// The index: per data block, its last key and where it is. The keys sit end to end in one
/// buffer, so the binary search of a point read walks two arrays instead of chasing a
/// pointer per probe.
#[derive(Clone, Debug, Default)]
pub(crate) struct Index {
    keys: Vec<u8>,
    /// `ends[i]`: where key `i` ends in `keys` (it starts where key `i - 1` ends).
    ends: Vec<usize>,
    handles: Vec<BlockHandle>,
}

impl Index {
    pub(crate) fn len(&self) -> usize {
        self.handles.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The last key of block `i`.
    pub(crate) fn last_key(&self, i: usize) -> &[u8] {
        let start = i.checked_sub(1).map_or(0, |p| self.ends[p]);
        &self.keys[start..self.ends[i]]
    }

    /// Where block `i` is.
    pub(crate) fn handle(&self, i: usize) -> BlockHandle {
        self.handles[i]
    }

    fn push(&mut self, last_key: &[u8], handle: BlockHandle) {
        self.keys.extend_from_slice(last_key);
        self.ends.push(self.keys.len());
        self.handles.push(handle);
    }

    /// The first block whose last key is at or after `target`.
    fn seek(&self, target: &[u8]) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if compare_internal(self.last_key(mid), target) == Ordering::Less {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// An open, validated SST file. Shareable between threads (`&self` methods only).
#[derive(Debug)]
pub struct SstReader {
    file: FileRef,
    footer: Footer,
    format_version: u32,
    /// The bloom filter's bytes (validated at open).
    filter: Vec<u8>,
    pub(crate) index: Index,
    file_id: Option<u64>,
    /// The cache and this reader's file number in it.
    cache: Option<(Arc<BlockCache>, u64)>,
    data_block_reads: AtomicU64,
}

impl SstReader {
    /// Opens `file` as an SST with no block cache and no file id: as
    /// [`SstReader::open_with`] with default options.
    ///
    /// # Errors
    /// As [`SstReader::open_with`].
    pub fn open(file: FileRef) -> Result<Self> {
        Self::open_with(file, SstReadOptions::default())
    }

    /// Opens `file` as an SST: reads and validates the footer, the filter block and the index
    /// block. With a cache, the reader takes a fresh file number from it.
    ///
    /// # Errors
    /// [`Error::Io`] if a read fails; [`Error::Corruption`] if the bytes are not a valid SST
    /// (a file of an unknown version gives `UnsupportedVersion`).
    pub fn open_with(file: FileRef, options: SstReadOptions) -> Result<Self> {
        let file_id = options.file_id;
        Self::open_inner(file, options).map_err(|e| e.with_file_id(file_id))
    }

    fn open_inner(file: FileRef, options: SstReadOptions) -> Result<Self> {
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
        let filter = load_filter(&file, &footer)?;
        let index = load_index(&file, &footer)?;
        let cache = options.cache.map(|c| {
            let number = c.new_file_number();
            (c, number)
        });
        Ok(Self {
            file,
            footer,
            format_version: footer_version(&raw),
            filter,
            index,
            file_id: options.file_id,
            cache,
            data_block_reads: AtomicU64::new(0),
        })
    }

    /// The footer read at open.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// The file's `format_version`.
    pub fn format_version(&self) -> u32 {
        self.format_version
    }

    /// The id given at open, carried by this reader's corruption errors.
    pub fn file_id(&self) -> Option<u64> {
        self.file_id
    }

    /// This reader's file number in its block cache (for [`BlockCache::erase_file`]), if it
    /// has a cache.
    pub fn cache_file_number(&self) -> Option<u64> {
        self.cache.as_ref().map(|(_, number)| *number)
    }

    /// The number of data blocks in the file.
    pub fn data_block_count(&self) -> usize {
        self.index.len()
    }

    /// Data blocks read from the file since open (by [`SstReader::get`] and iterators); a
    /// block found in the cache is not a read.
    pub fn data_block_reads(&self) -> u64 {
        self.data_block_reads.load(AtomicOrdering::Relaxed)
    }

    /// The newest version of `user_key` at or below `view_lsn`: its kind, LSN and value (empty
    /// for a delete). `None` if the file holds no such version.
    ///
    /// # Errors
    /// [`Error::Io`] if the read fails; [`Error::Corruption`] if the data block is damaged.
    pub fn get(&self, user_key: &[u8], view_lsn: u64) -> Result<Option<(ValueKind, u64, Vec<u8>)>> {
        let mut value = Vec::new();
        let found = self.get_into(user_key, view_lsn, &mut value)?;
        Ok(found.map(|(kind, lsn)| (kind, lsn, value)))
    }

    /// As [`SstReader::get`], but the value goes into `value` (cleared first, left empty when
    /// nothing is found), so that a caller reusing one buffer allocates nothing for it.
    ///
    /// # Errors
    /// As [`SstReader::get`].
    pub fn get_into(
        &self,
        user_key: &[u8],
        view_lsn: u64,
        value: &mut Vec<u8>,
    ) -> Result<Option<(ValueKind, u64)>> {
        value.clear();
        let result = self.get_inner(user_key, view_lsn, value);
        if !matches!(result, Ok(Some(_))) {
            value.clear();
        }
        result.map_err(|e| e.with_file_id(self.file_id))
    }

    fn get_inner(
        &self,
        user_key: &[u8],
        view_lsn: u64,
        value: &mut Vec<u8>,
    ) -> Result<Option<(ValueKind, u64)>> {
        if !self.filter().may_contain(user_key) {
            return Ok(None);
        }
        // The seek key and the block cursor's key buffer are reused from call to call on
        // this thread, so a point read allocates nothing of its own.
        POINT_READ.with_borrow_mut(|(target, cursor)| {
            internal_key::encode_seek_key(target, user_key, view_lsn);
            let i = self.index_seek(target);
            if i >= self.index.len() {
                return Ok(None);
            }
            let at = self.index.handle(i).offset;
            let image = self.block_image(i)?;
            let block = Block::decode_verified(&image).map_err(|e| e.at_file_offset(at))?;
            cursor.reset(&block);
            cursor
                .seek(&block, target)
                .map_err(|e| e.at_file_offset(at))?;
            if !cursor.valid() {
                return Err(ends_early(at));
            }
            let Some((found, lsn, kind)) = internal_key::decode(cursor.key()) else {
                return Err(bad_key(cursor.key(), at));
            };
            if found != user_key {
                return Ok(None);
            }
            value.extend_from_slice(cursor.value(&block));
            Ok(Some((kind, lsn)))
        })
    }

    /// A cursor over every entry, forward and backward, positioned nowhere (call a seek
    /// first).
    #[expect(
        clippy::iter_not_returning_iterator,
        reason = "a seekable cursor whose steps can fail, not an Iterator"
    )]
    pub fn iter(&self) -> SstIter<'_> {
        SstIter::new(self)
    }

    fn filter(&self) -> BloomFilter<'_> {
        BloomFilter::decode(&self.filter).expect("validated at open")
    }

    /// The first block whose last key is at or after `target`.
    pub(crate) fn index_seek(&self, target: &[u8]) -> usize {
        self.index.seek(target)
    }

    /// The image of data block `i`: from the cache, or read from the file, checked (crc32,
    /// tag, declared size), decompressed if need be, and cached. Errors carry file offsets.
    pub(crate) fn block_image(&self, i: usize) -> Result<Arc<[u8]>> {
        let handle = self.index.handle(i);
        if let Some((cache, number)) = &self.cache
            && let Some(image) = cache.get(*number, handle.offset)
        {
            return Ok(image);
        }
        self.data_block_reads.fetch_add(1, AtomicOrdering::Relaxed);
        let stored = read_handle_shared(&self.file, handle)?;
        let image = decode_stored(stored, self.format_version >= 2)
            .map_err(|e| e.at_file_offset(handle.offset))?;
        if let Some((cache, number)) = &self.cache {
            cache.insert(*number, handle.offset, Arc::clone(&image));
        }
        Ok(image)
    }
}

/// A data block whose last key is not the one its index entry names.
pub(crate) fn ends_early(at: u64) -> Error {
    Error::file_corruption(
        at,
        "sst data block last key",
        CorruptionKind::InvalidValue { found: at },
    )
}

/// A key that is not a well-formed internal key, in the block at `block_at`.
pub(crate) fn bad_key(bytes: &[u8], block_at: u64) -> Error {
    Error::file_corruption(
        block_at,
        "sst internal key",
        CorruptionKind::InvalidValue {
            found: bytes.len() as u64,
        },
    )
}

fn parse_key(bytes: &[u8], block_at: u64) -> Result<InternalKey> {
    InternalKey::from_encoded(bytes.to_vec()).ok_or_else(|| bad_key(bytes, block_at))
}

/// Reads the bytes a handle names. The handle was validated to lie inside the file.
fn read_handle(file: &FileRef, handle: BlockHandle) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; handle.size as usize];
    file.read_exact_at(&mut buf, handle.offset)
        .map_err(|e| Error::io("sst read", e))?;
    Ok(buf)
}

/// As [`read_handle`], straight into a shared buffer (one allocation, no copy), so that an
/// uncompressed block's bytes become its cached image as they are.
fn read_handle_shared(file: &FileRef, handle: BlockHandle) -> Result<Arc<[u8]>> {
    let mut buf: Arc<[u8]> = std::iter::repeat_n(0u8, handle.size as usize).collect();
    let dst = Arc::get_mut(&mut buf).expect("a fresh Arc has one owner");
    file.read_exact_at(dst, handle.offset)
        .map_err(|e| Error::io("sst read", e))?;
    Ok(buf)
}

/// Reads and validates the filter block; returns the bloom filter's bytes.
fn load_filter(file: &FileRef, footer: &Footer) -> Result<Vec<u8>> {
    let mut filter = read_handle(file, footer.filter)?;
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
    filter.truncate(crc_at);
    BloomFilter::decode(&filter).map_err(|e| e.at_file_offset(footer.filter.offset))?;
    Ok(filter)
}

/// Reads and validates the whole index block.
fn load_index(file: &FileRef, footer: &Footer) -> Result<Index> {
    let at = footer.index.offset;
    let bytes = read_handle(file, footer.index)?;
    let block = Block::decode(&bytes).map_err(|e| e.at_file_offset(at))?;
    let mut it = block.iter();
    it.seek_to_first().map_err(|e| e.at_file_offset(at))?;
    let mut index = Index::default();
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
        if let Some(prev) = index.len().checked_sub(1)
            && compare_internal(index.last_key(prev), key.encoded()) != Ordering::Less
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
        index.push(key.encoded(), handle);
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
