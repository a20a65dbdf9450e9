//! Crash and fault tests of the tree on the simulated file system.
//!
//! One seeded workload (batches, checkpoints at, below and above the last LSN, maintenance
//! steps, read views held across compactions, clean reopens that replay the log) runs with
//! tiny options, so that it flushes, compacts and moves files down the levels; a second
//! workload writes big keys so that its manifest edits are large and the manifest rotates.
//! A dry run of each checks it does all that, and counts its operations. Then:
//! - crash: a power loss strikes at every counted operation (writes, syncs, creating opens,
//!   renames, removes, `set_len`; not only syncs), in each crash mode; for every fourth
//!   point, a second power loss strikes at each operation of the reopen that follows; and in
//!   the rotation workload, at every operation around each rotation;
//! - faults: each fault kind (EIO and ENOSPC on writes, syncs (`sync_data` and `sync_dir`),
//!   opens, renames and `set_len`; EIO on removes; short writes; EIO and bit flips on
//!   reads) fires on every Nth operation of its kind. The failing call must return an error,
//!   never panic; a failure in the files leaves the tree poisoned (every later write, checkpoint
//!   and maintenance step gets `Poisoned`, and nothing more is applied) while reads of what
//!   was visible stay exact, in fresh views and in views held from before. A fault the tree
//!   absorbs (a short write, a failed removal of an obsolete file) must change nothing.
//!
//! After either, the tree is reopened (after a crash, after clearing the faults, or after a
//! fault and then a power loss) and [`recover`] checks: the watermark is at least the last
//! checkpoint that returned `Ok` and at most the last one attempted; the tree reads exactly
//! the model at its watermark; the directory holds no debris (orphan SST, old manifest,
//! `CURRENT.tmp`); replaying the batches above the watermark (as the Db replays its log)
//! gives the full state; the tree keeps working and reopens at its new watermark.
//!
//! The model of an apply: an error means the batch was not applied. A flush or compaction
//! the write stalled on runs after the batch became visible; if it fails, the apply still
//! returns `Ok` (the owner's log holds the batch and the model takes it) and the tree is
//! poisoned, which the next call reports as `Poisoned`.
//!
//! Knobs: `TREE_FAULT_SEEDS=N` runs seeds 0..N (default 1); `TREE_FAULT_STRIDE=N` fires a
//! fault on every Nth operation of its kind (default 5); `TREE_FAULT_CRASH_STRIDE=N` crashes
//! at every Nth counted operation (default 1: every one); `TREE_FAULT_RECOVERY_STRIDE=N`
//! crashes during recovery after every Nth crash point (default 4). A failing case prints
//! its replay,
//! `TREE_FAULT_CASE='<case>' cargo test --profile checked -p popdb-lsm --test
//! recovery_tree_faults -- --nocapture`, which runs that case alone.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod tree_common;

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::Path;
use std::sync::Arc;

use popdb_io::{CrashMode, Fault, FaultError, FaultOp, FsRef, SimFs};
use popdb_lsm::{Error, Progress, ReadView, Tree};
use popdb_testkit::Rng;

use tree_common::{Draw, Model, assert_no_debris, big_key, check_view, tiny_options_for};

const DIR: &str = "/faults/tree";

fn dir() -> &'static Path {
    Path::new(DIR)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |s| s.parse().unwrap())
}

// ---------------------------------------------------------------------------------------------
// The workloads.

/// Which workload a case runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Small batches: flushes, compactions, trivial moves, checkpoints, reopens.
    Main,
    /// As `Main` plus big keys, so that the manifest rotates.
    Rotation,
}

impl Kind {
    fn steps(self) -> usize {
        match self {
            Kind::Main => 320,
            Kind::Rotation => 420,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Main => "main",
            Kind::Rotation => "rotation",
        }
    }
}

/// What one call of the workload was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Apply(u64),
    Checkpoint(u64),
    Maintenance,
    Open,
    /// An apply of a batch the model already holds, replaying the log after a reopen.
    Replay(u64),
}

/// The first call that failed.
#[derive(Debug)]
struct Failure {
    step: usize,
    call: Call,
    error: Error,
}

/// Work done, summed over the opens of one run.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    flushes: u64,
    merges: u64,
    trivial_moves: u64,
    checkpoints: u64,
    reopens: u64,
    deepest_level: usize,
}

/// What a workload achieved before it ended or failed.
#[derive(Default)]
struct Outcome {
    /// Every batch the tree made visible: what the owner's log holds.
    model: Model,
    /// The last checkpoint that returned `Ok`.
    acknowledged: u64,
    /// The highest checkpoint attempted.
    attempted: u64,
    failure: Option<Failure>,
    totals: Totals,
    /// The tree as the workload left it (none if an open failed), and the views it held.
    tree: Option<Tree>,
    views: Vec<ReadView>,
}

struct Run {
    fs: FsRef,
    seed: u64,
    kind: Kind,
    rng: Rng,
    /// Draws for checks only, so that checking does not change the workload.
    check_rng: Rng,
    /// The dry run checks reads as it goes; the crash and fault runs do not (reads are not
    /// counted, but they would consume read faults and make runs slow).
    checking: bool,
    /// The last LSN applied or checkpointed.
    lsn: u64,
    out: Outcome,
}

