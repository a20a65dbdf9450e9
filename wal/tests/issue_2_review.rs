//! Regressions for issue 2 found by a second read of the log (each failed before its fix).
//!
//! - truncate refused for lack of space: the in-memory log stayed truncated, a retry
//!   returned Ok at once, and reopening brought the records back. Root cause: the writer
//!   forgot the records and the caller's view was cut before the superseding segment
//!   existed. Fix: the index forgets them only once that segment is durable, a refusal
//!   resets the view from the files, and a truncate only short-cuts when none is queued.
//! - Interval(d) never synced an idle log after a write led by an appender: nobody woke the
//!   background timer. Fix: a leader that leaves unsynced bytes wakes it.
//! - durable_lsn() kept its value across a truncate and over-claimed. Fix: lowered to the
//!   truncation point.
//! - STATE with purged_lsn = u64::MAX (valid checksum) overflowed at open. Fix: refused.
//! - Callbacks ran on the leader holding the writer: re-entry deadlocked, a panic left the
//!   log led forever. Fix: callbacks run after the writer is released, panics are caught
//!   (and poison the log: see writer_panic.rs).
//! - A record whose append failed stayed readable after poisoning. Fix: the view is reset.
//! - A stale unit of an older generation right at the end was reported as a torn tail.
//!   Fix: the torn unit's header must be of the current generations.
#![cfg(feature = "internals")]
#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use popdb_io::{Clock, CrashMode, Fault, FaultError, FaultOp, FsRef, ManualClock, SimFs};
use popdb_wal::internals::LogState;
use popdb_wal::{Error, LogId, Lsn, NodeId, Record, RecordKind, SyncPolicy, Term, Wal, WalOptions};

const DIR: &str = "/data/wal";

fn options() -> WalOptions {
    WalOptions {
        segment_size: 64 * 1024,
        record_size_max: 4096,
        spare_segments: 0,
        ..WalOptions::default()
    }
}

/// Polls `condition` for up to 5 s: generous, so a busy machine cannot fail the test.
fn eventually(condition: impl Fn() -> bool) -> bool {
    for _ in 0..500 {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn open(fs: &FsRef, o: WalOptions) -> Wal {
    Wal::open(Arc::clone(fs), Path::new(DIR), o).unwrap().0
}

/// A truncate refused for lack of space leaves the in-memory log truncated; a retry then
/// returns Ok at once, yet the truncation was never recorded: reopening brings the
/// records back.
#[test]
fn issue_2_truncate_refused_for_space_then_retried_stays_truncated() {
    let sim = SimFs::new(1);
    let fs: FsRef = Arc::new(sim.clone());
    let wal = open(&fs, options());
    for i in 1..=5u8 {
        wal.append(RecordKind::Normal, vec![i; 10]).unwrap();
    }
    sim.inject(Fault::new(FaultOp::Allocate, FaultError::Enospc));
    let err = wal.truncate(Lsn(3)).unwrap_err();
    assert!(matches!(err, Error::NoSpace { .. }), "{err}");
    assert!(!wal.is_poisoned());
    // The caller retries: acknowledged as done (durable "when this returns").
    wal.truncate(Lsn(3)).unwrap();
    assert_eq!(wal.next_lsn(), Lsn(3));
    wal.close().unwrap();
    let wal = open(&fs, options());
    assert_eq!(
        wal.next_lsn(),
        Lsn(3),
        "acknowledged truncate(3) undone: records 3..5 reappeared"
    );
}

/// Under Interval(d), a write led by a blocking appender never arms the background timer:
/// the tail stays unsynced indefinitely while the log is idle.
#[test]
fn issue_2_interval_sync_fires_after_appender_led_write() {
    let sim = SimFs::new(2);
    let fs: FsRef = Arc::new(sim.clone());
    // Time is the test's: the interval elapses when the test says so, not by sleeping.
    let clock = Arc::new(ManualClock::new());
    let o = WalOptions {
        sync: SyncPolicy::Interval(Duration::from_millis(20)),
        clock: Arc::clone(&clock) as Arc<dyn Clock>,
        ..options()
    };
    let wal = open(&fs, o);
    wal.append(RecordKind::Normal, vec![1; 10]).unwrap();
    clock.advance(Duration::from_millis(50));
    wal.append(RecordKind::Normal, vec![2; 10]).unwrap();
    let a = wal.append(RecordKind::Normal, vec![3; 10]).unwrap();
    assert!(!a.durable);
    clock.advance(Duration::from_millis(50));
    assert!(
        eventually(|| wal.durable_lsn() == 3),
        "once the interval elapsed, LSN 3 did not become durable within 5 s"
    );
}

/// `durable_lsn()` is never lowered by a truncate, so it claims records durable that are
/// not; a power loss then loses them.
#[test]
fn issue_2_durable_lsn_lowered_by_truncate() {
    let sim = SimFs::new(3);
    let fs: FsRef = Arc::new(sim.clone());
    let o = WalOptions {
        sync: SyncPolicy::Never,
        ..options()
    };
    let wal = open(&fs, o.clone());
    for i in 1..=10u8 {
        wal.append(RecordKind::Normal, vec![i; 10]).unwrap();
    }
    assert_eq!(wal.sync().unwrap(), 10);
    wal.truncate(Lsn(5)).unwrap();
    let a = wal
        .submit_at(vec![Record {
            id: LogId {
                lsn: Lsn(5),
                term: Term(2),
                node: NodeId(1),
            },
            kind: RecordKind::Normal,
            payload: vec![55; 10],
        }])
        .unwrap()
        .wait()
        .unwrap();
    assert!(!a.durable);
    let claimed = wal.durable_lsn();
    sim.crash_with(CrashMode::LoseAllUnsynced);
    drop(wal);
    let wal = open(&fs, o);
    let have = wal.next_lsn().0 - 1;
    assert!(
        claimed <= have,
        "durable_lsn() claimed {claimed} but after power loss the log ends at {have}"
    );
}

/// A STATE file with a valid crc and purged_lsn = u64::MAX panics the open (overflow).
#[test]
fn issue_2_state_purged_max_refused_not_panic() {
    let sim = SimFs::new(4);
    let fs: FsRef = Arc::new(sim.clone());
    drop(open(&fs, options()));
    let state = LogState {
        generation: 1,
        purged: Some(LogId {
            lsn: Lsn(u64::MAX),
            term: Term(0),
            node: NodeId(0),
        }),
        vote: None,
    };
    let f = fs
        .open(
            &Path::new(DIR).join("STATE"),
            popdb_io::OpenOptions {
                truncate: true,
                ..popdb_io::OpenOptions::create()
            },
        )
        .unwrap();
    f.write_all_at(&state.encode(), 0).unwrap();
    f.sync_data().unwrap();
    drop(f);
    let fs2 = Arc::clone(&fs);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        Wal::open(fs2, Path::new(DIR), options()).map(|_| ())
    }));
    let r = r.expect("Wal::open panicked on a STATE with purged_lsn = u64::MAX");
    assert!(matches!(r, Err(Error::Corruption(_))), "{r:?}");
}

