//! The errors a server answers with: [`ErrorCode`], the `u16` on the wire, and
//! [`ErrorKind`], the code with its typed detail (which limit, which condition, why the
//! outcome is unknown, where the leader is). Spec: docs/protocol.md, section 7, which also
//! says for each code whether a retry is safe.

use crate::limits::Limit;

/// An error response: what went wrong, typed, and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ServerError {
    /// What went wrong; programs branch on this.
    pub kind: ErrorKind,
    /// Why, in words; programs must not parse it.
    pub message: String,
}

impl ServerError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// The wire codes of errors (a `u16`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// The request is malformed or invalid (unknown opcode, bad tag, bad table name or
    /// options, truncated body, trailing bytes).
    BadRequest = 1,
    /// The frame's declared length is over the maximum; the server closes the connection.
    FrameTooLarge = 2,
    /// A field passed a limit; the detail names it.
    LimitExceeded = 3,
    /// No protocol version both sides speak; the detail gives the server's range.
    UnsupportedVersion = 4,
    /// The handshake's token is wrong or missing, or a request came before the handshake.
    Unauthorized = 5,
    /// No table has this name.
    UnknownTable = 6,
    /// A table with this name exists.
    TableExists = 7,
    /// A commit's condition failed; it certainly did not apply.
    Conflict = 8,
    /// The write may or may not have applied.
    UnknownOutcome = 9,
    /// The server is too busy to take the request; it did not apply.
    Overloaded = 10,
    /// The server refuses writes (disk full, or its log failed); it did not apply.
    ReadOnly = 11,
    /// A scan cursor's read view is gone.
    CursorExpired = 12,
    /// A bug or an unexpected failure in the server.
    Internal = 13,
    /// This node is not the leader; the write did not apply. Reserved for replication.
    NotLeader = 14,
}

impl ErrorCode {
    /// Every code, in wire order.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::BadRequest,
        ErrorCode::FrameTooLarge,
        ErrorCode::LimitExceeded,
        ErrorCode::UnsupportedVersion,
        ErrorCode::Unauthorized,
        ErrorCode::UnknownTable,
        ErrorCode::TableExists,
        ErrorCode::Conflict,
        ErrorCode::UnknownOutcome,
        ErrorCode::Overloaded,
        ErrorCode::ReadOnly,
        ErrorCode::CursorExpired,
        ErrorCode::Internal,
        ErrorCode::NotLeader,
    ];

    /// The wire value.
    pub fn to_u16(self) -> u16 {
        self as u16
    }

    /// The code with this wire value, if any.
    pub fn from_u16(code: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.to_u16() == code)
    }

    /// Whether resending the same request unchanged is safe and may succeed: it certainly
    /// did not apply, and the cause may pass ([`ErrorCode::Overloaded`]: after a backoff;
    /// [`ErrorCode::NotLeader`]: sent to the leader). Not in this list:
    /// [`ErrorCode::Conflict`] is safe to retry only after reading again (the same commit
    /// would fail the same way), [`ErrorCode::CursorExpired`] needs a new scan, and
    /// [`ErrorCode::UnknownOutcome`] and [`ErrorCode::Internal`] are safe only for reads and
    /// for commits that carry an idempotency key. docs/protocol.md, section 7, has the table.
    pub fn retry_is_safe(self) -> bool {
        matches!(self, ErrorCode::Overloaded | ErrorCode::NotLeader)
    }

    /// Whether the request certainly did not apply.
    pub fn certainly_not_applied(self) -> bool {
        !matches!(self, ErrorCode::UnknownOutcome | ErrorCode::Internal)
    }
}

/// Why a write's outcome is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnknownReason {
    /// The server gave up waiting for the write to commit.
    Timeout,
    /// The log failed (an fsync error): the write may be in the log or not.
    LogLost,
    /// The server shut down with the write in flight.
    Shutdown,
    /// Leadership changed with the write in flight (replication).
    LeaderChanged,
}

impl UnknownReason {
    /// Every reason, in wire order.
    pub const ALL: [UnknownReason; 4] = [
        UnknownReason::Timeout,
        UnknownReason::LogLost,
        UnknownReason::Shutdown,
        UnknownReason::LeaderChanged,
    ];

    /// The wire value (a `u8`).
    pub fn to_u8(self) -> u8 {
        match self {
            UnknownReason::Timeout => 1,
            UnknownReason::LogLost => 2,
            UnknownReason::Shutdown => 3,
            UnknownReason::LeaderChanged => 4,
        }
    }

