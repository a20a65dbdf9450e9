//! Framing: splitting a byte stream into frames. [`decode_frame`] is a pure function over the
//! bytes received so far; [`FrameDecoder`] keeps those bytes for a caller that does not want
//! to. Neither ever panics, and neither reserves memory for a frame before its declared
//! length has been checked against [`Limits::frame_size_max`]. Spec: docs/protocol.md,
//! sections 3 and 4.

#![deny(clippy::indexing_slicing)]

use crate::error::DecodeError;
use crate::format::{
    FLAGS_OFFSET, HEADER_SIZE, LENGTH_COUNTED, OPCODE_OFFSET, REQUEST_ID_OFFSET, VERSION_OFFSET, op,
};
use crate::limits::Limits;

/// The fixed fields of a frame, after its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// The protocol version the frame is encoded in.
    pub version: u8,
    /// What the body is: a request (bit 7 clear) or a response (bit 7 set).
    pub opcode: u8,
    /// Reserved: zero in version 1.
    pub flags: u16,
    /// Chosen by the client; a response carries its request's id.
    pub request_id: u64,
}

impl FrameHeader {
    /// Whether the opcode says response (bit 7 set).
    pub fn is_response(&self) -> bool {
        self.opcode & op::RESPONSE_BIT != 0
    }
}

/// One whole frame, borrowed from the buffer it was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The header.
    pub header: FrameHeader,
    /// The body: `length - 12` bytes after the header.
    pub body: &'a [u8],
}

impl Frame<'_> {
    /// The frame's whole size in bytes, header included.
    pub fn size(&self) -> usize {
        HEADER_SIZE + self.body.len()
    }
}

/// What [`decode_frame`] found at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole frame; it takes the first [`Frame::size`] bytes of the buffer.
    Frame(Frame<'a>),
    /// The buffer holds part of a frame: it must grow to at least `needed` bytes before the
    /// frame can be decoded (exactly the frame's size once the length field is in; the
    /// header's size before).
    NeedMore {
        /// The buffer length to wait for.
        needed: usize,
    },
}

/// Finds the frame at the start of `buf`, the bytes received so far.
///
/// Checks the framing only: the declared size against `limits.frame_size_max` (as soon as
/// the 4 length bytes are in, before anything else) and against the header's size. The
/// version, opcode and flags are checked by the message decoders, so that a server can
/// answer a bad frame by its request id.
///
/// # Errors
/// [`DecodeError::FrameTooLarge`] or [`DecodeError::FrameTooShort`]: the stream cannot go
/// on.
pub fn decode_frame<'a>(buf: &'a [u8], limits: &Limits) -> Result<Decoded<'a>, DecodeError> {
    let Some(length) = buf.first_chunk::<4>() else {
        return Ok(Decoded::NeedMore {
            needed: HEADER_SIZE,
        });
    };
    let length = u32::from_le_bytes(*length);
    let size = u64::from(length) + 4;
    if size > u64::from(limits.frame_size_max) {
        return Err(DecodeError::FrameTooLarge {
            size,
            max: limits.frame_size_max,
        });
    }
    if (length as usize) < LENGTH_COUNTED {
        return Err(DecodeError::FrameTooShort { length });
    }
    // Below `frame_size_max`, a u32: fits a usize on every platform this builds for.
    let size = size as usize;
    let Some(bytes) = buf.get(..size) else {
        return Ok(Decoded::NeedMore { needed: size });
    };
    let (head, body) = bytes
        .split_at_checked(HEADER_SIZE)
        .ok_or(DecodeError::FrameTooShort { length })?;
    let header = FrameHeader {
        version: read_u8(head, VERSION_OFFSET),
        opcode: read_u8(head, OPCODE_OFFSET),
        flags: u16::from_le_bytes(read_array(head, FLAGS_OFFSET)),
        request_id: u64::from_le_bytes(read_array(head, REQUEST_ID_OFFSET)),
    };
    Ok(Decoded::Frame(Frame { header, body }))
}

/// Requires: `head` is a whole header.
fn read_u8(head: &[u8], offset: usize) -> u8 {
    u8::from_le_bytes(read_array(head, offset))
}

/// Requires: `head` is a whole header and `offset + N <= HEADER_SIZE`.
fn read_array<const N: usize>(head: &[u8], offset: usize) -> [u8; N] {
    head.get(offset..)
        .and_then(|rest| rest.first_chunk::<N>())
        .copied()
        .expect("header fields lie inside the 16-byte header")
}

/// A stream's receive buffer and its framing: push bytes as they arrive, take whole frames
/// out.
///
/// # Invariants
/// Memory: the buffer holds what was pushed and not yet taken, and is grown ahead of
/// arrival only up to the end of the current frame, whose declared length has been checked
/// first. After an error, every call returns that error: the stream is lost.
#[derive(Debug)]
pub struct FrameDecoder {
    limits: Limits,
    buf: Vec<u8>,
    /// Bytes of `buf` already taken as frames.
    start: usize,
    failed: Option<DecodeError>,
}

impl FrameDecoder {
    /// An empty decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            buf: Vec::new(),
            start: 0,
            failed: None,
        }
    }

    /// Appends received bytes. Once the current frame's length is known and valid, reserves
    /// room for the rest of it (and no more).
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve_exact(bytes.len());
        self.buf.extend_from_slice(bytes);
        // Only once the length field is in and has passed its checks: before, `needed` is
        // the header's size, which no declared length has vouched for.
        if self.buf.len() >= 4
            && let Ok(Decoded::NeedMore { needed }) = decode_frame(&self.buf, &self.limits)
        {
            self.buf.reserve_exact(needed - self.buf.len());
        }
    }

    /// The next whole frame, if one has arrived.
    ///
    /// # Errors
    /// A framing error ([`DecodeError::is_fatal`]); the same one on every later call.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let start = self.start;
        let rest = self.buf.get(start..).unwrap_or_default();
        let size = match decode_frame(rest, &self.limits) {
            Ok(Decoded::Frame(frame)) => frame.size(),
            Ok(Decoded::NeedMore { .. }) => return Ok(None),
            Err(e) => {
                self.failed = Some(e.clone());
                return Err(e);
            }
        };
        self.start = start + size;
        let rest = self.buf.get(start..).unwrap_or_default();
        match decode_frame(rest, &self.limits) {
            Ok(Decoded::Frame(frame)) => Ok(Some(frame)),
            _ => unreachable!("a frame that decoded once decodes again"),
        }
    }

    /// How many more bytes the next frame needs (0 if a whole frame is buffered, or the
    /// stream failed). A reader may read exactly this much to avoid buffering ahead.
    pub fn needed(&self) -> usize {
        let rest = self.buf.get(self.start..).unwrap_or_default();
        match decode_frame(rest, &self.limits) {
            Ok(Decoded::NeedMore { needed }) => needed - rest.len(),
            _ => 0,
        }
    }

    /// Bytes received and not yet taken as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The buffer's capacity: what the decoder holds in memory.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Checks the decoder's invariants; panics if one is broken (a bug, never input).
    pub fn check_invariants(&self) {
        assert!(
            self.start <= self.buf.len(),
            "taken {} of {} buffered bytes",
            self.start,
            self.buf.len()
        );
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}
