//! Background checkpoints of a Db whose tables are all LSM trees land on the record that
//! froze a full memtable, below the visible LSN (the apply stage pins the Db's state
//! there). Crashes at every sync of such a workload, inside those checkpoints too, must
//! reopen to every acknowledged write with its version and nothing else but, whole or not
//! at all, the write in flight.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use popdb_db::{Db, DbOptions, EngineKind, Error, Scan, TableOptions, WriteBatch};
use popdb_io::SimFs;

/// Key -> (value, version).
type State = BTreeMap<Vec<u8>, (Vec<u8>, u64)>;

/// The (key, value) puts of one record.
type Puts = Vec<(Vec<u8>, Vec<u8>)>;

const WRITES: u64 = 240;

fn options(fs: &SimFs) -> DbOptions {
    let mut options = DbOptions {
        fs: Arc::new(fs.clone()),
        background: false,
        // Every maintenance step finds a checkpoint due.
        checkpoint_log_bytes: 1,
        ..DbOptions::default()
    };
    options.wal.segment_size = 64 * 1024;
    options.wal.record_size_max = 60_000;
    options.reserve_bytes = 64 * 1024;
    options.lsm.memtable_size_max = 2 * 1024;
    options.lsm.l0_compaction_trigger = 2;
    options
}

fn open(fs: &SimFs) -> Result<Db, Error> {
    Db::open(Path::new("/db"), options(fs))
}

fn contents(db: &Db) -> State {
    db.scan("t", &Scan::all())
        .unwrap()
        .into_iter()
        .map(|e| (e.key, (e.value, e.version)))
        .collect()
}

/// The writes of record `i`: a key of its own and one of a few overwritten ones.
fn writes(i: u64) -> Puts {
    vec![
        (format!("own{i:04}").into_bytes(), vec![b'a'; 90]),
        (
            format!("hot{:02}", i % 7).into_bytes(),
            format!("v{i}").into_bytes(),
        ),
    ]
}

/// Runs the workload until it ends or the file system crashes: returns the state of the
/// acknowledged writes, the writes in flight at the crash (if any), and how many
/// checkpoints were found below the visible LSN.
fn run(db: &Db) -> (State, Option<Puts>, u64) {
    let mut state = State::new();
    let mut below = 0;
    for i in 0..WRITES {
        let mut batch = WriteBatch::new();
        for (k, v) in writes(i) {
            batch.put("t", &k, &v);
        }
        let Ok(lsn) = db.write(batch) else {
            return (state, Some(writes(i)), below);
        };
        for (k, v) in writes(i) {
            state.insert(k, (v, lsn));
        }
        // A few records between rounds, so that the memtable froze below the last.
        if i % 12 != 11 {
            continue;
        }
        if db.maintenance_step().is_err() {
            return (state, None, below);
        }
        let stats = db.stats();
        if stats.checkpoint_lsn.is_some_and(|c| c < stats.visible_lsn) {
            below += 1;
        }
    }
    (state, None, below)
}

fn verify(found: &State, acked: &State, in_flight: Option<&Puts>, at: &str) {
    if found == acked {
        return;
    }
    let in_flight = in_flight.unwrap_or_else(|| panic!("{at}: lost or invented writes"));
    let mut with = acked.clone();
    // The write in flight took the LSN after the last one seen, whatever it was.
    let Some(&(_, version)) = found.get(&in_flight[0].0) else {
        panic!("{at}: lost or invented writes");
    };
    for (k, v) in in_flight {
        with.insert(k.clone(), (v.clone(), version));
    }
    assert!(
        found == &with,
        "{at}: neither without nor with the write in flight"
    );
}

fn fresh(fs: &SimFs) -> Db {
    let db = open(fs).unwrap();
    db.create_table("t", TableOptions::new(EngineKind::Lsm))
        .unwrap();
    db
}

#[test]
fn checkpoints_land_below_the_visible_lsn_and_survive_crashes() {
    let fs = SimFs::new(1);
    let db = fresh(&fs);
    let before = fs.sync_count();
    let (state, in_flight, below) = run(&db);
    assert!(in_flight.is_none());
    assert!(below > 3, "only {below} checkpoints below the visible LSN");
    eprintln!("{below} checkpoints below the visible LSN");
    let syncs = fs.sync_count() - before;
    db.close().unwrap();
    let db = open(&fs).unwrap();
    assert_eq!(contents(&db), state);
    drop(db);

    let mut tested = 0;
    for point in 0..syncs {
        let fs = SimFs::new(point);
        let db = fresh(&fs);
        fs.set_crash_after_syncs(point);
        let (state, in_flight, _) = run(&db);
        drop(db);
        fs.disarm_crash();
        if fs.is_down() {
            fs.restart();
        } else {
            fs.crash();
        }
        let db = open(&fs).unwrap();
        tested += 1;
        verify(
            &contents(&db),
            &state,
            in_flight.as_ref(),
            &format!("crash at sync {point}"),
        );
    }
    eprintln!("{tested} crash points");
}
