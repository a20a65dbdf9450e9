//! The Db under failures of its storage: a full disk, a failed fsync of the log, a failed
//! checkpoint, a second opener of the same directory, resends of idempotent commits across
//! a checkpoint and a reopen, and no-sync writes lost to a power failure. Each failure must
//! come back as an error that says what failed (never a panic), reads must keep working,
//! and after a reopen every acknowledged write must be there with its version and no batch
//! may be there in part.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use popdb_db::{
    Check, Commit, Condition, Db, DbOptions, Durability, EngineKind, Error, IdempotencyKey, Scan,
    TableOptions, WriteBatch, WriteOptions,
};
use popdb_io::{Fault, FaultError, FaultOp, SimFs};

const TABLES: [(&str, EngineKind); 2] = [("lsm", EngineKind::Lsm), ("btree", EngineKind::Btree)];

fn options(fs: &SimFs) -> DbOptions {
    let mut options = DbOptions {
        fs: Arc::new(fs.clone()),
        background: false,
        ..DbOptions::default()
    };
    options.wal.segment_size = 64 * 1024;
    options.wal.record_size_max = 60_000;
    options.reserve_bytes = 64 * 1024;
    options.lsm.memtable_size_max = 4 * 1024;
    options.lsm.l0_compaction_trigger = 2;
    options
}

fn open(fs: &SimFs) -> Db {
    Db::open(Path::new("/db"), options(fs)).unwrap()
}

/// A new Db with one table per engine.
fn fresh(fs: &SimFs) -> Db {
    let db = open(fs);
    for (name, engine) in TABLES {
        db.create_table(name, TableOptions::new(engine)).unwrap();
    }
    db
}

fn key(i: u64) -> Vec<u8> {
    format!("w{i:05}").into_bytes()
}

fn marker(i: u64, len: usize) -> Vec<u8> {
    let mut value = format!("m{i}-").into_bytes();
    value.resize(len.max(value.len()), b'.');
    value
}

/// Write `i`: its marker under its key in both tables, so a batch applied in part shows.
fn pair(i: u64, len: usize) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for (table, _) in TABLES {
        batch.put(table, key(i), marker(i, len));
    }
    batch
}

/// Table -> key -> (value, version).
type Contents = BTreeMap<String, BTreeMap<Vec<u8>, (Vec<u8>, u64)>>;

fn contents(db: &Db) -> Contents {
    db.tables()
        .into_iter()
        .map(|t| {
            let rows = db
                .scan(&t.name, &Scan::all())
                .unwrap()
                .into_iter()
                .map(|e| (e.key, (e.value, e.version)))
                .collect();
            (t.name, rows)
        })
        .collect()
}

/// Writes acknowledged (index, LSN, value length) and writes refused or in doubt (index,
/// value length), made with `pair`.
#[derive(Debug, Default)]
struct Ledger {
    acked: Vec<(u64, u64, usize)>,
    refused: Vec<(u64, usize)>,
}

/// Checks a Db against a ledger of `pair` writes: every acknowledged write is there with
/// its version in both tables; a refused one is in both with one version, or in neither;
/// nothing else is there.
fn verify(found: &Contents, ledger: &Ledger, context: &str) {
    let (lsm, btree) = (&found["lsm"], &found["btree"]);
    for &(i, lsn, len) in &ledger.acked {
        for (table, rows) in [("lsm", lsm), ("btree", btree)] {
            assert_eq!(
                rows.get(&key(i)),
                Some(&(marker(i, len), lsn)),
                "{context}: acknowledged write {i} at {lsn} in {table}"
            );
        }
    }
    for &(i, len) in &ledger.refused {
        let (a, b) = (lsm.get(&key(i)), btree.get(&key(i)));
        assert_eq!(a, b, "{context}: refused write {i} is there in part");
        if let Some((value, _)) = a {
            assert_eq!(value, &marker(i, len), "{context}: refused write {i}");
        }
    }
    let known = ledger.acked.len() + ledger.refused.len();
    for (table, rows) in [("lsm", lsm), ("btree", btree)] {
        let made = rows
            .keys()
            .filter(|k| {
                ledger.acked.iter().any(|(i, _, _)| key(*i) == **k)
                    || ledger.refused.iter().any(|(i, _)| key(*i) == **k)
            })
            .count();
        assert_eq!(
            made,
            rows.len(),
            "{context}: {table} holds writes never made"
        );
        assert!(rows.len() <= known);
    }
}

/// The error's text, with its whole chain of sources.
fn describe(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        write!(text, " <- {inner}").unwrap();
        source = inner.source();
    }
    text
}

