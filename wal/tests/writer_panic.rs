//! A panic on a thread of the log (a bug in a completion callback, such as the Db's apply
//! stage, or anywhere in the writer) must fail loudly: it poisons the log with
//! `Error::Panicked` as the cause, every committer waiting on it gets an error, every later
//! append is refused, and nothing waits forever. Reopening runs recovery as after any
//! poisoning. Each test here hung or succeeded silently before the log caught such panics.
//!
//! The timeouts below only guard against a hang (a regression must fail, not stall the
//! suite); they are generous so a loaded machine cannot fail a correct log.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use popdb_io::{FsRef, SimFs};
use popdb_testkit::{FsOp, HookFs};
use popdb_wal::{
    Durability, Error, LogId, Lsn, NodeId, Record, RecordKind, SyncPolicy, Term, Wal, WalOptions,
};

const DIR: &str = "/data/wal";
/// Longest any waiter may take before the test calls it a hang.
const HANG: Duration = Duration::from_mins(1);

/// Which operation panics, once, on a thread whose name starts with `thread`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    WriteBatch,
    SyncData,
    OpenSpare,
}

#[derive(Debug, Default)]
struct Trap {
    armed: Mutex<Option<(Op, &'static str)>>,
    fired: AtomicU64,
    /// Signalled when the trap fires (counted under `armed`'s lock, so no wake-up is lost).
    sprung: Condvar,
}

impl Trap {
    fn arm(&self, op: Op, thread: &'static str) {
        *self.armed.lock().unwrap() = Some((op, thread));
    }

    fn spring(&self, op: Op) {
        let mut armed = self.armed.lock().unwrap();
        let on_thread = |prefix: &str| {
            std::thread::current()
                .name()
                .is_some_and(|name| name.starts_with(prefix))
        };
        if armed.is_some_and(|(o, thread)| o == op && on_thread(thread)) {
            *armed = None;
            self.fired.fetch_add(1, Ordering::SeqCst);
            drop(armed);
            self.sprung.notify_all();
            panic!("injected panic in {op:?}");
        }
    }

