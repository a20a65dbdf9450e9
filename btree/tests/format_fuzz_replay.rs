//! Replays fuzz target `btree_page_decode` as an ordinary test: every file of its committed
//! corpus and crash regressions, then a few thousand seeded mutations (byte flips,
//! truncations, splices, inserted bytes, interesting integers, the re-seal bit, another
//! page size, and fresh pages from the real builders, damaged and re-sealed).
//!
//! The target's body is fuzz/checks/btree_page_decode.rs, included here with `#[path]`
//! (fuzz/checks/wal_segment_decode.rs says why).

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

#[path = "../../fuzz/checks/btree_page_decode.rs"]
mod check;
mod format_common;

use format_common::{build_branch, build_leaf, entries, key};
use popdb_btree::PageSize;
use popdb_testkit::{Mutations, Rng, replay_corpus, replay_mutations};

const TARGET: &str = "btree_page_decode";
const MUTATIONS_COUNT: u64 = 5_000;

#[test]
fn btree_page_decode_corpus_replays_clean() {
    let count = replay_corpus("corpus", TARGET, check::check);
    assert!(count >= 10, "the seed corpus is missing ({count} files)");
}

#[test]
fn btree_page_decode_regressions_replay_clean() {
    replay_corpus("regressions", TARGET, check::check);
}

const INTERESTING: [u64; 10] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0x1ff,
    0x200,
    0xffff,
    u32::MAX as u64,
    u64::MAX,
];

/// A fresh page or two from the real builders at 512 or 1024 bytes, with control bytes.
fn fresh_pages(rng: &mut Rng) -> Vec<u8> {
    let shift = rng.index(2);
    let size = PageSize::new(512 << shift).unwrap();
    let mut data = vec![0, shift as u8];
    // Page ids 0 and 1 hold nothing: the pages decode as pages 2 and 3.
    data.resize(2 + 2 * size.bytes(), 0);
    for id in 2..4u64 {
        let page = if rng.chance(2) {
            let count = 1 + rng.index(60);
            let model = entries(rng, size, count);
            build_leaf(size, &model, id, rng.below(9)).0
        } else {
            let mut keys: Vec<Vec<u8>> = (0..=rng.index(60)).map(|_| key(rng, size)).collect();
            keys.sort();
            keys.dedup();
            build_branch(rng, size, &keys, id).0
        };
        data.extend_from_slice(&page);
    }
    data
}

fn mutate_once(rng: &mut Rng, corpus: &[(String, Vec<u8>)], data: &mut Vec<u8>) {
    let len = data.len();
    match rng.index(9) {
        0 | 1 => {
            let at = 2 + rng.index(len - 2);
            data[at] ^= 1 << rng.index(8);
        }
        2 => data.truncate(2 + rng.index(len - 1)),
        3 => {
            let (_, other) = &corpus[rng.index(corpus.len())];
            let cut = 2 + rng.index(len - 1);
            let from = rng.index(other.len());
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        4 => {
            let at = 2 + rng.index(len - 1);
            let byte = rng.next() as u8;
            data.splice(at..at, std::iter::repeat_n(byte, 1 + rng.index(8)));
        }
        5 | 6 => {
            // Slots are u16, lengths u16 or u32, ids and versions u64.
            let at = 2 + rng.index(len - 2);
            let v = INTERESTING[rng.index(INTERESTING.len())].to_le_bytes();
            let width = [2, 4, 8][rng.index(3)];
            let end = (at + width).min(len);
            data[at..end].copy_from_slice(&v[..end - at]);
        }
        7 => data[1] = rng.next() as u8 & 7,
        _ => data[0] ^= 1,
    }
}

fn mutate(rng: &mut Rng, corpus: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut data = if rng.chance(3) {
        fresh_pages(rng)
    } else {
        corpus[rng.index(corpus.len())].1.clone()
    };
    for _ in 0..=rng.index(3) {
        if data.len() < 4 {
            data.resize(4, 0);
        }
        mutate_once(rng, corpus, &mut data);
    }
    // Most mutations re-seal, so that they reach the checks behind the checksums.
    if rng.chance(4) {
        data[0] &= !1;
    } else {
        data[0] |= 1;
    }
    data
}

#[test]
fn btree_page_decode_mutations_of_the_corpus_replay_clean() {
    let plan = Mutations {
        seed: 0x5eed_b7ee_u64,
        count: MUTATIONS_COUNT,
        random_len_max: 4096,
    };
    replay_mutations(TARGET, check::check, plan, mutate);
}
