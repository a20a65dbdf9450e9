//! Reading a whole manifest file: validate the header, replay the base and then every later
//! edit from the empty state, and tell a torn tail from corruption. Spec:
//! docs/format/manifest.md ("Recovery").
//!
//! The rules, given the file's bytes, its number and `base_size` from `CURRENT`:
//! 1. The header and every frame below `base_size` were durable before `CURRENT` named this
//!    file, so any damage there (or a file shorter than `base_size`, or a frame crossing it)
//!    is corruption. The base holds at least one frame.
//! 2. After the base, frames are replayed in order. Each was synced before the next was
//!    written, so at most the last one can be partly written. A frame that fails its own
//!    checks (length, bounds, crc32) is a torn tail only if no valid frame starts anywhere
//!    after it; then it and everything after it are dropped (they were never acknowledged)
//!    and reported. Otherwise the damage is corruption (`DamageBeforeValidFrame`).
//! 3. A frame whose crc32 holds but whose edit does not decode, or does not apply to the
//!    state so far, is corruption: those bytes are what the writer wrote.
//!
//! Bounds: every length read is checked against the bytes present before use. The search for
//! a later valid frame is O(tail^2) in the worst case, where the tail is at most one frame
//! ([`FRAME_HEADER_SIZE`] + [`FRAME_BODY_SIZE_MAX`]); a longer tail is corruption at once.

#![deny(clippy::indexing_slicing)]

use crate::error::{CorruptionKind, Error, Result};
use crate::manifest_codec::decode_edit;
use crate::manifest_format::{
    FRAME_BODY_SIZE_MAX, FRAME_HEADER_SIZE, HEADER_SIZE, decode_header, frame_at,
    manifest_file_name,
};
use crate::manifest_state::{ManifestState, VersionEdit};

/// Bytes at the end of a manifest that were dropped as a torn tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// File offset of the first dropped byte: the end of the last valid frame.
    pub offset: u64,
    /// How many bytes were dropped (to the end of the file).
    pub size: u64,
}

/// What replaying a manifest file found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replay {
    /// The level structure after the last valid frame.
    pub state: ManifestState,
    /// Frames of the base (below `base_size`).
    pub base_frames_count: u64,
    /// Frames after the base that were replayed.
    pub edits_count: u64,
    /// The end of the last valid frame: where the next frame goes.
    pub valid_size: u64,
    /// The torn tail dropped, if there was one.
    pub torn_tail: Option<TornTail>,
}

/// Replays manifest `number`, whose whole content is `file` and whose base ends at
/// `base_size` (from `CURRENT`), calling `on_edit` with each frame's offset and edit in order.
///
/// # Errors
/// [`Error::Corruption`] naming the file (`MANIFEST-<16 hex>`) and the offset: of the field
/// for a damaged header, of the frame for a damaged or invalid frame, of the file's end for a
/// file shorter than its base.
pub fn replay(
    file: &[u8],
    number: u64,
    base_size: u64,
    on_edit: impl FnMut(u64, &VersionEdit),
) -> Result<Replay> {
    let name = manifest_file_name(number);
    replay_unnamed(file, number, base_size, on_edit).map_err(|e| e.in_file(&name))
}

fn replay_unnamed(
    file: &[u8],
    number: u64,
    base_size: u64,
    mut on_edit: impl FnMut(u64, &VersionEdit),
) -> Result<Replay> {
    decode_header(file, number)?;
    let file_size = file.len() as u64;
    if base_size > file_size {
        let kind = CorruptionKind::Truncated {
            needed: base_size,
            available: file_size,
        };
        return Err(Error::file_corruption(file_size, "manifest base", kind));
    }
    let base_end = usize::try_from(base_size).expect("below the length of a slice");
    let mut replay = Replay {
        state: ManifestState::default(),
        base_frames_count: 0,
        edits_count: 0,
        valid_size: HEADER_SIZE as u64,
        torn_tail: None,
    };
    let mut at = HEADER_SIZE;
    while at < base_end {
        let body = frame_at(file, at, number)
            .map_err(|(what, kind)| Error::file_corruption(at as u64, what, kind))?;
        let end = at + FRAME_HEADER_SIZE + body.len();
        if end > base_end {
            let kind = CorruptionKind::InvalidValue { found: end as u64 };
            return Err(Error::file_corruption(
                at as u64,
                "manifest base frame end",
                kind,
            ));
        }
        apply_frame(&mut replay.state, body, at, &mut on_edit)?;
        replay.base_frames_count += 1;
        at = end;
    }
    if replay.base_frames_count == 0 {
        let kind = CorruptionKind::InvalidValue { found: base_size };
        return Err(Error::file_corruption(at as u64, "manifest base", kind));
    }
    while at < file.len() {
        let body = match frame_at(file, at, number) {
            Ok(body) => body,
            Err(damage) => {
                replay.torn_tail = Some(torn_tail(file, at, number, damage)?);
                break;
            }
        };
        apply_frame(&mut replay.state, body, at, &mut on_edit)?;
        replay.edits_count += 1;
        at += FRAME_HEADER_SIZE + body.len();
    }
    replay.valid_size = at as u64;
    Ok(replay)
}

