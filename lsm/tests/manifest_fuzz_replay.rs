//! Replays fuzz target `lsm_manifest_decode` as an ordinary test: every file of its committed
//! corpus and crash regressions, then thousands of seeded mutations (byte flips, truncations,
//! splices, inserted bytes, interesting integers, control-byte changes, and fresh manifests
//! from the real `Manifest`, damaged and re-sealed). Also checks that each seed of the corpus
//! still reaches the path its name promises.
//!
//! The target's body is fuzz/checks/lsm_manifest_decode.rs, included here with `#[path]`
//! (fuzz/checks/wal_segment_decode.rs says why). It needs `popdb_lsm::internals`, hence the
//! feature gate.

#![cfg(feature = "internals")]
#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

#[path = "../../fuzz/checks/lsm_manifest_decode.rs"]
mod check;
mod manifest_common;

use std::path::Path;

use manifest_common::{DIR, Draw, Rng, fs_ref, read_file, sim};
use popdb_lsm::internals::manifest::{CURRENT_FILE, CurrentPointer, replay};
use popdb_lsm::{CorruptionKind, Error, Manifest, ManifestOptions, ManifestState};
use popdb_testkit::{Mutations, fuzz_dir, read_inputs, replay_corpus, replay_mutations};

const TARGET: &str = "lsm_manifest_decode";
const MUTATIONS_COUNT: u64 = 10_000;

#[test]
fn lsm_manifest_decode_corpus_replays_clean() {
    let count = replay_corpus("corpus", TARGET, check::check);
    assert!(count >= 8, "the seed corpus is missing ({count} files)");
}

#[test]
fn lsm_manifest_decode_regressions_replay_clean() {
    replay_corpus("regressions", TARGET, check::check);
}

/// The corpus seeds reach the paths their names promise.
#[test]
fn lsm_manifest_decode_corpus_seeds_reach_their_paths() {
    for (name, data) in read_inputs(&fuzz_dir("corpus", TARGET)) {
        let (c0, image) = (data[0], &data[1..]);
        if name == "current" {
            CurrentPointer::decode(image).unwrap();
            continue;
        }
        if name == "edit-body" {
            popdb_lsm::internals::manifest::decode_edit(image).unwrap();
            continue;
        }
        let ends = check::frame_ends(image);
        let k = usize::from(c0 >> 4);
        let base = if k == 15 { image.len() + 1 } else { ends[k] };
        let found = replay(image, check::claimed_number(image), base as u64, |_, _| {});
        match name.as_str() {
            n if n.starts_with("always-") => {
                assert_eq!(found.unwrap().torn_tail, None, "{name}");
            }
            "torn-last-frame" => assert!(found.unwrap().torn_tail.is_some()),
            "damage-before-valid-frame" => {
                let Err(Error::Corruption(c)) = found else {
                    panic!("{name}: {found:?}");
                };
                assert!(matches!(
                    c.kind,
                    CorruptionKind::DamageBeforeValidFrame { .. }
                ));
            }
            _ => assert!(found.is_err(), "{name}: {found:?}"),
        }
    }
}

const INTERESTING: [u32; 8] = [0, 1, 2, 0x7f, 0x80, 28, u32::MAX - 1, u32::MAX];

/// A fresh manifest from the real writer (small random edits, sometimes rotating), with a
/// control byte whose base index matches it, sometimes asking for a re-seal.
fn fresh_manifest(rng: &mut Rng) -> Vec<u8> {
    let fs = sim(rng.next());
    let options = ManifestOptions {
        rotate_size: [0, 200, u64::MAX][rng.index(3)],
        base_frame_size: [1, 60, 1000][rng.index(3)],
    };
    let mut m = Manifest::create_with(fs_ref(&fs), Path::new(DIR), options).unwrap();
    let mut state = ManifestState::default();
    for _ in 0..rng.index(8) {
        let edit = rng.edit(&state);
        state.apply(&edit).unwrap();
        m.log_edit(&edit).unwrap();
    }
    let image = read_file(&fs, &m.manifest_file_name());
    let pointer = CurrentPointer::decode(&read_file(&fs, CURRENT_FILE)).unwrap();
    let ends = check::frame_ends(&image);
    let k = ends
        .iter()
        .position(|&e| e as u64 == pointer.base_size)
        .unwrap();
    let c0 = if k < 15 { (k as u8) << 4 } else { 0xf0 };
    let mut data = vec![c0 | (rng.next() as u8 & 2)];
    data.extend_from_slice(&image);
    data
}

fn mutate(rng: &mut Rng, corpus: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut data = if rng.chance(3) {
        fresh_manifest(rng)
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
                let at = 1 + rng.index(len - 1);
                data[at] ^= 1 << rng.index(8);
            }
            2 => data.truncate(1 + rng.index(len - 1)),
            3 => {
                let (_, other) = &corpus[rng.index(corpus.len())];
                let cut = 1 + rng.index(len - 1);
                let from = rng.index(other.len());
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            4 => {
                let at = 1 + rng.index(len - 1);
                let byte = rng.next() as u8;
                data.splice(at..at, std::iter::repeat_n(byte, 1 + rng.index(8)));
            }
            5 => {
                let at = 1 + rng.index(len - 1);
                let v = INTERESTING[rng.index(INTERESTING.len())].to_le_bytes();
                let end = (at + 4).min(len);
                data[at..end].copy_from_slice(&v[..end - at]);
            }
            6 => data[0] ^= 2,
            _ => data[0] = (data[0] & 0x0f) | ((rng.index(16) as u8) << 4),
        }
    }
    // Most mutations re-seal, so that they reach the edit decoder and rules.
    if rng.chance(4) {
        data[0] &= !2;
    } else {
        data[0] |= 2;
    }
    data
}

#[test]
fn lsm_manifest_decode_mutations_of_the_corpus_replay_clean() {
    let plan = Mutations {
        seed: 0x5eed_3a2f_u64,
        count: MUTATIONS_COUNT,
        random_len_max: 1024,
    };
    replay_mutations(TARGET, check::check, plan, mutate);
}
