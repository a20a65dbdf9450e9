//! The wire codec (protocol/src, spec docs/protocol.md): random requests and responses of
//! every kind round-trip through whole frames; every truncation of a frame is "need more"
//! to the framing and an error to the message decoders, never a panic; trailing bytes,
//! unknown opcodes, versions and flags are refused; a declared length over the maximum is
//! refused before anything is reserved; every limit is enforced and named; a request at
//! every Db limit fits one frame; the spec's worked example keeps its bytes (and the spec
//! shows exactly the dump printed by `dump_worked_example`).
//!
//! Random bytes and mutations of valid frames are the fuzz replay's job
//! (protocol/tests/codec_fuzz_replay.rs).

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod common;

use std::collections::BTreeSet;
use std::ops::Bound;

use common::{TINY_LIMITS, any_request, any_response};
use popdb_protocol::{
    Check, Commit, Condition, DecodeError, Decoded, EncodeError, ErrorKind, FRAME_SIZE_MAX, Frame,
    FrameDecoder, HEADER_SIZE, Limit, Limits, PointRequest, PointResponse, Request, Response, Scan,
    ServerError, Write, decode_frame,
};
use popdb_testkit::Rng;

const LIMITS: Limits = Limits::DEFAULT;

/// The one frame at the start of `bytes`.
fn frame(bytes: &[u8]) -> Frame<'_> {
    match decode_frame(bytes, &LIMITS) {
        Ok(Decoded::Frame(frame)) => frame,
        other => panic!("not a whole frame: {other:?}"),
    }
}

fn request_of(bytes: &[u8]) -> Result<Request, DecodeError> {
    Request::decode(&frame(bytes), &LIMITS)
}

fn response_of(bytes: &[u8]) -> Result<Response, DecodeError> {
    Response::decode(&frame(bytes), &LIMITS)
}

/// `bytes` with its length field set to match its size.
fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
    let length = u32::try_from(bytes.len() - 4).unwrap();
    bytes[..4].copy_from_slice(&length.to_le_bytes());
    bytes
}

// ---------------------------------------------------------------------------------------
// Round trips.

#[test]
fn codec_random_requests_round_trip() {
    let mut rng = Rng(0x9e07_0c01);
    let mut opcodes = BTreeSet::new();
    let mut out = Vec::new();
    for _ in 0..5_000 {
        let request = any_request(&mut rng);
        let id = rng.next();
        // After other bytes: encode appends.
        out.clear();
        out.extend_from_slice(b"xyz");
        request.encode(id, &mut out).unwrap();
        let bytes = &out[3..];
        let frame = frame(bytes);
        assert_eq!(frame.size(), bytes.len());
        assert_eq!(frame.header.request_id, id);
        assert!(!frame.header.is_response());
        assert_eq!(frame.header.opcode, request.opcode());
        opcodes.insert(frame.header.opcode);
        assert_eq!(Request::decode(&frame, &LIMITS).as_ref(), Ok(&request));
        assert_eq!(request.to_frame(id).unwrap(), bytes);
        // A request is not a response.
        assert!(matches!(
            Response::decode(&frame, &LIMITS),
            Err(DecodeError::UnknownOpcode { .. })
        ));
    }
    assert_eq!(opcodes.len(), 13, "every request kind: {opcodes:x?}");
}

#[test]
fn codec_point_requests_encode_as_the_requests_they_mirror() {
    let mut rng = Rng(0x9e07_0c03);
    let mut seen = BTreeSet::new();
    let mut owned = Vec::new();
    let mut point = Vec::new();
    for _ in 0..5_000 {
        let request = any_request(&mut rng);
        let borrowed = match &request {
            Request::Get { table, key } => PointRequest::Get { table, key },
            Request::Put { table, key, value } => PointRequest::Put { table, key, value },
            Request::Delete { table, key } => PointRequest::Delete { table, key },
            _ => continue,
        };
        let id = rng.next();
        // After other bytes: both append.
        owned.clear();
        owned.extend_from_slice(b"xy");
        point.clone_from(&owned);
        request.encode(id, &mut owned).unwrap();
        borrowed.encode(id, &mut point).unwrap();
        assert_eq!(point, owned, "{request:?}");
        seen.insert(request.opcode());
    }
    assert_eq!(seen.len(), 3, "Get, Put and Delete: {seen:x?}");
    // A name longer than its u16 length field allows is refused and leaves the buffer as
    // it was.
    let mut out = b"xy".to_vec();
    let name = "t".repeat(usize::from(u16::MAX) + 1);
    let refused = PointRequest::Get {
        table: &name,
        key: b"k",
    }
    .encode(1, &mut out);
    assert!(
        matches!(refused, Err(EncodeError::TooLong { .. })),
        "{refused:?}"
    );
    assert_eq!(out, b"xy");
}

