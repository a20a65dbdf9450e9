//! The SQLite-style fault campaign on the Db (issue 8): a fixed workload (batches across an
//! LSM and a B+tree table, conditional transactions, Db checkpoints, background steps), small
//! enough in its sizes that LSM flushes and compactions, B+tree checkpoints and WAL segment
//! rotation all happen in it, runs once per fault point N with the Nth matching I/O
//! operation failing, once or from then on, until a run no longer reaches N. The kinds:
//! EIO and ENOSPC on any operation, short writes, failed fsyncs (the simulator's Linux
//! behaviour: the unsynced bytes may be gone from the medium while reads still show them
//! from the cache, and the file counts as clean), and bit flips in what reads (and maps)
//! return. After each run the Db is dropped and, every other point, the power fails too.
//!
//! Each run may get errors, but: no panic on any thread; every read it answers is one the
//! writes so far allow; no file handle, map view or directory lock outlives the Db; after
//! the fault is cleared and the Db reopened, every acknowledged write is there with its
//! version, writes refused for sure are not, a write whose outcome was unknown is there
//! whole or not at all; and the offline check finds nothing. A reopen without a power loss
//! (the cache intact, as after a process restart) is followed by a power loss and another
//! reopen, which must read the same: what the first reopen answered was durable.
//!
//! A second campaign does the same to recovery itself: the workload runs clean, the power
//! fails, and the Nth operation of the reopen faults (each kind above) or loses power
//! again. An open under a fault either answers right or refuses: a refusal under a bit
//! flip must name a corruption or an unstable read (two reads differed), one under EIO or
//! ENOSPC must not claim a corruption. An open that succeeds takes one more write, and the
//! next open must read the same history.
//!
//! A mixed campaign draws cases from seeds: a fault of any kind anywhere in the workload, a
//! power loss of any mode, a second fault in recovery and sometimes a second power loss
//! inside it. A full-disk campaign fills the disk for real at every size. A canary checks
//! that a lost acknowledged write is caught.
//!
//! Each campaign prints per kind: the fault points exercised, the faults fired, the runs in
//! which the Db returned an error (or refused to open), and the verifications that followed
//! a power loss. Thread scheduling (the log's writer, the spare-segment maker) moves the counts by
//! a few between runs.
//!
//! `DB_FAULT_LOOP_LONG=1`: four seeds (sixteen for recovery, 10,000 mixed cases instead of
//! 1000), and each point both with and without the power loss. `DB_FAULT_LOOP_STEP=<n>`
//! tries every nth point only.
//!
//! Replay a failure from the context it prints, e.g. "read bit flip once at operation 3
//! (seed 3)" in recovery, or "mixed case 1413":
//! `DB_FAULT_LOOP_KIND="read bit flip once" DB_FAULT_LOOP_SEED=3 DB_FAULT_LOOP_FROM=3 cargo
//! test --profile checked -p popdb-db --test db_fault_loop recovery_fails -- --nocapture`, or
//! `DB_FAULT_LOOP_CASES=1413..1414 cargo test --profile checked -p popdb-db --test
//! db_fault_loop mixed`. (Add `DB_FAULT_LOOP_LONG=1` to run both power loss variants of
//! each point; otherwise the power loss alternates by point.) Threads make a few outcomes
//! timing-dependent, so a replay may need a few tries.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use popdb_db::{
    Check, Commit, Condition, Db, DbOptions, EngineKind, Error, Scan, TableOptions, WriteBatch,
};
use popdb_io::{CrashMode, Fault, FaultError, FaultOp, SimFs};
use popdb_testkit::Rng;

const DIR: &str = "/db";
const TABLES: [(&str, EngineKind); 2] = [("lsm", EngineKind::Lsm), ("btree", EngineKind::Btree)];

/// Table -> key -> value.
type Values = BTreeMap<&'static str, BTreeMap<Vec<u8>, Vec<u8>>>;

fn options(fs: &SimFs) -> DbOptions {
    let mut options = DbOptions {
        fs: Arc::new(fs.clone()),
        background: false,
        reserve_bytes: 16 * 1024,
        // Small, so that SST blocks are read from their files, not only from the cache.
        block_cache_bytes: 8 * 1024,
        ..DbOptions::default()
    };
    // The smallest segment: the workload logs more than one, so segments rotate.
    options.wal.segment_size = 64 * 1024;
    options.wal.record_size_max = 60_000;
    options.lsm.memtable_size_max = 2 * 1024;
    options.lsm.l0_compaction_trigger = 2;
    options
}

/// One kind of fault the campaigns inject at every point.
#[derive(Clone, Copy, Debug)]
struct Kind {
    name: &'static str,
    op: FaultOp,
    error: FaultError,
    persistent: bool,
}

const fn kind(name: &'static str, op: FaultOp, error: FaultError, persistent: bool) -> Kind {
    Kind {
        name,
        op,
        error,
        persistent,
    }
}

