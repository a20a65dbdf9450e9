//! The client's [`Error`]: every error code a server answers with, typed (docs/protocol.md,
//! section 7), plus what the client itself observes (a broken connection, a timeout, a
//! response it cannot decode).
//!
//! Invariant: the two kinds of failure are never confused. [`Error::Conflict`] and the
//! "certainly not applied" variants are distinct from the "may have applied" ones
//! ([`Error::Unknown`], [`Error::Internal`], [`Error::Timeout`], [`Error::ConnectionLost`]);
//! [`Error::may_have_applied`] says which is which, and the transaction helper retries only
//! on that basis.

use popdb_protocol::{DecodeError, EncodeError, ErrorKind, Limit, ServerError, UnknownReason};

/// A client result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server refused the request as malformed or invalid (a bad table name or options,
    /// for instance). It did not apply; the same request fails again.
    #[error("bad request: {message}")]
    BadRequest {
        /// The server's words.
        message: String,
    },
    /// A field passed a limit ([`Limit`] says which). It did not apply: split the request.
    #[error("limit exceeded ({limit}): {message}")]
    LimitExceeded {
        /// Which limit.
        limit: Limit,
        /// The server's (or the client's) words.
        message: String,
    },
    /// No protocol version both sides speak; the server speaks `min ..= max`.
    #[error("unsupported protocol version (server speaks {min} to {max}): {message}")]
    UnsupportedVersion {
        /// The oldest version the server speaks.
        min: u8,
        /// The newest version the server speaks.
        max: u8,
        /// The server's words.
        message: String,
    },
    /// The token is missing or wrong. The server closed the connection.
    #[error("unauthorized: {message}")]
    Unauthorized {
        /// The server's words.
        message: String,
    },
    /// No table has this name.
    #[error("unknown table: {message}")]
    UnknownTable {
        /// The server's words.
        message: String,
    },
    /// A table with this name exists.
    #[error("table exists: {message}")]
    TableExists {
        /// The server's words.
        message: String,
    },
    /// A commit's condition failed: the commit **certainly did not apply**. Read again and
    /// retry (the transaction helper does).
    #[error("conflict on condition {condition}: {message}")]
    Conflict {
        /// Index (0-based) of a condition that failed, in the commit as sent.
        condition: u32,
        /// The server's words.
        message: String,
    },
    /// The server says the write **may or may not have applied**.
    #[error("unknown outcome ({reason:?}): {message}")]
    Unknown {
        /// Why.
        reason: UnknownReason,
        /// The server's words.
        message: String,
    },
    /// The server is too busy to take the request; it did not apply. Retry after a backoff.
    #[error("overloaded: {message}")]
    Overloaded {
        /// The server's words.
        message: String,
    },
    /// The server refuses writes (disk full, or its log failed); it did not apply.
    #[error("read-only: {message}")]
    ReadOnly {
        /// The server's words.
        message: String,
    },
    /// A scan cursor's read view is gone: restart the scan.
    #[error("cursor expired: {message}")]
    CursorExpired {
        /// The server's words.
        message: String,
    },
    /// A bug or unexpected failure in the server; a write may have applied.
    #[error("internal server error: {message}")]
    Internal {
        /// The server's words.
        message: String,
    },
    /// This node is not the leader; the request did not apply. Send it to `hint`, if any.
    #[error("not leader (leader: {hint:?}): {message}")]
    NotLeader {
        /// The leader's client address, `host:port`, if the node knows it.
        hint: Option<String>,
        /// The server's words.
        message: String,
    },
    /// The server sent something this client cannot accept (a malformed frame, a response
    /// of the wrong kind), or refused the frame as too large. A write's outcome is unknown
    /// only if the server answered it with a malformed frame; that is a server bug.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Connecting or talking to the server failed before the request was sent.
    #[error("{op}: {source}")]
    Io {
        /// What the client was doing.
        op: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// No response came within the request timeout. The request **may have applied**.
    #[error("request timed out after {timeout_ms} ms (outcome unknown)")]
    Timeout {
        /// The timeout that passed.
        timeout_ms: u64,
    },
    /// The connection broke while the request was in flight. It **may have applied**.
    #[error("connection lost with the request in flight (outcome unknown): {reason}")]
    ConnectionLost {
        /// Why the connection is gone.
        reason: String,
    },
    /// The connection was closed before the request was sent; it did not apply.
    #[error("connection closed: {reason}")]
    Closed {
        /// Why the connection is gone.
        reason: String,
    },
    /// The request cannot be encoded (a field too long for its wire width).
    #[error("cannot encode the request: {0}")]
    Encode(#[from] EncodeError),
}

impl Error {
    /// Whether the request may have applied: the server said so ([`Error::Unknown`],
    /// [`Error::Internal`]) or the client lost track of it ([`Error::Timeout`],
    /// [`Error::ConnectionLost`], a malformed response). Everything else certainly did not
    /// apply.
    pub fn may_have_applied(&self) -> bool {
        matches!(
            self,
            Error::Unknown { .. }
                | Error::Internal { .. }
                | Error::Timeout { .. }
                | Error::ConnectionLost { .. }
                | Error::Protocol(_)
        )
    }

    /// Whether this is a commit's conflict (certainly not applied; retry after reading
    /// again).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// The error a server's error response stands for.
    pub fn from_server(error: ServerError) -> Error {
        let ServerError { kind, message } = error;
        match kind {
            ErrorKind::BadRequest => Error::BadRequest { message },
            ErrorKind::FrameTooLarge => Error::LimitExceeded {
                limit: Limit::FrameSize,
                message,
            },
            ErrorKind::LimitExceeded { limit } => Error::LimitExceeded { limit, message },
            ErrorKind::UnsupportedVersion { min, max } => {
                Error::UnsupportedVersion { min, max, message }
            }
            ErrorKind::Unauthorized => Error::Unauthorized { message },
            ErrorKind::UnknownTable => Error::UnknownTable { message },
            ErrorKind::TableExists => Error::TableExists { message },
            ErrorKind::Conflict { condition_index } => Error::Conflict {
                condition: condition_index,
                message,
            },
            ErrorKind::UnknownOutcome { reason } => Error::Unknown { reason, message },
            ErrorKind::Overloaded => Error::Overloaded { message },
            ErrorKind::ReadOnly => Error::ReadOnly { message },
            ErrorKind::CursorExpired => Error::CursorExpired { message },
            ErrorKind::NotLeader { leader_hint } => Error::NotLeader {
                hint: leader_hint,
                message,
            },
            // `ErrorKind` is non-exhaustive: a kind added later is at worst a server fault
            // whose outcome is unknown, like `Internal`.
            _ => Error::Internal { message },
        }
    }

    pub(crate) fn decode(error: &DecodeError) -> Error {
        Error::Protocol(format!("malformed response: {error}"))
    }
}
