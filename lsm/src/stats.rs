//! What a tree reports about itself: sizes per level, amplification, stalls.
//!
//! Counters are relaxed atomics bumped on the paths they count; [`TreeStats`] is a snapshot
//! assembled from them and the current level structure. Definitions (also in the docs of
//! each field): write amplification is bytes written to SSTs (flushes and compactions) over
//! bytes of keys and values applied; read amplification is SST probes per point read (bloom
//! filter rejections excluded); space amplification is the bytes of all SSTs over the bytes
//! of the deepest non-empty level, which after a full compaction holds one copy of the data.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::options::LEVELS_COUNT;

/// The counters a tree bumps as it works.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) bytes_applied: AtomicU64,
    pub(crate) bytes_flushed: AtomicU64,
    pub(crate) bytes_compacted_read: AtomicU64,
    pub(crate) bytes_compacted_written: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) compactions: AtomicU64,
    pub(crate) trivial_moves: AtomicU64,
    pub(crate) stalls: AtomicU64,
    pub(crate) slowdowns: AtomicU64,
    pub(crate) gets: AtomicU64,
    pub(crate) sst_probes: AtomicU64,
    pub(crate) scans: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn count_get(&self) {
        Self::add(&self.gets, 1);
    }

    pub(crate) fn count_sst_probe(&self) {
        Self::add(&self.sst_probes, 1);
    }

    pub(crate) fn count_scan(&self) {
        Self::add(&self.scans, 1);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// One level's shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LevelStats {
    /// SSTs in the level.
    pub files: usize,
    /// Bytes of those SSTs.
    pub bytes: u64,
}

/// A snapshot of a tree's shape and work.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TreeStats {
    /// Per level, L0 first.
    pub levels: [LevelStats; LEVELS_COUNT],
    /// Frozen memtables waiting for flush.
    pub frozen_memtables: usize,
    /// Approximate bytes held by all memtables: their versions' nodes.
    pub memtable_bytes: usize,
    /// Arena bytes all memtables hold: their nodes, the unused tails of arena blocks and
    /// each one's block allocated ahead (see [`crate::Memtable::allocated_bytes`]).
    pub memtable_allocated_bytes: usize,
    /// The watermark: every write at or below it is in the tree's files.
    pub watermark: Option<u64>,
    /// Bytes of keys and values applied since open.
    pub bytes_applied: u64,
    /// Bytes of SSTs written by flushes since open.
    pub bytes_flushed: u64,
    /// Bytes of SSTs read by compactions since open.
    pub bytes_compacted_read: u64,
    /// Bytes of SSTs written by compactions since open.
    pub bytes_compacted_written: u64,
    /// Flushes since open.
    pub flushes: u64,
    /// Compactions (rewrites and trivial moves) since open.
    pub compactions: u64,
    /// Compactions that moved a file down a level without rewriting it.
    pub trivial_moves: u64,
    /// Writes that stalled: too many frozen memtables or L0 files, so the writer flushed or
    /// compacted itself before returning.
    pub stalls: u64,
    /// Writes slowed by a compaction step because L0 passed its slowdown trigger.
    pub slowdowns: u64,
    /// Point reads since open.
    pub gets: u64,
    /// SSTs searched by point reads since open (bloom rejections excluded).
    pub sst_probes: u64,
    /// Range scans started since open.
    pub scans: u64,
    /// Block cache lookups that hit, since the cache was made (of every tree sharing it).
    pub cache_hits: u64,
    /// Block cache lookups that missed (a positional read of the file followed).
    pub cache_misses: u64,
}

impl TreeStats {
    /// SST bytes written per byte applied; `None` before the first write.
    pub fn write_amplification(&self) -> Option<f64> {
        (self.bytes_applied > 0).then(|| {
            (self.bytes_flushed + self.bytes_compacted_written) as f64 / self.bytes_applied as f64
        })
    }

    /// SSTs searched per point read; `None` before the first read.
    pub fn read_amplification(&self) -> Option<f64> {
        (self.gets > 0).then(|| self.sst_probes as f64 / self.gets as f64)
    }

    /// Bytes of all SSTs over the bytes of the deepest non-empty level; `None` when empty.
    pub fn space_amplification(&self) -> Option<f64> {
        let total: u64 = self.levels.iter().map(|l| l.bytes).sum();
        let last = self.levels.iter().rev().find(|l| l.bytes > 0)?;
        Some(total as f64 / last.bytes as f64)
    }

    /// Share of block cache lookups that hit; `None` before the first lookup.
    pub fn cache_hit_rate(&self) -> Option<f64> {
        let lookups = self.cache_hits + self.cache_misses;
        (lookups > 0).then(|| self.cache_hits as f64 / lookups as f64)
    }

    /// Bytes of all SSTs.
    pub fn sst_bytes(&self) -> u64 {
        self.levels.iter().map(|l| l.bytes).sum()
    }
}
