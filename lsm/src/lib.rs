//! popdb-lsm: PopDB's write-optimized table engine, a log-structured merge tree.
//!
//! The engine takes writes stamped with an LSN (the log's sequence number, which is also the
//! version of every value it writes) and knows nothing of the log, Raft or the network; all
//! its I/O goes through popdb-io.
//!
//! - [`Tree`]: open or create a tree in a directory; [`Tree::apply`] an atomic batch at an
//!   LSN; [`Tree::read_view`] for point reads ([`ReadView::get`], value and version) and
//!   range scans both ways ([`ReadView::scan`], [`ReadView::prefix`]);
//!   [`Tree::checkpoint`] and [`Tree::watermark`]; [`Tree::stats`].
//! - Background work is a step function, [`Tree::maintenance_step`] (flush a frozen
//!   memtable, else one compaction); a [`Scheduler`] drives it for many trees from one
//!   thread, tests drive it step by step.
//! - Pieces, each tested on its own: the internal key (the order every layer sorts by), the
//!   memtable (a multi-version skip list in an arena: one writer, lock-free readers), SST files (data blocks, bloom filter,
//!   index block, footer), the manifest (the log of version edits), leveled compaction.
//!
//! Formats: docs/format/sstable.md, docs/format/manifest.md. Limits: docs/limits.md.

// `deny`, not `forbid`: the arena skip list (`skiplist`, listed in lsm/UNSAFE.md) is the one
// module that relaxes it.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod block_builder;
mod block_cache;
mod block_compression;
mod block_format;
mod block_reader;
mod bloom;
mod compaction;
mod cursor;
mod error;
mod flush;
mod install;
mod internal_key;
mod manifest;
mod manifest_codec;
mod manifest_format;
mod manifest_replay;
mod manifest_state;
mod memtable;
mod memtable_iter;
mod merge;
mod options;
mod output;
mod prefault;
mod range;
mod read_view;
mod scheduler;
mod skiplist;
mod sst_format;
mod sst_iter;
mod sst_reader;
mod sst_writer;
mod stats;
mod tree;
mod version;

pub use block_builder::BlockBuilder;
pub use block_cache::{BlockCache, ENTRY_CHARGE_OVERHEAD, SHARD_CAPACITY_MIN, SHARD_COUNT_MAX};
pub use block_compression::Compression;
pub use block_format::COMPRESSED_BODY_SIZE_MAX;
pub use block_reader::{Block, BlockIter};
pub use bloom::{BITS_PER_KEY_DEFAULT, BloomBuilder, BloomFilter};
pub use error::{Corruption, CorruptionKind, Error, Result};
pub use internal_key::{InternalKey, KIND_DELETE, KIND_PUT, LSN_MAX, ValueKind, compare_internal};
pub use manifest::{
    FileMeta, InvalidEdit, LEVELS_MAX, Manifest, ManifestOptions, ManifestRecovery, ManifestState,
    TornTail, VersionEdit,
};
pub use memtable::{Memtable, MemtableEntry};
pub use memtable_iter::{MemtableRange, MemtableRangeRev};
pub use merge::Direction;
pub use options::{
    BATCH_SIZE_MAX, BATCH_WRITES_MAX, BLOCK_CACHE_SIZE_DEFAULT, KEY_SIZE_MAX, LEVELS_COUNT,
    TreeOptions, VALUE_SIZE_MAX,
};
pub use range::RangeIter;
pub use read_view::{ReadView, Versioned};
pub use scheduler::Scheduler;
pub use sst_format::{BlockHandle, FOOTER_SIZE, FORMAT_VERSION, FORMAT_VERSION_MIN, Footer, MAGIC};
pub use sst_iter::SstIter;
pub use sst_reader::{SstReadOptions, SstReader};
pub use sst_writer::{SstSummary, SstWriter, SstWriterOptions};
pub use stats::{LevelStats, TreeStats};
pub use tree::{Progress, Tree, TreeRecovery};

/// The block codec's layout constants, varints and entry decoder, and the manifest's layout,
/// edit codec and file replay, for the fuzz crate and format tests. Not a stable API.
#[cfg(feature = "internals")]
pub mod internals {
    pub use crate::block_format::*;
    pub use crate::sst_format::*;

    /// The manifest's layout constants, `CURRENT` and header codecs, frames, edit codec and
    /// whole-file replay (a module of its own: its `MAGIC` and `FORMAT_VERSION` are not the
    /// SST's).
    pub mod manifest {
        pub use crate::manifest::base_edits;
        pub use crate::manifest_codec::*;
        pub use crate::manifest_format::*;
        pub use crate::manifest_replay::{Replay, replay};
    }
}
