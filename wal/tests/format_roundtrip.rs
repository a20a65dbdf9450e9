//! Property tests of the WAL v1 encoders and decoders (docs/format/wal.md): every segment
//! header, unit header, record header and state file the encoders can produce decodes to the
//! same fields, and a checksum seeded with one segment's identity never validates in another.
//!
//! Needs `popdb_wal::internals`, hence the feature gate: these run when the crate's tests are
//! built with the `internals` feature.

#![cfg(feature = "internals")]
#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use popdb_wal::internals::{
    LogState, RECORD_HEADER_SIZE, RecordHeader, SEGMENT_HEADER_FIELDS, SEGMENT_SIZE_MAX,
    SEGMENT_SIZE_MIN, SegmentHeader, UNIT_HEADER_SIZE, UnitHeader, seed,
};
use popdb_wal::{LogId, Lsn, NodeId, Term, VOTE_SIZE_MAX};
use proptest::prelude::*;

fn segment_header() -> impl Strategy<Value = SegmentHeader> {
    (
        any::<u64>(),
        any::<u64>(),
        1..=u64::MAX,
        SEGMENT_SIZE_MIN..=SEGMENT_SIZE_MAX,
    )
        .prop_map(
            |(segment_id, generation, first_lsn, segment_size)| SegmentHeader {
                segment_id,
                generation,
                first_lsn,
                segment_size,
            },
        )
}

fn unit_header() -> impl Strategy<Value = UnitHeader> {
    (
        1..=1000u32,
        0..=4096u32,
        1..=u64::MAX / 2,
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(record_count, extra, first_lsn, generation, durable_upto)| UnitHeader {
                body_len: record_count * RECORD_HEADER_SIZE as u32 + extra,
                record_count,
                first_lsn,
                generation,
                durable_upto,
            },
        )
}

fn log_state() -> impl Strategy<Value = LogState> {
    (
        any::<u64>(),
        proptest::option::of((1..=u64::MAX, any::<u64>(), any::<u64>())),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..=VOTE_SIZE_MAX)),
    )
        .prop_map(|(generation, purged, vote)| LogState {
            generation,
            purged: purged.map(|(lsn, term, node)| LogId {
                lsn: Lsn(lsn),
                term: Term(term),
                node: NodeId(node),
            }),
            vote,
        })
}

proptest! {
    #[test]
    fn segment_header_round_trips(h in segment_header()) {
        let bytes = h.encode();
        prop_assert_eq!(bytes.len(), SEGMENT_HEADER_FIELDS);
        prop_assert_eq!(&bytes[..8], b"POPDBWAL");
        prop_assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
        // The rest of the 4 KiB block is not read.
        let mut block = bytes.to_vec();
        block.resize(4096, 0xa5);
        prop_assert_eq!(SegmentHeader::decode(&block), Ok(h));
    }

    #[test]
    fn segment_header_any_flip_is_refused(h in segment_header(), at in 0..64usize, bit in 0..8u8) {
        let mut bytes = h.encode();
        bytes[at] ^= 1 << bit;
        prop_assert!(SegmentHeader::decode(&bytes).is_err());
    }

    #[test]
    fn unit_header_round_trips(u in unit_header(), id in any::<u64>(), generation in any::<u64>()) {
        let s = seed(id, generation);
        let bytes = u.encode(&s);
        prop_assert_eq!(bytes.len(), UNIT_HEADER_SIZE);
        prop_assert_eq!(&bytes[..4], b"UNIT");
        prop_assert_eq!(UnitHeader::decode(&bytes, &s), Some(u));
        prop_assert_eq!(u.last_lsn(), u.first_lsn + u64::from(u.record_count) - 1);
    }

    #[test]
    fn unit_header_from_another_segment_is_refused(
        u in unit_header(),
        id in any::<u64>(),
        generation in any::<u64>(),
        other_id in any::<u64>(),
        other_generation in any::<u64>(),
    ) {
        prop_assume!((id, generation) != (other_id, other_generation));
        let bytes = u.encode(&seed(id, generation));
        prop_assert_eq!(UnitHeader::decode(&bytes, &seed(other_id, other_generation)), None);
    }

    #[test]
    fn record_header_round_trips(
        id in any::<u64>(),
        generation in any::<u64>(),
        lsn in 1..=u64::MAX,
        term in any::<u64>(),
        node in any::<u64>(),
        kind in 1..=3u8,
        payload in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let s = seed(id, generation);
        let header = RecordHeader::encode(&s, lsn, term, node, kind, &payload);
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(&payload);
        let h = RecordHeader::decode_checked(&bytes, &s).unwrap();
        prop_assert_eq!((h.lsn, h.term, h.node, h.kind), (lsn, term, node, kind));
        prop_assert_eq!(h.payload_len as usize, payload.len());
        prop_assert_eq!(h.record_len(), bytes.len());
        prop_assert_eq!(h.crc.to_le_bytes(), [header[0], header[1], header[2], header[3]]);
        prop_assert_eq!(
            RecordHeader::encode(&s, h.lsn, h.term, h.node, h.kind, &payload),
            header
        );
        // Another segment's seed, a missing payload byte, or any flip: refused.
        prop_assert!(RecordHeader::decode_checked(&bytes, &seed(id ^ 1, generation)).is_none());
        prop_assert!(RecordHeader::decode_checked(&bytes[..bytes.len() - 1], &s).is_none());
    }

    #[test]
    fn record_any_flip_is_refused(
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        pick in any::<usize>(),
        bit in 0..8u8,
    ) {
        let s = seed(3, 4);
        let mut bytes = RecordHeader::encode(&s, 9, 2, 1, 1, &payload).to_vec();
        bytes.extend_from_slice(&payload);
        let at = pick % bytes.len();
        bytes[at] ^= 1 << bit;
        prop_assert!(RecordHeader::decode_checked(&bytes, &s).is_none());
    }

    #[test]
    fn record_unknown_kind_is_refused(kind in 4..=u8::MAX) {
        let s = seed(1, 1);
        let bytes = RecordHeader::encode(&s, 1, 0, 0, kind, &[]);
        prop_assert!(RecordHeader::decode_checked(&bytes, &s).is_none());
        let bytes = RecordHeader::encode(&s, 1, 0, 0, 0, &[]);
        prop_assert!(RecordHeader::decode_checked(&bytes, &s).is_none());
    }

    #[test]
    fn state_file_round_trips(state in log_state()) {
        let bytes = state.encode();
        let vote_len = state.vote.as_ref().map_or(0, Vec::len);
        prop_assert_eq!(bytes.len(), 54 + vote_len);
        prop_assert_eq!(&bytes[..8], b"POPDBWST");
        prop_assert_eq!(LogState::decode(&bytes), Ok(state));
    }

    #[test]
    fn state_file_any_flip_is_refused(state in log_state(), pick in any::<usize>(), bit in 0..8u8) {
        let mut bytes = state.encode();
        let at = pick % bytes.len();
        bytes[at] ^= 1 << bit;
        prop_assert!(LogState::decode(&bytes).is_err());
    }
}

#[test]
fn format_sizes_match_the_spec() {
    assert_eq!(SEGMENT_HEADER_FIELDS, 64);
    assert_eq!(UNIT_HEADER_SIZE, 40);
    assert_eq!(RECORD_HEADER_SIZE, 36);
    assert_eq!(LogState::default().encode().len(), 54);
}
