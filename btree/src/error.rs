//! The B+tree's errors. Each variant says what the caller can do about it.
//!
//! Bytes read from a page are input: a decoder that finds them malformed returns
//! [`Error::Corruption`] naming the page, the byte offset within it, the field and what was
//! wrong, and never panics (STYLE sections 4 and 5). Spec: docs/format/btree.md.

use std::fmt;
use std::io;
use std::sync::Arc;

use crate::page_format::PageId;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the B+tree.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file operation failed. After a failed sync the caller must not trust the file's
    /// contents (an fsync is never retried).
    #[error("btree: i/o error in {op}: {source}")]
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The error the file system returned.
        #[source]
        source: Arc<io::Error>,
    },
    /// Stored bytes cannot be what the tree wrote. Nothing was changed; the caller should
    /// stop using the file and report it.
    #[error("btree: corruption: {0}")]
    Corruption(Corruption),
    /// A key, value or option is beyond a documented limit (docs/limits.md); nothing was
    /// applied.
    #[error("btree: {limit} is {found}, above the limit {max}")]
    LimitExceeded {
        /// The limit (`"key size"`, `"value size"`).
        limit: &'static str,
        /// The size asked for.
        found: u64,
        /// The most allowed.
        max: u64,
    },
    /// A batch's LSN is not above the last one applied: a caller bug. Nothing was applied.
    #[error("btree: lsn {lsn} is not above {floor}, the last applied")]
    LsnNotIncreasing {
        /// The LSN given.
        lsn: u64,
        /// The LSN it must exceed (0 before the first batch).
        floor: u64,
    },
    /// A read view was asked for at an LSN the tree keeps no root for: below the oldest
    /// retained root or above the last applied.
    #[error("btree: no read view at lsn {lsn}: readable from {from} through {through}")]
    ViewOutOfRange {
        /// The LSN asked for.
        lsn: u64,
        /// The LSN of the oldest retained root (0 for the empty tree's).
        from: u64,
        /// The last applied (0 before the first batch).
        through: u64,
    },
    /// The options are inconsistent; the message names the first bad one.
    #[error("btree: invalid options: {0}")]
    InvalidOptions(&'static str),
    /// A checkpoint was asked for below the watermark: a caller bug. Nothing was written.
    #[error("btree: checkpoint at lsn {lsn} is below the watermark {watermark}")]
    CheckpointBehind {
        /// The LSN asked for.
        lsn: u64,
        /// The watermark of the last completed checkpoint.
        watermark: u64,
    },
    /// An earlier write or sync of the file failed; the tree takes no more writes or
    /// checkpoints until it is reopened (an fsync is never retried). Reads go on.
    #[error("btree: the tree is poisoned by an earlier i/o failure ({cause}); reopen it")]
    Poisoned {
        /// The failure that poisoned it.
        cause: String,
    },
}

impl Error {
    /// An i/o failure of operation `op`.
    pub(crate) fn io(op: &'static str, source: io::Error) -> Self {
        Self::Io {
            op,
            source: Arc::new(source),
        }
    }

    /// A corruption of field `what` at byte `offset` of page `page_id`.
    pub(crate) fn corruption(
        page_id: PageId,
        offset: usize,
        what: &'static str,
        kind: CorruptionKind,
    ) -> Self {
        Self::Corruption(Corruption {
            page_id,
            offset: offset as u64,
            what,
            kind,
        })
    }

    /// The corruption this error carries, if it is one.
    pub fn as_corruption(&self) -> Option<&Corruption> {
        match self {
            Self::Corruption(c) => Some(c),
            _ => None,
        }
    }
}

/// Where and how a page's bytes are damaged.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Corruption {
    /// The page the reader asked for (where it looked, which a misdirected page's header
    /// contradicts).
    pub page_id: PageId,
    /// Byte offset of the damaged field from the page's first byte.
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
    /// A checksum does not match the bytes: the page's own, or the one its parent
    /// reference (branch entry, meta page, overflow or free-list link) holds for it.
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
    /// A tag byte (page type, entry kind) holds a value this build does not know.
    InvalidTag {
        /// The tag found.
        tag: u8,
    },
    /// A page of a known type where another type was expected (a leaf where a branch
    /// should be).
    WrongPageType {
        /// The type the reader expected.
        expected: u8,
        /// The type the page's header holds.
        found: u8,
    },
    /// The page's header names another page: the bytes were written to the wrong place,
    /// or read from it.
    WrongPageId {
        /// The page id the header holds.
        found: u64,
    },
    /// The meta page's magic is not `POPDBBTR`.
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
    /// A field holds a value no writer produces (an offset out of range, a non-zero
    /// reserved or padding byte, a length past a limit).
    InvalidValue {
        /// The value found.
        found: u64,
    },
    /// Entry `index` is not strictly above the entry before it (keys of leaf and branch
    /// pages; `(freed_txn, page_id)` of free-list pages).
    OutOfOrder {
        /// The entry's index in its page.
        index: u64,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "page {} at offset {} ({}): {:?}",
            self.page_id.0, self.offset, self.what, self.kind
        )
    }
}
