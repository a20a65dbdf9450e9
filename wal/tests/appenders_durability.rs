//! Per-request durability (`Durability::Policy`, `Sync`, `NoSync`) on one log, checked
//! against power loss on the simulated file system.
//!
//! - Under `Never`, a `Sync` request survives a crash, and so does every record written
//!   before it (`NoSync` ones included): one sync covers the whole tail.
//! - Under `Always`, a `NoSync` request completes with `durable: false` unless a member of
//!   its group needed the sync; a crash can lose it, never a synced one.
//! - `NoSync`-only traffic does not sync per request; `Sync` requests queued together share
//!   one fdatasync.
//! - Concurrent submitters with mixed durabilities, crashed at a random operation: every
//!   record acknowledged durable survives, acknowledged LSNs run consecutively, callbacks
//!   come in LSN order, and `durable_lsn()` never claims more than the log holds.
//!
//! Groups are made deterministic by holding the background writer inside a callback (see
//! [`hold_writer`]): everything submitted meanwhile is written as one group once released.
//!
//! A failure prints the seed; `WAL_CRASH_SEED=<seed> cargo test -p popdb-wal --test
//! appenders_durability` replays one seed. `WAL_CRASH_SEEDS=<n>` runs more.
#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use popdb_io::{CrashMode, FsRef, SimFs};
use popdb_testkit::Rng;
use popdb_wal::{
    Appended, Durability, Error, LogId, Lsn, NewRecord, NodeId, Record, RecordKind, SyncPolicy,
    Term, Wal, WalOptions,
};

const DIR: &str = "/data/wal";

fn options(sync: SyncPolicy) -> WalOptions {
    WalOptions {
        segment_size: 64 * 1024,
        record_size_max: 4096,
        sync,
        spare_segments: 0,
        ..WalOptions::default()
    }
}

fn open(fs: &FsRef, o: WalOptions) -> Wal {
    Wal::open(Arc::clone(fs), Path::new(DIR), o).unwrap().0
}

fn new_record(payload: &[u8]) -> NewRecord {
    NewRecord {
        term: Term(0),
        node: NodeId(0),
        kind: RecordKind::Normal,
        payload: payload.to_vec(),
    }
}

/// Appends one record with `durability` and waits for the outcome.
fn append(wal: &Wal, payload: &[u8], durability: Durability) -> Appended {
    wal.submit_with_durability(vec![new_record(payload)], durability)
        .unwrap()
        .wait()
        .unwrap()
}

/// Every payload in the log, in LSN order.
fn payloads(wal: &Wal) -> Vec<Vec<u8>> {
    wal.read(Lsn(1)..wal.next_lsn())
        .unwrap()
        .into_iter()
        .map(|r| r.payload)
        .collect()
}

/// Holds the background writer inside the callback of a `NoSync` record (`gate`), so that
/// everything submitted until the returned sender is dropped is written as one group.
/// Requires: no blocking appender or other caller leads meanwhile (only `submit*`).
fn hold_writer(wal: &Wal) -> mpsc::Sender<()> {
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let record = Record {
        id: LogId {
            lsn: wal.next_lsn(),
            term: Term(0),
            node: NodeId(0),
        },
        kind: RecordKind::Normal,
        payload: b"gate".to_vec(),
    };
    wal.submit_at_with_durability(vec![record], Durability::NoSync, move |r| {
        r.unwrap();
        entered_tx.send(()).unwrap();
        // Returns when the sender is dropped.
        let _ = release_rx.recv();
    })
    .unwrap();
    entered_rx.recv().unwrap();
    release_tx
}