/// A full disk met by the log (a new segment) or by a checkpoint (a table's new files):
/// the write that meets it, or the first write after the failed checkpoint, fails with an
/// error (never a panic); reads go on; after a reopen with room every acknowledged write is
/// there and no refused one is there in part. Returns the texts of the errors met, and how
/// many refused writes the reopened Db holds.
/// With `crash`, the power fails while the disk is full. A reopen while it is still full
/// opens, or fails with an error, and damages nothing.
fn disk_full_case(place: Full, crash: bool) -> (Vec<String>, usize) {
    let fs = SimFs::new(1);
    let mut options = options(&fs);
    if place == Full::Log {
        // Memtables that never fill: only the log writes files until the disk is full.
        options.lsm.memtable_size_max = 4 << 20;
    }
    let try_open = |fs: &SimFs| {
        let mut reopen = options.clone();
        reopen.fs = Arc::new(fs.clone());
        Db::open(Path::new("/db"), reopen)
    };
    let open = |fs: &SimFs| try_open(fs).unwrap();
    let db = open(&fs);
    for (name, engine) in TABLES {
        db.create_table(name, TableOptions::new(engine)).unwrap();
    }
    let mut ledger = Ledger::default();
    let mut errors = Vec::new();
    let mut i = 0;
    for _ in 0..20 {
        let lsn = db.write(pair(i, 300)).unwrap();
        ledger.acked.push((i, lsn, 300));
        i += 1;
    }
    db.checkpoint().unwrap();
    // Room for a little more than what is used: the workload passes it.
    let used = fs.stats().used_size;
    fs.set_capacity(Some(used + 16 * 1024));
    let mut failed = false;
    for _ in 0..2000 {
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.write(pair(i, 700))));
        match result.expect("a full disk made the Db panic") {
            Ok(lsn) => ledger.acked.push((i, lsn, 700)),
            Err(error) => {
                errors.push(format!("write: {}", describe(&error)));
                ledger.refused.push((i, 700));
                failed = true;
            }
        }
        i += 1;
        if failed {
            break;
        }
        if place == Full::Checkpoint
            && i % 20 == 0
            && let Err(error) = db.checkpoint()
        {
            errors.push(format!("checkpoint: {}", describe(&error)));
        }
    }
    assert!(failed, "the disk never filled");
    // Later writes fail too (the space is still gone), clearly and without a panic.
    for _ in 0..3 {
        match db.write(pair(i, 700)) {
            Ok(lsn) => ledger.acked.push((i, lsn, 700)),
            Err(error) => {
                errors.push(format!("later write: {}", describe(&error)));
                ledger.refused.push((i, 700));
            }
        }
        i += 1;
    }
    for error in &errors {
        eprintln!("full disk ({place:?}): {error}");
    }
    // Reads go on, and see every acknowledged write.
    verify(&contents(&db), &ledger, "the full Db");
    let (first, lsn, len) = ledger.acked[0];
    assert_eq!(
        db.get("btree", &key(first)).unwrap(),
        Some((marker(first, len), lsn))
    );
    drop(db);
    if crash {
        fs.crash();
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| try_open(&fs)));
    match result.expect("a reopen on a full disk panicked") {
        Ok(db) => verify(&contents(&db), &ledger, "reopened on the full disk"),
        Err(error) => {
            eprintln!("full disk ({place:?}): reopen: {}", describe(&error));
        }
    }

    fs.set_capacity(None);
    let db = open(&fs);
    let found = contents(&db);
    verify(&found, &ledger, "reopened with room");
    let refused_present = ledger
        .refused
        .iter()
        .filter(|(i, _)| found["lsm"].contains_key(&key(*i)))
        .count();
    let lsn = db.write(pair(i, 10)).unwrap();
    let last = ledger.acked.iter().map(|a| a.1).max().unwrap();
    assert!(lsn > last, "LSN {lsn} after {last}");
    ledger.acked.push((i, lsn, 10));
    db.checkpoint().unwrap();
    drop(db);
    let db = open(&fs);
    verify(&contents(&db), &ledger, "reopened and checkpointed");
    (errors, refused_present)
}

/// Where the disk fills first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Full {
    /// The log, at a new segment.
    Log,
    /// An LSM table's flush of a full memtable, which a write stalls on.
    Flush,
    /// A checkpoint writing the tables' files.
    Checkpoint,
}

fn says_disk_full(text: &str) -> bool {
    text.contains("No space") || text.contains("no space")
}

#[test]
fn disk_full_in_the_log_refuses_writes_and_keeps_reads() {
    for crash in [false, true] {
        let (errors, refused_present) = disk_full_case(Full::Log, crash);
        let first = errors.iter().find(|e| e.starts_with("write")).unwrap();
        assert!(
            says_disk_full(first),
            "the write's error does not say the disk is full: {first}"
        );
        // The log refused the append whole (it had no segment to put it in).
        assert_eq!(refused_present, 0, "a write the log refused was applied");
    }
}

#[test]
fn disk_full_in_a_flush_refuses_writes_and_keeps_reads() {
    for crash in [false, true] {
        disk_full_case(Full::Flush, crash);
    }
}

/// The first write refused after an LSM flush met a full disk, and the Db's poison cause,
/// should say the disk is full, as they do when a B+tree checkpoint or the log meets it.
#[test]
fn disk_full_in_a_flush_write_error_says_the_disk_is_full() {
    let (errors, _) = disk_full_case(Full::Flush, false);
    let first = errors.iter().find(|e| e.starts_with("write")).unwrap();
    assert!(
        says_disk_full(first),
        "the write's error does not say the disk is full: {first}"
    );
}

#[test]
fn disk_full_in_a_checkpoint_refuses_writes_and_keeps_reads() {
    for crash in [false, true] {
        let (errors, _) = disk_full_case(Full::Checkpoint, crash);
        let checkpoint = errors.iter().find(|e| e.starts_with("checkpoint"));
        if let Some(checkpoint) = checkpoint {
            assert!(says_disk_full(checkpoint), "{checkpoint}");
        }
    }
}

#[test]
fn failed_log_fsync_poisons_writes_and_keeps_reads() {
    for seed in 0..6 {
        for crash in [false, true] {
            failed_log_fsync_case(FaultOp::Sync, seed, crash);
        }
    }
}

#[test]
fn failed_log_write_poisons_writes_and_keeps_reads() {
    for seed in 0..3 {
        for crash in [false, true] {
            failed_log_fsync_case(FaultOp::Write, seed, crash);
        }
    }
}

