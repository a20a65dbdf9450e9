//! Crash tests of the tree on the simulated file system: a workload of batches, flushes,
//! compactions and checkpoints is run once to count its syncs, then again with a power loss
//! armed at every sync in turn (each crash mode), after which the tree is reopened and
//! checked:
//! - the watermark is at least the last checkpoint that returned `Ok` and at most the last
//!   one attempted: it never overstates what survived;
//! - the reopened tree reads exactly the model's state at the watermark;
//! - no orphan SST remains (every `.sst` file is one the manifest names);
//! - log-backed (the Db's mode), the tree reads at its watermark; alone, it reads every batch
//!   its SSTs hold, a prefix of those applied, at least through the watermark;
//! - replaying the batches above that point (as the Db replays its log) gives the full
//!   state, and the tree keeps working (more writes, a checkpoint, compaction).
//!
//! `TREE_CRASH_SEEDS=N` runs N workload seeds (default 3).

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod tree_common;

use std::path::Path;
use std::sync::Arc;

use popdb_io::{CrashMode, FsRef, SimFs};
use popdb_lsm::{Progress, Tree, TreeOptions};
use popdb_testkit::Rng;

use tree_common::{Draw, Model, check_view, tiny_options};

const DIR: &str = "/crash-tree";
const OPS: usize = 400;

/// What the workload achieved before it stopped (at the end or at the crash).
#[derive(Default)]
struct Outcome {
    model: Model,
    /// The last checkpoint that returned `Ok`.
    acknowledged: u64,
    /// The last checkpoint attempted.
    attempted: u64,
}

/// Runs the seeded workload until it ends or the first error (the crash).
fn workload(fs: &FsRef, seed: u64, log_backed: bool) -> Outcome {
    let mut out = Outcome::default();
    let Ok(tree) = Tree::open(fs.clone(), Path::new(DIR), options(log_backed)) else {
        return out;
    };
    let mut rng = Rng(seed);
    let mut lsn = 0;
    for _ in 0..OPS {
        let result = match rng.below(10) {
            0..7 => {
                lsn += 1;
                let batch = rng.batch();
                let r = tree.apply(lsn, &batch);
                // An apply is in memory; if it returned Ok the model has it (the log would).
                if r.is_ok() {
                    out.model.apply(lsn, &batch);
                }
                r
            }
            7 => {
                let c = lsn.max(1);
                out.attempted = c;
                let r = tree.checkpoint(c);
                if r.is_ok() {
                    out.acknowledged = c;
                }
                lsn = lsn.max(c);
                r
            }
            _ => tree.maintenance_step().map(|_| ()),
        };
        if result.is_err() {
            break;
        }
    }
    out
}

fn sst_files(sim: &SimFs) -> usize {
    sim.file_names(Path::new(DIR))
        .unwrap()
        .iter()
        .filter(|n| {
            std::path::Path::new(n)
                .extension()
                .is_some_and(|e| e == "sst")
        })
        .count()
}

/// Tiny options, log-backed (the Db's mode: reopen at the watermark, replay above it) or not
/// (alone: reopen at the highest LSN the SSTs hold).
fn options(log_backed: bool) -> TreeOptions {
    TreeOptions {
        log_backed,
        ..tiny_options()
    }
}

fn verify(sim: &Arc<SimFs>, fs: &FsRef, outcome: &Outcome, log_backed: bool, context: &str) {
    let tree = Tree::open(fs.clone(), Path::new(DIR), options(log_backed))
        .unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
    let watermark = tree.watermark().unwrap_or(0);
    let read_from = tree.last_applied().unwrap_or(0);
    assert_eq!(tree.recovery().read_from, read_from, "{context}");
    if log_backed {
        assert_eq!(
            read_from, watermark,
            "{context}: a log-backed tree reads at its watermark"
        );
    } else {
        // Alone, the tree reads every batch its SSTs hold: a prefix of what was applied.
        assert!(
            read_from >= watermark && read_from <= outcome.model.last_lsn().max(watermark),
            "{context}: read from {read_from}, watermark {watermark}"
        );
    }
    assert!(
        watermark >= outcome.acknowledged,
        "{context}: watermark {watermark} below the acknowledged checkpoint {}",
        outcome.acknowledged
    );
    // A log-backed tree's watermark moves only at checkpoints; alone, each flush moves it
    // to its freeze point, which the reopened tree's SSTs hold (checked above).
    assert!(
        !log_backed || watermark <= outcome.attempted,
        "{context}: watermark {watermark} above any checkpoint attempted {}",
        outcome.attempted
    );
    let mut rng = Rng(1);
    check_view(&mut rng, &tree.read_view(), &outcome.model, 5, context);
    let files: usize = tree.stats().levels.iter().map(|l| l.files).sum();
    assert_eq!(files, sst_files(sim), "{context}: orphan SSTs remain");
    tree.check_invariants();
    for (lsn, batch) in outcome.model.batches_above(read_from) {
        tree.apply(lsn, &batch).unwrap();
    }
    check_view(&mut rng, &tree.read_view(), &outcome.model, 5, context);
    let next = outcome.model.last_lsn().max(read_from) + 1;
    tree.apply(next, &[(b"after".to_vec(), Some(b"crash".to_vec()))])
        .unwrap();
    tree.checkpoint(next).unwrap();
    while tree.maintenance_step().unwrap() != Progress::Idle {}
    tree.check_invariants();
}

fn crash_sweep(seed: u64, mode: CrashMode, log_backed: bool) -> u64 {
    let dry = Arc::new(SimFs::new(seed));
    let dry_fs: FsRef = dry.clone();
    let full = workload(&dry_fs, seed, log_backed);
    assert!(
        full.acknowledged > 0,
        "seed {seed}: the workload never checkpointed"
    );
    let syncs = dry.sync_count();
    for at in 0..syncs {
        let sim = Arc::new(SimFs::new(seed));
        sim.set_armed_crash_mode(mode);
        sim.set_crash_after_syncs(at);
        let fs: FsRef = sim.clone();
        let outcome = workload(&fs, seed, log_backed);
        assert!(
            sim.is_down(),
            "seed {seed}: crash at sync {at} never struck"
        );
        sim.restart();
        let context =
            format!("seed {seed} {mode:?} log_backed {log_backed} crash at sync {at}/{syncs}");
        verify(&sim, &fs, &outcome, log_backed, &context);
    }
    syncs
}

#[test]
fn recovery_tree_crash_at_every_sync() {
    let seeds: u64 = std::env::var("TREE_CRASH_SEEDS").map_or(3, |s| s.parse().unwrap());
    let mut points = 0;
    for seed in 0..seeds {
        for mode in [
            CrashMode::LoseAllUnsynced,
            CrashMode::KeepAll,
            CrashMode::Random,
        ] {
            points += crash_sweep(seed, mode, true);
            points += crash_sweep(seed, mode, false);
        }
    }
    println!("{points} crash points checked");
    assert!(points > 100, "too few crash points ({points}) to mean much");
}
