//! Determinism of the apply stage: the log alone decides the Db's state. Db A takes a
//! concurrent workload (batches across an LSM and a B+tree table, transactions with key and
//! range conditions that race each other, so some commit and some abort, and a table that
//! is dropped and re-created under the same name on alternating engines). Then A's log is
//! read back record by record and fed, in LSN order, to Db B through `Db::apply_logged` in
//! one go, and to Db C in stretches broken by checkpoints and reopens (clean and after a
//! power loss). A, B and C must end with the same tables (names, ids, options) and the same
//! rows with the same versions, and every outcome B reports must be the one A's callers
//! were told.
//!
//! Replay one case: `DB_DETERMINISM_SEED=<seed> cargo test -p popdb-db --test
//! db_determinism`.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use popdb_db::{
    Applied, Check, Commit, Condition, Db, DbOptions, EngineKind, Entry, Error, IdempotencyKey,
    Outcome, Scan, TableDesc, TableOptions, WriteBatch,
};
use popdb_io::SimFs;
use popdb_testkit::Rng;
use popdb_wal::{Lsn, Record, Wal, WalOptions};

const THREADS: u64 = 4;
const OPS_PER_THREAD: u64 = 120;
/// The table that is dropped and re-created while the others write to it.
const CHURN: &str = "churn";

/// What A's caller was told about the record at an LSN.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Told {
    Committed,
    Conflict { condition: u32 },
    Created(TableDesc),
}

/// Everything a Db holds: the table list and each table's full scan.
type Contents = Vec<(TableDesc, Vec<Entry>)>;

fn wal_options() -> WalOptions {
    WalOptions {
        segment_size: 64 * 1024,
        record_size_max: 60_000,
        ..WalOptions::default()
    }
}

fn options(fs: &SimFs) -> DbOptions {
    let mut options = DbOptions {
        fs: Arc::new(fs.clone()),
        background: false,
        wal: wal_options(),
        // A's log must keep every record: no purge, no checkpoint from the log's size.
        purge_log: false,
        checkpoint_log_bytes: u64::MAX,
        reserve_bytes: 64 * 1024,
        ..DbOptions::default()
    };
    options.lsm.memtable_size_max = 4 * 1024;
    options.lsm.l0_compaction_trigger = 2;
    options
}

fn contents(db: &Db) -> Contents {
    db.tables()
        .into_iter()
        .map(|desc| {
            let rows = db.scan(&desc.name, &Scan::all()).unwrap();
            (desc, rows)
        })
        .collect()
}

fn key(rng: &mut Rng) -> Vec<u8> {
    format!("k{:02}", rng.below(16)).into_bytes()
}

fn value(rng: &mut Rng, tag: &str) -> Vec<u8> {
    let mut value = tag.as_bytes().to_vec();
    value.resize(tag.len() + rng.index(40), b'.');
    value
}

#[test]
fn replicas_fed_the_log_match_the_original() {
    let seeds: Vec<u64> = match std::env::var("DB_DETERMINISM_SEED") {
        Ok(seed) => vec![seed.parse().unwrap()],
        Err(_) => (1..=8).collect(),
    };
    for seed in seeds {
        eprintln!("seed {seed}");
        run(seed);
    }
}

