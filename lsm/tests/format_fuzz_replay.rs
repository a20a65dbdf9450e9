//! Replays fuzz target `lsm_block_decode` as an ordinary test: every file of its committed
//! corpus and crash regressions, then a few thousand seeded mutations (byte flips,
//! truncations, splices, inserted bytes, interesting integers, the re-seal control bit, and
//! fresh blocks from the real builder, damaged and re-sealed).
//!
//! The target's body is fuzz/checks/lsm_block_decode.rs, included here with `#[path]`
//! (fuzz/checks/wal_segment_decode.rs says why). It needs `popdb_lsm::internals`, hence the
//! feature gate: the test runs when the crate's tests are built with `internals` (the crate's
//! self dev-dependency turns it on).

#![cfg(feature = "internals")]
#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

#[path = "../../fuzz/checks/lsm_block_decode.rs"]
mod check;

use popdb_testkit::{Mutations, Rng, replay_corpus, replay_mutations};

use popdb_lsm::{BlockBuilder, InternalKey, ValueKind};

const TARGET: &str = "lsm_block_decode";
const MUTATIONS_COUNT: u64 = 10_000;

#[test]
fn lsm_block_decode_corpus_replays_clean() {
    let count = replay_corpus("corpus", TARGET, check::check);
    assert!(count >= 10, "the seed corpus is missing ({count} files)");
}

#[test]
fn lsm_block_decode_regressions_replay_clean() {
    replay_corpus("regressions", TARGET, check::check);
}

const INTERESTING: [u32; 8] = [0, 1, 2, 0x7f, 0x80, 0x1f, u32::MAX - 1, u32::MAX];

/// A fresh block from the real builder over a small key space, with the control byte.
fn fresh_block(rng: &mut Rng) -> Vec<u8> {
    let mut keys: Vec<InternalKey> = (0..rng.index(40))
        .map(|_| {
            let user: Vec<u8> = (0..rng.index(6)).map(|_| b"ab\0"[rng.index(3)]).collect();
            let kind = if rng.chance(2) {
                ValueKind::Put
            } else {
                ValueKind::Delete
            };
            InternalKey::new(&user, rng.next() % 8, kind)
        })
        .collect();
    keys.sort();
    keys.dedup();
    let mut builder = BlockBuilder::new(1 + rng.index(5));
    for key in &keys {
        let value: Vec<u8> = (0..rng.index(4)).map(|_| rng.next() as u8).collect();
        builder.add(key.encoded(), &value);
    }
    let mut data = vec![rng.next() as u8 & 1];
    data.extend_from_slice(&builder.finish());
    data
}

fn mutate(rng: &mut Rng, corpus: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut data = if rng.chance(3) {
        fresh_block(rng)
    } else {
        corpus[rng.index(corpus.len())].1.clone()
    };
    for _ in 0..=rng.index(3) {
        if data.len() < 2 {
            data.resize(2, 0);
        }
        let len = data.len();
        match rng.index(8) {
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
                let byte = rng.next() as u8;
                data.splice(at..at, std::iter::repeat_n(byte, 1 + rng.index(8)));
            }
            5 => {
                let at = rng.index(len);
                let v = INTERESTING[rng.index(INTERESTING.len())].to_le_bytes();
                let end = (at + 4).min(len);
                data[at..end].copy_from_slice(&v[..end - at]);
            }
            _ => data[0] ^= 1,
        }
    }
    // Most mutations re-seal, so that they reach the checks behind the crc32.
    if data.is_empty() {
        data.push(0);
    }
    if rng.chance(4) {
        data[0] &= !1;
    } else {
        data[0] |= 1;
    }
    data
}

#[test]
fn lsm_block_decode_mutations_of_the_corpus_replay_clean() {
    let plan = Mutations {
        seed: 0x5eed_b10c_u64,
        count: MUTATIONS_COUNT,
        random_len_max: 1024,
    };
    replay_mutations(TARGET, check::check, plan, mutate);
}
