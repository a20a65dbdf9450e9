//! Crashes of the Db on the simulated file system: at every sync of a workload (so inside
//! every checkpoint too, between its intent and its completion), at random operations,
//! and under concurrent writers. After each crash the Db reopens and must hold every
//! acknowledged write with its version, no batch in part, no write that was never made,
//! and no aborted transaction's writes; the write in flight at the crash may or may not
//! have applied, whole.
//!
//! Replay one crash point: `DB_CRASH_POINT=<sync index> cargo test --profile checked -p
//! popdb-db --test db_crash every_sync`.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use popdb_db::{
    Check, Commit, Condition, Db, DbOptions, EngineKind, Error, Scan, TableOptions, WriteBatch,
};
use popdb_io::SimFs;
use popdb_testkit::Rng;

const TABLES: [(&str, EngineKind); 2] = [("lsm", EngineKind::Lsm), ("btree", EngineKind::Btree)];

/// Table -> key -> (value, version).
type State = BTreeMap<String, BTreeMap<Vec<u8>, (Vec<u8>, u64)>>;

/// (index into `TABLES`, key, value or delete).
type Writes = Vec<(usize, Vec<u8>, Option<Vec<u8>>)>;

fn options(fs: &SimFs) -> DbOptions {
    let mut options = DbOptions {
        fs: Arc::new(fs.clone()),
        background: false,
        ..DbOptions::default()
    };
    options.wal.segment_size = 64 * 1024;
    options.wal.record_size_max = 60_000;
    options.reserve_bytes = 64 * 1024;
    options.lsm.memtable_size_max = 2 * 1024;
    options.lsm.l0_compaction_trigger = 2;
    options
}

fn open(fs: &SimFs) -> Result<Db, Error> {
    Db::open(Path::new("/db"), options(fs))
}

/// Everything the Db holds.
fn contents(db: &Db) -> State {
    let mut state = State::new();
    for table in db.tables() {
        let rows = db
            .scan(&table.name, &Scan::all())
            .unwrap()
            .into_iter()
            .map(|e| (e.key, (e.value, e.version)))
            .collect();
        state.insert(table.name, rows);
    }
    state
}

/// One operation of the sequential workload.
#[derive(Clone, Debug)]
enum Op {
    Write(Writes),
    /// Writes on a condition on `key` of the LSM table, taken from the state so far.
    Conditional {
        key: Vec<u8>,
        writes: Writes,
    },
    Checkpoint,
    Maintenance,
}

fn workload(seed: u64, count: usize) -> Vec<Op> {
    let mut rng = Rng(seed);
    let writes = |rng: &mut Rng| {
        (0..=rng.index(4))
            .map(|_| {
                let table = rng.index(TABLES.len());
                let key = format!("k{}", rng.below(12)).into_bytes();
                let value = (!rng.chance(5)).then(|| vec![b'v'; rng.index(300)]);
                (table, key, value)
            })
            .collect::<Vec<_>>()
    };
    (0..count)
        .map(|_| match rng.below(20) {
            0 => Op::Checkpoint,
            1 => Op::Maintenance,
            2..=7 => Op::Conditional {
                key: format!("k{}", rng.below(12)).into_bytes(),
                writes: writes(&mut rng),
            },
            _ => Op::Write(writes(&mut rng)),
        })
        .collect()
}

fn apply(state: &mut State, lsn: u64, writes: &Writes) {
    for (table, key, value) in writes {
        let rows = state.entry(TABLES[*table].0.to_string()).or_default();
        match value {
            Some(v) => rows.insert(key.clone(), (v.clone(), lsn)),
            None => rows.remove(key),
        };
    }
}

fn batch(writes: &Writes) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for (table, key, value) in writes {
        match value {
            Some(v) => batch.put(TABLES[*table].0, key.clone(), v.clone()),
            None => batch.delete(TABLES[*table].0, key.clone()),
        };
    }
    batch
}

/// What the run acknowledged, and the state that may also include the op in flight.
struct Run {
    acknowledged: State,
    /// The acknowledged state plus the write in flight when the crash struck, if it would
    /// have committed.
    with_in_flight: Option<State>,
    completed: usize,
}

