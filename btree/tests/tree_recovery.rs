//! Crash sweeps on the simulated file system: a workload of batches and checkpoints is run
//! once to count its syncs and counted operations, then once per sync and once per
//! operation with a power loss armed to strike there. After each crash the tree reopens at
//! the last checkpoint that completed, or at the one in flight if its meta happened to
//! survive, and reads exactly that checkpoint's contents; its file passes the allocator's
//! checks, and it takes more batches and checkpoints and reopens again.
//!
//! Replay one seed: `BTREE_CRASH_SEED=<seed> cargo test --profile checked -p popdb-btree
//! --test tree_recovery`.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod tree_common;

use tree_common::{Model, contents};

use std::path::Path;
use std::sync::Arc;

use popdb_btree::{PageSize, Tree, TreeOptions};
use popdb_io::{FsRef, SimFs};
use popdb_testkit::Rng;

fn options() -> TreeOptions {
    TreeOptions {
        page_size: PageSize::new(512).unwrap(),
        roots_retained: 4,
    }
}

fn open(fs: &SimFs) -> popdb_btree::Result<Tree> {
    let fs: FsRef = Arc::new(fs.clone());
    Tree::open(fs, Path::new("/t"), options())
}

/// What a workload run saw: the checkpoints that completed (LSN and contents), and the
/// one that was in flight when an operation failed.
#[derive(Default)]
struct Run {
    completed: Vec<(u64, Model)>,
    in_flight: Option<(u64, Model)>,
}

/// Batches and checkpoints from `seed`, against a tree created beforehand; stops at the
/// first error (the armed crash).
fn workload(fs: &SimFs, seed: u64, rounds: usize) -> Run {
    let mut run = Run::default();
    let Ok(tree) = open(fs) else {
        return run;
    };
    let mut rng = Rng(seed);
    let mut model = Model::new();
    let mut lsn = 0;
    for _ in 0..rounds {
        for _ in 0..3 {
            lsn += 1;
            let batch: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..8)
                .map(|_| {
                    let key = format!("k{:03}", rng.below(120)).into_bytes();
                    let value = match rng.below(6) {
                        0 => None,
                        1 => Some(vec![b'o'; 300 + rng.index(900)]),
                        _ => Some(vec![b'v'; rng.index(40)]),
                    };
                    (key, value)
                })
                .collect();
            if tree.apply(lsn, &batch).is_err() {
                return run;
            }
            for (key, value) in batch {
                match value {
                    Some(value) => model.insert(key, (value, lsn)),
                    None => model.remove(&key),
                };
            }
        }
        run.in_flight = Some((lsn, model.clone()));
        if tree.checkpoint(lsn).is_err() {
            return run;
        }
        run.completed.extend(run.in_flight.take());
    }
    run
}

fn check_contents(tree: &Tree, model: &Model, context: &str) {
    let got = contents(tree);
    let view = tree.read_view();
    assert!(
        got == *model,
        "{context}: contents differ from the checkpoint's"
    );
    for (key, (value, version)) in model {
        let found = view.get(key).unwrap().unwrap();
        assert_eq!(
            (&found.value, found.version),
            (value, *version),
            "{context}"
        );
    }
}

/// Reopens after the crash and checks the tree against `run`; then uses it. Returns
/// whether it reopened at the checkpoint in flight (its meta survived the crash).
fn recover_and_check(fs: &SimFs, run: &Run, context: &str) -> bool {
    fs.restart();
    let tree = open(fs).unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
    let watermark = tree.watermark();
    let last = run.completed.last();
    let (expected, at_in_flight) = match (watermark, last, &run.in_flight) {
        (Some(w), _, Some((c, model))) if w == *c => (model.clone(), true),
        (Some(w), Some((c, model)), _) if w == *c => (model.clone(), false),
        (None, None, _) => (Model::new(), false),
        _ => panic!(
            "{context}: reopened at {watermark:?}; completed {:?}, in flight {:?}",
            last.map(|(c, _)| c),
            run.in_flight.as_ref().map(|(c, _)| c)
        ),
    };
    check_contents(&tree, &expected, context);
    tree.check_invariants();
    // The recovered tree takes more work, and its free list stays sound.
    let next = watermark.unwrap_or(0) + 1;
    for lsn in next..next + 3 {
        let batch = [(
            format!("k{:03}", lsn % 120).into_bytes(),
            Some(vec![b'n'; 700]),
        )];
        tree.apply(lsn, &batch).unwrap();
        tree.checkpoint(lsn).unwrap();
    }
    tree.check_invariants();
    drop(tree);
    let tree = open(fs).unwrap();
    assert_eq!(tree.watermark(), Some(next + 2), "{context}");
    tree.check_invariants();
    at_in_flight
}

