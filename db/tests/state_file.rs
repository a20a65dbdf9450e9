//! The Db's state file and `CURRENT` pointer (docs/format/layout.md): random states round
//! trip; every truncation and every single-bit flip of an encoding is refused as
//! `Corruption` without a panic; each structural rule is refused behind a valid checksum;
//! `store` crashed at every file-system operation leaves the old or the new state, never
//! an error; the same for `CURRENT`, whose parser refuses anything but its one form.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::path::Path;

use popdb_db::internals::{
    CURRENT_FILE, CURRENT_TEMP_FILE, CheckpointImage, DbState, STATE_FILE, STATE_TEMP_FILE,
    decode_current, generation_dir_name, load_current, store_current,
};
use popdb_db::{Compression, EngineKind, Error, IdempotencyKey, Outcome, TableDesc, TableOptions};
use popdb_io::{CrashMode, FileSystem, OpenOptions, SimFs, create_dir_durably};
use popdb_testkit::Rng;

const DIR: &str = "/data/gen-000001";

fn random_options(rng: &mut Rng) -> TableOptions {
    let engine = if rng.chance(2) {
        EngineKind::Lsm
    } else {
        EngineKind::Btree
    };
    TableOptions {
        engine,
        compression: if rng.chance(2) {
            Compression::None
        } else {
            Compression::Zstd(1 + rng.below(22) as i32)
        },
        page_size: 4096 << rng.below(5),
        bloom_bits_per_key: rng.below(33) as u32,
    }
}

