//! Crash sweeps on the simulated file system.
//!
//! - Sequential: a deterministic workload of appends, truncates, purges and votes, crashed
//!   at every file-system operation in turn (every sync boundary included), under every
//!   power-loss mode. The recovered log must equal the state after the last acknowledged
//!   operation, or after the one in flight: nothing acknowledged lost, nothing invented,
//!   no truncated record back.
//! - Concurrent: several appenders and a purger, crashed at a random operation; the
//!   recovered log is a prefix of what was appended, holds every record acknowledged as
//!   durable, and never a record from a recycled segment. Recovery itself is crashed too.
//!
//! A failure prints the seed; `WAL_CRASH_SEED=<seed> cargo test -p popdb-wal --test
//! recovery_crash` replays one seed. `WAL_CRASH_SEEDS=<n>` runs more.
#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use popdb_testkit::Rng;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use popdb_io::{CrashMode, FsRef, SimFs};
use popdb_wal::{
    LogId, Lsn, NewRecord, NodeId, Record, RecordKind, SyncPolicy, Term, Wal, WalOptions,
};

/// Payload -> its acknowledgement (LSN, durable), `None` while unanswered or failed.
type Submitted = HashMap<Vec<u8>, Option<(u64, bool)>>;

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

/// The logical content of a log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct LogModel {
    records: BTreeMap<u64, (u64, Vec<u8>)>,
    purged: Option<LogId>,
    vote: Option<Vec<u8>>,
}

impl LogModel {
    fn next_lsn(&self) -> u64 {
        let last = self.records.keys().next_back().copied();
        last.or(self.purged.map(|p| p.lsn.0)).map_or(1, |l| l + 1)
    }

    fn read(wal: &Wal) -> LogModel {
        let purged = wal.last_purged();
        let first = purged.map_or(1, |p| p.lsn.0 + 1);
        let records = wal
            .read(Lsn(first)..wal.next_lsn())
            .unwrap()
            .into_iter()
            .map(|r| (r.id.lsn.0, (r.id.term.0, r.payload)))
            .collect();
        LogModel {
            records,
            purged,
            vote: wal.vote(),
        }
    }
}

enum Op {
    Append(Vec<Vec<u8>>),
    Truncate(u64),
    Purge(u64),
    Vote(Vec<u8>),
}

fn sequential_ops(seed: u64) -> Vec<Op> {
    let mut rng = Rng(seed);
    let mut model = LogModel::default();
    let mut ops = Vec::new();
    for i in 0..40u64 {
        let op = match rng.below(10) {
            0..=5 => Op::Append(
                (0..=rng.below(3))
                    .map(|j| {
                        let len = if rng.below(8) == 0 {
                            2000
                        } else {
                            rng.below(300)
                        } as usize;
                        let mut p = format!("{seed}:{i}:{j}:").into_bytes();
                        p.resize(p.len() + len, (i + j) as u8);
                        p
                    })
                    .collect(),
            ),
            6 => {
                let floor = model.purged.map_or(0, |p| p.lsn.0);
                let next = model.next_lsn();
                if next <= floor + 1 {
                    continue;
                }
                Op::Truncate(floor + 1 + rng.below(next - floor - 1))
            }
            7 => {
                let floor = model.purged.map_or(0, |p| p.lsn.0);
                Op::Purge(floor + 1 + rng.below(model.next_lsn() - floor + 1))
            }
            _ => Op::Vote(format!("vote-{i}").into_bytes()),
        };
        apply(&mut model, &op, i);
        ops.push(op);
    }
    ops
}

/// The term used for op `i`: each op gets its own, so a truncated record that came back
/// would differ from the record that replaced it.
fn apply(model: &mut LogModel, op: &Op, i: u64) {
    match op {
        Op::Append(payloads) => {
            let first = model.next_lsn();
            for (j, p) in payloads.iter().enumerate() {
                model.records.insert(first + j as u64, (i, p.clone()));
            }
        }
        Op::Truncate(from) => {
            model.records.split_off(from);
        }
        Op::Purge(upto) => {
            let id = purge_id(model, *upto, i);
            model.records = model.records.split_off(&(upto + 1));
            model.purged = Some(id);
        }
        Op::Vote(v) => model.vote = Some(v.clone()),
    }
}

