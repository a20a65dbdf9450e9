//! Shared by the tree tests: a model of every applied batch, random draws shaped for trees,
//! tiny options that make flushes and compactions frequent, and helpers that compare a read
//! view with the model.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use popdb_io::SimFs;
use popdb_lsm::{Direction, ReadView, SstWriterOptions, Tree, TreeOptions, Versioned};
use popdb_testkit::Rng;

/// One batch as applied: (key, value or delete), last write to a key wins.
pub type Batch = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// One version of a key: (lsn, value or delete).
pub type Version = (u64, Option<Vec<u8>>);

/// Every batch applied, in LSN order, and the watermark.
#[derive(Debug, Default, Clone)]
pub struct Model {
    pub batches: Vec<(u64, Batch)>,
    /// key -> versions (lsn, value or delete), LSN ascending.
    pub versions: BTreeMap<Vec<u8>, Vec<Version>>,
}

impl Model {
    pub fn apply(&mut self, lsn: u64, batch: &Batch) {
        if let Some((last, _)) = self.batches.last() {
            assert!(lsn > *last, "model lsn regressed");
        }
        self.batches.push((lsn, batch.clone()));
        let mut last: BTreeMap<&Vec<u8>, &Option<Vec<u8>>> = BTreeMap::new();
        for (k, v) in batch {
            last.insert(k, v);
        }
        for (k, v) in last {
            self.versions
                .entry(k.clone())
                .or_default()
                .push((lsn, v.clone()));
        }
    }

    /// The batches above `lsn`: what a replay from a watermark applies again.
    pub fn batches_above(&self, lsn: u64) -> Vec<(u64, Batch)> {
        self.batches
            .iter()
            .filter(|(l, _)| *l > lsn)
            .cloned()
            .collect()
    }

    /// Forgets every batch above `lsn` (a crash lost them and nothing replays them).
    pub fn truncate_above(&mut self, lsn: u64) {
        self.batches.retain(|(l, _)| *l <= lsn);
        for versions in self.versions.values_mut() {
            versions.retain(|(l, _)| *l <= lsn);
        }
        self.versions.retain(|_, v| !v.is_empty());
    }

    pub fn get(&self, key: &[u8], view: u64) -> Option<Versioned> {
        let versions = self.versions.get(key)?;
        let (lsn, value) = versions.iter().rev().find(|(l, _)| *l <= view)?;
        value.as_ref().map(|v| Versioned {
            value: v.clone(),
            version: *lsn,
        })
    }

    pub fn scan(
        &self,
        bounds: &(Bound<Vec<u8>>, Bound<Vec<u8>>),
        view: u64,
        direction: Direction,
    ) -> Vec<(Vec<u8>, Vec<u8>, u64)> {
        let mut rows: Vec<_> = self
            .versions
            .keys()
            .filter(|k| within(k, bounds))
            .filter_map(|k| self.get(k, view).map(|v| (k.clone(), v.value, v.version)))
            .collect();
        if direction == Direction::Backward {
            rows.reverse();
        }
        rows
    }

    pub fn last_lsn(&self) -> u64 {
        self.batches.last().map_or(0, |(l, _)| *l)
    }
}

pub fn within(key: &[u8], (lower, upper): &(Bound<Vec<u8>>, Bound<Vec<u8>>)) -> bool {
    let above = match lower {
        Bound::Included(l) => key >= l.as_slice(),
        Bound::Excluded(l) => key > l.as_slice(),
        Bound::Unbounded => true,
    };
    let below = match upper {
        Bound::Included(u) => key <= u.as_slice(),
        Bound::Excluded(u) => key < u.as_slice(),
        Bound::Unbounded => true,
    };
    above && below
}

/// Options that flush every few KiB and compact often, so a few thousand operations reach
/// L2 and deeper.
pub fn tiny_options() -> TreeOptions {
    TreeOptions {
        memtable_size_max: 4 * 1024,
        frozen_count_max: 2,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 4,
        l0_stop_trigger: 6,
        level_size_base: 8 * 1024,
        level_size_ratio: 2,
        target_file_size: 4 * 1024,
        sst: SstWriterOptions {
            block_size: 256,
            restart_interval: 4,
            ..SstWriterOptions::default()
        },
        // The Db's mode: a reopened tree reads at its watermark and the test replays the
        // batches above it, as the Db replays its log.
        log_backed: true,
        // Small enough that blocks are evicted and read again.
        block_cache: popdb_lsm::BlockCache::new(64 * 1024),
        ..TreeOptions::default()
    }
}

/// As [`tiny_options`], with zstd-compressed data blocks on odd seeds.
/// Seeds 2 mod 3 also gate flushes on a durable LSN that the test lets lag
/// ([`gated`]), which makes checkpoints split memtables at their LSN.
pub fn tiny_options_for(seed: u64) -> TreeOptions {
    let mut options = tiny_options();
    if seed % 2 == 1 {
        options.sst.compression = popdb_lsm::Compression::Zstd { level: 1 };
    }
    options.flush_needs_durable_lsn = gated(seed);
    options
}

/// Whether seed `seed`'s trees gate flushes on the durable LSN.
pub fn gated(seed: u64) -> bool {
    seed % 3 == 2
}

