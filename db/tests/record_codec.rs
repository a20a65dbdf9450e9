//! The Db's log record codec (db/src/record.rs, spec docs/format/db-records.md): random
//! records of every kind round-trip; every strict prefix of an encoding, trailing bytes,
//! unknown versions and tags, invalid UTF-8 and impossible counts are refused with an error
//! at the right offset, never a panic; mutated encodings never panic; the v1 golden fixtures
//! and the spec's worked example keep their bytes. Also replays fuzz target
//! `db_record_decode` (its body is fuzz/checks/db_record_decode.rs, included with `#[path]`)
//! over its committed corpus, its regressions and a few thousand mutations.
//!
//! Two ignored tests write files that are committed: `write_fixtures` (the golden fixtures;
//! it never overwrites one, since fixtures are never regenerated) and `write_seed_corpus`
//! (the fuzz target's seed corpus). `dump_worked_example` prints the spec's hex dump.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

#[path = "../../fuzz/checks/db_record_decode.rs"]
mod check;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use popdb_db::internals::{Condition, DecodeError, LogRecord, TableWrite, WriteRecord};
use popdb_db::{Check, Compression, EngineKind, IdempotencyKey, TableOptions};
use popdb_io::{FileSystem, OpenOptions, RealFs};
use popdb_testkit::{Mutations, Rng, fuzz_dir, read_inputs, replay_corpus, replay_mutations};

const TARGET: &str = "db_record_decode";

// ---------------------------------------------------------------------------------------
// Random records.

const INTERESTING_U64: [u64; 6] = [0, 1, 0xff, u32::MAX as u64, u64::MAX - 1, u64::MAX];

fn any_u64(rng: &mut Rng) -> u64 {
    if rng.chance(4) {
        INTERESTING_U64[rng.index(INTERESTING_U64.len())]
    } else {
        rng.next() >> rng.below(64)
    }
}

/// Up to `len_max` bytes of any value; empty one time in four.
fn any_bytes(rng: &mut Rng, len_max: usize) -> Vec<u8> {
    if rng.chance(4) {
        return Vec::new();
    }
    let len = rng.index(len_max + 1);
    (0..len).map(|_| rng.next() as u8).collect()
}

fn any_check(rng: &mut Rng) -> Check {
    match rng.below(4) {
        0 => Check::Version {
            key: any_bytes(rng, 12),
            version: any_u64(rng),
        },
        1 => Check::Absent {
            key: any_bytes(rng, 12),
        },
        2 => Check::Exists {
            key: any_bytes(rng, 12),
        },
        _ => Check::RangeUnchanged {
            start: any_bytes(rng, 12),
            end: rng.chance(2).then(|| any_bytes(rng, 12)),
            since: any_u64(rng),
        },
    }
}

fn any_write_record(rng: &mut Rng) -> WriteRecord {
    let idempotency = rng.chance(2).then(|| IdempotencyKey {
        client: any_u64(rng),
        sequence: any_u64(rng),
    });
    let conditions = (0..rng.index(5))
        .map(|_| Condition {
            table: any_u64(rng),
            check: any_check(rng),
        })
        .collect();
    let writes = (0..rng.index(7))
        .map(|_| TableWrite {
            table: any_u64(rng),
            key: any_bytes(rng, 12),
            value: (!rng.chance(3)).then(|| any_bytes(rng, 24)),
        })
        .collect();
    WriteRecord {
        idempotency,
        conditions,
        writes,
    }
}

/// A name of up to 12 characters, some of them outside ASCII (valid UTF-8 is all the codec
/// asks; `validate_name` is the Db's business).
fn any_name(rng: &mut Rng) -> String {
    const CHARS: [char; 8] = ['a', 'Z', '0', '_', '-', '.', '\u{e9}', '\u{540d}'];
    (0..rng.index(13))
        .map(|_| CHARS[rng.index(CHARS.len())])
        .collect()
}

fn any_options(rng: &mut Rng) -> TableOptions {
    let engine = if rng.chance(2) {
        EngineKind::Lsm
    } else {
        EngineKind::Btree
    };
    let compression = if rng.chance(2) {
        Compression::None
    } else {
        // Any i32: the codec does not check the zstd range.
        Compression::Zstd([1, 3, 22, 0, -1, i32::MIN, i32::MAX][rng.index(7)])
    };
    TableOptions {
        engine,
        compression,
        page_size: [4096, 65_536, 0, u32::MAX][rng.index(4)],
        bloom_bits_per_key: [0, 10, 32, u32::MAX][rng.index(4)],
    }
}