#[test]
fn durability_never_sync_request_makes_it_and_earlier_nosync_survive_a_crash() {
    let sim = SimFs::new(1);
    let fs: FsRef = Arc::new(sim.clone());
    let opts = options(SyncPolicy::Never);
    let wal = open(&fs, opts.clone());
    let ack_a = append(&wal, b"a", Durability::NoSync);
    let ack_b = append(&wal, b"b", Durability::NoSync);
    let ack_c = append(&wal, b"c", Durability::Policy);
    assert!(!ack_a.durable && !ack_b.durable && !ack_c.durable);
    assert_eq!(wal.durable_lsn(), 0);
    let syncs = wal.stats().syncs;
    let ack_d = append(&wal, b"d", Durability::Sync);
    assert!(ack_d.durable);
    assert_eq!(ack_d.first, Lsn(4));
    assert_eq!(
        wal.stats().syncs,
        syncs + 1,
        "one sync for the Sync request"
    );
    assert_eq!(
        wal.durable_lsn(),
        4,
        "the sync covers the NoSync records before it"
    );
    let ack_e = append(&wal, b"e", Durability::NoSync);
    assert!(!ack_e.durable);
    assert_eq!(wal.durable_lsn(), 4, "durable_lsn moved without a sync");

    sim.crash_with(CrashMode::LoseAllUnsynced);
    drop(wal);
    let wal = open(&fs, opts);
    assert_eq!(
        payloads(&wal),
        [b"a", b"b", b"c", b"d"].map(|p| p.to_vec()),
        "the Sync record and everything before it survive; the NoSync one after is lost"
    );
}

#[test]
fn durability_always_nosync_is_not_durable_unless_grouped_with_a_sync() {
    let sim = SimFs::new(2);
    let fs: FsRef = Arc::new(sim.clone());
    let opts = options(SyncPolicy::Always);
    let wal = open(&fs, opts.clone());
    assert!(append(&wal, b"a", Durability::Policy).durable);
    let syncs = wal.stats().syncs;
    let ack_b = append(&wal, b"b", Durability::NoSync);
    assert!(!ack_b.durable);
    assert_eq!(
        wal.stats().syncs,
        syncs,
        "a NoSync request synced under Always"
    );
    assert_eq!(wal.durable_lsn(), 1);

    // One group: the gate (3), a NoSync request (4) and a Policy one (5). The Policy one
    // needs the sync, and the sync makes the whole group durable, and b with it.
    let release = hold_writer(&wal);
    let ack_c = wal
        .submit_with_durability(vec![new_record(b"c")], Durability::NoSync)
        .unwrap();
    let ack_d = wal.submit(vec![new_record(b"d")]).unwrap();
    drop(release);
    let (ack_c, ack_d) = (ack_c.wait().unwrap(), ack_d.wait().unwrap());
    assert_eq!((ack_c.first, ack_d.first), (Lsn(4), Lsn(5)));
    assert!(
        ack_c.durable,
        "a NoSync request synced with its group must say so"
    );
    assert!(ack_d.durable);
    assert_eq!(wal.durable_lsn(), 5);
    assert_eq!(wal.stats().syncs, syncs + 1);

    // One group of NoSync requests only: written, not synced.
    let release = hold_writer(&wal);
    let ack_e = wal
        .submit_with_durability(vec![new_record(b"e")], Durability::NoSync)
        .unwrap();
    let ack_f = wal
        .submit_with_durability(vec![new_record(b"f")], Durability::NoSync)
        .unwrap();
    drop(release);
    let (ack_e, ack_f) = (ack_e.wait().unwrap(), ack_f.wait().unwrap());
    assert_eq!((ack_e.first, ack_f.first), (Lsn(7), Lsn(8)));
    assert!(!ack_e.durable && !ack_f.durable);
    assert_eq!(wal.durable_lsn(), 5);
    assert_eq!(wal.stats().syncs, syncs + 1);

    sim.crash_with(CrashMode::LoseAllUnsynced);
    drop(wal);
    let wal = open(&fs, opts);
    assert_eq!(
        payloads(&wal),
        [&b"a"[..], b"b", b"gate", b"c", b"d"].map(<[u8]>::to_vec),
        "the unsynced NoSync records are lost, nothing synced is"
    );
}