type StepResult = Result<(), (Call, Error)>;

impl Run {
    fn new(fs: FsRef, seed: u64, kind: Kind, checking: bool) -> Self {
        Self {
            fs,
            seed,
            kind,
            rng: Rng(seed ^ 0x5eed_f417),
            check_rng: Rng(seed),
            checking,
            lsn: 0,
            out: Outcome::default(),
        }
    }

    fn tree(&self) -> &Tree {
        self.out
            .tree
            .as_ref()
            .expect("the workload has an open tree")
    }

    /// Runs the workload until it ends or a call fails; `after_step` sees each step.
    fn run(mut self, mut after_step: impl FnMut(usize, &Outcome)) -> Outcome {
        if let Err((call, error)) = self.open() {
            self.out.failure = Some(Failure {
                step: 0,
                call,
                error,
            });
            return self.out;
        }
        for step in 1..=self.kind.steps() {
            if let Err((call, error)) = self.step() {
                self.out.failure = Some(Failure { step, call, error });
                break;
            }
            after_step(step, &self.out);
        }
        if let Some(tree) = &self.out.tree {
            add_totals(&mut self.out.totals, tree);
        }
        self.out
    }

    fn step(&mut self) -> StepResult {
        match self.rng.below(100) {
            0..55 => self.apply(),
            55..63 => self.checkpoint(),
            63..86 => self
                .tree()
                .maintenance_step()
                .map(|_| ())
                .map_err(|e| (Call::Maintenance, e)),
            86..93 => {
                self.hold_view();
                Ok(())
            }
            93..95 => {
                // Lets the files compactions removed go.
                self.out.views.clear();
                Ok(())
            }
            95..98 => {
                self.check_views();
                Ok(())
            }
            _ if self.rng.chance(2) => self.reopen(),
            _ => Ok(()),
        }
    }

    fn apply(&mut self) -> StepResult {
        let lsn = self.lsn + 1 + self.rng.below(2);
        self.lsn = lsn;
        let mut batch = self.rng.batch();
        if self.kind == Kind::Rotation && self.rng.chance(3) {
            let value = self.rng.value();
            batch.push((big_key(&mut self.rng), Some(value)));
        }
        let result = self.tree().apply(lsn, &batch);
        let applied = self.tree().last_applied() == Some(lsn);
        if result.is_ok() {
            assert!(applied, "apply {lsn} returned Ok and is not visible");
        }
        if let Err(e) = &result {
            // An error means not applied: a stall's failure after the write poisons the
            // tree and is reported by the next call.
            assert!(!applied, "apply {lsn} failed with {e:?} but is visible");
        }
        if applied {
            self.out.model.apply(lsn, &batch);
        }
        result.map_err(|e| (Call::Apply(lsn), e))
    }

    fn checkpoint(&mut self) -> StepResult {
        let watermark = self.tree().watermark().unwrap_or(0);
        let c = match self.rng.below(4) {
            0 | 1 => self.lsn.max(1),
            // Between the watermark and the last LSN: splits the memtable at `c`.
            2 => watermark + 1 + self.rng.below(self.lsn.saturating_sub(watermark).max(1)),
            // Above the last apply: LSNs that wrote nothing here.
            _ => self.lsn + 1 + self.rng.below(3),
        };
        self.out.attempted = self.out.attempted.max(c);
        self.lsn = self.lsn.max(c);
        self.tree()
            .checkpoint(c)
            .map_err(|e| (Call::Checkpoint(c), e))?;
        self.out.acknowledged = self.out.acknowledged.max(c);
        self.out.totals.checkpoints += 1;
        assert_eq!(
            self.tree().watermark(),
            Some(watermark.max(c)),
            "seed {}: watermark after checkpoint {c}",
            self.seed
        );
        Ok(())
    }

    fn hold_view(&mut self) {
        if self.out.views.len() >= 2 {
            self.out.views.remove(0);
        }
        let tree = self
            .out
            .tree
            .as_ref()
            .expect("the workload has an open tree");
        let view = if self.rng.chance(2) {
            tree.read_view()
        } else {
            let from = tree.watermark().unwrap_or(0);
            let through = tree.last_applied().unwrap_or(0);
            let lsn = from + self.rng.below(through - from + 1);
            tree.read_view_at(lsn).unwrap()
        };
        self.out.views.push(view);
    }

    fn check_views(&mut self) {
        if !self.checking {
            return;
        }
        let context = format!("seed {} {} dry run", self.seed, self.kind.name());
        let view = self.tree().read_view();
        check_view(&mut self.check_rng, &view, &self.out.model, 2, &context);
        for view in &self.out.views {
            check_view(&mut self.check_rng, view, &self.out.model, 2, &context);
        }
    }

    /// Closes the tree and opens it again, replaying the batches above its watermark.
    fn reopen(&mut self) -> StepResult {
        if let Some(tree) = self.out.tree.take() {
            add_totals(&mut self.out.totals, &tree);
        }
        self.out.views.clear();
        self.out.totals.reopens += 1;
        self.open()
    }