fn any_record(rng: &mut Rng) -> LogRecord {
    match rng.below(6) {
        0 => LogRecord::CreateTable {
            name: any_name(rng),
            options: any_options(rng),
        },
        1 => LogRecord::DropTable { id: any_u64(rng) },
        _ => LogRecord::Write(any_write_record(rng)),
    }
}

/// Names for what a record exercises, so the random tests can show they covered it all.
fn features(record: &LogRecord, seen: &mut BTreeSet<&'static str>) {
    match record {
        LogRecord::Write(write) => {
            seen.insert(if write.idempotency.is_some() {
                "idempotency"
            } else {
                "no idempotency"
            });
            if write.conditions.is_empty() && write.writes.is_empty() {
                seen.insert("empty write");
            }
            for condition in &write.conditions {
                seen.insert(match &condition.check {
                    Check::Version { .. } => "version",
                    Check::Absent { .. } => "absent",
                    Check::Exists { .. } => "exists",
                    Check::RangeUnchanged { end: None, .. } => "range to the end",
                    Check::RangeUnchanged { end: Some(_), .. } => "range",
                });
            }
            for table_write in &write.writes {
                if table_write.key.is_empty() {
                    seen.insert("empty key");
                }
                seen.insert(match &table_write.value {
                    None => "delete",
                    Some(value) if value.is_empty() => "empty value",
                    Some(_) => "put",
                });
            }
        }
        LogRecord::CreateTable { options, .. } => {
            seen.insert(match options.engine {
                EngineKind::Lsm => "lsm",
                EngineKind::Btree => "btree",
            });
            seen.insert(match options.compression {
                Compression::None => "no compression",
                Compression::Zstd(_) => "zstd",
            });
        }
        LogRecord::DropTable { .. } => {
            seen.insert("drop");
        }
    }
}

const FEATURES_ALL: &[&str] = &[
    "absent",
    "btree",
    "delete",
    "drop",
    "empty key",
    "empty value",
    "empty write",
    "exists",
    "idempotency",
    "lsm",
    "no compression",
    "no idempotency",
    "put",
    "range",
    "range to the end",
    "version",
    "zstd",
];