const KINDS: [Kind; 10] = [
    kind("eio once", FaultOp::Any, FaultError::Eio, false),
    kind("eio persistent", FaultOp::Any, FaultError::Eio, true),
    kind("enospc once", FaultOp::Any, FaultError::Enospc, false),
    kind("enospc persistent", FaultOp::Any, FaultError::Enospc, true),
    kind(
        "short write once",
        FaultOp::Write,
        FaultError::ShortWrite,
        false,
    ),
    kind(
        "short write persistent",
        FaultOp::Write,
        FaultError::ShortWrite,
        true,
    ),
    kind("failed fsync once", FaultOp::Sync, FaultError::Eio, false),
    kind(
        "failed fsync persistent",
        FaultOp::Sync,
        FaultError::Eio,
        true,
    ),
    kind(
        "read bit flip once",
        FaultOp::Read,
        FaultError::BitFlip,
        false,
    ),
    kind(
        "read bit flip persistent",
        FaultOp::Read,
        FaultError::BitFlip,
        true,
    ),
];

impl Kind {
    fn fault(self, countdown: u64) -> Fault {
        let fault = Fault::new(self.op, self.error).after(countdown);
        if self.persistent {
            fault.persistent()
        } else {
            fault
        }
    }
}

/// How a campaign runs: set by the environment (see the file docs).
#[derive(Clone, Copy, Debug)]
struct Mode {
    long: bool,
    step_override: Option<u64>,
    /// Replay: the first fault point (`DB_FAULT_LOOP_FROM`).
    from: u64,
    /// Replay: only the kinds whose name contains this (`DB_FAULT_LOOP_KIND`).
    kind: Option<&'static str>,
    /// Replay: only this seed (`DB_FAULT_LOOP_SEED`).
    seed: Option<u64>,
    /// Replay: only these mixed cases (`DB_FAULT_LOOP_CASES=<first>..<end>`).
    cases: Option<(u64, u64)>,
}

impl Mode {
    fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok();
        Self {
            long: var("DB_FAULT_LOOP_LONG").is_some_and(|v| v != "0"),
            step_override: var("DB_FAULT_LOOP_STEP").map(|s| s.parse().unwrap()),
            from: var("DB_FAULT_LOOP_FROM").map_or(0, |s| s.parse().unwrap()),
            kind: var("DB_FAULT_LOOP_KIND").map(|s| &*s.leak()),
            seed: var("DB_FAULT_LOOP_SEED").map(|s| s.parse().unwrap()),
            cases: var("DB_FAULT_LOOP_CASES").map(|s| {
                let (first, end) = s.split_once("..").expect("<first>..<end>");
                (first.parse().unwrap(), end.parse().unwrap())
            }),
        }
    }

    /// Whether a replay variable narrows the run (the coverage floors then do not apply).
    fn narrowed(self) -> bool {
        self.from > 0 || self.kind.is_some() || self.seed.is_some() || self.cases.is_some()
    }

    fn wants(self, name: &str) -> bool {
        self.kind.is_none_or(|k| name.contains(k))
    }

    fn seed_range(self, count: u64) -> std::ops::Range<u64> {
        self.seed.map_or(0..count, |seed| seed..seed + 1)
    }

    fn seeds(self) -> u64 {
        if self.long { 4 } else { 1 }
    }

    /// Recovery is short, and where a bit flip lands depends on the seed: more seeds.
    fn recovery_seeds(self) -> u64 {
        if self.long { 16 } else { 4 }
    }

    fn mixed_cases(self) -> u64 {
        if self.long { 10_000 } else { 1000 }
    }

    /// The stride between fault points: every point unless overridden.
    fn step(self) -> u64 {
        self.step_override.map_or(1, |step| step.max(1))
    }

    /// Whether the power fails before the reopen that verifies point `index`.
    fn crashes(self, index: u64) -> Vec<bool> {
        if self.long {
            vec![false, true]
        } else {
            vec![index % 2 == 1]
        }
    }
}

/// What one kind's campaign did.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    /// Fault points at which the fault fired.
    points: u64,
    /// Faults fired (a persistent fault fires many times per point).
    fired: u64,
    /// Points at which the Db returned an error (or refused to open).
    errored: u64,
    /// Verifications that followed a power loss.
    crashed: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.points += other.points;
        self.fired += other.fired;
        self.errored += other.errored;
        self.crashed += other.crashed;
    }
}

/// Panics on threads the Db started (the log's writer): unseen otherwise. A test thread's
/// own panic fails its test anyway, so it is not counted here, where it would fail the
/// other tests of the binary too.
static PANICS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static TEST_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Installs the hook (once) and marks the calling thread as a test's: every test of this
/// binary calls it first.
fn count_panics() {
    static HOOK: Once = Once::new();
    TEST_THREAD.with(|t| t.set(true));
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !TEST_THREAD.with(Cell::get) {
                PANICS.fetch_add(1, Ordering::Relaxed);
            }
            previous(info);
        }));
    });
}

fn assert_no_panic(context: &str) {
    assert_eq!(
        PANICS.load(Ordering::Relaxed),
        0,
        "{context}: a thread panicked"
    );
}

/// Every handle, map view and directory lock the Db took is gone.
fn assert_no_leak(fs: &SimFs, context: &str) {
    let stats = fs.stats();
    assert_eq!(
        stats.open_handles_count, 0,
        "{context}: file handles or map views outlive the Db"
    );
    assert_eq!(
        stats.dir_locks_count, 0,
        "{context}: a directory lock outlives the Db"
    );
}