#[test]
fn durability_nosync_only_traffic_does_not_sync_per_request() {
    for policy in [SyncPolicy::Never, SyncPolicy::Always] {
        let sim = SimFs::new(3);
        let fs: FsRef = Arc::new(sim.clone());
        let wal = open(&fs, options(policy));
        // The first append creates the segment; count from there.
        append(&wal, b"first", Durability::NoSync);
        let syncs = wal.stats().syncs;
        for i in 0..50u32 {
            let done = append(&wal, &i.to_le_bytes(), Durability::NoSync);
            assert!(
                !done.durable,
                "{policy:?}: NoSync request {i} reported durable"
            );
        }
        assert_eq!(
            wal.stats().syncs,
            syncs,
            "{policy:?}: NoSync requests synced"
        );
        assert_eq!(wal.durable_lsn(), 0);
        assert_eq!(wal.sync().unwrap(), 51);
        assert_eq!(wal.stats().syncs, syncs + 1);
        // Sync requests each wait for their sync ...
        for i in 0..5u32 {
            assert!(append(&wal, &i.to_le_bytes(), Durability::Sync).durable);
        }
        assert_eq!(wal.stats().syncs, syncs + 6, "{policy:?}");
        // ... and share one when queued together.
        let release = hold_writer(&wal);
        let tickets: Vec<_> = (0..10u32)
            .map(|i| {
                wal.submit_with_durability(vec![new_record(&i.to_le_bytes())], Durability::Sync)
                    .unwrap()
            })
            .collect();
        drop(release);
        for ticket in tickets {
            assert!(ticket.wait().unwrap().durable);
        }
        assert_eq!(
            wal.stats().syncs,
            syncs + 7,
            "{policy:?}: not group-committed"
        );
        assert_eq!(wal.durable_lsn(), wal.next_lsn().0 - 1);
    }
}

#[test]
fn durability_callbacks_with_mixed_durability_run_in_lsn_order() {
    let sim = SimFs::new(4);
    let fs: FsRef = Arc::new(sim.clone());
    let wal = open(&fs, options(SyncPolicy::Always));
    let seen: Arc<Mutex<Vec<(u64, bool)>>> = Arc::default();
    let kinds = [Durability::NoSync, Durability::Sync, Durability::Policy];
    for lsn in 1..=60u64 {
        let seen = Arc::clone(&seen);
        let durability = kinds[(lsn % 3) as usize];
        let record = Record {
            id: LogId {
                lsn: Lsn(lsn),
                term: Term(1),
                node: NodeId(1),
            },
            kind: RecordKind::Normal,
            payload: vec![lsn as u8; 10],
        };
        wal.submit_at_with_durability(vec![record], durability, move |r| {
            let done = r.unwrap();
            assert_eq!(done.first, Lsn(lsn));
            if durability != Durability::NoSync {
                assert!(done.durable, "LSN {lsn} ({durability:?}) not durable");
            }
            seen.lock().unwrap().push((lsn, done.durable));
        })
        .unwrap();
    }
    wal.sync().unwrap();
    wal.close().unwrap();
    let seen = seen.lock().unwrap();
    let lsns: Vec<u64> = seen.iter().map(|&(l, _)| l).collect();
    assert_eq!(lsns, (1..=60).collect::<Vec<_>>());
}

/// Payload -> its acknowledgement (first LSN, last LSN, durable), `None` while unanswered
/// or failed.
type Submitted = HashMap<Vec<u8>, Option<(u64, u64, bool)>>;

fn durability(rng: &mut Rng) -> Durability {
    match rng.below(3) {
        0 => Durability::Policy,
        1 => Durability::Sync,
        _ => Durability::NoSync,
    }
}

fn crash_mode(n: u64) -> CrashMode {
    match n % 3 {
        0 => CrashMode::Random,
        1 => CrashMode::LoseAllUnsynced,
        _ => CrashMode::KeepAll,
    }
}

fn seeds(default: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("WAL_CRASH_SEED") {
        return vec![seed.parse().expect("WAL_CRASH_SEED is a number")];
    }
    let n = std::env::var("WAL_CRASH_SEEDS").map_or(default, |s| s.parse().unwrap());
    (0..n).collect()
}

/// Records an outcome; checks what it promises at the moment it arrives.
fn acknowledge(
    wal: &Wal,
    submitted: &Mutex<Submitted>,
    payloads: &[Vec<u8>],
    asked: Durability,
    done: Appended,
) {
    assert_eq!(done.last.0 - done.first.0 + 1, payloads.len() as u64);
    if asked == Durability::Sync {
        assert!(
            done.durable,
            "a Sync request at LSN {} not durable",
            done.first
        );
    }
    if done.durable {
        let claimed = wal.durable_lsn();
        assert!(
            claimed >= done.last.0,
            "LSN {} acknowledged durable above durable_lsn {claimed}",
            done.last
        );
    }
    let mut submitted = submitted.lock().unwrap();
    for p in payloads {
        submitted.insert(p.clone(), Some((done.first.0, done.last.0, done.durable)));
    }
}