    /// The reason with this wire value, if any.
    pub fn from_u8(value: u8) -> Option<UnknownReason> {
        UnknownReason::ALL.into_iter().find(|r| r.to_u8() == value)
    }
}

/// An error code with its typed detail.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`ErrorCode::BadRequest`].
    #[error("bad request")]
    BadRequest,
    /// See [`ErrorCode::FrameTooLarge`].
    #[error("frame too large")]
    FrameTooLarge,
    /// See [`ErrorCode::LimitExceeded`].
    #[error("limit exceeded: {limit}")]
    LimitExceeded {
        /// Which limit.
        limit: Limit,
    },
    /// See [`ErrorCode::UnsupportedVersion`].
    #[error("unsupported protocol version (server speaks {min} to {max})")]
    UnsupportedVersion {
        /// The oldest version the server speaks.
        min: u8,
        /// The newest version the server speaks.
        max: u8,
    },
    /// See [`ErrorCode::Unauthorized`].
    #[error("unauthorized")]
    Unauthorized,
    /// See [`ErrorCode::UnknownTable`].
    #[error("unknown table")]
    UnknownTable,
    /// See [`ErrorCode::TableExists`].
    #[error("table exists")]
    TableExists,
    /// See [`ErrorCode::Conflict`].
    #[error("conflict on condition {condition_index}")]
    Conflict {
        /// Index (0-based) in the commit's `conditions` of a condition that failed.
        condition_index: u32,
    },
    /// See [`ErrorCode::UnknownOutcome`].
    #[error("unknown outcome ({reason:?})")]
    UnknownOutcome {
        /// Why.
        reason: UnknownReason,
    },
    /// See [`ErrorCode::Overloaded`].
    #[error("overloaded")]
    Overloaded,
    /// See [`ErrorCode::ReadOnly`].
    #[error("read-only")]
    ReadOnly,
    /// See [`ErrorCode::CursorExpired`].
    #[error("cursor expired")]
    CursorExpired,
    /// See [`ErrorCode::Internal`].
    #[error("internal error")]
    Internal,
    /// See [`ErrorCode::NotLeader`].
    #[error("not leader")]
    NotLeader {
        /// The leader's client address ("host:port"), if this node knows it.
        leader_hint: Option<String>,
    },
}

impl ErrorKind {
    /// The wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ErrorKind::BadRequest => ErrorCode::BadRequest,
            ErrorKind::FrameTooLarge => ErrorCode::FrameTooLarge,
            ErrorKind::LimitExceeded { .. } => ErrorCode::LimitExceeded,
            ErrorKind::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            ErrorKind::Unauthorized => ErrorCode::Unauthorized,
            ErrorKind::UnknownTable => ErrorCode::UnknownTable,
            ErrorKind::TableExists => ErrorCode::TableExists,
            ErrorKind::Conflict { .. } => ErrorCode::Conflict,
            ErrorKind::UnknownOutcome { .. } => ErrorCode::UnknownOutcome,
            ErrorKind::Overloaded => ErrorCode::Overloaded,
            ErrorKind::ReadOnly => ErrorCode::ReadOnly,
            ErrorKind::CursorExpired => ErrorCode::CursorExpired,
            ErrorKind::Internal => ErrorCode::Internal,
            ErrorKind::NotLeader { .. } => ErrorCode::NotLeader,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_round_trip_and_are_dense() {
        for (i, code) in ErrorCode::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(code.to_u16()), i + 1);
            assert_eq!(ErrorCode::from_u16(code.to_u16()), Some(code));
        }
        assert_eq!(ErrorCode::from_u16(0), None);
        assert_eq!(ErrorCode::from_u16(15), None);
        for reason in UnknownReason::ALL {
            assert_eq!(UnknownReason::from_u8(reason.to_u8()), Some(reason));
        }
        assert_eq!(UnknownReason::from_u8(0), None);
    }

    #[test]
    fn error_codes_unknown_outcome_is_the_only_maybe_applied_besides_internal() {
        let maybe: Vec<ErrorCode> = ErrorCode::ALL
            .into_iter()
            .filter(|c| !c.certainly_not_applied())
            .collect();
        assert_eq!(maybe, [ErrorCode::UnknownOutcome, ErrorCode::Internal]);
        assert!(!ErrorCode::Conflict.retry_is_safe());
        assert!(ErrorCode::Conflict.certainly_not_applied());
    }
}