    fn open(&mut self) -> StepResult {
        let options = fault_options(self.seed);
        let tree = Tree::open(self.fs.clone(), dir(), options).map_err(|e| (Call::Open, e))?;
        let watermark = tree.watermark().unwrap_or(0);
        let out = &mut self.out;
        assert!(
            watermark >= out.acknowledged && watermark <= out.attempted.max(out.acknowledged),
            "seed {}: reopened at watermark {watermark}, acknowledged {}, attempted {}",
            self.seed,
            out.acknowledged,
            out.attempted
        );
        if self.checking {
            let context = format!("seed {} dry run reopened at {watermark}", self.seed);
            let view = tree.read_view();
            check_view(&mut self.check_rng, &view, &out.model, 2, &context);
        }
        let tree = out.tree.insert(tree);
        for (lsn, batch) in out.model.batches_above(watermark) {
            tree.apply(lsn, &batch)
                .map_err(|e| (Call::Replay(lsn), e))?;
        }
        self.lsn = self.lsn.max(watermark);
        Ok(())
    }
}

fn add_totals(totals: &mut Totals, tree: &Tree) {
    let stats = tree.stats();
    totals.flushes += stats.flushes;
    totals.merges += stats.compactions - stats.trivial_moves;
    totals.trivial_moves += stats.trivial_moves;
    let deepest = stats.levels.iter().rposition(|l| l.files > 0).unwrap_or(0);
    totals.deepest_level = totals.deepest_level.max(deepest);
}

// ---------------------------------------------------------------------------------------------
// Recovery: what every case ends with.

/// Reopens the tree after a crash or a fault and checks it (module docs).
fn recover(sim: &SimFs, fs: &FsRef, seed: u64, out: &Outcome, context: &str) {
    let options = || fault_options(seed);
    let tree = Tree::open(fs.clone(), dir(), options())
        .unwrap_or_else(|e| panic!("{context}: reopen failed: {e:?}"));
    let watermark = tree.watermark().unwrap_or(0);
    assert!(
        watermark >= out.acknowledged,
        "{context}: watermark {watermark} below the acknowledged checkpoint {}",
        out.acknowledged
    );
    assert!(
        watermark <= out.attempted,
        "{context}: watermark {watermark} above every checkpoint attempted ({})",
        out.attempted
    );
    assert_eq!(tree.read_view().lsn(), watermark, "{context}: view lsn");
    let mut rng = Rng(seed ^ 0xc0ffee);
    let at_watermark = format!("{context}: reopened at watermark {watermark}");
    check_view(&mut rng, &tree.read_view(), &out.model, 4, &at_watermark);
    assert_no_debris(sim, dir(), &tree, &at_watermark);
    tree.check_invariants();
    for (lsn, batch) in out.model.batches_above(watermark) {
        tree.apply(lsn, &batch)
            .unwrap_or_else(|e| panic!("{context}: replay of {lsn} failed: {e:?}"));
    }
    let replayed = format!("{context}: replayed from {watermark}");
    check_view(&mut rng, &tree.read_view(), &out.model, 4, &replayed);
    // The tree keeps working: more writes, a checkpoint, maintenance, a reopen.
    let mut model = out.model.clone();
    let mut lsn = model.last_lsn().max(watermark);
    for _ in 0..40 {
        lsn += 1;
        let batch = rng.batch();
        tree.apply(lsn, &batch).unwrap();
        model.apply(lsn, &batch);
    }
    tree.checkpoint(lsn).unwrap();
    while tree.maintenance_step().unwrap() != Progress::Idle {}
    tree.check_invariants();
    drop(tree);
    let tree = Tree::open(fs.clone(), dir(), options()).unwrap();
    assert_eq!(tree.watermark(), Some(lsn), "{context}: second reopen");
    let again = format!("{context}: reopened again at {lsn}");
    check_view(&mut rng, &tree.read_view(), &model, 4, &again);
    assert_no_debris(sim, dir(), &tree, &again);
}

// ---------------------------------------------------------------------------------------------
// Cases: what to run, printable and parsable so that a failure can be replayed alone.

/// How a fault case recovers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Then {
    /// Clear the faults and reopen in the same process.
    Reopen,
    /// Clear the faults, lose power (random mode), then reopen.
    PowerLoss,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Case {
    Crash {
        kind: Kind,
        seed: u64,
        mode: CrashMode,
        at: u64,
        /// A second power loss, at this counted operation of the reopen after the first.
        again: Option<u64>,
    },
    Fault {
        kind: Kind,
        seed: u64,
        op: FaultOp,
        error: FaultError,
        after: u64,
        /// A file name in the tree's directory the fault is limited to.
        file: Option<String>,
        then: Then,
    },
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Case::Crash {
                kind,
                seed,
                mode,
                at,
                again,
            } => {
                write!(f, "crash/{}/{seed}/{mode:?}/{at}", kind.name())?;
                match again {
                    Some(again) => write!(f, "/{again}"),
                    None => Ok(()),
                }
            }
            Case::Fault {
                kind,
                seed,
                op,
                error,
                after,
                file,
                then,
            } => {
                let file = file.as_deref().unwrap_or("*");
                let name = kind.name();
                write!(
                    f,
                    "fault/{name}/{seed}/{op:?}/{error:?}/{after}/{file}/{then:?}"
                )
            }
        }
    }
}

