//! `Wal::append_at_with_durability`: an appender that finds the log idle writes the group
//! and runs the callbacks itself, on its own thread, before `Lead::run` returns; one that
//! finds another leading only queues, and its callback runs on the leader's thread.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use popdb_io::{FsRef, SimFs};
use popdb_wal::{Durability, LogId, Lsn, NodeId, Record, RecordKind, Term, Wal, WalOptions};

fn record(lsn: u64) -> Record {
    Record {
        id: LogId {
            lsn: Lsn(lsn),
            term: Term(0),
            node: NodeId(0),
        },
        kind: RecordKind::Normal,
        payload: lsn.to_le_bytes().to_vec(),
    }
}

#[test]
fn an_idle_log_is_led_by_the_appender() {
    let fs: FsRef = Arc::new(SimFs::new(1));
    let options = WalOptions {
        segment_size: 64 * 1024,
        record_size_max: 1024,
        ..WalOptions::default()
    };
    let (wal, _) = Wal::open(fs, Path::new("/wal"), options).unwrap();
    let ran: Arc<Mutex<Vec<(u64, ThreadId, bool)>>> = Arc::default();
    for lsn in 1..=20 {
        let log = Arc::clone(&ran);
        let durability = if lsn % 2 == 0 {
            Durability::Sync
        } else {
            Durability::NoSync
        };
        let lead = wal
            .append_at_with_durability(vec![record(lsn)], durability, move |result| {
                let appended = result.unwrap();
                log.lock()
                    .unwrap()
                    .push((lsn, std::thread::current().id(), appended.durable));
            })
            .unwrap();
        lead.run();
        // Led here: the callback has run, on this thread, before `run` returned.
        let ran = ran.lock().unwrap();
        let &(last, thread, durable) = ran.last().unwrap();
        assert_eq!(last, lsn);
        assert_eq!(thread, std::thread::current().id());
        assert_eq!(durable, durability == Durability::Sync, "LSN {lsn}");
    }
    assert_eq!(wal.read(Lsn(1)..Lsn(21)).unwrap().len(), 20);
    assert_eq!(wal.durable_lsn(), 20);
}

#[test]
fn concurrent_appenders_keep_lsn_order() {
    let fs: FsRef = Arc::new(SimFs::new(2));
    let options = WalOptions {
        segment_size: 64 * 1024,
        record_size_max: 1024,
        ..WalOptions::default()
    };
    let (wal, _) = Wal::open(fs, Path::new("/wal"), options).unwrap();
    let wal = Arc::new(wal);
    let order: Arc<Mutex<Vec<u64>>> = Arc::default();
    // LSNs are chosen under this lock, as the Db's sequencer does; leading happens after.
    let sequencer = Arc::new(Mutex::new(()));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (wal, order, sequencer) =
                (Arc::clone(&wal), Arc::clone(&order), Arc::clone(&sequencer));
            std::thread::spawn(move || {
                for _ in 0..100 {
                    let lead = {
                        let _guard = sequencer.lock().unwrap();
                        let lsn = wal.next_lsn().0;
                        let order = Arc::clone(&order);
                        wal.append_at_with_durability(
                            vec![record(lsn)],
                            Durability::Sync,
                            move |result| {
                                result.unwrap();
                                order.lock().unwrap().push(lsn);
                            },
                        )
                        .unwrap()
                    };
                    lead.run();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    wal.sync().unwrap();
    let order = order.lock().unwrap();
    assert_eq!(
        *order,
        (1..=400).collect::<Vec<u64>>(),
        "callbacks in LSN order"
    );
}
