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

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use popdb_io::{FileSystem, OpenOptions, RealFs};
use popdb_lsm::{BlockBuilder, InternalKey, ValueKind};

const TARGET: &str = "lsm_block_decode";
const MUTATIONS_COUNT: u64 = 10_000;

/// splitmix64: a small seeded generator, so that every failure replays from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn index(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.next().is_multiple_of(one_in)
    }
}

fn fuzz_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(TARGET)
}

/// Every file in `dir`, by name (none if the folder does not exist).
fn read_inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let fs = RealFs::new();
    if !fs.exists(dir).unwrap() {
        return Vec::new();
    }
    let mut names: Vec<String> = fs
        .read_dir(dir)
        .unwrap()
        .into_iter()
        .map(|n| n.into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let file = fs.open(&dir.join(&name), OpenOptions::read_only()).unwrap();
            let mut bytes = vec![0u8; usize::try_from(file.len().unwrap()).unwrap()];
            file.read_exact_at(&mut bytes, 0).unwrap();
            (name, bytes)
        })
        .collect()
}

/// Runs `check` on `data`; the panic message if it failed.
fn run(data: &[u8]) -> Option<String> {
    catch_unwind(AssertUnwindSafe(|| check::check(data)))
        .err()
        .map(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_default()
        })
}

fn replay(dir: &Path) -> usize {
    let inputs = read_inputs(dir);
    let failures: Vec<String> = inputs
        .iter()
        .filter_map(|(name, data)| run(data).map(|why| format!("{name}: {why}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} inputs in {} failed:\n{}",
        failures.len(),
        inputs.len(),
        dir.display(),
        failures.join("\n")
    );
    inputs.len()
}

#[test]
fn lsm_block_decode_corpus_replays_clean() {
    let count = replay(&fuzz_dir("corpus"));
    assert!(count >= 10, "the seed corpus is missing ({count} files)");
}

#[test]
fn lsm_block_decode_regressions_replay_clean() {
    replay(&fuzz_dir("regressions"));
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
    let mut corpus = read_inputs(&fuzz_dir("corpus"));
    corpus.extend(read_inputs(&fuzz_dir("regressions")));
    assert!(!corpus.is_empty());
    let seed = 0x5eed_b10c_u64;
    let mut rng = Rng(seed);
    for i in 0..MUTATIONS_COUNT {
        let data = if rng.chance(8) {
            let len_max = if rng.chance(2) { 64 } else { 1024 };
            let len = rng.index(len_max);
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            mutate(&mut rng, &corpus)
        };
        if let Some(why) = run(&data) {
            panic!(
                "mutation {i} (seed {seed:#x}) failed: {why}\ninput ({} bytes): {:02x?}",
                data.len(),
                &data[..data.len().min(256)]
            );
        }
    }
}