fn run(seed: u64) {
    let fs_a = SimFs::new(seed);
    let a = Db::open(Path::new("/a"), options(&fs_a)).unwrap();
    a.create_table("lsm", TableOptions::new(EngineKind::Lsm))
        .unwrap();
    a.create_table("btree", TableOptions::new(EngineKind::Btree))
        .unwrap();
    let told = workload(&a, seed);
    let expected = contents(&a);
    let last = a.visible_lsn();
    a.close().unwrap();

    let records = read_log(&fs_a, last);
    let conflicts = told
        .values()
        .filter(|t| matches!(t, Told::Conflict { .. }))
        .count();
    let commits = told.values().filter(|t| **t == Told::Committed).count();
    let creates = told
        .values()
        .filter(|t| matches!(t, Told::Created(_)))
        .count();
    eprintln!(
        "seed {seed}: {} records, {commits} commits, {conflicts} conflicts, {creates} creates",
        records.len()
    );
    assert!(conflicts > 0, "the workload produced no conflict");
    for index in [0, 1] {
        assert!(
            told.values()
                .any(|t| *t == Told::Conflict { condition: index }),
            "no conflict on condition {index}"
        );
    }
    assert!(commits > 0, "the workload produced no commit");
    assert!(creates > 3, "the churn table was not re-created");

    // B: every record in one go, on another file system.
    let fs_b = SimFs::new(seed + 1000);
    let b = Db::open(Path::new("/b"), options(&fs_b)).unwrap();
    let mut duplicates = 0;
    for record in &records {
        let lsn = record.id.lsn.0;
        let applied = b.apply_logged(lsn, record.kind, &record.payload).unwrap();
        if let Some(told) = told.get(&lsn) {
            check_applied(lsn, &applied, told);
        }
        // A logged resend of a decided idempotency key answers with the first result.
        let first = match applied {
            Applied::Write(
                Outcome::Committed { lsn: first } | Outcome::ConditionFailed { lsn: first, .. },
            ) if first != lsn => first,
            _ => continue,
        };
        duplicates += 1;
        assert!(
            first < lsn,
            "record {lsn} answered with a later record's result"
        );
        if let Some(told) = told.get(&first) {
            check_applied(first, &applied, told);
        }
    }
    eprintln!("seed {seed}: {duplicates} logged resends of a decided key");
    assert_eq!(b.visible_lsn(), last);
    assert_same("B", &contents(&b), &expected);

    // C: in stretches, checkpointed and reopened (cleanly or after a power loss) between
    // them. C has no log of its own for these records, so a reopen keeps only what the
    // checkpoint just before it holds.
    let fs_c = SimFs::new(seed + 2000);
    let mut c = Some(Db::open(Path::new("/c"), options(&fs_c)).unwrap());
    let mut rng = Rng(seed ^ 0xc);
    let mut at = 0;
    let mut reopens = 0;
    while at < records.len() {
        let stretch = 1 + rng.index(records.len() / 4 + 1);
        let db = c.as_ref().unwrap();
        for record in &records[at..(at + stretch).min(records.len())] {
            let lsn = record.id.lsn.0;
            let applied = db.apply_logged(lsn, record.kind, &record.payload).unwrap();
            if let Some(told) = told.get(&lsn) {
                check_applied(lsn, &applied, told);
            }
        }
        at = (at + stretch).min(records.len());
        let visible = db.visible_lsn();
        assert_eq!(db.checkpoint().unwrap(), visible);
        let db = c.take().unwrap();
        if rng.chance(2) {
            fs_c.crash();
            drop(db);
        } else {
            db.close().unwrap();
        }
        let db = Db::open(Path::new("/c"), options(&fs_c)).unwrap();
        assert_eq!(db.visible_lsn(), visible, "C reopened at another LSN");
        assert_eq!(db.recovery().records_replayed, 0);
        reopens += 1;
        // Feeding goes on from the visible LSN + 1.
        if at < records.len() {
            assert_eq!(records[at].id.lsn.0, visible + 1);
        }
        c = Some(db);
    }
    assert!(reopens > 1);
    let c = c.unwrap();
    assert_eq!(c.visible_lsn(), last);
    assert_same("C", &contents(&c), &expected);

    // A itself, reopened after its log was read, replays to the same state.
    let a = Db::open(Path::new("/a"), options(&fs_a)).unwrap();
    assert_same("A reopened", &contents(&a), &expected);

    // The canary: a replica that misses one record whose writes A still shows must differ,
    // or the comparison above proves nothing.
    let missed = expected
        .iter()
        .flat_map(|(_, rows)| rows.iter().map(|e| e.version))
        .max()
        .unwrap();
    let fs_d = SimFs::new(seed + 3000);
    let d = Db::open(Path::new("/d"), options(&fs_d)).unwrap();
    for record in records.iter().filter(|r| r.id.lsn.0 != missed) {
        d.apply_logged(record.id.lsn.0, record.kind, &record.payload)
            .unwrap();
    }
    assert!(
        contents(&d) != expected,
        "a replica that missed record {missed} matched A"
    );
}

/// Every record of A's log, in LSN order, checked to be contiguous from 1 to `last`.
fn read_log(fs: &SimFs, last: u64) -> Vec<Record> {
    let (wal, _) = Wal::open(Arc::new(fs.clone()), Path::new("/a/wal"), wal_options()).unwrap();
    assert_eq!(wal.last_purged(), None, "A's log was purged");
    let next = wal.next_lsn().0;
    assert_eq!(next, last + 1, "A's log does not end at its visible LSN");
    let mut records = Vec::new();
    let mut from = 1;
    while from < next {
        let to = next.min(from + 256);
        records.extend(wal.read(Lsn(from)..Lsn(to)).unwrap());
        from = to;
    }
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.id.lsn.0, i as u64 + 1, "the log skips an LSN");
    }
    records
}