/// A failed sync leaves each unsynced sector of the log durable or lost at random; a reopen
/// must not trust the bytes the cache still shows.
fn failed_log_fsync_case(op: FaultOp, seed: u64, crash: bool) {
    let fs = SimFs::new(200 + seed);
    let db = fresh(&fs);
    let mut ledger = Ledger::default();
    for i in 0..30 {
        let lsn = db.write(pair(i, 100)).unwrap();
        ledger.acked.push((i, lsn, 100));
    }
    // Persistent: the log's own background work (preparing a spare segment) may meet the
    // fault first, and the write's sync must still fail.
    fs.inject(
        Fault::new(op, FaultError::Eio)
            .persistent()
            .under("/db/wal"),
    );
    let error = db.write(pair(30, 100)).unwrap_err();
    ledger.refused.push((30, 100));
    let text = describe(&error);
    eprintln!("write whose log fsync failed: {text}");
    match &error {
        Error::Unknown(_) => assert!(
            text.contains("outcome unknown") && text.contains("poisoned"),
            "{text}"
        ),
        Error::Poisoned { .. } | Error::Wal(popdb_wal::Error::Poisoned { .. }) => {}
        other => panic!("a failed fsync gave neither Unknown nor Poisoned: {other:?}"),
    }
    let what = if op == FaultOp::Sync { "sync" } else { "write" };
    assert!(
        text.contains(what),
        "the error does not say the {what} failed: {text}"
    );
    let cause = db.poison_cause().expect("the Db is not poisoned");
    eprintln!("poison cause: {cause}");
    // Later writes are refused, the catalog too; reads go on.
    for i in 31..34 {
        let later = db.write(pair(i, 100)).unwrap_err();
        assert!(
            matches!(
                later,
                Error::Poisoned { .. } | Error::Wal(popdb_wal::Error::Poisoned { .. })
            ),
            "{later:?}"
        );
    }
    let ddl = db.create_table("late", TableOptions::new(EngineKind::Lsm));
    assert!(ddl.is_err(), "{ddl:?}");
    let found = contents(&db);
    verify(&found, &ledger, "the poisoned Db");
    assert_eq!(found["lsm"].len(), found["btree"].len());
    drop(db);
    fs.clear_faults();

    if crash {
        fs.crash();
    }
    let context = format!("{op:?} fault, seed {seed}, crash {crash}");
    let db = open(&fs);
    assert!(db.poison_cause().is_none());
    verify(&contents(&db), &ledger, &format!("{context}: reopened"));
    // More writes on top of the log the failed sync left, then a power loss: the bytes
    // the cache showed but the medium may have lost must not turn into corruption.
    for i in 40..50 {
        let lsn = db.write(pair(i, 100)).unwrap();
        assert!(lsn > ledger.acked.last().unwrap().1);
        ledger.acked.push((i, lsn, 100));
    }
    fs.crash();
    drop(db);
    let db = Db::open(Path::new("/db"), options(&fs))
        .unwrap_or_else(|e| panic!("{context}: reopen after a power loss: {}", describe(&e)));
    verify(
        &contents(&db),
        &ledger,
        &format!("{context}: after a power loss"),
    );
}

#[test]
fn failed_checkpoint_errors_and_loses_no_acknowledged_write() {
    for (op, crash) in [
        (FaultOp::Sync, false),
        (FaultOp::Sync, true),
        (FaultOp::Write, false),
        (FaultOp::Write, true),
    ] {
        for (table, _) in TABLES {
            failed_checkpoint_case(op, table, crash);
        }
    }
}

fn failed_checkpoint_case(op: FaultOp, table: &str, crash: bool) {
    let context = format!("{op:?} fault in table {table}, crash {crash}");
    let fs = SimFs::new(3);
    let db = fresh(&fs);
    let mut ledger = Ledger::default();
    let mut i = 0;
    for round in 0..2 {
        for _ in 0..40 {
            let lsn = db.write(pair(i, 200)).unwrap();
            ledger.acked.push((i, lsn, 200));
            i += 1;
        }
        if round == 0 {
            db.checkpoint().unwrap();
        }
    }
    let id = db.describe(table).unwrap().id;
    let dir = format!("/db/gen-000001/t-{id:016x}");
    fs.inject(Fault::new(op, FaultError::Eio).under(&dir));
    let error = db.checkpoint().unwrap_err();
    let text = describe(&error);
    eprintln!("{context}: checkpoint: {text}");
    assert!(
        text.contains("I/O") || text.contains("EIO") || text.contains("Input/output"),
        "{context}: the error does not say an i/o failed: {text}"
    );
    // Writes keep working, or fail clearly.
    for _ in 0..5 {
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.write(pair(i, 200))));
        match result.expect("a write after a failed checkpoint panicked") {
            Ok(lsn) => ledger.acked.push((i, lsn, 200)),
            Err(error) => {
                eprintln!("{context}: write after: {}", describe(&error));
                ledger.refused.push((i, 200));
            }
        }
        i += 1;
    }
    verify(
        &contents(&db),
        &ledger,
        &format!("{context}: before reopen"),
    );
    // A later checkpoint (the fault fired once) either completes or fails clearly.
    if let Err(error) = db.checkpoint() {
        eprintln!("{context}: checkpoint again: {}", describe(&error));
    }
    drop(db);
    if crash {
        fs.crash();
    }
    let db = open(&fs);
    verify(&contents(&db), &ledger, &format!("{context}: reopened"));
    db.checkpoint().unwrap();
    drop(db);
    let db = open(&fs);
    verify(&contents(&db), &ledger, &format!("{context}: checkpointed"));
}

#[test]
fn second_opener_on_sim_fs_is_refused() {
    let fs = SimFs::new(4);
    let db = fresh(&fs);
    let error = Db::open(Path::new("/db"), options(&fs)).unwrap_err();
    let text = describe(&error);
    eprintln!("second opener: {text}");
    assert!(text.contains("locked"), "{text}");
    assert!(text.contains("/db"), "{text}");
    // The first Db is untouched.
    let lsn = db.write(pair(0, 10)).unwrap();
    assert_eq!(db.get("lsm", &key(0)).unwrap(), Some((marker(0, 10), lsn)));
    drop(db);
    let db = open(&fs);
    assert_eq!(
        db.get("btree", &key(0)).unwrap(),
        Some((marker(0, 10), lsn))
    );
}

#[test]
fn second_opener_on_real_fs_names_the_holder() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("db");
    let first = Db::open(
        &dir,
        DbOptions {
            background: false,
            ..DbOptions::default()
        },
    )
    .unwrap();
    let error = Db::open(
        &dir,
        DbOptions {
            background: false,
            ..DbOptions::default()
        },
    )
    .unwrap_err();
    let text = describe(&error);
    eprintln!("second opener: {text}");
    assert!(text.contains("locked"), "{text}");
    let holder = format!("process {}", std::process::id());
    assert!(
        text.contains(&holder),
        "the error does not name {holder}: {text}"
    );
    drop(first);
    // Once the first is gone, the directory opens.
    Db::open(
        &dir,
        DbOptions {
            background: false,
            ..DbOptions::default()
        },
    )
    .unwrap();
}

