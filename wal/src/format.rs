//! The byte layout of WAL segments; the spec is docs/format/wal.md, and this file mirrors it.
//!
//! A segment is a pre-sized file: a 4 KiB header block, then units back to back. A unit is
//! one group-commit write: a unit header and one or more records. Every checksum is crc32
//! seeded with the segment's id and generation, so bytes left in a reused file by an earlier
//! segment can never validate. All integers are little-endian.

use popdb_io::Crc32;

/// The segment magic: "POPDBWAL".
pub const SEGMENT_MAGIC: [u8; 8] = *b"POPDBWAL";
/// The segment format version this build writes and the highest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes reserved for the segment header; units start here.
pub const SEGMENT_HEADER_SIZE: u64 = 4096;

// Segment header fields (offsets into the header block).
const SH_MAGIC: usize = 0;
const SH_VERSION: usize = SH_MAGIC + 8;
const SH_HEADER_SIZE: usize = SH_VERSION + 4;
const SH_SEGMENT_ID: usize = SH_HEADER_SIZE + 4;
const SH_GENERATION: usize = SH_SEGMENT_ID + 8;
const SH_FIRST_LSN: usize = SH_GENERATION + 8;
const SH_SEGMENT_SIZE: usize = SH_FIRST_LSN + 8;
const SH_RESERVED: usize = SH_SEGMENT_SIZE + 8;
const SH_CRC: usize = SH_RESERVED + 12;
/// Bytes of the segment header that carry fields (the rest of the block is zero).
pub const SEGMENT_HEADER_FIELDS: usize = SH_CRC + 4;
const _: () = assert!(SEGMENT_HEADER_FIELDS == 64);
const _: () = assert!(SEGMENT_HEADER_FIELDS as u64 <= SEGMENT_HEADER_SIZE);

/// The unit magic: "UNIT".
pub const UNIT_MAGIC: u32 = u32::from_le_bytes(*b"UNIT");
const UH_MAGIC: usize = 0;
const UH_CRC: usize = UH_MAGIC + 4;
const UH_BODY_LEN: usize = UH_CRC + 4;
const UH_RECORD_COUNT: usize = UH_BODY_LEN + 4;
const UH_FIRST_LSN: usize = UH_RECORD_COUNT + 4;
const UH_GENERATION: usize = UH_FIRST_LSN + 8;
const UH_DURABLE_UPTO: usize = UH_GENERATION + 8;
/// Bytes in a unit header.
pub const UNIT_HEADER_SIZE: usize = UH_DURABLE_UPTO + 8;
const _: () = assert!(UNIT_HEADER_SIZE == 40);

const R_CRC: usize = 0;
const R_LEN: usize = R_CRC + 4;
const R_LSN: usize = R_LEN + 4;
const R_TERM: usize = R_LSN + 8;
const R_NODE: usize = R_TERM + 8;
const R_KIND: usize = R_NODE + 8;
const R_FLAGS: usize = R_KIND + 1;
const R_RESERVED: usize = R_FLAGS + 1;
/// Bytes in a record header.
pub const RECORD_HEADER_SIZE: usize = R_RESERVED + 2;
const _: () = assert!(RECORD_HEADER_SIZE == 36);

/// The smallest segment size accepted (header, one unit header, one record header, and
/// room for small payloads).
pub const SEGMENT_SIZE_MIN: u64 = 64 * 1024;
/// The largest segment size accepted: record offsets are stored as `u32`, and every byte
/// of a segment must be addressable by one.
pub const SEGMENT_SIZE_MAX: u64 = 1 << 31;

/// A decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Segment id: increases with each segment created.
    pub segment_id: u64,
    /// The generation (log open count) that created the segment.
    pub generation: u64,
    /// The LSN of the segment's first record. A later segment whose first LSN is at or
    /// below an earlier segment's records supersedes them (that is how truncation is
    /// recorded).
    pub first_lsn: u64,
    /// The file's pre-written size.
    pub segment_size: u64,
}

