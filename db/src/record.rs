//! The Db's log records: the payload of every `Normal` WAL record the Db writes, and how it
//! is encoded. Spec: docs/format/db-records.md.
//!
//! A record is one of: a write (an atomic batch, or a transaction when it carries
//! conditions or an idempotency key), a table creation, a table drop. Tables are named by
//! id inside records: a table's id is the LSN of the record that created it, so ids are
//! never reused and replay sends each write to the incarnation it was meant for.

use crate::table::TableOptions;

/// A decoded Db log record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogRecord {
    /// Puts and deletes across tables, applied all or nothing, subject to conditions.
    Write(WriteRecord),
    /// Creates a table named `name`; its id is this record's LSN.
    CreateTable {
        /// The new table's name (validated by [`crate::table::validate_name`]).
        name: String,
        /// Its engine and options.
        options: TableOptions,
    },
    /// Drops the table with this id.
    DropTable {
        /// The table's id.
        id: u64,
    },
}

/// A batch or transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteRecord {
    /// When set, a resend of the same key returns the first result instead of applying.
    pub idempotency: Option<IdempotencyKey>,
    /// All must hold, in the state just before the record, for the writes to apply.
    pub conditions: Vec<Condition>,
    /// In order; the last write to a key of a table wins.
    pub writes: Vec<TableWrite>,
}

/// A client's name for one commit: a resend with the same key is the same commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey {
    /// The client's id (chosen by the client, e.g. random).
    pub client: u64,
    /// The client's sequence number of this commit.
    pub sequence: u64,
}

/// One put or delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableWrite {
    /// The table's id.
    pub table: u64,
    /// The key.
    pub key: Vec<u8>,
    /// `Some` stores the value, `None` deletes the key.
    pub value: Option<Vec<u8>>,
}

/// One condition of a transaction, on one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// The table's id.
    pub table: u64,
    /// What must hold.
    pub check: Check,
}

/// What a condition requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// The key exists with exactly this version.
    Version {
        /// The key.
        key: Vec<u8>,
        /// Its expected version.
        version: u64,
    },
    /// The key does not exist.
    Absent {
        /// The key.
        key: Vec<u8>,
    },
    /// The key exists (any version).
    Exists {
        /// The key.
        key: Vec<u8>,
    },
    /// No key in `[start, end)` (`end` `None`: unbounded) has a version above `since`.
    /// Catches keys written (inserted or updated) after `since`; a key deleted after it is
    /// caught by a key condition on it, which the interactive helper adds for every key it
    /// read.
    RangeUnchanged {
        /// First key of the range (inclusive).
        start: Vec<u8>,
        /// End of the range (exclusive); `None` for no end.
        end: Option<Vec<u8>>,
        /// The LSN the range was read at.
        since: u64,
    },
}

/// Why a record could not be decoded: the byte offset and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed Db log record at byte {offset}: {what}")]
pub struct DecodeError {
    /// Where in the payload.
    pub offset: usize,
    /// What was wrong.
    pub what: &'static str,
}

impl LogRecord {
    /// Appends the record's encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let _ = out;
        todo!("record codec")
    }

    /// The record's encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Decodes a payload. Never panics, never allocates more than `bytes.len()` allows.
    ///
    /// # Errors
    /// [`DecodeError`] on anything but a well-formed record of a known version.
    pub fn decode(bytes: &[u8]) -> Result<LogRecord, DecodeError> {
        let _ = bytes;
        todo!("record codec")
    }
}
