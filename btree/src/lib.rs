//! popdb-btree: PopDB's read-optimized table engine, a copy-on-write B+tree in one file.
//!
//! [`Tree::open`] opens (or creates) the tree's file in a directory. [`Tree::apply`]
//! applies a batch stamped with an LSN by copying the path to each changed leaf into
//! memory, and publishes the result as an immutable root that read views pin
//! ([`Tree::read_view`], [`Tree::read_view_at`] over a small ring of recent roots).
//! [`Tree::checkpoint`] writes the tree under one root to free pages, syncs, and commits
//! it with the next meta page; reads then go straight to the pages through a read-only
//! map. A free list hands pages back only once no root, view or cursor can reach them and
//! the meta that freed them is durable.
//!
//! The engine takes writes stamped with an LSN, serves reads straight from a read-only map
//! of its file, and writes only through popdb-io's positional writes; it knows nothing of
//! the log, Raft or the network. The file is an array of pages of one size
//! ([`PageSize`], 4 KiB by default), each with a common header and a crc32:
//!
//! - two meta pages ([`Meta`], pages 0 and 1, alternated by checkpoints and chosen at open
//!   by [`recover_meta`]);
//! - leaf pages ([`LeafBuilder`], [`LeafPage`]): keys, versions and values or overflow
//!   references, behind a binary-searchable slot directory;
//! - branch pages ([`BranchBuilder`], [`BranchPage`]): separator keys and child
//!   references, each carrying the child's checksum;
//! - overflow pages ([`OverflowPage`], [`write_overflow_chain`], [`read_overflow_chain`])
//!   for values too large for a leaf;
//! - free-list pages ([`FreeListPage`]): freed page ids with the transaction that freed
//!   them.
//!
//! Readers validate every byte they rely on and return [`Error::Corruption`] naming the
//! page, the offset within it and the field, never a panic; they borrow the page and
//! allocate nothing. Builders assert their invariants. The page codecs are public so that
//! the fuzz crate and the format tests reach them, as the LSM's block codec is.
//!
//! Format: docs/format/btree.md (section 11 is the file-level protocol the tree follows).
//! Limits: docs/limits.md.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod apply;
mod branch_builder;
mod branch_page;
mod checkpoint;
mod error;
mod free_list;
mod fuzz_open;
mod invariants;
mod leaf_builder;
mod leaf_page;
mod meta;
mod node;
mod overflow;
mod page_format;
mod page_size;
mod pages;
mod pins;
mod range;
mod read_view;
mod search;
mod spare_pages;
mod tree;

pub use branch_builder::BranchBuilder;
pub use branch_page::BranchPage;
pub use checkpoint::FILE_PAGES_MAX;
pub use error::{Corruption, CorruptionKind, Error, Result};
pub use free_list::{FreeEntry, FreeListPage};
pub use invariants::TreeStats;
pub use leaf_builder::LeafBuilder;
pub use leaf_page::{LeafEntries, LeafEntry, LeafPage, LeafValue};
pub use meta::{META_READ_SIZE, Meta, MetaChoice, RootRef, recover_meta, select_meta};
pub use overflow::{OverflowPage, OverflowRef, read_overflow_chain, write_overflow_chain};
pub use page_format::{
    FORMAT_VERSION, LEVEL_MAX, MAGIC, PAGE_ID_MAX, PageHeader, PageId, PageRef, PageType,
    TREE_HEIGHT_MAX, TxnId, page_checksum, seal, verify_checksum, verify_parent_checksum,
};
pub use page_size::{
    ENTRIES_PER_PAGE_MIN, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, PAGE_SIZE_MIN, PageSize, VALUE_SIZE_MAX,
};
pub use range::{Direction, RangeIter};
pub use read_view::{ReadView, Versioned, prefix_bounds};
pub use tree::{
    BATCH_SIZE_MAX, BATCH_WRITES_MAX, CheckpointStats, FILE_NAME, LSN_MAX, ROOTS_RETAINED_DEFAULT,
    Stats, Tree, TreeOptions, TreeRecovery,
};

/// The page layout's offset constants and the `btree_file_open` fuzz hook
/// ([`internals::fuzz_file_open`]), for the fuzz crate and the format and replay tests. Not
/// a stable API.
#[cfg(feature = "internals")]
pub mod internals {
    pub use crate::fuzz_open::{
        CONTROL_RESEAL, CONTROL_RESEAL_REFS, CONTROL_WRITE, ENTRIES_MAX, FileOpenSummary,
        fuzz_file_open,
    };
    pub use crate::page_format::*;
}