fn versions(db: &Db) -> Contents {
    contents(db)
}

#[test]
fn idempotent_resend_across_checkpoint_and_reopen_returns_the_first_result() {
    for crash in [false, true] {
        idempotent_case(crash);
    }
}

fn idempotent_case(crash: bool) {
    let fs = SimFs::new(5);
    let db = fresh(&fs);
    db.write(pair(0, 10)).unwrap();
    let client = 42;
    let committed = Commit {
        conditions: vec![Condition {
            table: "lsm".to_string(),
            check: Check::Exists { key: key(0) },
        }],
        writes: pair(1, 10),
        idempotency: Some(IdempotencyKey {
            client,
            sequence: 1,
        }),
        durability: None,
    };
    let lsn = db.commit(committed.clone()).unwrap();
    let conflicted = Commit {
        conditions: vec![
            Condition {
                table: "lsm".to_string(),
                check: Check::Exists { key: key(0) },
            },
            Condition {
                table: "btree".to_string(),
                check: Check::Absent { key: key(0) },
            },
        ],
        writes: pair(2, 10),
        idempotency: Some(IdempotencyKey {
            client,
            sequence: 2,
        }),
        durability: None,
    };
    let Err(Error::Conflict {
        condition,
        lsn: conflict_lsn,
    }) = db.commit(conflicted.clone())
    else {
        panic!("the second commit did not conflict");
    };
    assert_eq!(condition, 1);
    // Writes after them, so the resends would land at other LSNs if they were logged.
    db.write(pair(3, 10)).unwrap();
    assert_eq!(db.checkpoint().unwrap(), db.visible_lsn());
    let before = versions(&db);
    let visible = db.visible_lsn();
    if crash {
        fs.crash();
        drop(db);
    } else {
        db.close().unwrap();
    }

    let db = open(&fs);
    assert_eq!(db.visible_lsn(), visible);
    assert_eq!(db.commit(committed.clone()).unwrap(), lsn);
    let again = db.commit(conflicted.clone());
    assert!(
        matches!(again, Err(Error::Conflict { condition: 1, lsn }) if lsn == conflict_lsn),
        "{again:?}"
    );
    assert_eq!(versions(&db), before, "a resend applied something");
    assert_eq!(db.visible_lsn(), visible, "a resend was logged");
    // Now resend with the key's state only in the log (written after the checkpoint).
    let third = Commit {
        conditions: Vec::new(),
        writes: pair(4, 10),
        idempotency: Some(IdempotencyKey {
            client,
            sequence: 3,
        }),
        durability: None,
    };
    let third_lsn = db.commit(third.clone()).unwrap();
    let before = versions(&db);
    drop(db);
    if crash {
        fs.crash();
    }
    let db = open(&fs);
    assert_eq!(db.commit(third).unwrap(), third_lsn);
    assert_eq!(db.commit(committed).unwrap(), lsn);
    assert!(matches!(
        db.commit(conflicted),
        Err(Error::Conflict { condition: 1, lsn }) if lsn == conflict_lsn
    ));
    assert_eq!(versions(&db), before, "a resend applied something");
}

#[test]
fn no_sync_writes_lost_to_a_crash_leave_a_prefix_and_lsns_move_on() {
    for seed in 0..8 {
        no_sync_case(seed);
    }
}

fn no_sync_case(seed: u64) {
    let fs = SimFs::new(10 + seed);
    let db = fresh(&fs);
    let no_sync = WriteOptions {
        durability: Some(Durability::NoSync),
    };
    let mut lsns = Vec::new();
    for i in 0..60 {
        let mut batch = pair(i, 50);
        batch.put("lsm", "last", i.to_string());
        batch.put("btree", "last", i.to_string());
        lsns.push(db.write_with(batch, no_sync).unwrap());
    }
    let max = *lsns.last().unwrap();
    // Seen by a reader before the crash.
    assert_eq!(db.visible_lsn(), max);
    fs.crash();
    drop(db);

    let db = open(&fs);
    let found = contents(&db);
    let (lsm, btree) = (&found["lsm"], &found["btree"]);
    let kept = lsm.keys().filter(|k| k.starts_with(b"w")).count();
    for (i, &lsn) in lsns.iter().enumerate() {
        let i = i as u64;
        let want = (i < kept as u64).then(|| (marker(i, 50), lsn));
        assert_eq!(
            lsm.get(&key(i)).cloned(),
            want,
            "seed {seed}: write {i} in lsm"
        );
        assert_eq!(
            btree.get(&key(i)).cloned(),
            want,
            "seed {seed}: write {i} in btree"
        );
    }
    if kept > 0 {
        let last = (kept - 1).to_string().into_bytes();
        let want = Some((last, lsns[kept - 1]));
        assert_eq!(lsm.get(b"last".as_slice()).cloned(), want);
        assert_eq!(btree.get(b"last".as_slice()).cloned(), want);
    }
    let recovery = db.recovery().clone();
    eprintln!(
        "seed {seed}: {kept} of {} no-sync writes survived; log skipped to {:?}",
        lsns.len(),
        recovery.log_skipped_to
    );
    if kept < lsns.len() {
        let skipped = recovery
            .log_skipped_to
            .expect("writes were lost but the log did not move past their LSNs");
        assert!(skipped >= max, "skipped to {skipped}, below {max}");
    }
    let lsn = db.write(pair(1000, 10)).unwrap();
    assert!(
        lsn > max,
        "seed {seed}: LSN {lsn} handed out again (the first Db reached {max})"
    );
    drop(db);
    let db = open(&fs);
    assert_eq!(
        db.get("lsm", &key(1000)).unwrap(),
        Some((marker(1000, 10), lsn))
    );
}

