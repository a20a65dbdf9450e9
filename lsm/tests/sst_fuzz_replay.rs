//! Replays fuzz target `lsm_sst_decode` as an ordinary test: every file of its committed
//! corpus and crash regressions, then a few thousand seeded mutations of real SSTs, with and
//! without zstd: byte flips, truncations, splices, inserted bytes, interesting integers, the
//! control byte's bits, and single-block files whose data block is damaged and re-sealed so
//! that the damage reaches the decompressor and the block decoder behind the crc32.
//!
//! The target's body is fuzz/checks/lsm_sst_decode.rs, included here with `#[path]`
//! (fuzz/checks/wal_segment_decode.rs says why).

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

#[path = "../../fuzz/checks/lsm_sst_decode.rs"]
mod check;

mod sst_common;

use popdb_io::SimFs;
use popdb_lsm::{Compression, FOOTER_SIZE, SstWriterOptions};
use popdb_testkit::{Mutations, Rng, replay_corpus, replay_mutations};
use sst_common::{build, random_entries, read_all};

const TARGET: &str = "lsm_sst_decode";
const MUTATIONS_COUNT: u64 = 3000;

#[test]
fn lsm_sst_decode_corpus_replays_clean() {
    let count = replay_corpus("corpus", TARGET, check::check);
    assert!(count >= 10, "the seed corpus is missing ({count} files)");
}

#[test]
fn lsm_sst_decode_regressions_replay_clean() {
    replay_corpus("regressions", TARGET, check::check);
}

const INTERESTING: [u32; 9] = [0, 1, 2, 4, 0x7f, 0x80, 4 << 20, u32::MAX - 1, u32::MAX];

/// A fresh SST from the real writer over a small key space, and whether it has exactly one
/// data block (which then spans bytes `[0, filter_offset)`).
fn fresh_sst(rng: &mut Rng) -> (Vec<u8>, bool) {
    let seed = rng.next();
    let mut entry_rng = Rng(seed);
    let mut entries = random_entries(&mut entry_rng, 12);
    for (_, v) in &mut entries {
        v.truncate(300);
    }
    let compression = if rng.chance(3) {
        Compression::None
    } else {
        Compression::Zstd { level: 1 }
    };
    let options = SstWriterOptions {
        block_size: [64, 512, 1 << 16][rng.index(3)],
        restart_interval: 1 + rng.index(4),
        bits_per_key: 10,
        compression,
    };
    let fs = SimFs::new(seed);
    let (file, summary) = build(&fs, "fresh.sst", &entries, options);
    (read_all(&file), summary.data_blocks == 1)
}

/// Damages the one data block of a single-block SST and re-seals its crc32.
fn damage_sealed_block(rng: &mut Rng, sst: &mut [u8]) {
    let footer_at = sst.len() - FOOTER_SIZE;
    let raw: [u8; 8] = sst[footer_at + 16..footer_at + 24].try_into().unwrap();
    let block_end = usize::try_from(u64::from_le_bytes(raw)).unwrap();
    let crc_at = block_end - 4;
    for _ in 0..=rng.index(2) {
        let at = rng.index(crc_at);
        sst[at] ^= 1 << rng.index(8);
    }
    let crc = popdb_io::crc32(&sst[..crc_at]);
    sst[crc_at..block_end].copy_from_slice(&crc.to_le_bytes());
}

fn mutate(rng: &mut Rng, corpus: &[(String, Vec<u8>)]) -> Vec<u8> {
    if rng.chance(3) {
        let (mut sst, single_block) = fresh_sst(rng);
        if single_block && rng.chance(2) {
            damage_sealed_block(rng, &mut sst);
            let mut data = vec![rng.next() as u8 & 6];
            data.extend_from_slice(&sst);
            return data;
        }
        let mut data = vec![rng.next() as u8];
        data.extend_from_slice(&sst);
        return mutate_bytes(rng, corpus, data);
    }
    let data = corpus[rng.index(corpus.len())].1.clone();
    mutate_bytes(rng, corpus, data)
}

fn mutate_bytes(rng: &mut Rng, corpus: &[(String, Vec<u8>)], mut data: Vec<u8>) -> Vec<u8> {
    for _ in 0..=rng.index(3) {
        if data.len() < 2 {
            data.resize(2, 0);
        }
        let len = data.len();
        // Aim half the changes at the footer, where the file's map lives.
        let at = if rng.chance(2) && len > FOOTER_SIZE {
            len - 1 - rng.index(FOOTER_SIZE)
        } else {
            1 + rng.index(len - 1)
        };
        match rng.index(7) {
            0 | 1 => data[at] ^= 1 << rng.index(8),
            2 => data.truncate(at),
            3 => {
                let (_, other) = &corpus[rng.index(corpus.len())];
                let from = rng.index(other.len());
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            4 => {
                let byte = rng.next() as u8;
                data.splice(at..at, std::iter::repeat_n(byte, 1 + rng.index(8)));
            }
            5 => {
                let v = INTERESTING[rng.index(INTERESTING.len())].to_le_bytes();
                let end = (at + 4).min(len);
                data[at..end].copy_from_slice(&v[..end - at]);
            }
            _ => data[0] ^= 1 << rng.index(3),
        }
    }
    // Most mutations re-seal the footer, so that they reach the checks behind its crc32.
    if rng.chance(4) {
        data[0] &= !1;
    } else {
        data[0] |= 1;
    }
    data
}

#[test]
fn lsm_sst_decode_mutations_replay_clean() {
    let plan = Mutations {
        seed: 0x55d_f122,
        count: MUTATIONS_COUNT,
        random_len_max: 2048,
    };
    replay_mutations(TARGET, check::check, plan, mutate);
}
