//! The manifest's byte layout: file names, the manifest file header, the frame that holds
//! each edit, and the `CURRENT` pointer. Spec: docs/format/manifest.md; this file mirrors it.
//!
//! A manifest file is `header, frame*`. The header (28 bytes) is the magic, `format_version`,
//! a reserved word, the manifest's number and a crc32 of the bytes before it. A frame is
//! `length (u32), crc32 (u32), body (length bytes)`; the body is one encoded edit
//! (`manifest_codec.rs`). The frame's crc32 is seeded with the manifest's number and the
//! frame's file offset, and covers the length and the body, so a frame is valid only in the
//! file and at the place it was written.
//!
//! `CURRENT` (36 bytes) names the live manifest and its base size: the magic, `format_version`,
//! a reserved word, the manifest's number, `base_size` and a crc32 of the bytes before it.
//!
//! Invariants the encoders assert and the decoders validate: numbers are at least 1; reserved
//! words are zero; a frame's body is at most [`FRAME_BODY_SIZE_MAX`] bytes; `base_size` is
//! past the header.

#![deny(clippy::indexing_slicing)]

use crate::error::{CorruptionKind, Error, Result};

/// The manifest file's magic: ASCII `POPDBMAN`, at offset 0.
pub const MAGIC: [u8; 8] = *b"POPDBMAN";
/// The `CURRENT` file's magic: ASCII `POPDBCUR`, at offset 0.
pub const CURRENT_MAGIC: [u8; 8] = *b"POPDBCUR";
/// The newest (and only) `format_version` this build writes and reads, for both files.
pub const FORMAT_VERSION: u32 = 1;

/// The pointer file's name.
pub const CURRENT_FILE: &str = "CURRENT";
/// The name the pointer is written under before it is renamed over [`CURRENT_FILE`].
pub const CURRENT_TEMP_FILE: &str = "CURRENT.tmp";
/// Manifest files are named this prefix and the number as 16 lowercase hex digits.
pub const MANIFEST_PREFIX: &str = "MANIFEST-";

/// Header offset of the magic (8 bytes).
pub const HEADER_MAGIC_AT: usize = 0;
/// Header offset of `format_version` (`u32`).
pub const HEADER_VERSION_AT: usize = HEADER_MAGIC_AT + 8;
/// Header offset of the reserved word (`u32`, zero).
pub const HEADER_RESERVED_AT: usize = HEADER_VERSION_AT + 4;
/// Header offset of the manifest's number (`u64`).
pub const HEADER_NUMBER_AT: usize = HEADER_RESERVED_AT + 4;
/// Header offset of the crc32 (`u32`) of header bytes `[0, HEADER_CRC_AT)`.
pub const HEADER_CRC_AT: usize = HEADER_NUMBER_AT + 8;
/// Bytes of the header; the first frame starts here.
pub const HEADER_SIZE: usize = HEADER_CRC_AT + 4;

/// Frame offset of `length` (`u32`): bytes of the body.
pub const FRAME_LENGTH_AT: usize = 0;
/// Frame offset of the seeded crc32 (`u32`).
pub const FRAME_CRC_AT: usize = FRAME_LENGTH_AT + 4;
/// Bytes of a frame before its body.
pub const FRAME_HEADER_SIZE: usize = FRAME_CRC_AT + 4;
/// The largest body a frame may hold. Far above any real edit (a compaction's edit names a
/// few hundred files); it bounds what a reader believes of a damaged length field.
pub const FRAME_BODY_SIZE_MAX: u32 = 64 << 20;

