//! A panic on the log's writer (a bug below the Db) must reach every writer of the Db as an
//! error, never as a hang: the log poisons itself naming the panic, the Db poisons itself
//! with it, reads go on, and a reopen recovers every acknowledged write. Before the log
//! caught such panics, the writes of the panicking group waited forever.
//!
//! The timeout only guards against a hang; it is generous so a loaded machine cannot fail
//! a correct Db.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use popdb_db::{
    Db, DbOptions, Durability, EngineKind, PointWrites, TableOptions, WriteBatch, WriteOptions,
};
use popdb_io::{FsRef, SimFs};
use popdb_testkit::{FsOp, HookFs};

const HANG: Duration = Duration::from_mins(1);

/// Panics once, in the first group-commit write of the log after `armed` is set, or in the
/// first write of a new state file after `state_armed` is (the apply stage writes one when a
/// no-sync record needs a new LSN lease).
#[derive(Debug, Default)]
struct Trap {
    armed: AtomicBool,
    state_armed: AtomicBool,
    fired: AtomicU64,
}

impl Trap {
    /// A SimFs that springs this trap: `armed` in the log's group-commit writes,
    /// `state_armed` in writes of a new state file.
    fn fs(self: &Arc<Self>, sim: &SimFs) -> FsRef {
        let trap = Arc::clone(self);
        Arc::new(HookFs::new(Arc::new(sim.clone()), move |path, op| {
            let in_log = path.starts_with("/db/wal");
            if op == FsOp::WriteBatch && in_log && trap.armed.swap(false, Ordering::SeqCst) {
                trap.fired.fetch_add(1, Ordering::SeqCst);
                panic!("injected panic in the log's group-commit write");
            }
            let is_state = path.file_name().is_some_and(|name| name == "STATE.tmp");
            if matches!(op, FsOp::WriteAt | FsOp::WriteBatch)
                && is_state
                && trap.state_armed.swap(false, Ordering::SeqCst)
            {
                trap.fired.fetch_add(1, Ordering::SeqCst);
                panic!("injected panic in a state file write");
            }
        }))
    }
}

fn options(fs: FsRef) -> DbOptions {
    let mut options = DbOptions {
        fs,
        background: false,
        ..DbOptions::default()
    };
    options.wal.segment_size = 64 * 1024;
    options.wal.record_size_max = 60_000;
    options
}

fn put(key: &str) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.put("t", key, format!("value of {key}"));
    batch
}

const PANIC_MESSAGE: &str = "writer-thread panic poisoned the log";

#[test]
fn a_log_writer_panic_fails_every_concurrent_write_instead_of_hanging() {
    const THREADS: usize = 6;
    const WRITES_MAX: usize = 200;
    let sim = SimFs::new(21);
    let trap = Arc::new(Trap::default());
    let fs = trap.fs(&sim);
    let db = Arc::new(Db::open(Path::new("/db"), options(fs)).unwrap());
    db.create_table("t", TableOptions::new(EngineKind::Lsm))
        .unwrap();
    for i in 0..10 {
        db.write(put(&format!("before-{i}"))).unwrap();
    }
    trap.armed.store(true, Ordering::SeqCst);
    let (done_tx, done_rx) = mpsc::channel();
    let mut threads = Vec::new();
    for t in 0..THREADS {
        let (db, done_tx) = (Arc::clone(&db), done_tx.clone());
        threads.push(std::thread::spawn(move || {
            let mut acked = Vec::new();
            for i in 0..WRITES_MAX {
                let key = format!("w{t}-{i}");
                match db.write(put(&key)) {
                    Ok(_) => acked.push(key),
                    Err(error) => {
                        done_tx.send((acked, Some(error))).unwrap();
                        return;
                    }
                }
            }
            done_tx.send((acked, None)).unwrap();
        }));
    }
    let mut acked = Vec::new();
    for _ in 0..THREADS {
        let (mut a, error) = done_rx.recv_timeout(HANG).expect("a write hung");
        let error = error.expect("the Db kept taking writes after its log's writer panicked");
        assert!(error.to_string().contains(PANIC_MESSAGE), "{error}");
        acked.append(&mut a);
    }
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(trap.fired.load(Ordering::SeqCst), 1);
    let later = db.write(put("later")).unwrap_err();
    assert!(later.to_string().contains(PANIC_MESSAGE), "{later}");
    assert!(db.poison_cause().is_some());
    // Reads go on.
    assert!(db.get("t", b"before-0").unwrap().is_some());
    drop(Arc::try_unwrap(db).unwrap());

    let db = Db::open(Path::new("/db"), options(Arc::new(sim.clone()))).unwrap();
    for key in (0..10).map(|i| format!("before-{i}")).chain(acked) {
        let (value, _) = db.get("t", key.as_bytes()).unwrap().unwrap();
        assert_eq!(value, format!("value of {key}").into_bytes());
    }
    db.write(put("after reopening")).unwrap();
    db.close().unwrap();
}