fn check_applied(lsn: u64, applied: &Applied, told: &Told) {
    match (applied, told) {
        (Applied::Write(Outcome::Committed { lsn: at }), Told::Committed) => {
            assert_eq!(*at, lsn, "record {lsn} committed at another LSN");
        }
        (
            Applied::Write(Outcome::ConditionFailed { lsn: at, condition }),
            Told::Conflict { condition: told },
        ) => {
            assert_eq!(*at, lsn, "record {lsn} aborted at another LSN");
            assert_eq!(condition, told, "record {lsn} failed another condition");
        }
        (Applied::TableCreated(desc), Told::Created(told)) => assert_eq!(desc, told),
        _ => panic!("record {lsn}: the replica applied {applied:?}, A's caller was told {told:?}"),
    }
}

fn assert_same(who: &str, found: &Contents, expected: &Contents) {
    let names = |c: &Contents| c.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(found),
        names(expected),
        "{who}: the table lists differ"
    );
    for ((desc, rows), (_, want)) in found.iter().zip(expected) {
        assert_eq!(
            rows.len(),
            want.len(),
            "{who}: table {} row count",
            desc.name
        );
        for (row, want) in rows.iter().zip(want) {
            assert_eq!(row, want, "{who}: table {}", desc.name);
        }
    }
}

/// Runs the concurrent workload on `db`; returns what each caller was told, by LSN.
fn workload(db: &Db, seed: u64) -> BTreeMap<u64, Told> {
    let told: Mutex<BTreeMap<u64, Told>> = Mutex::default();
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let told = &told;
            scope.spawn(move || {
                let mut rng = Rng(seed * 100 + thread);
                for i in 0..OPS_PER_THREAD {
                    let tag = format!("{thread}-{i}");
                    if let Some((lsn, t)) = step(db, &mut rng, thread, i, &tag) {
                        let previous = told.lock().insert(lsn, t.clone());
                        // Two callers hear of one LSN only by sharing an idempotency key,
                        // and then they hear the same.
                        assert!(
                            previous.is_none_or(|p| p == t),
                            "LSN {lsn} handed out twice"
                        );
                    }
                }
            });
        }
    });
    told.into_inner()
}

/// One operation of one thread; returns the LSN its caller was told of, with what.
fn step(db: &Db, rng: &mut Rng, thread: u64, i: u64, tag: &str) -> Option<(u64, Told)> {
    match rng.below(20) {
        // Thread 0 churns a table: drops it or re-creates it on the other engine.
        0..=2 if thread == 0 => churn(db, rng),
        3 if thread == 0 => {
            if rng.chance(2) {
                db.checkpoint().unwrap();
            } else {
                db.maintenance_step().unwrap();
            }
            None
        }
        0..=7 => batch(db, rng, tag),
        8..=13 => Some(counter(db, rng, thread, i, tag)),
        _ => Some(range(db, rng, tag)),
    }
}

fn churn(db: &Db, rng: &mut Rng) -> Option<(u64, Told)> {
    if db.describe(CHURN).is_ok() {
        db.drop_table(CHURN).unwrap();
        return None;
    }
    let engine = if rng.chance(2) {
        EngineKind::Lsm
    } else {
        EngineKind::Btree
    };
    let mut options = TableOptions::new(engine);
    options.bloom_bits_per_key = 4 + rng.below(8) as u32;
    let desc = db.create_table(CHURN, options).unwrap();
    Some((desc.id, Told::Created(desc)))
}

/// A batch across both tables, now and then into the churning table too.
fn batch(db: &Db, rng: &mut Rng, tag: &str) -> Option<(u64, Told)> {
    let mut batch = WriteBatch::new();
    for _ in 0..=rng.index(5) {
        let table = ["lsm", "btree", CHURN][rng.index(3)];
        if rng.chance(5) {
            batch.delete(table, key(rng));
        } else {
            batch.put(table, key(rng), value(rng, tag));
        }
    }
    match db.write(batch) {
        Ok(lsn) => Some((lsn, Told::Committed)),
        // The churning table was missing, or dropped while the batch was logged.
        Err(Error::UnknownTable(_)) => None,
        Err(e) => panic!("batch {tag}: {e}"),
    }
}