/// The borrowed form of a Get, Put or Delete.
fn as_point(request: &Request) -> Option<PointRequest<'_>> {
    match request {
        Request::Get { table, key } => Some(PointRequest::Get { table, key }),
        Request::Put { table, key, value } => Some(PointRequest::Put { table, key, value }),
        Request::Delete { table, key } => Some(PointRequest::Delete { table, key }),
        _ => None,
    }
}

#[test]
fn codec_point_requests_decode_in_place_as_requests_decode() {
    // Get, Put and Delete (docs/protocol.md, section 5).
    const POINT_OPCODES: [u8; 3] = [0x08, 0x09, 0x0a];
    let mut rng = Rng(0x9e07_0c04);
    let (mut accepted, mut refused, mut others) = (BTreeSet::new(), 0, 0);
    for _ in 0..20_000 {
        let limits = if rng.chance(2) { TINY_LIMITS } else { LIMITS };
        let request = any_request(&mut rng);
        let mut bytes = request.to_frame(rng.next()).unwrap();
        mutate_past_the_length(&mut rng, &mut bytes, &POINT_OPCODES);
        let Ok(Decoded::Frame(frame)) = decode_frame(&bytes, &limits) else {
            continue;
        };
        let owned = Request::decode(&frame, &limits);
        let point = PointRequest::decode(&frame, &limits);
        if !POINT_OPCODES.contains(&frame.header.opcode) {
            assert_eq!(point, Ok(None), "{owned:?}");
            others += 1;
            continue;
        }
        match (&owned, point) {
            (Ok(owned), Ok(Some(point))) => {
                assert_eq!(as_point(owned), Some(point));
                accepted.insert(frame.header.opcode);
            }
            (Err(owned), Err(point)) => {
                assert_eq!(*owned, point);
                refused += 1;
            }
            (owned, point) => panic!("Request::decode {owned:?}, PointRequest::decode {point:?}"),
        }
    }
    assert_eq!(
        accepted.len(),
        3,
        "Get, Put and Delete accepted: {accepted:x?}"
    );
    assert!(
        refused > 100 && others > 100,
        "{refused} refused, {others} others"
    );
}

/// Up to two mutations past the length field: the framing still cuts the frame, the
/// message decoders see a changed version, opcode, flags or body; half of them write one of
/// `opcodes`, so that the point decoders see their own opcodes over foreign bodies.
fn mutate_past_the_length(rng: &mut Rng, bytes: &mut [u8], opcodes: &[u8]) {
    for _ in 0..rng.below(3) {
        let at = 4 + rng.index(bytes.len() - 4);
        bytes[at] = if rng.chance(2) {
            rng.next() as u8
        } else {
            opcodes[rng.index(opcodes.len())]
        };
    }
}

/// The borrowed form of a Value or Written response.
fn as_point_response(response: &Response) -> Option<PointResponse<'_>> {
    match response {
        Response::Value(found) => Some(PointResponse::Value(
            found.as_ref().map(|v| (v.value.as_slice(), v.version)),
        )),
        Response::Written { lsn } => Some(PointResponse::Written { lsn: *lsn }),
        _ => None,
    }
}