/// A callback that calls back into the log (here: sync) deadlocks the writer: the callback
/// runs on the leader while it holds the writer.
#[test]
fn issue_2_callback_may_call_the_log() {
    let sim = SimFs::new(5);
    let fs: FsRef = Arc::new(sim.clone());
    let wal = Arc::new(open(&fs, options()));
    let (tx, rx) = std::sync::mpsc::channel();
    let w = Arc::clone(&wal);
    wal.submit_at_with(
        vec![Record {
            id: LogId {
                lsn: Lsn(1),
                term: Term(1),
                node: NodeId(1),
            },
            kind: RecordKind::Normal,
            payload: vec![1],
        }],
        move |r| {
            r.unwrap();
            let _ = tx.send(w.sync().map(|_| ()));
        },
    )
    .unwrap();
    let got = rx.recv_timeout(Duration::from_secs(10));
    assert!(
        got.is_ok(),
        "callback calling Wal::sync never returned (deadlock)"
    );
    got.unwrap().unwrap();
}

/// After a failed fsync poisons the log, the record whose append failed is still readable.
#[test]
fn issue_2_failed_append_unreadable_after_poison() {
    let sim = SimFs::new(6);
    let fs: FsRef = Arc::new(sim.clone());
    let wal = open(&fs, options());
    wal.append(RecordKind::Normal, vec![1; 10]).unwrap();
    sim.inject(Fault::new(FaultOp::Sync, FaultError::Eio));
    assert!(wal.append(RecordKind::Normal, vec![2; 10]).is_err());
    let r = wal.read(Lsn(2)..Lsn(3));
    assert!(
        r.is_err(),
        "read returned the failed record: {:?}",
        r.map(|v| v.len())
    );
}