/// `CURRENT` offset of the magic (8 bytes).
pub const CURRENT_MAGIC_AT: usize = 0;
/// `CURRENT` offset of `format_version` (`u32`).
pub const CURRENT_VERSION_AT: usize = CURRENT_MAGIC_AT + 8;
/// `CURRENT` offset of the reserved word (`u32`, zero).
pub const CURRENT_RESERVED_AT: usize = CURRENT_VERSION_AT + 4;
/// `CURRENT` offset of the live manifest's number (`u64`).
pub const CURRENT_NUMBER_AT: usize = CURRENT_RESERVED_AT + 4;
/// `CURRENT` offset of `base_size` (`u64`).
pub const CURRENT_BASE_SIZE_AT: usize = CURRENT_NUMBER_AT + 8;
/// `CURRENT` offset of the crc32 (`u32`) of bytes `[0, CURRENT_CRC_AT)`.
pub const CURRENT_CRC_AT: usize = CURRENT_BASE_SIZE_AT + 8;
/// Bytes of `CURRENT`.
pub const CURRENT_SIZE: usize = CURRENT_CRC_AT + 4;

const _: () = assert!(HEADER_SIZE == 28);
const _: () = assert!(FRAME_HEADER_SIZE == 8);
const _: () = assert!(CURRENT_SIZE == 36);
const _: () = assert!(HEADER_NUMBER_AT.is_multiple_of(8));
const _: () = assert!(CURRENT_NUMBER_AT.is_multiple_of(8));
// Both files keep magic and version at the same offsets, which `check_magic_version` reads.
const _: () = assert!(HEADER_VERSION_AT == 8 && CURRENT_VERSION_AT == 8);

/// The file name of manifest `number`: `MANIFEST-` and 16 lowercase hex digits.
pub fn manifest_file_name(number: u64) -> String {
    format!("{MANIFEST_PREFIX}{number:016x}")
}

/// The number a manifest file name carries, if `name` is exactly one this module writes.
pub fn parse_manifest_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix(MANIFEST_PREFIX)?;
    let lower_hex = hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if hex.len() != 16 || !lower_hex {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Encodes the header of manifest `number`.
///
/// # Panics
/// If `number` is 0 (numbers start at 1).
pub fn encode_header(number: u64) -> [u8; HEADER_SIZE] {
    assert!(number >= 1, "manifest number 0");
    let mut out = [0u8; HEADER_SIZE];
    let mut w = Writer::new(&mut out);
    w.put(&MAGIC);
    w.put(&FORMAT_VERSION.to_le_bytes());
    w.put(&0u32.to_le_bytes());
    w.put(&number.to_le_bytes());
    let crc = popdb_io::crc32(w.written());
    w.put(&crc.to_le_bytes());
    out
}

/// Decodes and validates a manifest header from the start of `bytes`: magic, version (before
/// the crc, since another version may lay the header out otherwise), crc32, reserved word,
/// and a number that is `expected_number`. Errors carry the offset of the field at fault.
pub fn decode_header(bytes: &[u8], expected_number: u64) -> Result<()> {
    let header = fixed::<HEADER_SIZE>(bytes, "manifest header")?;
    check_magic_version(
        &header,
        MAGIC,
        ["manifest magic", "manifest format_version"],
    )?;
    check_crc(&header, HEADER_CRC_AT, "manifest header crc32")?;
    check_reserved(&header, HEADER_RESERVED_AT, "manifest header reserved")?;
    let number = u64_at(&header, HEADER_NUMBER_AT);
    if number != expected_number {
        return Err(invalid(HEADER_NUMBER_AT, "manifest header number", number));
    }
    Ok(())
}

/// The decoded `CURRENT` file: which manifest is live, and where its base ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CurrentPointer {
    /// The live manifest's number (file `MANIFEST-<number as 16 hex>`), at least 1.
    pub number: u64,
    /// Bytes of the live manifest's header and base frames: they were durable before this
    /// pointer was written, so damage below this offset is corruption, never a torn tail.
    pub base_size: u64,
}