#[test]
fn codec_point_responses_encode_and_decode_as_the_responses_they_mirror() {
    // Value and Written (docs/protocol.md, section 6).
    const POINT_OPCODES: [u8; 2] = [0x87, 0x88];
    let mut rng = Rng(0x9e07_0c05);
    let (mut accepted, mut refused, mut others) = (BTreeSet::new(), 0, 0);
    let mut owned = Vec::new();
    let mut point = Vec::new();
    for _ in 0..20_000 {
        let limits = if rng.chance(2) { TINY_LIMITS } else { LIMITS };
        let response = any_response(&mut rng);
        let id = rng.next();
        if let Some(borrowed) = as_point_response(&response) {
            // After other bytes: both append the same frame.
            owned.clear();
            owned.extend_from_slice(b"xy");
            point.clone_from(&owned);
            response.encode(id, &mut owned).unwrap();
            borrowed.encode(id, &mut point).unwrap();
            assert_eq!(point, owned, "{response:?}");
        }
        let mut bytes = response.to_frame(id).unwrap();
        mutate_past_the_length(&mut rng, &mut bytes, &POINT_OPCODES);
        let Ok(Decoded::Frame(frame)) = decode_frame(&bytes, &limits) else {
            continue;
        };
        let owned = Response::decode(&frame, &limits);
        let point = PointResponse::decode(&frame, &limits);
        if !POINT_OPCODES.contains(&frame.header.opcode) {
            assert_eq!(point, Ok(None), "{owned:?}");
            others += 1;
            continue;
        }
        match (&owned, point) {
            (Ok(owned), Ok(Some(point))) => {
                assert_eq!(as_point_response(owned), Some(point));
                accepted.insert(frame.header.opcode);
            }
            (Err(owned), Err(point)) => {
                assert_eq!(*owned, point);
                refused += 1;
            }
            (owned, point) => {
                panic!("Response::decode {owned:?}, PointResponse::decode {point:?}")
            }
        }
    }
    assert_eq!(
        accepted.len(),
        2,
        "Value and Written accepted: {accepted:x?}"
    );
    assert!(
        refused > 100 && others > 100,
        "{refused} refused, {others} others"
    );
}

#[test]
fn codec_random_responses_round_trip() {
    let mut rng = Rng(0x9e07_0c02);
    let mut opcodes = BTreeSet::new();
    for _ in 0..5_000 {
        let response = any_response(&mut rng);
        let id = rng.next();
        let bytes = response.to_frame(id).unwrap();
        let frame = frame(&bytes);
        assert_eq!(frame.size(), bytes.len());
        assert_eq!(frame.header.request_id, id);
        assert!(frame.header.is_response());
        opcodes.insert(frame.header.opcode);
        assert_eq!(Response::decode(&frame, &LIMITS).as_ref(), Ok(&response));
        assert!(matches!(
            Request::decode(&frame, &LIMITS),
            Err(DecodeError::UnknownOpcode { .. })
        ));
    }
    assert_eq!(opcodes.len(), 11, "every response kind: {opcodes:x?}");
}

/// Random frames of both kinds.
fn any_frames(seed: u64, count: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    (0..count)
        .map(|_| {
            let id = rng.next();
            if rng.chance(2) {
                any_request(&mut rng).to_frame(id).unwrap()
            } else {
                any_response(&mut rng).to_frame(id).unwrap()
            }
        })
        .collect()
}

fn decode_message(bytes: &[u8], limits: &Limits) -> Result<(), DecodeError> {
    let Decoded::Frame(frame) = decode_frame(bytes, limits)? else {
        panic!("not a whole frame");
    };
    if frame.header.is_response() {
        Response::decode(&frame, limits).map(drop)
    } else {
        Request::decode(&frame, limits).map(drop)
    }
}

#[test]
fn codec_every_truncation_needs_more_or_is_refused() {
    for bytes in any_frames(0x9e07_0c03, 400) {
        for cut in 0..bytes.len() {
            // The framing waits for the rest.
            match decode_frame(&bytes[..cut], &LIMITS) {
                Ok(Decoded::NeedMore { needed }) => {
                    let expected = if cut < 4 { HEADER_SIZE } else { bytes.len() };
                    assert_eq!(needed, expected, "cut at {cut} of {}", bytes.len());
                }
                other => panic!("cut at {cut}: {other:?}"),
            }
            // A body cut short but resealed is refused by the message decoder.
            if cut >= HEADER_SIZE {
                let shorter = reseal(bytes[..cut].to_vec());
                let e = decode_message(&shorter, &LIMITS).unwrap_err();
                assert!(!e.is_fatal(), "{e}");
                if let DecodeError::Malformed { offset, .. } = e {
                    assert!(offset <= cut, "{e} past {cut}");
                }
            }
        }
    }
}