impl Case {
    fn parse(s: &str) -> Case {
        let parts: Vec<&str> = s.split('/').collect();
        let kind = match parts[1] {
            "main" => Kind::Main,
            "rotation" => Kind::Rotation,
            other => panic!("unknown workload {other}"),
        };
        let seed = parts[2].parse().unwrap();
        match parts[0] {
            "crash" => Case::Crash {
                kind,
                seed,
                mode: parse_mode(parts[3]),
                at: parts[4].parse().unwrap(),
                again: parts.get(5).map(|a| a.parse().unwrap()),
            },
            "fault" => Case::Fault {
                kind,
                seed,
                op: parse_op(parts[3]),
                error: parse_error(parts[4]),
                after: parts[5].parse().unwrap(),
                file: (parts[6] != "*").then(|| parts[6].to_string()),
                then: if parts[7] == "Reopen" {
                    Then::Reopen
                } else {
                    Then::PowerLoss
                },
            },
            other => panic!("unknown case kind {other}"),
        }
    }

    /// Runs the case, printing its replay if it panics; see [`Ran`].
    fn run(&self) -> Ran {
        match catch_unwind(AssertUnwindSafe(|| self.run_inner())) {
            Ok(ran) => ran,
            Err(panic) => {
                eprintln!(
                    "\nFAILED case {self}\nreplay: TREE_FAULT_CASE='{self}' cargo test \
                     --profile checked -p popdb-lsm --test recovery_tree_faults -- --nocapture\n"
                );
                resume_unwind(panic)
            }
        }
    }

    fn run_inner(&self) -> Ran {
        match self {
            Case::Crash {
                kind,
                seed,
                mode,
                at,
                again,
            } => crash_case(*kind, *seed, *mode, *at, *again),
            Case::Fault {
                kind,
                seed,
                op,
                error,
                after,
                file,
                then,
            } => {
                let mut fault = Fault::new(*op, *error).after(*after);
                if let Some(file) = file {
                    fault = fault.under(dir().join(file));
                }
                fault_case(*kind, *seed, fault, *then, &self.to_string())
            }
        }
    }
}

fn parse_mode(s: &str) -> CrashMode {
    match s {
        "KeepAll" => CrashMode::KeepAll,
        "LoseAllUnsynced" => CrashMode::LoseAllUnsynced,
        "Random" => CrashMode::Random,
        other => panic!("unknown crash mode {other}"),
    }
}

fn parse_op(s: &str) -> FaultOp {
    let ops = [
        FaultOp::Read,
        FaultOp::Write,
        FaultOp::Sync,
        FaultOp::Open,
        FaultOp::Rename,
        FaultOp::Remove,
        FaultOp::Allocate,
        FaultOp::Any,
    ];
    ops.into_iter()
        .find(|op| format!("{op:?}") == s)
        .unwrap_or_else(|| panic!("unknown fault op {s}"))
}

fn parse_error(s: &str) -> FaultError {
    let errors = [
        FaultError::Eio,
        FaultError::Enospc,
        FaultError::ShortWrite,
        FaultError::BitFlip,
    ];
    errors
        .into_iter()
        .find(|e| format!("{e:?}") == s)
        .unwrap_or_else(|| panic!("unknown fault error {s}"))
}

/// What a case did.
#[derive(Debug, Default)]
struct Ran {
    /// The injected fault fired (fault cases).
    fired: bool,
    /// The failing call's error: the `op` of an `Io` error, or "corruption".
    failed: Option<&'static str>,
}

/// Runs the workload with a power loss armed at counted operation `at`; then, if `again`
/// says so, loses power once more during the reopen; then recovers. `fired` says whether the
/// second power loss struck (the first must).
fn crash_case(kind: Kind, seed: u64, mode: CrashMode, at: u64, again: Option<u64>) -> Ran {
    let sim = Arc::new(SimFs::new(seed));
    sim.set_armed_crash_mode(mode);
    sim.set_crash_after_ops(at);
    let fs: FsRef = sim.clone();
    let mut out = Run::new(fs.clone(), seed, kind, false).run(|_, _| {});
    let context = Case::Crash {
        kind,
        seed,
        mode,
        at,
        again,
    }
    .to_string();
    let failed = out.failure.as_ref().map(|f| {
        // `Poisoned`: an earlier apply's stall met the crash (that apply returned Ok).
        let cause = match &f.error {
            Error::Poisoned => out.tree.as_ref().and_then(Tree::poison_cause),
            other => Some(other.clone()),
        };
        match cause {
            Some(Error::Io { op, .. }) => op,
            _ => panic!("{context}: {:?} failed with {:?}", f.call, f.error),
        }
    });
    // Closing the tree removes the files its views pinned: counted operations, which the
    // crash may strike too. It goes before power returns: a process that lost power is gone.
    out.views.clear();
    out.tree = None;
    assert!(sim.is_down(), "{context}: the crash never struck");
    sim.restart();
    let mut fired = true;
    if let Some(again) = again {
        sim.set_crash_after_ops(again);
        let reopened = Tree::open(fs.clone(), dir(), fault_options(seed));
        drop(reopened);
        fired = sim.is_down();
        sim.disarm_crash();
        sim.restart();
    }
    recover(&sim, &fs, seed, &out, &context);
    Ran { fired, failed }
}