/// A no-sync write returns once the operating system has it, not after an fsync: a run of
/// them must not sync once each.
#[test]
fn no_sync_writes_do_not_sync_each_write() {
    let fs = SimFs::new(20);
    let db = fresh(&fs);
    let no_sync = WriteOptions {
        durability: Some(Durability::NoSync),
    };
    let before = fs.sync_count();
    for i in 0..50 {
        db.write_with(pair(i, 50), no_sync).unwrap();
    }
    let syncs = fs.sync_count() - before;
    let before = fs.sync_count();
    for i in 50..100 {
        db.write(pair(i, 50)).unwrap();
    }
    let synced = fs.sync_count() - before;
    eprintln!("50 no-sync writes: {syncs} syncs; 50 sync writes: {synced} syncs");
    assert!(
        syncs < 10,
        "50 no-sync writes made {syncs} syncs ({synced} for 50 sync writes)"
    );
}

/// A Db with a completed checkpoint, then, above it, a committed and a conflicted commit
/// that carry idempotency keys (the conflict on condition 1) among plain writes. Returns
/// the Db, the two commits and their results.
fn window_setup(fs: &SimFs) -> (Db, Commit, u64, Commit, u64) {
    let db = fresh(fs);
    for i in 0..5 {
        db.write(pair(i, 50)).unwrap();
    }
    db.checkpoint().unwrap();
    let keyed = |sequence, conditions, writes| Commit {
        conditions,
        writes,
        idempotency: Some(IdempotencyKey {
            client: 9,
            sequence,
        }),
        durability: None,
    };
    let exists = Condition {
        table: "lsm".to_string(),
        check: Check::Exists { key: key(0) },
    };
    let absent = Condition {
        table: "btree".to_string(),
        check: Check::Absent { key: key(0) },
    };
    db.write(pair(5, 50)).unwrap();
    let committed = keyed(1, vec![exists.clone()], pair(6, 50));
    let lsn = db.commit(committed.clone()).unwrap();
    db.write(pair(7, 50)).unwrap();
    let conflicted = keyed(2, vec![exists, absent], pair(8, 50));
    let Err(Error::Conflict {
        condition: 1,
        lsn: conflict_lsn,
    }) = db.commit(conflicted.clone())
    else {
        panic!("the second commit did not conflict on condition 1");
    };
    db.write(pair(9, 50)).unwrap();
    (db, committed, lsn, conflicted, conflict_lsn)
}

/// A power loss at each sync of a checkpoint (between its intent and its completion, too):
/// after the reopen, resends of the commits inside the checkpoint's window still get their
/// first results (the conflict with its condition index), and apply nothing.
#[test]
fn idempotent_resend_after_a_crash_inside_a_checkpoint_returns_the_first_result() {
    // The sweep runs until a checkpoint outlives its armed crash rather than over a count
    // taken from a clean run: the spare-segment thread syncs at its own pace, so the
    // number of syncs a checkpoint overlaps differs from run to run.
    let mut intents = 0;
    let mut syncs = 0;
    for point in 0.. {
        assert!(
            point < 1000,
            "the checkpoint never outlived its armed crash"
        );
        let fs = SimFs::new(31 + point);
        let (db, committed, lsn, conflicted, conflict_lsn) = window_setup(&fs);
        let expected = contents(&db);
        fs.set_crash_after_syncs(point);
        if db.checkpoint().is_ok() {
            syncs = point;
            break;
        }
        drop(db);
        fs.disarm_crash();
        fs.restart();
        let db = open(&fs);
        if db.recovery().intent_lsn.is_some() {
            intents += 1;
        }
        let context = format!("crash at checkpoint sync {point}");
        assert_eq!(contents(&db), expected, "{context}");
        let visible = db.visible_lsn();
        assert_eq!(db.commit(committed.clone()).unwrap(), lsn, "{context}");
        let again = db.commit(conflicted.clone());
        assert!(
            matches!(again, Err(Error::Conflict { condition: 1, lsn }) if lsn == conflict_lsn),
            "{context}: {again:?}"
        );
        assert_eq!(db.visible_lsn(), visible, "{context}: a resend was logged");
        assert_eq!(
            contents(&db),
            expected,
            "{context}: a resend applied something"
        );
        // And once more after a checkpoint of the recovered Db and a reopen.
        db.checkpoint().unwrap();
        drop(db);
        let db = open(&fs);
        assert_eq!(db.commit(committed.clone()).unwrap(), lsn, "{context}");
        let again = db.commit(conflicted);
        assert!(
            matches!(again, Err(Error::Conflict { condition: 1, lsn }) if lsn == conflict_lsn),
            "{context}, checkpointed: {again:?}"
        );
    }
    eprintln!("{syncs} crash points, {intents} reopened with an intent");
    assert!(
        intents > 0,
        "no crash fell between an intent and its completion"
    );
}

