//! Replays fuzz target `db_state_decode` as an ordinary test: every file of its committed
//! corpus and crash regressions, then a few thousand seeded mutations (bit flips,
//! truncations, splices, inserted bytes, interesting integers, the re-seal bit, and fresh
//! encodings of random states).
//!
//! The target's body is fuzz/checks/db_state_decode.rs, included here with `#[path]`
//! (fuzz/checks/wal_segment_decode.rs says why). The seed corpus is written by
//! `state_file_fuzz_write_seed_corpus` below, run on purpose:
//! `POPDB_WRITE_CORPUS=1 cargo test -p popdb-db --test state_file_fuzz_replay -- --ignored`.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

#[path = "../../fuzz/checks/db_state_decode.rs"]
mod check;

use popdb_db::internals::{CheckpointImage, DbState};
use popdb_db::{Compression, EngineKind, IdempotencyKey, Outcome, TableDesc, TableOptions};
use popdb_io::{FileSystem, OpenOptions, RealFs};
use popdb_testkit::{Mutations, Rng, fuzz_dir, replay_corpus, replay_mutations};

const TARGET: &str = "db_state_decode";
const MUTATIONS_COUNT: u64 = 5_000;

#[test]
fn db_state_decode_corpus_replays_clean() {
    let count = replay_corpus("corpus", TARGET, check::check);
    assert!(count >= 8, "the seed corpus is missing ({count} files)");
}

#[test]
fn db_state_decode_regressions_replay_clean() {
    replay_corpus("regressions", TARGET, check::check);
}

const INTERESTING: [u64; 10] = [
    0,
    1,
    2,
    22,
    23,
    4096,
    0xffff,
    65_537,
    u32::MAX as u64,
    u64::MAX,
];

fn table(id: u64, name: &str, engine: EngineKind, compression: Compression) -> TableDesc {
    TableDesc {
        id,
        name: name.to_string(),
        options: TableOptions {
            compression,
            ..TableOptions::new(engine)
        },
    }
}

/// A small valid state, different with each draw.
fn random_state(rng: &mut Rng) -> DbState {
    let done_lsn = 1 + rng.below(50);
    let image = |rng: &mut Rng, lsn: u64, after: u64| {
        let mut aborts: Vec<u64> = (0..rng.below(4))
            .map(|_| after + 1 + rng.below(lsn - after))
            .collect();
        aborts.sort_unstable();
        aborts.dedup();
        let tables = (1..=rng.below(4).min(lsn))
            .map(|id| {
                let engine = if rng.chance(2) {
                    EngineKind::Lsm
                } else {
                    EngineKind::Btree
                };
                let compression = if rng.chance(2) {
                    Compression::None
                } else {
                    Compression::Zstd(1 + rng.below(22) as i32)
                };
                table(id, &format!("t{id}"), engine, compression)
            })
            .collect();
        let idempotency = (0..rng.below(3))
            .map(|sequence| {
                let key = IdempotencyKey {
                    client: rng.below(3),
                    sequence,
                };
                let at = 1 + rng.below(lsn);
                let outcome = match rng.below(3) {
                    0 => Outcome::Committed { lsn: at },
                    1 => Outcome::ConditionFailed {
                        lsn: at,
                        condition: rng.below(4) as u32,
                    },
                    _ => Outcome::UnknownTable {
                        lsn: at,
                        table: rng.below(9),
                    },
                };
                (key, outcome)
            })
            .collect();
        CheckpointImage {
            lsn,
            aborts,
            tables,
            idempotency,
        }
    };
    let done = rng.chance(4).then(|| image(rng, done_lsn, 0));
    let after = done.as_ref().map_or(0, |d| d.lsn);
    let intent = rng.chance(2).then(|| {
        let lsn = after + 1 + rng.below(50);
        image(rng, lsn, after)
    });
    DbState {
        lsn_lease: rng.below(200),
        done,
        intent,
    }
}