/// A random image at `lsn` whose aborts lie in `(after, lsn]`.
fn random_image(rng: &mut Rng, lsn: u64, after: u64) -> CheckpointImage {
    let mut aborts: Vec<u64> = (0..rng.below(20))
        .map(|_| after + 1 + rng.below(lsn - after))
        .collect();
    aborts.sort_unstable();
    aborts.dedup();

    let mut ids: Vec<u64> = (0..rng.below(12)).map(|_| 1 + rng.below(lsn)).collect();
    ids.sort_unstable();
    ids.dedup();
    let tables = ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| {
            let stem = String::from_utf8(rng.bytes(40, b"abcXYZ019_-.")).unwrap();
            TableDesc {
                id,
                // The index keeps names unique; the first character must be alphanumeric.
                name: format!("t{i}{stem}"),
                options: random_options(rng),
            }
        })
        .collect();

    let idempotency = (0..rng.below(16))
        .map(|i| {
            let key = IdempotencyKey {
                client: rng.next(),
                sequence: i,
            };
            let at = 1 + rng.below(lsn);
            let outcome = match rng.below(3) {
                0 => Outcome::Committed { lsn: at },
                1 => Outcome::ConditionFailed {
                    lsn: at,
                    condition: rng.next() as u32,
                },
                _ => Outcome::UnknownTable {
                    lsn: at,
                    table: rng.next(),
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
}

fn random_state(rng: &mut Rng) -> DbState {
    let done = (!rng.chance(4)).then(|| {
        let lsn = 1 + rng.below(1_000);
        random_image(rng, lsn, 0)
    });
    let done_lsn = done.as_ref().map_or(0, |d| d.lsn);
    let intent = rng.chance(2).then(|| {
        let lsn = done_lsn + 1 + rng.below(1_000);
        random_image(rng, lsn, done_lsn)
    });
    DbState {
        lsn_lease: if rng.chance(3) { 0 } else { rng.next() },
        done,
        intent,
    }
}

fn assert_corruption<T: std::fmt::Debug>(result: Result<T, Error>, why: &str) -> String {
    match result {
        Err(Error::Corruption { file, what }) => {
            assert_eq!(file, STATE_FILE, "{why}: wrong file in {what}");
            what
        }
        other => panic!("{why}: expected Corruption, got {other:?}"),
    }
}

/// Sets `total_len` and the trailing crc32 to match the bytes, as a writer would.
fn reseal(bytes: &mut [u8]) {
    let len = bytes.len();
    bytes[12..16].copy_from_slice(&u32::try_from(len).unwrap().to_le_bytes());
    let crc = popdb_io::crc32(&bytes[..len - 4]);
    bytes[len - 4..].copy_from_slice(&crc.to_le_bytes());
}

/// Refused behind a valid checksum, with `needle` in the message.
fn assert_refused(mut bytes: Vec<u8>, needle: &str) {
    reseal(&mut bytes);
    let what = assert_corruption(DbState::decode(&bytes), needle);
    assert!(what.contains(needle), "expected {needle:?} in {what:?}");
}

#[test]
fn state_random_states_round_trip() {
    let mut rng = Rng(0x57a7e);
    for i in 0..500 {
        let state = random_state(&mut rng);
        let bytes = state.encode();
        assert_eq!(DbState::decode(&bytes).unwrap(), state, "state {i}");
        assert_eq!(DbState::decode(&bytes).unwrap().encode(), bytes);
    }
    let empty = DbState::default();
    assert_eq!(empty.encode().len(), 30);
    assert_eq!(DbState::decode(&empty.encode()).unwrap(), empty);
}

#[test]
fn state_every_truncation_and_bit_flip_is_corruption() {
    let mut rng = Rng(0xf11b);
    for i in 0..6 {
        let state = random_state(&mut rng);
        let bytes = state.encode();
        for len in 0..bytes.len() {
            assert_corruption(
                DbState::decode(&bytes[..len]),
                &format!("state {i} cut at {len}"),
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_corruption(DbState::decode(&longer), "a trailing byte");
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert_corruption(DbState::decode(&damaged), &format!("state {i} bit {bit}"));
        }
    }
}

/// A state whose layout the structural tests poke at: lease 7, done at 100 with aborts
/// [5, 10] and table (8, "alpha"), no intent, no keys.
fn poke_base() -> (DbState, Vec<u8>) {
    let state = DbState {
        lsn_lease: 7,
        done: Some(CheckpointImage {
            lsn: 100,
            aborts: vec![5, 10],
            tables: vec![TableDesc {
                id: 8,
                name: "alpha".to_string(),
                options: TableOptions::new(EngineKind::Lsm),
            }],
            idempotency: vec![],
        }),
        intent: None,
    };
    let bytes = state.encode();
    (state, bytes)
}

// Offsets in poke_base's encoding (docs/format/layout.md, "STATE").
const DONE_LSN: usize = 26;
const ABORTS_COUNT: usize = 34;
const ABORT_0: usize = 38;
const ABORT_1: usize = 46;
const TABLES_COUNT: usize = 54;
const TABLE_ID: usize = 58;
const TABLE_NAME_LEN: usize = 66;
const TABLE_NAME: usize = 68;
const TABLE_ENGINE: usize = 73;
const TABLE_COMPRESSION: usize = 74;
const TABLE_LEVEL: usize = 75;
const TABLE_PAGE_SIZE: usize = 79;
const KEYS_COUNT: usize = 87;

fn put(bytes: &mut [u8], at: usize, value: &[u8]) {
    bytes[at..at + value.len()].copy_from_slice(value);
}

#[test]
fn state_poke_offsets_match_the_layout() {
    let (_, bytes) = poke_base();
    assert_eq!(&bytes[..8], b"POPDBSTA");
    assert_eq!(bytes[24..26], [1, 0], "has_done, has_intent");
    assert_eq!(bytes[DONE_LSN..DONE_LSN + 8], 100u64.to_le_bytes());
    assert_eq!(bytes[ABORTS_COUNT..ABORTS_COUNT + 4], 2u32.to_le_bytes());
    assert_eq!(bytes[ABORT_1..ABORT_1 + 8], 10u64.to_le_bytes());
    assert_eq!(bytes[TABLE_ID..TABLE_ID + 8], 8u64.to_le_bytes());
    assert_eq!(&bytes[TABLE_NAME..TABLE_NAME + 5], b"alpha");
    assert_eq!(bytes[TABLE_ENGINE], 1);
    assert_eq!(
        bytes[TABLE_PAGE_SIZE..TABLE_PAGE_SIZE + 4],
        4096u32.to_le_bytes()
    );
    assert_eq!(bytes[KEYS_COUNT..KEYS_COUNT + 4], 0u32.to_le_bytes());
    assert_eq!(bytes.len(), KEYS_COUNT + 4 + 4);
}

#[test]
fn state_header_damage_is_named() {
    let (_, bytes) = poke_base();
    let mut b = bytes.clone();
    b[0] = b'X';
    assert!(assert_corruption(DbState::decode(&b), "magic").contains("bad magic"));
    let mut b = bytes.clone();
    put(&mut b, 8, &2u32.to_le_bytes());
    assert!(assert_corruption(DbState::decode(&b), "version").contains("newer"));
    let mut b = bytes.clone();
    put(&mut b, 8, &0u32.to_le_bytes());
    assert!(assert_corruption(DbState::decode(&b), "version 0").contains("version 0"));
    let mut b = bytes.clone();
    let last = b.len() - 1;
    b[last] ^= 0x80;
    assert!(assert_corruption(DbState::decode(&b), "crc").contains("checksum mismatch"));
    let what = assert_corruption(DbState::decode(&bytes[..bytes.len() - 3]), "cut");
    assert!(what.contains("truncated"), "{what}");
    // A bigger file with a valid checksum over its first total_len bytes is still refused.
    let mut b = bytes.clone();
    b.extend_from_slice(&[0; 8]);
    assert!(assert_corruption(DbState::decode(&b), "longer").contains("after the"));
}

#[test]
fn state_structural_rules_are_checked_behind_the_checksum() {
    let (_, base) = poke_base();
    let with = |at: usize, value: &[u8]| {
        let mut b = base.clone();
        put(&mut b, at, value);
        b
    };
    // Resealing the unchanged bytes changes nothing.
    let mut same = base.clone();
    reseal(&mut same);
    assert_eq!(same, base);

    assert_refused(with(24, &[2]), "not 0 or 1");
    assert_refused(with(DONE_LSN, &0u64.to_le_bytes()), "lsn is 0");
    assert_refused(with(ABORT_0, &10u64.to_le_bytes()), "not above");
    assert_refused(with(ABORT_0, &0u64.to_le_bytes()), "not above");
    assert_refused(with(ABORT_1, &101u64.to_le_bytes()), "above its checkpoint");
    assert_refused(with(ABORTS_COUNT, &u32::MAX.to_le_bytes()), "truncated");
    assert_refused(
        with(TABLES_COUNT, &u32::MAX.to_le_bytes()),
        "above the limit",
    );
    assert_refused(with(TABLES_COUNT, &2u32.to_le_bytes()), "truncated");
    assert_refused(with(TABLE_ID, &0u64.to_le_bytes()), "not above");
    assert_refused(
        with(TABLE_ID, &101u64.to_le_bytes()),
        "above its checkpoint",
    );
    assert_refused(with(TABLE_NAME, b"al ha"), "table name");
    assert_refused(with(TABLE_NAME, &[0xff]), "not UTF-8");
    assert_refused(with(TABLE_NAME_LEN, &0u16.to_le_bytes()), "is empty");
    assert_refused(with(TABLE_NAME_LEN, &u16::MAX.to_le_bytes()), "truncated");
    assert_refused(with(TABLE_ENGINE, &[3]), "bad engine tag 3");
    assert_refused(with(TABLE_ENGINE, &[0]), "bad engine tag 0");
    assert_refused(with(TABLE_COMPRESSION, &[2]), "bad compression tag 2");
    assert_refused(
        with(TABLE_LEVEL, &3i32.to_le_bytes()),
        "without compression",
    );
    let mut zstd = with(TABLE_COMPRESSION, &[1]);
    put(&mut zstd, TABLE_LEVEL, &23i32.to_le_bytes());
    assert_refused(zstd, "zstd level 23");
    assert_refused(with(TABLE_PAGE_SIZE, &5000u32.to_le_bytes()), "page size");
    assert_refused(
        with(KEYS_COUNT, &70_000u32.to_le_bytes()),
        "above the limit",
    );
    assert_refused(with(KEYS_COUNT, &1u32.to_le_bytes()), "truncated");
    let mut extra = base.clone();
    extra.splice(KEYS_COUNT + 4..KEYS_COUNT + 4, [0u8; 3]);
    assert_refused(extra, "between the last field and the checksum");
}

#[test]
fn state_table_and_key_rules_are_checked() {
    let table = |id: u64, name: &str| TableDesc {
        id,
        name: name.to_string(),
        options: TableOptions::new(EngineKind::Btree),
    };
    // Two tables; then the second's id or name is made to collide with the first's.
    let state = DbState {
        lsn_lease: 0,
        done: Some(CheckpointImage {
            lsn: 50,
            aborts: vec![],
            tables: vec![table(3, "aaa"), table(4, "aab")],
            idempotency: vec![],
        }),
        intent: None,
    };
    let bytes = state.encode();
    let second = 26 + 8 + 4 + 4 + (8 + 2 + 3 + 14);
    assert_eq!(bytes[second..second + 8], 4u64.to_le_bytes());
    let mut b = bytes.clone();
    put(&mut b, second, &3u64.to_le_bytes());
    assert_refused(b, "not above 3");
    let mut b = bytes.clone();
    put(&mut b, second + 10, b"aaa");
    assert_refused(b, "appears twice");

    // Keys: two entries; collide the second with the first, or break its outcome.
    let key = |sequence| IdempotencyKey {
        client: 9,
        sequence,
    };
    let state = DbState {
        lsn_lease: 0,
        done: None,
        intent: Some(CheckpointImage {
            lsn: 50,
            aborts: vec![],
            tables: vec![],
            idempotency: vec![
                (key(1), Outcome::Committed { lsn: 20 }),
                (key(2), Outcome::Committed { lsn: 21 }),
            ],
        }),
    };
    let bytes = state.encode();
    let second = 26 + 8 + 4 + 4 + 4 + 25;
    assert_eq!(bytes[second + 8..second + 16], 2u64.to_le_bytes());
    let mut b = bytes.clone();
    put(&mut b, second + 8, &1u64.to_le_bytes());
    assert_refused(b, "appears twice");
    let mut b = bytes.clone();
    put(&mut b, second + 16, &[4]);
    assert_refused(b, "bad outcome tag 4");
    let mut b = bytes.clone();
    put(&mut b, second + 17, &51u64.to_le_bytes());
    assert_refused(b, "outside [1, 50]");
    let mut b = bytes.clone();
    put(&mut b, second + 17, &0u64.to_le_bytes());
    assert_refused(b, "outside [1, 50]");
}

#[test]
fn state_intent_must_be_above_done() {
    let image = |lsn, aborts: Vec<u64>| CheckpointImage {
        lsn,
        aborts,
        tables: vec![],
        idempotency: vec![],
    };
    let state = DbState {
        lsn_lease: 0,
        done: Some(image(10, vec![])),
        intent: Some(image(20, vec![11, 20])),
    };
    let bytes = state.encode();
    assert_eq!(DbState::decode(&bytes).unwrap(), state);
    // done image: 8 + 4 + 4 + 4 bytes from 26; the intent's LSN follows.
    let intent_lsn = 26 + 20;
    assert_eq!(bytes[intent_lsn..intent_lsn + 8], 20u64.to_le_bytes());
    let mut b = bytes.clone();
    put(&mut b, intent_lsn, &10u64.to_le_bytes());
    assert_refused(b, "intent lsn 10 is not above done lsn 10");
    // An intent's aborts lie above the done checkpoint.
    let mut b = bytes.clone();
    put(&mut b, intent_lsn + 12, &10u64.to_le_bytes());
    assert_refused(b, "intent abort 10 is not above 10");
}

#[test]
#[should_panic(expected = "not above done")]
fn state_encode_refuses_an_intent_below_done() {
    let image = |lsn| CheckpointImage {
        lsn,
        ..CheckpointImage::default()
    };
    let _ = DbState {
        lsn_lease: 0,
        done: Some(image(10)),
        intent: Some(image(10)),
    }
    .encode();
}

#[test]
#[should_panic(expected = "abort 3 not above 3")]
fn state_encode_refuses_unsorted_aborts() {
    let _ = DbState {
        lsn_lease: 0,
        done: Some(CheckpointImage {
            lsn: 10,
            aborts: vec![3, 3],
            ..CheckpointImage::default()
        }),
        intent: None,
    }
    .encode();
}

fn sim_with_dir(seed: u64) -> SimFs {
    let sim = SimFs::new(seed);
    create_dir_durably(&sim, Path::new(DIR)).unwrap();
    sim
}

fn write_file(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) {
    let file = fs.open(path, OpenOptions::create()).unwrap();
    file.write_all_at(bytes, 0).unwrap();
    file.sync_data().unwrap();
}

#[test]
fn state_store_and_load_on_a_sim_fs() {
    let sim = sim_with_dir(1);
    let dir = Path::new(DIR);
    assert_eq!(DbState::load(&sim, dir).unwrap(), None);
    let mut rng = Rng(0x10ad);
    let first = random_state(&mut rng);
    first.store(&sim, dir).unwrap();
    assert_eq!(DbState::load(&sim, dir).unwrap(), Some(first.clone()));
    // A leftover temp file, longer than any state here, is ignored and then replaced.
    write_file(&sim, &dir.join(STATE_TEMP_FILE), &vec![0xee; 100_000]);
    assert_eq!(DbState::load(&sim, dir).unwrap(), Some(first));
    let second = random_state(&mut rng);
    second.store(&sim, dir).unwrap();
    sim.crash_with(CrashMode::LoseAllUnsynced);
    assert_eq!(DbState::load(&sim, dir).unwrap(), Some(second));
    assert_eq!(sim.file_names(dir).unwrap(), vec![STATE_FILE.to_string()]);
    // A damaged file is Corruption, not None.
    write_file(&sim, &dir.join(STATE_FILE), b"POPDBSTA garbage");
    assert_corruption(DbState::load(&sim, dir), "garbage STATE");
}

fn crash_mode(n: u64) -> CrashMode {
    match n % 3 {
        0 => CrashMode::Random,
        1 => CrashMode::LoseAllUnsynced,
        _ => CrashMode::KeepAll,
    }
}

/// Runs `write` on a fresh file system prepared by `setup`, crashed at each of its
/// operations in turn (and once after it), and checks what `read` finds with `check`.
fn crash_at_every_op<T: std::fmt::Debug>(
    seed: u64,
    setup: &dyn Fn(&SimFs),
    write: &dyn Fn(&SimFs) -> Result<(), Error>,
    read: &dyn Fn(&SimFs) -> Result<T, Error>,
    check: &dyn Fn(&T) -> bool,
) -> u64 {
    let sim = sim_with_dir(seed);
    setup(&sim);
    let before = sim.op_count();
    write(&sim).unwrap();
    let ops = sim.op_count() - before;
    assert!(ops >= 4, "create, write, sync, rename, sync dir: {ops}");
    for n in 0..=ops {
        for round in 0..3 {
            let mode = crash_mode(n + round);
            let sim = sim_with_dir(seed * 1_000 + n * 3 + round);
            setup(&sim);
            sim.set_armed_crash_mode(mode);
            sim.set_crash_after_ops(n);
            let result = write(&sim);
            if sim.is_down() {
                assert!(result.is_err(), "crash after {n} ops: write said Ok");
                sim.restart();
            } else {
                sim.disarm_crash();
                sim.crash_with(mode);
            }
            let found = read(&sim)
                .unwrap_or_else(|e| panic!("crash after {n} ops ({mode:?}): read failed: {e}"));
            assert!(
                check(&found),
                "crash after {n} ops ({mode:?}): found {found:?}"
            );
            // A later write goes through whatever the crash left.
            write(&sim).unwrap();
        }
    }
    ops
}

#[test]
fn state_crash_at_every_step_of_store_leaves_old_or_new() {
    let dir = Path::new(DIR);
    let mut rng = Rng(0xc4a5);
    for seed in 1..=4 {
        let old = random_state(&mut rng);
        let new = random_state(&mut rng);
        // Replacing a state, and storing the first one.
        let (old_ref, new_ref) = (&old, &new);
        crash_at_every_op(
            seed,
            &|sim| old_ref.store(sim, dir).unwrap(),
            &|sim| new_ref.store(sim, dir),
            &|sim| DbState::load(sim, dir),
            &|found| *found == Some(old_ref.clone()) || *found == Some(new_ref.clone()),
        );
        crash_at_every_op(
            seed + 100,
            &|_| {},
            &|sim| new_ref.store(sim, dir),
            &|sim| DbState::load(sim, dir),
            &|found| found.is_none() || *found == Some(new_ref.clone()),
        );
    }
}

#[test]
fn current_round_trips_and_survives_a_crash_at_every_step() {
    let dir = Path::new(DIR);
    let sim = sim_with_dir(3);
    assert_eq!(load_current(&sim, dir).unwrap(), None);
    for generation in [1, 2, 999_999, 1_000_000, u64::MAX] {
        store_current(&sim, dir, generation).unwrap();
        assert_eq!(load_current(&sim, dir).unwrap(), Some(generation));
    }
    assert_eq!(
        sim.read_durable(&dir.join(CURRENT_FILE)).unwrap(),
        b"gen-18446744073709551615\n"
    );
    store_current(&sim, dir, 1).unwrap();
    assert_eq!(
        sim.read_durable(&dir.join(CURRENT_FILE)).unwrap(),
        format!("{}\n", generation_dir_name(1)).as_bytes()
    );
    // A leftover temp file is ignored.
    write_file(&sim, &dir.join(CURRENT_TEMP_FILE), b"gen-000009\n");
    assert_eq!(load_current(&sim, dir).unwrap(), Some(1));

    crash_at_every_op(
        5,
        &|sim| store_current(sim, dir, 1).unwrap(),
        &|sim| store_current(sim, dir, 2),
        &|sim| load_current(sim, dir),
        &|found| matches!(found, Some(1 | 2)),
    );
    crash_at_every_op(
        6,
        &|_| {},
        &|sim| store_current(sim, dir, 1),
        &|sim| load_current(sim, dir),
        &|found| matches!(found, None | Some(1)),
    );
}

#[test]
fn current_refuses_anything_but_its_one_form() {
    assert_eq!(generation_dir_name(1), "gen-000001");
    assert_eq!(generation_dir_name(1_234_567), "gen-1234567");
    assert_eq!(decode_current(b"gen-000001\n").unwrap(), 1);
    assert_eq!(decode_current(b"gen-000000\n").unwrap(), 0);
    assert_eq!(decode_current(b"gen-1234567\n").unwrap(), 1_234_567);
    let garbage: [&[u8]; 18] = [
        b"",
        b"\n",
        b"gen-\n",
        b"gen-1\n",
        b"gen-00001\n",
        b"gen-000001",
        b"gen-000001\n\n",
        b"gen-000001\r\n",
        b"gen-0000001\n",
        b"gen-00000a\n",
        b"gen-+00001\n",
        b"gen- 00001\n",
        b"GEN-000001\n",
        b" gen-000001\n",
        b"gen-000001 \n",
        b"gen-18446744073709551616\n",
        b"gen-99999999999999999999999\n",
        b"gen-00000\xff\n",
    ];
    for bytes in garbage {
        match decode_current(bytes) {
            Err(Error::Corruption { file, .. }) => assert_eq!(file, CURRENT_FILE),
            other => panic!(
                "{:?}: expected Corruption, got {other:?}",
                bytes.escape_ascii()
            ),
        }
    }
    // Through the file system: garbage, and a file too long to be a pointer.
    let sim = sim_with_dir(4);
    let dir = Path::new(DIR);
    write_file(&sim, &dir.join(CURRENT_FILE), b"gen-00000x\n");
    assert!(matches!(
        load_current(&sim, dir),
        Err(Error::Corruption { .. })
    ));
    write_file(&sim, &dir.join(CURRENT_FILE), &[b'0'; 4096]);
    assert!(matches!(
        load_current(&sim, dir),
        Err(Error::Corruption { .. })
    ));
}

/// The v1 golden fixture (docs/format/layout.md, "Worked example"), written by hand from the
/// spec, not by the encoder; never regenerated.
#[test]
fn state_v1_fixture_decodes_and_re_encodes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state/v1");
    let inputs = popdb_testkit::read_inputs(&dir);
    let (_, bytes) = inputs.iter().find(|(name, _)| name == "STATE").unwrap();
    let key = |sequence| IdempotencyKey {
        client: 7,
        sequence,
    };
    let expected = DbState {
        lsn_lease: 9,
        done: Some(CheckpointImage {
            lsn: 5,
            aborts: vec![4],
            tables: vec![TableDesc {
                id: 3,
                name: "kv".to_string(),
                options: TableOptions::new(EngineKind::Btree),
            }],
            idempotency: vec![(key(1), Outcome::Committed { lsn: 5 })],
        }),
        intent: Some(CheckpointImage {
            lsn: 8,
            aborts: vec![6],
            tables: vec![],
            idempotency: vec![
                (key(1), Outcome::Committed { lsn: 5 }),
                (
                    key(2),
                    Outcome::ConditionFailed {
                        lsn: 6,
                        condition: 0,
                    },
                ),
            ],
        }),
    };
    assert_eq!(bytes.len(), 191);
    assert_eq!(DbState::decode(bytes).unwrap(), expected);
    assert_eq!(&expected.encode(), bytes);
    assert_eq!(popdb_io::crc32(&bytes[..187]), 0x0eeb_870a);
}