#[test]
fn codec_trailing_bytes_are_refused() {
    for bytes in any_frames(0x9e07_0c04, 300) {
        let size = bytes.len();
        let mut longer = bytes;
        longer.push(0);
        let e = decode_message(&reseal(longer), &LIMITS).unwrap_err();
        assert_eq!(
            e,
            DecodeError::Malformed {
                offset: size,
                what: "trailing bytes after the message"
            }
        );
    }
}

#[test]
fn codec_unknown_opcodes_versions_and_flags_are_refused_by_request_id() {
    let known_requests: BTreeSet<u8> = (0x01..=0x0d).collect();
    let known_responses: BTreeSet<u8> = (0x81..=0x8a).chain([0xff]).collect();
    for opcode in 0..=255u8 {
        let mut bytes = Request::Ping.to_frame(7).unwrap();
        bytes[5] = opcode;
        let request = request_of(&bytes);
        let response = response_of(&bytes);
        if !known_requests.contains(&opcode) {
            assert_eq!(request, Err(DecodeError::UnknownOpcode { opcode }));
        }
        if !known_responses.contains(&opcode) {
            assert_eq!(response, Err(DecodeError::UnknownOpcode { opcode }));
        }
    }
    let mut bytes = Request::Ping.to_frame(7).unwrap();
    bytes[4] = 2;
    let e = request_of(&bytes).unwrap_err();
    assert_eq!(e, DecodeError::UnsupportedVersion { found: 2 });
    assert!(!e.is_fatal());
    assert_eq!(
        e.to_server_error().kind,
        ErrorKind::UnsupportedVersion { min: 1, max: 1 }
    );
    let mut bytes = Request::Ping.to_frame(7).unwrap();
    bytes[7] = 0x80;
    let e = request_of(&bytes).unwrap_err();
    assert_eq!(e, DecodeError::ReservedFlags { flags: 0x8000 });
    assert_eq!(e.to_server_error().kind, ErrorKind::BadRequest);
    // The frame still parses, so the server can answer request 7.
    assert_eq!(frame(&bytes).header.request_id, 7);
}

// ---------------------------------------------------------------------------------------
// Framing bounds.

#[test]
fn codec_declared_length_over_the_maximum_is_refused_before_reserving() {
    let huge = u32::MAX.to_le_bytes();
    let e = decode_frame(&huge, &LIMITS).unwrap_err();
    assert_eq!(
        e,
        DecodeError::FrameTooLarge {
            size: u64::from(u32::MAX) + 4,
            max: FRAME_SIZE_MAX
        }
    );
    assert!(e.is_fatal());
    assert_eq!(e.to_server_error().kind, ErrorKind::FrameTooLarge);

    // Exactly the maximum waits for the rest; one more byte is refused.
    let at_max = (FRAME_SIZE_MAX - 4).to_le_bytes();
    assert_eq!(
        decode_frame(&at_max, &LIMITS),
        Ok(Decoded::NeedMore {
            needed: FRAME_SIZE_MAX as usize
        })
    );
    let over = (FRAME_SIZE_MAX - 3).to_le_bytes();
    assert!(matches!(
        decode_frame(&over, &LIMITS),
        Err(DecodeError::FrameTooLarge { .. })
    ));

    // The stream decoder refuses it with the four bytes in hand, having reserved nothing
    // for it, and stays refused.
    let mut decoder = FrameDecoder::new(LIMITS);
    decoder.push(&huge);
    assert!(decoder.capacity() < 64, "capacity {}", decoder.capacity());
    assert_eq!(decoder.next_frame().unwrap_err(), e);
    decoder.push(&[0; 100]);
    assert!(decoder.capacity() < 256, "capacity {}", decoder.capacity());
    assert_eq!(decoder.next_frame().unwrap_err(), e);
    assert_eq!(decoder.needed(), 0);

    // Lengths shorter than the header are refused too.
    for length in 0..12u32 {
        assert_eq!(
            decode_frame(&length.to_le_bytes(), &LIMITS),
            Err(DecodeError::FrameTooShort { length })
        );
    }
    assert!(matches!(
        decode_frame(&12u32.to_le_bytes(), &LIMITS),
        Ok(Decoded::NeedMore { needed: 16 })
    ));
}

