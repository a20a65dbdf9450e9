//! How a tree is shaped and bounded: [`TreeOptions`] and the limits every write is checked
//! against. The limits are documented in docs/limits.md; a write beyond one gets
//! [`Error::InvalidArgument`](crate::Error::InvalidArgument) naming the limit, and nothing is
//! applied.

use std::sync::Arc;

use crate::block_cache::BlockCache;
use crate::sst_writer::SstWriterOptions;

/// Bytes of the block cache [`TreeOptions::default`] makes for a tree of its own.
pub const BLOCK_CACHE_SIZE_DEFAULT: usize = 64 * 1024 * 1024;

/// The longest user key, in bytes.
pub const KEY_SIZE_MAX: usize = 16 * 1024;
/// The longest value, in bytes.
pub const VALUE_SIZE_MAX: usize = 1024 * 1024;
/// The most writes in one batch.
pub const BATCH_WRITES_MAX: usize = 1 << 20;
/// The most bytes of keys and values in one batch.
pub const BATCH_SIZE_MAX: usize = 64 * 1024 * 1024;
/// Levels of the tree: L0 (flushed memtables, possibly overlapping) and L1 to L6 (each one
/// sorted run).
pub const LEVELS_COUNT: usize = 7;

/// How a tree is shaped. [`TreeOptions::default`] suits a table of a few GiB; tests shrink
/// the sizes to exercise flushes and compactions with little data.
#[derive(Clone, Debug)]
pub struct TreeOptions {
    /// A memtable is frozen (and queued for flush) once it holds about this many bytes.
    pub memtable_size_max: usize,
    /// Frozen memtables allowed to wait for flush before writes stall (the writer flushes
    /// one itself).
    pub frozen_count_max: usize,
    /// L0 files that make L0 worth compacting into L1.
    pub l0_compaction_trigger: usize,
    /// L0 files at which a write first does a compaction step itself (a slowdown).
    pub l0_slowdown_trigger: usize,
    /// L0 files at which writes stall until compaction brings L0 below it.
    pub l0_stop_trigger: usize,
    /// Target bytes of L1; each deeper level targets `level_size_ratio` times the one above.
    pub level_size_base: u64,
    /// Growth factor between the targets of adjacent levels.
    pub level_size_ratio: u64,
    /// Compaction cuts its output into files of about this many bytes.
    pub target_file_size: u64,
    /// How SSTs are written: block size, restart interval, bloom bits per key.
    pub sst: SstWriterOptions,
    /// The tree is log-backed: its owner logs every batch and, after a reopen, replays its
    /// log from the watermark with the same LSNs (the Db). A reopened tree then reads at its
    /// watermark and takes the replayed batches again (its SSTs may already hold some: the
    /// copies are identical). Off (the default), the tree's files are its own record: a
    /// reopened tree reads every batch its SSTs hold (flushes keep them a prefix of the
    /// applied batches), through [`Tree::last_applied`](crate::Tree::last_applied), and each
    /// flush advances the watermark to its freeze point (so compactions drop what it shadows
    /// and [`Tree::read_view_at`](crate::Tree::read_view_at) reaches back only that far).
    pub log_backed: bool,
    /// Flush a frozen memtable only once the owner's log is durable through every write in
    /// it ([`Tree::set_durable_lsn`](crate::Tree::set_durable_lsn)), so that no SST holds a
    /// write a crash could take from a log synced lazily. Needs `log_backed`.
    pub flush_needs_durable_lsn: bool,
    /// The manifest starts a fresh file once the edits since its base pass this many bytes.
    pub manifest_rotate_size: u64,
    /// The cache data blocks are read through. Share one among many trees (the Db does) to
    /// give them one memory budget; the default makes a cache of
    /// [`BLOCK_CACHE_SIZE_DEFAULT`] bytes for this tree alone.
    pub block_cache: Arc<BlockCache>,
}

impl Default for TreeOptions {
    fn default() -> Self {
        Self {
            memtable_size_max: 64 * 1024 * 1024,
            frozen_count_max: 2,
            l0_compaction_trigger: 4,
            l0_slowdown_trigger: 12,
            l0_stop_trigger: 20,
            level_size_base: 256 * 1024 * 1024,
            level_size_ratio: 10,
            target_file_size: 64 * 1024 * 1024,
            sst: SstWriterOptions::default(),
            log_backed: false,
            flush_needs_durable_lsn: false,
            manifest_rotate_size: 4 * 1024 * 1024,
            block_cache: BlockCache::new(BLOCK_CACHE_SIZE_DEFAULT),
        }
    }
}

impl TreeOptions {
    /// Checks the options hang together; the message names the first that does not.
    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        if self.memtable_size_max == 0 {
            return Err("memtable_size_max must be at least 1");
        }
        if self.frozen_count_max == 0 {
            return Err("frozen_count_max must be at least 1");
        }
        if self.l0_compaction_trigger == 0 {
            return Err("l0_compaction_trigger must be at least 1");
        }
        if self.l0_slowdown_trigger < self.l0_compaction_trigger {
            return Err("l0_slowdown_trigger must be at least l0_compaction_trigger");
        }
        if self.l0_stop_trigger < self.l0_slowdown_trigger {
            return Err("l0_stop_trigger must be at least l0_slowdown_trigger");
        }
        if self.level_size_base == 0 || self.level_size_ratio < 2 {
            return Err("level_size_base must be at least 1 and level_size_ratio at least 2");
        }
        if self.target_file_size == 0 {
            return Err("target_file_size must be at least 1");
        }
        if self.sst.block_size == 0 || self.sst.block_size > 1024 * 1024 {
            return Err("sst.block_size must be between 1 and 1 MiB");
        }
        if self.flush_needs_durable_lsn && !self.log_backed {
            return Err("flush_needs_durable_lsn needs log_backed");
        }
        if self.sst.restart_interval == 0 {
            return Err("sst.restart_interval must be at least 1");
        }
        Ok(())
    }

    /// The byte target of level `level` (1 or deeper).
    pub(crate) fn level_target(&self, level: usize) -> u64 {
        debug_assert!(level >= 1, "L0 is sized by file count");
        let mut target = self.level_size_base;
        for _ in 1..level {
            target = target.saturating_mul(self.level_size_ratio);
        }
        target
    }
}
