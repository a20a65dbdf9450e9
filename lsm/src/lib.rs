//! popdb-lsm: PopDB's write-optimized table engine, a log-structured merge tree.
//!
//! The engine takes writes stamped with an LSN (the log's sequence number, which is also the
//! version of every value it writes) and knows nothing of the log, Raft or the network; all
//! its I/O goes through popdb-io. Built so far, each tested on its own: the internal key
//! (the order every layer sorts by), the memtable (a concurrent multi-version skip list read
//! at LSN views), and SST files (data blocks, optionally zstd-compressed, bloom filter, index
//! block and footer; a writer, and a reader with point reads and iteration both ways through
//! a shared, sharded block cache). The tree itself (manifest, flush,
//! compaction, the engine API) is not built yet. Format: docs/format/sstable.md.

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
pub use manifest_state::{FileMeta, InvalidEdit, LEVELS_MAX, ManifestState, VersionEdit};
pub use memtable::{Memtable, MemtableEntry};
pub use memtable_iter::{MemtableRange, MemtableRangeRev};
pub use sst_format::{BlockHandle, FOOTER_SIZE, FORMAT_VERSION, FORMAT_VERSION_MIN, Footer, MAGIC};
pub use sst_iter::SstIter;
pub use sst_reader::{SstReadOptions, SstReader};
pub use sst_writer::{SstSummary, SstWriter, SstWriterOptions};

/// The block codec's layout constants, varints and entry decoder, for the fuzz crate and
/// format tests. Not a stable API.
#[cfg(feature = "internals")]
pub mod internals {
    pub use crate::block_format::*;
    pub use crate::sst_format::*;
}
