//! The body of fuzz target `wal_segment_decode`: arbitrary bytes must never make a WAL decoder
//! panic, and anything a decoder accepts must re-encode to the same bytes.
//!
//! Why this file lives here: STYLE (section 10 and notes/fuzzing-on-stable.md) wants each
//! target's body as a plain `pub fn check(data: &[u8])` beside the code it tests, so that an
//! ordinary `cargo test` can replay the corpus. The decoders are in `wal/src`, which this
//! target's author could not edit, and the fuzz crate is outside the workspace, so neither
//! crate can depend on the other for it. So the body is this one file, with no dependency but
//! `popdb_wal::internals`, and both users include it with `#[path = ...] mod check;`:
//! - fuzz/fuzz_targets/wal_segment_decode.rs (the libFuzzer binary), and
//! - wal/tests/format_fuzz_replay.rs (the replay test `cargo test --workspace` runs).
//!
//! Input layout: `[c0, c1, image...]`. The two control bytes choose the `ScanLimits` (so the
//! fuzzer explores the non-last-segment and generation rules too); `image` goes to every
//! decoder:
//! - `c0`: bit 7 set means `live_end = Some(first + (c0 & 0x7f) - 2)` (saturating), where
//!   `first` is the image's header `first_lsn` (1 if the header does not decode); clear
//!   means `None` (the log's last segment).
//! - `c1`: `generation_max = generation + c1 - 1` (saturating), where `generation` is the
//!   header's (0 if it does not decode).
//!
//! Inputs shorter than two bytes are ignored.

use popdb_wal::internals::{
    LogState, RECORD_HEADER_SIZE, RecordHeader, RecordLoc, SEGMENT_HEADER_FIELDS,
    SEGMENT_HEADER_SIZE, ScanEnd, ScanLimits, SegmentHeader, SegmentScan, UNIT_HEADER_SIZE,
    UnitHeader, scan_segment, seed,
};

/// The fuzz target's body; panics on any violation.
pub fn check(data: &[u8]) {
    let Some((&[c0, c1], image)) = data.split_first_chunk::<2>() else {
        return;
    };
    let header = SegmentHeader::decode(image);
    if let Ok(header) = header {
        assert_eq!(
            header.encode()[..],
            image[..SEGMENT_HEADER_FIELDS],
            "an accepted segment header must re-encode to its bytes"
        );
    }
    let first = header.map_or(1, |h| h.first_lsn);
    let generation = header.map_or(0, |h| h.generation);
    let limits = ScanLimits {
        live_end: (c0 & 0x80 != 0)
            .then(|| first.saturating_add(u64::from(c0 & 0x7f)).saturating_sub(2)),
        generation_max: generation.saturating_add(u64::from(c1)).saturating_sub(1),
    };
    if let Ok(scan) = scan_segment("fuzz.wal", image, limits) {
        check_scan(image, &scan, limits);
    }

    // The unit and record decoders alone, at the image's start and where units start.
    let seed = header.map_or_else(
        |_| seed(u64::from(c0), u64::from(c1)),
        |h| seed(h.segment_id, h.generation),
    );
    for at in [0, SEGMENT_HEADER_SIZE as usize] {
        let Some(bytes) = image.get(at..) else {
            continue;
        };
        if let Some(unit) = UnitHeader::decode(bytes, &seed) {
            assert_eq!(
                unit.encode(&seed)[..],
                bytes[..UNIT_HEADER_SIZE],
                "an accepted unit header must re-encode to its bytes"
            );
            assert!(unit.record_count >= 1 && unit.first_lsn >= 1);
            if let Some(body) = bytes.get(UNIT_HEADER_SIZE..) {
                check_record_bytes(body, &seed);
            }
        }
        check_record_bytes(bytes, &seed);
    }

    if let Ok(state) = LogState::decode(image) {
        assert_eq!(
            state.encode(),
            image,
            "an accepted state file must re-encode to its bytes"
        );
    }
}