/// An EIO at each sync of a checkpoint in turn (the state file's intent and completion,
/// each table's files): the checkpoint fails with an error, the Db either goes on writing
/// or refuses clearly, and a reopen, with or without a power loss, holds every acknowledged
/// write.
#[test]
fn failed_sync_at_each_step_of_a_checkpoint_loses_no_acknowledged_write() {
    let fs = SimFs::new(40);
    let db = fresh(&fs);
    for i in 0..30 {
        db.write(pair(i, 200)).unwrap();
    }
    let before = fs.sync_count();
    db.checkpoint().unwrap();
    let syncs = fs.sync_count() - before;
    drop(db);
    let mut poisoned = 0;
    for point in 0..syncs {
        for crash in [false, true] {
            let context = format!("EIO at checkpoint sync {point}, crash {crash}");
            let fs = SimFs::new(41 + point);
            let db = fresh(&fs);
            let mut ledger = Ledger::default();
            for i in 0..30 {
                let lsn = db.write(pair(i, 200)).unwrap();
                ledger.acked.push((i, lsn, 200));
            }
            // Every sync under the data directory but the log's counts.
            fs.inject(
                Fault::new(FaultOp::Sync, FaultError::Eio)
                    .after(point)
                    .under("/db/gen-000001"),
            );
            let result = db.checkpoint();
            let fired = fs.stats().faults_fired_count > 0;
            match &result {
                Err(error) => eprintln!("{context}: {}", describe(error)),
                Ok(_) => assert!(!fired, "{context}: the checkpoint hid a failed sync"),
            }
            fs.clear_faults();
            for i in 30..35 {
                match db.write(pair(i, 200)) {
                    Ok(lsn) => ledger.acked.push((i, lsn, 200)),
                    Err(error) => {
                        assert!(db.poison_cause().is_some(), "{context}: {error}");
                        ledger.refused.push((i, 200));
                    }
                }
            }
            if db.poison_cause().is_some() {
                poisoned += 1;
            }
            verify(
                &contents(&db),
                &ledger,
                &format!("{context}: before reopen"),
            );
            // A second checkpoint either completes or fails clearly.
            if let Err(error) = db.checkpoint() {
                eprintln!("{context}: checkpoint again: {}", describe(&error));
            }
            drop(db);
            if crash {
                fs.crash();
            }
            let db = Db::open(Path::new("/db"), options(&fs))
                .unwrap_or_else(|e| panic!("{context}: reopen: {}", describe(&e)));
            verify(&contents(&db), &ledger, &format!("{context}: reopened"));
            db.checkpoint().unwrap();
            let lsn = db.write(pair(99, 10)).unwrap();
            ledger.acked.push((99, lsn, 10));
            drop(db);
            fs.crash();
            let db = open(&fs);
            verify(
                &contents(&db),
                &ledger,
                &format!("{context}: checkpointed, crashed"),
            );
        }
    }
    eprintln!("{syncs} sync points; the Db refused writes after {poisoned} of them");
}

/// Four writers share group commits when the log's fsync fails: every write in the failed
/// group hears an error (none is acknowledged), every later one is refused, and after a
/// power loss the reopened Db holds every acknowledged write and no batch in part.
#[test]
fn failed_log_fsync_under_concurrent_writers_loses_no_acknowledged_write() {
    for seed in 0..4 {
        let fs = SimFs::new(60 + seed);
        let db = fresh(&fs);
        fs.inject(
            Fault::new(FaultOp::Sync, FaultError::Eio)
                .after(10 + seed * 5)
                .under("/db/wal"),
        );
        let ledger = parking_lot::Mutex::new(Ledger::default());
        std::thread::scope(|scope| {
            for thread in 0..4_u64 {
                let (db, ledger) = (&db, &ledger);
                scope.spawn(move || {
                    for n in 0..40 {
                        let i = thread * 1000 + n;
                        match db.write(pair(i, 80)) {
                            Ok(lsn) => ledger.lock().acked.push((i, lsn, 80)),
                            Err(error) => {
                                // In the failed group: Unknown. After it: the Db's
                                // Poisoned, or the log's if the write reached the log
                                // before the Db heard of the failure.
                                assert!(
                                    matches!(
                                        error,
                                        Error::Unknown(_)
                                            | Error::Poisoned { .. }
                                            | Error::Wal(popdb_wal::Error::Poisoned { .. })
                                    ),
                                    "{error:?}"
                                );
                                ledger.lock().refused.push((i, 80));
                            }
                        }
                    }
                });
            }
        });
        let ledger = ledger.into_inner();
        assert!(
            db.poison_cause().is_some(),
            "seed {seed}: the fault never fired"
        );
        assert!(!ledger.refused.is_empty());
        verify(&contents(&db), &ledger, &format!("seed {seed}: poisoned"));
        drop(db);
        fs.crash();
        let db = open(&fs);
        verify(&contents(&db), &ledger, &format!("seed {seed}: reopened"));
    }
}

/// A read that fails (EIO from a table's files) returns an error saying so, never a panic
/// and never a wrong answer; it does not stop writes, and once the medium reads again so do
/// the Db's reads. An open whose reads fail is refused with an error.
#[test]
fn failed_reads_return_errors_and_leave_the_db_usable() {
    for (table, _) in TABLES {
        let fs = SimFs::new(71);
        let db = fresh(&fs);
        for i in 0..50 {
            db.write(pair(i, 300)).unwrap();
        }
        db.checkpoint().unwrap();
        let id = db.describe(table).unwrap().id;
        let expected = contents(&db);
        drop(db);
        fs.inject(
            Fault::new(FaultOp::Read, FaultError::Eio)
                .persistent()
                .under(format!("/db/gen-000001/t-{id:016x}")),
        );
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Db::open(Path::new("/db"), options(&fs)).map(|db| contents(&db))
        }));
        match result.expect("an open whose reads fail panicked") {
            Ok(found) => assert_eq!(found, expected, "{table}: opened with wrong contents"),
            Err(error) => eprintln!("{table}: open on a failing medium: {}", describe(&error)),
        }
        fs.clear_faults();
        assert_eq!(contents(&open(&fs)), expected, "{table}: reopened");
    }
    for (table, _) in TABLES {
        let fs = SimFs::new(70);
        let db = fresh(&fs);
        let mut ledger = Ledger::default();
        for i in 0..200 {
            let lsn = db.write(pair(i, 300)).unwrap();
            ledger.acked.push((i, lsn, 300));
        }
        db.checkpoint().unwrap();
        drop(db);
        // Reopened, so that reads go to the files, not to memory.
        let db = open(&fs);
        let id = db.describe(table).unwrap().id;
        fs.inject(
            Fault::new(FaultOp::Read, FaultError::Eio)
                .persistent()
                .under(format!("/db/gen-000001/t-{id:016x}")),
        );
        let mut errors = 0;
        for i in (0..200).step_by(37) {
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.get(table, &key(i))));
            match result.expect("a failed read panicked") {
                Ok(found) => assert_eq!(found, Some((marker(i, 300), ledger.acked[i as usize].1))),
                Err(error) => {
                    let text = describe(&error);
                    assert!(text.contains("Input/output"), "{table}: {text}");
                    errors += 1;
                }
            }
        }
        let scan = db.scan(table, &Scan::all());
        if let Err(error) = &scan {
            eprintln!("{table}: scan on a failing medium: {}", describe(error));
            errors += 1;
        }
        eprintln!("{table}: {errors} reads failed");
        // The B+tree maps its file (a fault on the map itself only) and serves reads from
        // it; the LSM reads blocks through the file.
        if table == "lsm" {
            assert!(errors > 0, "{table}: no read reached the medium");
        }
        // Writes go on (they touch only the log and memory).
        let lsn = db.write(pair(500, 10)).unwrap();
        ledger.acked.push((500, lsn, 10));
        fs.clear_faults();
        verify(
            &contents(&db),
            &ledger,
            &format!("{table}: after the reads failed"),
        );
        drop(db);
        let db = open(&fs);
        verify(&contents(&db), &ledger, &format!("{table}: reopened"));
    }
}

