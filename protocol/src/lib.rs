//! popdb-protocol: PopDB's binary wire protocol. Frames, typed messages and a streaming
//! decoder; no I/O, no async runtime, no dependency on the database (the server maps these
//! types onto the Db's, the client depends on this crate alone).
//!
//! Spec: docs/protocol.md (framing, every opcode's byte layout, error codes and when a
//! retry is safe, limits, version negotiation, pipelining, cursors, a worked example).
//!
//! - A frame is a 16-byte header (`length` u32, `version` u8, `opcode` u8, `flags` u16,
//!   `request_id` u64; little-endian) and a body. [`decode_frame`] and [`FrameDecoder`] cut
//!   frames out of a byte stream, checking the declared length against
//!   [`Limits::frame_size_max`] before anything is reserved.
//! - [`Request::decode`] and [`Response::decode`] turn a frame's body into typed messages,
//!   enforcing [`Limits`]; [`Request::encode`] and [`Response::encode`] append whole frames
//!   to a caller's buffer, and [`PointRequest::encode`] a Get, Put or Delete borrowed from
//!   the caller's key and value; [`PointRequest::decode`] reads one in place from its frame
//!   (the server's per-request path), checking exactly what [`Request::decode`] checks.
//! - Errors a server answers with are [`ServerError`]: an [`ErrorKind`] (a `u16`
//!   [`ErrorCode`] with typed detail) and a message.
//!
//! Invariants: decoding never panics on any input; every accepted frame re-encodes to
//! exactly its bytes (one encoding per message); no decoder reserves memory for more than
//! the bytes its frame declares, and a frame's declared size is at most
//! [`Limits::frame_size_max`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod decode;
mod encode;
mod error;
mod error_code;
mod format;
mod frame;
mod limits;
mod message;

pub use error::{DecodeError, EncodeError};
pub use error_code::{ErrorCode, ErrorKind, ServerError, UnknownReason};
pub use format::{HEADER_SIZE, PROTOCOL_VERSION};
pub use frame::{Decoded, Frame, FrameDecoder, FrameHeader, decode_frame};
pub use limits::{
    AUTH_TOKEN_MAX, BATCH_SIZE_MAX, BATCH_WRITES_MAX, CONDITIONS_MAX, FRAME_SIZE_MAX, KEY_SIZE_MAX,
    Limit, Limits, SCAN_LIMIT_MAX, STATS_MAX, TABLE_NAME_MAX, TABLES_MAX, VALUE_SIZE_MAX,
};
pub use message::{
    Check, Commit, Compression, Condition, Cursor, Direction, Engine, Entries, Entry, HandshakeOk,
    IdempotencyKey, PointRequest, PointResponse, Request, Response, Scan, Status, TableInfo,
    TableOptions, Versioned, Write,
};