/// Checks a successful scan against the image: every unit and record it accepted decodes on
/// its own and re-encodes to the same bytes, and the verdict agrees with the limits.
fn check_scan(image: &[u8], scan: &SegmentScan, limits: ScanLimits) {
    let header = SegmentHeader::decode(image).expect("a scanned segment has a valid header");
    assert_eq!(scan.header, header);
    assert!(header.generation <= limits.generation_max);
    let seed = seed(header.segment_id, header.generation);
    let end = usize::try_from(scan.end_offset).expect("end offset fits usize");
    assert!(
        end >= SEGMENT_HEADER_SIZE as usize && end <= image.len(),
        "end offset {end} outside the {}-byte image",
        image.len()
    );

    let mut at = SEGMENT_HEADER_SIZE as usize;
    let mut locs = scan.records.iter();
    let mut next_lsn = header.first_lsn;
    let mut last_unit: Option<UnitHeader> = None;
    while at < end {
        let unit = UnitHeader::decode(&image[at..], &seed).expect("an accepted unit decodes");
        assert_eq!(unit.encode(&seed)[..], image[at..at + UNIT_HEADER_SIZE]);
        assert_eq!(unit.first_lsn, next_lsn, "units continue the LSNs");
        assert!(unit.generation <= limits.generation_max);
        assert!(
            unit.durable_upto <= at as u64,
            "a unit cannot vouch for itself"
        );
        if let Some(prev) = last_unit {
            assert!(unit.generation >= prev.generation);
            assert!(unit.durable_upto >= prev.durable_upto);
        }
        let mut pos = at + UNIT_HEADER_SIZE;
        for i in 0..u64::from(unit.record_count) {
            let loc = locs
                .next()
                .expect("the scan lists every record of an accepted unit");
            assert_eq!(loc.offset as usize, pos);
            assert_eq!(loc.lsn, unit.first_lsn + i);
            check_record_loc(image, loc, &seed);
            pos += loc.len as usize;
        }
        assert_eq!(pos, at + UNIT_HEADER_SIZE + unit.body_len as usize);
        next_lsn = unit.last_lsn() + 1;
        at = pos;
        last_unit = Some(unit);
    }
    assert_eq!(at, end, "the end offset is a unit boundary");
    assert!(locs.next().is_none(), "no record outside an accepted unit");
    let (generation, durable_upto) = last_unit
        .map_or((header.generation, SEGMENT_HEADER_SIZE), |u| {
            (u.generation, u.durable_upto)
        });
    assert_eq!(scan.last_generation, generation);
    assert_eq!(scan.durable_upto, durable_upto);
    match (limits.live_end, scan.end) {
        (Some(live_end), ScanEnd::LiveEndReached) => {
            assert!(live_end < header.first_lsn || next_lsn > live_end);
        }
        (None, ScanEnd::Clean) => {}
        (None, ScanEnd::Torn { lost }) => {
            if let Some((first, last)) = lost {
                assert_eq!(first, next_lsn, "lost LSNs start where the log now ends");
                assert!(last >= first);
            }
        }
        (live_end, end) => panic!("scan ended {end:?} with live_end {live_end:?}"),
    }
}

/// Checks one record the scan located.
fn check_record_loc(image: &[u8], loc: &RecordLoc, seed: &popdb_io::Crc32) {
    let at = loc.offset as usize;
    let bytes = &image[at..at + loc.len as usize];
    let header = RecordHeader::decode_checked(bytes, seed).expect("an accepted record decodes");
    assert_eq!(
        (header.lsn, header.term, header.node, header.kind),
        (loc.lsn, loc.term, loc.node, loc.kind)
    );
    assert_eq!(header.record_len(), bytes.len());
    check_record_bytes(bytes, seed);
}

/// If a record decodes at the start of `bytes`, it must re-encode to the same bytes.
fn check_record_bytes(bytes: &[u8], seed: &popdb_io::Crc32) {
    let Some(header) = RecordHeader::decode_checked(bytes, seed) else {
        return;
    };
    let payload = &bytes[RECORD_HEADER_SIZE..header.record_len()];
    assert_eq!(payload.len(), header.payload_len as usize);
    let encoded = RecordHeader::encode(
        seed,
        header.lsn,
        header.term,
        header.node,
        header.kind,
        payload,
    );
    assert_eq!(
        encoded[..],
        bytes[..RECORD_HEADER_SIZE],
        "an accepted record header must re-encode to its bytes"
    );
}
