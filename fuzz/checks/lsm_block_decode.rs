//! The body of fuzz target `lsm_block_decode`: arbitrary bytes must never make the SST data
//! block decoder or its iterator panic, and a block the decoder accepts must iterate the same
//! both ways, find every key by seek, and (when it is in the builder's canonical form)
//! re-encode to the same bytes.
//!
//! Like fuzz/checks/wal_segment_decode.rs (which says why), this file is included with
//! `#[path = ...] mod check;` by both fuzz/fuzz_targets/lsm_block_decode.rs and
//! lsm/tests/format_fuzz_replay.rs, and needs nothing but `popdb_lsm` with `internals`.
//!
//! Input layout: `[c0, block...]`. If bit 0 of `c0` is set, the check first re-seals the
//! block's crc32 (its last 4 bytes) so that the fuzzer explores the structure behind the
//! checksum. Empty inputs are ignored.
//!
//! What is asserted where: the decoder validates structure (lengths, varints, restart
//! offsets, full keys at restarts); key order and maximal prefix sharing are the builder's
//! asserts, covered by the crc32, and the reader does not re-check them. So on a re-sealed
//! forged block only the structural properties are asserted; order-dependent ones (seek,
//! re-encoding) are asserted when the keys are well-formed internal keys (at least 8 bytes)
//! strictly increasing under `compare_internal`, and re-encoding when the block is also
//! canonical: maximal shared prefixes, restarts every `r` entries.

use std::cmp::Ordering;

use popdb_lsm::internals::{CRC_SIZE, EntryHeader, RESTART_COUNT_SIZE, TRAILER_SIZE};
use popdb_lsm::{Block, BlockBuilder, BlockIter, compare_internal};

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// The shortest internal key: an empty user key and the 8-byte trailer.
const INTERNAL_KEY_SIZE_MIN: usize = 8;

/// The fuzz target's body; panics on any violation.
pub fn check(data: &[u8]) {
    let Some((&c0, rest)) = data.split_first() else {
        return;
    };
    let mut image = rest.to_vec();
    if c0 & 1 == 1 && image.len() >= CRC_SIZE {
        let crc_at = image.len() - CRC_SIZE;
        let crc = popdb_io::crc32(&image[..crc_at]);
        image[crc_at..].copy_from_slice(&crc.to_le_bytes());
    }
    let Ok(block) = Block::decode(&image) else {
        return;
    };
    let mut it = block.iter();
    // Seeks to arbitrary targets must not panic, whatever the block holds.
    let _ = it.seek(&image[..image.len().min(16)]);
    let _ = it.seek(&[]);

    let forward = forward(&mut it);
    let backward = backward(&mut it);
    let Some(forward) = forward else {
        return;
    };
    // A block that decodes front to back has every restart on an entry boundary with a full
    // key, so decoding back to front from the restarts meets the same entries.
    let backward = backward.expect("a block that iterates forward iterates backward");
    assert_eq!(forward, backward, "forward and backward iteration disagree");
    assert_eq!(block.is_empty(), forward.is_empty());

    // `compare_internal` is a total order only over well-formed internal keys (it falls
    // back to bytes for shorter ones, which mixes two orders), and binary search needs one.
    let ordered = forward
        .iter()
        .all(|(k, _)| k.len() >= INTERNAL_KEY_SIZE_MIN)
        && forward
            .windows(2)
            .all(|w| compare_internal(&w[0].0, &w[1].0) == Ordering::Less);
    if !ordered {
        return;
    }
    for (key, value) in &forward {
        it.seek(key).expect("seek in a block that iterates cleanly");
        assert!(it.valid(), "seek to a present key found nothing");
        assert_eq!(it.key(), &key[..], "seek to a present key found another");
        assert_eq!(it.value(), &value[..]);
    }
    if let Some(interval) = canonical_interval(&image, block.restart_count(), forward.len()) {
        let mut builder = BlockBuilder::new(interval);
        for (key, value) in &forward {
            builder.add(key, value);
        }
        assert_eq!(
            builder.finish(),
            image,
            "a canonical block the decoder accepts must re-encode to its bytes"
        );
    }
}

/// Every entry front to back; `None` if the iterator reported corruption.
fn forward(it: &mut BlockIter<'_>) -> Option<Entries> {
    let mut out = Vec::new();
    it.seek_to_first().ok()?;
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.next().ok()?;
    }
    Some(out)
}

/// Every entry back to front, returned front to back; `None` on corruption.
fn backward(it: &mut BlockIter<'_>) -> Option<Entries> {
    let mut out = Vec::new();
    it.seek_to_last().ok()?;
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.prev().ok()?;
    }
    out.reverse();
    Some(out)
}

/// The restart interval `r` if the block is in the builder's form: restarts exactly every `r`
/// entries, and every other entry sharing as much of the previous key as it can.
fn canonical_interval(image: &[u8], restart_count: usize, entry_count: usize) -> Option<usize> {
    if entry_count == 0 {
        return Some(1);
    }
    let restarts: Vec<usize> = (0..restart_count)
        .map(|i| read_restart(image, restart_count, i))
        .collect();
    let entries = entries_region(image)?;
    let mut offsets = Vec::with_capacity(entry_count);
    let (mut at, mut prev) = (0, Vec::new());
    for _ in 0..entry_count {
        let h = EntryHeader::decode(entries, at, prev.len()).ok()?;
        let delta = &entries[h.key_start..h.value_start()];
        let could_share_more = prev.len() > h.shared && delta.first() == prev.get(h.shared);
        if could_share_more && !restarts.contains(&at) {
            return None;
        }
        offsets.push(at);
        prev.truncate(h.shared);
        prev.extend_from_slice(delta);
        at = h.end();
    }
    let interval = if restart_count == 1 {
        entry_count
    } else {
        offsets.iter().position(|&o| o == restarts[1])?
    };
    let expected: Vec<usize> = offsets.iter().copied().step_by(interval).collect();
    (expected == restarts).then_some(interval)
}

/// The entries region of a block that [`Block::decode`] accepted.
fn entries_region(image: &[u8]) -> Option<&[u8]> {
    let count_at = image.len().checked_sub(TRAILER_SIZE + RESTART_COUNT_SIZE)?;
    let count = u32::from_le_bytes(image[count_at..count_at + 4].try_into().ok()?) as usize;
    image.get(..count_at.checked_sub(count * 4)?)
}

fn read_restart(image: &[u8], restart_count: usize, index: usize) -> usize {
    let count_at = image.len() - TRAILER_SIZE - RESTART_COUNT_SIZE;
    let at = count_at - (restart_count - index) * 4;
    u32::from_le_bytes(image[at..at + 4].try_into().expect("4 bytes")) as usize
}
