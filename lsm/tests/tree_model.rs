//! Differential test of the whole tree against a model of every applied batch, over many
//! seeds: batches with repeated keys and deletes, point reads and scans both ways with every
//! bound kind and prefixes, read views held across writes, flushes, compactions and
//! checkpoints, and reopens that replay the batches above the watermark as the Db would.
//!
//! A failure names its seed: `TREE_MODEL_SEED=N cargo test --profile checked -p popdb-lsm
//! --test tree_model` replays it; `TREE_MODEL_SEEDS=N` runs N seeds (default 24).

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod tree_common;

use std::path::PathBuf;
use std::sync::Arc;

use popdb_io::{FsRef, SimFs};
use popdb_lsm::{Error, Progress, ReadView, Tree};
use popdb_testkit::Rng;

use tree_common::{Draw, Model, check_view, gated, tiny_options_for};

const OPS_PER_SEED: usize = 2_500;

struct Run {
    rng: Rng,
    fs: FsRef,
    /// `None` only while reopening: the old instance must be gone before the new one opens.
    tree: Option<Tree>,
    model: Model,
    views: Vec<ReadView>,
    next_lsn: u64,
    seed: u64,
    dir: PathBuf,
    /// Flushes and compactions of earlier opens.
    flushes: u64,
    /// The durable LSN told to a gated tree (see `gated`).
    durable: u64,
    compactions: u64,
}

impl Run {
    fn tree(&self) -> &Tree {
        self.tree.as_ref().expect("open")
    }

    fn reopen(&mut self) {
        let stats = self.tree().stats();
        self.flushes += stats.flushes;
        self.compactions += stats.compactions;
        self.views.clear();
        // The old instance holds the directory's lock until it is gone.
        self.tree = None;
        let tree = Tree::open(self.fs.clone(), &self.dir, tiny_options_for(self.seed)).unwrap();
        self.tree = Some(tree);
        let watermark = self.tree().watermark().unwrap_or(0);
        assert_eq!(
            self.tree().read_view().lsn(),
            watermark,
            "seed {}: a reopened tree reads at its watermark",
            self.seed
        );
        let context = format!("seed {} reopened at watermark {watermark}", self.seed);
        let view = self.tree().read_view();
        check_view(&mut self.rng, &view, &self.model, 3, &context);
        if gated(self.seed) {
            self.tree().set_durable_lsn(self.durable);
        }
        for (lsn, batch) in self.model.batches_above(watermark) {
            self.tree().apply(lsn, &batch).unwrap();
        }
        self.tree().check_invariants();
    }