/// A transaction that the apply stage applies in part: its B+tree write lands, then the LSM
/// (poisoned by a failed flush) refuses. Readers never see the part; a checkpoint taken
/// afterwards must not persist it either (or the replay would validate the transaction
/// against its own write, abort it, and leave the part behind); after a power loss it is
/// there whole or not at all.
#[test]
fn transaction_applied_in_part_is_never_seen_and_recovers_whole_or_not_at_all() {
    for crash in [false, true] {
        let fs = SimFs::new(80);
        let db = open(&fs);
        // The B+tree first: a lower id, so the apply stage writes to it first.
        for (name, engine) in TABLES.iter().rev() {
            db.create_table(name, TableOptions::new(*engine)).unwrap();
        }
        let mut ledger = Ledger::default();
        for i in 0..20 {
            let lsn = db.write(pair(i, 300)).unwrap();
            ledger.acked.push((i, lsn, 300));
        }
        db.checkpoint().unwrap();
        let id = db.describe("lsm").unwrap().id;
        fs.inject(
            Fault::new(FaultOp::Write, FaultError::Eio)
                .persistent()
                .under(format!("/db/gen-000001/t-{id:016x}")),
        );
        let mut failed = None;
        for i in 20..200 {
            let commit = Commit {
                conditions: vec![Condition {
                    table: "btree".to_string(),
                    check: Check::Absent { key: key(i) },
                }],
                writes: pair(i, 300),
                ..Commit::default()
            };
            match db.commit(commit) {
                Ok(lsn) => ledger.acked.push((i, lsn, 300)),
                Err(error) => {
                    eprintln!("crash {crash}: transaction {i}: {}", describe(&error));
                    ledger.refused.push((i, 300));
                    failed = Some(i);
                    break;
                }
            }
        }
        let failed = failed.expect("the LSM never failed");
        assert_eq!(
            db.get("btree", &key(failed)).unwrap(),
            None,
            "a part is visible"
        );
        verify(&contents(&db), &ledger, "poisoned");
        fs.clear_faults();
        match db.checkpoint() {
            Ok(c) => eprintln!("crash {crash}: checkpoint after the part: {c}"),
            Err(e) => eprintln!("crash {crash}: checkpoint after the part: {}", describe(&e)),
        }
        drop(db);
        if crash {
            fs.crash();
        }
        let db = open(&fs);
        verify(&contents(&db), &ledger, &format!("crash {crash}: reopened"));
        db.checkpoint().unwrap();
        drop(db);
        fs.crash();
        let db = open(&fs);
        verify(
            &contents(&db),
            &ledger,
            &format!("crash {crash}: checkpointed"),
        );
    }
}

/// Creating a table on a full disk (its files cannot be made) fails with an error that says
/// so; after a reopen with room the table exists whole (its creation is in the log) or not
/// at all, and takes writes.
#[test]
fn create_table_on_a_full_disk_fails_clearly_and_recovers() {
    for (engine, crash) in [
        (EngineKind::Lsm, false),
        (EngineKind::Lsm, true),
        (EngineKind::Btree, false),
        (EngineKind::Btree, true),
    ] {
        let fs = SimFs::new(90);
        let db = fresh(&fs);
        let lsn = db.write(pair(0, 10)).unwrap();
        fs.set_capacity(Some(fs.stats().used_size));
        let result = db.create_table("late", TableOptions::new(engine));
        let text = match &result {
            Ok(desc) => panic!("{engine:?}: created {desc:?} on a full disk"),
            Err(error) => describe(error),
        };
        eprintln!("{engine:?}: create on a full disk: {text}");
        assert!(says_disk_full(&text), "{engine:?}: {text}");
        assert!(db.describe("late").is_err());
        assert_eq!(db.get("lsm", &key(0)).unwrap(), Some((marker(0, 10), lsn)));
        drop(db);
        if crash {
            fs.crash();
        }
        fs.set_capacity(None);
        let db = Db::open(Path::new("/db"), options(&fs))
            .unwrap_or_else(|e| panic!("{engine:?}, crash {crash}: {}", describe(&e)));
        assert_eq!(
            db.get("btree", &key(0)).unwrap(),
            Some((marker(0, 10), lsn))
        );
        match db.describe("late") {
            Ok(desc) => {
                assert_eq!(desc.options.engine, engine);
                let mut batch = WriteBatch::new();
                batch.put("late", "k", "v");
                let at = db.write(batch).unwrap();
                assert_eq!(db.get("late", b"k").unwrap(), Some((b"v".to_vec(), at)));
            }
            Err(_) => {
                db.create_table("late", TableOptions::new(engine)).unwrap();
            }
        }
        db.checkpoint().unwrap();
        drop(db);
        fs.crash();
        let db = open(&fs);
        assert!(db.describe("late").is_ok());
    }
}

/// Writes 1..=30 as pairs with a checkpoint after every tenth, then loses power: the
/// B+tree's two metas hold the last two checkpoints and the log through the last is purged.
fn checkpointed_then_crashed(fs: &SimFs) -> Contents {
    let db = fresh(fs);
    for i in 1..=30 {
        db.write(pair(i, 300)).unwrap();
        if i % 10 == 0 {
            db.checkpoint().unwrap();
        }
    }
    let want = contents(&db);
    fs.crash();
    drop(db);
    want
}

