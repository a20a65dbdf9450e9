//! Fuzz harness bodies behind the `internals` feature: arbitrary operation sequences on a Db
//! (with transactions whose key and range conditions pass or fail) and on each engine
//! (with checkpoints, reopens and crashes), each compared with a `BTreeMap` model. The fuzz
//! targets `db_transactions` and `engine_ops` call them; `db/tests/fuzz_ops_replay.rs`
//! replays their corpora on stable Rust. Each panics on any disagreement; any input runs in
//! bounded time (at most [`OPS_MAX`] operations on small keys and values).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use popdb_io::{FsRef, SimFs};

use crate::batch::{Commit, Condition, WriteBatch};
use crate::db::Db;
use crate::engine::{Direction, Engine, EngineKind, EngineOptions, open_engine};
use crate::error::Error;
use crate::options::{DbOptions, Durability, WriteOptions};
use crate::read::Scan;
use crate::record::Check;
use crate::table::TableOptions;

/// Operations one input may ask for.
pub const OPS_MAX: usize = 96;

/// Key -> (value, version).
type Rows = BTreeMap<Vec<u8>, (Vec<u8>, u64)>;

/// An engine batch as a log would hold it: (key, value or delete).
type Batch = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// Reads the input a byte at a time; zeros once it is used up.
struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn key(&mut self) -> Vec<u8> {
        let b = self.byte();
        match b % 20 {
            0 => Vec::new(),
            1 => vec![0xff, b],
            _ => vec![b'k', b % 16],
        }
    }

    fn value(&mut self) -> Vec<u8> {
        let b = self.byte();
        let len = match b % 16 {
            // More than a 4 KiB leaf holds inline: an overflow chain.
            0 => 1500 + usize::from(b) * 8,
            n => usize::from(n),
        };
        vec![b; len]
    }

    fn bound(&mut self) -> Bound<Vec<u8>> {
        match self.byte() % 3 {
            0 => Bound::Unbounded,
            1 => Bound::Included(self.key()),
            _ => Bound::Excluded(self.key()),
        }
    }
}

fn in_bounds(key: &[u8], lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    let above = match lower {
        Bound::Unbounded => true,
        Bound::Included(b) => key >= b.as_slice(),
        Bound::Excluded(b) => key > b.as_slice(),
    };
    let below = match upper {
        Bound::Unbounded => true,
        Bound::Included(b) => key <= b.as_slice(),
        Bound::Excluded(b) => key < b.as_slice(),
    };
    above && below
}

fn model_scan(rows: &Rows, scan: &Scan) -> Vec<(Vec<u8>, Vec<u8>, u64)> {
    let mut out: Vec<_> = rows
        .iter()
        .filter(|(k, _)| in_bounds(k, &scan.lower, &scan.upper))
        .filter(|(k, _)| scan.prefix.as_ref().is_none_or(|p| k.starts_with(p)))
        .map(|(k, (v, ver))| (k.clone(), v.clone(), *ver))
        .collect();
    if scan.direction == Direction::Backward {
        out.reverse();
    }
    out.truncate(scan.limit);
    out
}

const TABLES: [(&str, EngineKind); 2] = [("a", EngineKind::Lsm), ("b", EngineKind::Btree)];

fn db_options(fs: &SimFs) -> DbOptions {
    let mut options = DbOptions {
        fs: Arc::new(fs.clone()),
        background: false,
        reserve_bytes: 0,
        ..DbOptions::default()
    };
    options.wal.segment_size = 64 * 1024;
    options.wal.record_size_max = 60_000;
    options.lsm.memtable_size_max = 2048;
    options.lsm.l0_compaction_trigger = 2;
    options.btree_roots_retained = 2;
    options
}

