//! The SQLite-style fault loop on the Db: a fixed workload (batches across an LSM and a
//! B+tree table, conditional transactions, checkpoints, background steps) runs once per
//! fault point N, with the Nth I/O operation failing (EIO, or ENOSPC on what can run out of
//! space), once or from then on, until a run no longer reaches N. Each run may get errors,
//! but: no panic; every read it answers is right; after the fault is cleared and the Db
//! reopened, every acknowledged write is there with its version, writes refused for sure
//! are not, a write whose outcome was unknown is there whole or not at all; and the offline
//! check finds nothing. A second pass fails the Nth operation of recovery itself.
//!
//! `DB_FAULT_LOOP_STEP=<n>` tries every nth fault point only (default 1: all of them).

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use popdb_db::{
    Check, Commit, Condition, Db, DbOptions, EngineKind, Error, Scan, TableOptions, WriteBatch,
};
use popdb_io::{Fault, FaultError, FaultOp, SimFs};

const DIR: &str = "/db";
const TABLES: [(&str, EngineKind); 2] = [("lsm", EngineKind::Lsm), ("btree", EngineKind::Btree)];

/// Table -> key -> value.
type Values = BTreeMap<&'static str, BTreeMap<Vec<u8>, Vec<u8>>>;

fn options(fs: &SimFs) -> DbOptions {
    let mut options = DbOptions {
        fs: Arc::new(fs.clone()),
        background: false,
        reserve_bytes: 16 * 1024,
        ..DbOptions::default()
    };
    options.wal.segment_size = 64 * 1024;
    options.wal.record_size_max = 60_000;
    options.lsm.memtable_size_max = 2 * 1024;
    options.lsm.l0_compaction_trigger = 2;
    options
}

#[derive(Clone, Debug)]
enum Op {
    /// Puts `key` = `value` into both tables, atomically.
    Write(u8, Vec<u8>),
    /// Puts into the LSM table if `key` is absent there (fails if present).
    IfAbsent(u8, Vec<u8>),
    Checkpoint,
    Maintenance,
}

fn workload() -> Vec<Op> {
    let mut ops = Vec::new();
    for i in 0..36_u8 {
        ops.push(match i % 9 {
            4 => Op::Checkpoint,
            7 => Op::Maintenance,
            2 | 5 => Op::IfAbsent(i % 11, vec![b'c'; 40 + usize::from(i) * 10]),
            _ => Op::Write(i % 7, vec![i; 200 + usize::from(i) * 20]),
        });
    }
    ops
}

/// What became of one write of the workload.
#[derive(Clone, Debug, PartialEq)]
enum Fate {
    /// Acknowledged at this LSN.
    Applied(u64),
    /// Certainly not applied (a refusal or a conflict).
    NotApplied,
    /// May have applied.
    Unknown,
}

fn writes_of(op: &Op) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    match op {
        Op::Write(k, v) => TABLES
            .iter()
            .map(|(t, _)| (*t, vec![b'k', *k], v.clone()))
            .collect(),
        Op::IfAbsent(k, v) => vec![("lsm", vec![b'c', *k], v.clone())],
        _ => Vec::new(),
    }
}

/// Runs the workload, continuing past errors; returns each write's fate.
fn run(db: &Db, ops: &[Op]) -> Vec<(usize, Fate)> {
    let mut fates = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let result = match op {
            Op::Checkpoint => {
                let _ = db.checkpoint();
                continue;
            }
            Op::Maintenance => {
                let _ = db.maintenance_step();
                continue;
            }
            Op::Write(_, _) => {
                let mut batch = WriteBatch::new();
                for (table, key, value) in writes_of(op) {
                    batch.put(table, key, value);
                }
                db.write(batch)
            }
            Op::IfAbsent(k, v) => db.commit(Commit {
                conditions: vec![Condition {
                    table: "lsm".to_string(),
                    check: Check::Absent {
                        key: vec![b'c', *k],
                    },
                }],
                writes: {
                    let mut batch = WriteBatch::new();
                    batch.put("lsm", vec![b'c', *k], v.clone());
                    batch
                },
                ..Commit::default()
            }),
        };
        let fate = match result {
            Ok(lsn) => Fate::Applied(lsn),
            Err(Error::Unknown(_)) => Fate::Unknown,
            // Refused before logging, refused by a poisoned Db or log, or a conflict
            // decided in log order: certainly not applied.
            Err(_) => Fate::NotApplied,
        };
        fates.push((i, fate));
    }
    fates
}

/// The values the Db may hold: the applied writes in order, and any subset of the unknown
/// ones (at most a few, after which the Db is poisoned). Conditional writes re-check their
/// condition against the candidate state.
fn candidates(ops: &[Op], fates: &[(usize, Fate)]) -> Vec<Values> {
    let unknown: Vec<usize> = fates
        .iter()
        .filter(|(_, f)| *f == Fate::Unknown)
        .map(|(i, _)| *i)
        .collect();
    assert!(
        unknown.len() <= 6,
        "{} writes of unknown outcome",
        unknown.len()
    );
    let mut out = Vec::new();
    for mask in 0..(1_u32 << unknown.len()) {
        let mut values = Values::new();
        for (i, fate) in fates {
            let apply = match fate {
                Fate::Applied(_) => true,
                Fate::NotApplied => false,
                Fate::Unknown => {
                    let bit = unknown.iter().position(|u| u == i).unwrap();
                    mask & (1 << bit) != 0
                }
            };
            if !apply {
                continue;
            }
            if let Op::IfAbsent(k, _) = &ops[*i]
                && values
                    .get("lsm")
                    .is_some_and(|t| t.contains_key(&vec![b'c', *k]))
            {
                continue; // Its condition fails in this candidate.
            }
            for (table, key, value) in writes_of(&ops[*i]) {
                values.entry(table).or_default().insert(key, value);
            }
        }
        out.push(values);
    }
    out
}

