//! popdb-wal: the one write-ahead log shared by every table of a PopDB database, and the
//! Raft log when PopDB is replicated.
//!
//! The log knows LSNs, terms, leader node ids, record kinds and opaque payloads, never
//! keys or tables. Records are appended at consecutive LSNs starting at 1, written by one
//! writer thread that gathers everything queued into one write and one fdatasync (group
//! commit), and read back by LSN. A group is synced if the log's `SyncPolicy` wants it or
//! any append in it asks `Durability::Sync`; appends that ask `Durability::NoSync` are only
//! written, and become durable with the next sync. It offers Raft's contract with
//! openraft's semantics: appends at given indexes, `truncate`, `purge` (also past the end),
//! the last purged id and a vote kept across restarts.
//!
//! Format: docs/format/wal.md. Durability: a record acknowledged with `durable: true` is on
//! the medium; a failed fsync, or a panic on the log's writer thread (in the log or in a
//! callback it runs), poisons the log until it is reopened, and no waiter is left waiting
//! on a request whose writer is gone; opening the log
//! truncates a torn tail (and says which LSNs it removed) and refuses to open on damage
//! anywhere else.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod format;
mod ids;
mod index;
mod options;
mod recovery;
mod scan;
mod segments;
mod state;
mod ticket;
mod wal;
mod writer;

pub use error::{Corruption, CorruptionKind, Error, Result};
pub use ids::{LogId, Lsn, NodeId, Record, RecordKind, Term};
pub use options::{Durability, SyncPolicy, WalOptions};
pub use recovery::{RecoveryReport, TornTail};
pub use state::VOTE_SIZE_MAX;
pub use ticket::{Appended, Ticket};
pub use wal::{Lead, NewRecord, OwnedLead, Wal, WalStats};

/// Decoder internals for the fuzz crate and format tests. Not a stable API.
#[cfg(feature = "internals")]
pub mod internals {
    pub use crate::format::*;
    pub use crate::scan::{RecordLoc, ScanEnd, ScanLimits, SegmentScan, scan_segment};
    pub use crate::state::LogState;
}
