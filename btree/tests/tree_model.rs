//! The tree against a `BTreeMap` model: random batches (repeated keys, deletes, empty and
//! maximal keys and values, values too large for a leaf), gets, scans both ways with every
//! bound kind, prefixes, read views held across many writes and checkpoints,
//! `read_view_at`, checkpoints (at the latest LSN, a retained one, or above), reopens
//! (some after a simulated crash) that come back at the watermark, and the tree's and
//! file's invariants after every step.
//!
//! Replay one seed: `BTREE_SEED=<seed> cargo test --profile checked -p popdb-btree --test
//! tree_model` (the page size rotates with the seed). `BTREE_SEEDS=<n>` runs more seeds.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use std::path::Path;
use std::sync::Arc;

use popdb_btree::{Direction, Error, PageSize, ReadView, Tree, TreeOptions, Versioned};
use popdb_io::{FsRef, SimFs};
use popdb_testkit::Rng;

/// Key -> (value or `None` for a tombstone, version).
type Model = BTreeMap<Vec<u8>, (Option<Vec<u8>>, u64)>;

const RETAINED: usize = 4;
const PAGE_SIZES: [u32; 3] = [512, 1024, 4096];

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap())
}

#[test]
fn tree_random_ops_match_the_model() {
    let seeds: Vec<u64> = match env_u64("BTREE_SEED") {
        Some(seed) => vec![seed],
        None => (1..=env_u64("BTREE_SEEDS").unwrap_or(24)).collect(),
    };
    for seed in seeds {
        let result = catch_unwind(AssertUnwindSafe(|| run_seed(seed, 600)));
        if let Err(panic) = result {
            eprintln!(
                "replay: BTREE_SEED={seed} cargo test --profile checked -p popdb-btree \
                 --test tree_model"
            );
            resume_unwind(panic);
        }
    }
}

struct Gen {
    rng: Rng,
    page_size: PageSize,
}

impl Gen {
    fn key(&mut self) -> Vec<u8> {
        let rng = &mut self.rng;
        match rng.below(20) {
            0 => Vec::new(),
            1 => {
                let mut key = rng.bytes(3, b"ab\xff");
                key.resize(self.page_size.key_size_max(), b'x');
                key
            }
            2 | 3 => {
                let mut key = vec![b'L'];
                key.extend(rng.bytes(3, b"ab"));
                let len = 1 + rng.index(self.page_size.key_size_max());
                key.resize(len, b'k');
                key
            }
            _ => {
                let mut key = rng.bytes(2, b"\x00ab\xff");
                let n = u16::try_from(rng.below(400)).unwrap();
                key.extend([(n >> 8) as u8, (n & 0xff) as u8]);
                key
            }
        }
    }

    fn value(&mut self, key: &[u8]) -> Vec<u8> {
        let max = self.page_size.leaf_payload_max() - key.len();
        let len = match self.rng.below(8) {
            0 => 0,
            1 => max,
            // Too large for a leaf: a side value.
            2 => max + 1,
            3 => max + 1 + self.rng.index(3 * self.page_size.bytes()),
            4 => self.rng.index(max + 1),
            _ => self.rng.index(max.min(24) + 1),
        };
        let byte = u8::try_from(self.rng.below(256)).unwrap();
        vec![byte; len]
    }

    fn bound(&mut self) -> Bound<Vec<u8>> {
        match self.rng.below(3) {
            0 => Bound::Unbounded,
            1 => Bound::Included(self.key()),
            _ => Bound::Excluded(self.key()),
        }
    }
}

fn open(fs: &SimFs, page_size: PageSize) -> Tree {
    let options = TreeOptions {
        page_size,
        roots_retained: RETAINED,
    };
    let fs: FsRef = Arc::new(fs.clone());
    Tree::open(fs, Path::new("/t"), options).unwrap()
}

