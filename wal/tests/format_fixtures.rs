//! Golden fixtures of WAL format v1 (wal/tests/fixtures/wal/v1/): a small log written by the
//! real log, never regenerated (STYLE section 8). Every supported version must keep decoding
//! them. The segment is the worked example of docs/format/wal.md:
//!
//! - `0000000000000001.wal`: 64 KiB segment 1, generation 1, first LSN 1; unit 1 at 0x1000
//!   holds LSN 1 (term 1, node 7, Normal, "hello") and LSN 2 (term 1, node 7, Blank, empty);
//!   unit 2 at 0x1075 holds LSN 3 (term 2, node 7, Membership, "voters=7").
//! - `STATE`: generation 1, purged through LSN 1 (term 1, node 7), vote "term=2 voted_for=7".

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use popdb_io::{FileSystem, FsRef, OpenOptions, RealFs};
use popdb_wal::{LogId, Lsn, NodeId, Record, RecordKind, Term, Wal, WalOptions};

const SEGMENT: &str = "0000000000000001.wal";
const STATE: &str = "STATE";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wal/v1")
}

fn read(path: &Path) -> Vec<u8> {
    let file = RealFs::new().open(path, OpenOptions::read_only()).unwrap();
    let mut bytes = vec![0u8; usize::try_from(file.len().unwrap()).unwrap()];
    file.read_exact_at(&mut bytes, 0).unwrap();
    bytes
}

fn fixture(name: &str) -> Vec<u8> {
    read(&fixture_dir().join(name))
}

fn id(lsn: u64, term: u64, node: u64) -> LogId {
    LogId {
        lsn: Lsn(lsn),
        term: Term(term),
        node: NodeId(node),
    }
}

#[test]
fn fixture_v1_opens_with_its_records_vote_and_purge_point() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::new();
    for name in [SEGMENT, STATE] {
        let file = fs
            .open(&dir.path().join(name), OpenOptions::create_new())
            .unwrap();
        file.write_all_at(&fixture(name), 0).unwrap();
    }
    let fs: FsRef = Arc::new(fs);
    let options = WalOptions {
        segment_size: 64 * 1024,
        record_size_max: 1024,
        spare_segments: 0,
        ..WalOptions::default()
    };
    let (wal, report) = Wal::open(fs, dir.path(), options).unwrap();
    assert_eq!(report.generation, 2);
    assert_eq!(report.torn_tail, None);
    assert_eq!(report.first, Some(Lsn(2)));
    assert_eq!(report.last, Some(id(3, 2, 7)));
    assert_eq!(report.records, 2);
    assert_eq!(wal.last_purged(), Some(id(1, 1, 7)));
    assert_eq!(wal.vote().as_deref(), Some(&b"term=2 voted_for=7"[..]));
    assert_eq!(
        wal.read(Lsn(2)..Lsn(4)).unwrap(),
        vec![
            Record {
                id: id(2, 1, 7),
                kind: RecordKind::Blank,
                payload: Vec::new(),
            },
            Record {
                id: id(3, 2, 7),
                kind: RecordKind::Membership,
                payload: b"voters=7".to_vec(),
            },
        ]
    );
    wal.close().unwrap();
}

#[test]
fn state_file_with_the_largest_vote_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let fs: FsRef = Arc::new(RealFs::new());
    let options = || WalOptions {
        segment_size: 64 * 1024,
        record_size_max: 1024,
        spare_segments: 0,
        ..WalOptions::default()
    };
    let vote = vec![7u8; popdb_wal::VOTE_SIZE_MAX];
    let (wal, _) = Wal::open(Arc::clone(&fs), dir.path(), options()).unwrap();
    wal.save_vote(&vote).unwrap();
    wal.close().unwrap();
    let (wal, _) = Wal::open(fs, dir.path(), options()).unwrap();
    assert_eq!(wal.vote(), Some(vote));
    wal.close().unwrap();
}

#[cfg(feature = "internals")]
mod internals {
    use popdb_wal::internals::{
        LogState, RecordLoc, ScanEnd, ScanLimits, SegmentHeader, UnitHeader, scan_segment, seed,
    };
    use popdb_wal::{Corruption, CorruptionKind};

    use super::{SEGMENT, STATE, fixture, id};

    const TAIL: ScanLimits = ScanLimits {
        live_end: None,
        generation_max: 1,
    };

