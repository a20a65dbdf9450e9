//! `Lead::into_owned`: the lead of an append that found the log idle, kept past the call
//! that queued it. Until it runs nothing is written (later appends queue behind it);
//! `run` writes the group on the caller's thread; `run_if_at_most` leaves a group larger
//! than its bound to the writer thread; dropping the lead writes the group too.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use popdb_io::{FsRef, SimFs};
use popdb_wal::{Durability, NewRecord, NodeId, OwnedLead, RecordKind, Term, Wal, WalOptions};

/// Each completed append: its LSN and the thread its callback ran on.
type Seen = Arc<(Mutex<Vec<(u64, ThreadId)>>, Condvar)>;

fn open() -> Wal {
    let fs: FsRef = Arc::new(SimFs::new(3));
    Wal::open(fs, Path::new("/wal"), WalOptions::default())
        .unwrap()
        .0
}

fn new_record(i: u8) -> NewRecord {
    NewRecord {
        term: Term(0),
        node: NodeId(0),
        kind: RecordKind::Normal,
        payload: vec![i; 40],
    }
}

fn callback(
    seen: &Seen,
) -> impl FnOnce(popdb_wal::Result<popdb_wal::Appended>, &[popdb_wal::Record]) + Send + 'static {
    let seen = Arc::clone(seen);
    move |result, records| {
        result.unwrap();
        let lsn = records.first().unwrap().id.lsn.0;
        seen.0
            .lock()
            .unwrap()
            .push((lsn, std::thread::current().id()));
        seen.1.notify_all();
    }
}

/// The owned lead of a first append, with `behind` more appends queued behind it.
fn lead_with(wal: &Wal, seen: &Seen, behind: u8) -> OwnedLead {
    let lead = wal
        .append_one_reading(new_record(0), Durability::NoSync, callback(seen))
        .unwrap()
        .into_owned()
        .expect("an idle log hands the first appender the lead");
    for i in 1..=behind {
        wal.submit_one_reading(new_record(i), Durability::NoSync, callback(seen))
            .unwrap();
    }
    lead
}

fn wait_for(seen: &Seen, count: usize) -> Vec<(u64, ThreadId)> {
    let mut done = seen.0.lock().unwrap();
    while done.len() < count {
        let (next, timeout) = seen.1.wait_timeout(done, Duration::from_secs(10)).unwrap();
        assert!(
            !timeout.timed_out(),
            "only {} of {count} appends completed",
            next.len()
        );
        done = next;
    }
    done.clone()
}

#[test]
fn nothing_is_written_until_the_owned_lead_runs_on_its_thread() {
    let wal = open();
    let seen: Seen = Arc::default();
    let lead = lead_with(&wal, &seen, 2);
    let (done, _) = seen
        .1
        .wait_timeout_while(seen.0.lock().unwrap(), Duration::from_millis(50), |d| {
            d.is_empty()
        })
        .unwrap();
    assert!(done.is_empty(), "written before the lead ran: {done:?}");
    drop(done);
    assert_eq!(wal.next_lsn().0, 4, "LSNs are given as appends queue");
    let runner = std::thread::spawn(move || {
        lead.run();
        std::thread::current().id()
    })
    .join()
    .unwrap();
    let done = wait_for(&seen, 3);
    assert_eq!(done.iter().map(|d| d.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(
        done.iter().all(|d| d.1 == runner),
        "a queued group is the runner's: {done:?}"
    );
}

#[test]
fn a_group_over_the_bound_goes_to_the_writer_thread() {
    let wal = open();
    let seen: Seen = Arc::default();
    lead_with(&wal, &seen, 3).run_if_at_most(3);
    let here = std::thread::current().id();
    let done = wait_for(&seen, 4);
    assert_eq!(done.iter().map(|d| d.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert!(done.iter().all(|d| d.1 != here), "written here: {done:?}");

    // At the bound, the caller writes it.
    let seen: Seen = Arc::default();
    lead_with(&wal, &seen, 3).run_if_at_most(4);
    let done = wait_for(&seen, 4);
    assert!(
        done.iter().all(|d| d.1 == here),
        "not written here: {done:?}"
    );
}

#[test]
fn the_bound_counts_records_not_appends() {
    let wal = open();
    let here = std::thread::current().id();
    // Two appends of three records each, one callback per append: 6 records, over a bound
    // of 5 (the writer thread writes them) and at a bound of 6 (the caller does).
    for (bound, first_lsns, on_this_thread) in [(5, [1, 4], false), (6, [7, 10], true)] {
        let seen: Seen = Arc::default();
        let lead = wal
            .append_reading(
                (0..3).map(new_record).collect(),
                Durability::NoSync,
                callback(&seen),
            )
            .unwrap()
            .into_owned()
            .expect("an idle log hands the first appender the lead");
        wal.submit_reading(
            (3..6).map(new_record).collect(),
            Durability::NoSync,
            callback(&seen),
        )
        .unwrap();
        lead.run_if_at_most(bound);
        let done = wait_for(&seen, 2);
        assert_eq!(done.iter().map(|d| d.0).collect::<Vec<_>>(), first_lsns);
        assert!(
            done.iter().all(|d| (d.1 == here) == on_this_thread),
            "bound {bound}: {done:?}"
        );
    }
}

#[test]
fn a_dropped_owned_lead_writes_its_group() {
    let wal = open();
    let seen: Seen = Arc::default();
    drop(lead_with(&wal, &seen, 1));
    assert_eq!(wait_for(&seen, 2).len(), 2);
    // The log is idle again: the next appender leads.
    let lead = wal
        .append_one_reading(new_record(9), Durability::NoSync, callback(&seen))
        .unwrap()
        .into_owned();
    assert!(lead.is_some());
    drop(lead);
    assert_eq!(wait_for(&seen, 3).last().unwrap().0, 3);
}
