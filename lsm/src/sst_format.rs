//! The SST file's layout: the footer's fields, the block handle stored in the index, and the
//! filter block's checksum. Spec: docs/format/sstable.md ("File layout", "Index block",
//! "Filter block", "Footer"); this file mirrors it.
//!
//! A file is `data_block*, filter_block, index_block, footer`, packed with no gaps. The footer
//! is the last [`FOOTER_SIZE`] bytes: handles of the index and filter blocks, the entry count,
//! the smallest and largest LSN, then the magic, `format_version` and a crc32 of every footer
//! byte before it. Magic and version sit at a fixed distance from the end of the file so that
//! any later version's reader finds them.
//!
//! Invariants the writer asserts and [`Footer::decode`] validates: the filter block follows
//! the data blocks, the index block follows the filter block and ends where the footer starts;
//! an empty file (no entries) has both LSNs 0, otherwise `1 <= smallest <= largest <=
//! LSN_MAX`.

use crate::error::{CorruptionKind, Error, Result};
use crate::internal_key::LSN_MAX;

/// The magic: ASCII `POPDBSST`, at footer offset 48.
pub const MAGIC: [u8; 8] = *b"POPDBSST";
/// The `format_version` this build writes, and the newest it reads. Version 2 added
/// compressed data blocks (compression tag 1); the layout is otherwise version 1's.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest `format_version` this build reads.
pub const FORMAT_VERSION_MIN: u32 = 1;

/// Footer offset of `index_offset` (`u64`).
pub const INDEX_OFFSET_AT: usize = 0;
/// Footer offset of `index_size` (`u32`).
pub const INDEX_SIZE_AT: usize = INDEX_OFFSET_AT + 8;
/// Footer offset of `filter_size` (`u32`).
pub const FILTER_SIZE_AT: usize = INDEX_SIZE_AT + 4;
/// Footer offset of `filter_offset` (`u64`).
pub const FILTER_OFFSET_AT: usize = FILTER_SIZE_AT + 4;
/// Footer offset of `entry_count` (`u64`).
pub const ENTRY_COUNT_AT: usize = FILTER_OFFSET_AT + 8;
/// Footer offset of `smallest_lsn` (`u64`).
pub const SMALLEST_LSN_AT: usize = ENTRY_COUNT_AT + 8;
/// Footer offset of `largest_lsn` (`u64`).
pub const LARGEST_LSN_AT: usize = SMALLEST_LSN_AT + 8;
/// Footer offset of the magic (8 bytes).
pub const MAGIC_AT: usize = LARGEST_LSN_AT + 8;
/// Footer offset of `format_version` (`u32`).
pub const VERSION_AT: usize = MAGIC_AT + 8;
/// Footer offset of the crc32 (`u32`) of footer bytes `[0, CRC_AT)`.
pub const CRC_AT: usize = VERSION_AT + 4;
/// Bytes of the footer.
pub const FOOTER_SIZE: usize = CRC_AT + 4;

/// Bytes of an index entry's value: `offset` (`u64`) then `size` (`u32`).
pub const HANDLE_SIZE: usize = 12;
/// Bytes of the crc32 after the bloom filter in the filter block.
pub const FILTER_CRC_SIZE: usize = 4;
/// Target size of a data block unless configured otherwise.
pub const BLOCK_SIZE_DEFAULT: usize = 4096;

const _: () = assert!(FOOTER_SIZE == 64);
const _: () = assert!(FOOTER_SIZE.is_multiple_of(8));
const _: () = assert!(MAGIC_AT.is_multiple_of(8));

/// Where a block sits in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHandle {
    /// File offset of the block's first byte.
    pub offset: u64,
    /// Bytes of the block, trailer included.
    pub size: u32,
}

impl BlockHandle {
    /// The index entry's value: `offset` (`u64` LE) then `size` (`u32` LE).
    pub fn encode(self) -> [u8; HANDLE_SIZE] {
        let mut out = [0u8; HANDLE_SIZE];
        out[..8].copy_from_slice(&self.offset.to_le_bytes());
        out[8..].copy_from_slice(&self.size.to_le_bytes());
        out
    }

    /// Decodes an index entry's value; `None` unless it is exactly 12 bytes.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != HANDLE_SIZE {
            return None;
        }
        Some(Self {
            offset: u64_at(bytes, 0),
            size: u32_at(bytes, 8),
        })
    }

    /// One past the block's last byte.
    pub fn end(self) -> u64 {
        self.offset.saturating_add(u64::from(self.size))
    }
}

