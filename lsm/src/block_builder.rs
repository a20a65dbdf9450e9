//! Builds one SST data block from entries added in increasing internal-key order. Layout:
//! docs/format/sstable.md ("Data block"), constants in `block_format.rs`.
//!
//! Invariants, asserted (a violation is a bug in the caller, and would write a block no
//! reader can search): keys strictly increase under [`compare_internal`]; the block stays
//! below 4 GiB, so every offset fits its `u32`; every length fits a `u32` varint.

use std::cmp::Ordering;

use crate::block_format::{COMPRESSION_NONE, RESTART_INTERVAL_DEFAULT, put_varint};
use crate::block_format::{RESTART_COUNT_SIZE, RESTART_OFFSET_SIZE, TRAILER_SIZE};
use crate::internal_key::compare_internal;

/// Accumulates entries and seals them into a block with [`BlockBuilder::finish`].
#[derive(Debug)]
pub struct BlockBuilder {
    /// The entries so far.
    buf: Vec<u8>,
    /// Offsets in `buf` of the entries that store their full key.
    restarts: Vec<u32>,
    restart_interval: usize,
    /// Entries since the last restart point.
    since_restart: usize,
    last_key: Vec<u8>,
    entry_count: usize,
}

impl Default for BlockBuilder {
    fn default() -> Self {
        Self::new(RESTART_INTERVAL_DEFAULT)
    }
}

impl BlockBuilder {
    /// A builder that stores a full key every `restart_interval` entries.
    ///
    /// # Panics
    /// If `restart_interval` is 0.
    pub fn new(restart_interval: usize) -> Self {
        assert!(restart_interval >= 1, "restart interval must be at least 1");
        Self {
            buf: Vec::new(),
            restarts: Vec::new(),
            restart_interval,
            since_restart: 0,
            last_key: Vec::new(),
            entry_count: 0,
        }
    }

    /// Appends an entry.
    ///
    /// # Panics
    /// If `key` does not sort strictly after the previous key under [`compare_internal`], or
    /// the block would reach 4 GiB.
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        if self.entry_count > 0 {
            assert!(
                compare_internal(&self.last_key, key) == Ordering::Less,
                "block keys out of order: {:02x?} then {key:02x?}",
                self.last_key
            );
        }
        let shared = if self.since_restart == self.restart_interval || self.entry_count == 0 {
            let offset = u32::try_from(self.buf.len());
            self.restarts
                .push(offset.expect("block offsets fit u32 (asserted below)"));
            self.since_restart = 0;
            0
        } else {
            common_prefix_len(&self.last_key, key)
        };
        let unshared = &key[shared..];
        put_varint(&mut self.buf, shared as u64);
        put_varint(&mut self.buf, len_u32(unshared.len(), "key") as u64);
        put_varint(&mut self.buf, len_u32(value.len(), "value") as u64);
        self.buf.extend_from_slice(unshared);
        self.buf.extend_from_slice(value);
        assert!(
            u32::try_from(self.size_estimate()).is_ok(),
            "block reached {} bytes, past its u32 offsets",
            self.size_estimate()
        );
        self.last_key.truncate(shared);
        self.last_key.extend_from_slice(unshared);
        self.since_restart += 1;
        self.entry_count += 1;
    }

    /// The entries added so far.
    pub fn entry_count(&self) -> usize {
        self.entry_count
    }

    /// Whether no entry was added.
    pub fn is_empty(&self) -> bool {
        self.entry_count == 0
    }

    /// The size the block would have if finished now.
    pub fn size_estimate(&self) -> usize {
        self.buf.len()
            + self.restarts.len() * RESTART_OFFSET_SIZE
            + RESTART_COUNT_SIZE
            + TRAILER_SIZE
    }

    /// The key of the last entry added (empty if none).
    pub fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    /// Seals the block: entries, restart offsets, restart count, compression tag, crc32.
    pub fn finish(self) -> Vec<u8> {
        let mut out = self.buf;
        out.reserve(self.restarts.len() * RESTART_OFFSET_SIZE + RESTART_COUNT_SIZE + TRAILER_SIZE);
        for offset in &self.restarts {
            out.extend_from_slice(&offset.to_le_bytes());
        }
        let count = u32::try_from(self.restarts.len()).expect("restarts are fewer than bytes");
        out.extend_from_slice(&count.to_le_bytes());
        out.push(COMPRESSION_NONE);
        let crc = popdb_io::crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn len_u32(len: usize, what: &str) -> u32 {
    u32::try_from(len).unwrap_or_else(|_| panic!("{what} of {len} bytes exceeds u32"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InternalKey, ValueKind};

    fn ikey(user: &[u8], lsn: u64) -> Vec<u8> {
        InternalKey::new(user, lsn, ValueKind::Put)
            .encoded()
            .to_vec()
    }

    #[test]
    fn empty_block_is_just_the_trailer() {
        let block = BlockBuilder::default().finish();
        assert_eq!(block.len(), 9);
        assert_eq!(&block[..5], &[0, 0, 0, 0, 0]);
    }

    #[test]
    fn shares_prefixes_and_restarts_on_schedule() {
        let mut b = BlockBuilder::new(2);
        b.add(&ikey(b"apple", 1), b"x");
        b.add(&ikey(b"apply", 1), b"y");
        b.add(&ikey(b"apricot", 1), b"z");
        // Entry 0: 3 varint bytes, 13 key bytes, 1 value byte.
        assert_eq!(b.restarts, [0, 30]);
        assert_eq!(&b.buf[17..20], &[4, 9, 1], "shares \"appl\"");
        assert_eq!(&b.buf[30..33], &[0, 15, 1], "a restart stores the full key");
        assert_eq!(b.entry_count(), 3);
    }

    #[test]
    #[should_panic(expected = "block keys out of order")]
    fn out_of_order_keys_panic() {
        let mut b = BlockBuilder::default();
        b.add(&ikey(b"b", 1), b"");
        b.add(&ikey(b"a", 1), b"");
    }

    #[test]
    #[should_panic(expected = "block keys out of order")]
    fn duplicate_keys_panic() {
        let mut b = BlockBuilder::default();
        b.add(&ikey(b"a", 5), b"");
        b.add(&ikey(b"a", 5), b"");
    }

    #[test]
    #[should_panic(expected = "restart interval")]
    fn zero_restart_interval_panics() {
        let _ = BlockBuilder::new(0);
    }
}