/// Why a header failed to decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than the header needs.
    Truncated,
    /// Wrong magic.
    BadMagic,
    /// Newer format version.
    UnsupportedVersion(u32),
    /// Checksum mismatch.
    Checksum {
        /// Stored.
        expected: u32,
        /// Computed.
        actual: u32,
    },
    /// A field holds an impossible value; the name says which.
    Invalid(&'static str, u64),
}

impl SegmentHeader {
    /// The checksum seed of this segment: its id and generation.
    pub fn seed(&self) -> Crc32 {
        seed(self.segment_id, self.generation)
    }

    /// Encodes the header's fields (the first [`SEGMENT_HEADER_FIELDS`] bytes of the block).
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_FIELDS] {
        let mut b = [0u8; SEGMENT_HEADER_FIELDS];
        b[SH_MAGIC..SH_VERSION].copy_from_slice(&SEGMENT_MAGIC);
        put_u32(&mut b, SH_VERSION, FORMAT_VERSION);
        put_u32(&mut b, SH_HEADER_SIZE, SEGMENT_HEADER_SIZE as u32);
        put_u64(&mut b, SH_SEGMENT_ID, self.segment_id);
        put_u64(&mut b, SH_GENERATION, self.generation);
        put_u64(&mut b, SH_FIRST_LSN, self.first_lsn);
        put_u64(&mut b, SH_SEGMENT_SIZE, self.segment_size);
        let crc = popdb_io::crc32(&b[..SH_CRC]);
        put_u32(&mut b, SH_CRC, crc);
        b
    }

    /// Decodes and validates a header from the start of a segment file.
    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderError> {
        let b = bytes
            .get(..SEGMENT_HEADER_FIELDS)
            .ok_or(HeaderError::Truncated)?;
        if b[SH_MAGIC..SH_VERSION] != SEGMENT_MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let expected = get_u32(b, SH_CRC);
        let actual = popdb_io::crc32(&b[..SH_CRC]);
        if expected != actual {
            return Err(HeaderError::Checksum { expected, actual });
        }
        let version = get_u32(b, SH_VERSION);
        if version != FORMAT_VERSION {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        let header_size = get_u32(b, SH_HEADER_SIZE);
        if u64::from(header_size) != SEGMENT_HEADER_SIZE {
            return Err(HeaderError::Invalid("header_size", header_size.into()));
        }
        if b[SH_RESERVED..SH_CRC].iter().any(|&x| x != 0) {
            return Err(HeaderError::Invalid("reserved", 0));
        }
        let header = SegmentHeader {
            segment_id: get_u64(b, SH_SEGMENT_ID),
            generation: get_u64(b, SH_GENERATION),
            first_lsn: get_u64(b, SH_FIRST_LSN),
            segment_size: get_u64(b, SH_SEGMENT_SIZE),
        };
        if header.first_lsn == 0 {
            return Err(HeaderError::Invalid("first_lsn", 0));
        }
        if !(SEGMENT_SIZE_MIN..=SEGMENT_SIZE_MAX).contains(&header.segment_size) {
            return Err(HeaderError::Invalid("segment_size", header.segment_size));
        }
        Ok(header)
    }
}

/// A decoded unit header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitHeader {
    /// Bytes of records that follow the header.
    pub body_len: u32,
    /// Records in the body (at least one).
    pub record_count: u32,
    /// LSN of the first record; the others follow consecutively.
    pub first_lsn: u64,
    /// The generation (log open count) of the process that wrote the unit. Units in a
    /// segment never go back to an older generation: one that does is stale.
    pub generation: u64,
    /// The segment offset through which the segment was durable when this unit was
    /// written. Damage below it, followed by this unit, is corruption, not a torn tail.
    pub durable_upto: u64,
}

impl UnitHeader {
    /// The LSN of the last record.
    pub fn last_lsn(&self) -> u64 {
        self.first_lsn + u64::from(self.record_count) - 1
    }

    /// Encodes the header; the checksum covers every field but the magic, after the seed.
    pub fn encode(&self, seed: &Crc32) -> [u8; UNIT_HEADER_SIZE] {
        let mut b = [0u8; UNIT_HEADER_SIZE];
        put_u32(&mut b, UH_MAGIC, UNIT_MAGIC);
        put_u32(&mut b, UH_BODY_LEN, self.body_len);
        put_u32(&mut b, UH_RECORD_COUNT, self.record_count);
        put_u64(&mut b, UH_FIRST_LSN, self.first_lsn);
        put_u64(&mut b, UH_GENERATION, self.generation);
        put_u64(&mut b, UH_DURABLE_UPTO, self.durable_upto);
        let crc = seeded_crc(seed, &b[UH_BODY_LEN..]);
        put_u32(&mut b, UH_CRC, crc);
        b
    }

