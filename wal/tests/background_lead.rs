//! The log's background writer answers a synced group before it writes the next one: its
//! callbacks (the Db's apply, a server's answers) run once the group is durable, not after
//! the groups that queued during its fdatasync are written and synced too, whatever the
//! group's size.
//!
//! The timeouts only guard against a hang, except `ANSWERED`, which bounds how long a test
//! waits for what must happen before the next sync can begin.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use popdb_io::{FsRef, SimFs};
use popdb_testkit::{FsOp, HookFs};
use popdb_wal::{Durability, NewRecord, NodeId, Record, RecordKind, Term, Wal, WalOptions};

const HANG: Duration = Duration::from_mins(1);

/// How long a test waits for callbacks that must run before the next group's sync, while
/// that sync is held: a log that syncs first never runs them in this time.
const ANSWERED: Duration = Duration::from_secs(10);

const WRITER: &str = "popdb-wal-writer";

fn new_record(byte: u8) -> NewRecord {
    NewRecord {
        term: Term(0),
        node: NodeId(0),
        kind: RecordKind::Normal,
        payload: vec![byte; 100],
    }
}

/// Holds every segment write of the log's writer thread once `armed` (a group's write and
/// its fdatasync are one `write_batch`), reporting each on `entered` and letting it go on
/// one message of `release`.
struct Gate {
    armed: AtomicUsize,
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

/// A log on a simulated file system whose writer-thread group writes `gate` can hold.
fn gated_log() -> (Wal, Arc<Gate>, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let gate = Arc::new(Gate {
        armed: AtomicUsize::new(0),
        entered: Mutex::new(entered_tx),
        release: Mutex::new(release_rx),
    });
    let hooked = Arc::clone(&gate);
    let fs: FsRef = Arc::new(HookFs::new(Arc::new(SimFs::new(7)), move |path, op| {
        let writer = std::thread::current().name() == Some(WRITER);
        let segment = path.extension().is_some_and(|e| e == "wal");
        if op == FsOp::WriteBatch && writer && segment && hooked.armed.load(Ordering::SeqCst) > 0 {
            // A closed channel: the test failed and is ending.
            let _ = hooked.entered.lock().unwrap().send(());
            // A broken channel (the test ended) lets the sync finish.
            let _ = hooked.release.lock().unwrap().recv_timeout(HANG);
        }
    }));
    let options = WalOptions {
        segment_size: 1 << 20,
        record_size_max: 4096,
        ..WalOptions::default()
    };
    let (wal, _) = Wal::open(fs, Path::new("/wal"), options).unwrap();
    // The first segment exists before any sync is held.
    wal.append(RecordKind::Normal, vec![0; 10]).unwrap();
    (wal, gate, entered_rx, release_tx)
}

/// Queues `count` synced appends for the background writer; each callback reports its
/// first LSN on `answered`.
fn submit(wal: &Wal, first_byte: u8, count: u8, answered: &mpsc::Sender<u64>) {
    for byte in first_byte..first_byte + count {
        let answered = answered.clone();
        wal.submit_one_reading(
            new_record(byte),
            Durability::Sync,
            move |result, records: &[Record]| {
                result.unwrap();
                let _ = answered.send(records[0].id.lsn.0);
            },
        )
        .unwrap();
    }
}

#[test]
fn a_small_synced_group_is_answered_before_the_next_group_syncs() {
    let (wal, gate, entered, release) = gated_log();
    let (answered_tx, answered) = mpsc::channel();
    gate.armed.store(1, Ordering::SeqCst);
    // Group A (LSN 2) is syncing, held; group B (LSNs 3-4) queues meanwhile.
    submit(&wal, 2, 1, &answered_tx);
    entered
        .recv_timeout(HANG)
        .expect("group A's sync never began");
    submit(&wal, 3, 2, &answered_tx);
    release.send(()).unwrap();
    // Group B's sync, if it begins, is held: A's answer must come without it.
    assert_eq!(
        answered.recv_timeout(ANSWERED),
        Ok(2),
        "group A was answered only after group B's sync"
    );
    entered
        .recv_timeout(HANG)
        .expect("group B's sync never began");
    release.send(()).unwrap();
    assert_eq!(answered.recv_timeout(HANG), Ok(3));
    assert_eq!(answered.recv_timeout(HANG), Ok(4));
    gate.armed.store(0, Ordering::SeqCst);
    assert_eq!(wal.durable_lsn(), 4);
}

/// Queues `appends` synced appends of `records` records each for the background writer;
/// each callback reports the LSN of every record on `answered`.
fn submit_many(wal: &Wal, appends: u8, records: u8, answered: &mpsc::Sender<u64>) {
    for a in 0..appends {
        let answered = answered.clone();
        let batch = (0..records).map(|r| new_record(a * records + r)).collect();
        wal.submit_reading(
            batch,
            Durability::Sync,
            move |result, records: &[Record]| {
                result.unwrap();
                for record in records {
                    let _ = answered.send(record.id.lsn.0);
                }
            },
        )
        .unwrap();
    }
}

#[test]
fn a_large_synced_group_is_answered_before_the_next_group_syncs() {
    answered_before_the_next_sync(|wal, answered| submit(wal, 10, 40, answered));
}

#[test]
fn an_append_of_many_records_is_answered_before_the_next_group_syncs() {
    answered_before_the_next_sync(|wal, answered| submit_many(wal, 2, 20, answered));
}

/// `queue_large` queues 40 records (LSNs 3-42) while a first group syncs; they sync as one
/// group, and are answered while the next group's sync is held.
fn answered_before_the_next_sync(queue_large: impl Fn(&Wal, &mpsc::Sender<u64>)) {
    let (wal, gate, entered, release) = gated_log();
    let (answered_tx, answered) = mpsc::channel();
    gate.armed.store(1, Ordering::SeqCst);
    // A first synced append, held, so that the next 40 records queue into one group.
    submit(&wal, 1, 1, &answered_tx);
    entered
        .recv_timeout(HANG)
        .expect("the first sync never began");
    queue_large(&wal, &answered_tx);
    release.send(()).unwrap();
    assert_eq!(answered.recv_timeout(ANSWERED), Ok(2));
    // The large group (LSNs 3-42) syncs, held; a last append (LSN 43) queues behind it.
    entered
        .recv_timeout(HANG)
        .expect("the large group's sync never began");
    submit(&wal, 60, 1, &answered_tx);
    release.send(()).unwrap();
    // The last group's sync, if it begins, is held: the large group's answers come first.
    for lsn in 3..=42 {
        assert_eq!(
            answered.recv_timeout(ANSWERED),
            Ok(lsn),
            "the large group was answered only after the next group's sync"
        );
    }
    entered
        .recv_timeout(HANG)
        .expect("the last group's sync never began");
    release.send(()).unwrap();
    assert_eq!(answered.recv_timeout(HANG), Ok(43));
    gate.armed.store(0, Ordering::SeqCst);
}