fn mutate_once(rng: &mut Rng, corpus: &[(String, Vec<u8>)], data: &mut Vec<u8>) {
    let len = data.len();
    match rng.index(9) {
        0 | 1 => {
            let at = 1 + rng.index(len - 1);
            data[at] ^= 1 << rng.index(8);
        }
        2 => data.truncate(1 + rng.index(len)),
        3 => {
            let (_, other) = &corpus[rng.index(corpus.len())];
            let cut = 1 + rng.index(len);
            let from = rng.index(other.len());
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        4 => {
            let at = 1 + rng.index(len);
            let byte = rng.next() as u8;
            data.splice(at..at, std::iter::repeat_n(byte, 1 + rng.index(8)));
        }
        5 | 6 => {
            // Counts and sizes are u32, name lengths u16, LSNs and ids u64.
            let at = 1 + rng.index(len - 1);
            let v = INTERESTING[rng.index(INTERESTING.len())].to_le_bytes();
            let width = [1, 2, 4, 8][rng.index(4)];
            let end = (at + width).min(len);
            data[at..end].copy_from_slice(&v[..end - at]);
        }
        7 => {
            // Remove a run of bytes (an entry cut out of a list).
            let at = 1 + rng.index(len);
            let end = (at + 1 + rng.index(32)).min(len);
            data.drain(at..end);
        }
        _ => data[0] ^= 1,
    }
}

fn mutate(rng: &mut Rng, corpus: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut data = if rng.chance(3) {
        let mut fresh = vec![0];
        fresh.extend_from_slice(&random_state(rng).encode());
        fresh
    } else {
        corpus[rng.index(corpus.len())].1.clone()
    };
    for _ in 0..=rng.index(3) {
        if data.len() < 2 {
            data.resize(2, 0);
        }
        mutate_once(rng, corpus, &mut data);
    }
    // Most mutations re-seal, so that they reach the checks behind the checksum.
    if rng.chance(4) {
        data[0] &= !1;
    } else {
        data[0] |= 1;
    }
    data
}

#[test]
fn db_state_decode_mutations_of_the_corpus_replay_clean() {
    let plan = Mutations {
        seed: 0x5eed_57a7,
        count: MUTATIONS_COUNT,
        random_len_max: 512,
    };
    replay_mutations(TARGET, check::check, plan, mutate);
}

/// Unaided, the mutations must still get past the checksum to the field checks: count
/// the inputs the decoder accepts, which must re-encode (the check asserts that).
#[test]
fn db_state_decode_mutations_reach_behind_the_checksum() {
    let corpus = popdb_testkit::read_inputs(&fuzz_dir("corpus", TARGET));
    let mut rng = Rng(0xacce97);
    let accepted = (0..2_000)
        .filter(|_| {
            let data = mutate(&mut rng, &corpus);
            let mut image = data[1..].to_vec();
            if data[0] & 1 != 0 && image.len() >= 30 {
                let len = image.len();
                image[12..16].copy_from_slice(&u32::try_from(len).unwrap().to_le_bytes());
                let crc = popdb_io::crc32(&image[..len - 4]);
                image[len - 4..].copy_from_slice(&crc.to_le_bytes());
            }
            DbState::decode(&image).is_ok()
        })
        .count();
    println!("{accepted} of 2000 mutations decoded");
    assert!(accepted >= 20, "only {accepted} of 2000 mutations decoded");
}

/// The seed corpus: each file is the control byte (re-seal bit clear: the images are
/// already sealed) and an image.
fn seed_corpus() -> Vec<(&'static str, Vec<u8>)> {
    let full = DbState {
        lsn_lease: 1_000,
        done: Some(CheckpointImage {
            lsn: 40,
            aborts: vec![3, 17, 40],
            tables: vec![
                table(2, "users", EngineKind::Btree, Compression::None),
                table(9, "events", EngineKind::Lsm, Compression::Zstd(3)),
            ],
            idempotency: vec![
                (
                    IdempotencyKey {
                        client: 7,
                        sequence: 1,
                    },
                    Outcome::Committed { lsn: 12 },
                ),
                (
                    IdempotencyKey {
                        client: 7,
                        sequence: 2,
                    },
                    Outcome::ConditionFailed {
                        lsn: 17,
                        condition: 1,
                    },
                ),
                (
                    IdempotencyKey {
                        client: 8,
                        sequence: 1,
                    },
                    Outcome::UnknownTable { lsn: 40, table: 5 },
                ),
            ],
        }),
        intent: Some(CheckpointImage {
            lsn: 55,
            aborts: vec![41, 50],
            tables: vec![table(9, "events", EngineKind::Lsm, Compression::Zstd(3))],
            idempotency: vec![],
        }),
    };
    let done_only = DbState {
        intent: None,
        ..full.clone()
    };
    let intent_only = DbState {
        done: None,
        ..full.clone()
    };
    let lease_only = DbState {
        lsn_lease: 77,
        ..DbState::default()
    };
    let mut rng = Rng(0xc0de);
    let states = [
        ("empty", DbState::default()),
        ("lease-only", lease_only),
        ("done-only", done_only),
        ("intent-only", intent_only),
        ("done-and-intent", full),
        ("random-1", random_state(&mut rng)),
        ("random-2", random_state(&mut rng)),
        ("random-3", random_state(&mut rng)),
    ];
    let mut inputs: Vec<(&'static str, Vec<u8>)> = states
        .into_iter()
        .map(|(name, state)| {
            let mut data = vec![0];
            data.extend_from_slice(&state.encode());
            (name, data)
        })
        .collect();
    inputs.push(("current-gen-1", b"\0gen-000001\n".to_vec()));
    inputs.push(("current-gen-max", b"\0gen-18446744073709551615\n".to_vec()));
    inputs
}

#[test]
#[ignore = "writes the committed seed corpus; run on purpose with POPDB_WRITE_CORPUS=1"]
fn state_file_fuzz_write_seed_corpus() {
    if std::env::var("POPDB_WRITE_CORPUS").is_err() {
        return;
    }
    let fs = RealFs::new();
    let dir = fuzz_dir("corpus", TARGET);
    popdb_io::create_dir_durably(&fs, &dir).unwrap();
    for (name, data) in seed_corpus() {
        let options = OpenOptions {
            truncate: true,
            ..OpenOptions::create()
        };
        let file = fs.open(&dir.join(name), options).unwrap();
        file.write_all_at(&data, 0).unwrap();
        file.sync_data().unwrap();
    }
}

#[test]
fn db_state_decode_seed_corpus_is_current() {
    // The committed corpus holds what `seed_corpus` writes, so a format change that forgets
    // to rewrite it fails here rather than silently fuzzing stale inputs.
    let committed = popdb_testkit::read_inputs(&fuzz_dir("corpus", TARGET));
    for (name, data) in seed_corpus() {
        let found = committed.iter().find(|(n, _)| n == name);
        assert_eq!(
            found.map(|(_, d)| d),
            Some(&data),
            "fuzz/corpus/{TARGET}/{name} is missing or stale"
        );
    }
}
