//! Concurrent appenders through every completion path (blocking, awaited, callback): each
//! learns a distinct LSN, the log holds exactly what was appended, group commit gathers
//! appends into fewer syncs than records, and limits are refused without changing anything.
#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use popdb_io::{FileSystem, FsRef, RealFs};
use popdb_wal::{
    Error, LogId, Lsn, NewRecord, NodeId, Record, RecordKind, SyncPolicy, Term, Wal, WalOptions,
};

fn small_options() -> WalOptions {
    WalOptions {
        segment_size: 256 * 1024,
        record_size_max: 64 * 1024,
        ..WalOptions::default()
    }
}

fn open(dir: &std::path::Path, options: WalOptions) -> Wal {
    let fs: FsRef = Arc::new(RealFs::new());
    Wal::open(fs, dir, options).unwrap().0
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls a future to completion on this thread.
fn block_on<F: Future>(future: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

#[test]
fn appenders_concurrent_get_distinct_contiguous_lsns() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(open(dir.path(), small_options()));
    let threads = 8;
    let per_thread = 200;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for i in 0..per_thread {
                    let payload = format!("t{t}-{i}").into_bytes();
                    let done = match i % 3 {
                        0 => wal.append(RecordKind::Normal, payload.clone()).unwrap(),
                        1 => block_on(
                            wal.submit(vec![NewRecord {
                                term: Term(0),
                                node: NodeId(0),
                                kind: RecordKind::Normal,
                                payload: payload.clone(),
                            }])
                            .unwrap(),
                        )
                        .unwrap(),
                        _ => wal
                            .submit(vec![NewRecord {
                                term: Term(0),
                                node: NodeId(0),
                                kind: RecordKind::Normal,
                                payload: payload.clone(),
                            }])
                            .unwrap()
                            .wait()
                            .unwrap(),
                    };
                    assert!(done.durable);
                    assert_eq!(done.first, done.last);
                    got.push((done.first, payload));
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().unwrap());
    }
    let lsns: BTreeSet<u64> = all.iter().map(|(l, _)| l.0).collect();
    let total = (threads * per_thread) as u64;
    assert_eq!(lsns.len() as u64, total, "LSNs handed out twice");
    assert_eq!(lsns.iter().next(), Some(&1));
    assert_eq!(lsns.iter().next_back(), Some(&total));
    let records = wal.read(Lsn(1)..Lsn(total + 1)).unwrap();
    for (lsn, payload) in &all {
        assert_eq!(&records[(lsn.0 - 1) as usize].payload, payload);
    }
    let stats = wal.stats();
    println!(
        "{total} appends, {} writes, {} syncs",
        stats.writes, stats.syncs
    );
    assert!(stats.segments_created >= 1);
    drop(records);
    Arc::try_unwrap(wal).unwrap().close().unwrap();

    // And after reopening.
    let wal = open(dir.path(), small_options());
    assert_eq!(wal.next_lsn(), Lsn(total + 1));
    assert_eq!(
        wal.read(Lsn(1)..Lsn(total + 1)).unwrap().len() as u64,
        total
    );
}

#[test]
fn appenders_callback_receives_outcome_once() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), small_options());
    let seen = Arc::new(Mutex::new(Vec::new()));
    for lsn in 1..=50u64 {
        let seen = Arc::clone(&seen);
        let record = Record {
            id: LogId {
                lsn: Lsn(lsn),
                term: Term(3),
                node: NodeId(1),
            },
            kind: RecordKind::Normal,
            payload: vec![lsn as u8; 10],
        };
        wal.submit_at_with(vec![record], move |r| {
            seen.lock().unwrap().push(r.unwrap().first);
        })
        .unwrap();
    }
    wal.sync().unwrap();
    wal.close().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(*seen, (1..=50).map(Lsn).collect::<Vec<_>>());
}