/// A submitter through tickets: requests of 1 or 2 records, pipelined up to 3 deep.
fn ticket_submitter(wal: &Wal, submitted: &Mutex<Submitted>, seed: u64, t: u64) {
    let mut rng = Rng(seed * 31 + t);
    let mut last = 0u64;
    for i in 0..40u64 {
        let mut pending = Vec::new();
        for j in 0..=rng.below(3) {
            let payloads: Vec<Vec<u8>> = (0..=rng.below(2))
                .map(|k| {
                    let mut p = format!("{seed}/{t}/{i}/{j}/{k}/").into_bytes();
                    p.resize(p.len() + rng.below(1200) as usize, t as u8);
                    p
                })
                .collect();
            let mut map = submitted.lock().unwrap();
            for p in &payloads {
                map.insert(p.clone(), None);
            }
            drop(map);
            let asked = durability(&mut rng);
            let records = payloads.iter().map(|p| new_record(p)).collect();
            match wal.submit_with_durability(records, asked) {
                Ok(ticket) => pending.push((ticket, payloads, asked)),
                Err(_) => break,
            }
        }
        let accepted = pending.len();
        for (ticket, payloads, asked) in pending {
            let Ok(done) = ticket.wait() else {
                return;
            };
            assert!(done.first.0 > last, "LSNs of one submitter out of order");
            last = done.last.0;
            acknowledge(wal, submitted, &payloads, asked, done);
        }
        if accepted == 0 {
            return;
        }
    }
}

/// A submitter through callbacks at chosen LSNs (as openraft submits), racing the others
/// for the next LSN: a refusal for a taken LSN changes nothing, and it tries again.
/// Returns the callbacks' LSNs, in the order the callbacks ran.
fn callback_submitter(
    wal: &Arc<Wal>,
    submitted: &Arc<Mutex<Submitted>>,
    order: &Arc<Mutex<Vec<u64>>>,
    seed: u64,
) -> u64 {
    let mut rng = Rng(seed * 31 + 99);
    let mut accepted = 0u64;
    for i in 0..40u64 {
        let payload = format!("{seed}/cb/{i}/").into_bytes();
        submitted.lock().unwrap().insert(payload.clone(), None);
        let asked = durability(&mut rng);
        let mut tries = 0;
        loop {
            tries += 1;
            assert!(tries < 100_000, "never won the race for an LSN");
            let lsn = wal.next_lsn();
            let record = Record {
                id: LogId {
                    lsn,
                    term: Term(0),
                    node: NodeId(0),
                },
                kind: RecordKind::Normal,
                payload: payload.clone(),
            };
            let (w, s, o, p) = (
                Arc::clone(wal),
                Arc::clone(submitted),
                Arc::clone(order),
                payload.clone(),
            );
            let outcome = wal.submit_at_with_durability(vec![record], asked, move |r| {
                o.lock().unwrap().push(lsn.0);
                if let Ok(done) = r {
                    assert_eq!(done.first, lsn);
                    acknowledge(&w, &s, &[p], asked, done);
                }
            });
            match outcome {
                Ok(()) => {
                    accepted += 1;
                    break;
                }
                Err(Error::InvalidArgument(_)) => std::thread::yield_now(),
                Err(_) => return accepted,
            }
        }
    }
    accepted
}