/// Runs the workload with `fault` armed, checks the failing call and the poisoned tree, then
/// recovers as `then` says.
fn fault_case(kind: Kind, seed: u64, fault: Fault, then: Then, context: &str) -> Ran {
    let sim = Arc::new(SimFs::new(seed));
    let fs: FsRef = sim.clone();
    let error_kind = fault.error;
    sim.inject(fault);
    let mut out = Run::new(fs.clone(), seed, kind, false).run(|_, _| {});
    let fired = sim.stats().faults_fired_count > 0;
    // The checks below are not the workload: a fault that has not fired yet stays out of them.
    sim.clear_faults();
    let failed = out
        .failure
        .as_ref()
        .map(|failure| check_failure(failure, error_kind, &out, fired, context));
    if let Some(tree) = &out.tree
        && out.failure.is_none()
    {
        // An absorbed fault: the tree goes on as if nothing happened.
        assert!(!tree.is_poisoned(), "{context}: poisoned with no error");
        let view = tree.read_view();
        check_view(&mut Rng(seed), &view, &out.model, 2, context);
        tree.check_invariants();
    }
    out.views.clear();
    out.tree = None;
    if then == Then::PowerLoss {
        sim.crash_with(CrashMode::Random);
    }
    recover(&sim, &fs, seed, &out, context);
    Ran { fired, failed }
}

/// Checks what a failure leaves: an `Io` error (or corruption, for a flipped bit), a
/// poisoned tree that refuses every write, and exact reads of everything visible.
fn check_failure(
    failure: &Failure,
    error_kind: FaultError,
    out: &Outcome,
    fired: bool,
    context: &str,
) -> &'static str {
    let Failure { step, call, error } = failure;
    let context = format!("{context}: step {step} {call:?} failed with {error:?}");
    assert!(fired, "{context}, but no fault fired");
    // `Poisoned`: an earlier apply's stall met the fault (that apply returned Ok); the
    // tree kept the failure.
    let cause = match error {
        Error::Poisoned => out
            .tree
            .as_ref()
            .and_then(Tree::poison_cause)
            .unwrap_or_else(|| panic!("{context}: poisoned with no cause")),
        other => other.clone(),
    };
    let op = match cause {
        Error::Io { op, .. } => op,
        Error::Corruption(_) if error_kind == FaultError::BitFlip => "corruption",
        _ => panic!("{context}: expected an i/o error"),
    };
    let Some(tree) = &out.tree else {
        assert_eq!(*call, Call::Open, "{context}: no tree");
        return op;
    };
    assert!(tree.is_poisoned(), "{context}: the tree is not poisoned");
    let applied = tree.last_applied();
    let next = applied.unwrap_or(0) + 1;
    let batch = [(b"after".to_vec(), Some(b"failure".to_vec()))];
    let poisoned = |r: popdb_lsm::Result<()>, what: &str| {
        assert!(
            matches!(r, Err(Error::Poisoned)),
            "{context}: {what} after the failure returned {r:?}"
        );
    };
    poisoned(tree.apply(next, &batch), "apply");
    poisoned(tree.checkpoint(next), "checkpoint");
    poisoned(tree.maintenance_step().map(|_| ()), "maintenance");
    assert_eq!(
        tree.last_applied(),
        applied,
        "{context}: applied while poisoned"
    );
    let mut rng = Rng(*step as u64);
    let view = tree.read_view();
    assert_eq!(view.lsn(), applied.unwrap_or(0), "{context}: view lsn");
    check_view(
        &mut rng,
        &view,
        &out.model,
        3,
        &format!("{context}: poisoned"),
    );
    for view in &out.views {
        check_view(
            &mut rng,
            view,
            &out.model,
            2,
            &format!("{context}: held view"),
        );
    }
    tree.check_invariants();
    op
}

// ---------------------------------------------------------------------------------------------
// Dry runs and sweeps.

/// A dry run's counts: counted operations, and the windows of operations and syncs of the
/// steps during which the manifest rotated.
#[derive(Debug, Default)]
struct Dry {
    ops: u64,
    totals: Totals,
    rotations: Vec<Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    ops: (u64, u64),
    syncs: (u64, u64),
    /// The manifest number the rotation created.
    number: u64,
}