    fn step(&mut self, op: usize) {
        let context = format!("seed {} op {op}", self.seed);
        match self.rng.below(100) {
            0..45 => {
                let mut batch = self.rng.batch();
                if self.rng.chance(96) {
                    // A large value now and then, so memtable nodes of every arena size class
                    // and SST entries spanning many blocks meet flushes, compactions and reopens.
                    let i = self.rng.index(batch.len());
                    batch[i].1 = Some(large_value(&mut self.rng));
                }
                let lsn = self.next_lsn;
                self.next_lsn += 1 + self.rng.below(2);
                self.tree().apply(lsn, &batch).unwrap();
                self.model.apply(lsn, &batch);
                if gated(self.seed) {
                    // A log synced lazily: durable a few LSNs behind.
                    let durable = lsn.saturating_sub(self.rng.below(6));
                    self.tree().set_durable_lsn(durable);
                    self.durable = self.durable.max(durable);
                }
            }
            45..65 => {
                let view = self.tree().read_view();
                check_view(&mut self.rng, &view, &self.model, 1, &context);
            }
            65..72 => {
                if self.views.len() >= 3 {
                    self.views.remove(0);
                }
                self.views.push(self.tree().read_view());
            }
            72..76 => {
                let from = self.tree().watermark().unwrap_or(0);
                let through = self.tree().last_applied().unwrap_or(0);
                let lsn = from + self.rng.below(through - from + 1);
                let view = self.tree().read_view_at(lsn).unwrap();
                check_view(&mut self.rng, &view, &self.model, 1, &context);
                if from > 0 {
                    assert!(self.tree().read_view_at(from - 1).is_err(), "{context}");
                }
                assert!(self.tree().read_view_at(through + 1).is_err(), "{context}");
            }
            76..80 => {
                if !self.views.is_empty() {
                    let i = self.rng.index(self.views.len());
                    let view = self.views[i].clone();
                    check_view(&mut self.rng, &view, &self.model, 2, &context);
                }
            }
            80..85 => {
                let floor = self.tree().watermark().unwrap_or(0);
                let mut high = self.next_lsn.max(floor + 1);
                if gated(self.seed) {
                    // The Db checkpoints only what its log holds.
                    if self.durable <= floor {
                        return;
                    }
                    high = high.min(self.durable);
                }
                let c = floor + 1 + self.rng.below(high - floor);
                match self.tree().checkpoint(c) {
                    Ok(()) => {}
                    // A memtable frozen for memory holds writes past the durable LSN and
                    // flushes whole: refused, and nothing changed.
                    Err(Error::NotDurable { needed, durable }) => {
                        assert!(gated(self.seed) && needed > durable, "{context}");
                        assert_eq!(self.tree().watermark(), Some(floor).filter(|f| *f > 0));
                        return;
                    }
                    Err(e) => panic!("{context}: checkpoint {c}: {e}"),
                }
                assert_eq!(self.tree().watermark(), Some(c), "{context}: watermark");
                self.next_lsn = self.next_lsn.max(c + 1);
            }
            85..97 => {
                for _ in 0..=self.rng.below(3) {
                    if self.tree().maintenance_step().unwrap() == Progress::Idle {
                        break;
                    }
                }
            }
            _ => self.reopen(),
        }
        self.tree().check_invariants();
    }
}

/// 1 KiB to 320 KiB: below the memtable arena's first block (16 KiB), between it and a large
/// node (256 KiB), and above. Mostly one repeated byte, so compression has work to do.
fn large_value(rng: &mut Rng) -> Vec<u8> {
    let len = 1024 + rng.below(319 * 1024);
    let mut value = vec![rng.next() as u8; usize::try_from(len).unwrap()];
    for byte in value.iter_mut().take(8) {
        *byte = rng.next() as u8;
    }
    value
}

fn run_seed(seed: u64) {
    let sim = Arc::new(SimFs::new(seed));
    let fs: FsRef = sim;
    let dir = PathBuf::from(format!("/tree-{seed}"));
    let tree = Tree::open(fs.clone(), &dir, tiny_options_for(seed)).unwrap();
    let mut run = Run {
        rng: Rng(seed),
        fs,
        tree: Some(tree),
        model: Model::default(),
        views: Vec::new(),
        next_lsn: 1,
        seed,
        dir,
        flushes: 0,
        durable: 0,
        compactions: 0,
    };
    for op in 0..OPS_PER_SEED {
        run.step(op);
    }
    while run.tree().maintenance_step().unwrap() != Progress::Idle {}
    let view = run.tree().read_view();
    check_view(
        &mut run.rng,
        &view,
        &run.model,
        20,
        &format!("seed {seed} end"),
    );
    run.reopen();
    assert!(
        run.flushes > 0 && run.compactions > 0,
        "seed {seed}: the run never flushed or compacted"
    );
    let view = run.tree().read_view();
    check_view(
        &mut run.rng,
        &view,
        &run.model,
        20,
        &format!("seed {seed} reopened"),
    );
}

#[test]
fn tree_matches_model_over_many_seeds() {
    if let Ok(seed) = std::env::var("TREE_MODEL_SEED") {
        run_seed(seed.parse().unwrap());
        return;
    }
    let seeds: u64 = std::env::var("TREE_MODEL_SEEDS").map_or(24, |s| s.parse().unwrap());
    for seed in 0..seeds {
        run_seed(seed);
    }
}
