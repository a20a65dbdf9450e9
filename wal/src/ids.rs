//! The log's identifiers: LSNs, terms, node ids, and the log id that joins them.

use std::fmt;

/// A log sequence number: the index of a record in the log (the Raft index). LSNs start
/// at 1 and are consecutive; "none" is `None`, never `Lsn(0)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The first LSN of a log.
    pub const FIRST: Lsn = Lsn(1);

    /// The LSN after this one.
    ///
    /// # Panics
    /// On overflow (2^64 records cannot be written).
    pub fn next(self) -> Lsn {
        Lsn(self.0.checked_add(1).expect("LSN space exhausted"))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A Raft term. Records written without Raft use term 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term(pub u64);

/// A node id: the leader that wrote a record. Records written without Raft use 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

/// The identity of a record: its LSN and the leader (term, node) that wrote it — openraft's
/// `LogId`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LogId {
    /// The record's LSN.
    pub lsn: Lsn,
    /// The term of the leader that wrote it.
    pub term: Term,
    /// The node id of the leader that wrote it.
    pub node: NodeId,
}

/// What a record holds. The log never interprets payloads; the kind lets the layers above
/// tell their records apart without decoding them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// An application record (a Db batch, transaction or catalog change).
    Normal,
    /// Raft's blank entry, written by a new leader.
    Blank,
    /// Raft's membership change.
    Membership,
}

impl RecordKind {
    /// The on-disk tag.
    pub fn tag(self) -> u8 {
        match self {
            RecordKind::Normal => 1,
            RecordKind::Blank => 2,
            RecordKind::Membership => 3,
        }
    }

    /// The kind for an on-disk tag, if the tag is known.
    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(RecordKind::Normal),
            2 => Some(RecordKind::Blank),
            3 => Some(RecordKind::Membership),
            _ => None,
        }
    }
}

/// A record of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its LSN, term and leader.
    pub id: LogId,
    /// What it holds.
    pub kind: RecordKind,
    /// Opaque bytes.
    pub payload: Vec<u8>,
}
