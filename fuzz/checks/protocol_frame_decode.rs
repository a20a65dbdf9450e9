//! The body of fuzz target `protocol_frame_decode`: arbitrary bytes, read as a stream of
//! wire frames (docs/protocol.md), must never make the framing or the message decoders
//! panic; a refusal must be of the right kind and point inside its frame; every message a
//! decoder accepts must re-encode to exactly its frame's bytes; the stream decoder fed the
//! same bytes in chunks must find the same frames and the same end; and no decoder may hold
//! memory for a frame beyond its declared, bounded length.
//!
//! Shared, like fuzz/checks/wal_segment_decode.rs (whose header says why), by
//! fuzz/fuzz_targets/protocol_frame_decode.rs (the libFuzzer binary) and
//! protocol/tests/codec_fuzz_replay.rs (the replay test), through `#[path = ...] mod check;`.
//!
//! Input layout: `[c0, stream...]`. Bit 0 of `c0` picks the limits: clear, the defaults;
//! set, tiny ones (a 200-byte frame, 6-byte keys...) so that short inputs reach every limit.
//! `(c0 >> 1) + 1` is the chunk size the stream decoder is fed in. Empty inputs are
//! ignored.

use popdb_protocol::{
    DecodeError, Decoded, Frame, FrameDecoder, HEADER_SIZE, Limits, Request, Response, decode_frame,
};

/// Limits small enough that fuzzed inputs hit them.
const TINY_LIMITS: Limits = Limits {
    frame_size_max: 200,
    key_size_max: 6,
    value_size_max: 10,
    batch_writes_max: 3,
    batch_size_max: 24,
    conditions_max: 2,
    scan_limit_max: 3,
    tables_max: 2,
};

/// The fuzz target's body; panics on any violation.
pub fn check(data: &[u8]) {
    let Some((&c0, stream)) = data.split_first() else {
        return;
    };
    let limits = if c0 & 1 == 0 {
        Limits::DEFAULT
    } else {
        TINY_LIMITS
    };
    let (sizes, end) = walk(stream, &limits);
    let chunk = usize::from(c0 >> 1) + 1;
    check_stream_decoder(stream, &limits, chunk, &sizes, &end);
}

/// How a walk over the stream ended.
#[derive(Debug, PartialEq)]
enum End {
    /// The bytes after the last frame are a frame's beginning; it needs this many in all.
    NeedMore(usize),
    /// A framing error.
    Failed(DecodeError),
}

/// Cuts `stream` into frames with `decode_frame`, checking each frame's messages; returns
/// the frames' sizes and how the walk ended.
fn walk(stream: &[u8], limits: &Limits) -> (Vec<usize>, End) {
    let mut sizes = Vec::new();
    let mut rest = stream;
    loop {
        match decode_frame(rest, limits) {
            Ok(Decoded::Frame(frame)) => {
                let size = frame.size();
                assert!(size >= HEADER_SIZE, "a {size}-byte frame");
                assert!(
                    size <= limits.frame_size_max as usize,
                    "a {size}-byte frame"
                );
                let bytes = rest.get(..size).expect("a frame lies inside its buffer");
                check_messages(&frame, bytes, limits);
                sizes.push(size);
                rest = rest.get(size..).expect("a frame lies inside its buffer");
            }
            Ok(Decoded::NeedMore { needed }) => {
                assert!(needed > rest.len(), "needs {needed} with {} in", rest.len());
                assert!(
                    needed <= (limits.frame_size_max as usize).max(HEADER_SIZE),
                    "needs {needed}, over the frame maximum"
                );
                return (sizes, End::NeedMore(needed));
            }
            Err(e) => {
                assert!(e.is_fatal(), "the framing refused with {e}");
                assert!(rest.len() >= 4, "refused with only {} bytes", rest.len());
                return (sizes, End::Failed(e));
            }
        }
    }
}

/// Decodes `frame` as a request and as a response; whatever is accepted must re-encode to
/// `bytes`, and refusals must be per-request errors pointing inside the frame.
fn check_messages(frame: &Frame<'_>, bytes: &[u8], limits: &Limits) {
    let id = frame.header.request_id;
    let request = Request::decode(frame, limits);
    let response = Response::decode(frame, limits);
    assert!(
        request.is_err() || response.is_err(),
        "a frame decoded as both a request and a response"
    );
    match request {
        Ok(request) => {
            assert!(!frame.header.is_response());
            let again = request.to_frame(id).expect("an accepted request encodes");
            assert_eq!(
                again, bytes,
                "an accepted request must re-encode to its bytes"
            );
        }
        Err(e) => check_refusal(&e, bytes.len()),
    }
    match response {
        Ok(response) => {
            assert!(frame.header.is_response());
            let mut out = vec![0xa5];
            response
                .encode(id, &mut out)
                .expect("an accepted response encodes");
            assert_eq!(
                out.get(1..),
                Some(bytes),
                "an accepted response must re-encode to its bytes"
            );
        }
        Err(e) => check_refusal(&e, bytes.len()),
    }
}

fn check_refusal(e: &DecodeError, size: usize) {
    assert!(!e.is_fatal(), "a whole frame refused as {e}");
    match e {
        DecodeError::Malformed { offset, .. } => {
            assert!(
                *offset >= HEADER_SIZE && *offset <= size,
                "{e} in {size} bytes"
            );
        }
        DecodeError::LimitExceeded {
            offset, found, max, ..
        } => {
            assert!(
                *offset >= HEADER_SIZE && *offset < size,
                "{e} in {size} bytes"
            );
            assert!(found > max, "{e}");
        }
        _ => {}
    }
    // The server's answer is well formed.
    let answer = Response::Error(e.to_server_error());
    assert!(answer.to_frame(0).is_ok(), "{e}");
}

/// The stream decoder, fed `chunk` bytes at a time, must find the frames the walk found and
/// end the same way, holding no more memory than the stream plus the frame it waits for.
fn check_stream_decoder(stream: &[u8], limits: &Limits, chunk: usize, sizes: &[usize], end: &End) {
    let mut decoder = FrameDecoder::new(*limits);
    let mut found = Vec::new();
    let mut failed = None;
    'feed: for piece in stream.chunks(chunk) {
        decoder.push(piece);
        decoder.check_invariants();
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => found.push(frame.size()),
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(found, sizes, "the stream decoder found other frames");
    let pending = match end {
        End::NeedMore(needed) => {
            assert!(
                failed.is_none(),
                "the stream decoder failed with {failed:?}"
            );
            let consumed: usize = sizes.iter().sum();
            assert_eq!(decoder.needed(), needed - (stream.len() - consumed));
            *needed
        }
        End::Failed(e) => {
            assert_eq!(
                failed.as_ref(),
                Some(e),
                "the stream decoder ended otherwise"
            );
            assert_eq!(decoder.next_frame().err().as_ref(), Some(e), "errors stick");
            0
        }
    };
    assert!(
        decoder.capacity() <= stream.len() + pending,
        "the stream decoder holds {} bytes for a {}-byte stream waiting on {pending}",
        decoder.capacity(),
        stream.len()
    );
}