/// Decodes the edit of the valid frame at `at` and applies it to `state`.
fn apply_frame(
    state: &mut ManifestState,
    body: &[u8],
    at: usize,
    on_edit: &mut impl FnMut(u64, &VersionEdit),
) -> Result<()> {
    let body_at = (at + FRAME_HEADER_SIZE) as u64;
    let edit = decode_edit(body).map_err(|e| e.at_file_offset(body_at))?;
    match state.check_edit(&edit) {
        Ok(()) => state.apply_checked(&edit),
        Err(invalid) => {
            let kind = CorruptionKind::InvalidEdit(invalid);
            return Err(Error::file_corruption(at as u64, "manifest edit", kind));
        }
    }
    on_edit(at as u64, &edit);
    Ok(())
}

/// Bytes the search for a valid frame after damage may checksum before it gives up (and
/// refuses to open): far above any real torn tail, which holds one frame of edits.
const TORN_TAIL_SEARCH_BUDGET: u64 = 256 << 20;

/// Bytes checksumming a frame candidate at `offset` costs: its header plus the body its
/// length field claims, when that fits in the file (else nothing is checksummed).
fn candidate_cost(file: &[u8], offset: usize) -> u64 {
    let length = file
        .get(offset..offset + FRAME_HEADER_SIZE)
        .and_then(|head| head.first_chunk::<4>())
        .map(|raw| u32::from_le_bytes(*raw));
    let Some(length) = length else {
        return 1;
    };
    let end = offset + FRAME_HEADER_SIZE + length as usize;
    if length > FRAME_BODY_SIZE_MAX || end > file.len() {
        return 1;
    }
    FRAME_HEADER_SIZE as u64 + u64::from(length)
}

/// The torn tail starting at the damaged frame at `at`, or the corruption it is: a tail
/// longer than one frame can be, or one with a valid frame after the damage.
fn torn_tail(
    file: &[u8],
    at: usize,
    number: u64,
    (what, kind): (&'static str, CorruptionKind),
) -> Result<TornTail> {
    let tail = (file.len() - at) as u64;
    let frame_max = FRAME_HEADER_SIZE as u64 + u64::from(FRAME_BODY_SIZE_MAX);
    if tail > frame_max {
        // More bytes than one frame after the damage: some of them were durable.
        return Err(Error::file_corruption(at as u64, what, kind));
    }
    // Each candidate offset whose length field fits costs a checksum of its body; hostile
    // tail bytes could make that cubic in the tail's size. Past the budget the tail is not
    // cut but refused: damage we could not rule out is not treated as torn.
    let mut budget = TORN_TAIL_SEARCH_BUDGET;
    let mut later = None;
    for y in at + 1..file.len() {
        let cost = candidate_cost(file, y);
        if cost > budget {
            let kind = CorruptionKind::InvalidValue { found: tail };
            return Err(Error::file_corruption(
                at as u64,
                "manifest torn tail search",
                kind,
            ));
        }
        budget -= cost;
        if frame_at(file, y, number).is_ok() {
            later = Some(y);
            break;
        }
    }
    if let Some(later) = later {
        let kind = CorruptionKind::DamageBeforeValidFrame {
            later_offset: later as u64,
        };
        return Err(Error::file_corruption(at as u64, what, kind));
    }
    Ok(TornTail {
        offset: at as u64,
        size: tail,
    })
}