    /// Waits until the trap has fired, at most `timeout`; whether it has.
    fn wait_fired(&self, timeout: Duration) -> bool {
        let armed = self.armed.lock().unwrap();
        let _armed = self
            .sprung
            .wait_timeout_while(armed, timeout, |_| self.fired.load(Ordering::SeqCst) == 0)
            .unwrap();
        self.fired.load(Ordering::SeqCst) > 0
    }
}

fn options() -> WalOptions {
    WalOptions {
        segment_size: 64 * 1024,
        record_size_max: 4096,
        spare_segments: 0,
        ..WalOptions::default()
    }
}

fn open(fs: FsRef, options: WalOptions) -> Wal {
    Wal::open(fs, Path::new(DIR), options).unwrap().0
}

/// A SimFs whose [`Trap`] panics in one chosen operation: a bug below the log's writer.
fn panic_fs(sim: &SimFs) -> (FsRef, Arc<Trap>) {
    let trap = Arc::new(Trap::default());
    let sprung = Arc::clone(&trap);
    let fs = HookFs::new(Arc::new(sim.clone()), move |path, op| match op {
        FsOp::Open => {
            let name = path.file_name().unwrap().to_string_lossy();
            if name.starts_with("spare-") && name.ends_with(".tmp") {
                sprung.spring(Op::OpenSpare);
            }
        }
        FsOp::WriteBatch => sprung.spring(Op::WriteBatch),
        FsOp::SyncData => sprung.spring(Op::SyncData),
        FsOp::WriteAt | FsOp::SyncAll => {}
    });
    (Arc::new(fs), trap)
}

/// Whether `error` is the log refusing because `what` panicked.
fn poisoned_by_panic(error: &Error, what: &str) -> bool {
    match error {
        Error::Poisoned { cause } => {
            matches!(&**cause, Error::Panicked { what: w, .. } if *w == what)
        }
        _ => false,
    }
}

fn payload(lsn: u64) -> Vec<u8> {
    format!("record {lsn}").into_bytes()
}

/// Every record at `lsns` reads back with its payload after reopening the log on `sim`.
fn reopen_and_check(sim: &SimFs, lsns: &[u64]) {
    let wal = open(Arc::new(sim.clone()), options());
    for &lsn in lsns {
        let read = wal.read(Lsn(lsn)..Lsn(lsn + 1)).unwrap();
        assert_eq!(
            read[0].payload,
            payload(lsn),
            "record {lsn} after reopening"
        );
    }
    // The reopened log takes appends again.
    wal.append(RecordKind::Normal, b"after".to_vec()).unwrap();
    wal.close().unwrap();
}

/// How one commit of [`commit_like_the_db`] ended.
#[derive(Debug)]
enum Outcome {
    Applied(u64),
    /// The log refused it or its callback was told the log failed.
    Failed(u64, Error),
    /// Its callback panicked (its answer was dropped unsent).
    CallbackPanicked(u64),
}

/// One commit the way the Db makes it: pick the next LSN under a sequencer, queue the
/// record with a callback that "applies" it, lead if the log is idle, wait for the answer.
/// The callback panics at `panic_at`, as a buggy apply stage would.
fn commit_like_the_db(wal: &Wal, sequencer: &Mutex<()>, panic_at: u64) -> Outcome {
    let (tx, rx) = mpsc::channel();
    let (lsn, lead) = {
        let _order = sequencer.lock().unwrap();
        let lsn = wal.next_lsn().0;
        let record = Record {
            id: LogId {
                lsn: Lsn(lsn),
                term: Term(0),
                node: NodeId(0),
            },
            kind: RecordKind::Normal,
            payload: payload(lsn),
        };
        let queued = wal.append_at_reading(
            vec![record],
            Durability::Policy,
            move |result, records: &[Record]| {
                assert!(lsn != panic_at, "apply bug at record {lsn}");
                let result = result.map(|a| {
                    assert_eq!(records.len(), 1);
                    a.first.0
                });
                let _ = tx.send(result);
            },
        );
        match queued {
            Ok(lead) => (lsn, lead),
            Err(error) => return Outcome::Failed(lsn, error),
        }
    };
    lead.run();
    match rx.recv_timeout(HANG) {
        Ok(Ok(applied)) => {
            assert_eq!(applied, lsn);
            Outcome::Applied(lsn)
        }
        Ok(Err(error)) => Outcome::Failed(lsn, error),
        Err(RecvTimeoutError::Disconnected) => Outcome::CallbackPanicked(lsn),
        Err(RecvTimeoutError::Timeout) => panic!("commit {lsn} hung"),
    }
}

/// Before the fix the panic was caught and counted and the log carried on: every later
/// callback ran as if the record before it had been applied.
#[test]
fn a_panicking_apply_callback_poisons_the_log_and_fails_every_later_commit() {
    const PANIC_AT: u64 = 40;
    const THREADS: usize = 6;
    const COMMITS_MAX: usize = 40;
    let sim = SimFs::new(11);
    let wal = Arc::new(open(Arc::new(sim.clone()), options()));
    let sequencer = Arc::new(Mutex::new(()));
    let (done_tx, done_rx) = mpsc::channel();
    let mut threads = Vec::new();
    for _ in 0..THREADS {
        let (wal, sequencer, done_tx) = (Arc::clone(&wal), Arc::clone(&sequencer), done_tx.clone());
        threads.push(std::thread::spawn(move || {
            let mut outcomes = Vec::new();
            for _ in 0..COMMITS_MAX {
                let outcome = commit_like_the_db(&wal, &sequencer, PANIC_AT);
                let stop = !matches!(outcome, Outcome::Applied(_));
                outcomes.push(outcome);
                if stop {
                    break;
                }
            }
            done_tx.send(outcomes).unwrap();
        }));
    }
    let mut applied = Vec::new();
    let mut panicked = Vec::new();
    let mut failed = 0;
    for _ in 0..THREADS {
        let outcomes = done_rx.recv_timeout(HANG).expect("a committer hung");
        let last = outcomes.last().unwrap();
        assert!(
            !matches!(last, Outcome::Applied(_)),
            "a committer went on committing after the panic: {outcomes:?}"
        );
        for outcome in outcomes {
            match outcome {
                Outcome::Applied(lsn) => applied.push(lsn),
                Outcome::CallbackPanicked(lsn) => panicked.push(lsn),
                Outcome::Failed(lsn, error) => {
                    assert!(
                        poisoned_by_panic(&error, "a completion callback"),
                        "commit {lsn} failed with {error}"
                    );
                    assert!(
                        error
                            .to_string()
                            .contains("writer-thread panic poisoned the log"),
                        "{error}"
                    );
                    failed += 1;
                }
            }
        }
    }
    for thread in threads {
        thread.join().unwrap();
    }
    applied.sort_unstable();
    assert_eq!(panicked, [PANIC_AT]);
    assert_eq!(applied, (1..PANIC_AT).collect::<Vec<_>>());
    assert_eq!(
        failed,
        THREADS - 1,
        "every other committer ends with the poisoning"
    );
    assert!(wal.is_poisoned());
    assert_eq!(wal.stats().callback_panics, 1);
    let later = wal
        .append(RecordKind::Normal, b"later".to_vec())
        .unwrap_err();
    assert!(
        poisoned_by_panic(&later, "a completion callback"),
        "{later}"
    );
    let closed = Arc::try_unwrap(wal).unwrap().close().unwrap_err();
    assert!(
        poisoned_by_panic(&closed, "a completion callback"),
        "{closed}"
    );
    // The panicking record was written before its callback ran; recovery keeps it.
    reopen_and_check(&sim, &(1..=PANIC_AT).collect::<Vec<_>>());
}

/// A panic inside the writer's group commit: the requests of the group it unwound through
/// must complete with an error as they drop, and those queued behind it fail too. Before
/// the fix their waiters waited forever (and the leader kept the lead).
fn writer_panic_fails_every_waiter(background_leads: bool) {
    const THREADS: usize = 6;
    const APPENDS_MAX: usize = 200;
    let sim = SimFs::new(if background_leads { 12 } else { 13 });
    let (fs, trap) = panic_fs(&sim);
    let wal = Arc::new(open(fs, options()));
    for lsn in 1..=3 {
        wal.append(RecordKind::Normal, payload(lsn)).unwrap();
    }
    // Caller-led groups run on the committers' threads, the rest on the log's own.
    trap.arm(
        Op::WriteBatch,
        if background_leads {
            "popdb-wal-writer"
        } else {
            "committer"
        },
    );
    let (done_tx, done_rx) = mpsc::channel();
    let mut threads = Vec::new();
    for t in 0..THREADS {
        let (wal, done_tx) = (Arc::clone(&wal), done_tx.clone());
        let thread = std::thread::Builder::new()
            .name(format!("committer-{t}"))
            .spawn(move || {
                let mut acked = Vec::new();
                let mut error = None;
                for _ in 0..APPENDS_MAX {
                    let record = vec![popdb_wal::NewRecord {
                        term: Term(0),
                        node: NodeId(0),
                        kind: RecordKind::Normal,
                        payload: b"pending".to_vec(),
                    }];
                    let result = if background_leads {
                        wal.submit(record).and_then(popdb_wal::Ticket::wait)
                    } else {
                        wal.append_records(record)
                    };
                    match result {
                        Ok(appended) => acked.push(appended.first.0),
                        Err(e) => {
                            error = Some(e);
                            break;
                        }
                    }
                }
                done_tx.send((acked, error)).unwrap();
            })
            .unwrap();
        threads.push(thread);
    }
    let mut acked = Vec::new();
    for _ in 0..THREADS {
        let (mut a, error) = done_rx.recv_timeout(HANG).expect("an appender hung");
        let error = error.expect("the log kept taking appends after its writer panicked");
        assert!(poisoned_by_panic(&error, "the log writer"), "{error}");
        acked.append(&mut a);
    }
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(trap.fired.load(Ordering::SeqCst), 1);
    assert!(wal.is_poisoned());
    let later = wal
        .append(RecordKind::Normal, b"later".to_vec())
        .unwrap_err();
    assert!(poisoned_by_panic(&later, "the log writer"), "{later}");
    assert!(
        later
            .to_string()
            .contains("writer-thread panic poisoned the log")
    );
    let ticket_later = wal.sync().unwrap_err();
    assert!(poisoned_by_panic(&ticket_later, "the log writer"));
    drop(wal);
    // Every acknowledged append survives; the panicking group was never written.
    let log = open(Arc::new(sim.clone()), options());
    for lsn in acked {
        assert_eq!(
            log.read(Lsn(lsn)..Lsn(lsn + 1)).unwrap()[0].payload,
            b"pending"
        );
    }
    drop(log);
    reopen_and_check(&sim, &[1, 2, 3]);
}

#[test]
fn a_writer_panic_in_a_caller_led_group_fails_every_waiter() {
    writer_panic_fails_every_waiter(false);
}

#[test]
fn a_writer_panic_in_a_background_led_group_fails_every_waiter() {
    writer_panic_fails_every_waiter(true);
}

/// The background writer's final sync at close panics: before the fix the writer thread
/// died and `close` panicked joining it; now `close` reports the poisoning.
#[test]
fn a_writer_panic_at_close_is_reported_by_close() {
    let sim = SimFs::new(14);
    let (fs, trap) = panic_fs(&sim);
    let wal = open(
        fs,
        WalOptions {
            sync: SyncPolicy::Never,
            ..options()
        },
    );
    wal.append(RecordKind::Normal, payload(1)).unwrap();
    trap.arm(Op::SyncData, "popdb-wal-writer");
    let error = wal.close().unwrap_err();
    assert!(poisoned_by_panic(&error, "the log writer"), "{error}");
    assert_eq!(trap.fired.load(Ordering::SeqCst), 1);
    reopen_and_check(&sim, &[1]);
}

/// A panic on the spare-segment thread: the writer makes its own spares from then on, and
/// closing the log does not panic joining the dead thread (it did before the fix).
#[test]
fn a_spare_thread_panic_leaves_the_log_working() {
    let sim = SimFs::new(15);
    let (fs, trap) = panic_fs(&sim);
    trap.arm(Op::OpenSpare, "popdb-wal-spares");
    let options = WalOptions {
        spare_segments: 2,
        ..options()
    };
    let wal = open(fs, options.clone());
    // The thread is dead before the log needs a spare (a hang guard, not a timing).
    assert!(trap.wait_fired(HANG), "the spare thread never tried");
    // Enough records to rotate through several segments.
    let big = vec![7u8; 3000];
    for _ in 0..100 {
        wal.append(RecordKind::Normal, big.clone()).unwrap();
    }
    assert_eq!(trap.fired.load(Ordering::SeqCst), 1);
    assert!(wal.stats().segments_created > 2);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wal.close()));
    result.expect("closing the log panicked").unwrap();
    let wal = open(Arc::new(sim.clone()), options);
    assert_eq!(wal.next_lsn(), Lsn(101));
    wal.close().unwrap();
}