/// Tree-shaped draws on top of the shared generator.
pub trait Draw {
    fn key(&mut self) -> Vec<u8>;
    fn value(&mut self) -> Vec<u8>;
    fn bound(&mut self) -> Bound<Vec<u8>>;
    fn batch(&mut self) -> Batch;
}

impl Draw for Rng {
    /// Keys from a small alphabet with lengths 0..6, so they repeat, nest as prefixes and
    /// can be empty, while hundreds are distinct.
    fn key(&mut self) -> Vec<u8> {
        const ALPHABET: [u8; 6] = [0, 1, b'a', b'b', b'c', 0xff];
        let len = self.below(6) as usize;
        (0..len).map(|_| ALPHABET[self.below(6) as usize]).collect()
    }

    fn value(&mut self) -> Vec<u8> {
        let len = self.below(48) as usize;
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn bound(&mut self) -> Bound<Vec<u8>> {
        match self.below(3) {
            0 => Bound::Included(self.key()),
            1 => Bound::Excluded(self.key()),
            _ => Bound::Unbounded,
        }
    }

    fn batch(&mut self) -> Batch {
        let n = 1 + self.below(6) as usize;
        let mut batch: Batch = Vec::with_capacity(n);
        for _ in 0..n {
            let key = if !batch.is_empty() && self.chance(4) {
                batch[self.index(batch.len())].0.clone()
            } else {
                self.key()
            };
            let value = (!self.chance(4)).then(|| self.value());
            batch.push((key, value));
        }
        batch
    }
}

/// Every row of a scan.
pub fn collect(
    view: &ReadView,
    bounds: &(Bound<Vec<u8>>, Bound<Vec<u8>>),
    direction: Direction,
) -> Vec<(Vec<u8>, Vec<u8>, u64)> {
    let mut it = view.scan(bounds.clone(), direction).unwrap();
    let mut rows = Vec::new();
    while it.valid() {
        rows.push((it.key().to_vec(), it.value().to_vec(), it.version()));
        it.next().unwrap();
    }
    rows
}

/// Checks a view against the model with `checks` random gets and scans, plus one full scan
/// each way.
pub fn check_view(rng: &mut Rng, view: &ReadView, model: &Model, checks: usize, context: &str) {
    let at = view.lsn();
    for _ in 0..checks {
        let key = rng.key();
        assert_eq!(
            view.get(&key).unwrap(),
            model.get(&key, at),
            "{context}: get {key:?} at {at}"
        );
        let bounds = if rng.chance(4) {
            let p = rng.key();
            popdb_lsm_prefix_bounds(&p)
        } else {
            (rng.bound(), rng.bound())
        };
        let direction = if rng.chance(2) {
            Direction::Forward
        } else {
            Direction::Backward
        };
        assert_eq!(
            collect(view, &bounds, direction),
            model.scan(&bounds, at, direction),
            "{context}: scan {bounds:?} {direction:?} at {at}"
        );
    }
    let all = (Bound::Unbounded, Bound::Unbounded);
    for direction in [Direction::Forward, Direction::Backward] {
        assert_eq!(
            collect(view, &all, direction),
            model.scan(&all, at, direction),
            "{context}: full scan {direction:?} at {at}"
        );
    }
}

/// The bounds of a prefix scan, computed independently of the tree's own helper.
pub fn popdb_lsm_prefix_bounds(prefix: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return (Bound::Included(prefix.to_vec()), Bound::Excluded(end));
        }
    }
    (Bound::Included(prefix.to_vec()), Bound::Unbounded)
}

/// A key of 8 to 16 KiB (a few distinct ones, so they overwrite each other): a flush of it
/// logs a manifest edit of tens of KiB, so a few hundred writes rotate the manifest.
pub fn big_key(rng: &mut Rng) -> Vec<u8> {
    let mut key = vec![b'b'; 8 * 1024 + rng.index(8 * 1024)];
    key[0] = b'a' + rng.below(4) as u8;
    key
}

/// The names in `dir` that end in `.sst`.
pub fn sst_file_names(sim: &SimFs, dir: &Path) -> Vec<String> {
    sim.file_names(dir)
        .unwrap()
        .into_iter()
        .filter(|n| Path::new(n).extension().is_some_and(|e| e == "sst"))
        .collect()
}

/// Asserts that `dir` holds exactly the open tree's files: `CURRENT`, one manifest, and the
/// SSTs its version names (every named SST is open, so equal counts mean equal sets); no
/// orphan SST, old manifest or `CURRENT.tmp`.
pub fn assert_no_debris(sim: &SimFs, dir: &Path, tree: &Tree, context: &str) {
    let names = sim.file_names(dir).unwrap();
    let live: usize = tree.stats().levels.iter().map(|l| l.files).sum();
    let ssts = sst_file_names(sim, dir);
    assert_eq!(live, ssts.len(), "{context}: orphan SSTs remain: {names:?}");
    let manifests = names.iter().filter(|n| n.starts_with("MANIFEST-")).count();
    assert_eq!(manifests, 1, "{context}: stray manifests remain: {names:?}");
    let others: Vec<&String> = names
        .iter()
        .filter(|n| *n != "CURRENT" && !n.starts_with("MANIFEST-") && !ssts.contains(n))
        .collect();
    assert!(others.is_empty(), "{context}: debris remains: {others:?}");
    assert!(
        names.iter().any(|n| n == "CURRENT"),
        "{context}: no CURRENT"
    );
}