/// Runs `ops` until the first failure; conditional writes take their version from the
/// state so far (half of them stale on purpose, so they abort).
fn run_ops(db: &Db, ops: &[Op], mut state: State) -> Run {
    for (i, op) in ops.iter().enumerate() {
        let result = match op {
            Op::Checkpoint => db.checkpoint().map(|_| None),
            Op::Maintenance => db.maintenance_step().map(|_| None),
            Op::Write(writes) => db.write(batch(writes)).map(|lsn| Some((lsn, writes))),
            Op::Conditional { key, writes, .. } => {
                let current = state.get("lsm").and_then(|rows| rows.get(key)).map(|r| r.1);
                // Every other one is stale: it must abort and leave no trace.
                let stale = i % 2 == 0;
                let check = match (current, stale) {
                    (Some(v), false) => Check::Version {
                        key: key.clone(),
                        version: v,
                    },
                    (Some(_), true) | (None, false) => Check::Absent { key: key.clone() },
                    (None, true) => Check::Exists { key: key.clone() },
                };
                let commit = Commit {
                    conditions: vec![Condition {
                        table: "lsm".to_string(),
                        check,
                    }],
                    writes: batch(writes),
                    ..Commit::default()
                };
                match db.commit(commit) {
                    Ok(lsn) => {
                        assert!(!stale, "a stale condition passed");
                        Ok(Some((lsn, writes)))
                    }
                    Err(Error::Conflict { .. }) if stale => Ok(None),
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok(Some((lsn, writes))) => apply(&mut state, lsn, writes),
            Ok(None) => {}
            Err(_) => {
                let with_in_flight = match op {
                    Op::Write(writes) => Some(writes),
                    Op::Conditional { writes, .. } if i % 2 == 1 => Some(writes),
                    _ => None,
                }
                .map(|writes| {
                    let mut s = state.clone();
                    // Its LSN is unknown: compare with versions taken from the Db.
                    apply(&mut s, u64::MAX, writes);
                    s
                });
                return Run {
                    acknowledged: state,
                    with_in_flight,
                    completed: i,
                };
            }
        }
    }
    Run {
        acknowledged: state,
        with_in_flight: None,
        completed: ops.len(),
    }
}

fn fresh_db(fs: &SimFs) -> (Db, State) {
    let db = open(fs).unwrap();
    let mut state = State::new();
    for (name, engine) in TABLES {
        db.create_table(name, TableOptions::new(engine)).unwrap();
        state.insert(name.to_string(), BTreeMap::new());
    }
    (db, state)
}

/// A short form of a state for failure messages: key, value length, version.
fn summary(state: &State) -> String {
    let mut out = String::new();
    for (table, rows) in state {
        write!(out, "{table}: ").unwrap();
        for (key, (value, version)) in rows {
            write!(
                out,
                "{}={}@{version} ",
                String::from_utf8_lossy(key),
                value.len()
            )
            .unwrap();
        }
    }
    out
}

/// Checks the reopened Db against what the run acknowledged.
fn verify(found: &State, run: &Run, context: &str) {
    if found == &run.acknowledged {
        return;
    }
    let Some(expected) = &run.with_in_flight else {
        panic!(
            "{context}: lost or invented writes\nfound    {}\nexpected {}",
            summary(found),
            summary(&run.acknowledged)
        );
    };
    // The write in flight applied: its LSN is the largest version found.
    let lsn = found
        .values()
        .flat_map(|rows| rows.values().map(|r| r.1))
        .max()
        .unwrap();
    let mut expected = expected.clone();
    for rows in expected.values_mut() {
        for row in rows.values_mut() {
            if row.1 == u64::MAX {
                row.1 = lsn;
            }
        }
    }
    assert!(
        found == &expected,
        "{context}: neither without nor with the write in flight\nfound    {}\nexpected {}",
        summary(found),
        summary(&expected)
    );
}

/// Ends a crash run with the power lost exactly once: the log's spare-segment thread syncs
/// on its own schedule, so the armed crash may not have struck yet; then it strikes now.
fn power_back_on(fs: &SimFs) {
    fs.disarm_crash();
    if fs.is_down() {
        fs.restart();
    } else {
        fs.crash();
    }
}

#[test]
fn every_sync() {
    let ops = workload(11, 80);
    // Count the syncs of an uncrashed run.
    let fs = SimFs::new(1);
    let (db, state) = fresh_db(&fs);
    let before = fs.sync_count();
    let run = run_ops(&db, &ops, state);
    assert_eq!(run.completed, ops.len());
    let syncs = fs.sync_count() - before;
    drop(db);
    let points: Vec<u64> = match std::env::var("DB_CRASH_POINT") {
        Ok(point) => vec![point.parse().unwrap()],
        Err(_) => (0..syncs).collect(),
    };
    let mut in_checkpoint = 0;
    for point in points {
        let fs = SimFs::new(point);
        let (db, state) = fresh_db(&fs);
        fs.set_crash_after_syncs(point);
        let run = run_ops(&db, &ops, state);
        if matches!(ops.get(run.completed), Some(Op::Checkpoint)) {
            in_checkpoint += 1;
        }
        drop(db);
        power_back_on(&fs);
        let db = open(&fs).unwrap();
        verify(&contents(&db), &run, &format!("crash at sync {point}"));
        // The reopened Db takes writes and survives a second reopen.
        let mut batch = WriteBatch::new();
        batch.put("lsm", "after", "crash");
        let lsn = db.write(batch).unwrap();
        assert!(lsn > db.recovery().visible_lsn);
        db.close().unwrap();
        let db = open(&fs).unwrap();
        assert_eq!(
            db.get("lsm", b"after").unwrap(),
            Some((b"crash".to_vec(), lsn))
        );
    }
    assert!(
        in_checkpoint > 3,
        "only {in_checkpoint} crashes inside a checkpoint"
    );
    eprintln!("{syncs} crash points, {in_checkpoint} inside checkpoints");
}

#[test]
fn random_operations() {
    let ops = workload(23, 120);
    let fs = SimFs::new(2);
    let (db, state) = fresh_db(&fs);
    let before = fs.op_count();
    run_ops(&db, &ops, state);
    let total = fs.op_count() - before;
    drop(db);
    let mut rng = Rng(5);
    for round in 0..60 {
        let point = rng.below(total);
        let fs = SimFs::new(100 + round);
        let (db, state) = fresh_db(&fs);
        fs.set_crash_after_ops(point);
        let run = run_ops(&db, &ops, state);
        drop(db);
        power_back_on(&fs);
        // A crash during recovery is harmless: crash the first reopen now and then.
        if rng.chance(3) {
            fs.set_crash_after_ops(rng.below(40));
            let _ = open(&fs);
            power_back_on(&fs);
        }
        let db = open(&fs).unwrap();
        verify(&contents(&db), &run, &format!("crash at operation {point}"));
    }
}

#[test]
fn concurrent_writers() {
    for seed in 0..6 {
        concurrent_case(seed);
    }
}

/// Four threads write batches that put the same key into both tables (so a partial batch
/// shows as a mismatch) and increment a counter by transaction; the power fails at a
/// random operation.
fn concurrent_case(seed: u64) {
    let fs = SimFs::new(seed);
    let (db, _) = fresh_db(&fs);
    let db = Arc::new(db);
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let increments = Arc::new(Mutex::new((0_u64, 0_u64))); // (acknowledged, in doubt)
    let failed = Arc::new(AtomicBool::new(false));
    let mut rng = Rng(seed);
    fs.set_crash_after_ops(200 + rng.below(600));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (db, acked, increments, failed) = (
                Arc::clone(&db),
                Arc::clone(&acked),
                Arc::clone(&increments),
                Arc::clone(&failed),
            );
            std::thread::spawn(move || {
                for i in 0..400_u64 {
                    if failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let marker = format!("{t}-{i}");
                    let key = format!("t{t}-{}", i % 7);
                    if i % 5 == 4 {
                        let result = db.transaction(8, |txn| {
                            let n = txn.get("lsm", b"counter")?.map_or(0, |v| v.len());
                            txn.put("lsm", "counter", vec![b'+'; n + 1]);
                            Ok(())
                        });
                        let mut counts = increments.lock();
                        match result {
                            Ok(_) => counts.0 += 1,
                            Err(Error::Conflict { .. }) => {}
                            Err(_) => {
                                counts.1 += 1;
                                failed.store(true, Ordering::Relaxed);
                            }
                        }
                        continue;
                    }
                    let mut batch = WriteBatch::new();
                    batch.put("lsm", key.clone(), marker.clone());
                    batch.put("btree", key, marker.clone());
                    match db.write(batch) {
                        Ok(lsn) => acked.lock().push((marker, lsn)),
                        Err(_) => failed.store(true, Ordering::Relaxed),
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    drop(Arc::try_unwrap(db).unwrap());
    power_back_on(&fs);
    let db = open(&fs).unwrap();
    let found = contents(&db);
    let (lsm, btree) = (&found["lsm"], &found["btree"]);
    let acked: BTreeMap<String, u64> = acked.lock().iter().cloned().collect();
    // No batch in part: a key holds the same marker at the same version in both tables.
    for (key, (value, version)) in btree {
        assert_eq!(
            lsm.get(key),
            Some(&(value.clone(), *version)),
            "seed {seed}: key {key:?}"
        );
        if let Some(&lsn) = acked.get(std::str::from_utf8(value).unwrap()) {
            assert_eq!(*version, lsn, "seed {seed}: version of {key:?}");
        }
    }
    // Every acknowledged batch is there, or overwritten by a later one of its thread.
    for (marker, lsn) in &acked {
        let (t, i) = marker.split_once('-').unwrap();
        let i: u64 = i.parse().unwrap();
        let key = format!("t{t}-{}", i % 7).into_bytes();
        let (_, version) = btree
            .get(&key)
            .unwrap_or_else(|| panic!("seed {seed}: lost {marker}"));
        assert!(
            version >= lsn,
            "seed {seed}: {marker} at {lsn} lost (found {version})"
        );
    }
    let counter = lsm
        .get(b"counter".as_slice())
        .map_or(0, |(v, _)| v.len() as u64);
    let (acknowledged, in_doubt) = *increments.lock();
    assert!(
        (acknowledged..=acknowledged + in_doubt).contains(&counter),
        "seed {seed}: counter {counter}, {acknowledged} acknowledged, {in_doubt} in doubt"
    );
}
