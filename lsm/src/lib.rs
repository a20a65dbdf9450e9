//! popdb-lsm: PopDB's write-optimized table engine, a log-structured merge tree.
//!
//! The engine takes writes stamped with an LSN (the log's sequence number, which is also the
//! version of every value it writes) and knows nothing of the log, Raft or the network; all
//! its I/O goes through popdb-io. Built so far: the internal key, the order every layer of
//! the tree sorts by. Format: docs/format/sstable.md (as the SST lands).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod internal_key;

pub use internal_key::{InternalKey, KIND_DELETE, KIND_PUT, LSN_MAX, ValueKind, compare_internal};
