//! Criterion benchmarks of popdb-db's paths, each beside what it is built on so that the
//! Db's own overhead shows:
//!
//! - `apply`: one no-sync `Db::write_with` of a 100-key batch into an LSM table and into a
//!   B+tree table, beside the bare engine's `Tree::apply` of the same batch shape. The Db
//!   side pays for the batch's validation, its encoding, the log append (no sync), the apply
//!   stage and publishing the visible LSN; the bare side only for the engine's apply.
//! - `commit`: a transaction with 8 key conditions (`Check::Version`), one
//!   `Check::RangeUnchanged` over 16 keys and 4 writes, which passes; and the same with the
//!   last key condition stale, which is refused (after being logged: conditions are checked
//!   in log order).
//! - `read`: `Db::read_view` plus one `ReadView::get`, against one `Db::get`, on a Db with
//!   4 tables (2 per engine) of 10,000 keys each.
//!
//! Every Db and tree lives in a fresh directory under cargo's target directory on the real
//! file system; the Db runs its background thread (flushes, compactions, checkpoints, the
//! sync of no-sync writes), and the bare LSM tree gets its flushes and compactions from a
//! `popdb_lsm::Scheduler`. Shapes are db_bench's: 16-byte keys, 100-byte values. Batches are
//! built outside the timed region on both sides. Run with
//! `cargo bench -p popdb-bench --bench db`; CI runs `cargo test --bench db`, which runs each
//! once.

#![forbid(unsafe_code)]

use std::cell::Cell;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use popdb_db::{
    Check, Commit, Condition, Db, DbOptions, Durability, EngineKind, Error, TableOptions,
    WriteBatch, WriteOptions,
};
use popdb_io::{FsRef, RealFs};
use popdb_testkit::Rng;
use tempfile::TempDir;

/// Bytes of every value (db_bench's default); keys are 16 bytes (`key`).
const VALUE_SIZE: usize = 100;
/// Keys per batch of the `apply` benchmarks.
const BATCH_KEYS: usize = 100;
/// Keys preloaded into every table of the `commit` and `read` benchmarks.
const LOADED_KEYS: u64 = 10_000;
/// Keys per write while preloading.
const LOAD_BATCH_KEYS: u64 = 1_000;
/// Writes of the `commit` benchmarks go to keys from here up, away from the loaded keys
/// their conditions read.
const WRITE_KEYS_BASE: u64 = 1 << 40;
const NO_SYNC: WriteOptions = WriteOptions {
    durability: Some(Durability::NoSync),
};
const SEED: u64 = 0xdb_5eed;

/// Key `i`: 16 bytes, a zero-padded decimal (db_bench's shape), so keys sort as numbers.
fn key(i: u64) -> Vec<u8> {
    format!("{i:016}").into_bytes()
}

/// An incompressible value.
fn value(rng: &mut Rng) -> Vec<u8> {
    (0..VALUE_SIZE).map(|_| rng.next() as u8).collect()
}

fn scratch(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a scratch directory under the target directory")
}

/// A Db with default options (background thread on) and the tables named, each on the
/// engine given.
fn open_db(dir: &Path, tables: &[(&str, EngineKind)]) -> Db {
    let db = Db::open(dir, DbOptions::default()).expect("the Db opens");
    for (name, engine) in tables {
        db.create_table(name, TableOptions::new(*engine))
            .expect("the table is created");
    }
    db
}

/// Puts keys `0..LOADED_KEYS` into `table`, `LOAD_BATCH_KEYS` per write; returns each
/// key's version.
fn load(db: &Db, table: &str, rng: &mut Rng) -> Vec<u64> {
    let mut versions = Vec::with_capacity(LOADED_KEYS as usize);
    for start in (0..LOADED_KEYS).step_by(LOAD_BATCH_KEYS as usize) {
        let end = LOADED_KEYS.min(start + LOAD_BATCH_KEYS);
        let mut batch = WriteBatch::new();
        for i in start..end {
            batch.put(table, key(i), value(rng));
        }
        let lsn = db.write_with(batch, NO_SYNC).expect("the Db writes");
        versions.extend((start..end).map(|_| lsn));
    }
    versions
}

/// A batch of `BATCH_KEYS` random keys with values.
fn random_batch(rng: &mut Rng) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..BATCH_KEYS)
        .map(|_| (key(rng.next() >> 12), value(rng)))
        .collect()
}

fn db_batch(table: &str, writes: Vec<(Vec<u8>, Vec<u8>)>) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for (k, v) in writes {
        batch.put(table, k, v);
    }
    batch
}

fn engine_batch(writes: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    writes.into_iter().map(|(k, v)| (k, Some(v))).collect()
}

/// The next LSN of a bare tree.
fn next_lsn(lsn: &Cell<u64>) -> u64 {
    lsn.set(lsn.get() + 1);
    lsn.get()
}

