//! `Wal::append_at_reading` and `Wal::submit_at_reading`: the callback gets the records of
//! its append (the log's own copy) with the outcome, once written, in LSN order, and with
//! the failure if the log fails.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use popdb_io::{Fault, FaultError, FaultOp, FsRef, SimFs};
use popdb_wal::{Durability, Error, LogId, Lsn, NodeId, Record, RecordKind, Term, Wal, WalOptions};

fn record(lsn: u64, len: usize) -> Record {
    Record {
        id: LogId {
            lsn: Lsn(lsn),
            term: Term(0),
            node: NodeId(0),
        },
        kind: RecordKind::Normal,
        payload: (0..len).map(|i| (lsn as usize + i) as u8).collect(),
    }
}

/// What the callbacks logged, and a signal for each entry.
type Seen = Arc<(Mutex<Vec<(u64, Vec<Vec<u8>>, bool)>>, Condvar)>;

/// Appends `records` with a reading callback, led here or queued; the callback logs the
/// first LSN, the payloads it was handed and whether the append succeeded.
fn append(wal: &Wal, records: Vec<Record>, lead: bool, seen: &Seen) {
    let log = Arc::clone(seen);
    let callback = move |result: popdb_wal::Result<popdb_wal::Appended>, logged: &[Record]| {
        let payloads = logged.iter().map(|r| r.payload.clone()).collect();
        let first = logged.first().unwrap().id.lsn.0;
        log.0
            .lock()
            .unwrap()
            .push((first, payloads, result.is_ok()));
        log.1.notify_all();
    };
    if lead {
        wal.append_at_reading(records, Durability::NoSync, callback)
            .unwrap()
            .run();
    } else {
        wal.submit_at_reading(records, Durability::Sync, callback)
            .unwrap();
    }
}

#[test]
fn reading_callbacks_get_their_records_in_lsn_order() {
    let fs: FsRef = Arc::new(SimFs::new(1));
    let options = WalOptions {
        segment_size: 64 * 1024,
        record_size_max: 4096,
        ..WalOptions::default()
    };
    let (wal, _) = Wal::open(fs, Path::new("/wal"), options).unwrap();
    let seen: Seen = Arc::default();
    let mut expected = Vec::new();
    let mut lsn = 1;
    // Across several segments, some appends of two records, led and queued.
    for i in 0..200_u64 {
        let count = 1 + i % 2;
        let records: Vec<Record> = (lsn..lsn + count)
            .map(|l| record(l, 100 + (l as usize * 37) % 900))
            .collect();
        expected.push((
            lsn,
            records.iter().map(|r| r.payload.clone()).collect(),
            true,
        ));
        append(&wal, records, i % 3 != 0, &seen);
        lsn += count;
    }
    wal.sync().unwrap();
    let (log, logged) = &*seen;
    let (log, _) = logged
        .wait_timeout_while(log.lock().unwrap(), Duration::from_secs(10), |l| {
            l.len() < expected.len()
        })
        .unwrap();
    assert_eq!(*log, expected);
    assert!(wal.stats().segments_created > 1);
}

#[test]
fn reading_callbacks_get_their_records_with_a_failure() {
    let sim = Arc::new(SimFs::new(2));
    let fs: FsRef = Arc::clone(&sim) as FsRef;
    let (wal, _) = Wal::open(fs, Path::new("/wal"), WalOptions::default()).unwrap();
    let seen: Seen = Arc::default();
    append(&wal, vec![record(1, 10)], true, &seen);
    sim.inject(
        Fault::new(FaultOp::Write, FaultError::Eio)
            .persistent()
            .under("/wal"),
    );
    append(&wal, vec![record(2, 20), record(3, 30)], true, &seen);
    let seen = seen.0.lock().unwrap();
    assert_eq!(
        *seen,
        vec![
            (1, vec![record(1, 10).payload], true),
            (2, vec![record(2, 20).payload, record(3, 30).payload], false),
        ]
    );
    assert!(wal.is_poisoned());
    let refused = wal.submit_at_reading(vec![record(2, 1)], Durability::NoSync, |_, _| {});
    assert!(
        matches!(refused, Err(Error::Poisoned { .. })),
        "{refused:?}"
    );
}