/// Read-modify-write of a shared counter key, guarded by its version; a second condition
/// on the other table that always holds comes first now and then, so the failing
/// condition's index varies. Some commits carry an idempotency key and are resent; some
/// keys are shared by every thread at the same step, so racing commits share a key (the
/// later ones are logged, apply nothing, and answer with the first one's result).
fn counter(db: &Db, rng: &mut Rng, thread: u64, step: u64, tag: &str) -> (u64, Told) {
    let table = if rng.chance(2) { "lsm" } else { "btree" };
    let key = format!("counter{}", rng.below(2)).into_bytes();
    let stale = rng.chance(5);
    let check = match (db.get(table, &key).unwrap(), stale) {
        (Some((_, version)), false) => Check::Version {
            key: key.clone(),
            version,
        },
        (None, false) => Check::Absent { key: key.clone() },
        // Now and then the read is stale on purpose, so the key condition conflicts
        // whatever the threads' timing (races make the rest of the conflicts).
        (Some((_, version)), true) => Check::Version {
            key: key.clone(),
            version: version - 1,
        },
        (None, true) => Check::Exists { key: key.clone() },
    };
    let mut conditions = Vec::new();
    if rng.chance(2) {
        conditions.push(Condition {
            table: "btree".to_string(),
            check: Check::RangeUnchanged {
                start: b"zz".to_vec(),
                end: None,
                since: 0,
            },
        });
    }
    conditions.push(Condition {
        table: table.to_string(),
        check,
    });
    let mut writes = WriteBatch::new();
    writes.put(table, key, value(rng, tag));
    writes.put("lsm", format!("by-{thread}"), value(rng, tag));
    let idempotency = match rng.below(6) {
        0 | 1 => Some(IdempotencyKey {
            client: thread,
            sequence: rng.next(),
        }),
        2 => Some(IdempotencyKey {
            client: 999,
            sequence: step / 4,
        }),
        _ => None,
    };
    let commit = Commit {
        conditions,
        writes,
        idempotency,
        durability: None,
    };
    let result = db.commit(commit.clone());
    if idempotency.is_some() {
        let again = db.commit(commit);
        assert_eq!(format!("{again:?}"), format!("{result:?}"), "resend {tag}");
    }
    told(result, tag)
}

/// A transaction that read a key range at some LSN and writes into it: racing ones
/// conflict on the range condition (index 1, after a key condition that holds).
fn range(db: &Db, rng: &mut Rng, tag: &str) -> (u64, Told) {
    let table = if rng.chance(2) { "lsm" } else { "btree" };
    let since = db.visible_lsn();
    let start = rng.below(12);
    let end = start + 1 + rng.below(4);
    let newest = db
        .scan(
            table,
            &Scan::range(format!("k{start:02}"), format!("k{end:02}")),
        )
        .unwrap()
        .iter()
        .map(|e| e.version)
        .max()
        .unwrap_or(0);
    // Now and then the range is read as of an older LSN than its newest write: certain to
    // conflict.
    let since = if newest > 0 && rng.chance(4) {
        newest - 1
    } else {
        since
    };
    let conditions = vec![
        Condition {
            table: "lsm".to_string(),
            check: Check::RangeUnchanged {
                start: b"zz".to_vec(),
                end: None,
                since: 0,
            },
        },
        Condition {
            table: table.to_string(),
            check: Check::RangeUnchanged {
                start: format!("k{start:02}").into_bytes(),
                end: Some(format!("k{end:02}").into_bytes()),
                since,
            },
        },
    ];
    let mut writes = WriteBatch::new();
    writes.put(
        table,
        format!("k{:02}", start + rng.below(end - start)),
        value(rng, tag),
    );
    if rng.chance(2) {
        writes.delete(if table == "lsm" { "btree" } else { "lsm" }, key(rng));
    }
    told(
        db.commit(Commit {
            conditions,
            writes,
            ..Commit::default()
        }),
        tag,
    )
}

fn told(result: Result<u64, Error>, tag: &str) -> (u64, Told) {
    match result {
        Ok(lsn) => (lsn, Told::Committed),
        Err(Error::Conflict { condition, lsn }) => (lsn, Told::Conflict { condition }),
        Err(e) => panic!("transaction {tag}: {e}"),
    }
}