#[derive(Clone, Debug)]
enum Op {
    /// Puts `key` = `value` into both tables, atomically.
    Write(u8, Vec<u8>),
    /// Puts into the LSM table if `key` is absent there (fails if present).
    IfAbsent(u8, Vec<u8>),
    Checkpoint,
    Maintenance,
}

fn workload() -> Vec<Op> {
    let mut ops = Vec::new();
    for i in 0..45_u8 {
        ops.push(match i % 9 {
            4 => Op::Checkpoint,
            7 => Op::Maintenance,
            2 | 5 => Op::IfAbsent(i % 11, vec![b'c'; 40 + usize::from(i) * 10]),
            _ => Op::Write(i % 7, vec![i; 1200 + usize::from(i) * 20]),
        });
    }
    ops
}

/// What became of one write of the workload.
#[derive(Clone, Debug, PartialEq)]
enum Fate {
    /// Acknowledged at this LSN.
    Applied(u64),
    /// Certainly not applied (a refusal or a conflict).
    NotApplied,
    /// May have applied.
    Unknown,
}

fn writes_of(op: &Op) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    match op {
        Op::Write(k, v) => TABLES
            .iter()
            .map(|(t, _)| (*t, vec![b'k', *k], v.clone()))
            .collect(),
        Op::IfAbsent(k, v) => vec![("lsm", vec![b'c', *k], v.clone())],
        _ => Vec::new(),
    }
}

/// What a run of the workload did.
#[derive(Debug, Default)]
struct Run {
    fates: Vec<(usize, Fate)>,
    /// Any operation, read or write, returned an error.
    errored: bool,
    /// Db checkpoints that completed.
    checkpoints: u64,
}

/// Runs the workload, continuing past errors, and reads back after every step: each read
/// that answers must answer what some candidate state holds.
///
/// A power loss armed on `fs` ends the run where it strikes, as it ends the process: the
/// operation it struck is in doubt (its caller never learns the answer), and nothing runs
/// after it (a mapping from before the crash must not be read).
fn run(fs: &SimFs, db: &Db, ops: &[Op], context: &str) -> Run {
    let mut out = Run::default();
    run_into(fs, db, ops, context, &mut out);
    out
}

/// As [`run`], for a run that a power loss may strike on another thread (the log's writer,
/// the spare-segment maker) while this one reads through a mapping from before it: the
/// simulator panics there, since no process outlives its machine. Such a run ends at that
/// panic, with the operation in flight in doubt; any other panic is a failure.
fn run_until_power_loss(fs: &SimFs, db: &Db, ops: &[Op], context: &str) -> Run {
    let mut out = Run::default();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_into(fs, db, ops, context, &mut out);
    }));
    if let Err(panic) = result {
        if !fs.is_down() {
            std::panic::resume_unwind(panic);
        }
        let in_flight = out.fates.last().map_or(0, |(i, _)| i + 1);
        let writes = ops[in_flight..]
            .iter()
            .position(|op| !writes_of(op).is_empty())
            .map(|at| in_flight + at);
        // The first write at or after the last recorded one may have been in flight.
        if let Some(index) = writes {
            out.fates.push((index, Fate::Unknown));
        }
        out.errored = true;
    }
    out
}

fn run_into(fs: &SimFs, db: &Db, ops: &[Op], context: &str, out: &mut Run) {
    for (i, op) in ops.iter().enumerate() {
        let result = match op {
            Op::Checkpoint => {
                match db.checkpoint() {
                    Ok(_) => out.checkpoints += 1,
                    Err(_) => out.errored = true,
                }
                if fs.is_down() {
                    out.errored = true;
                    break;
                }
                out.errored |= !read_all_back(db, ops, &out.fates, context);
                continue;
            }
            Op::Maintenance => {
                out.errored |= db.maintenance_step().is_err();
                if fs.is_down() {
                    out.errored = true;
                    break;
                }
                out.errored |= !read_all_back(db, ops, &out.fates, context);
                continue;
            }
            Op::Write(_, _) => {
                let mut batch = WriteBatch::new();
                for (table, key, value) in writes_of(op) {
                    batch.put(table, key, value);
                }
                db.write(batch)
            }
            Op::IfAbsent(k, v) => db.commit(Commit {
                conditions: vec![Condition {
                    table: "lsm".to_string(),
                    check: Check::Absent {
                        key: vec![b'c', *k],
                    },
                }],
                writes: {
                    let mut batch = WriteBatch::new();
                    batch.put("lsm", vec![b'c', *k], v.clone());
                    batch
                },
                ..Commit::default()
            }),
        };
        if fs.is_down() {
            out.fates.push((i, Fate::Unknown));
            out.errored = true;
            break;
        }
        let fate = match result {
            Ok(lsn) => Fate::Applied(lsn),
            Err(Error::Unknown(_)) => Fate::Unknown,
            // A conflict decided in log order is no failure of the Db.
            Err(Error::Conflict { .. }) => Fate::NotApplied,
            // Refused before logging, or refused by a poisoned Db or log: certainly not
            // applied.
            Err(_) => {
                out.errored = true;
                Fate::NotApplied
            }
        };
        out.errored |= fate == Fate::Unknown;
        out.fates.push((i, fate));
        out.errored |= !read_back(db, ops, &out.fates, &writes_of(op), context);
    }
}

