//! The encoding of one edit: the body of a manifest frame. Spec: docs/format/manifest.md
//! ("Edit encoding"); tags and field order live here and there only.
//!
//! A body is a sequence of tagged fields, tags in non-decreasing order:
//! `[0x01 next_file_id] [0x02 watermark] {0x03 removed} {0x04 added}`. Scalars appear at most
//! once; removed and added files repeat, in the edit's order. Integers are canonical varints
//! (docs/format/README.md, "Varints") except levels (`u8`), and keys are length-prefixed.
//! So every edit has exactly one encoding, and a body the decoder accepts re-encodes to the
//! same bytes (the fuzz target checks it).
//!
//! The decoder validates the encoding only (tags, order, varints, lengths); whether the edit
//! fits the level structure is [`crate::ManifestState::check_edit`]'s job.

#![deny(clippy::indexing_slicing)]

use crate::block_format::{get_varint32, get_varint64, put_varint};
use crate::error::{CorruptionKind, Error, Result};
use crate::manifest_state::{FileMeta, VersionEdit};

/// Tag of `next_file_id` (`varint64`).
pub const TAG_NEXT_FILE_ID: u8 = 0x01;
/// Tag of the watermark (`varint64`).
pub const TAG_WATERMARK: u8 = 0x02;
/// Tag of a removed file: `level u8, id varint64`.
pub const TAG_REMOVED: u8 = 0x03;
/// Tag of an added file: `level u8, id, size, entry_count, smallest_lsn, largest_lsn` (each
/// `varint64` but the level), then `smallest` and `largest` keys, each `varint32` length and
/// bytes.
pub const TAG_ADDED: u8 = 0x04;

/// Appends the encoding of `edit` to `out`.
pub fn encode_edit(edit: &VersionEdit, out: &mut Vec<u8>) {
    if let Some(n) = edit.next_file_id {
        out.push(TAG_NEXT_FILE_ID);
        put_varint(out, n);
    }
    if let Some(w) = edit.watermark {
        out.push(TAG_WATERMARK);
        put_varint(out, w);
    }
    for &(level, id) in &edit.removed {
        out.push(TAG_REMOVED);
        out.push(level);
        put_varint(out, id);
    }
    for file in &edit.added {
        out.push(TAG_ADDED);
        encode_file(file, out);
    }
}

/// The bytes [`encode_edit`] writes for an added file, within a few bytes (every varint
/// counted at its longest); used to cut a base into frames.
pub fn added_size_max(file: &FileMeta) -> usize {
    2 + 5 * 10 + 2 * 5 + file.smallest.len() + file.largest.len()
}

fn encode_file(file: &FileMeta, out: &mut Vec<u8>) {
    out.push(file.level);
    for v in [
        file.id,
        file.size,
        file.entry_count,
        file.smallest_lsn,
        file.largest_lsn,
    ] {
        put_varint(out, v);
    }
    for key in [&file.smallest, &file.largest] {
        let len = u32::try_from(key.len()).expect("a key shorter than 4 GiB");
        put_varint(out, u64::from(len));
        out.extend_from_slice(key);
    }
}

/// Decodes one edit from a whole frame body. Errors are corruption at offsets from the
/// body's first byte (the caller moves them to file offsets).
pub fn decode_edit(body: &[u8]) -> Result<VersionEdit> {
    let mut r = Reader { bytes: body, at: 0 };
    let mut edit = VersionEdit::default();
    let mut last_tag = 0u8;
    while r.at < body.len() {
        let tag_at = r.at;
        let tag = r.u8("edit tag")?;
        if !(TAG_NEXT_FILE_ID..=TAG_ADDED).contains(&tag) {
            return Err(Error::corruption(
                tag_at,
                "edit tag",
                CorruptionKind::InvalidTag { tag },
            ));
        }
        let repeats = tag == last_tag && (tag == TAG_REMOVED || tag == TAG_ADDED);
        if tag < last_tag || (tag == last_tag && !repeats) {
            let kind = CorruptionKind::InvalidValue { found: tag.into() };
            return Err(Error::corruption(tag_at, "edit tag order", kind));
        }
        match tag {
            TAG_NEXT_FILE_ID => edit.next_file_id = Some(r.varint64("edit next_file_id")?),
            TAG_WATERMARK => edit.watermark = Some(r.varint64("edit watermark")?),
            TAG_REMOVED => {
                let level = r.u8("removed level")?;
                edit.removed.push((level, r.varint64("removed id")?));
            }
            _ => edit.added.push(decode_file(&mut r)?),
        }
        last_tag = tag;
    }
    Ok(edit)
}

fn decode_file(r: &mut Reader<'_>) -> Result<FileMeta> {
    let level = r.u8("added level")?;
    let id = r.varint64("added id")?;
    let size = r.varint64("added size")?;
    let entry_count = r.varint64("added entry_count")?;
    let smallest_lsn = r.varint64("added smallest_lsn")?;
    let largest_lsn = r.varint64("added largest_lsn")?;
    let smallest = r.key("added smallest key")?;
    let largest = r.key("added largest key")?;
    Ok(FileMeta {
        id,
        level,
        size,
        smallest,
        largest,
        smallest_lsn,
        largest_lsn,
        entry_count,
    })
}

