//! The Db's errors. An engine's or the log's error is carried whole, so the caller can
//! still tell a corruption (naming the file and page) from a refused write or an i/o
//! failure. Two failures of a write are never confused: [`Error::Conflict`] (certainly not
//! applied) and [`Error::Unknown`] (it may have applied).

use std::sync::Arc;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the Db.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The LSM engine failed (see its error for what the caller can do).
    #[error(transparent)]
    Lsm(#[from] popdb_lsm::Error),
    /// The B+tree engine failed (see its error for what the caller can do).
    #[error(transparent)]
    Btree(#[from] popdb_btree::Error),
    /// The log failed (see its error; a failed fsync poisons it until the Db is reopened).
    #[error(transparent)]
    Wal(#[from] popdb_wal::Error),
    /// A caller's argument or option is invalid; nothing was done.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A request exceeds a documented limit (docs/limits.md); nothing was done.
    #[error("{limit} limit exceeded: {actual} > {max}")]
    LimitExceeded {
        /// The limit's name, as docs/limits.md gives it.
        limit: &'static str,
        /// What was asked.
        actual: u64,
        /// The limit.
        max: u64,
    },
    /// No table has this name (or id).
    #[error("unknown table {0}")]
    UnknownTable(String),
    /// A table of this name exists.
    #[error("table {0} exists")]
    TableExists(String),
    /// A transaction's condition failed: it was certainly not applied (safe to retry).
    #[error("conflict: condition {condition} failed at LSN {lsn}; nothing was applied")]
    Conflict {
        /// The index of the first condition that failed.
        condition: u32,
        /// The LSN the transaction was logged at (and aborted at).
        lsn: u64,
    },
    /// The write may or may not have applied (the log failed after accepting it, or the Db
    /// shut down): read to find out, or resend with the same idempotency key.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// An earlier failure stopped the Db's writes; reads go on. Reopen the Db to recover.
    #[error("the database is poisoned and refuses writes: {cause}")]
    Poisoned {
        /// What poisoned it.
        cause: Arc<Error>,
    },
    /// The Db opened read-only (it could not set aside space; see the reason) and refuses
    /// writes; reads go on. Free space and reopen.
    #[error("the database is read-only: {0}")]
    ReadOnly(String),
    /// A file of the Db is damaged; nothing was changed.
    #[error("corruption in {file}: {what}")]
    Corruption {
        /// The file.
        file: String,
        /// What is wrong.
        what: String,
    },
    /// An operating-system i/o error, with what the Db was doing.
    #[error("{context}: {source}")]
    Io {
        /// What the Db was doing.
        context: String,
        /// The error.
        #[source]
        source: Arc<std::io::Error>,
    },
}

impl Error {
    /// An [`Error::Io`] with what the Db was doing.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// An [`Error::Corruption`] in `file`.
    pub(crate) fn corruption(file: impl Into<String>, what: impl Into<String>) -> Error {
        Error::Corruption {
            file: file.into(),
            what: what.into(),
        }
    }
}