/// The decoded footer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer {
    /// The index block.
    pub index: BlockHandle,
    /// The filter block (bloom filter, then its crc32).
    pub filter: BlockHandle,
    /// Entries in the file (every version and tombstone counts).
    pub entry_count: u64,
    /// The smallest LSN of any entry; 0 if the file is empty.
    pub smallest_lsn: u64,
    /// The largest LSN of any entry; 0 if the file is empty.
    pub largest_lsn: u64,
}

impl Footer {
    /// Encodes the footer, crc32 last.
    ///
    /// # Panics
    /// If the invariants in the module header do not hold (a writer bug).
    pub fn encode(&self) -> [u8; FOOTER_SIZE] {
        assert_eq!(
            self.filter.end(),
            self.index.offset,
            "index block must follow the filter block"
        );
        check_lsns(self).expect("the writer tracks LSNs of the entries it wrote");
        let mut out = [0u8; FOOTER_SIZE];
        out[INDEX_OFFSET_AT..INDEX_SIZE_AT].copy_from_slice(&self.index.offset.to_le_bytes());
        out[INDEX_SIZE_AT..FILTER_SIZE_AT].copy_from_slice(&self.index.size.to_le_bytes());
        out[FILTER_SIZE_AT..FILTER_OFFSET_AT].copy_from_slice(&self.filter.size.to_le_bytes());
        out[FILTER_OFFSET_AT..ENTRY_COUNT_AT].copy_from_slice(&self.filter.offset.to_le_bytes());
        out[ENTRY_COUNT_AT..SMALLEST_LSN_AT].copy_from_slice(&self.entry_count.to_le_bytes());
        out[SMALLEST_LSN_AT..LARGEST_LSN_AT].copy_from_slice(&self.smallest_lsn.to_le_bytes());
        out[LARGEST_LSN_AT..MAGIC_AT].copy_from_slice(&self.largest_lsn.to_le_bytes());
        out[MAGIC_AT..VERSION_AT].copy_from_slice(&MAGIC);
        out[VERSION_AT..CRC_AT].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        let crc = popdb_io::crc32(&out[..CRC_AT]);
        out[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and validates the footer of a file of `file_len` bytes, read from file offset
    /// `at = file_len - FOOTER_SIZE`. Checks, in order: magic, version (from
    /// [`FORMAT_VERSION_MIN`] to [`FORMAT_VERSION`]; `footer_version` reads it), crc32, the
    /// LSN range,
    /// and that the filter and index blocks tile the bytes before the footer as specified.
    /// Errors carry file offsets. Requires `file_len >= FOOTER_SIZE` (the reader checks it).
    pub fn decode(bytes: &[u8; FOOTER_SIZE], file_len: u64) -> Result<Self> {
        let at = file_len.saturating_sub(FOOTER_SIZE as u64);
        let field = |off: usize| at + off as u64;
        let magic: [u8; 8] = bytes[MAGIC_AT..VERSION_AT]
            .try_into()
            .expect("8 bytes by the constants");
        if magic != MAGIC {
            return Err(Error::file_corruption(
                field(MAGIC_AT),
                "sst magic",
                CorruptionKind::BadMagic { found: magic },
            ));
        }
        let version = u32_at(bytes, VERSION_AT);
        if !(FORMAT_VERSION_MIN..=FORMAT_VERSION).contains(&version) {
            return Err(Error::file_corruption(
                field(VERSION_AT),
                "sst format_version",
                CorruptionKind::UnsupportedVersion {
                    found: version,
                    max: FORMAT_VERSION,
                },
            ));
        }
        let expected = u32_at(bytes, CRC_AT);
        let actual = popdb_io::crc32(&bytes[..CRC_AT]);
        if expected != actual {
            return Err(Error::file_corruption(
                field(CRC_AT),
                "sst footer crc32",
                CorruptionKind::ChecksumMismatch { expected, actual },
            ));
        }
        let footer = Self {
            index: BlockHandle {
                offset: u64_at(bytes, INDEX_OFFSET_AT),
                size: u32_at(bytes, INDEX_SIZE_AT),
            },
            filter: BlockHandle {
                offset: u64_at(bytes, FILTER_OFFSET_AT),
                size: u32_at(bytes, FILTER_SIZE_AT),
            },
            entry_count: u64_at(bytes, ENTRY_COUNT_AT),
            smallest_lsn: u64_at(bytes, SMALLEST_LSN_AT),
            largest_lsn: u64_at(bytes, LARGEST_LSN_AT),
        };
        check_lsns(&footer).map_err(|(off, what, found)| {
            Error::file_corruption(field(off), what, CorruptionKind::InvalidValue { found })
        })?;
        let invalid = |off: usize, what: &'static str, found: u64| {
            Err(Error::file_corruption(
                field(off),
                what,
                CorruptionKind::InvalidValue { found },
            ))
        };
        // The index block ends where the footer starts.
        if footer.index.end() != at {
            return invalid(INDEX_SIZE_AT, "sst index handle", footer.index.end());
        }
        // The filter block ends where the index block starts (so it also lies in the file).
        if footer.filter.end() != footer.index.offset {
            return invalid(FILTER_SIZE_AT, "sst filter handle", footer.filter.end());
        }
        if (footer.filter.size as usize) < FILTER_CRC_SIZE + 2 {
            return invalid(FILTER_SIZE_AT, "sst filter size", footer.filter.size.into());
        }
        Ok(footer)
    }
}

/// The `format_version` field of footer bytes (meaningful once [`Footer::decode`] accepted
/// them).
pub fn footer_version(bytes: &[u8; FOOTER_SIZE]) -> u32 {
    u32_at(bytes, VERSION_AT)
}

/// Checks the LSN fields: `(footer offset, field, value)` of the first bad one.
fn check_lsns(f: &Footer) -> std::result::Result<(), (usize, &'static str, u64)> {
    if f.entry_count == 0 {
        if f.smallest_lsn != 0 {
            return Err((SMALLEST_LSN_AT, "sst smallest_lsn", f.smallest_lsn));
        }
        if f.largest_lsn != 0 {
            return Err((LARGEST_LSN_AT, "sst largest_lsn", f.largest_lsn));
        }
        return Ok(());
    }
    if f.smallest_lsn == 0 {
        return Err((SMALLEST_LSN_AT, "sst smallest_lsn", 0));
    }
    if f.largest_lsn > LSN_MAX {
        return Err((LARGEST_LSN_AT, "sst largest_lsn", f.largest_lsn));
    }
    if f.smallest_lsn > f.largest_lsn {
        return Err((SMALLEST_LSN_AT, "sst smallest_lsn", f.smallest_lsn));
    }
    Ok(())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Footer {
        Footer {
            filter: BlockHandle {
                offset: 100,
                size: 13,
            },
            index: BlockHandle {
                offset: 113,
                size: 30,
            },
            entry_count: 7,
            smallest_lsn: 3,
            largest_lsn: 9,
        }
    }

    #[test]
    fn footer_round_trips_and_every_byte_flip_is_refused() {
        let f = sample();
        let bytes = f.encode();
        let len = 143 + FOOTER_SIZE as u64;
        assert_eq!(Footer::decode(&bytes, len).unwrap(), f);
        assert_eq!(&bytes[MAGIC_AT..VERSION_AT], b"POPDBSST");
        for at in 0..FOOTER_SIZE {
            let mut bad = bytes;
            bad[at] ^= 0x01;
            assert!(Footer::decode(&bad, len).is_err(), "flip at {at} accepted");
        }
    }

    fn with_version(version: u32) -> [u8; FOOTER_SIZE] {
        let mut bytes = sample().encode();
        bytes[VERSION_AT..CRC_AT].copy_from_slice(&version.to_le_bytes());
        let crc = popdb_io::crc32(&bytes[..CRC_AT]);
        bytes[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn newer_and_older_versions_are_unsupported() {
        for version in [0, FORMAT_VERSION + 1, u32::MAX] {
            let Err(Error::Corruption(c)) = Footer::decode(&with_version(version), 207) else {
                panic!("version {version} accepted");
            };
            assert_eq!(
                c.kind,
                CorruptionKind::UnsupportedVersion {
                    found: version,
                    max: FORMAT_VERSION
                }
            );
            assert_eq!(c.offset, 143 + VERSION_AT as u64);
        }
    }

    #[test]
    fn every_supported_version_decodes() {
        for version in FORMAT_VERSION_MIN..=FORMAT_VERSION {
            let bytes = with_version(version);
            assert_eq!(Footer::decode(&bytes, 207).unwrap(), sample());
            assert_eq!(footer_version(&bytes), version);
        }
    }

    #[test]
    fn handles_round_trip() {
        let h = BlockHandle {
            offset: 0x0102_0304_0506_0708,
            size: 0x0a0b_0c0d,
        };
        assert_eq!(BlockHandle::decode(&h.encode()), Some(h));
        assert_eq!(BlockHandle::decode(&[0; 11]), None);
    }
}