/// A cursor over a body; every read checks what is left first.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn rest(&self) -> &[u8] {
        self.bytes.get(self.at..).unwrap_or_default()
    }

    fn truncated(&self, what: &'static str, needed: u64) -> Error {
        let available = self.rest().len() as u64;
        Error::corruption(
            self.at,
            what,
            CorruptionKind::Truncated { needed, available },
        )
    }

    fn u8(&mut self, what: &'static str) -> Result<u8> {
        let b = *self.rest().first().ok_or_else(|| self.truncated(what, 1))?;
        self.at += 1;
        Ok(b)
    }

    fn varint64(&mut self, what: &'static str) -> Result<u64> {
        let (v, len) = get_varint64(self.rest()).ok_or_else(|| self.bad_varint(what))?;
        self.at += len;
        Ok(v)
    }

    /// A key: `varint32` length, then that many bytes (checked against what is left before
    /// anything is allocated).
    fn key(&mut self, what: &'static str) -> Result<Vec<u8>> {
        let (len, used) = get_varint32(self.rest()).ok_or_else(|| self.bad_varint(what))?;
        let bytes = self
            .rest()
            .get(used..used + len as usize)
            .ok_or_else(|| self.truncated(what, used as u64 + u64::from(len)))?
            .to_vec();
        self.at += used + len as usize;
        Ok(bytes)
    }

    fn bad_varint(&self, what: &'static str) -> Error {
        let found = self.rest().first().copied().unwrap_or_default();
        let kind = CorruptionKind::InvalidValue {
            found: found.into(),
        };
        Error::corruption(self.at, what, kind)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, reason = "tests index known layouts")]

    use super::*;
    use crate::{InternalKey, ValueKind};
    use proptest::prelude::*;

    fn file(id: u64, level: u8, key: &[u8]) -> FileMeta {
        FileMeta {
            id,
            level,
            size: 4096 + id,
            smallest: InternalKey::new(key, 3, ValueKind::Put).encoded().to_vec(),
            largest: InternalKey::new(key, 2, ValueKind::Delete)
                .encoded()
                .to_vec(),
            smallest_lsn: 2,
            largest_lsn: 3,
            entry_count: 2,
        }
    }

    fn sample() -> VersionEdit {
        VersionEdit {
            added: vec![file(9, 1, b"k"), file(10, 2, b"")],
            removed: vec![(0, 4), (1, 300)],
            watermark: Some(77),
            next_file_id: Some(11),
        }
    }

    #[test]
    fn edit_round_trips_and_empty_edit_is_empty() {
        let mut out = Vec::new();
        encode_edit(&sample(), &mut out);
        assert_eq!(decode_edit(&out).unwrap(), sample());
        let mut empty = Vec::new();
        encode_edit(&VersionEdit::default(), &mut empty);
        assert!(empty.is_empty());
        assert_eq!(decode_edit(&[]).unwrap(), VersionEdit::default());
    }

    #[test]
    fn edit_refuses_bad_tags_order_and_truncation() {
        let mut out = Vec::new();
        encode_edit(&sample(), &mut out);
        for len in 0..out.len() {
            // A cut at a field boundary is a shorter valid edit; anywhere else is refused.
            if let Ok(edit) = decode_edit(&out[..len]) {
                let mut again = Vec::new();
                encode_edit(&edit, &mut again);
                assert_eq!(again, out[..len], "cut at {len}");
            }
        }
        for bad in [
            &[0x00][..],
            &[0x05],
            &[0x02, 1, 0x01, 1],
            &[0x01, 1, 0x01, 2],
        ] {
            assert!(decode_edit(bad).is_err(), "{bad:?}");
        }
        assert!(
            decode_edit(&[0x01, 0x80, 0x00]).is_err(),
            "over-long varint"
        );
        assert!(decode_edit(&[0x04, 0, 1, 1, 1, 1, 1, 0xff, 0xff, 0x03]).is_err());
    }

    fn arb_file() -> impl Strategy<Value = FileMeta> {
        (
            any::<u64>(),
            any::<u8>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..20),
            proptest::collection::vec(any::<u8>(), 0..20),
            any::<(u64, u64, u64)>(),
        )
            .prop_map(|(id, level, size, smallest, largest, (a, b, c))| FileMeta {
                id,
                level,
                size,
                smallest,
                largest,
                smallest_lsn: a,
                largest_lsn: b,
                entry_count: c,
            })
    }

    proptest! {
        #[test]
        fn any_edit_round_trips(
            added in proptest::collection::vec(arb_file(), 0..4),
            removed in proptest::collection::vec(any::<(u8, u64)>(), 0..4),
            watermark: Option<u64>,
            next_file_id: Option<u64>,
        ) {
            let edit = VersionEdit { added, removed, watermark, next_file_id };
            let mut out = Vec::new();
            encode_edit(&edit, &mut out);
            prop_assert_eq!(decode_edit(&out).unwrap(), edit);
        }
    }
}