fn purge_id(model: &LogModel, upto: u64, i: u64) -> LogId {
    let term = model.records.get(&upto).map_or(i, |(t, _)| *t);
    LogId {
        lsn: Lsn(upto),
        term: Term(term),
        node: NodeId(1),
    }
}

fn seq_options(variant: u64) -> WalOptions {
    WalOptions {
        segment_size: 64 * 1024,
        record_size_max: 4096,
        sync: SyncPolicy::Always,
        spare_segments: 0, // no background thread: the op sequence is deterministic
        prewrite_segments: variant.is_multiple_of(2),
        ..WalOptions::default()
    }
}

/// Runs the ops until the first failure; returns the index of the op that failed (or
/// `ops.len()`) and the model after each completed op.
fn run_sequential(
    fs: &FsRef,
    dir: &Path,
    ops: &[Op],
    options: WalOptions,
) -> (usize, Vec<LogModel>) {
    let mut states = vec![LogModel::default()];
    let Ok((wal, _)) = Wal::open(Arc::clone(fs), dir, options) else {
        return (0, states);
    };
    let mut model = LogModel::default();
    for (i, op) in ops.iter().enumerate() {
        let result = match op {
            Op::Append(payloads) => {
                let first = model.next_lsn();
                let records = payloads
                    .iter()
                    .enumerate()
                    .map(|(j, p)| Record {
                        id: LogId {
                            lsn: Lsn(first + j as u64),
                            term: Term(i as u64),
                            node: NodeId(1),
                        },
                        kind: RecordKind::Normal,
                        payload: p.clone(),
                    })
                    .collect();
                wal.submit_at(records).and_then(|t| t.wait()).map(|_| ())
            }
            Op::Truncate(from) => wal.truncate(Lsn(*from)),
            Op::Purge(upto) => wal.purge(purge_id(&model, *upto, i as u64)),
            Op::Vote(v) => wal.save_vote(v),
        };
        if result.is_err() {
            return (i, states);
        }
        apply(&mut model, op, i as u64);
        states.push(model.clone());
    }
    (ops.len(), states)
}

#[test]
fn recovery_crash_at_every_operation_of_a_sequential_workload() {
    let mut crash_points = 0u64;
    for seed in seeds(16) {
        let ops = sequential_ops(seed);
        if std::env::var("WAL_CRASH_TRACE").is_ok() {
            for (i, op) in ops.iter().enumerate() {
                let text = match op {
                    Op::Append(p) => format!("append {}", p.len()),
                    Op::Truncate(f) => format!("truncate {f}"),
                    Op::Purge(u) => format!("purge {u}"),
                    Op::Vote(_) => "vote".to_string(),
                };
                eprintln!("op {i}: {text}");
            }
        }
        // Count the file-system operations of a run without a crash.
        let sim = SimFs::new(seed);
        let fs: FsRef = Arc::new(sim.clone());
        let dir = Path::new("/db/wal");
        let (done, _) = run_sequential(&fs, dir, &ops, seq_options(seed));
        assert_eq!(done, ops.len(), "seed {seed}: clean run failed");
        let total = sim.op_count();
        for n in 0..total {
            let mode = crash_mode(seed + n);
            let sim = SimFs::new(seed * 1_000_003 + n);
            let fs: FsRef = Arc::new(sim.clone());
            sim.set_armed_crash_mode(mode);
            sim.set_crash_after_ops(n);
            let (failed_at, states) = run_sequential(&fs, dir, &ops, seq_options(seed));
            if sim.is_down() {
                sim.restart();
            } else {
                sim.disarm_crash();
                sim.crash_with(mode);
            }
            if std::env::var("WAL_CRASH_TRACE").is_ok() {
                eprintln!("crash after {n}: files {:?}", sim.file_names(dir));
            }
            let (wal, report) =
                Wal::open(Arc::clone(&fs), dir, seq_options(seed)).unwrap_or_else(|e| {
                    panic!("seed {seed} crash after {n} ops ({mode:?}): open failed: {e}")
                });
            let recovered = LogModel::read(&wal);
            if std::env::var("WAL_CRASH_TRACE").is_ok() {
                eprintln!("report {report:?} next {}", wal.next_lsn());
            }
            let acked = &states[states.len() - 1];
            let mut in_flight = acked.clone();
            if failed_at < ops.len() {
                apply(&mut in_flight, &ops[failed_at], failed_at as u64);
            }
            assert!(
                recovered == *acked || recovered == in_flight,
                "seed {seed} crash after {n} ops ({mode:?}) during op {failed_at}: \
                 recovered {recovered:?}\n acked {acked:?}"
            );
            // The log goes on after recovery.
            let next = wal.next_lsn();
            let done = wal.append(RecordKind::Normal, b"after".to_vec()).unwrap();
            assert_eq!(done.first, next);
            crash_points += 1;
        }
    }
    println!("sequential crash sweep: {crash_points} crash points, 0 violations");
}