impl CurrentPointer {
    /// Encodes the pointer, crc32 last.
    ///
    /// # Panics
    /// If `number` is 0 or `base_size` does not reach past the header (a writer bug).
    pub fn encode(&self) -> [u8; CURRENT_SIZE] {
        assert!(self.number >= 1, "manifest number 0");
        assert!(
            self.base_size > HEADER_SIZE as u64,
            "base_size {} holds no frame",
            self.base_size
        );
        let mut out = [0u8; CURRENT_SIZE];
        let mut w = Writer::new(&mut out);
        w.put(&CURRENT_MAGIC);
        w.put(&FORMAT_VERSION.to_le_bytes());
        w.put(&0u32.to_le_bytes());
        w.put(&self.number.to_le_bytes());
        w.put(&self.base_size.to_le_bytes());
        let crc = popdb_io::crc32(w.written());
        w.put(&crc.to_le_bytes());
        out
    }

    /// Decodes and validates a whole `CURRENT` file: exactly [`CURRENT_SIZE`] bytes, then
    /// magic, version, crc32, reserved word, `number >= 1`, `base_size > HEADER_SIZE`.
    /// Errors carry the offset of the field at fault (not the file name; the caller adds it).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let b = fixed::<CURRENT_SIZE>(bytes, "CURRENT")?;
        if bytes.len() > CURRENT_SIZE {
            return Err(invalid(CURRENT_SIZE, "CURRENT length", bytes.len() as u64));
        }
        check_magic_version(
            &b,
            CURRENT_MAGIC,
            ["CURRENT magic", "CURRENT format_version"],
        )?;
        check_crc(&b, CURRENT_CRC_AT, "CURRENT crc32")?;
        check_reserved(&b, CURRENT_RESERVED_AT, "CURRENT reserved")?;
        let number = u64_at(&b, CURRENT_NUMBER_AT);
        if number == 0 {
            return Err(invalid(CURRENT_NUMBER_AT, "CURRENT number", 0));
        }
        let base_size = u64_at(&b, CURRENT_BASE_SIZE_AT);
        if base_size <= HEADER_SIZE as u64 {
            return Err(invalid(
                CURRENT_BASE_SIZE_AT,
                "CURRENT base_size",
                base_size,
            ));
        }
        Ok(Self { number, base_size })
    }
}

/// The crc32 of the frame at file offset `offset` of manifest `number` with body `body`:
/// `crc32(number u64 LE || offset u64 LE || length u32 LE || body)`, one computation.
pub fn frame_crc(number: u64, offset: u64, body: &[u8]) -> u32 {
    let length = u32::try_from(body.len()).expect("frame bodies are bounded by the encoder");
    let mut crc = popdb_io::Crc32::new();
    crc.update(&number.to_le_bytes());
    crc.update(&offset.to_le_bytes());
    crc.update(&length.to_le_bytes());
    crc.update(body);
    crc.finish()
}

/// Appends the frame of `body` to `out`, whose first byte sits at file offset `out_offset`
/// of manifest `number`.
///
/// # Panics
/// If `body` is longer than [`FRAME_BODY_SIZE_MAX`] (the caller checks edits first).
pub fn push_frame(out: &mut Vec<u8>, out_offset: u64, number: u64, body: &[u8]) {
    let length = u32::try_from(body.len())
        .ok()
        .filter(|&l| l <= FRAME_BODY_SIZE_MAX)
        .unwrap_or_else(|| panic!("frame body of {} bytes is too large", body.len()));
    let offset = out_offset + out.len() as u64;
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&frame_crc(number, offset, body).to_le_bytes());
    out.extend_from_slice(body);
}