/// Gets each key `writes` touched; false if a read failed. Panics on a wrong answer.
fn read_back(
    db: &Db,
    ops: &[Op],
    fates: &[(usize, Fate)],
    writes: &[(&'static str, Vec<u8>, Vec<u8>)],
    context: &str,
) -> bool {
    let candidates = candidates(ops, fates);
    let mut ok = true;
    for (table, key, _) in writes {
        let Ok(found) = db.get(table, key) else {
            ok = false;
            continue;
        };
        let value = found.map(|(value, _)| value);
        assert!(
            candidates
                .iter()
                .any(|c| c.get(table).and_then(|t| t.get(key)) == value.as_ref()),
            "{context}: get {table} {key:?} after op {} answered a value no write allows",
            fates.len()
        );
    }
    ok
}

/// Scans every table; false if a read failed. Panics on a wrong answer.
fn read_all_back(db: &Db, ops: &[Op], fates: &[(usize, Fate)], context: &str) -> bool {
    let Some(values) = try_values(db) else {
        return false;
    };
    assert!(
        candidates(ops, fates).iter().any(|c| same(c, &values)),
        "{context}: a scan after {} writes answered a state no write allows",
        fates.len()
    );
    true
}

/// The values the Db may hold: the applied writes in order, and any subset of the unknown
/// ones (at most a few, after which the Db is poisoned). Conditional writes re-check their
/// condition against the candidate state.
fn candidates(ops: &[Op], fates: &[(usize, Fate)]) -> Vec<Values> {
    let unknown: Vec<usize> = fates
        .iter()
        .filter(|(_, f)| *f == Fate::Unknown)
        .map(|(i, _)| *i)
        .collect();
    assert!(
        unknown.len() <= 6,
        "{} writes of unknown outcome",
        unknown.len()
    );
    let mut out = Vec::new();
    for mask in 0..(1_u32 << unknown.len()) {
        let mut values = Values::new();
        for (i, fate) in fates {
            let apply = match fate {
                Fate::Applied(_) => true,
                Fate::NotApplied => false,
                Fate::Unknown => {
                    let bit = unknown.iter().position(|u| u == i).unwrap();
                    mask & (1 << bit) != 0
                }
            };
            if !apply {
                continue;
            }
            if let Op::IfAbsent(k, _) = &ops[*i]
                && values
                    .get("lsm")
                    .is_some_and(|t| t.contains_key(&vec![b'c', *k]))
            {
                continue; // Its condition fails in this candidate.
            }
            for (table, key, value) in writes_of(&ops[*i]) {
                values.entry(table).or_default().insert(key, value);
            }
        }
        out.push(values);
    }
    out
}

/// Every table's values, or `None` if a read failed.
fn try_values(db: &Db) -> Option<Values> {
    let mut values = Values::new();
    for (table, _) in TABLES {
        for entry in db.scan(table, &Scan::all()).ok()? {
            values
                .entry(table)
                .or_default()
                .insert(entry.key, entry.value);
        }
    }
    Some(values)
}

/// The same values, empty tables aside.
fn same(a: &Values, b: &Values) -> bool {
    let mut a = a.clone();
    a.retain(|_, t| !t.is_empty());
    let mut b = b.clone();
    b.retain(|_, t| !t.is_empty());
    a == b
}

fn values_and_versions(db: &Db) -> (Values, BTreeMap<(&'static str, Vec<u8>), u64>) {
    let mut values = Values::new();
    let mut versions = BTreeMap::new();
    for (table, _) in TABLES {
        for entry in db.scan(table, &Scan::all()).unwrap() {
            versions.insert((table, entry.key.clone()), entry.version);
            values
                .entry(table)
                .or_default()
                .insert(entry.key, entry.value);
        }
    }
    (values, versions)
}

/// After the faulty run: the reopened Db holds one of the candidates, acknowledged
/// versions included, the offline check is clean, and nothing is left open. Returns what
/// the Db held.
fn verify(fs: &SimFs, ops: &[Op], fates: &[(usize, Fate)], context: &str) -> Values {
    let db = Db::open(Path::new(DIR), options(fs))
        .unwrap_or_else(|e| panic!("{context}: reopen without faults failed: {e}"));
    let (values, versions) = values_and_versions(&db);
    let candidates = candidates(ops, fates);
    assert!(
        candidates.iter().any(|c| same(c, &values)),
        "{context}: the Db holds none of the {} possible states; fates {fates:?}",
        candidates.len()
    );
    // An acknowledged write that is still the last to its key carries its LSN.
    for (i, fate) in fates {
        let Fate::Applied(lsn) = fate else { continue };
        for (table, key, value) in writes_of(&ops[*i]) {
            let later = fates.iter().any(|(j, f)| {
                j > i
                    && *f != Fate::NotApplied
                    && writes_of(&ops[*j])
                        .iter()
                        .any(|(t, k, _)| *t == table && *k == key)
            });
            if !later && values.get(table).and_then(|t| t.get(&key)) == Some(&value) {
                assert_eq!(versions[&(table, key.clone())], *lsn, "{context}: version");
            }
        }
    }
    db.close().unwrap();
    assert_no_leak(fs, &format!("{context}, after the verifying reopen"));
    let report = popdb_db::check(Path::new(DIR), options(fs)).unwrap();
    assert!(
        report.problems.is_empty(),
        "{context}: the check found problems: {:?}",
        report.problems
    );
    assert_no_leak(fs, &format!("{context}, after the check"));
    assert_no_panic(context);
    values
}

/// A new Db with its tables, outside the fault's reach.
fn fresh(fs: &SimFs) -> Db {
    let db = Db::open(Path::new(DIR), options(fs)).unwrap();
    for (name, engine) in TABLES {
        db.create_table(name, TableOptions::new(engine)).unwrap();
    }
    db
}

fn seed_of(seed: u64, n: u64) -> u64 {
    seed.wrapping_mul(1_000_003).wrapping_add(n)
}

/// One kind's loop over fault points during the workload.
fn workload_loop(mode: Mode, kind: Kind, seed: u64, ops: &[Op]) -> Tally {
    let mut tally = Tally::default();
    let mut n = mode.from;
    loop {
        for crash in mode.crashes(n / mode.step()) {
            let context = format!(
                "{} at operation {n} (seed {seed}), power loss {crash}",
                kind.name
            );
            let fs = SimFs::new(seed_of(seed, n));
            let db = fresh(&fs);
            fs.inject(kind.fault(n));
            let run = run(&fs, &db, ops, &context);
            drop(db);
            assert_no_leak(&fs, &context);
            let fired = fs.stats().faults_fired_count;
            fs.clear_faults();
            if fired == 0 {
                return tally;
            }
            tally.points += 1;
            tally.fired += fired;
            tally.errored += u64::from(run.errored);
            if crash {
                tally.crashed += 1;
                fs.crash();
            }
            let settled = verify(&fs, ops, &run.fates, &context);
            if !crash {
                // The reopen ran with the cache intact (a process restart, not a power
                // loss), so after a failed fsync it may have read bytes the medium lost.
                // What it answered and built on must be durable all the same.
                tally.crashed += 1;
                fs.crash();
                let context = format!("{context}, then a power loss after the reopen");
                let after = verify(&fs, ops, &run.fates, &context);
                assert!(
                    same(&settled, &after),
                    "{context}: the power loss changed what the Db reads"
                );
            }
        }
        n += mode.step();
    }
}

/// How a refused open describes itself.
fn claims_corruption(error: &Error) -> bool {
    match error {
        Error::Corruption { .. }
        | Error::Lsm(popdb_lsm::Error::Corruption(_))
        | Error::Btree(popdb_btree::Error::Corruption(_))
        | Error::Wal(popdb_wal::Error::Corruption(_)) => true,
        Error::Poisoned { cause } => claims_corruption(cause),
        _ => false,
    }
}

/// The write made on a Db opened under a fault: a key no workload op touches.
fn after_open_op() -> Op {
    Op::Write(200, vec![0xee; 300])
}

/// What an open under a fault did.
struct UnderFault {
    refused: bool,
    /// The fate of [`after_open_op`] (not applied if the open was refused).
    fate: Fate,
    /// What the opened Db read before that write, if every read answered.
    seen: Option<Values>,
}

/// Whether a refusal says two reads of the same bytes differed (an i/o error of kind
/// `InvalidData`): the precise answer to a flip seen once, which an engine tells from damage
/// on the medium by reading again before it cuts a torn-looking tail.
fn claims_unstable_read(error: &Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        let io = e
            .downcast_ref::<std::io::Error>()
            .or_else(|| e.downcast_ref::<Arc<std::io::Error>>().map(AsRef::as_ref));
        if io.is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData) {
            return true;
        }
        source = e.source();
    }
    false
}

/// Opens the Db under a fault (or an armed power loss) and checks what it answers: reads
/// right when it opens, an error that names what happened when it refuses. An open Db
/// then takes one more write, so that whatever recovery built under the fault is built on.
///
/// A power loss armed in recovery may strike on another thread while this one reads
/// through a mapping from before it; the simulator panics there (see
/// [`run_until_power_loss`]), and the open counts as refused with its write in doubt.
fn open_under_fault(
    fs: &SimFs,
    kind: Option<Kind>,
    ops: &[Op],
    fates: &[(usize, Fate)],
    context: &str,
) -> UnderFault {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        open_under_fault_inner(fs, kind, ops, fates, context)
    }));
    match result {
        Ok(under) => under,
        Err(panic) if !fs.is_down() => std::panic::resume_unwind(panic),
        Err(_) => UnderFault {
            refused: true,
            fate: Fate::Unknown,
            seen: None,
        },
    }
}