fn run_seed(seed: u64, applies: u64) {
    let page_size = PageSize::new(PAGE_SIZES[usize::try_from(seed % 3).unwrap()]).unwrap();
    let fs = SimFs::new(seed);
    let mut tree = open(&fs, page_size);
    let mut g = Gen {
        rng: Rng(seed),
        page_size,
    };
    let mut model = Model::new();
    let mut history: VecDeque<(u64, Model)> = VecDeque::from([(0, Model::new())]);
    let mut durable: (u64, Model) = (0, Model::new());
    let mut held: Vec<(ReadView, Model)> = Vec::new();
    let mut lsn = 0;
    for _ in 0..applies {
        lsn += 1 + g.rng.below(3);
        apply_batch(&tree, &mut g, &mut model, lsn);
        if history.len() == RETAINED {
            history.pop_front();
        }
        history.push_back((lsn, model.clone()));
        for _ in 0..4 {
            let key = g.key();
            check_get(&tree.read_view(), &model, &key);
        }
        check_scan(&tree.read_view(), &model, &mut g);
        if g.rng.chance(10) {
            held.push((tree.read_view(), model.clone()));
        }
        if g.rng.chance(20) && !held.is_empty() {
            let (view, snapshot) = held.swap_remove(g.rng.index(held.len()));
            view.check_invariants();
            check_scan_all(&view, &snapshot);
        }
        check_view_at(&tree, &history, &mut g);
        if g.rng.chance(8) {
            let c = checkpoint(&tree, &mut g, &mut history, &mut durable);
            lsn = lsn.max(c);
        }
        tree.check_invariants();
        if g.rng.chance(40) {
            // Reopen (after a crash, half the time): the tree reads at its watermark, and
            // the writes after it are gone until the owner replays them.
            for (view, snapshot) in held.drain(..) {
                check_scan_all(&view, &snapshot);
            }
            drop(tree);
            if g.rng.chance(2) {
                fs.crash();
                fs.restart();
            }
            tree = open(&fs, page_size);
            let watermark = tree.watermark().unwrap_or(0);
            assert_eq!(watermark, durable.0);
            assert_eq!(tree.last_applied(), tree.watermark());
            model = durable.1.clone();
            history = VecDeque::from([durable.clone()]);
            lsn = lsn.max(watermark);
            check_scan_all(&tree.read_view(), &model);
            tree.check_invariants();
        }
    }
    for (view, snapshot) in &held {
        check_scan_all(view, snapshot);
    }
    let stats = tree.read_view().stats().unwrap();
    let live = model.values().filter(|(v, _)| v.is_some()).count();
    assert_eq!(stats.entry_count, live as u64);
    let large: usize = model
        .iter()
        .filter_map(|(k, (v, _))| {
            v.as_ref()
                .filter(|v| !page_size.stores_inline(k.len(), v.len()))
        })
        .map(Vec::len)
        .sum();
    assert_eq!(stats.overflow_value_bytes, large as u64);
}

/// A checkpoint at the last applied LSN, or at a retained one, or above the last applied
/// (an idle tree's watermark moves too).
fn checkpoint(
    tree: &Tree,
    g: &mut Gen,
    history: &mut VecDeque<(u64, Model)>,
    durable: &mut (u64, Model),
) -> u64 {
    let (latest, _) = history.back().unwrap().clone();
    let c = match g.rng.below(4) {
        0 => {
            let candidates: Vec<u64> = history
                .iter()
                .map(|(l, _)| *l)
                .filter(|l| *l >= durable.0)
                .collect();
            candidates[g.rng.index(candidates.len())]
        }
        1 => latest + 1 + g.rng.below(2),
        _ => latest,
    };
    if c == 0 {
        return 0;
    }
    tree.checkpoint(c).unwrap();
    assert_eq!(tree.watermark(), Some(c));
    let (root_lsn, snapshot) = history.iter().rev().find(|(l, _)| *l <= c).unwrap().clone();
    *durable = (c, snapshot);
    // Roots below the checkpoint's are no longer retained.
    history.retain(|(l, _)| *l >= root_lsn);
    if c > latest {
        // No later batch may take an LSN through `c`.
        let again = tree.apply(c, &[(b"k".as_slice(), Some(b"v".as_slice()))]);
        assert!(
            matches!(again, Err(Error::LsnNotIncreasing { .. })),
            "{again:?}"
        );
        let behind = tree.checkpoint(c - 1);
        assert!(
            matches!(behind, Err(Error::CheckpointBehind { .. })),
            "{behind:?}"
        );
    }
    c
}

fn apply_batch(tree: &Tree, g: &mut Gen, model: &mut Model, lsn: u64) {
    let count = g.rng.index(10);
    let mut batch: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(count);
    for _ in 0..count {
        let key = if !batch.is_empty() && g.rng.chance(5) {
            batch[g.rng.index(batch.len())].0.clone()
        } else {
            g.key()
        };
        let value = if g.rng.chance(3) {
            None
        } else {
            Some(g.value(&key))
        };
        batch.push((key, value));
    }
    tree.apply(lsn, &batch).unwrap();
    for (key, value) in batch {
        model.insert(key, (value, lsn));
    }
    assert_eq!(tree.last_applied(), Some(lsn));
}

fn check_get(view: &ReadView, model: &Model, key: &[u8]) {
    let expected = match model.get(key) {
        Some((Some(value), version)) => Some(Versioned {
            value: value.clone(),
            version: *version,
        }),
        _ => None,
    };
    assert_eq!(view.get(key).unwrap(), expected, "get {key:?}");
    let mut buffer = b"stale".to_vec();
    let version = view.get_into(key, &mut buffer).unwrap();
    assert_eq!(version, expected.as_ref().map(|e| e.version));
    assert_eq!(buffer, expected.map(|e| e.value).unwrap_or_default());
}