/// Why the bytes at an offset are not a valid frame: `(field, kind)`.
pub type FrameDamage = (&'static str, CorruptionKind);

/// The body of the frame at `offset` of `file` (a whole manifest `number`), if the frame is
/// valid there: its length field fits [`FRAME_BODY_SIZE_MAX`] and the file, and its seeded
/// crc32 matches.
pub fn frame_at(file: &[u8], offset: usize, number: u64) -> Result<&[u8], FrameDamage> {
    let rest = file.get(offset..).unwrap_or_default();
    let truncated = |needed: u64| {
        let available = rest.len() as u64;
        (
            "manifest frame",
            CorruptionKind::Truncated { needed, available },
        )
    };
    let head: [u8; FRAME_HEADER_SIZE] = rest
        .get(..FRAME_HEADER_SIZE)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| truncated(FRAME_HEADER_SIZE as u64))?;
    let length = u32_at(&head, FRAME_LENGTH_AT);
    if length > FRAME_BODY_SIZE_MAX {
        let found = u64::from(length);
        return Err((
            "manifest frame length",
            CorruptionKind::InvalidValue { found },
        ));
    }
    let end = FRAME_HEADER_SIZE + length as usize;
    let body = rest
        .get(FRAME_HEADER_SIZE..end)
        .ok_or_else(|| truncated(end as u64))?;
    let expected = u32_at(&head, FRAME_CRC_AT);
    let actual = frame_crc(number, offset as u64, body);
    if expected != actual {
        let kind = CorruptionKind::ChecksumMismatch { expected, actual };
        return Err(("manifest frame crc32", kind));
    }
    Ok(body)
}

/// Sequential fixed-size writes into an array.
struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl<'a> Writer<'a> {
    fn new(out: &'a mut [u8]) -> Self {
        Self { out, at: 0 }
    }

    fn put(&mut self, bytes: &[u8]) {
        let end = self.at + bytes.len();
        self.out
            .get_mut(self.at..end)
            .expect("the layout constants size the array")
            .copy_from_slice(bytes);
        self.at = end;
    }

    fn written(&self) -> &[u8] {
        self.out.get(..self.at).unwrap_or_default()
    }
}

/// The first `N` bytes of `bytes`, or `Truncated`.
fn fixed<const N: usize>(bytes: &[u8], what: &'static str) -> Result<[u8; N]> {
    bytes
        .get(..N)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            let kind = CorruptionKind::Truncated {
                needed: N as u64,
                available: bytes.len() as u64,
            };
            Error::corruption(0, what, kind)
        })
}

