//! The tree's errors. Each variant says what the caller can do about it.
//!
//! Bytes read from disk are input: a decoder that finds them malformed returns
//! [`Error::Corruption`] with where and what, and never panics (STYLE sections 4 and 5).

use std::fmt;
use std::io;
use std::sync::Arc;

use crate::manifest_state::InvalidEdit;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the tree.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file operation failed. After a failed sync the caller must not trust the file's
    /// contents (an fsync is never retried).
    #[error("lsm: i/o error in {op}: {source}")]
    Io {
        /// The operation that failed (`"sst write"`, `"sst read"`, ...).
        op: &'static str,
        /// The error the file system returned.
        #[source]
        source: Arc<io::Error>,
    },
    /// Stored bytes cannot be what the tree wrote. Nothing was changed; the caller should stop
    /// using the file and report it.
    #[error("lsm: corruption: {0}")]
    Corruption(Corruption),
    /// An edit the level structure cannot take (a caller bug); nothing was written and the
    /// manifest stays usable.
    #[error("lsm: invalid edit: {0}")]
    InvalidEdit(InvalidEdit),
    /// A write or option is beyond a documented limit (docs/limits.md); nothing was applied.
    #[error("lsm: {limit} is {found}, above the limit {max}")]
    LimitExceeded {
        /// The limit (`"key size"`, `"value size"`, `"batch writes"`, `"batch size"`).
        limit: &'static str,
        /// The size or count asked for.
        found: u64,
        /// The most allowed.
        max: u64,
    },
    /// A batch's LSN is not above the last one applied (or the watermark): a caller bug.
    #[error("lsm: lsn {lsn} is not above {floor}, the last applied or checkpointed")]
    LsnNotIncreasing {
        /// The LSN given.
        lsn: u64,
        /// The LSN it must exceed.
        floor: u64,
    },
    /// A read view was asked for at an LSN the tree cannot answer exactly: below its
    /// watermark (older versions may be compacted away) or above what it has applied.
    #[error("lsm: no read view at lsn {lsn}: readable from {from} through {through}")]
    ViewOutOfRange {
        /// The LSN asked for.
        lsn: u64,
        /// The oldest readable LSN (the watermark).
        from: u64,
        /// The newest (the last applied).
        through: u64,
    },
    /// A checkpoint needs frozen writes flushed that the log has not made durable yet
    /// ([`Tree::set_durable_lsn`](crate::Tree::set_durable_lsn)); nothing was written.
    #[error("lsm: checkpoint needs writes through lsn {needed} durable; the log is at {durable}")]
    NotDurable {
        /// The LSN the log must be durable through.
        needed: u64,
        /// The durable LSN the tree was last told.
        durable: u64,
    },
    /// The options are inconsistent; the message names the first bad one.
    #[error("lsm: invalid options: {0}")]
    InvalidOptions(&'static str),
    /// An earlier write or sync of the tree's files failed; the tree accepts no more writes
    /// until it is reopened (an fsync is never retried).
    #[error("lsm: the tree is poisoned by an earlier i/o failure; reopen it")]
    Poisoned,
}

impl Error {
    /// An I/O error during `op`.
    pub(crate) fn io(op: &'static str, source: io::Error) -> Self {
        Self::Io {
            op,
            source: Arc::new(source),
        }
    }

    /// The same error with a corruption's offset moved by `base` (a structure decoded on its
    /// own, then placed at `base` of a file).
    pub(crate) fn at_file_offset(self, base: u64) -> Self {
        match self {
            Self::Corruption(mut c) => {
                c.offset = c.offset.saturating_add(base);
                Self::Corruption(c)
            }
            other => other,
        }
    }

    /// The same error with a corruption's file id set to `file_id`, when that is known.
    pub(crate) fn with_file_id(self, file_id: Option<u64>) -> Self {
        match (self, file_id) {
            (Self::Corruption(mut c), Some(id)) => {
                c.file_id = Some(id);
                Self::Corruption(c)
            }
            (other, _) => other,
        }
    }

    /// The same error with a corruption's file named `file_name` (a manifest or `CURRENT`).
    pub(crate) fn in_file(self, file_name: &str) -> Self {
        match self {
            Self::Corruption(mut c) => {
                c.file_name = Some(file_name.to_string());
                Self::Corruption(c)
            }
            other => other,
        }
    }

    /// A corruption at file offset `offset`.
    pub(crate) fn file_corruption(offset: u64, what: &'static str, kind: CorruptionKind) -> Self {
        Self::Corruption(Corruption {
            file_id: None,
            file_name: None,
            offset,
            what,
            kind,
        })
    }

    /// A corruption at `offset` of a structure decoded outside any file (a lone block or
    /// filter); the SST reader adds the file's id when it has one.
    pub(crate) fn corruption(offset: usize, what: &'static str, kind: CorruptionKind) -> Self {
        Self::Corruption(Corruption {
            file_id: None,
            file_name: None,
            offset: offset as u64,
            what,
            kind,
        })
    }
}

/// Where and how stored bytes are damaged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// The id of the file holding the bytes, when the decoder knows it. `None` for a block
    /// or filter decoded on its own, where `offset` counts from the structure's first byte.
    pub file_id: Option<u64>,
    /// The name of the file holding the bytes, for files named otherwise than by an SST id:
    /// a manifest (`MANIFEST-<16 hex>`) or `CURRENT`. `None` where `file_id` says it or the
    /// decoder does not know.
    pub file_name: Option<String>,
    /// Byte offset of the damaged field.
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
        /// The checksum stored.
        expected: u32,
        /// The checksum of the bytes read.
        actual: u32,
    },
    /// The bytes end before the structure does.
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// A tag byte holds a value this build does not know.
    InvalidTag {
        /// The tag found.
        tag: u8,
    },
    /// A magic number is not the one this file type starts (or ends) with.
    BadMagic {
        /// The 8 bytes found.
        found: [u8; 8],
    },
    /// The file's `format_version` is one this build cannot read.
    UnsupportedVersion {
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        max: u32,
    },
    /// A field holds a value no writer produces (an offset out of range, an over-long varint,
    /// a prefix longer than the previous key).
    InvalidValue {
        /// The value found.
        found: u64,
    },
    /// A file that a durable pointer names (a manifest that `CURRENT` names) does not exist.
    Missing,
    /// A damaged frame lies before a valid later one: bytes that were durable before later
    /// ones were written are damaged, so this cannot be a torn tail (the manifest syncs
    /// each frame before writing the next).
    DamageBeforeValidFrame {
        /// File offset of the first valid frame after the damage.
        later_offset: u64,
    },
    /// A frame with a valid checksum holds an edit the level structure cannot take.
    InvalidEdit(InvalidEdit),
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(id) = self.file_id {
            write!(f, "file {id} ")?;
        }
        if let Some(name) = &self.file_name {
            write!(f, "{name} ")?;
        }
        write!(
            f,
            "at offset {} ({}): {:?}",
            self.offset, self.what, self.kind
        )
    }
}