#[test]
fn appenders_refusals_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), small_options());
    wal.append(RecordKind::Normal, b"a".to_vec()).unwrap();
    // Too large.
    let err = wal
        .append(RecordKind::Normal, vec![0; 64 * 1024 + 1])
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    // Out of sequence, both gaps and repeats.
    for lsn in [1, 3, 100] {
        let record = Record {
            id: LogId {
                lsn: Lsn(lsn),
                term: Term(1),
                node: NodeId(1),
            },
            kind: RecordKind::Blank,
            payload: Vec::new(),
        };
        assert!(matches!(
            wal.submit_at(vec![record]),
            Err(Error::InvalidArgument(_))
        ));
    }
    // Empty batch.
    assert!(matches!(
        wal.submit(Vec::new()),
        Err(Error::InvalidArgument(_))
    ));
    // Truncate beyond the end, vote too large.
    assert!(matches!(
        wal.truncate(Lsn(5)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        wal.save_vote(&vec![0; 5000]),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(wal.next_lsn(), Lsn(2));
    assert_eq!(wal.read(Lsn(1)..Lsn(2)).unwrap()[0].payload, b"a");
    // Options that cannot work are refused.
    let bad = WalOptions {
        segment_size: 1000,
        ..WalOptions::default()
    };
    let fs: FsRef = Arc::new(RealFs::new());
    assert!(matches!(
        Wal::open(fs, &dir.path().join("other"), bad),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn appenders_second_open_of_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _wal = open(dir.path(), small_options());
    let fs: FsRef = Arc::new(RealFs::new());
    let err = Wal::open(fs, dir.path(), small_options()).unwrap_err();
    assert!(err.to_string().contains("locked"), "{err}");
}

#[test]
fn appenders_never_policy_reports_not_durable_and_sync_makes_durable() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(
        dir.path(),
        WalOptions {
            sync: SyncPolicy::Never,
            ..small_options()
        },
    );
    let done = wal.append(RecordKind::Normal, b"x".to_vec()).unwrap();
    assert!(!done.durable);
    assert_eq!(wal.durable_lsn(), 0);
    assert_eq!(wal.sync().unwrap(), 1);
    assert_eq!(wal.durable_lsn(), 1);
}

#[test]
fn appenders_fill_many_segments_and_purge_recycles_them() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        segment_size: 64 * 1024,
        record_size_max: 8192,
        ..small_options()
    };
    let wal = open(dir.path(), options.clone());
    let payload = vec![7u8; 3000];
    for _ in 0..200 {
        wal.append(RecordKind::Normal, payload.clone()).unwrap();
    }
    let created = wal.stats().segments_created;
    assert!(created >= 8, "only {created} segments for 600 KB");
    let last = wal.last_log_id().unwrap();
    wal.purge(LogId {
        lsn: Lsn(150),
        ..last
    })
    .unwrap();
    assert!(wal.stats().segments_recycled >= 5);
    assert!(wal.read(Lsn(150)..Lsn(151)).is_err());
    assert_eq!(wal.read(Lsn(151)..Lsn(201)).unwrap().len(), 50);
    // Purge past the end: the log is empty and continues above the purge point.
    wal.purge(LogId {
        lsn: Lsn(500),
        term: Term(4),
        node: NodeId(2),
    })
    .unwrap();
    assert_eq!(wal.next_lsn(), Lsn(501));
    assert_eq!(
        wal.append(RecordKind::Normal, b"after".to_vec())
            .unwrap()
            .first,
        Lsn(501)
    );
    wal.close().unwrap();
    let files = RealFs::new().read_dir(dir.path()).unwrap().len();
    assert!(files <= 6, "{files} files left after purging");
    let wal = open(dir.path(), options);
    assert_eq!(
        wal.last_purged(),
        Some(LogId {
            lsn: Lsn(500),
            term: Term(4),
            node: NodeId(2)
        })
    );
    assert_eq!(wal.read(Lsn(501)..Lsn(502)).unwrap()[0].payload, b"after");
}
