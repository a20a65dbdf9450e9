//! The SST data block's byte layout: its constants, the varint codec, and the entry header
//! decoder. Spec: docs/format/sstable.md ("Data block"); this file mirrors it.
//!
//! An uncompressed block is `entries, restart offsets (u32 LE each), restart count (u32 LE),
//! compression tag (u8) = 0, crc32 (u32 LE)`; the part before the tag is the block's *body*.
//! A compressed data block (format_version 2) is `zstd frame of the body, body size (u32 LE),
//! compression tag = 1, crc32`. Either way the crc covers every byte before it, the tag
//! included, and the tag sits 5 bytes before the end. Each
//! entry is `varint shared_len, varint unshared_len, varint value_len, unshared key bytes,
//! value bytes`; an entry at a restart offset has `shared_len == 0`. Varints are unsigned
//! LEB128 (docs/format/README.md, "Varints"), canonical (no over-long forms).
//!
//! Invariants the builder asserts and the reader validates: restart offsets start at 0,
//! strictly increase, and point inside the entries; every length fits its region.

use crate::error::{CorruptionKind, Error, Result};

/// Entries between two restart points unless configured otherwise.
pub const RESTART_INTERVAL_DEFAULT: usize = 16;
/// Bytes of one restart offset (`u32` LE).
pub const RESTART_OFFSET_SIZE: usize = 4;
/// Bytes of the restart count (`u32` LE).
pub const RESTART_COUNT_SIZE: usize = 4;
/// Bytes of the compression tag.
pub const COMPRESSION_TAG_SIZE: usize = 1;
/// Bytes of the crc32.
pub const CRC_SIZE: usize = 4;
/// Bytes after the restart count: compression tag then crc32.
pub const TRAILER_SIZE: usize = COMPRESSION_TAG_SIZE + CRC_SIZE;
/// The smallest block: an empty one (no entries, restart count 0, trailer).
pub const BLOCK_SIZE_MIN: usize = RESTART_COUNT_SIZE + TRAILER_SIZE;
/// Compression tag: the body is stored as it is.
pub const COMPRESSION_NONE: u8 = 0;
/// Compression tag: the body is stored as one zstd frame, followed by its size (data blocks
/// of format_version 2 only).
pub const COMPRESSION_ZSTD: u8 = 1;
/// Bytes of a compressed block's body size field (`u32` LE), just before the tag.
pub const BODY_SIZE_SIZE: usize = 4;
/// The largest body a compressed block may declare: 4 MiB. The writer stores larger bodies
/// uncompressed, and the reader refuses a larger declared size before allocating, so a
/// damaged or hostile file cannot make it allocate more than this for one block (an
/// uncompressed block is bounded by the file's own length instead).
pub const COMPRESSED_BODY_SIZE_MAX: usize = 4 << 20;
/// The longest varint of a `u64`.
pub const VARINT64_SIZE_MAX: usize = 10;

const _: () = assert!(TRAILER_SIZE == 5);
const _: () = assert!(BLOCK_SIZE_MIN == 9);
const _: () = assert!(COMPRESSED_BODY_SIZE_MAX <= u32::MAX as usize);

/// Appends `v` as an unsigned LEB128 varint: 7 bits per byte, least significant group
/// first, high bit set on every byte but the last.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Decodes a canonical varint of at most `u32::MAX` from the start of `bytes`: the value and
/// the bytes it took. `None` if it runs off the end, is over-long (a final `0x00` group after
/// the first byte), or exceeds `u32`.
pub fn get_varint32(bytes: &[u8]) -> Option<(u32, usize)> {
    let (v, len) = get_varint64(bytes)?;
    Some((u32::try_from(v).ok()?, len))
}

/// Decodes a canonical varint of a `u64` from the start of `bytes`, as [`get_varint32`].
pub fn get_varint64(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &b) in bytes.iter().take(VARINT64_SIZE_MAX).enumerate() {
        let group = u64::from(b & 0x7f);
        if i == VARINT64_SIZE_MAX - 1 && group > 1 {
            return None;
        }
        v |= group << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return None;
            }
            return Some((v, i + 1));
        }
    }
    None
}

/// The fixed part of one entry, decoded at `offset` of the entries region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryHeader {
    /// Bytes of the key shared with the previous entry's key.
    pub shared: usize,
    /// Key bytes stored in this entry.
    pub unshared: usize,
    /// Value bytes.
    pub value_len: usize,
    /// Offset of the unshared key bytes (the value follows them).
    pub key_start: usize,
}

impl EntryHeader {
    /// Offset of the value.
    pub fn value_start(&self) -> usize {
        self.key_start + self.unshared
    }

    /// Offset one past the entry.
    pub fn end(&self) -> usize {
        self.value_start() + self.value_len
    }

    /// Decodes the entry header at `offset` of `entries` and checks that the entry fits and
    /// that `shared <= prev_key_len`.
    pub fn decode(entries: &[u8], offset: usize, prev_key_len: usize) -> Result<Self> {
        let mut at = offset;
        let mut field = |what: &'static str| -> Result<usize> {
            let bytes = entries.get(at..).unwrap_or_default();
            let (v, len) = get_varint32(bytes).ok_or_else(|| {
                let found = bytes.first().copied().unwrap_or_default();
                Error::corruption(
                    at,
                    what,
                    CorruptionKind::InvalidValue {
                        found: found.into(),
                    },
                )
            })?;
            at += len;
            Ok(v as usize)
        };
        let shared = field("entry shared_len")?;
        let unshared = field("entry unshared_len")?;
        let value_len = field("entry value_len")?;
        if shared > prev_key_len {
            return Err(Error::corruption(
                offset,
                "entry shared_len",
                CorruptionKind::InvalidValue {
                    found: shared as u64,
                },
            ));
        }
        let header = Self {
            shared,
            unshared,
            value_len,
            key_start: at,
        };
        let needed = (at as u64) + (unshared as u64) + (value_len as u64);
        if needed > entries.len() as u64 {
            return Err(Error::corruption(
                offset,
                "entry key and value",
                CorruptionKind::Truncated {
                    needed,
                    available: entries.len() as u64,
                },
            ));
        }
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varint_known_encodings() {
        for (v, bytes) in [
            (0u64, &[0x00][..]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (u64::from(u32::MAX), &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out, bytes, "{v}");
            assert_eq!(get_varint64(bytes), Some((v, bytes.len())));
        }
    }

    #[test]
    fn varint_refuses_overlong_truncated_and_too_big() {
        assert_eq!(get_varint64(&[0x80, 0x00]), None, "over-long zero");
        assert_eq!(get_varint64(&[0x81, 0x80, 0x00]), None, "over-long one");
        assert_eq!(get_varint64(&[0x80]), None, "runs off the end");
        assert_eq!(get_varint64(&[]), None);
        assert_eq!(get_varint32(&[0x80, 0x80, 0x80, 0x80, 0x10]), None, "2^32");
        let mut max = Vec::new();
        put_varint(&mut max, u64::MAX);
        assert_eq!(get_varint64(&max), Some((u64::MAX, 10)));
        let mut over = max.clone();
        over[9] = 0x02;
        assert_eq!(get_varint64(&over), None, "past 64 bits");
    }

    proptest! {
        #[test]
        fn varint_round_trips(v: u64, tail: Vec<u8>) {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let len = out.len();
            out.extend_from_slice(&tail);
            prop_assert_eq!(get_varint64(&out), Some((v, len)));
        }
    }
}