fn btree_file(fs: &SimFs) -> std::path::PathBuf {
    let db = open(fs);
    let id = db.describe("btree").unwrap().id;
    drop(db);
    let table = fs
        .file_names(Path::new("/db/gen-000001"))
        .unwrap()
        .into_iter()
        .find(|n| n.ends_with(&format!("{id:016}")))
        .unwrap();
    Path::new("/db/gen-000001").join(table).join("tree.btree")
}

/// Issue 8 regression. Symptom: a bit flipped in the read of a B+tree's meta pages at open
/// made the newer meta fail its checksum; the tree fell back to the older checkpoint and
/// the Db, replaying the log only above its own last checkpoint, answered stale values for
/// every write in between. Root cause: the tree fell back on one read's say-so, and the Db
/// never checked that each table holds its last completed checkpoint. Now the tree reads
/// its metas again before falling back (two reads that differ refuse the open), and the Db
/// refuses a table whose watermark is below its checkpoint. Found by the fault campaign
/// (db/tests/db_fault_loop.rs).
#[test]
fn issue_8_bit_flip_in_a_btree_meta_read_never_answers_stale_values() {
    let mut refused = 0;
    for seed in 0..100 {
        let fs = SimFs::new(seed);
        let want = checkpointed_then_crashed(&fs);
        let file = btree_file(&fs);
        fs.inject(Fault::new(FaultOp::Read, FaultError::BitFlip).under(&file));
        match Db::open(Path::new("/db"), options(&fs)) {
            Ok(db) => assert_eq!(contents(&db), want, "seed {seed}: stale or wrong values"),
            Err(e) => {
                let text = describe(&e);
                assert!(
                    text.contains("differ") || text.contains("corruption"),
                    "seed {seed}: {text}"
                );
                refused += 1;
            }
        }
        fs.clear_faults();
        assert_eq!(contents(&open(&fs)), want, "seed {seed}: after the misread");
    }
    assert!(refused > 0, "no flip hit the newer meta");
}

/// Issue 8 regression, real damage: the newer meta of a B+tree damaged on the medium after
/// the Db's checkpoint completed. Opening at the older meta would answer stale values; the
/// open must refuse and name the table. Damage to the older meta is harmless.
#[test]
fn issue_8_btree_below_its_checkpoint_refuses_the_open() {
    let mut refused = 0;
    for meta in 0..2_u64 {
        let fs = SimFs::new(meta);
        let want = checkpointed_then_crashed(&fs);
        let path = btree_file(&fs);
        {
            use popdb_io::{FileSystem, OpenOptions};
            let file = fs.open(&path, OpenOptions::read_write()).unwrap();
            let at = meta * 4096 + 100;
            let mut byte = [0u8; 1];
            file.read_exact_at(&mut byte, at).unwrap();
            file.write_all_at(&[!byte[0]], at).unwrap();
            file.sync_data().unwrap();
        }
        match Db::open(Path::new("/db"), options(&fs)) {
            Ok(db) => assert_eq!(contents(&db), want, "meta {meta}: stale values"),
            Err(e) => {
                assert!(
                    matches!(e, Error::Corruption { ref file, .. } if file.contains("t-")),
                    "meta {meta}: {e}"
                );
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 1, "damage to the newer meta must refuse the open");
}

/// A bit flipped in the B+tree's mapping of its file at open (the simulator flips the copy
/// the map hands out first): every page read through it is checked against its checksum,
/// so each read answers the right value or an error naming a corruption, never a wrong
/// value, and the Db reads whole once the fault is gone.
#[test]
fn bit_flip_in_the_btree_mapping_never_answers_a_wrong_value() {
    let (mut flipped, mut errors) = (0, 0);
    for seed in 0..100 {
        let fs = SimFs::new(seed);
        let want = checkpointed_then_crashed(&fs);
        let file = btree_file(&fs);
        // Reads of the file at open: both metas, then the map.
        fs.inject(
            Fault::new(FaultOp::Read, FaultError::BitFlip)
                .under(&file)
                .after(1),
        );
        if let Ok(db) = Db::open(Path::new("/db"), options(&fs)) {
            flipped += fs.stats().faults_fired_count;
            for (key, (value, version)) in &want["btree"] {
                match db.get("btree", key) {
                    Ok(found) => assert_eq!(
                        found.as_ref(),
                        Some(&(value.clone(), *version)),
                        "seed {seed}: a wrong value"
                    ),
                    Err(e) => {
                        assert!(describe(&e).contains("corruption"), "seed {seed}: {e}");
                        errors += 1;
                    }
                }
            }
        }
        fs.clear_faults();
        assert_eq!(contents(&open(&fs)), want, "seed {seed}");
    }
    assert!(flipped > 50, "the map was flipped {flipped} times");
    assert!(errors > 0, "no flip landed in a page the reads reach");
}

/// The other side of the check above: a table idle across checkpoints (never written, or
/// not since the last checkpoint) holds every checkpoint too, so the Db reopens with it.
#[test]
fn idle_tables_hold_the_checkpoint_and_reopen() {
    for (busy, _) in TABLES {
        let fs = SimFs::new(1);
        let db = fresh(&fs);
        db.create_table("empty", TableOptions::new(EngineKind::Btree))
            .unwrap();
        db.create_table("empty-lsm", TableOptions::new(EngineKind::Lsm))
            .unwrap();
        for i in 0..12 {
            let mut batch = WriteBatch::new();
            batch.put(busy, key(i), marker(i, 200));
            db.write(batch).unwrap();
            if i % 4 == 3 {
                db.checkpoint().unwrap();
            }
        }
        let want = contents(&db);
        fs.crash();
        drop(db);
        let db = Db::open(Path::new("/db"), options(&fs))
            .unwrap_or_else(|e| panic!("only {busy} written: {e}"));
        assert_eq!(contents(&db), want, "only {busy} written");
    }
}