#[test]
fn durability_mixed_concurrent_submitters_keep_every_durable_ack_across_a_crash() {
    let mut acked_checked = 0u64;
    for seed in seeds(60) {
        let mut rng = Rng(seed ^ 0xD00D);
        let sim = SimFs::new(seed);
        let fs: FsRef = Arc::new(sim.clone());
        let dir = Path::new(DIR);
        let o = WalOptions {
            sync: match rng.below(3) {
                0 => SyncPolicy::Never,
                1 => SyncPolicy::Interval(std::time::Duration::from_micros(200)),
                _ => SyncPolicy::Always,
            },
            spare_segments: rng.below(3) as usize,
            prewrite_segments: rng.below(2) == 0,
            ..options(SyncPolicy::Always)
        };
        let mode = crash_mode(rng.next());
        let crashes = rng.below(4) != 0;
        if crashes {
            sim.set_armed_crash_mode(mode);
            sim.set_crash_after_ops(rng.below(500));
        }
        let submitted: Arc<Mutex<Submitted>> = Arc::default();
        let order: Arc<Mutex<Vec<u64>>> = Arc::default();
        let mut callbacks_accepted = 0;
        if let Ok((wal, _)) = Wal::open(Arc::clone(&fs), dir, o.clone()) {
            let wal = Arc::new(wal);
            let threads: Vec<_> = (0..3u64)
                .map(|t| {
                    let (wal, submitted) = (Arc::clone(&wal), Arc::clone(&submitted));
                    std::thread::spawn(move || ticket_submitter(&wal, &submitted, seed, t))
                })
                .collect();
            callbacks_accepted = callback_submitter(&wal, &submitted, &order, seed);
            for t in threads {
                t.join().unwrap();
            }
            // Callbacks hold clones of the log; the last one must not drop on the writer
            // thread (it would join itself), so wait until every owed callback has run.
            wal.sync().ok();
            let mut waited = 0;
            while Arc::strong_count(&wal) > 1 {
                waited += 1;
                assert!(
                    waited < 5_000,
                    "seed {seed}: callbacks still owed after 5 s"
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            drop(wal);
        }
        let order = order.lock().unwrap();
        assert_eq!(
            order.len() as u64,
            callbacks_accepted,
            "seed {seed}: callbacks"
        );
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "seed {seed}: callbacks out of LSN order: {order:?}"
        );
        if sim.is_down() {
            sim.restart();
        } else {
            sim.disarm_crash();
            sim.crash_with(mode);
        }
        let submitted = submitted.lock().unwrap();
        // Acknowledged LSNs run from 1 without gaps or repeats.
        let mut acked: BTreeMap<u64, &[u8]> = BTreeMap::new();
        for (payload, ack) in submitted.iter() {
            if let Some((first, last, _)) = ack {
                for lsn in *first..=*last {
                    // A request's payloads are distinct; each takes one LSN of the range.
                    acked.entry(lsn).or_insert(payload);
                }
            }
        }
        let acked_records = submitted.values().filter(|a| a.is_some()).count();
        assert_eq!(
            acked.len(),
            acked_records,
            "seed {seed}: an LSN acknowledged twice"
        );
        if let Some((&last, _)) = acked.last_key_value() {
            assert_eq!(
                last,
                acked.len() as u64,
                "seed {seed}: acknowledged LSNs have a gap"
            );
        }

        let (wal, _) = Wal::open(Arc::clone(&fs), dir, o)
            .unwrap_or_else(|e| panic!("seed {seed}: open after crash failed: {e}"));
        let records = wal.read(Lsn(1)..wal.next_lsn()).unwrap();
        let mut seen = HashMap::new();
        for r in &records {
            let ack = submitted.get(&r.payload).unwrap_or_else(|| {
                panic!(
                    "seed {seed}: LSN {} holds a payload never appended",
                    r.id.lsn
                )
            });
            if let Some((first, last, _)) = ack {
                assert!(
                    (*first..=*last).contains(&r.id.lsn.0),
                    "seed {seed}: record moved"
                );
            }
            assert!(
                seen.insert(r.payload.clone(), r.id.lsn.0).is_none(),
                "seed {seed}: duplicate"
            );
        }
        for (payload, ack) in submitted.iter() {
            if let Some((first, last, true)) = ack {
                let at = seen.get(payload).copied();
                assert!(
                    at.is_some_and(|l| (*first..=*last).contains(&l)),
                    "seed {seed}: durable record at LSNs {first}..={last} lost \
                     (mode {mode:?}, crash {crashes})"
                );
                acked_checked += 1;
            }
        }
        if !crashes {
            assert_eq!(
                records.len(),
                acked.len(),
                "seed {seed}: a clean run kept every acknowledged record"
            );
        }
    }
    println!("mixed durability sweep: {acked_checked} durable acknowledgements checked, 0 lost");
}