fn assert_covers_all(seen: &BTreeSet<&'static str>) {
    let all: BTreeSet<&str> = FEATURES_ALL.iter().copied().collect();
    let missing: Vec<_> = all.difference(seen).collect();
    assert!(
        missing.is_empty(),
        "random records never covered {missing:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Round trips, prefixes, trailing bytes, mutations.

#[test]
fn record_codec_random_records_round_trip() {
    let mut rng = Rng(0x5eed_c0de);
    let mut seen = BTreeSet::new();
    for i in 0..3_000 {
        let record = any_record(&mut rng);
        features(&record, &mut seen);
        let bytes = record.encode();
        assert_eq!(
            LogRecord::decode(&bytes),
            Ok(record.clone()),
            "record {i}: {bytes:02x?}"
        );
        // encode_into appends after what the buffer holds, and the same bytes.
        let mut appended = b"prefix".to_vec();
        record.encode_into(&mut appended);
        assert_eq!(&appended[..6], b"prefix");
        assert_eq!(appended[6..], bytes[..]);
    }
    assert_covers_all(&seen);
}

#[test]
fn record_codec_every_strict_prefix_is_refused() {
    let mut rng = Rng(0x5eed_0001);
    for _ in 0..300 {
        let bytes = any_record(&mut rng).encode();
        for len in 0..bytes.len() {
            let err = LogRecord::decode(&bytes[..len]).unwrap_err();
            assert!(
                err.offset <= len,
                "prefix of {len} bytes: error past its end: {err}"
            );
            assert!(
                err.what.contains("truncated") || err.what.contains("exceeds"),
                "prefix of {len} bytes of {bytes:02x?}: {err}"
            );
        }
    }
}

#[test]
fn record_codec_trailing_bytes_are_refused() {
    let mut rng = Rng(0x5eed_0002);
    for _ in 0..300 {
        let mut bytes = any_record(&mut rng).encode();
        let len = bytes.len();
        bytes.extend_from_slice(&any_bytes(&mut rng, 8));
        bytes.push(0);
        assert_eq!(
            LogRecord::decode(&bytes),
            Err(DecodeError {
                offset: len,
                what: "trailing bytes after the record"
            })
        );
    }
}

#[test]
fn record_codec_mutated_records_never_panic() {
    let mut rng = Rng(0x5eed_0003);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let mut bytes = any_record(&mut rng).encode();
        for _ in 0..=rng.index(3) {
            mutate_once(&mut rng, &[], &mut bytes);
        }
        // Panics on a panic, a refusal pointing past the input, or an accepted input that
        // does not re-encode to itself.
        check::check(&bytes);
        accepted += usize::from(LogRecord::decode(&bytes).is_ok());
    }
    // Mutations that keep a record well formed (a flipped bit in a key) are common.
    assert!(accepted > 1_000, "only {accepted} mutated records decoded");
}

// ---------------------------------------------------------------------------------------
// Each refusal, at its offset.

fn refusal(bytes: &[u8]) -> DecodeError {
    LogRecord::decode(bytes).unwrap_err()
}

fn err(offset: usize, what: &'static str) -> DecodeError {
    DecodeError { offset, what }
}

/// A write record with no idempotency key, no conditions and one put of `k` = `v` to table 9.
fn one_put() -> Vec<u8> {
    LogRecord::Write(WriteRecord {
        idempotency: None,
        conditions: Vec::new(),
        writes: vec![TableWrite {
            table: 9,
            key: b"k".to_vec(),
            value: Some(b"v".to_vec()),
        }],
    })
    .encode()
}

#[test]
fn record_codec_empty_input_is_refused() {
    assert_eq!(refusal(&[]), err(0, "format version truncated"));
    assert_eq!(refusal(&[1]), err(1, "record type truncated"));
}

#[test]
fn record_codec_unknown_version_is_refused() {
    for version in [0, 2, 0xff] {
        let mut bytes = one_put();
        bytes[0] = version;
        assert_eq!(refusal(&bytes), err(0, "unsupported format version"));
    }
}

#[test]
fn record_codec_unknown_record_type_is_refused() {
    for kind in [0, 4, 0xff] {
        assert_eq!(refusal(&[1, kind]), err(1, "unknown record type"));
    }
}

#[test]
fn record_codec_unknown_tags_and_flags_are_refused() {
    // One put: version, type, flags (2), condition count (3..7), write count (7..11),
    // table (11..19), tag (19), key length (20..24), key (24), value length, value.
    let mut bytes = one_put();
    bytes[2] = 0x02;
    assert_eq!(refusal(&bytes), err(2, "reserved write flags set"));
    let mut bytes = one_put();
    bytes[19] = 2;
    assert_eq!(refusal(&bytes), err(19, "unknown write tag"));

    // One condition: its check tag is at 2 + 1 + 4 + 8 = 15.
    let condition = |check| {
        LogRecord::Write(WriteRecord {
            idempotency: None,
            conditions: vec![Condition { table: 1, check }],
            writes: Vec::new(),
        })
        .encode()
    };
    for tag in [0, 5, 0xff] {
        let mut bytes = condition(Check::Exists { key: Vec::new() });
        bytes[15] = tag;
        assert_eq!(refusal(&bytes), err(15, "unknown check tag"));
    }
    // A range from "s": its end flag at 15 + 1 + 4 + 1 = 21.
    let mut bytes = condition(Check::RangeUnchanged {
        start: b"s".to_vec(),
        end: None,
        since: 4,
    });
    bytes[21] = 2;
    assert_eq!(
        refusal(&bytes),
        err(21, "range end flag is neither 0 nor 1")
    );
}

fn create(name: &str, options: TableOptions) -> Vec<u8> {
    LogRecord::CreateTable {
        name: name.to_owned(),
        options,
    }
    .encode()
}

#[test]
fn record_codec_create_table_refusals() {
    // Name "t": length at 2..4, the name at 4, engine at 5, compression at 6.
    let options = TableOptions::new(EngineKind::Lsm);
    for engine in [0, 3] {
        let mut bytes = create("t", options);
        bytes[5] = engine;
        assert_eq!(refusal(&bytes), err(5, "unknown engine tag"));
    }
    for compression in [2, 0xff] {
        let mut bytes = create("t", options);
        bytes[6] = compression;
        assert_eq!(refusal(&bytes), err(6, "unknown compression tag"));
    }
    for bad in [0x80, 0xc3, 0xff] {
        let mut bytes = create("t", options);
        bytes[4] = bad;
        assert_eq!(refusal(&bytes), err(4, "table name is not valid UTF-8"));
    }
    // A name longer than the record.
    let mut bytes = create("t", options);
    bytes[2..4].copy_from_slice(&u16::MAX.to_le_bytes());
    assert_eq!(refusal(&bytes), err(4, "table name truncated"));
}

#[test]
fn record_codec_impossible_counts_and_lengths_are_refused_before_reserving() {
    // A count of u32::MAX conditions in a record of a dozen bytes: refused at the count,
    // whatever follows (a reservation of 4 billion conditions would abort the process).
    let mut bytes = vec![1, 1, 0];
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend_from_slice(&[0; 8]);
    assert_eq!(
        refusal(&bytes),
        err(
            3,
            "condition count exceeds what the remaining bytes can hold"
        )
    );
    // A count that just fits the smallest conditions (13 bytes each) passes the count check
    // and fails on what the conditions hold instead.
    let mut bytes = vec![1, 1, 0];
    bytes.extend_from_slice(&2u32.to_le_bytes());
    bytes.extend_from_slice(&[0; 26]);
    assert_eq!(refusal(&bytes), err(15, "unknown check tag"));
    let mut bytes = vec![1, 1, 0];
    bytes.extend_from_slice(&2u32.to_le_bytes());
    bytes.extend_from_slice(&[0; 25]);
    assert_eq!(
        refusal(&bytes),
        err(
            3,
            "condition count exceeds what the remaining bytes can hold"
        )
    );

    // The same for writes, after zero conditions.
    let mut bytes = vec![1, 1, 0, 0, 0, 0, 0];
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        refusal(&bytes),
        err(7, "write count exceeds what the remaining bytes can hold")
    );

    // A key length past the end: refused at the length.
    let mut bytes = one_put();
    bytes[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(refusal(&bytes), err(20, "write key truncated"));
}

// ---------------------------------------------------------------------------------------
// Golden bytes: the spec's worked example and the v1 fixtures.

/// The worked example of docs/format/db-records.md, section 8.
fn worked_example() -> LogRecord {
    LogRecord::Write(WriteRecord {
        idempotency: Some(IdempotencyKey {
            client: 7,
            sequence: 1,
        }),
        conditions: vec![Condition {
            table: 5,
            check: Check::Version {
                key: b"a".to_vec(),
                version: 3,
            },
        }],
        writes: vec![
            TableWrite {
                table: 5,
                key: b"a".to_vec(),
                value: Some(b"hi".to_vec()),
            },
            TableWrite {
                table: 5,
                key: b"b".to_vec(),
                value: None,
            },
        ],
    })
}

/// The worked example's bytes, as the spec's dump shows them.
const WORKED_EXAMPLE: &str = "\
    01 01 \
    01 07 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 \
    01 00 00 00 \
    05 00 00 00 00 00 00 00 01 01 00 00 00 61 03 00 00 00 00 00 00 00 \
    02 00 00 00 \
    05 00 00 00 00 00 00 00 01 01 00 00 00 61 02 00 00 00 68 69 \
    05 00 00 00 00 00 00 00 00 01 00 00 00 62";

fn unhex(hex: &str) -> Vec<u8> {
    hex.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

#[test]
fn record_codec_worked_example_keeps_its_bytes() {
    let bytes = unhex(WORKED_EXAMPLE);
    assert_eq!(worked_example().encode(), bytes);
    assert_eq!(LogRecord::decode(&bytes), Ok(worked_example()));
}

/// The v1 golden fixtures: file name and the record it holds.
fn fixtures() -> Vec<(&'static str, LogRecord)> {
    vec![
        ("write-worked-example", worked_example()),
        (
            "write-every-check",
            LogRecord::Write(WriteRecord {
                idempotency: None,
                conditions: vec![
                    Condition {
                        table: 2,
                        check: Check::Absent { key: b"x".to_vec() },
                    },
                    Condition {
                        table: 2,
                        check: Check::Exists { key: Vec::new() },
                    },
                    Condition {
                        table: 3,
                        check: Check::RangeUnchanged {
                            start: b"a".to_vec(),
                            end: Some(b"m".to_vec()),
                            since: 40,
                        },
                    },
                    Condition {
                        table: 3,
                        check: Check::RangeUnchanged {
                            start: Vec::new(),
                            end: None,
                            since: 41,
                        },
                    },
                ],
                writes: vec![TableWrite {
                    table: 3,
                    key: Vec::new(),
                    value: Some(Vec::new()),
                }],
            }),
        ),
        ("write-empty", LogRecord::Write(WriteRecord::default())),
        (
            "create-lsm-zstd",
            LogRecord::CreateTable {
                name: "events".to_owned(),
                options: TableOptions {
                    compression: Compression::Zstd(3),
                    ..TableOptions::new(EngineKind::Lsm)
                },
            },
        ),
        (
            "create-btree",
            LogRecord::CreateTable {
                name: "users".to_owned(),
                options: TableOptions {
                    page_size: 16_384,
                    bloom_bits_per_key: 0,
                    ..TableOptions::new(EngineKind::Btree)
                },
            },
        ),
        ("drop", LogRecord::DropTable { id: 12 }),
    ]
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/db_records/v1")
}

#[test]
fn record_codec_v1_fixtures_decode_and_keep_their_bytes() {
    let files = read_inputs(&fixtures_dir());
    let mut expected = fixtures();
    expected.sort_by_key(|(name, _)| *name);
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    let expected_names: Vec<&str> = expected.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, expected_names, "the fixtures folder");
    for ((name, bytes), (_, record)) in files.iter().zip(&expected) {
        assert_eq!(LogRecord::decode(bytes).as_ref(), Ok(record), "{name}");
        assert_eq!(&record.encode(), bytes, "{name}");
    }
}

// ---------------------------------------------------------------------------------------
// The fuzz target: corpus, regressions, mutations.

#[test]
fn db_record_decode_corpus_replays_clean() {
    let count = replay_corpus("corpus", TARGET, check::check);
    assert!(count >= 10, "the seed corpus is missing ({count} files)");
    // The seed corpus is valid records, so that mutations start from deep inside the format.
    for (name, bytes) in read_inputs(&fuzz_dir("corpus", TARGET)) {
        assert!(LogRecord::decode(&bytes).is_ok(), "{name} does not decode");
    }
}

#[test]
fn db_record_decode_regressions_replay_clean() {
    replay_corpus("regressions", TARGET, check::check);
}

/// Values that sit on the boundaries the decoder checks: tags, flags, counts and lengths.
const INTERESTING: [u64; 10] = [0, 1, 2, 3, 4, 5, 0xff, 0xffff, u32::MAX as u64, u64::MAX];

fn mutate_once(rng: &mut Rng, corpus: &[(String, Vec<u8>)], data: &mut Vec<u8>) {
    if data.is_empty() {
        data.push(1);
    }
    let len = data.len();
    match rng.index(8) {
        0 | 1 => data[rng.index(len)] ^= 1 << rng.index(8),
        2 => data.truncate(rng.index(len)),
        3 if !corpus.is_empty() => {
            let (_, other) = &corpus[rng.index(corpus.len())];
            data.truncate(rng.index(len + 1));
            data.extend_from_slice(&other[rng.index(other.len() + 1)..]);
        }
        4 => {
            let at = rng.index(len + 1);
            let byte = rng.next() as u8;
            data.splice(at..at, std::iter::repeat_n(byte, 1 + rng.index(8)));
        }
        5 => {
            let at = rng.index(len);
            let end = (at + 1 + rng.index(8)).min(len);
            data.drain(at..end);
        }
        _ => {
            // Tags and flags are u8, name lengths u16, counts and lengths u32, ids u64.
            let at = rng.index(len);
            let value = INTERESTING[rng.index(INTERESTING.len())].to_le_bytes();
            let width = [1, 2, 4, 8][rng.index(4)];
            let end = (at + width).min(len);
            data[at..end].copy_from_slice(&value[..end - at]);
        }
    }
}

fn mutate(rng: &mut Rng, corpus: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut data = if rng.chance(3) {
        any_record(rng).encode()
    } else {
        corpus[rng.index(corpus.len())].1.clone()
    };
    for _ in 0..=rng.index(3) {
        mutate_once(rng, corpus, &mut data);
    }
    data
}

#[test]
fn db_record_decode_mutations_of_the_corpus_replay_clean() {
    let plan = Mutations {
        seed: 0x5eed_db2e_u64,
        count: 5_000,
        random_len_max: 512,
    };
    replay_mutations(TARGET, check::check, plan, mutate);
}

// ---------------------------------------------------------------------------------------
// Writers of committed files, and the spec's dump.

fn write_file(path: &Path, bytes: &[u8], options: OpenOptions) {
    let file = RealFs::new().open(path, options).unwrap();
    file.write_all_at(bytes, 0).unwrap();
    file.sync_data().unwrap();
}

/// Writes the golden fixtures that do not exist yet; an existing one is never rewritten.
#[test]
#[ignore = "writes committed files: run by hand when adding a fixture"]
fn write_fixtures() {
    let fs = RealFs::new();
    let dir = fixtures_dir();
    fs.create_dir_all(&dir).unwrap();
    for (name, record) in fixtures() {
        let path = dir.join(name);
        if !fs.exists(&path).unwrap() {
            write_file(&path, &record.encode(), OpenOptions::create_new());
        }
    }
}

/// The seed corpus: the fixtures and a few random records of every kind, all valid.
fn seed_corpus() -> Vec<(String, LogRecord)> {
    let mut seeds: Vec<(String, LogRecord)> = fixtures()
        .into_iter()
        .map(|(name, record)| (name.to_owned(), record))
        .collect();
    let mut rng = Rng(0x5eed_c0a9);
    let (mut writes, mut creates, mut drops) = (0, 0, 0);
    while writes < 8 || creates < 3 || drops < 1 {
        let record = any_record(&mut rng);
        let (kind, count) = match record {
            LogRecord::Write(_) => ("write", &mut writes),
            LogRecord::CreateTable { .. } => ("create", &mut creates),
            LogRecord::DropTable { .. } => ("drop", &mut drops),
        };
        *count += 1;
        seeds.push((format!("random-{kind}-{count}"), record));
    }
    seeds
}

#[test]
#[ignore = "writes committed files: run by hand when the seed corpus changes"]
fn write_seed_corpus() {
    let fs = RealFs::new();
    let dir = fuzz_dir("corpus", TARGET);
    fs.create_dir_all(&dir).unwrap();
    for (name, record) in seed_corpus() {
        let options = OpenOptions {
            truncate: true,
            ..OpenOptions::create()
        };
        write_file(&dir.join(name), &record.encode(), options);
    }
}

/// Prints the worked example's bytes, one field a line, for the spec.
#[test]
#[ignore = "prints the spec's dump"]
fn dump_worked_example() {
    let bytes = worked_example().encode();
    let fields = [
        (1, "format_version = 1"),
        (1, "record_type = 1 (write)"),
        (1, "flags = 0x01 (idempotency key follows)"),
        (8, "idempotency client = 7"),
        (8, "idempotency sequence = 1"),
        (4, "condition_count = 1"),
        (8, "condition 0: table = 5"),
        (1, "  check tag = 1 (Version)"),
        (4, "  key_len = 1"),
        (1, "  key \"a\""),
        (8, "  version = 3"),
        (4, "write_count = 2"),
        (8, "write 0: table = 5"),
        (1, "  tag = 1 (put)"),
        (4, "  key_len = 1"),
        (1, "  key \"a\""),
        (4, "  value_len = 2"),
        (2, "  value \"hi\""),
        (8, "write 1: table = 5"),
        (1, "  tag = 0 (delete)"),
        (4, "  key_len = 1"),
        (1, "  key \"b\""),
    ];
    let mut at = 0;
    for (size, what) in fields {
        let hex: Vec<String> = bytes[at..at + size]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        println!("{at:08x}  {:<24} {what}", hex.join(" "));
        at += size;
    }
    assert_eq!(at, bytes.len());
}