/// Runs `kind` once with reads checked along the way and its counters watched.
fn dry_run(kind: Kind, seed: u64) -> Dry {
    let sim = Arc::new(SimFs::new(seed));
    let fs: FsRef = sim.clone();
    let mut dry = Dry::default();
    let mut before = (sim.op_count(), sim.sync_count(), manifest_number(&sim));
    let mut out = Run::new(fs, seed, kind, true).run(|_, _| {
        let now = (sim.op_count(), sim.sync_count(), manifest_number(&sim));
        if now.2 > before.2 && before.2 > 0 {
            dry.rotations.push(Window {
                ops: (before.0, now.0),
                syncs: (before.1, now.1),
                number: now.2,
            });
        }
        before = now;
    });
    let context = format!("seed {seed} {} dry run", kind.name());
    if let Some(f) = &out.failure {
        panic!("{context}: {f:?}");
    }
    let tree = out.tree.as_ref().unwrap();
    check_view(&mut Rng(seed), &tree.read_view(), &out.model, 8, &context);
    // Held views pin the files compactions removed; once they go, so do the files.
    out.views.clear();
    assert_no_debris(&sim, dir(), tree, &context);
    tree.check_invariants();
    out.tree = None;
    let t = out.totals;
    assert!(t.flushes > 5, "{context}: too few flushes: {t:?}");
    assert!(t.merges > 2, "{context}: too few compactions: {t:?}");
    assert!(t.checkpoints > 3, "{context}: too few checkpoints: {t:?}");
    assert!(t.reopens > 0, "{context}: never reopened: {t:?}");
    assert!(
        t.deepest_level >= 1,
        "{context}: never compacted into L1: {t:?}"
    );
    if kind == Kind::Rotation {
        assert!(!dry.rotations.is_empty(), "{context}: never rotated");
    }
    dry.ops = sim.op_count();
    dry.totals = t;
    dry
}

/// The counted operation that creates manifest `number` in the rotation workload, and the
/// syncs before it: found by failing that create and reading the counters where the
/// workload stopped (a failed operation is counted; nothing after it is).
fn locate_rotation(seed: u64, number: u64) -> (u64, u64) {
    let sim = Arc::new(SimFs::new(seed));
    let fs: FsRef = sim.clone();
    let manifest = dir().join(format!("MANIFEST-{number:016x}"));
    sim.inject(Fault::new(FaultOp::Open, FaultError::Eio).under(manifest));
    let out = Run::new(fs, seed, Kind::Rotation, false).run(|_, _| {});
    let failure = out.failure.as_ref().expect("the rotation failed");
    // `Poisoned`: the rotation ran in a stall of an apply, which returned Ok.
    let cause = match &failure.error {
        Error::Poisoned => out.tree.as_ref().and_then(Tree::poison_cause),
        other => Some(other.clone()),
    };
    let Some(Error::Io { op, .. }) = cause else {
        panic!("rotation to {number} failed with {failure:?}");
    };
    assert_eq!(op, "manifest create file", "{failure:?}");
    (sim.op_count() - 1, sim.sync_count())
}

/// The highest manifest number in the directory (0 if none).
fn manifest_number(sim: &SimFs) -> u64 {
    sim.file_names(dir()).map_or(0, |names| {
        names
            .iter()
            .filter_map(|n| n.strip_prefix("MANIFEST-"))
            .filter_map(|hex| u64::from_str_radix(hex, 16).ok())
            .max()
            .unwrap_or(0)
    })
}

fn seeds() -> u64 {
    env_u64("TREE_FAULT_SEEDS", 1)
}

/// Runs the case `TREE_FAULT_CASE` names, if it is set and its kind is `prefix`.
fn replay_one(prefix: &str) -> bool {
    let Ok(case) = std::env::var("TREE_FAULT_CASE") else {
        return false;
    };
    if case.starts_with(prefix) {
        let ran = Case::parse(&case).run();
        println!("{case}: {ran:?}");
    }
    true
}

const MODES: [CrashMode; 3] = [
    CrashMode::LoseAllUnsynced,
    CrashMode::KeepAll,
    CrashMode::Random,
];

#[test]
fn recovery_tree_faults_crash_at_every_operation() {
    if replay_one("crash/main") {
        return;
    }
    let stride = env_u64("TREE_FAULT_CRASH_STRIDE", 1);
    let mut points = 0;
    let mut failed: BTreeMap<&str, u64> = BTreeMap::new();
    for seed in 0..seeds() {
        let dry = dry_run(Kind::Main, seed);
        println!(
            "seed {seed}: {} counted operations, {:?}",
            dry.ops, dry.totals
        );
        for at in (0..dry.ops).step_by(stride as usize) {
            for mode in MODES {
                let case = Case::Crash {
                    kind: Kind::Main,
                    seed,
                    mode,
                    at,
                    again: None,
                };
                let ran = case.run();
                *failed.entry(ran.failed.unwrap_or("(none)")).or_default() += 1;
                points += 1;
            }
        }
    }
    println!("{points} crashes checked; failing calls: {failed:?}");
    assert!(points > 1_000, "too few crashes ({points}) to mean much");
}