fn open_under_fault_inner(
    fs: &SimFs,
    kind: Option<Kind>,
    ops: &[Op],
    fates: &[(usize, Fate)],
    context: &str,
) -> UnderFault {
    let db = match Db::open(Path::new(DIR), options(fs)) {
        Ok(db) => db,
        Err(error) => {
            // A refusal caused by the power loss says that, whatever else was armed.
            let kind = kind.filter(|_| !fs.is_down());
            match kind.map(|k| k.error) {
                Some(FaultError::BitFlip) => assert!(
                    claims_corruption(&error) || claims_unstable_read(&error),
                    "{context}: a bit flip refused the open without naming a corruption or \
                     an unstable read: {error}"
                ),
                Some(FaultError::Eio | FaultError::Enospc) => assert!(
                    !claims_corruption(&error),
                    "{context}: an i/o error refused the open as a corruption: {error}"
                ),
                _ => {}
            }
            return UnderFault {
                refused: true,
                fate: Fate::NotApplied,
                seen: None,
            };
        }
    };
    let seen = try_values(&db);
    if let Some(values) = &seen {
        assert!(
            candidates(ops, fates).iter().any(|c| same(c, values)),
            "{context}: the Db opened under the fault reads a state no write allows"
        );
    }
    let extra = after_open_op();
    let mut batch = WriteBatch::new();
    for (table, key, value) in writes_of(&extra) {
        batch.put(table, key, value);
    }
    let fate = match db.write(batch) {
        Ok(lsn) => Fate::Applied(lsn),
        Err(Error::Unknown(_)) => Fate::Unknown,
        Err(_) => Fate::NotApplied,
    };
    drop(db);
    UnderFault {
        refused: false,
        fate,
        seen,
    }
}

