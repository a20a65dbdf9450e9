//! Decoding a whole segment image: which records it holds, where its valid data ends, and
//! whether what follows is a torn tail or corruption. Pure (bytes in, verdict out), so the
//! fuzz target and recovery share it. Spec: docs/format/wal.md, "Recovery".
//!
//! The rule that separates a torn tail from corruption: every unit records `durable_upto`,
//! the offset through which its segment was durable when it was written. If decoding stops
//! at offset X and some later unit of this segment is intact and says the segment was
//! durable past X, acknowledged bytes were lost: corruption. Otherwise everything from X on
//! was never known durable and is a torn tail.

use crate::error::{Corruption, CorruptionKind};
use crate::format::{
    HeaderError, RECORD_HEADER_SIZE, RecordHeader, SEGMENT_HEADER_SIZE, SegmentHeader,
    UNIT_HEADER_SIZE, UNIT_MAGIC, UnitHeader,
};

/// What the caller knows about the segment before decoding it.
#[derive(Clone, Copy, Debug)]
pub struct ScanLimits {
    /// The last LSN this segment must supply (a later segment starts after it), or `None`
    /// for the log's last segment, whose end is found by decoding.
    pub live_end: Option<u64>,
    /// The newest generation that may have written anything (the current open count).
    pub generation_max: u64,
}

/// Where one record lies in a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLoc {
    /// LSN.
    pub lsn: u64,
    /// Term.
    pub term: u64,
    /// Leader node id.
    pub node: u64,
    /// Kind tag.
    pub kind: u8,
    /// Offset of the record (its header) in the segment.
    pub offset: u32,
    /// Bytes of the whole record, header included.
    pub len: u32,
}

/// How decoding ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every live record was found (a non-last segment).
    LiveEndReached,
    /// No further unit: the bytes after `end_offset` are blank or unidentifiable.
    Clean,
    /// A unit (or units) after `end_offset` were recognisably written but are incomplete or
    /// orphaned: a torn tail, never acknowledged as durable.
    Torn {
        /// LSNs known to be lost, if any header survived to name them.
        lost: Option<(u64, u64)>,
    },
}

/// The verdict on one segment image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentScan {
    /// The segment header.
    pub header: SegmentHeader,
    /// Valid records in LSN order, starting at `header.first_lsn`.
    pub records: Vec<RecordLoc>,
    /// Offset just past the last valid unit: where the next write goes.
    pub end_offset: u64,
    /// Generation of the last valid unit (the header's if there is none).
    pub last_generation: u64,
    /// `durable_upto` of the last valid unit.
    pub durable_upto: u64,
    /// How decoding ended.
    pub end: ScanEnd,
}

/// Decodes a segment image.
///
/// # Errors
/// `Corruption` for a bad header, damage followed by a unit written after the damaged
/// bytes were durable, or a non-last segment that ends before its live records do.
pub fn scan_segment(
    name: &str,
    bytes: &[u8],
    limits: ScanLimits,
) -> Result<SegmentScan, Corruption> {
    let corrupt = |offset: u64, what: &'static str, kind: CorruptionKind| Corruption {
        file: name.to_string(),
        offset,
        what,
        kind,
    };
    let header = SegmentHeader::decode(bytes).map_err(|e| {
        let kind = match e {
            HeaderError::Truncated => CorruptionKind::Truncated {
                needed: SEGMENT_HEADER_SIZE,
                available: bytes.len() as u64,
            },
            HeaderError::BadMagic => CorruptionKind::BadMagic,
            HeaderError::UnsupportedVersion(found) => CorruptionKind::UnsupportedVersion {
                found,
                max: crate::format::FORMAT_VERSION,
            },
            HeaderError::Checksum { expected, actual } => {
                CorruptionKind::ChecksumMismatch { expected, actual }
            }
            HeaderError::Invalid(_, found) => CorruptionKind::InvalidValue { found },
        };
        corrupt(0, "segment header", kind)
    })?;
    if (bytes.len() as u64) < SEGMENT_HEADER_SIZE {
        return Err(corrupt(
            0,
            "segment header block",
            CorruptionKind::Truncated {
                needed: SEGMENT_HEADER_SIZE,
                available: bytes.len() as u64,
            },
        ));
    }
    if header.generation > limits.generation_max {
        return Err(corrupt(
            0,
            "segment header generation",
            CorruptionKind::InvalidValue {
                found: header.generation,
            },
        ));
    }
    let seed = header.seed();
    let mut scan = SegmentScan {
        header,
        records: Vec::new(),
        end_offset: SEGMENT_HEADER_SIZE,
        last_generation: header.generation,
        durable_upto: SEGMENT_HEADER_SIZE,
        end: ScanEnd::Clean,
    };
    if let Some(live_end) = limits.live_end
        && live_end < header.first_lsn
    {
        scan.end = ScanEnd::LiveEndReached;
        return Ok(scan);
    }
    let mut next_lsn = header.first_lsn;
    // Never beyond the bytes we have, nor beyond what u32 offsets can name.
    let limit = bytes.len().min(u32::MAX as usize);
    loop {
        let at = usize::try_from(scan.end_offset).expect("offset below the u32 limit");
        let unit = decode_unit(&bytes[..limit], at, &seed, &scan, next_lsn, limits);
        let Some((unit, records)) = unit else { break };
        next_lsn = unit.last_lsn() + 1;
        scan.records.extend(records);
        scan.end_offset = (at + UNIT_HEADER_SIZE + unit.body_len as usize) as u64;
        scan.last_generation = unit.generation;
        scan.durable_upto = unit.durable_upto;
        if limits.live_end.is_some_and(|end| unit.last_lsn() >= end) {
            scan.end = ScanEnd::LiveEndReached;
            return Ok(scan);
        }
    }

    // Decoding stopped at `end_offset`. Look for later units of this segment.
    let stop = scan.end_offset;
    let mut lost: Option<(u64, u64)> = None;
    let stop_at = usize::try_from(stop).expect("offset below the u32 limit");
    match UnitHeader::decode(&bytes[stop_at..limit], &seed) {
        // An intact header that continues the log: its unit is torn, and names its LSNs.
        Some(torn)
            if torn.first_lsn == next_lsn
                && torn.generation >= scan.last_generation
                && torn.generation <= limits.generation_max =>
        {
            lost = Some((torn.first_lsn, torn.last_lsn()));
        }
        // An intact header that does not continue the log is stale: nothing was lost here.
        Some(_) => {}
        None => {
            if let Some(last) = intact_records_after(&bytes[..limit], stop_at, &seed, next_lsn) {
                // The unit header is damaged but records behind it are intact: name them.
                lost = Some((next_lsn, last));
            }
        }
    }
    for later_at in find_magic(&bytes[..limit], stop_at + 1) {
        let Some(later) = UnitHeader::decode(&bytes[later_at..limit], &seed) else {
            continue;
        };
        let plausible = later.generation >= scan.last_generation
            && later.generation <= limits.generation_max
            && later.first_lsn >= next_lsn;
        if !plausible {
            continue;
        }
        if later.durable_upto > stop {
            return Err(corrupt(
                stop,
                "unit",
                CorruptionKind::DamageBeforeValidWrite {
                    later_offset: later_at as u64,
                },
            ));
        }
        let first = lost.map_or(next_lsn, |(first, _)| first);
        let last = lost.map_or(later.last_lsn(), |(_, last)| last.max(later.last_lsn()));
        lost = Some((first, last));
    }
    if let Some(live_end) = limits.live_end {
        return Err(corrupt(
            stop,
            "segment end",
            CorruptionKind::LsnGap {
                expected: live_end,
                found: next_lsn.saturating_sub(1),
            },
        ));
    }
    scan.end = if lost.is_some() {
        ScanEnd::Torn { lost }
    } else {
        ScanEnd::Clean
    };
    Ok(scan)
}