/// A power loss during the reopen after a power loss: at every counted operation of that
/// reopen (cutting a torn manifest tail, removing orphans, syncing the directory), for every
/// Nth first crash point. Recovery must be idempotent.
#[test]
fn recovery_tree_faults_crash_during_recovery() {
    if replay_one("crash/main") {
        return;
    }
    let stride = env_u64("TREE_FAULT_RECOVERY_STRIDE", 4);
    let (mut points, mut second) = (0, 0);
    for seed in 0..seeds() {
        let dry = dry_run(Kind::Main, seed);
        for (i, at) in (0..dry.ops).step_by(stride as usize).enumerate() {
            let mode = MODES[(i + seed as usize + 1) % MODES.len()];
            for again in 0.. {
                let case = Case::Crash {
                    kind: Kind::Main,
                    seed,
                    mode,
                    at,
                    again: Some(again),
                };
                points += 1;
                if !case.run().fired {
                    break;
                }
                second += 1;
            }
        }
    }
    println!("{points} cases, {second} with a power loss during recovery");
    assert!(second > 20, "too few crashes during recovery ({second})");
}

/// The fault kinds swept over the main workload.
const KINDS: [(FaultOp, FaultError); 13] = [
    (FaultOp::Write, FaultError::Eio),
    (FaultOp::Write, FaultError::Enospc),
    (FaultOp::Write, FaultError::ShortWrite),
    (FaultOp::Sync, FaultError::Eio),
    (FaultOp::Sync, FaultError::Enospc),
    (FaultOp::Open, FaultError::Eio),
    (FaultOp::Open, FaultError::Enospc),
    (FaultOp::Rename, FaultError::Eio),
    (FaultOp::Remove, FaultError::Eio),
    (FaultOp::Allocate, FaultError::Eio),
    (FaultOp::Allocate, FaultError::Enospc),
    (FaultOp::Read, FaultError::Eio),
    (FaultOp::Read, FaultError::BitFlip),
];

/// Sweeps faults of `kinds` over the main workload; returns (cases, fired, failing ops).
fn fault_sweep(kinds: &[(FaultOp, FaultError)]) -> (u64, u64, BTreeMap<&'static str, u64>) {
    let stride = env_u64("TREE_FAULT_STRIDE", 5);
    let (mut cases, mut fired) = (0, 0);
    let mut failed: BTreeMap<&str, u64> = BTreeMap::new();
    for seed in 0..seeds() {
        for &(op, error) in kinds {
            let mut after = 0;
            loop {
                let then = if (after / stride + seed).is_multiple_of(2) {
                    Then::Reopen
                } else {
                    Then::PowerLoss
                };
                let case = Case::Fault {
                    kind: Kind::Main,
                    seed,
                    op,
                    error,
                    after,
                    file: None,
                    then,
                };
                let ran = case.run();
                cases += 1;
                if !ran.fired {
                    break;
                }
                fired += 1;
                *failed
                    .entry(ran.failed.unwrap_or("(absorbed)"))
                    .or_default() += 1;
                after += stride;
            }
        }
    }
    (cases, fired, failed)
}

#[test]
fn recovery_tree_faults_on_writes_and_syncs() {
    if replay_one("fault/main") {
        return;
    }
    let (cases, fired, failed) = fault_sweep(&KINDS[..5]);
    println!("{cases} cases, {fired} faults fired; failing calls: {failed:?}");
    for op in ["sst write", "sst sync", "tree sync dir", "manifest append"] {
        assert!(failed.contains_key(op), "no fault hit {op}: {failed:?}");
    }
    assert!(failed.contains_key("(absorbed)"), "no short write absorbed");
}

#[test]
fn recovery_tree_faults_on_opens_renames_removes_and_reads() {
    if replay_one("fault/main") {
        return;
    }
    let (cases, fired, failed) = fault_sweep(&KINDS[5..]);
    println!("{cases} cases, {fired} faults fired; failing calls: {failed:?}");
    for op in ["sst create", "sst open", "CURRENT rename", "corruption"] {
        assert!(failed.contains_key(op), "no fault hit {op}: {failed:?}");
    }
}