/// The workload's ops and fates with the write made after an open under a fault.
fn with_after_open(
    ops: &[Op],
    fates: &[(usize, Fate)],
    fate: Fate,
) -> (Vec<Op>, Vec<(usize, Fate)>) {
    let mut ops = ops.to_vec();
    let mut fates = fates.to_vec();
    fates.push((ops.len(), fate));
    ops.push(after_open_op());
    (ops, fates)
}

/// Recovery settles every in-doubt write: what a Db opened under a fault read, the next
/// open reads too (with the write made in between, if it applied). An in-doubt write
/// seen there and gone here, or the reverse, is a reader seeing history change.
fn assert_settled(fs: &SimFs, seen: &Values, fate: &Fate, context: &str) {
    let db = Db::open(Path::new(DIR), options(fs)).unwrap();
    let values = try_values(&db).unwrap();
    drop(db);
    let mut with = seen.clone();
    for (table, key, value) in writes_of(&after_open_op()) {
        with.entry(table).or_default().insert(key, value);
    }
    let ok = match fate {
        Fate::Applied(_) => same(&with, &values),
        Fate::NotApplied => same(seen, &values),
        Fate::Unknown => same(&with, &values) || same(seen, &values),
    };
    assert!(
        ok,
        "{context}: the reopen reads a different history than the open under the fault"
    );
}

/// One kind's loop over fault points during recovery (`None`: a power loss there).
fn recovery_loop(mode: Mode, kind: Option<Kind>, seed: u64, ops: &[Op]) -> Tally {
    let name = kind.map_or("power loss", |k| k.name);
    let mut tally = Tally::default();
    let mut n = mode.from;
    loop {
        for crash in mode.crashes(n / mode.step()) {
            let context =
                format!("recovery, {name} at operation {n} (seed {seed}), power loss {crash}");
            let fs = SimFs::new(seed_of(seed, n));
            let db = fresh(&fs);
            let clean = run(&fs, &db, ops, &context);
            assert!(!clean.errored, "{context}: the run without faults failed");
            // A power loss, so that recovery has a log to replay and a tail to check.
            fs.crash();
            drop(db);
            let crashes = fs.stats().crashes_count;
            match kind {
                Some(kind) => fs.inject(kind.fault(n)),
                None => fs.set_crash_after_ops(n),
            }
            let under = open_under_fault(&fs, kind, ops, &clean.fates, &context);
            assert_no_leak(&fs, &context);
            let stats = fs.stats();
            let fired = stats.faults_fired_count + (stats.crashes_count - crashes);
            fs.clear_faults();
            fs.disarm_crash();
            fs.restart();
            if fired == 0 {
                return tally;
            }
            tally.points += 1;
            tally.fired += fired;
            tally.errored += u64::from(under.refused);
            if crash {
                tally.crashed += 1;
                fs.crash();
            }
            let (ops, fates) = with_after_open(ops, &clean.fates, under.fate.clone());
            verify(&fs, &ops, &fates, &context);
            if let Some(seen) = &under.seen {
                assert_settled(&fs, seen, &under.fate, &context);
            }
        }
        n += mode.step();
    }
}

