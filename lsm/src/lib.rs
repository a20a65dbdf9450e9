//! popdb-lsm: PopDB's write-optimized table engine, a log-structured merge tree.
//!
//! The engine takes writes stamped with an LSN (the log's sequence number, which is also the
//! version of every value it writes) and knows nothing of the log, Raft or the network; all
//! its I/O goes through popdb-io. Built so far, each tested on its own: the internal key
//! (the order every layer sorts by), the memtable (a concurrent multi-version skip list read
//! at LSN views), SST files (data blocks, optionally zstd-compressed, bloom filter, index
//! block and footer; a writer, and a reader with point reads and iteration both ways through
//! a shared, sharded block cache), and the manifest (the durable record of the level
//! structure: an append-only file of edits with a base, and the `CURRENT` pointer). The tree
//! itself (flush, compaction, the engine API) is not built yet. Formats:
//! docs/format/sstable.md, docs/format/manifest.md.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod block_builder;
mod block_cache;
mod block_compression;
mod block_format;
mod block_reader;
mod bloom;
mod error;
mod internal_key;
mod manifest;
mod manifest_codec;
mod manifest_format;
mod manifest_replay;
mod manifest_state;
mod memtable;
mod memtable_iter;
mod sst_format;
mod sst_iter;
mod sst_reader;
mod sst_writer;

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
pub use sst_format::{BlockHandle, FOOTER_SIZE, FORMAT_VERSION, FORMAT_VERSION_MIN, Footer, MAGIC};
pub use sst_iter::SstIter;
pub use sst_reader::{SstReadOptions, SstReader};
pub use sst_writer::{SstSummary, SstWriter, SstWriterOptions};

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