    /// Decodes a unit header at the start of `bytes`. `None` if the bytes cannot be a unit
    /// header of this segment (wrong magic, checksum or impossible fields): the caller
    /// decides whether that is the end of the log or damage.
    pub fn decode(bytes: &[u8], seed: &Crc32) -> Option<Self> {
        let b = bytes.get(..UNIT_HEADER_SIZE)?;
        if get_u32(b, UH_MAGIC) != UNIT_MAGIC {
            return None;
        }
        if get_u32(b, UH_CRC) != seeded_crc(seed, &b[UH_BODY_LEN..]) {
            return None;
        }
        let header = UnitHeader {
            body_len: get_u32(b, UH_BODY_LEN),
            record_count: get_u32(b, UH_RECORD_COUNT),
            first_lsn: get_u64(b, UH_FIRST_LSN),
            generation: get_u64(b, UH_GENERATION),
            durable_upto: get_u64(b, UH_DURABLE_UPTO),
        };
        let min_body = u64::from(header.record_count) * RECORD_HEADER_SIZE as u64;
        let valid = header.record_count >= 1
            && u64::from(header.body_len) >= min_body
            && header.first_lsn >= 1
            && header
                .first_lsn
                .checked_add(u64::from(header.record_count))
                .is_some();
        valid.then_some(header)
    }
}

/// A decoded record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Checksum over the seed and every byte of the record after this field.
    pub crc: u32,
    /// Payload bytes.
    pub payload_len: u32,
    /// LSN.
    pub lsn: u64,
    /// Term.
    pub term: u64,
    /// Leader node id.
    pub node: u64,
    /// Kind tag (see `RecordKind`).
    pub kind: u8,
}

impl RecordHeader {
    /// Encodes the header of a record with `payload`; computes the checksum. The writer
    /// uses [`RecordHeader::encode_into`]; this form serves tests and the fuzz checks.
    #[cfg(any(test, feature = "internals"))]
    pub fn encode(
        seed: &Crc32,
        lsn: u64,
        term: u64,
        node: u64,
        kind: u8,
        payload: &[u8],
    ) -> [u8; RECORD_HEADER_SIZE] {
        let mut b = [0u8; RECORD_HEADER_SIZE];
        let len = u32::try_from(payload.len()).expect("record payload checked against the limit");
        put_u32(&mut b, R_LEN, len);
        put_u64(&mut b, R_LSN, lsn);
        put_u64(&mut b, R_TERM, term);
        put_u64(&mut b, R_NODE, node);
        b[R_KIND] = kind;
        let mut crc = seed.clone();
        crc.update(&b[R_LEN..]);
        crc.update(payload);
        put_u32(&mut b, R_CRC, crc.finish());
        b
    }

    /// Appends a whole record (header, then payload) to `out`, computing the checksum over
    /// the bytes in place: one pass over contiguous memory, the writer's hot path.
    /// Produces exactly the bytes of [`RecordHeader::encode`] followed by the payload.
    pub fn encode_into(
        out: &mut Vec<u8>,
        seed: &Crc32,
        lsn: u64,
        term: u64,
        node: u64,
        kind: u8,
        payload: &[u8],
    ) {
        let start = out.len();
        let len = u32::try_from(payload.len()).expect("record payload checked against the limit");
        out.extend_from_slice(&[0u8; RECORD_HEADER_SIZE]);
        let b = &mut out[start..];
        put_u32(b, R_LEN, len);
        put_u64(b, R_LSN, lsn);
        put_u64(b, R_TERM, term);
        put_u64(b, R_NODE, node);
        b[R_KIND] = kind;
        out.extend_from_slice(payload);
        let mut crc = seed.clone();
        crc.update(&out[start + R_LEN..]);
        let crc = crc.finish();
        put_u32(&mut out[start..], R_CRC, crc);
    }