/// One case of the mixed campaign, all drawn from `seed`: a fault of any kind at any point
/// of the workload and, one time in three, a power loss in the middle of one of its
/// operations; a power loss of any mode; a second fault in the recovery and, one time in
/// three, a power loss inside it; then the verifying reopen.
fn mixed_case(seed: u64, ops: &[Op]) -> Tally {
    let mut rng = Rng(seed);
    let first = KINDS[rng.index(KINDS.len())];
    let n1 = rng.below(if first.op == FaultOp::Any { 500 } else { 160 });
    let mode = [
        CrashMode::Random,
        CrashMode::LoseAllUnsynced,
        CrashMode::KeepAll,
    ][rng.index(3)];
    let second = KINDS[rng.index(KINDS.len())];
    let n2 = rng.below(if second.op == FaultOp::Any { 50 } else { 25 });
    let crash_at = rng.chance(3).then(|| rng.below(16));
    let crash_in_run = rng.chance(3).then(|| rng.below(450));
    let context = format!(
        "mixed case {seed}: {} at {n1}, power loss in the run at {crash_in_run:?}, power \
         loss {mode:?}, {} at {n2} of recovery, power loss in recovery at {crash_at:?}",
        first.name, second.name
    );
    let fs = SimFs::new(seed);
    let db = fresh(&fs);
    fs.inject(first.fault(n1));
    if let Some(at) = crash_in_run {
        // Struck in the middle of an operation; the Db then runs on a dead file system.
        fs.set_crash_after_ops(at);
    }
    let run = run_until_power_loss(&fs, &db, ops, &context);
    drop(db);
    assert_no_leak(&fs, &context);
    let mut tally = Tally {
        fired: fs.stats().faults_fired_count,
        errored: u64::from(run.errored),
        crashed: 1 + fs.stats().crashes_count,
        ..Tally::default()
    };
    fs.clear_faults();
    fs.disarm_crash();
    fs.restart();
    fs.crash_with(mode);
    let before = fs.stats();
    fs.inject(second.fault(n2));
    if let Some(at) = crash_at {
        fs.set_crash_after_ops(at);
    }
    let under = open_under_fault(&fs, Some(second), ops, &run.fates, &context);
    assert_no_leak(&fs, &context);
    let after = fs.stats();
    tally.fired += after.faults_fired_count - before.faults_fired_count;
    tally.crashed += after.crashes_count - before.crashes_count;
    tally.errored += u64::from(under.refused);
    tally.points = u64::from(tally.fired > 0);
    fs.clear_faults();
    fs.disarm_crash();
    fs.restart();
    let (ops, fates) = with_after_open(ops, &run.fates, under.fate.clone());
    verify(&fs, &ops, &fates, &context);
    if let Some(seen) = &under.seen {
        assert_settled(&fs, seen, &under.fate, &context);
    }
    tally
}

/// The disk fills for real: the capacity is what the fresh Db holds plus `k` times this,
/// for k = 0, 1, ... until the workload fits.
const CAPACITY_STEP_SIZE: u64 = 1024;

/// A full disk at every size (not an injected error: writes that cross the capacity write
/// what fits and return short, then ENOSPC): the run refuses what does not fit; an open on
/// the still-full disk answers right or refuses without claiming a corruption; once space
/// is freed the reopen holds every acknowledged write and checks clean.
fn capacity_loop(mode: Mode, seed: u64, ops: &[Op]) -> Tally {
    let disk_full = kind("disk full", FaultOp::Any, FaultError::Enospc, true);
    let mut tally = Tally::default();
    let mut k = 0;
    loop {
        assert!(k < 1000, "the workload never fit");
        for crash in mode.crashes(k / mode.step()) {
            let context = format!("disk full at +{k} KiB (seed {seed}), power loss {crash}");
            let fs = SimFs::new(seed_of(seed, k));
            let db = fresh(&fs);
            fs.set_capacity(Some(fs.stats().used_size + k * CAPACITY_STEP_SIZE));
            let run = run(&fs, &db, ops, &context);
            drop(db);
            assert_no_leak(&fs, &context);
            if !run.errored {
                return tally;
            }
            tally.points += 1;
            tally.errored += 1;
            if crash {
                tally.crashed += 1;
                fs.crash();
            }
            let under = open_under_fault(&fs, Some(disk_full), ops, &run.fates, &context);
            assert_no_leak(&fs, &context);
            fs.set_capacity(None);
            let (ops, fates) = with_after_open(ops, &run.fates, under.fate.clone());
            verify(&fs, &ops, &fates, &context);
            if let Some(seen) = &under.seen {
                assert_settled(&fs, seen, &under.fate, &context);
            }
        }
        k += mode.step();
    }
}

fn report(title: &str, rows: &[(&str, Tally)], elapsed: Duration) -> Tally {
    let mut total = Tally::default();
    let mut out = format!(
        "{title} ({:.1} s)\n{:<26} {:>7} {:>7} {:>8} {:>11}\n",
        elapsed.as_secs_f64(),
        "kind",
        "points",
        "fired",
        "errored",
        "power loss"
    );
    for (name, tally) in rows {
        total.add(*tally);
        writeln!(
            out,
            "{name:<26} {:>7} {:>7} {:>8} {:>11}",
            tally.points, tally.fired, tally.errored, tally.crashed
        )
        .unwrap();
    }
    writeln!(
        out,
        "{:<26} {:>7} {:>7} {:>8} {:>11}",
        "total", total.points, total.fired, total.errored, total.crashed
    )
    .unwrap();
    eprint!("{out}");
    total
}