#[test]
fn recovery_crash_during_concurrent_appends_and_purges() {
    let mut crash_points = 0u64;
    let mut acked_checked = 0u64;
    for seed in seeds(200) {
        let mut rng = Rng(seed ^ 0xC0FFEE);
        let sim = SimFs::new(seed);
        let fs: FsRef = Arc::new(sim.clone());
        let dir = Path::new("/db/wal");
        let options = WalOptions {
            segment_size: 64 * 1024,
            record_size_max: 4096,
            sync: match rng.below(4) {
                0 => SyncPolicy::Never,
                1 => SyncPolicy::Interval(std::time::Duration::from_micros(200)),
                _ => SyncPolicy::Always,
            },
            spare_segments: rng.below(3) as usize,
            prewrite_segments: rng.below(2) == 0,
            ..WalOptions::default()
        };
        let mode = crash_mode(rng.next());
        sim.set_armed_crash_mode(mode);
        sim.set_crash_after_ops(rng.below(600));
        let submitted: Arc<Mutex<Submitted>> = Arc::default();
        let purge_acked: Arc<Mutex<u64>> = Arc::default();
        if let Ok((wal, _)) = Wal::open(Arc::clone(&fs), dir, options.clone()) {
            let wal = Arc::new(wal);
            let threads: Vec<_> = (0..4u64)
                .map(|t| {
                    let wal = Arc::clone(&wal);
                    let submitted = Arc::clone(&submitted);
                    let purge_acked = Arc::clone(&purge_acked);
                    let mut rng = Rng(seed * 31 + t);
                    std::thread::spawn(move || {
                        for i in 0..150u64 {
                            if t == 0 && i % 25 == 24 {
                                let durable = wal.durable_lsn();
                                if durable > 10 {
                                    let upto = durable - 10;
                                    let id = LogId {
                                        lsn: Lsn(upto),
                                        term: Term(0),
                                        node: NodeId(0),
                                    };
                                    if wal.purge(id).is_err() {
                                        return;
                                    }
                                    let mut p = purge_acked.lock().unwrap();
                                    *p = (*p).max(upto);
                                }
                                continue;
                            }
                            let len = rng.below(1500) as usize;
                            let mut payload = format!("{seed}/{t}/{i}/").into_bytes();
                            payload.resize(payload.len() + len, t as u8);
                            submitted.lock().unwrap().insert(payload.clone(), None);
                            let record = NewRecord {
                                term: Term(0),
                                node: NodeId(0),
                                kind: RecordKind::Normal,
                                payload: payload.clone(),
                            };
                            // Half the appenders lead groups themselves when the writer is
                            // idle; the others always go through the background writer.
                            let result = if t % 2 == 0 {
                                wal.append_records(vec![record])
                            } else {
                                wal.submit(vec![record]).and_then(|t| t.wait())
                            };
                            match result {
                                Ok(done) => {
                                    submitted
                                        .lock()
                                        .unwrap()
                                        .insert(payload, Some((done.first.0, done.durable)));
                                }
                                Err(_) => return,
                            }
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            drop(wal);
        }
        if sim.is_down() {
            sim.restart();
        } else {
            sim.disarm_crash();
            sim.crash_with(mode);
        }
        // Crash recovery itself now and then, then recover for real.
        if rng.below(3) == 0 {
            sim.set_crash_after_ops(rng.below(20));
            let _ = Wal::open(Arc::clone(&fs), dir, options.clone());
            if sim.is_down() {
                sim.restart();
            } else {
                sim.disarm_crash();
                sim.crash_with(mode);
            }
        }
        let (wal, _) = Wal::open(Arc::clone(&fs), dir, options)
            .unwrap_or_else(|e| panic!("seed {seed}: open after crash failed: {e}"));
        let submitted = submitted.lock().unwrap();
        let purged = wal.last_purged().map_or(0, |p| p.lsn.0);
        assert!(
            purged >= *purge_acked.lock().unwrap(),
            "seed {seed}: acknowledged purge lost"
        );
        let next = wal.next_lsn().0;
        let records = wal.read(Lsn(purged + 1)..Lsn(next)).unwrap();
        let mut seen = HashMap::new();
        for r in &records {
            let ack = submitted.get(&r.payload).unwrap_or_else(|| {
                panic!(
                    "seed {seed}: LSN {} holds a payload never appended",
                    r.id.lsn
                )
            });
            if let Some((lsn, _)) = ack {
                assert_eq!(*lsn, r.id.lsn.0, "seed {seed}: record moved");
            }
            assert!(
                seen.insert(r.payload.clone(), r.id.lsn.0).is_none(),
                "seed {seed}: duplicate"
            );
        }
        for (payload, ack) in submitted.iter() {
            if let Some((lsn, true)) = ack
                && *lsn > purged
            {
                assert_eq!(
                    seen.get(payload),
                    Some(lsn),
                    "seed {seed}: durable record at LSN {lsn} lost (mode {mode:?})"
                );
                acked_checked += 1;
            }
        }
        crash_points += 1;
    }
    println!(
        "concurrent crash sweep: {crash_points} crash points, {acked_checked} durable \
         acknowledgements checked, 0 lost"
    );
}

/// A disk that acknowledges every fsync without making anything durable: the canary that
/// proves the sweep can fail. If this ever recovers the acknowledged state, the sweep has
/// stopped checking what it claims to.
#[derive(Debug)]
struct LyingFs(SimFs);

#[derive(Debug)]
struct LyingFile(popdb_io::FileRef);

impl popdb_io::FileSystem for LyingFs {
    fn open(
        &self,
        path: &Path,
        options: popdb_io::OpenOptions,
    ) -> std::io::Result<popdb_io::FileRef> {
        Ok(Arc::new(LyingFile(self.0.open(path, options)?)))
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.0.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.0.rename(from, to)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.0.hard_link(from, to)
    }
    fn read_dir(&self, dir: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
        self.0.read_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        self.0.create_dir_all(dir)
    }
    fn remove_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.0.remove_dir(dir)
    }
    fn exists(&self, path: &Path) -> std::io::Result<bool> {
        self.0.exists(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.0.sync_dir(dir)
    }
    fn lock_dir(&self, dir: &Path) -> std::io::Result<popdb_io::DirLock> {
        self.0.lock_dir(dir)
    }
}

impl popdb_io::File for LyingFile {
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.0.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<usize> {
        self.0.write_at(buf, offset)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn sync_all(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
    fn allocate(&self, len: u64) -> std::io::Result<()> {
        self.0.allocate(len)
    }
    fn evict_cache(&self) -> std::io::Result<()> {
        self.0.evict_cache()
    }
    fn map(&self, offset: u64, len: usize) -> std::io::Result<popdb_io::Mapping> {
        self.0.map(offset, len)
    }
}

#[test]
fn recovery_crash_canary_lying_disk_is_caught() {
    let mut caught = 0;
    for seed in 0..4 {
        let ops = sequential_ops(seed);
        let sim = SimFs::new(seed);
        let lying: FsRef = Arc::new(LyingFs(sim.clone()));
        let dir = Path::new("/db/wal");
        let (done, states) = run_sequential(&lying, dir, &ops, seq_options(seed));
        assert_eq!(
            done,
            ops.len(),
            "seed {seed}: the workload failed on the lying disk"
        );
        sim.crash_with(CrashMode::LoseAllUnsynced);
        let truthful: FsRef = Arc::new(sim.clone());
        let acked = states.last().expect("at least the initial state").clone();
        // Opening may fail outright (say, STATE was never really written): also caught.
        match Wal::open(truthful, dir, seq_options(seed)) {
            Ok((wal, _)) if LogModel::read(&wal) == acked => {}
            _ => caught += 1,
        }
    }
    assert_eq!(
        caught, 4,
        "the crash sweep's checks no longer catch a disk that lies about fsync"
    );
}