    #[test]
    fn fixture_v1_segment_decodes_to_the_documented_fields() {
        let bytes = fixture(SEGMENT);
        assert_eq!(bytes.len(), 65536);
        let header = SegmentHeader {
            segment_id: 1,
            generation: 1,
            first_lsn: 1,
            segment_size: 65536,
        };
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        assert_eq!(header.encode()[..], bytes[..64]);
        assert_eq!(&bytes[60..64], &[0x00, 0xb2, 0x71, 0x4c], "header crc");
        assert!(bytes[64..4096].iter().all(|&b| b == 0));

        let s = seed(1, 1);
        let unit_1 = UnitHeader {
            body_len: 77,
            record_count: 2,
            first_lsn: 1,
            generation: 1,
            durable_upto: 0x1000,
        };
        let unit_2 = UnitHeader {
            body_len: 44,
            record_count: 1,
            first_lsn: 3,
            generation: 1,
            durable_upto: 0x1075,
        };
        assert_eq!(UnitHeader::decode(&bytes[0x1000..], &s), Some(unit_1));
        assert_eq!(UnitHeader::decode(&bytes[0x1075..], &s), Some(unit_2));
        assert_eq!(unit_1.encode(&s)[..], bytes[0x1000..0x1028]);
        assert_eq!(unit_2.encode(&s)[..], bytes[0x1075..0x109d]);

        let scan = scan_segment(SEGMENT, &bytes, TAIL).unwrap();
        assert_eq!(scan.header, header);
        let loc = |lsn, term, kind, offset, len| RecordLoc {
            lsn,
            term,
            node: 7,
            kind,
            offset,
            len,
        };
        assert_eq!(
            scan.records,
            vec![
                loc(1, 1, 1, 0x1028, 41),
                loc(2, 1, 2, 0x1051, 36),
                loc(3, 2, 3, 0x109d, 44),
            ]
        );
        assert_eq!(scan.end_offset, 0x10c9);
        assert_eq!(scan.last_generation, 1);
        assert_eq!(scan.durable_upto, 0x1075);
        assert_eq!(scan.end, ScanEnd::Clean);
        assert!(bytes[0x10c9..].iter().all(|&b| b == 0));
    }

    #[test]
    fn fixture_v1_state_decodes_to_the_documented_fields() {
        let bytes = fixture(STATE);
        let state = LogState {
            generation: 1,
            purged: Some(id(1, 1, 7)),
            vote: Some(b"term=2 voted_for=7".to_vec()),
        };
        assert_eq!(LogState::decode(&bytes), Ok(state.clone()));
        assert_eq!(state.encode(), bytes);
        assert_eq!(bytes.len(), 54 + 18);
    }

    #[test]
    fn fixture_v1_damage_in_the_last_unit_is_a_torn_tail() {
        let mut bytes = fixture(SEGMENT);
        bytes[0x10c1] ^= 0x01; // a payload byte of LSN 3, in the last unit
        let scan = scan_segment(SEGMENT, &bytes, TAIL).unwrap();
        assert_eq!(scan.records.len(), 2);
        assert_eq!(scan.end_offset, 0x1075);
        assert_eq!(scan.end, ScanEnd::Torn { lost: Some((3, 3)) });
    }

    #[test]
    fn fixture_v1_damage_before_a_durable_claim_is_corruption() {
        let mut bytes = fixture(SEGMENT);
        bytes[0x104c] ^= 0x01; // a payload byte of LSN 1; unit 2 says 0x1075 was durable
        let err = scan_segment(SEGMENT, &bytes, TAIL).unwrap_err();
        assert_eq!(
            err,
            Corruption {
                file: SEGMENT.to_string(),
                offset: 0x1000,
                what: "unit",
                kind: CorruptionKind::DamageBeforeValidWrite {
                    later_offset: 0x1075
                },
            }
        );
    }

    #[test]
    fn fixture_v1_as_a_non_last_segment_needs_its_live_records() {
        let bytes = fixture(SEGMENT);
        let limits = |live_end| ScanLimits {
            live_end: Some(live_end),
            generation_max: 1,
        };
        let scan = scan_segment(SEGMENT, &bytes, limits(2)).unwrap();
        assert_eq!(scan.end, ScanEnd::LiveEndReached);
        assert_eq!(scan.records.len(), 2);
        let err = scan_segment(SEGMENT, &bytes, limits(4)).unwrap_err();
        assert_eq!(
            err.kind,
            CorruptionKind::LsnGap {
                expected: 4,
                found: 3
            }
        );
    }

    #[test]
    fn fixture_v1_from_a_newer_generation_than_known_is_refused() {
        let bytes = fixture(SEGMENT);
        let limits = ScanLimits {
            live_end: None,
            generation_max: 0,
        };
        let err = scan_segment(SEGMENT, &bytes, limits).unwrap_err();
        assert_eq!(err.what, "segment header generation");
    }
}