#[expect(
    clippy::disallowed_methods,
    reason = "the campaign reports its own wall time; nothing depends on it"
)]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// The workload reaches every path the campaign claims to cover: a test that silently
/// stopped flushing, compacting, checkpointing or rotating segments would cover less.
#[test]
fn workload_reaches_flush_compaction_checkpoints_and_segment_rotation() {
    count_panics();
    let fs = SimFs::new(0);
    let db = fresh(&fs);
    let run = run(&fs, &db, &workload(), "the workload without faults");
    assert!(!run.errored);
    let stats = db.stats();
    let work = |table: &str| {
        stats
            .tables
            .iter()
            .find(|t| t.desc.name == table)
            .unwrap()
            .work
    };
    let (lsm, btree) = (work("lsm"), work("btree"));
    eprintln!(
        "workload: {} Db checkpoints; lsm {} flushes, {} compactions; btree {} checkpoints; \
         wal {} segments created, {} recycled, {} syncs; {} I/O operations counted",
        run.checkpoints,
        lsm.flushes,
        lsm.compactions,
        btree.checkpoints,
        stats.wal.segments_created,
        stats.wal.segments_recycled,
        stats.wal.syncs,
        fs.op_count()
    );
    assert!(run.checkpoints >= 3, "{} Db checkpoints", run.checkpoints);
    assert!(lsm.flushes >= 3, "{} LSM flushes", lsm.flushes);
    assert!(lsm.compactions >= 1, "{} LSM compactions", lsm.compactions);
    assert!(
        btree.checkpoints >= 3,
        "{} B+tree checkpoints",
        btree.checkpoints
    );
    assert!(
        stats.wal.segments_created >= 2,
        "{} WAL segments created: the log never rotated",
        stats.wal.segments_created
    );
    assert!(
        stats.wal.segments_recycled >= 1,
        "no WAL segment was purged after a checkpoint"
    );
    drop(db);
    assert_no_leak(&fs, "the workload without faults");
}

#[test]
fn every_io_operation_fails_in_turn() {
    count_panics();
    let mode = Mode::from_env();
    let ops = workload();
    let started = now();
    let mut rows = Vec::new();
    for kind in KINDS.into_iter().filter(|k| mode.wants(k.name)) {
        let mut tally = Tally::default();
        for seed in mode.seed_range(mode.seeds()) {
            tally.add(workload_loop(mode, kind, seed, &ops));
        }
        assert!(
            tally.points > 0 || mode.narrowed(),
            "{}: no fault point fired",
            kind.name
        );
        rows.push((kind.name, tally));
    }
    let total = report(
        &format!("fault points in the workload, {mode:?}"),
        &rows,
        started.elapsed(),
    );
    assert!(
        total.points > 300 || mode.narrowed(),
        "only {} fault points",
        total.points
    );
}

#[test]
fn recovery_fails_at_every_io_operation_in_turn() {
    count_panics();
    let mode = Mode::from_env();
    let ops = workload();
    let started = now();
    let mut rows = Vec::new();
    let kinds = KINDS.iter().map(|k| Some(*k)).chain([None]);
    for kind in kinds {
        let name = kind.map_or("power loss", |k| k.name);
        if !mode.wants(name) {
            continue;
        }
        let mut tally = Tally::default();
        for seed in mode.seed_range(mode.recovery_seeds()) {
            tally.add(recovery_loop(mode, kind, seed, &ops));
        }
        rows.push((name, tally));
    }
    let total = report(
        &format!("fault points in recovery, {mode:?}"),
        &rows,
        started.elapsed(),
    );
    assert!(
        total.points > 40 || mode.narrowed(),
        "only {} fault points in recovery",
        total.points
    );
}

#[test]
fn mixed_faults_and_power_losses_in_the_workload_and_in_recovery() {
    count_panics();
    let mode = Mode::from_env();
    let ops = workload();
    let started = now();
    let (first, end) = mode.cases.unwrap_or((0, mode.mixed_cases()));
    let cases = end.saturating_sub(first);
    let mut total = Tally::default();
    for seed in first..end {
        total.add(mixed_case(seed, &ops));
    }
    report(
        &format!("mixed cases {first}..{end}, {mode:?}"),
        &[("fault, loss, fault (+loss)", total)],
        started.elapsed(),
    );
    assert!(
        total.points > cases / 2,
        "only {} cases fired a fault",
        total.points
    );
}

#[test]
fn full_disk_at_every_size() {
    count_panics();
    let mode = Mode::from_env();
    let ops = workload();
    let started = now();
    let mut tally = Tally::default();
    for seed in mode.seed_range(mode.seeds()) {
        tally.add(capacity_loop(mode, seed, &ops));
    }
    report(
        &format!("full disk, {mode:?}"),
        &[("capacity", tally)],
        started.elapsed(),
    );
    assert!(
        tally.points > 20 || mode.narrowed(),
        "only {} sizes refused a write",
        tally.points
    );
}

/// The canary: a model that forgets an acknowledged write must be caught, or the checks
/// above prove nothing.
#[test]
#[should_panic(expected = "holds none of the")]
fn canary_a_lost_acknowledged_write_is_caught() {
    // Its panic is expected: marked as a test thread's, it does not fail the others.
    count_panics();
    let fs = SimFs::new(0);
    let db = fresh(&fs);
    let ops = workload();
    let mut run = run(&fs, &db, &ops, "canary");
    drop(db);
    // The last acknowledged write: no later one hides it, so pretending it was refused
    // must make the Db's state impossible.
    let last = run
        .fates
        .iter_mut()
        .rev()
        .find(|(_, fate)| matches!(fate, Fate::Applied(_)))
        .unwrap();
    last.1 = Fate::NotApplied;
    verify(&fs, &ops, &run.fates, "canary");
}