fn model_range(
    model: &Model,
    bounds: (Bound<Vec<u8>>, Bound<Vec<u8>>),
    dir: Direction,
) -> Vec<(Vec<u8>, Vec<u8>, u64)> {
    let valid = match (&bounds.0, &bounds.1) {
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
            a < b || (a == b && matches!(bounds, (Bound::Included(_), Bound::Included(_))))
        }
        _ => true,
    };
    if !valid {
        return Vec::new();
    }
    let live = model
        .range(bounds)
        .filter_map(|(k, (v, ver))| v.as_ref().map(|v| (k.clone(), v.clone(), *ver)));
    match dir {
        Direction::Forward => live.collect(),
        Direction::Backward => live.rev().collect(),
    }
}

fn collect(
    view: &ReadView,
    bounds: (Bound<Vec<u8>>, Bound<Vec<u8>>),
    dir: Direction,
) -> Vec<(Vec<u8>, Vec<u8>, u64)> {
    let mut iter = view.scan(bounds, dir).unwrap();
    let mut out = Vec::new();
    while iter.valid() {
        out.push((iter.key().to_vec(), iter.value().to_vec(), iter.version()));
        iter.next().unwrap();
    }
    out
}

fn check_scan(view: &ReadView, model: &Model, g: &mut Gen) {
    let dir = if g.rng.chance(2) {
        Direction::Forward
    } else {
        Direction::Backward
    };
    let bounds = (g.bound(), g.bound());
    let got = collect(view, bounds.clone(), dir);
    assert_eq!(
        got,
        model_range(model, bounds.clone(), dir),
        "scan {bounds:?} {dir:?}"
    );
    let mut prefix = g.key();
    prefix.truncate(g.rng.index(3));
    let bounds = popdb_btree::prefix_bounds(&prefix);
    let mut iter = view.prefix(&prefix, dir).unwrap();
    let mut got = Vec::new();
    while iter.valid() {
        assert!(iter.key().starts_with(&prefix));
        got.push((iter.key().to_vec(), iter.value().to_vec(), iter.version()));
        iter.next().unwrap();
    }
    assert_eq!(
        got,
        model_range(model, bounds, dir),
        "prefix {prefix:?} {dir:?}"
    );
}

fn check_scan_all(view: &ReadView, model: &Model) {
    for dir in [Direction::Forward, Direction::Backward] {
        let all = (Bound::Unbounded, Bound::Unbounded);
        assert_eq!(
            collect(view, all.clone(), dir),
            model_range(model, all, dir)
        );
    }
    for key in model.keys().take(50) {
        check_get(view, model, key);
    }
}

fn check_view_at(tree: &Tree, history: &VecDeque<(u64, Model)>, g: &mut Gen) {
    let (oldest, _) = history.front().unwrap();
    let (latest, _) = history.back().unwrap();
    let lsn = oldest + g.rng.below(latest - oldest + 1);
    let (_, snapshot) = history.iter().rev().find(|(l, _)| *l <= lsn).unwrap();
    let view = tree.read_view_at(lsn).unwrap();
    assert_eq!(view.lsn(), (lsn > 0).then_some(lsn));
    check_scan_all(&view, snapshot);
    let past = tree.read_view_at(latest + 1);
    assert!(
        matches!(past, Err(Error::ViewOutOfRange { .. })),
        "{past:?}"
    );
    if *oldest > 0 {
        let before = tree.read_view_at(oldest - 1);
        assert!(
            matches!(before, Err(Error::ViewOutOfRange { .. })),
            "{before:?}"
        );
    }
}

/// The canary: the model checks must catch a model that differs from the tree by one
/// entry's value, version or presence, or the harness is broken.
#[test]
fn canary_model_checks_catch_a_wrong_model() {
    let tree = open(&SimFs::new(1), PageSize::DEFAULT);
    tree.apply(3, &[(b"a", Some(b"1")), (b"b", Some(b"2"))])
        .unwrap();
    let right: Model = [
        (b"a".to_vec(), (Some(b"1".to_vec()), 3)),
        (b"b".to_vec(), (Some(b"2".to_vec()), 3)),
    ]
    .into();
    check_scan_all(&tree.read_view(), &right);
    let mut wrongs = vec![right.clone(), right.clone(), right.clone()];
    wrongs[0].get_mut(b"a".as_slice()).unwrap().0 = Some(b"x".to_vec());
    wrongs[1].get_mut(b"b".as_slice()).unwrap().1 = 2;
    wrongs[2].remove(b"b".as_slice());
    for wrong in wrongs {
        let caught = catch_unwind(AssertUnwindSafe(|| {
            check_scan_all(&tree.read_view(), &wrong);
        }));
        assert!(caught.is_err(), "the model check missed {wrong:?}");
    }
}