#[test]
fn codec_frame_decoder_reserves_at_most_the_declared_frame() {
    let request = Request::Put {
        table: "t".into(),
        key: b"k".to_vec(),
        value: vec![7; 1 << 20],
    };
    let bytes = request.to_frame(1).unwrap();
    let mut decoder = FrameDecoder::new(LIMITS);
    decoder.push(&bytes[..3]);
    assert_eq!(decoder.needed(), HEADER_SIZE - 3);
    decoder.push(&bytes[3..20]);
    assert!(decoder.capacity() >= bytes.len());
    assert!(
        decoder.capacity() <= bytes.len() + 64,
        "capacity {} for a {}-byte frame",
        decoder.capacity(),
        bytes.len()
    );
    assert_eq!(decoder.needed(), bytes.len() - 20);
    assert!(decoder.next_frame().unwrap().is_none());
    decoder.push(&bytes[20..]);
    let frame = decoder.next_frame().unwrap().unwrap();
    assert_eq!(Request::decode(&frame, &LIMITS).unwrap(), request);
    assert!(decoder.next_frame().unwrap().is_none());
    assert_eq!(decoder.buffered(), 0);
}

#[test]
fn codec_frame_decoder_in_any_chunks_finds_the_same_frames() {
    let frames = any_frames(0x9e07_0c05, 200);
    let stream: Vec<u8> = frames.concat();
    let mut rng = Rng(0x9e07_0c06);
    for _ in 0..20 {
        let mut decoder = FrameDecoder::new(LIMITS);
        let mut found = Vec::new();
        let mut at = 0;
        while at < stream.len() {
            let len = (1 + rng.index(300)).min(stream.len() - at);
            decoder.push(&stream[at..at + len]);
            at += len;
            while let Some(frame) = decoder.next_frame().unwrap() {
                let size = frame.size();
                let start = found.iter().map(Vec::len).sum::<usize>();
                assert_eq!(frame.body, &stream[start + HEADER_SIZE..start + size]);
                found.push(stream[start..start + size].to_vec());
            }
        }
        assert_eq!(found, frames);
        assert_eq!(decoder.buffered(), 0);
    }
}

// ---------------------------------------------------------------------------------------
// Limits.

fn limit_of(bytes: &[u8], limits: &Limits) -> (Limit, u64, u64) {
    match decode_message(bytes, limits) {
        Err(DecodeError::LimitExceeded {
            limit, found, max, ..
        }) => (limit, found, max),
        other => panic!("expected a limit, got {other:?}"),
    }
}

fn put(key_len: usize, value_len: usize) -> Vec<u8> {
    Request::Put {
        table: "t".into(),
        key: vec![1; key_len],
        value: vec![2; value_len],
    }
    .to_frame(1)
    .unwrap()
}

fn scan(lower: Bound<Vec<u8>>, limit: u32, cursor_key: Option<usize>) -> Vec<u8> {
    Request::Scan(Scan {
        table: "t".into(),
        lower,
        upper: Bound::Unbounded,
        direction: popdb_protocol::Direction::Forward,
        limit,
        cursor: cursor_key.map(|len| popdb_protocol::Cursor {
            key: vec![0; len],
            lsn: 1,
        }),
    })
    .to_frame(1)
    .unwrap()
}

