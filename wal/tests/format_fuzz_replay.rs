//! Replays fuzz target `wal_segment_decode` as an ordinary test: every file of its committed
//! corpus and crash regressions, then a few thousand seeded mutations of the corpus (byte
//! flips, truncations, splices, inserted bytes, interesting integers, and structure-aware
//! edits re-sealed with the real encoders so that they get past the checksums).
//!
//! The target's body is fuzz/checks/wal_segment_decode.rs, included here with `#[path]`
//! (that file says why). It needs `popdb_wal::internals`, hence the feature gate: the test
//! runs when the crate's tests are built with the `internals` feature.

#![cfg(feature = "internals")]
#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

#[path = "../../fuzz/checks/wal_segment_decode.rs"]
mod check;

use popdb_testkit::{Mutations, Rng, replay_corpus, replay_mutations};

use popdb_wal::internals::{
    LogState, RECORD_HEADER_SIZE, RecordHeader, SEGMENT_HEADER_SIZE, SegmentHeader,
    UNIT_HEADER_SIZE, UnitHeader, seed,
};

const TARGET: &str = "wal_segment_decode";
const MUTATIONS_COUNT: u64 = 10_000;

#[test]
fn wal_segment_decode_corpus_replays_clean() {
    let count = replay_corpus("corpus", TARGET, check::check);
    assert!(count >= 10, "the seed corpus is missing ({count} files)");
}

#[test]
fn wal_segment_decode_regressions_replay_clean() {
    replay_corpus("regressions", TARGET, check::check);
}

const INTERESTING: [u64; 10] = [
    0,
    1,
    2,
    0x7f,
    0x1000,
    0x1028,
    u32::MAX as u64,
    1 << 32,
    u64::MAX - 1,
    u64::MAX,
];

/// The units of a segment image (input without its control bytes), with the header's seed.
fn units_of(image: &[u8]) -> Option<(popdb_io::Crc32, Vec<(usize, UnitHeader)>)> {
    let header = SegmentHeader::decode(image).ok()?;
    let seed = seed(header.segment_id, header.generation);
    let mut at = SEGMENT_HEADER_SIZE as usize;
    let mut units = Vec::new();
    while let Some(unit) = image.get(at..).and_then(|b| UnitHeader::decode(b, &seed)) {
        units.push((at, unit));
        at += UNIT_HEADER_SIZE + unit.body_len as usize;
    }
    Some((seed, units))
}

/// Re-encodes one unit header with a changed field, checksum and all.
fn reseal_unit(rng: &mut Rng, image: &mut [u8]) {
    let Some((seed, units)) = units_of(image) else {
        return;
    };
    if units.is_empty() {
        return;
    }
    let (at, mut unit) = units[rng.index(units.len())];
    let v = INTERESTING[rng.index(INTERESTING.len())];
    match rng.index(5) {
        0 => unit.body_len = (v as u32).max(unit.body_len.wrapping_add(rng.index(80) as u32)),
        1 => unit.record_count = unit.record_count.wrapping_add(1 + rng.index(3) as u32),
        2 => unit.first_lsn = unit.first_lsn.wrapping_add(rng.index(3) as u64).max(v),
        3 => unit.generation = v,
        _ => unit.durable_upto = v.max(unit.durable_upto + rng.index(0x200) as u64),
    }
    image[at..at + UNIT_HEADER_SIZE].copy_from_slice(&unit.encode(&seed));
}

/// Re-encodes one record header with a changed field, checksum and all.
fn reseal_record(rng: &mut Rng, image: &mut [u8]) {
    let Some((seed, units)) = units_of(image) else {
        return;
    };
    let Some(&(at, _)) = units.get(rng.index(units.len().max(1))) else {
        return;
    };
    let at = at + UNIT_HEADER_SIZE;
    let Some(h) = RecordHeader::decode_checked(&image[at..], &seed) else {
        return;
    };
    let payload = image[at + RECORD_HEADER_SIZE..at + h.record_len()].to_vec();
    let (mut lsn, mut term, mut kind) = (h.lsn, h.term, h.kind);
    match rng.index(3) {
        0 => lsn = lsn.wrapping_add(1),
        1 => term = INTERESTING[rng.index(INTERESTING.len())],
        _ => kind = rng.index(5) as u8,
    }
    let header = RecordHeader::encode(&seed, lsn, term, h.node, kind, &payload);
    image[at..at + RECORD_HEADER_SIZE].copy_from_slice(&header);
}

/// Changes one byte of a state file and fixes up its trailing crc32.
fn reseal_state(rng: &mut Rng, image: &mut [u8]) {
    if LogState::decode(image).is_err() || image.len() < 5 {
        return;
    }
    let body = image.len() - 4;
    let at = rng.index(body);
    image[at] = if rng.chance(2) {
        image[at] ^ (1 << rng.index(8))
    } else {
        rng.index(3) as u8
    };
    let crc = popdb_io::crc32(&image[..body]);
    image[body..].copy_from_slice(&crc.to_le_bytes());
}

fn mutate(rng: &mut Rng, corpus: &[(String, Vec<u8>)]) -> Vec<u8> {
    let (_, base) = &corpus[rng.index(corpus.len())];
    let mut data = base.clone();
    for _ in 0..=rng.index(3) {
        if data.len() < 3 {
            data.resize(3, 0);
        }
        let len = data.len();
        match rng.index(10) {
            0 | 1 => {
                let at = rng.index(len);
                data[at] ^= 1 << rng.index(8);
            }
            2 => data.truncate(rng.index(len)),
            3 => {
                let (_, other) = &corpus[rng.index(corpus.len())];
                let cut = rng.index(len);
                let from = rng.index(other.len());
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            4 => {
                let at = rng.index(len);
                let n = 1 + rng.index(16);
                let byte = rng.next() as u8;
                data.splice(at..at, std::iter::repeat_n(byte, n));
            }
            5 => {
                let at = rng.index(len);
                let v = INTERESTING[rng.index(INTERESTING.len())].to_le_bytes();
                let n = if rng.chance(2) { 4 } else { 8 };
                let end = (at + n).min(len);
                data[at..end].copy_from_slice(&v[..end - at]);
            }
            6 => data[rng.index(2)] = rng.next() as u8,
            7 => reseal_unit(rng, &mut data[2..]),
            8 => reseal_record(rng, &mut data[2..]),
            _ => reseal_state(rng, &mut data[2..]),
        }
    }
    data
}

#[test]
fn wal_segment_decode_mutations_of_the_corpus_replay_clean() {
    let plan = Mutations {
        seed: 0x5eed_f022_u64,
        count: MUTATIONS_COUNT,
        random_len_max: 8192,
    };
    replay_mutations(TARGET, check::check, plan, mutate);
}