/// Arbitrary operations on a Db with two tables (one per engine): batches, transactions
/// with conditions the model decides, reads, checkpoints, background steps, drops and
/// re-creations, reopens and crashes (after a sync: every acknowledged write must survive).
///
/// # Panics
/// On any disagreement with the model, or any error the model does not expect.
pub fn fuzz_db_transactions(data: &[u8]) {
    let fs = SimFs::new(data.len() as u64);
    let dir = Path::new("/db");
    let mut db = Some(Db::open(dir, db_options(&fs)).expect("open a new Db"));
    let mut model: BTreeMap<&'static str, Rows> = BTreeMap::new();
    for (name, engine) in TABLES {
        let db = db.as_ref().expect("open");
        db.create_table(name, TableOptions::new(engine))
            .expect("create a table");
        model.insert(name, Rows::new());
    }
    let mut input = Input { bytes: data, at: 0 };
    for _ in 0..OPS_MAX {
        if input.done() {
            break;
        }
        let handle = db.as_ref().expect("open");
        let op = input.byte();
        match op % 12 {
            0..=3 => {
                let mut batch = WriteBatch::new();
                let mut writes = Vec::new();
                for _ in 0..=input.byte() % 4 {
                    let (table, _) = TABLES[usize::from(input.byte() % 2)];
                    let key = input.key();
                    let value = (!input.byte().is_multiple_of(4)).then(|| input.value());
                    match &value {
                        Some(v) => batch.put(table, key.clone(), v.clone()),
                        None => batch.delete(table, key.clone()),
                    };
                    writes.push((table, key, value));
                }
                let durability = (op & 0x80 != 0).then_some(Durability::NoSync);
                let result = handle.write_with(batch, WriteOptions { durability });
                let live = writes.iter().all(|(t, _, _)| model.contains_key(t));
                if !live {
                    assert!(matches!(result, Err(Error::UnknownTable(_))), "{result:?}");
                    continue;
                }
                let lsn = result.expect("a batch on live tables");
                apply(&mut model, lsn, &writes);
            }
            4..=6 => transaction(handle, &mut model, &mut input),
            7 => {
                let (table, _) = TABLES[usize::from(input.byte() % 2)];
                let scan = Scan {
                    lower: input.bound(),
                    upper: input.bound(),
                    prefix: (input.byte().is_multiple_of(4)).then(|| vec![b'k']),
                    direction: if input.byte().is_multiple_of(2) {
                        Direction::Forward
                    } else {
                        Direction::Backward
                    },
                    limit: usize::from(input.byte() % 8).max(1),
                };
                let key = input.key();
                match model.get(table) {
                    Some(rows) => {
                        let got = handle.get(table, &key).expect("get");
                        assert_eq!(got, rows.get(&key).cloned(), "get {table} {key:?}");
                        let entries: Vec<_> = handle
                            .scan(table, &scan)
                            .expect("scan")
                            .into_iter()
                            .map(|e| (e.key, e.value, e.version))
                            .collect();
                        assert_eq!(entries, model_scan(rows, &scan), "scan {table} {scan:?}");
                    }
                    None => assert!(matches!(
                        handle.get(table, &key),
                        Err(Error::UnknownTable(_))
                    )),
                }
            }
            8 => {
                handle.checkpoint().expect("checkpoint");
            }
            9 => {
                handle.maintenance_step().expect("background step");
            }
            10 => {
                let (table, engine) = TABLES[usize::from(input.byte() % 2)];
                if model.remove(table).is_some() {
                    handle.drop_table(table).expect("drop a live table");
                } else {
                    handle
                        .create_table(table, TableOptions::new(engine))
                        .expect("create a dropped table");
                    model.insert(table, Rows::new());
                }
            }
            _ => {
                let old = db.take().expect("open");
                if input.byte().is_multiple_of(2) {
                    // Acknowledged no-sync writes may be lost in a crash; sync them so the
                    // model stays exact.
                    old.sync().expect("sync");
                    fs.crash();
                    drop(old);
                } else {
                    old.close().expect("close");
                }
                db = Some(Db::open(dir, db_options(&fs)).expect("reopen"));
            }
        }
    }
    let db = db.expect("open");
    for (table, rows) in &model {
        let entries: Vec<_> = db
            .scan(table, &Scan::all())
            .expect("scan")
            .into_iter()
            .map(|e| (e.key, e.value, e.version))
            .collect();
        assert_eq!(entries, model_scan(rows, &Scan::all()), "table {table}");
    }
}

