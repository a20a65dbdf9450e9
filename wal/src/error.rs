//! The log's errors. Each variant says what the caller can do about it.

use std::any::Any;
use std::fmt;
use std::io;
use std::sync::Arc;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the log.
///
/// Errors are `Clone` because one failed group-commit write reaches every appender that
/// waited on it.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call failed. If it was a write or a sync of acknowledged data, the log is
    /// poisoned as well and later calls return [`Error::Poisoned`].
    #[error("wal: {op} failed: {source}")]
    Io {
        /// The operation that failed, e.g. "write segment".
        op: &'static str,
        /// The operating system's error.
        source: Arc<io::Error>,
    },
    /// A file of the log holds bytes that cannot be what the log wrote.
    #[error("wal: corruption: {0}")]
    Corruption(Corruption),
    /// The call was refused and changed nothing (an LSN out of sequence, a record too large).
    #[error("wal: invalid argument: {0}")]
    InvalidArgument(String),
    /// An earlier write or sync failed; nothing more is accepted until the log is reopened
    /// (which runs recovery). A failed fsync is never retried.
    #[error("wal: poisoned by an earlier failure ({cause}); reopen the log to recover")]
    Poisoned {
        /// The failure that poisoned the log.
        cause: Arc<Error>,
    },
    /// The disk has no room for a new segment. The append was refused and changed nothing;
    /// the log stays usable (purging frees segments for reuse).
    #[error("wal: no space for a new segment of {needed} bytes: {source}")]
    NoSpace {
        /// Bytes the new segment needs.
        needed: u64,
        /// The operating system's error.
        source: Arc<io::Error>,
    },
    /// A thread of the log panicked while it held the log's work: a bug, in the log or in a
    /// completion callback it ran. Like a failed sync, it poisons the log: the requests it
    /// held and every later call get [`Error::Poisoned`] naming it, never a hang; reopening
    /// the log runs recovery.
    #[error("wal: a writer-thread panic poisoned the log ({what} panicked: {message})")]
    Panicked {
        /// What panicked, e.g. "the log writer" or "a completion callback".
        what: &'static str,
        /// The panic's message.
        message: String,
    },
    /// The log was closed.
    #[error("wal: closed")]
    Closed,
}

impl Error {
    pub(crate) fn io(op: &'static str, source: io::Error) -> Self {
        Self::Io {
            op,
            source: Arc::new(source),
        }
    }

    /// The cause that poisons the log when `what` panicked with `payload`.
    pub(crate) fn panicked(what: &'static str, payload: &(dyn Any + Send)) -> Arc<Self> {
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "a panic without a message".to_string()
        };
        Arc::new(Self::Panicked { what, message })
    }
}

/// Where and how a file of the log is damaged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// The file's name inside the log directory.
    pub file: String,
    /// Byte offset of the damage in that file.
    pub offset: u64,
    /// The field or structure being decoded.
    pub what: &'static str,
    /// What was wrong with it.
    pub kind: CorruptionKind,
}

/// The nature of a [`Corruption`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptionKind {
    /// A stored checksum does not match the bytes.
    ChecksumMismatch {
        /// The checksum stored in the file.
        expected: u32,
        /// The checksum of the bytes read.
        actual: u32,
    },
    /// The magic number is wrong.
    BadMagic,
    /// The file was written by a newer format version.
    UnsupportedVersion {
        /// The version found.
        found: u32,
        /// The highest version this build reads.
        max: u32,
    },
    /// The file ends before the structure does.
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// A field holds a value no writer produces.
    InvalidValue {
        /// The value found.
        found: u64,
    },
    /// Damage lies before a later write that was made after the damaged bytes were durable:
    /// acknowledged data is missing, so this is not a torn tail.
    DamageBeforeValidWrite {
        /// Offset of the later, valid write.
        later_offset: u64,
    },
    /// LSNs do not follow each other where they must.
    LsnGap {
        /// The LSN expected.
        expected: u64,
        /// The LSN found.
        found: u64,
    },
    /// A file the log needs is missing.
    Missing,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at offset {} ({}): {:?}",
            self.file, self.offset, self.what, self.kind
        )
    }
}