    /// Decodes a record header and checks it against its payload, which must follow it in
    /// `bytes`. `None` on any mismatch.
    pub fn decode_checked(bytes: &[u8], seed: &Crc32) -> Option<Self> {
        let b = bytes.get(..RECORD_HEADER_SIZE)?;
        let header = RecordHeader {
            crc: get_u32(b, R_CRC),
            payload_len: get_u32(b, R_LEN),
            lsn: get_u64(b, R_LSN),
            term: get_u64(b, R_TERM),
            node: get_u64(b, R_NODE),
            kind: b[R_KIND],
        };
        let end = RECORD_HEADER_SIZE.checked_add(header.payload_len as usize)?;
        let payload = bytes.get(RECORD_HEADER_SIZE..end)?;
        let mut crc = seed.clone();
        crc.update(&b[R_LEN..]);
        crc.update(payload);
        let valid = crc.finish() == header.crc
            && b[R_FLAGS] == 0
            && b[R_RESERVED..RECORD_HEADER_SIZE] == [0, 0]
            && crate::RecordKind::from_tag(header.kind).is_some();
        valid.then_some(header)
    }

    /// Bytes of the whole record.
    pub fn record_len(&self) -> usize {
        RECORD_HEADER_SIZE + self.payload_len as usize
    }
}

/// The checksum seed of segment `segment_id` created in `generation`.
pub fn seed(segment_id: u64, generation: u64) -> Crc32 {
    let mut crc = Crc32::new();
    crc.update(&segment_id.to_le_bytes());
    crc.update(&generation.to_le_bytes());
    crc
}

fn seeded_crc(seed: &Crc32, bytes: &[u8]) -> u32 {
    let mut crc = seed.clone();
    crc.update(bytes);
    crc.finish()
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(
        b[at..at + 4]
            .try_into()
            .expect("4-byte field inside checked bounds"),
    )
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(
        b[at..at + 8]
            .try_into()
            .expect("8-byte field inside checked bounds"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let h = SegmentHeader {
            segment_id: 7,
            generation: 3,
            first_lsn: 100,
            segment_size: SEGMENT_SIZE_MIN,
        };
        let bytes = h.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
        for i in 0..bytes.len() {
            let mut damaged = bytes;
            damaged[i] ^= 0x10;
            assert!(
                SegmentHeader::decode(&damaged).is_err(),
                "flip at {i} accepted"
            );
        }
    }

    #[test]
    fn unit_header_checksum_depends_on_segment_identity() {
        let u = UnitHeader {
            body_len: 36,
            record_count: 1,
            first_lsn: 5,
            generation: 2,
            durable_upto: 4096,
        };
        let bytes = u.encode(&seed(1, 2));
        assert_eq!(UnitHeader::decode(&bytes, &seed(1, 2)), Some(u));
        assert_eq!(UnitHeader::decode(&bytes, &seed(2, 2)), None);
        assert_eq!(UnitHeader::decode(&bytes, &seed(1, 3)), None);
    }

    #[test]
    fn record_encode_into_matches_encode() {
        let s = seed(3, 4);
        for payload in [&b""[..], b"x", &[7u8; 300]] {
            let mut expected = RecordHeader::encode(&s, 9, 2, 1, 1, payload).to_vec();
            expected.extend_from_slice(payload);
            let mut out = vec![0xAA];
            RecordHeader::encode_into(&mut out, &s, 9, 2, 1, 1, payload);
            assert_eq!(&out[1..], &expected[..]);
        }
    }

    #[test]
    fn record_header_detects_payload_damage() {
        let s = seed(1, 1);
        let mut bytes = RecordHeader::encode(&s, 9, 2, 1, 1, b"hello").to_vec();
        bytes.extend_from_slice(b"hello");
        let h = RecordHeader::decode_checked(&bytes, &s).expect("valid record");
        assert_eq!((h.lsn, h.term, h.node, h.payload_len), (9, 2, 1, 5));
        bytes[RECORD_HEADER_SIZE + 1] ^= 1;
        assert!(RecordHeader::decode_checked(&bytes, &s).is_none());
    }
}
