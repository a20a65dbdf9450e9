//! The codec's errors: [`DecodeError`] for bytes that are not a valid frame or message, and
//! [`EncodeError`] for a message whose fields do not fit their wire widths.

use crate::error_code::{ErrorKind, ServerError};
use crate::format::PROTOCOL_VERSION;
use crate::limits::Limit;

/// Why bytes are not a valid frame or message. Offsets count from the frame's first byte
/// (its length field).
///
/// [`DecodeError::FrameTooLarge`] and [`DecodeError::FrameTooShort`] come from the framing
/// ([`crate::decode_frame`]): the stream cannot be resynchronized and the connection must
/// close. The others come from decoding one frame's message: the frame's length and request
/// id are known, so a server answers that request with [`DecodeError::to_server_error`] and
/// reads on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The declared frame size (length field + 4) is over the maximum.
    #[error("frame of {size} bytes is over the maximum of {max}")]
    FrameTooLarge {
        /// The declared size of the whole frame, header included.
        size: u64,
        /// The maximum ([`crate::Limits::frame_size_max`]).
        max: u32,
    },
    /// The declared length is shorter than the rest of the header.
    #[error("frame length {length} is shorter than the 12 header bytes it must count")]
    FrameTooShort {
        /// The length field's value.
        length: u32,
    },
    /// The frame's protocol version is not one this decoder speaks.
    #[error("protocol version {found} is not supported (only {PROTOCOL_VERSION})")]
    UnsupportedVersion {
        /// The version byte.
        found: u8,
    },
    /// The opcode is not a request (or response) this decoder knows.
    #[error("unknown opcode {opcode:#04x}")]
    UnknownOpcode {
        /// The opcode byte.
        opcode: u8,
    },
    /// Flags this version does not define are set.
    #[error("reserved flags {flags:#06x} are set")]
    ReservedFlags {
        /// The flags field.
        flags: u16,
    },
    /// A count, length or sum passed a limit.
    #[error("{limit} limit exceeded: {found} > {max} (at byte {offset})")]
    LimitExceeded {
        /// Which limit.
        limit: Limit,
        /// The value found.
        found: u64,
        /// The limit's value.
        max: u64,
        /// Where the field starts.
        offset: usize,
    },
    /// The body is not a valid encoding: truncated, a bad tag, invalid UTF-8, an index out
    /// of range, or trailing bytes.
    #[error("malformed message at byte {offset}: {what}")]
    Malformed {
        /// Where the field starts.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
}

impl DecodeError {
    /// Whether the stream must be closed: the frame boundary is lost.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            DecodeError::FrameTooLarge { .. } | DecodeError::FrameTooShort { .. }
        )
    }

    /// The error a server answers with.
    pub fn to_server_error(&self) -> ServerError {
        let kind = match self {
            DecodeError::FrameTooLarge { .. } => ErrorKind::FrameTooLarge,
            DecodeError::UnsupportedVersion { .. } => ErrorKind::UnsupportedVersion {
                min: PROTOCOL_VERSION,
                max: PROTOCOL_VERSION,
            },
            DecodeError::LimitExceeded { limit, .. } => ErrorKind::LimitExceeded { limit: *limit },
            DecodeError::FrameTooShort { .. }
            | DecodeError::UnknownOpcode { .. }
            | DecodeError::ReservedFlags { .. }
            | DecodeError::Malformed { .. } => ErrorKind::BadRequest,
        };
        ServerError::new(kind, self.to_string())
    }
}

/// Why a message cannot be encoded: a field too long for its wire width. Nothing is left in
/// the output buffer when encoding fails.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A length or count does not fit its field.
    #[error("{what} of {len} does not fit its {bits}-bit length field")]
    TooLong {
        /// Which field.
        what: &'static str,
        /// Its length or count.
        len: usize,
        /// The width of its length field.
        bits: u32,
    },
}