#[test]
fn codec_key_value_and_scan_limits_are_enforced_and_named() {
    assert!(decode_message(&put(512, 1 << 20), &LIMITS).is_ok());
    assert_eq!(limit_of(&put(513, 0), &LIMITS), (Limit::KeySize, 513, 512));
    assert_eq!(
        limit_of(&put(0, (1 << 20) + 1), &LIMITS),
        (Limit::ValueSize, (1 << 20) + 1, 1 << 20)
    );
    // Scan bounds may be a key's successor (513 bytes), cursors are keys.
    assert!(
        decode_message(
            &scan(Bound::Excluded(vec![0; 513]), 10_000, Some(512)),
            &LIMITS
        )
        .is_ok()
    );
    assert_eq!(
        limit_of(&scan(Bound::Included(vec![0; 514]), 0, None), &LIMITS),
        (Limit::KeySize, 514, 513)
    );
    assert_eq!(
        limit_of(&scan(Bound::Unbounded, 10_001, None), &LIMITS),
        (Limit::ScanLimit, 10_001, 10_000)
    );
    assert_eq!(
        limit_of(&scan(Bound::Unbounded, 0, Some(513)), &LIMITS),
        (Limit::KeySize, 513, 512)
    );
    let name = Request::DropTable {
        name: "n".repeat(65),
    };
    assert_eq!(
        limit_of(&name.to_frame(1).unwrap(), &LIMITS),
        (Limit::TableName, 65, 64)
    );
    let token = Request::Handshake {
        version_min: 1,
        version_max: 1,
        token: Some(vec![0; 1025]),
    };
    assert_eq!(
        limit_of(&token.to_frame(1).unwrap(), &LIMITS),
        (Limit::AuthToken, 1025, 1024)
    );
}

/// A batch or commit frame whose counts claim more than their limits, with no elements
/// behind them: the limit is named before the bytes are found missing.
fn claimed_counts(opcode: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = Request::Ping.to_frame(1).unwrap();
    bytes[5] = opcode;
    bytes.extend_from_slice(body);
    reseal(bytes)
}

#[test]
fn codec_count_limits_are_checked_before_reserving() {
    let le32 = |v: u32| v.to_le_bytes();
    // Batch: table count 4097.
    let bytes = claimed_counts(0x0b, &4097u16.to_le_bytes());
    assert_eq!(limit_of(&bytes, &LIMITS), (Limit::Tables, 4097, 4096));
    // Batch: no tables, write count 65537.
    let bytes = claimed_counts(0x0b, &[&0u16.to_le_bytes()[..], &le32(65_537)].concat());
    assert_eq!(
        limit_of(&bytes, &LIMITS),
        (Limit::BatchWrites, 65_537, 65_536)
    );
    // Batch: 65536 writes claimed with no bytes behind them: refused as malformed.
    let bytes = claimed_counts(0x0b, &[&0u16.to_le_bytes()[..], &le32(65_536)].concat());
    assert_eq!(
        decode_message(&bytes, &LIMITS),
        Err(DecodeError::Malformed {
            offset: 18,
            what: "count exceeds what the remaining bytes can hold"
        })
    );
    // Commit: no idempotency key, no tables, 4097 conditions.
    let bytes = claimed_counts(0x0d, &[&[0u8, 0, 0][..], &le32(4097)].concat());
    assert_eq!(limit_of(&bytes, &LIMITS), (Limit::Conditions, 4097, 4096));
    // Entries: 10001.
    let mut bytes = Response::Pong.to_frame(1).unwrap();
    bytes[5] = 0x89;
    bytes.extend_from_slice(&[&0u64.to_le_bytes()[..], &le32(10_001)].concat());
    assert_eq!(
        limit_of(&reseal(bytes), &LIMITS),
        (Limit::ScanLimit, 10_001, 10_000)
    );
}

#[test]
fn codec_batch_size_counts_keys_and_values() {
    let writes = |sizes: &[(usize, usize)]| Request::Batch {
        tables: vec!["t".into()],
        writes: sizes
            .iter()
            .map(|&(k, v)| Write {
                table: 0,
                key: vec![1; k],
                value: Some(vec![2; v]),
            })
            .collect(),
    };
    let fits = writes(&[(6, 10), (4, 4)]).to_frame(1).unwrap();
    assert!(decode_message(&fits, &TINY_LIMITS).is_ok());
    let over = writes(&[(6, 10), (4, 5)]).to_frame(1).unwrap();
    assert_eq!(limit_of(&over, &TINY_LIMITS), (Limit::BatchSize, 25, 24));
    let e = decode_message(&over, &TINY_LIMITS).unwrap_err();
    assert_eq!(
        e.to_server_error().kind,
        ErrorKind::LimitExceeded {
            limit: Limit::BatchSize
        }
    );
}

