//! The body of fuzz target `lsm_manifest_decode`: arbitrary bytes must never make the
//! manifest's decoders panic or allocate beyond what the input holds, and whatever they accept
//! must re-encode to the same bytes.
//!
//! Like fuzz/checks/wal_segment_decode.rs (which says why), this file is included with
//! `#[path = ...] mod check;` by both fuzz/fuzz_targets/lsm_manifest_decode.rs and
//! lsm/tests/manifest_fuzz_replay.rs, and needs nothing but `popdb_lsm` with `internals`.
//!
//! Input layout: `[c0, image...]`. `image` is decoded three ways:
//! - as a `CURRENT` file (`CurrentPointer::decode`): accepted means it re-encodes to `image`;
//! - as one edit's body (`decode_edit`): accepted means it re-encodes to `image`;
//! - as a whole manifest file (`replay`), with the number its header claims (bytes 16..24; 1
//!   if shorter) and a `base_size` chosen by `c0`: bits 4-7 = `k`; `k = 15` puts the base's
//!   end past the file, otherwise it ends after frame `k` (0-based) of a walk of the frames'
//!   length fields (the last frame walked if there are fewer). If bit 1 of `c0` is set, the
//!   header crc32 and every walked frame's crc32 are re-sealed first, so that the fuzzer
//!   reaches the edit decoder and the edit rules behind the checksums.
//!
//! An accepted manifest must: re-encode (header, then each replayed edit framed at its
//! offset) to its valid prefix; account for every byte (valid prefix plus torn tail); hold a
//! state that passes `check_invariants` and equals its edits applied one by one; and replay
//! its valid prefix alone to the same state with no torn tail. A refused one must be refused
//! with `Corruption` naming the manifest, at an offset inside the input.
//!
//! Empty inputs are ignored.

use popdb_lsm::internals::manifest::{
    CurrentPointer, FRAME_HEADER_SIZE, HEADER_CRC_AT, HEADER_NUMBER_AT, HEADER_SIZE, decode_edit,
    encode_edit, encode_header, frame_crc, manifest_file_name, push_frame, replay,
};
use popdb_lsm::{Error, ManifestState, VersionEdit};

/// The fuzz target's body; panics on any violation.
pub fn check(data: &[u8]) {
    let Some((&c0, rest)) = data.split_first() else {
        return;
    };
    check_current(rest);
    check_edit_body(rest);
    let mut image = rest.to_vec();
    let number = claimed_number(&image);
    let ends = frame_ends(&image);
    if c0 & 2 != 0 {
        reseal(&mut image, number, &ends);
    }
    let k = usize::from(c0 >> 4);
    let base_size = match ends.get(k.min(ends.len().saturating_sub(1))) {
        _ if k == 15 => image.len() as u64 + 1,
        Some(&end) => end as u64,
        None => HEADER_SIZE as u64 + 1,
    };
    check_manifest(&image, number, base_size);
}

fn check_current(image: &[u8]) {
    if let Ok(pointer) = CurrentPointer::decode(image) {
        assert_eq!(
            pointer.encode()[..],
            image[..],
            "an accepted CURRENT must re-encode"
        );
    }
}

fn check_edit_body(image: &[u8]) {
    if let Ok(edit) = decode_edit(image) {
        let mut again = Vec::new();
        encode_edit(&edit, &mut again);
        assert_eq!(again, image, "an accepted edit must re-encode to its bytes");
    }
}

fn check_manifest(image: &[u8], number: u64, base_size: u64) {
    let mut edits: Vec<(u64, VersionEdit)> = Vec::new();
    let found = match replay(image, number, base_size, |at, e| {
        edits.push((at, e.clone()));
    }) {
        Ok(found) => found,
        Err(Error::Corruption(c)) => {
            assert_eq!(c.file_name, Some(manifest_file_name(number)), "{c}");
            assert!(
                c.offset <= image.len() as u64 + 1,
                "offset past the input: {c}"
            );
            return;
        }
        Err(other) => panic!("a decoder returned a non-corruption error: {other:?}"),
    };
    found.state.check_invariants();
    let valid = usize::try_from(found.valid_size).expect("inside the input");
    let torn = found.torn_tail.map_or(0, |t| t.size);
    assert_eq!(
        found.valid_size + torn,
        image.len() as u64,
        "bytes unaccounted for"
    );
    if let Some(t) = found.torn_tail {
        assert_eq!(t.offset, found.valid_size);
        assert!(t.size > 0);
    }
    let frames = found.base_frames_count + found.edits_count;
    assert_eq!(frames, edits.len() as u64);
    let mut rebuilt = encode_header(number).to_vec();
    let mut state = ManifestState::default();
    for (at, edit) in &edits {
        assert_eq!(*at, rebuilt.len() as u64, "frames must be contiguous");
        let mut body = Vec::new();
        encode_edit(edit, &mut body);
        push_frame(&mut rebuilt, 0, number, &body);
        state.apply(edit).expect("a replayed edit applies");
    }
    assert_eq!(
        rebuilt[..],
        image[..valid],
        "an accepted manifest must re-encode"
    );
    assert_eq!(state, found.state);
    let again = replay(&image[..valid], number, base_size, |_, _| {}).expect("the valid prefix");
    assert_eq!(again.state, found.state);
    assert_eq!(again.torn_tail, None);
}

/// The number the header claims, or 1.
pub fn claimed_number(image: &[u8]) -> u64 {
    image
        .get(HEADER_NUMBER_AT..HEADER_NUMBER_AT + 8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .filter(|&n| n != 0)
        .unwrap_or(1)
}

/// The ends of the frames a walk of the length fields finds from the header's end (only
/// frames that fit in the image; at most 64).
pub fn frame_ends(image: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut at = HEADER_SIZE;
    while ends.len() < 64 {
        let Some(len) = image.get(at..at + 4) else {
            break;
        };
        let end = at + FRAME_HEADER_SIZE + u32::from_le_bytes(len.try_into().expect("4")) as usize;
        if end > image.len() {
            break;
        }
        ends.push(end);
        at = end;
    }
    ends
}

/// Rewrites the header crc32 and each walked frame's crc32 to match their bytes.
fn reseal(image: &mut [u8], number: u64, ends: &[usize]) {
    if image.len() < HEADER_SIZE {
        return;
    }
    let crc = popdb_io::crc32(&image[..HEADER_CRC_AT]);
    image[HEADER_CRC_AT..HEADER_SIZE].copy_from_slice(&crc.to_le_bytes());
    let mut at = HEADER_SIZE;
    for &end in ends {
        let crc = frame_crc(number, at as u64, &image[at + FRAME_HEADER_SIZE..end]);
        image[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
}