fn apply(c: &mut Criterion) {
    let mut rng = Rng(SEED);
    let db_dir = scratch("popdb-bench-db-");
    let db = open_db(
        db_dir.path(),
        &[("lsm", EngineKind::Lsm), ("btree", EngineKind::Btree)],
    );
    let fs: FsRef = Arc::new(RealFs::new());
    let lsm_dir = scratch("popdb-bench-db-lsm-");
    let lsm = popdb_lsm::Tree::open(
        fs.clone(),
        lsm_dir.path(),
        popdb_lsm::TreeOptions::default(),
    )
    .expect("the LSM tree opens");
    let scheduler = popdb_lsm::Scheduler::start();
    scheduler.register(&lsm);
    let btree_dir = scratch("popdb-bench-db-btree-");
    let btree = popdb_btree::Tree::open(fs, btree_dir.path(), popdb_btree::TreeOptions::default())
        .expect("the B+tree opens");
    let (lsm_lsn, btree_lsn) = (Cell::new(0), Cell::new(0));

    let mut group = c.benchmark_group("apply");
    group.throughput(Throughput::Elements(BATCH_KEYS as u64));
    for table in ["lsm", "btree"] {
        group.bench_function(format!("db_{table}_batch_100"), |b| {
            b.iter_batched(
                || db_batch(table, random_batch(&mut rng)),
                |batch| db.write_with(batch, NO_SYNC).expect("the Db writes"),
                BatchSize::SmallInput,
            );
        });
    }
    group.bench_function("lsm_batch_100", |b| {
        b.iter_batched(
            || engine_batch(random_batch(&mut rng)),
            |batch| {
                lsm.apply(next_lsn(&lsm_lsn), &batch)
                    .expect("the LSM tree applies");
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("btree_batch_100", |b| {
        b.iter_batched(
            || engine_batch(random_batch(&mut rng)),
            |batch| {
                btree
                    .apply(next_lsn(&btree_lsn), &batch)
                    .expect("the B+tree applies");
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
    scheduler.shutdown();
}

/// A commit of 8 `Version` conditions on consecutive loaded keys from `first`, one
/// `RangeUnchanged` over the 16 keys from `first` since `since`, and 4 writes to keys no
/// condition covers. With `stale`, the last key condition expects a version the key never
/// had.
fn transaction(
    table: &str,
    versions: &[u64],
    since: u64,
    first: u64,
    stale: bool,
    rng: &mut Rng,
) -> Commit {
    let mut conditions: Vec<Condition> = (first..first + 8)
        .map(|i| Condition {
            table: table.to_string(),
            check: Check::Version {
                key: key(i),
                version: versions[i as usize],
            },
        })
        .collect();
    if stale
        && let Some(Condition {
            check: Check::Version { version, .. },
            ..
        }) = conditions.last_mut()
    {
        *version += 1 << 40;
    }
    conditions.push(Condition {
        table: table.to_string(),
        check: Check::RangeUnchanged {
            start: key(first),
            end: Some(key(first + 16)),
            since,
        },
    });
    let mut writes = WriteBatch::new();
    for _ in 0..4 {
        writes.put(table, key(WRITE_KEYS_BASE + (rng.next() >> 24)), value(rng));
    }
    Commit {
        conditions,
        writes,
        durability: Some(Durability::NoSync),
        ..Commit::default()
    }
}

fn commit(c: &mut Criterion) {
    let mut rng = Rng(SEED ^ 1);
    let dir = scratch("popdb-bench-db-commit-");
    let tables = [("lsm", EngineKind::Lsm), ("btree", EngineKind::Btree)];
    let db = open_db(dir.path(), &tables);
    let versions: Vec<Vec<u64>> = tables
        .iter()
        .map(|(name, _)| load(&db, name, &mut rng))
        .collect();
    let since = db.visible_lsn();
    let mut group = c.benchmark_group("commit");
    for ((table, _), versions) in tables.iter().zip(&versions) {
        for (name, stale) in [("pass", false), ("fail", true)] {
            group.bench_function(format!("{name}_{table}"), |b| {
                b.iter_batched(
                    || {
                        let first = rng.below(LOADED_KEYS - 16);
                        transaction(table, versions, since, first, stale, &mut rng)
                    },
                    |commit| {
                        let result = db.commit(commit);
                        match (stale, &result) {
                            (false, Ok(_)) | (true, Err(Error::Conflict { condition: 7, .. })) => {}
                            _ => panic!("unexpected outcome {result:?} (stale: {stale})"),
                        }
                        result
                    },
                    BatchSize::SmallInput,
                );
            });
        }
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    let mut rng = Rng(SEED ^ 2);
    let dir = scratch("popdb-bench-db-read-");
    let tables = [
        ("lsm_a", EngineKind::Lsm),
        ("btree_a", EngineKind::Btree),
        ("lsm_b", EngineKind::Lsm),
        ("btree_b", EngineKind::Btree),
    ];
    let db = open_db(dir.path(), &tables);
    for (name, _) in tables {
        load(&db, name, &mut rng);
    }
    db.checkpoint().expect("the Db checkpoints");
    let mut group = c.benchmark_group("read");
    for table in ["lsm_a", "btree_a"] {
        let engine = table.trim_end_matches("_a");
        group.bench_function(format!("view_get_{engine}"), |b| {
            b.iter_batched(
                || key(rng.below(LOADED_KEYS)),
                |k| {
                    let view = db.read_view().expect("a read view");
                    let found = view.get(table, &k).expect("the view reads");
                    black_box(found.expect("a loaded key"))
                },
                BatchSize::SmallInput,
            );
        });
        group.bench_function(format!("db_get_{engine}"), |b| {
            b.iter_batched(
                || key(rng.below(LOADED_KEYS)),
                |k| {
                    let found = db.get(table, &k).expect("the Db reads");
                    black_box(found.expect("a loaded key"))
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group! {
    name = db;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    targets = apply, commit, read
}
criterion_main!(db);