#[test]
fn codec_table_indexes_must_name_a_table() {
    let commit = Commit {
        tables: vec!["a".into(), "b".into()],
        conditions: vec![Condition {
            table: 2,
            check: Check::Exists { key: vec![] },
        }],
        ..Commit::default()
    };
    let bytes = Request::Commit(commit).to_frame(1).unwrap();
    assert!(matches!(
        decode_message(&bytes, &LIMITS),
        Err(DecodeError::Malformed {
            what: "table index is not below the table count",
            ..
        })
    ));
    let batch = Request::Batch {
        tables: vec![],
        writes: vec![Write {
            table: 0,
            key: vec![],
            value: None,
        }],
    };
    assert!(decode_message(&batch.to_frame(1).unwrap(), &LIMITS).is_err());
}

#[test]
fn codec_a_commit_at_every_db_limit_fits_one_frame() {
    // 4,096 tables of 64-byte names; 4,096 range conditions with 513-byte bounds; 65,536
    // puts holding 8 MiB of keys and values: the largest request the Db accepts.
    let tables: Vec<String> = (0..4096).map(|i| format!("{i:064}")).collect();
    let conditions = (0..4096)
        .map(|i| Condition {
            table: i as u16,
            check: Check::RangeUnchanged {
                start: vec![1; 513],
                end: Some(vec![2; 513]),
                since: u64::MAX,
            },
        })
        .collect();
    let writes = (0..65_536)
        .map(|i| Write {
            table: (i % 4096) as u16,
            key: vec![3; 64],
            value: Some(vec![4; 64]),
        })
        .collect();
    let commit = Request::Commit(Commit {
        idempotency: Some(popdb_protocol::IdempotencyKey {
            client: 1,
            sequence: 2,
        }),
        tables,
        conditions,
        writes,
    });
    let bytes = commit.to_frame(u64::MAX).unwrap();
    assert!(
        bytes.len() <= FRAME_SIZE_MAX as usize,
        "{} bytes > {FRAME_SIZE_MAX}",
        bytes.len()
    );
    // docs/protocol.md, section 8, gives this sum.
    assert_eq!(bytes.len(), 13_664_299);
    assert_eq!(request_of(&bytes).unwrap(), commit);
}

#[test]
fn codec_encode_refuses_fields_wider_than_their_length_and_leaves_the_buffer() {
    let mut out = vec![9];
    let request = Request::DropTable {
        name: "n".repeat(70_000),
    };
    assert_eq!(
        request.encode(1, &mut out),
        Err(EncodeError::TooLong {
            what: "table name",
            len: 70_000,
            bits: 16
        })
    );
    assert_eq!(out, [9]);
}

// ---------------------------------------------------------------------------------------
// The spec's worked example (docs/protocol.md, section 11).

/// The example: a put, its answer, and the answer to a get whose key was too long.
/// A frame of the example: its title, bytes, and each field's size and meaning.
type ExampleFrame = (&'static str, Vec<u8>, Vec<(usize, &'static str)>);