/// Crashes at every operation, and faults on every sync, of the steps that rotated the
/// manifest; faults on the files a rotation writes, renames and removes.
#[test]
fn recovery_tree_faults_during_manifest_rotation() {
    if replay_one("crash/rotation") || replay_one("fault/rotation") {
        return;
    }
    let (mut points, mut fired) = (0, 0);
    let mut failed: BTreeMap<&str, u64> = BTreeMap::new();
    for seed in 0..seeds() {
        let dry = dry_run(Kind::Rotation, seed);
        println!(
            "seed {seed}: {} counted operations, {:?}, rotations {:?}",
            dry.ops, dry.totals, dry.rotations
        );
        let mut cases = Vec::new();
        for (i, window) in dry.rotations.iter().enumerate() {
            // The step that rotated also flushed and compacted: aim at the rotation itself,
            // from a few operations before it (the edit's SST and directory syncs) to past its
            // end (create, write and sync the new manifest, sync the directory; the same for
            // CURRENT.tmp, rename it, sync the directory; remove the old manifest).
            let (op, sync) = locate_rotation(seed, window.number);
            let ops = op.saturating_sub(4).max(window.ops.0)..(op + 12).min(window.ops.1);
            for at in ops {
                for mode in MODES {
                    cases.push(Case::Crash {
                        kind: Kind::Rotation,
                        seed,
                        mode,
                        at,
                        again: None,
                    });
                }
            }
            let fault = |op, error, after, file: Option<String>, then| Case::Fault {
                kind: Kind::Rotation,
                seed,
                op,
                error,
                after,
                file,
                then,
            };
            for after in sync.saturating_sub(2).max(window.syncs.0)..(sync + 5).min(window.syncs.1)
            {
                for then in [Then::Reopen, Then::PowerLoss] {
                    cases.push(fault(FaultOp::Sync, FaultError::Eio, after, None, then));
                }
            }
            let new = format!("MANIFEST-{:016x}", window.number);
            let old = format!("MANIFEST-{:016x}", window.number - 1);
            let temp = Some("CURRENT.tmp".to_string());
            // `CURRENT.tmp` is written once when the tree is created, then once per rotation.
            let nth = i as u64 + 1;
            cases.extend([
                fault(
                    FaultOp::Open,
                    FaultError::Enospc,
                    0,
                    Some(new.clone()),
                    Then::Reopen,
                ),
                fault(
                    FaultOp::Write,
                    FaultError::Eio,
                    0,
                    Some(new),
                    Then::PowerLoss,
                ),
                fault(
                    FaultOp::Open,
                    FaultError::Eio,
                    nth,
                    temp.clone(),
                    Then::Reopen,
                ),
                fault(
                    FaultOp::Write,
                    FaultError::Enospc,
                    nth,
                    temp,
                    Then::PowerLoss,
                ),
                fault(FaultOp::Rename, FaultError::Eio, nth, None, Then::Reopen),
                fault(FaultOp::Remove, FaultError::Eio, 0, Some(old), Then::Reopen),
            ]);
        }
        for case in cases {
            let ran = case.run();
            assert!(ran.fired, "{case}: the fault never fired");
            fired += 1;
            *failed.entry(ran.failed.unwrap_or("(none)")).or_default() += 1;
            points += 1;
        }
    }
    println!("{points} rotation cases, {fired} fired; failing calls: {failed:?}");
    for op in [
        "manifest write base",
        "CURRENT rename",
        "CURRENT sync dir",
        "manifest sync dir",
    ] {
        assert!(failed.contains_key(op), "no case hit {op}: {failed:?}");
    }
}

/// The shared tiny options without the durable-LSN gate: these workloads stand for a log
/// that is durable as soon as it is written.
fn fault_options(seed: u64) -> popdb_lsm::TreeOptions {
    popdb_lsm::TreeOptions {
        flush_needs_durable_lsn: false,
        ..tiny_options_for(seed)
    }
}

/// Regression. Symptom: after a checkpoint returned `Ok`, a reopen whose read of the manifest
/// came back with one bit flipped (the file itself intact) opened at the previous watermark,
/// and the SST the checkpoint had written was deleted as an orphan: an acknowledged,
/// durable checkpoint lost for good (the owner may already have purged its log up to it).
/// Cause: the flipped bit failed the last frame's checksum, recovery took the frame for a
/// torn tail, cut it off the file and synced the cut, and the tree's sweep then removed
/// every SST that frame had named. Found by `faults_on_opens_renames_removes_and_reads`
/// (`fault/main/9/Read/BitFlip/4/*/PowerLoss`).
#[test]
fn recovery_tree_manifest_misread_never_truncates_an_acknowledged_edit() {
    for seed in 0..16 {
        let sim = Arc::new(SimFs::new(seed));
        let fs: FsRef = sim.clone();
        let options = || fault_options(seed);
        // A big key makes the checkpoint's frame nearly the whole manifest, so that the
        // flipped bit lands in it.
        let key = vec![b'k'; 12 * 1024];
        let tree = Tree::open(fs.clone(), dir(), options()).unwrap();
        tree.apply(1, &[(key.clone(), Some(b"v".to_vec()))])
            .unwrap();
        tree.set_durable_lsn(1);
        tree.checkpoint(1).unwrap();
        drop(tree);
        let manifest = dir().join("MANIFEST-0000000000000001");
        sim.inject(Fault::new(FaultOp::Read, FaultError::BitFlip).under(&manifest));
        let context = format!("seed {seed}");
        match Tree::open(fs.clone(), dir(), options()) {
            Ok(tree) => {
                assert_eq!(
                    tree.watermark(),
                    Some(1),
                    "{context}: opened at a lost watermark"
                );
                let found = tree.read_view().get(&key).unwrap();
                assert!(found.is_some(), "{context}: the checkpointed write is gone");
            }
            // Refusing to open on a misread is fine: the next open reads the file again.
            Err(e) => assert!(
                matches!(e, Error::Io { .. } | Error::Corruption(_)),
                "{context}: {e:?}"
            ),
        }
        assert_eq!(
            sim.stats().faults_fired_count,
            1,
            "{context}: no bit flipped"
        );
        sim.clear_faults();
        let tree = Tree::open(fs.clone(), dir(), options()).unwrap();
        assert_eq!(
            tree.watermark(),
            Some(1),
            "{context}: reopened at a lost watermark"
        );
        let found = tree.read_view().get(&key).unwrap();
        assert_eq!(
            found.map(|v| v.value),
            Some(b"v".to_vec()),
            "{context}: data lost"
        );
    }
}