fn seeds() -> Vec<u64> {
    match std::env::var("BTREE_CRASH_SEED") {
        Ok(seed) => vec![seed.parse().unwrap()],
        Err(_) => (1..=6).collect(),
    }
}

const ROUNDS: usize = 8;

/// A file system with the tree created and durable, so crashes strike the workload only.
fn fresh(seed: u64) -> SimFs {
    let fs = SimFs::new(seed);
    drop(open(&fs).unwrap());
    fs
}

#[test]
fn crash_at_every_sync_reopens_at_a_completed_checkpoint() {
    let (mut crashes, mut in_flight) = (0, 0);
    for seed in seeds() {
        let dry = fresh(seed);
        let before = dry.sync_count();
        let full = workload(&dry, seed, ROUNDS);
        assert_eq!(full.completed.len(), ROUNDS);
        let syncs = dry.sync_count() - before;
        assert!(syncs >= 2 * ROUNDS as u64, "{syncs} syncs");
        for k in 0..syncs {
            let fs = fresh(seed);
            fs.set_crash_after_syncs(k);
            let run = workload(&fs, seed, ROUNDS);
            assert!(
                fs.is_down(),
                "seed {seed} sync {k}: the crash did not strike"
            );
            in_flight += u64::from(recover_and_check(
                &fs,
                &run,
                &format!("seed {seed} sync {k}"),
            ));
            crashes += 1;
        }
    }
    eprintln!(
        "{crashes} crashes at syncs: each reopened at the last completed checkpoint, or at \
         the one in flight when its meta survived ({in_flight} times)"
    );
}

#[test]
fn crash_at_every_operation_reopens_at_a_completed_checkpoint() {
    let (mut crashes, mut in_flight) = (0, 0);
    for seed in seeds() {
        let dry = fresh(seed);
        let before = dry.op_count();
        workload(&dry, seed, ROUNDS);
        let ops = dry.op_count() - before;
        for k in 0..ops {
            let fs = fresh(seed);
            fs.set_crash_after_ops(k);
            let run = workload(&fs, seed, ROUNDS);
            assert!(fs.is_down(), "seed {seed} op {k}: the crash did not strike");
            in_flight += u64::from(recover_and_check(&fs, &run, &format!("seed {seed} op {k}")));
            crashes += 1;
        }
    }
    eprintln!(
        "{crashes} crashes at operations: each reopened at the last completed checkpoint, or \
         at the one in flight when its meta survived ({in_flight} times)"
    );
}

#[test]
fn a_torn_meta_falls_back_to_the_other_one() {
    let fs = fresh(7);
    let run = workload(&fs, 7, 3);
    assert_eq!(run.completed.len(), 3);
    let tree = open(&fs).unwrap();
    let (c, _) = run.completed.last().unwrap();
    assert_eq!(tree.watermark(), Some(*c));
    let txn = tree.recovery().txn_id;
    drop(tree);
    // Tear the current meta: its page is txn mod 2.
    let page = 512 * (txn % 2);
    let file = fs
        .open(
            Path::new("/t/tree.btree"),
            popdb_io::OpenOptions::read_write(),
        )
        .unwrap();
    file.write_all_at(&[0xff; 100], page + 200).unwrap();
    file.sync_data().unwrap();
    drop(file);
    let tree = open(&fs).unwrap();
    let (previous, model) = &run.completed[1];
    assert_eq!(tree.watermark(), Some(*previous));
    assert!(tree.recovery().damaged_meta.is_some());
    check_contents(&tree, model, "torn meta");
    tree.check_invariants();
}

use popdb_io::FileSystem as _;

#[test]
fn a_lost_file_is_refused_when_the_tree_must_exist() {
    let fs = fresh(9);
    let file = fs
        .open(
            Path::new("/t/tree.btree"),
            popdb_io::OpenOptions::read_write(),
        )
        .unwrap();
    file.set_len(0).unwrap();
    file.sync_all().unwrap();
    drop(file);
    let shared: FsRef = Arc::new(fs.clone());
    let err = Tree::open_existing(shared, Path::new("/t"), options()).unwrap_err();
    let corruption = err.as_corruption().expect("a corruption error");
    assert_eq!(corruption.page_id.0, 0, "{err}");
    // Without the owner's knowledge, an empty file is a create to finish.
    let tree = open(&fs).unwrap();
    assert!(tree.recovery().created);
    drop(tree);
    let shared: FsRef = Arc::new(fs.clone());
    let missing = Tree::open_existing(shared, Path::new("/elsewhere"), options()).unwrap_err();
    assert!(missing.as_corruption().is_some(), "{missing}");
}