fn worked_example() -> Vec<ExampleFrame> {
    let put = Request::Put {
        table: "users".into(),
        key: b"k1".to_vec(),
        value: b"hello".to_vec(),
    };
    let written = Response::Written { lsn: 42 };
    let error = Response::Error(ServerError::new(
        ErrorKind::LimitExceeded {
            limit: Limit::KeySize,
        },
        "key of 600 bytes",
    ));
    let header = |length: &'static str, opcode: &'static str, id: &'static str| {
        vec![
            (4, length),
            (1, "version = 1"),
            (1, opcode),
            (2, "flags = 0"),
            (8, id),
        ]
    };
    let mut put_fields = header("length = 34", "opcode = 0x09 (Put)", "request_id = 1");
    put_fields.extend([
        (2, "table name length = 5"),
        (5, "table name \"users\""),
        (4, "key length = 2"),
        (2, "key \"k1\""),
        (4, "value length = 5"),
        (5, "value \"hello\""),
    ]);
    let mut written_fields = header("length = 20", "opcode = 0x88 (Written)", "request_id = 1");
    written_fields.push((8, "lsn = 42"));
    let mut error_fields = header("length = 34", "opcode = 0xff (Error)", "request_id = 2");
    error_fields.extend([
        (2, "code = 3 (LimitExceeded)"),
        (2, "limit = 2 (key size)"),
        (2, "message length = 16"),
        (16, "message \"key of 600 bytes\""),
    ]);
    vec![
        ("Put, request 1", put.to_frame(1).unwrap(), put_fields),
        (
            "Written, answering 1",
            written.to_frame(1).unwrap(),
            written_fields,
        ),
        (
            "Error, answering 2",
            error.to_frame(2).unwrap(),
            error_fields,
        ),
    ]
}

fn hex_string(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut text, b| {
        write!(text, "{b:02x}").unwrap();
        text
    })
}

/// One line per field: offset, up to 8 bytes of hex a line, meaning.
fn dump(bytes: &[u8], fields: &[(usize, &str)]) -> String {
    let mut text = String::new();
    let mut at = 0;
    for &(size, meaning) in fields {
        for (i, chunk) in bytes[at..at + size].chunks(8).enumerate() {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            let meaning = if i == 0 { meaning } else { "" };
            let line = format!("{:>4}  {:<24}{meaning}", at + 8 * i, hex.join(" "));
            text.push_str(line.trim_end());
            text.push('\n');
        }
        at += size;
    }
    assert_eq!(at, bytes.len(), "the fields cover the frame");
    text
}

#[test]
fn codec_worked_example_keeps_its_bytes() {
    let frames = worked_example();
    let hex: Vec<String> = frames
        .iter()
        .map(|(_, bytes, _)| hex_string(bytes))
        .collect();
    assert_eq!(
        hex,
        [
            "2200000001090000010000000000000005007573657273020000006b310500000068656c6c6f",
            "140000000188000001000000000000002a00000000000000",
            "2200000001ff000002000000000000000300020010006b6579206f6620363030206279746573",
        ]
    );
    for h in &hex {
        assert!(
            include_str!("../../docs/protocol.md").contains(h.as_str()),
            "docs/protocol.md lacks {h}"
        );
    }
    // The spec shows exactly these dumps.
    let spec = include_str!("../../docs/protocol.md");
    for (title, bytes, fields) in &frames {
        let text = dump(bytes, fields);
        assert!(
            spec.contains(&text),
            "docs/protocol.md lacks the dump of {title}:\n{text}"
        );
    }
    // And they decode to what they claim.
    assert!(matches!(request_of(&frames[0].1), Ok(Request::Put { .. })));
    assert_eq!(response_of(&frames[1].1), Ok(Response::Written { lsn: 42 }));
}

/// Prints the worked example's dumps for the spec.
#[test]
#[ignore = "prints the spec's dumps"]
fn dump_worked_example() {
    for (title, bytes, fields) in worked_example() {
        println!("{title}:\n```\n{}```\n", dump(&bytes, &fields));
    }
}

#[test]
fn codec_invalid_utf8_is_refused_at_the_text() {
    let mut bytes = Request::DropTable { name: "ab".into() }
        .to_frame(1)
        .unwrap();
    bytes[19] = 0xff;
    assert_eq!(
        request_of(&bytes),
        Err(DecodeError::Malformed {
            offset: 18,
            what: "text is not valid UTF-8"
        })
    );
    let error = Response::Error(ServerError::new(ErrorKind::Internal, "ok"));
    let mut bytes = error.to_frame(1).unwrap();
    let last = bytes.len() - 1;
    bytes[last] = 0xc3;
    assert!(matches!(
        response_of(&bytes),
        Err(DecodeError::Malformed { offset: 20, .. })
    ));
}