type Writes<'a> = Vec<(&'a str, Vec<u8>, Option<Vec<u8>>)>;

fn apply(model: &mut BTreeMap<&'static str, Rows>, lsn: u64, writes: &Writes<'_>) {
    for (table, key, value) in writes {
        let rows = model.get_mut(*table).expect("live table");
        match value {
            Some(v) => rows.insert(key.clone(), (v.clone(), lsn)),
            None => rows.remove(key),
        };
    }
}

/// A transaction on table "a" or "b" with up to three conditions.
fn transaction(db: &Db, model: &mut BTreeMap<&'static str, Rows>, input: &mut Input<'_>) {
    let mut conditions = Vec::new();
    let mut first_failed = None;
    let mut unknown = false;
    for index in 0..input.byte() % 4 {
        let (table, _) = TABLES[usize::from(input.byte() % 2)];
        let key = input.key();
        let Some(rows) = model.get(table) else {
            unknown = true;
            conditions.push(Condition {
                table: table.to_string(),
                check: Check::Absent { key },
            });
            continue;
        };
        let current = rows.get(&key).map(|r| r.1);
        let (check, holds) = match input.byte() % 4 {
            0 => {
                let version = current.map_or(1, |v| v - u64::from(input.byte() % 2));
                (Check::Version { key, version }, current == Some(version))
            }
            1 => (Check::Absent { key }, current.is_none()),
            2 => (Check::Exists { key }, current.is_some()),
            _ => {
                let end = input.key();
                let (start, end) = if end < key { (end, key) } else { (key, end) };
                let newest = rows
                    .iter()
                    .filter(|(k, _)| **k >= start && **k < end)
                    .map(|(_, r)| r.1)
                    .max()
                    .unwrap_or(0);
                let since = newest.saturating_sub(u64::from(input.byte() % 2));
                (
                    Check::RangeUnchanged {
                        start,
                        end: Some(end),
                        since,
                    },
                    newest <= since,
                )
            }
        };
        if !holds && first_failed.is_none() {
            first_failed = Some(u32::from(index));
        }
        conditions.push(Condition {
            table: table.to_string(),
            check,
        });
    }
    let mut writes: Writes<'_> = Vec::new();
    let mut batch = WriteBatch::new();
    for _ in 0..input.byte() % 3 {
        let (table, _) = TABLES[usize::from(input.byte() % 2)];
        unknown |= !model.contains_key(table);
        let key = input.key();
        let value = input.value();
        batch.put(table, key.clone(), value.clone());
        writes.push((table, key, Some(value)));
    }
    let result = db.commit(Commit {
        conditions,
        writes: batch,
        ..Commit::default()
    });
    if unknown {
        assert!(matches!(result, Err(Error::UnknownTable(_))), "{result:?}");
    } else if let Some(index) = first_failed {
        assert!(
            matches!(result, Err(Error::Conflict { condition, .. }) if condition == index),
            "expected a conflict on condition {index}: {result:?}"
        );
    } else {
        let lsn = result.expect("a transaction whose conditions hold");
        apply(model, lsn, &writes);
    }
}