/// Checks the magic at 0 and the `format_version` after it; `what` names the two fields.
fn check_magic_version(b: &[u8], magic: [u8; 8], what: [&'static str; 2]) -> Result<()> {
    let found: [u8; 8] = b
        .get(..8)
        .and_then(|m| m.try_into().ok())
        .expect("callers pass fixed-size arrays longer than 8");
    if found != magic {
        return Err(Error::corruption(
            0,
            what[0],
            CorruptionKind::BadMagic { found },
        ));
    }
    let version = u32_at(b, 8);
    if version != FORMAT_VERSION {
        let kind = CorruptionKind::UnsupportedVersion {
            found: version,
            max: FORMAT_VERSION,
        };
        return Err(Error::corruption(8, what[1], kind));
    }
    Ok(())
}

/// Checks the crc32 stored at `crc_at` against the bytes before it.
fn check_crc(b: &[u8], crc_at: usize, what: &'static str) -> Result<()> {
    let expected = u32_at(b, crc_at);
    let actual = popdb_io::crc32(b.get(..crc_at).unwrap_or_default());
    if expected != actual {
        let kind = CorruptionKind::ChecksumMismatch { expected, actual };
        return Err(Error::corruption(crc_at, what, kind));
    }
    Ok(())
}

/// Checks that the reserved `u32` at `at` is zero.
fn check_reserved(b: &[u8], at: usize, what: &'static str) -> Result<()> {
    match u32_at(b, at) {
        0 => Ok(()),
        found => Err(invalid(at, what, found.into())),
    }
}

fn invalid(at: usize, what: &'static str, found: u64) -> Error {
    Error::corruption(at, what, CorruptionKind::InvalidValue { found })
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let b = bytes.get(at..at + 8).and_then(|b| b.try_into().ok());
    u64::from_le_bytes(b.expect("offsets come from the layout constants"))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let b = bytes.get(at..at + 4).and_then(|b| b.try_into().ok());
    u32::from_le_bytes(b.expect("offsets come from the layout constants"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, reason = "tests index known layouts")]

    use super::*;

    fn corruption(e: Error) -> crate::Corruption {
        match e {
            Error::Corruption(c) => c,
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn file_names_round_trip_and_refuse_lookalikes() {
        assert_eq!(manifest_file_name(1), "MANIFEST-0000000000000001");
        assert_eq!(
            parse_manifest_file_name("MANIFEST-00000000000000ff"),
            Some(255)
        );
        assert_eq!(
            parse_manifest_file_name(&manifest_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        for bad in [
            "MANIFEST-00000000000000FF",
            "MANIFEST-0000000000000001.tmp",
            "MANIFEST-1",
            "MANIFEST-+000000000000001",
            "CURRENT",
        ] {
            assert_eq!(parse_manifest_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn header_round_trips_and_every_byte_flip_is_refused_at_its_field() {
        let bytes = encode_header(7);
        assert_eq!(&bytes[..8], b"POPDBMAN");
        decode_header(&bytes, 7).unwrap();
        let c = corruption(decode_header(&bytes, 8).unwrap_err());
        assert_eq!((c.offset, c.what), (16, "manifest header number"));
        for at in 0..HEADER_SIZE {
            let mut bad = bytes;
            bad[at] ^= 0x10;
            let c = corruption(decode_header(&bad, 7).unwrap_err());
            let field = match at {
                0..8 => 0,
                8..12 => 8,
                _ => HEADER_CRC_AT as u64,
            };
            assert_eq!(c.offset, field, "flip at {at}: {c}");
        }
    }

    #[test]
    fn current_round_trips_and_every_byte_flip_is_refused() {
        let p = CurrentPointer {
            number: 3,
            base_size: 100,
        };
        let bytes = p.encode();
        assert_eq!(CurrentPointer::decode(&bytes).unwrap(), p);
        for at in 0..CURRENT_SIZE {
            let mut bad = bytes;
            bad[at] ^= 0x01;
            assert!(CurrentPointer::decode(&bad).is_err(), "flip at {at}");
        }
        for len in 0..CURRENT_SIZE {
            assert!(
                CurrentPointer::decode(&bytes[..len]).is_err(),
                "cut at {len}"
            );
        }
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(CurrentPointer::decode(&long).is_err());
    }

    #[test]
    fn current_refuses_a_newer_version_and_a_base_without_frames() {
        let mut bytes = CurrentPointer {
            number: 1,
            base_size: 40,
        }
        .encode();
        bytes[8] = 2;
        let c = corruption(CurrentPointer::decode(&bytes).unwrap_err());
        assert_eq!(
            c.kind,
            CorruptionKind::UnsupportedVersion { found: 2, max: 1 }
        );
        bytes[8] = 1;
        bytes[CURRENT_BASE_SIZE_AT..CURRENT_CRC_AT].copy_from_slice(&28u64.to_le_bytes());
        let crc = popdb_io::crc32(&bytes[..CURRENT_CRC_AT]);
        bytes[CURRENT_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        let c = corruption(CurrentPointer::decode(&bytes).unwrap_err());
        assert_eq!(c.what, "CURRENT base_size");
    }

    #[test]
    fn frames_validate_only_in_their_file_and_place() {
        let mut file = encode_header(2).to_vec();
        push_frame(&mut file, 0, 2, b"abc");
        assert_eq!(frame_at(&file, HEADER_SIZE, 2), Ok(&b"abc"[..]));
        assert!(frame_at(&file, HEADER_SIZE, 3).is_err(), "another manifest");
        let mut moved = vec![0u8];
        moved.extend_from_slice(&file);
        assert!(
            frame_at(&moved, HEADER_SIZE + 1, 2).is_err(),
            "another offset"
        );
        for len in HEADER_SIZE..file.len() {
            assert!(
                frame_at(&file[..len], HEADER_SIZE, 2).is_err(),
                "cut at {len}"
            );
        }
        let mut huge = file.clone();
        huge[HEADER_SIZE + 3] = 0xff;
        let (what, _) = frame_at(&huge, HEADER_SIZE, 2).unwrap_err();
        assert_eq!(what, "manifest frame length");
    }
}