/// Every table's values, or `None` if a read failed.
fn try_values(db: &Db) -> Option<Values> {
    let mut values = Values::new();
    for (table, _) in TABLES {
        for entry in db.scan(table, &Scan::all()).ok()? {
            values
                .entry(table)
                .or_default()
                .insert(entry.key, entry.value);
        }
    }
    Some(values)
}

/// The same values, empty tables aside.
fn same(a: &Values, b: &Values) -> bool {
    let mut a = a.clone();
    a.retain(|_, t| !t.is_empty());
    let mut b = b.clone();
    b.retain(|_, t| !t.is_empty());
    a == b
}

fn values_and_versions(db: &Db) -> (Values, BTreeMap<(&'static str, Vec<u8>), u64>) {
    let mut values = Values::new();
    let mut versions = BTreeMap::new();
    for (table, _) in TABLES {
        for entry in db.scan(table, &Scan::all()).unwrap() {
            versions.insert((table, entry.key.clone()), entry.version);
            values
                .entry(table)
                .or_default()
                .insert(entry.key, entry.value);
        }
    }
    (values, versions)
}

/// After the faulty run: the reopened Db holds one of the candidates, acknowledged
/// versions included, and the offline check is clean.
fn verify(fs: &SimFs, ops: &[Op], fates: &[(usize, Fate)], context: &str) {
    let db = Db::open(Path::new(DIR), options(fs))
        .unwrap_or_else(|e| panic!("{context}: reopen without faults failed: {e}"));
    let (values, versions) = values_and_versions(&db);
    let candidates = candidates(ops, fates);
    assert!(
        candidates.iter().any(|c| same(c, &values)),
        "{context}: the Db holds none of the {} possible states; fates {fates:?}",
        candidates.len()
    );
    // An acknowledged write that is still the last to its key carries its LSN.
    for (i, fate) in fates {
        let Fate::Applied(lsn) = fate else { continue };
        for (table, key, value) in writes_of(&ops[*i]) {
            let later = fates.iter().any(|(j, f)| {
                j > i
                    && *f != Fate::NotApplied
                    && writes_of(&ops[*j])
                        .iter()
                        .any(|(t, k, _)| *t == table && *k == key)
            });
            if !later && values.get(table).and_then(|t| t.get(&key)) == Some(&value) {
                assert_eq!(versions[&(table, key.clone())], *lsn, "{context}: version");
            }
        }
    }
    db.close().unwrap();
    let report = popdb_db::check(Path::new(DIR), options(fs)).unwrap();
    assert!(
        report.problems.is_empty(),
        "{context}: the check found problems: {:?}",
        report.problems
    );
}

/// A new Db with its tables, outside the fault's reach.
fn fresh(fs: &SimFs) -> Db {
    let db = Db::open(Path::new(DIR), options(fs)).unwrap();
    for (name, engine) in TABLES {
        db.create_table(name, TableOptions::new(engine)).unwrap();
    }
    db
}

fn step() -> u64 {
    std::env::var("DB_FAULT_LOOP_STEP").map_or(1, |s| s.parse().unwrap())
}

#[test]
fn every_io_operation_fails_in_turn() {
    let ops = workload();
    let mut points = 0;
    for (error, persistent) in [
        (FaultError::Eio, false),
        (FaultError::Eio, true),
        (FaultError::Enospc, false),
    ] {
        let mut n = 0;
        loop {
            let fs = SimFs::new(n);
            let db = fresh(&fs);
            let mut fault = Fault::new(FaultOp::Any, error).after(n);
            if persistent {
                fault = fault.persistent();
            }
            fs.inject(fault);
            let fates = run(&db, &ops);
            // Reads on the faulty Db: an answer, when it gives one, is one it may give.
            if let Some(values) = try_values(&db) {
                assert!(
                    candidates(&ops, &fates).iter().any(|c| same(c, &values)),
                    "{error:?} at {n}: a read of the faulty Db is wrong"
                );
            }
            drop(db);
            let fired = fs.stats().faults_fired_count > 0;
            fs.clear_faults();
            if !fired {
                break;
            }
            points += 1;
            verify(
                &fs,
                &ops,
                &fates,
                &format!("{error:?} at I/O operation {n}, persistent {persistent}"),
            );
            n += step();
        }
    }
    eprintln!("{points} fault points exercised");
    assert!(points > 100, "only {points} fault points");
}

#[test]
fn recovery_fails_at_every_io_operation_in_turn() {
    let ops = workload();
    let mut points = 0;
    for seed in 0..2 {
        let mut n = 0;
        loop {
            let fs = SimFs::new(seed);
            let db = fresh(&fs);
            let fates = run(&db, &ops);
            // A power loss, so that recovery has a log to replay and a tail to check.
            fs.crash();
            drop(db);
            fs.inject(Fault::new(FaultOp::Any, FaultError::Eio).after(n));
            let result = Db::open(Path::new(DIR), options(&fs));
            let fired = fs.stats().faults_fired_count > 0;
            if let Ok(db) = result {
                drop(db);
            }
            fs.clear_faults();
            if !fired {
                break;
            }
            points += 1;
            verify(
                &fs,
                &ops,
                &fates,
                &format!("recovery, EIO at operation {n}"),
            );
            n += step();
        }
    }
    eprintln!("{points} fault points in recovery exercised");
    assert!(points > 20, "only {points} fault points in recovery");
}