#[test]
fn a_panic_while_applying_a_record_answers_its_writer_instead_of_hanging_it() {
    let sim = SimFs::new(22);
    let trap = Arc::new(Trap::default());
    let fs = trap.fs(&sim);
    let db = Arc::new(Db::open(Path::new("/db"), options(fs)).unwrap());
    db.create_table("t", TableOptions::new(EngineKind::Lsm))
        .unwrap();
    db.write(put("before")).unwrap();
    // A no-sync record is visible before it is durable, so its apply first writes a state
    // file with a new LSN lease: the trap panics there, inside the record's apply.
    trap.state_armed.store(true, Ordering::SeqCst);
    let (done_tx, done_rx) = mpsc::channel();
    let writer = {
        let db = Arc::clone(&db);
        std::thread::spawn(move || {
            let no_sync = WriteOptions {
                durability: Some(Durability::NoSync),
            };
            done_tx
                .send(db.write_with(put("applying"), no_sync))
                .unwrap();
        })
    };
    let answer = done_rx.recv_timeout(HANG).expect("the write hung");
    writer.join().unwrap();
    assert_eq!(
        trap.fired.load(Ordering::SeqCst),
        1,
        "the apply reached the trap"
    );
    let error = answer.expect_err("a write whose apply panicked was acknowledged");
    assert!(
        error.to_string().contains("applying it panicked"),
        "{error}"
    );
    let later = db.write(put("later")).unwrap_err();
    assert!(later.to_string().contains(PANIC_MESSAGE), "{later}");
    assert!(db.get("t", b"before").unwrap().is_some());
    drop(Arc::try_unwrap(db).unwrap());

    let db = Db::open(Path::new("/db"), options(Arc::new(sim.clone()))).unwrap();
    assert!(db.get("t", b"before").unwrap().is_some());
    db.write(put("after reopening")).unwrap();
    db.close().unwrap();
}

#[test]
fn a_panic_while_applying_point_writes_answers_each_of_them() {
    let sim = SimFs::new(23);
    let trap = Arc::new(Trap::default());
    let fs = trap.fs(&sim);
    let db = Arc::new(Db::open(Path::new("/db"), options(fs)).unwrap());
    db.create_table("t", TableOptions::new(EngineKind::Lsm))
        .unwrap();
    db.write(put("before")).unwrap();
    // As above: the first no-sync record's apply writes a state file, where the trap fires.
    trap.state_armed.store(true, Ordering::SeqCst);
    let no_sync = WriteOptions {
        durability: Some(Durability::NoSync),
    };
    let mut writes = PointWrites::new(no_sync);
    for key in ["a", "b", "c"] {
        db.add_point_write(&mut writes, "t", key.as_bytes(), Some(b"v"))
            .unwrap();
    }
    let (done_tx, done_rx) = mpsc::channel();
    if let Some(lead) = db.write_points_leading(writes, move |results| {
        done_tx.send(results).unwrap();
    }) {
        lead.run();
    }
    let results = done_rx.recv_timeout(HANG).expect("the writes hung");
    assert_eq!(trap.fired.load(Ordering::SeqCst), 1);
    assert_eq!(results.len(), 3);
    for result in results {
        let error = result.expect_err("a write whose apply panicked was acknowledged");
        assert!(
            error
                .to_string()
                .contains("applying the writes logged with it panicked"),
            "{error}"
        );
    }
    let later = db.write(put("later")).unwrap_err();
    assert!(later.to_string().contains(PANIC_MESSAGE), "{later}");
    // A later append is refused whole: each of its writes hears why.
    let mut writes = PointWrites::new(no_sync);
    for key in ["d", "e"] {
        db.add_point_write(&mut writes, "t", key.as_bytes(), None)
            .unwrap();
    }
    let (done_tx, done_rx) = mpsc::channel();
    let lead = db.write_points_leading(writes, move |results| done_tx.send(results).unwrap());
    assert!(lead.is_none(), "a refused append leads nothing");
    let refused = done_rx.recv_timeout(HANG).expect("the refusal never came");
    assert_eq!(refused.len(), 2);
    for result in refused {
        let error = result.expect_err("a poisoned Db took a write");
        assert!(error.to_string().contains(PANIC_MESSAGE), "{error}");
    }
    drop(Arc::try_unwrap(db).unwrap());

    // The records are in the log: a reopen applies them.
    let db = Db::open(Path::new("/db"), options(Arc::new(sim.clone()))).unwrap();
    for key in ["before", "a", "b", "c"] {
        assert!(db.get("t", key.as_bytes()).unwrap().is_some(), "{key}");
    }
    db.close().unwrap();
}
