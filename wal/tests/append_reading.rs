//! `Wal::append_at_reading` and `Wal::submit_at_reading` (and their one-record forms at the
//! next LSN, `Wal::append_one_reading` and `Wal::submit_one_reading`): the callback gets the
//! records of its append (the log's own copy) with the outcome, once written, in LSN order,
//! and with the failure if the log fails.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use popdb_io::{Fault, FaultError, FaultOp, FsRef, SimFs};
use popdb_wal::{
    Durability, Error, LogId, Lsn, NewRecord, NodeId, Record, RecordKind, Term, Wal, WalOptions,
};

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

#[test]
fn one_record_appends_take_the_next_lsns_in_queue_order() {
    let fs: FsRef = Arc::new(SimFs::new(3));
    let options = WalOptions {
        segment_size: 64 * 1024,
        record_size_max: 4096,
        ..WalOptions::default()
    };
    let (wal, _) = Wal::open(fs, Path::new("/wal"), options).unwrap();
    let seen: Seen = Arc::default();
    let mut expected = Vec::new();
    let mut lsn = 1;
    // Mixed with appends at chosen LSNs, which must follow the ones the log chose.
    for i in 0..300_u64 {
        if i % 5 == 4 {
            let payload = record(lsn, 50).payload;
            expected.push((lsn, vec![payload], true));
            append(&wal, vec![record(lsn, 50)], i % 2 == 0, &seen);
            lsn += 1;
            continue;
        }
        let payload = record(lsn, 100 + (lsn as usize * 37) % 900).payload;
        expected.push((lsn, vec![payload.clone()], true));
        let new = NewRecord {
            term: Term(0),
            node: NodeId(0),
            kind: RecordKind::Normal,
            payload,
        };
        let log = Arc::clone(&seen);
        let callback = move |result: popdb_wal::Result<popdb_wal::Appended>, logged: &[Record]| {
            let appended = result.as_ref().unwrap();
            assert_eq!(
                (appended.first, appended.last),
                (logged[0].id.lsn, logged[0].id.lsn)
            );
            let payloads = logged.iter().map(|r| r.payload.clone()).collect();
            log.0
                .lock()
                .unwrap()
                .push((logged[0].id.lsn.0, payloads, result.is_ok()));
            log.1.notify_all();
        };
        if i % 3 == 0 {
            wal.append_one_reading(new, Durability::NoSync, callback)
                .unwrap()
                .run();
        } else {
            wal.submit_one_reading(new, Durability::Sync, callback)
                .unwrap();
        }
        lsn += 1;
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
    // Read back from the files, each record is where its callback was told it is.
    let read = wal.read(Lsn(1)..Lsn(lsn)).unwrap();
    let payloads: Vec<Vec<u8>> = read.into_iter().map(|r| r.payload).collect();
    let expected: Vec<Vec<u8>> = expected.into_iter().flat_map(|(_, p, _)| p).collect();
    assert_eq!(payloads, expected);
}

#[test]
fn one_record_appends_refused_leave_the_callback_uncalled() {
    let sim = Arc::new(SimFs::new(4));
    let fs: FsRef = Arc::clone(&sim) as FsRef;
    let options = WalOptions {
        record_size_max: 64,
        ..WalOptions::default()
    };
    let (wal, _) = Wal::open(fs, Path::new("/wal"), options).unwrap();
    let new = |len: usize| NewRecord {
        term: Term(0),
        node: NodeId(0),
        kind: RecordKind::Normal,
        payload: vec![7; len],
    };
    let called = Arc::new(Mutex::new(0));
    let count = |called: &Arc<Mutex<u32>>| {
        let called = Arc::clone(called);
        move |_: popdb_wal::Result<popdb_wal::Appended>, _: &[Record]| {
            *called.lock().unwrap() += 1;
        }
    };
    let refused = wal.submit_one_reading(new(65), Durability::NoSync, count(&called));
    assert!(
        matches!(refused, Err(Error::InvalidArgument(_))),
        "{refused:?}"
    );
    sim.inject(
        Fault::new(FaultOp::Write, FaultError::Eio)
            .persistent()
            .under("/wal"),
    );
    let lead = wal.append_one_reading(new(10), Durability::NoSync, count(&called));
    lead.unwrap().run();
    assert_eq!(*called.lock().unwrap(), 1, "the failed append is answered");
    assert!(wal.is_poisoned());
    let refused = wal.append_one_reading(new(10), Durability::NoSync, count(&called));
    assert!(
        matches!(refused, Err(Error::Poisoned { .. })),
        "{:?}",
        refused.map(|_| ())
    );
    assert_eq!(
        *called.lock().unwrap(),
        1,
        "refused appends are not answered"
    );
    assert_eq!(wal.next_lsn(), Lsn(1), "a failed append gives its LSN back");
}
