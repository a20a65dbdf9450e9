//! `Wal::sync` syncs on its caller's thread, outside the log's writer: appends queued after
//! it are written and answered while its fdatasync runs (the Db syncs its no-sync writes
//! every few milliseconds, and each such sync held every writer back for its length). It
//! still makes durable everything appended before it, moves the durable LSN only after the
//! sync, and a failed sync still poisons the log.
//!
//! The timeout only guards against a hang; it is generous so a loaded machine cannot fail a
//! correct log.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use popdb_io::{Fault, FaultError, FaultOp, FsRef, SimFs};
use popdb_testkit::{FsOp, HookFs};
use popdb_wal::{Durability, Lsn, NewRecord, NodeId, RecordKind, Term, Wal, WalOptions};

const HANG: Duration = Duration::from_mins(1);

const SYNCER: &str = "syncer";

fn options() -> WalOptions {
    WalOptions {
        segment_size: 64 * 1024,
        record_size_max: 4096,
        ..WalOptions::default()
    }
}

fn new_record(byte: u8) -> NewRecord {
    NewRecord {
        term: Term(0),
        node: NodeId(0),
        kind: RecordKind::Normal,
        payload: vec![byte; 100],
    }
}

/// Holds a segment's `sync_data` while `armed`, until the test lets it go: it reports on
/// `entered` and waits on `release`.
struct Gate {
    armed: AtomicBool,
    entered: Mutex<Option<mpsc::Sender<()>>>,
    release: Mutex<Option<mpsc::Receiver<()>>>,
}

#[test]
fn appends_go_on_while_a_sync_runs() {
    let sim = SimFs::new(1);
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let gate = Arc::new(Gate {
        armed: AtomicBool::new(false),
        entered: Mutex::new(Some(entered_tx)),
        release: Mutex::new(Some(release_rx)),
    });
    let hooked = Arc::clone(&gate);
    let fs: FsRef = Arc::new(HookFs::new(Arc::new(sim), move |path, op| {
        // Only the test's syncing thread is held (never the writer or the spare maker).
        let syncer = std::thread::current().name() == Some(SYNCER);
        let segment = path.extension().is_some_and(|e| e == "wal");
        if op == FsOp::SyncData && syncer && segment && hooked.armed.swap(false, Ordering::SeqCst) {
            hooked
                .entered
                .lock()
                .unwrap()
                .take()
                .unwrap()
                .send(())
                .unwrap();
            let release = hooked.release.lock().unwrap().take().unwrap();
            // A broken release channel (the test failed) lets the sync finish.
            let _ = release.recv_timeout(HANG);
        }
    }));
    let (wal, _) = Wal::open(fs, Path::new("/wal"), options()).unwrap();
    let wal = Arc::new(wal);
    // LSN 1, synced: the segment exists.
    wal.append(RecordKind::Normal, vec![0; 10]).unwrap();
    for byte in 2..=5 {
        wal.submit_with_durability(vec![new_record(byte)], Durability::NoSync)
            .unwrap()
            .wait()
            .unwrap();
    }
    assert_eq!(wal.durable_lsn(), 1);
    gate.armed.store(true, Ordering::SeqCst);
    let syncer = {
        let wal = Arc::clone(&wal);
        std::thread::Builder::new()
            .name(SYNCER.to_string())
            .spawn(move || wal.sync())
            .unwrap()
    };
    entered_rx.recv_timeout(HANG).expect("the sync never began");
    assert_eq!(wal.durable_lsn(), 1, "durable before the sync finished");
    // The sync is under way: an append queued now is written and answered meanwhile.
    let (done_tx, done_rx) = mpsc::channel();
    let appender = {
        let wal = Arc::clone(&wal);
        std::thread::spawn(move || {
            let appended = wal
                .submit_with_durability(vec![new_record(6)], Durability::NoSync)
                .unwrap()
                .wait();
            done_tx.send(appended).unwrap();
        })
    };
    let appended = done_rx.recv_timeout(HANG);
    release_tx.send(()).unwrap();
    let appended = appended
        .expect("an append waited for a sync queued before it")
        .unwrap();
    assert_eq!(appended.first, Lsn(6));
    assert!(!appended.durable);
    appender.join().unwrap();
    // The sync covered what was appended before it, and no more.
    assert_eq!(syncer.join().unwrap().unwrap(), 5);
    assert_eq!(wal.durable_lsn(), 5);
    assert_eq!(wal.sync().unwrap(), 6);
    assert_eq!(wal.durable_lsn(), 6);
    // A sync with nothing new to sync returns at once.
    assert_eq!(wal.sync().unwrap(), 6);
    assert_eq!(wal.read(Lsn(1)..Lsn(7)).unwrap().len(), 6);
}

#[test]
fn a_failed_sync_poisons_the_log() {
    let sim = SimFs::new(2);
    let fs: FsRef = Arc::new(sim.clone());
    let (wal, _) = Wal::open(fs, Path::new("/wal"), options()).unwrap();
    wal.append(RecordKind::Normal, vec![0; 10]).unwrap();
    wal.submit_with_durability(vec![new_record(2)], Durability::NoSync)
        .unwrap()
        .wait()
        .unwrap();
    sim.inject(Fault::new(FaultOp::Sync, FaultError::Eio));
    assert!(wal.sync().is_err());
    assert_eq!(wal.durable_lsn(), 1, "a failed sync made nothing durable");
    assert!(wal.is_poisoned());
    assert!(
        wal.submit_with_durability(vec![new_record(3)], Durability::NoSync)
            .is_err(),
        "the log took an append after a failed sync"
    );
    assert!(wal.sync().is_err(), "a failed sync is never retried");
}