/// Decodes the unit at `at` if it is intact and continues the segment; `None` otherwise.
fn decode_unit(
    bytes: &[u8],
    at: usize,
    seed: &popdb_io::Crc32,
    scan: &SegmentScan,
    next_lsn: u64,
    limits: ScanLimits,
) -> Option<(UnitHeader, Vec<RecordLoc>)> {
    let unit = UnitHeader::decode(bytes.get(at..)?, seed)?;
    let continues = unit.first_lsn == next_lsn
        && unit.generation >= scan.last_generation
        && unit.generation <= limits.generation_max
        && unit.durable_upto >= scan.durable_upto
        && unit.durable_upto <= at as u64;
    if !continues {
        return None;
    }
    let body_at = at + UNIT_HEADER_SIZE;
    let body = bytes.get(body_at..body_at.checked_add(unit.body_len as usize)?)?;
    let mut records = Vec::with_capacity(unit.record_count as usize);
    let mut pos = 0usize;
    for i in 0..u64::from(unit.record_count) {
        let record = RecordHeader::decode_checked(&body[pos..], seed)?;
        if record.lsn != unit.first_lsn + i {
            return None;
        }
        records.push(RecordLoc {
            lsn: record.lsn,
            term: record.term,
            node: record.node,
            kind: record.kind,
            offset: u32::try_from(body_at + pos).ok()?,
            len: u32::try_from(record.record_len()).ok()?,
        });
        pos += record.record_len();
    }
    (pos == body.len()).then_some((unit, records))
}

/// The last LSN of intact, consecutive records starting `next_lsn` right behind a unit
/// header at `at`, if there is at least one.
fn intact_records_after(
    bytes: &[u8],
    at: usize,
    seed: &popdb_io::Crc32,
    next_lsn: u64,
) -> Option<u64> {
    let mut pos = at.checked_add(UNIT_HEADER_SIZE)?;
    let mut last = None;
    let mut expected = next_lsn;
    while let Some(record) = RecordHeader::decode_checked(bytes.get(pos..)?, seed) {
        if record.lsn != expected {
            break;
        }
        last = Some(expected);
        let Some(next) = expected.checked_add(1) else {
            break;
        };
        expected = next;
        pos += record.record_len();
    }
    last
}

/// Offsets at or after `from` where the unit magic appears.
fn find_magic(bytes: &[u8], from: usize) -> impl Iterator<Item = usize> + '_ {
    let magic = UNIT_MAGIC.to_le_bytes();
    let end = bytes.len().saturating_sub(UNIT_HEADER_SIZE - 1);
    (from..end.max(from)).filter(move |&i| bytes[i..i + 4] == magic)
}

/// Bytes a record with `payload_len` bytes of payload occupies.
pub fn record_size(payload_len: usize) -> usize {
    RECORD_HEADER_SIZE + payload_len
}