/// A stale unit of an older generation that starts exactly where the newest valid unit
/// ends is reported as a torn tail with "lost" LSNs, on a cleanly closed log.
#[test]
fn issue_2_stale_unit_at_end_is_clean() {
    use popdb_wal::internals::*;
    let header = SegmentHeader {
        segment_id: 1,
        generation: 1,
        first_lsn: 1,
        segment_size: 65536,
    };
    let seed = header.seed();
    let mut img = vec![0u8; 65536];
    img[..64].copy_from_slice(&header.encode());
    let unit = |img: &mut Vec<u8>,
                at: usize,
                first: u64,
                n: u32,
                generation: u64,
                durable: u64|
     -> usize {
        let mut body = Vec::new();
        for i in 0..n as u64 {
            RecordHeader::encode_into(&mut body, &seed, first + i, 1, 1, 1, b"abcd");
        }
        let u = UnitHeader {
            body_len: body.len() as u32,
            record_count: n,
            first_lsn: first,
            generation,
            durable_upto: durable,
        };
        img[at..at + 40].copy_from_slice(&u.encode(&seed));
        img[at + 40..at + 40 + body.len()].copy_from_slice(&body);
        at + 40 + body.len()
    };
    // Generation 1: U1 (LSN 1), U2 (LSN 2..3, will be torn), U3 (LSN 4).
    let x1 = unit(&mut img, 4096, 1, 1, 1, 4096);
    let x2 = unit(&mut img, x1, 2, 2, 1, x1 as u64);
    let _ = unit(&mut img, x2, 4, 1, 1, x1 as u64);
    // Generation 2 truncated at x1 and wrote V1 (LSN 2..3) of the same size over U2.
    let end = unit(&mut img, x1, 2, 2, 2, x1 as u64);
    assert_eq!(end, x2);
    let scan = scan_segment(
        "s",
        &img,
        ScanLimits {
            live_end: None,
            generation_max: 2,
        },
    )
    .unwrap();
    assert_eq!(scan.records.len(), 3);
    assert_eq!(
        scan.end,
        ScanEnd::Clean,
        "clean log reported as {:?}",
        scan.end
    );
}

/// A panicking callback kills the leader with `leading` still set: every later append hangs.
#[test]
fn issue_2_panicking_callback_does_not_stop_the_log() {
    let sim = SimFs::new(8);
    let fs: FsRef = Arc::new(sim.clone());
    let wal = Arc::new(open(&fs, options()));
    wal.submit_at_with(
        vec![Record {
            id: LogId {
                lsn: Lsn(1),
                term: Term(1),
                node: NodeId(1),
            },
            kind: RecordKind::Normal,
            payload: vec![1],
        }],
        |_| panic!("callback bug"),
    )
    .unwrap();
    assert!(
        eventually(|| wal.stats().callback_panics == 1),
        "the callback never ran"
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let w = Arc::clone(&wal);
    std::thread::spawn(move || {
        let _ = tx.send(
            w.submit(vec![popdb_wal::NewRecord {
                term: Term(0),
                node: NodeId(0),
                kind: RecordKind::Normal,
                payload: vec![2],
            }])
            .and_then(|t| t.wait())
            .map(|_| ()),
        );
    });
    let got = rx.recv_timeout(Duration::from_secs(10));
    let Ok(got) = got else {
        panic!("append after a panicking callback never completes");
    };
    // The panic poisoned the log (it may have left its caller's state half done): the
    // append is refused, naming the panic, instead of hanging.
    let Err(Error::Poisoned { cause }) = got else {
        panic!("append after a panicking callback: {got:?}");
    };
    assert!(matches!(&*cause, Error::Panicked { .. }), "{cause}");
    assert_eq!(wal.stats().callback_panics, 1);
}

#[test]
fn issue_2_interval_sync_fires_after_background_led_write() {
    let sim = SimFs::new(2);
    let fs: FsRef = Arc::new(sim.clone());
    // Time is the test's: the interval elapses when the test says so, not by sleeping.
    let clock = Arc::new(ManualClock::new());
    let o = WalOptions {
        sync: SyncPolicy::Interval(Duration::from_millis(20)),
        clock: Arc::clone(&clock) as Arc<dyn Clock>,
        ..options()
    };
    let wal = open(&fs, o);
    let nr = |p: u8| {
        vec![popdb_wal::NewRecord {
            term: Term(0),
            node: NodeId(0),
            kind: RecordKind::Normal,
            payload: vec![p; 10],
        }]
    };
    wal.submit(nr(1)).unwrap().wait().unwrap();
    clock.advance(Duration::from_millis(50));
    wal.submit(nr(2)).unwrap().wait().unwrap();
    wal.submit(nr(3)).unwrap().wait().unwrap();
    clock.advance(Duration::from_millis(50));
    assert!(eventually(|| wal.durable_lsn() == 3));
}