/// Arbitrary operations on one engine (the first byte picks it): batches at increasing
/// LSNs, reads, checkpoints, background steps, reopens (after a crash half the time) with
/// the replay of the batches above the watermark, as the Db replays its log.
///
/// # Panics
/// On any disagreement with the model.
pub fn fuzz_engine_ops(data: &[u8]) {
    let mut input = Input { bytes: data, at: 0 };
    let kind = if input.byte().is_multiple_of(2) {
        EngineKind::Lsm
    } else {
        EngineKind::Btree
    };
    let options = || match kind {
        EngineKind::Lsm => EngineOptions::Lsm(popdb_lsm::TreeOptions {
            memtable_size_max: 2048,
            l0_compaction_trigger: 2,
            ..popdb_lsm::TreeOptions::default()
        }),
        EngineKind::Btree => EngineOptions::Btree(popdb_btree::TreeOptions {
            page_size: popdb_btree::PageSize::new(512).expect("a valid page size"),
            roots_retained: 2,
        }),
    };
    let sim = SimFs::new(data.len() as u64);
    let fs: FsRef = Arc::new(sim.clone());
    let dir = Path::new("/t");
    let open = || open_engine(Arc::clone(&fs), dir, options()).expect("open the engine");
    let mut engine: Arc<dyn Engine> = open();
    let mut model = Rows::new();
    // Every batch applied, as a log would hold it.
    let mut log: Vec<(u64, Batch)> = Vec::new();
    let mut lsn = 0;
    for _ in 0..OPS_MAX {
        if input.done() {
            break;
        }
        match input.byte() % 8 {
            0..=3 => {
                lsn += 1 + u64::from(input.byte() % 3);
                let batch: Batch = (0..=input.byte() % 4)
                    .map(|_| {
                        let key = input.key();
                        (
                            key,
                            (!input.byte().is_multiple_of(4)).then(|| input.value()),
                        )
                    })
                    .collect();
                let writes: Vec<_> = batch
                    .iter()
                    .map(|(k, v)| (k.as_slice(), v.as_deref()))
                    .collect();
                engine.apply(lsn, &writes).expect("apply");
                for (key, value) in &batch {
                    match value {
                        Some(v) => model.insert(key.clone(), (v.clone(), lsn)),
                        None => model.remove(key),
                    };
                }
                log.push((lsn, batch));
            }
            4 => {
                let view = engine.read_view();
                let key = input.key();
                let mut value = Vec::new();
                let got = view
                    .get_into(&key, &mut value)
                    .expect("get")
                    .map(|v| (value, v));
                assert_eq!(got, model.get(&key).cloned(), "{kind:?} get {key:?}");
                let (lower, upper) = (input.bound(), input.bound());
                let direction = if input.byte().is_multiple_of(2) {
                    Direction::Forward
                } else {
                    Direction::Backward
                };
                let mut cursor = view
                    .scan(
                        lower.as_ref().map(Vec::as_slice),
                        upper.as_ref().map(Vec::as_slice),
                        direction,
                    )
                    .expect("scan");
                let mut entries = Vec::new();
                while cursor.valid() {
                    entries.push((
                        cursor.key().to_vec(),
                        cursor.value().to_vec(),
                        cursor.version(),
                    ));
                    cursor.next().expect("next");
                }
                let scan = Scan {
                    lower,
                    upper,
                    prefix: None,
                    direction,
                    limit: usize::MAX,
                };
                assert_eq!(entries, model_scan(&model, &scan), "{kind:?} scan");
            }
            5 => {
                if lsn > 0 {
                    engine.checkpoint(lsn).expect("checkpoint");
                }
            }
            6 => {
                engine.maintenance_step().expect("background step");
            }
            _ => {
                if input.byte().is_multiple_of(2) {
                    sim.crash();
                }
                drop(engine);
                engine = open();
                // Replay what the files do not hold, as the Db replays its log.
                let watermark = engine.watermark().unwrap_or(0);
                for (at, batch) in log.iter().filter(|(at, _)| *at > watermark) {
                    let writes: Vec<_> = batch
                        .iter()
                        .map(|(k, v)| (k.as_slice(), v.as_deref()))
                        .collect();
                    engine.apply(*at, &writes).expect("replay");
                }
            }
        }
    }
    let view = engine.read_view();
    let mut cursor = view
        .scan(Bound::Unbounded, Bound::Unbounded, Direction::Forward)
        .expect("scan");
    let mut entries = Vec::new();
    while cursor.valid() {
        entries.push((
            cursor.key().to_vec(),
            cursor.value().to_vec(),
            cursor.version(),
        ));
        cursor.next().expect("next");
    }
    assert_eq!(
        entries,
        model_scan(&model, &Scan::all()),
        "{kind:?} at the end"
    );
}
