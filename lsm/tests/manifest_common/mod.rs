//! Shared helpers of the manifest tests: a seeded generator of valid (and invalid) edits over
//! a small key space, a tree directory on SimFs, and a guard that prints the replay command
//! of a failing seed.

#![allow(dead_code, reason = "each test file uses a different subset")]

use std::path::Path;
use std::sync::Arc;

use popdb_io::{FileSystem, FsRef, OpenOptions, SimFs};
use popdb_lsm::{FileMeta, InternalKey, LEVELS_MAX, ManifestState, ValueKind, VersionEdit};

pub use popdb_testkit::Rng;

/// The tree directory every test uses.
pub const DIR: &str = "/db";
/// User keys are the numbers below this (so files of a level collide often).
const KEY_SPACE: u64 = 200;

/// A SimFs with the tree directory created and durable.
pub fn sim(seed: u64) -> SimFs {
    let fs = SimFs::new(seed);
    fs.create_dir_all(Path::new(DIR)).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    fs
}

/// `fs` as the trait object the manifest takes.
pub fn fs_ref(fs: &SimFs) -> FsRef {
    Arc::new(fs.clone())
}

/// The durable bytes of `name` in the tree directory.
pub fn read_file(fs: &SimFs, name: &str) -> Vec<u8> {
    fs.read_durable(&Path::new(DIR).join(name)).unwrap()
}

/// Replaces `name` in the tree directory with `bytes`, durably.
pub fn write_file(fs: &SimFs, name: &str, bytes: &[u8]) {
    let options = OpenOptions {
        truncate: true,
        ..OpenOptions::create()
    };
    let file = fs.open(&Path::new(DIR).join(name), options).unwrap();
    file.write_all_at(bytes, 0).unwrap();
    file.sync_data().unwrap();
    fs.sync_dir(Path::new(DIR)).unwrap();
}

/// Prints how to replay a seed if the test panics while it is alive.
pub struct SeedGuard {
    pub seed: u64,
    pub test: &'static str,
    pub what: String,
}

impl SeedGuard {
    pub fn new(seed: u64, test: &'static str) -> Self {
        Self {
            seed,
            test,
            what: String::new(),
        }
    }
}

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "failed at seed {} {}\nreplay: MANIFEST_SEED={} cargo test --profile checked -p popdb-lsm --test {}",
                self.seed, self.what, self.seed, self.test
            );
        }
    }
}

/// The seeds to run: `MANIFEST_SEED=N` alone, else `0..MANIFEST_SEEDS` (default `count`).
pub fn seeds(count: u64) -> Vec<u64> {
    if let Ok(one) = std::env::var("MANIFEST_SEED") {
        return vec![one.parse().unwrap()];
    }
    let count = std::env::var("MANIFEST_SEEDS").map_or(count, |s| s.parse().unwrap());
    (0..count).collect()
}

/// The encoded internal key of user key number `k` (with `pad` extra bytes, so that some
/// frames are large).
fn key(k: u64, pad: usize, lsn: u64) -> Vec<u8> {
    let mut user = format!("{k:05}").into_bytes();
    user.resize(user.len() + pad, b'x');
    InternalKey::new(&user, lsn, ValueKind::Put)
        .encoded()
        .to_vec()
}

/// A file holding user keys `lo..=hi` at LSNs in `lsns`.
pub fn file_meta(
    id: u64,
    level: u8,
    (lo, hi): (u64, u64),
    lsns: (u64, u64),
    pad: usize,
) -> FileMeta {
    FileMeta {
        id,
        level,
        size: 1000 + id,
        smallest: key(lo, 0, lsns.1),
        largest: key(hi, pad, lsns.0),
        smallest_lsn: lsns.0,
        largest_lsn: lsns.1,
        entry_count: 1 + hi - lo,
    }
}

/// The user-key number range of a file made by [`file_meta`].
fn range_of(f: &FileMeta) -> (u64, u64) {
    let num = |k: &[u8]| -> u64 { std::str::from_utf8(&k[..5]).unwrap().parse().unwrap() };
    (num(&f.smallest), num(&f.largest))
}

/// Manifest-shaped draws on top of the shared generator.
pub trait Draw {
    /// A random edit that `state` accepts: a flush, a compaction step, a move, a checkpoint,
    /// or a bare bump of `next_file_id` or an empty edit.
    fn edit(&mut self, state: &ManifestState) -> VersionEdit;
    /// A random edit that `state` refuses.
    fn invalid_edit(&mut self, state: &ManifestState) -> VersionEdit;
    fn lsns(&mut self) -> (u64, u64);
    fn pad(&mut self) -> usize;
}

impl Draw for Rng {
    fn edit(&mut self, state: &ManifestState) -> VersionEdit {
        let mut edit = match self.below(20) {
            0..=7 => flush(self, state),
            8..=13 => compaction(self, state),
            14..=15 => trivial_move(self, state),
            16..=17 => VersionEdit::default(),
            18 => VersionEdit {
                next_file_id: Some(state.next_file_id + self.below(3)),
                ..VersionEdit::default()
            },
            _ => VersionEdit {
                watermark: Some(state.watermark.unwrap_or(0) + 1),
                ..VersionEdit::default()
            },
        };
        if self.chance(4) {
            let w = state.watermark.unwrap_or(0) + self.below(4);
            edit.watermark = Some(w.max(1));
        }
        edit
    }

    fn invalid_edit(&mut self, state: &ManifestState) -> VersionEdit {
        let mut edit = self.edit(state);
        let some_file = state.levels.iter().flatten().next().cloned();
        match (self.below(6), some_file) {
            (0, _) => edit
                .removed
                .push((self.below(LEVELS_MAX as u64) as u8, state.next_file_id + 5)),
            (1, Some(f)) => {
                // Alone, so that no removal of the same file makes it a move.
                edit = VersionEdit::default();
                edit.added.push(f);
            }
            (2, _) => edit.next_file_id = Some(state.next_file_id - 1),
            (3, _) if state.watermark.is_some_and(|w| w > 1) => {
                edit.watermark = Some(state.watermark.unwrap() - 1);
            }
            (4, _) => {
                let id = state.next_file_id + 10;
                edit.added.push(file_meta(id, 0, (1, 2), (1, 1), 0));
            }
            _ => edit.removed.push((LEVELS_MAX as u8, 1)),
        }
        edit
    }

    fn lsns(&mut self) -> (u64, u64) {
        let a = 1 + self.below(1000);
        (a, a + self.below(50))
    }

    fn pad(&mut self) -> usize {
        if self.chance(10) { self.index(300) } else { 0 }
    }
}

/// A new L0 file.
fn flush(rng: &mut Rng, state: &ManifestState) -> VersionEdit {
    let id = state.next_file_id;
    let lo = rng.below(KEY_SPACE);
    let hi = (lo + rng.below(30)).min(KEY_SPACE - 1);
    let (lsns, pad) = (rng.lsns(), rng.pad());
    VersionEdit {
        added: vec![file_meta(id, 0, (lo, hi), lsns, pad)],
        next_file_id: Some(id + 1),
        ..VersionEdit::default()
    }
}

/// Some files of one level merged with the overlapping files of the next into new files.
fn compaction(rng: &mut Rng, state: &ManifestState) -> VersionEdit {
    let levels: Vec<usize> = (0..LEVELS_MAX - 1)
        .filter(|&l| !state.levels[l].is_empty())
        .collect();
    if levels.is_empty() {
        return flush(rng, state);
    }
    let level = levels[rng.index(levels.len())];
    let files = &state.levels[level];
    let first = rng.index(files.len());
    let take = 1 + rng.index(3.min(files.len() - first));
    let inputs: Vec<&FileMeta> = files[first..first + take].iter().collect();
    let mut lo = inputs.iter().map(|f| range_of(f).0).min().unwrap();
    let mut hi = inputs.iter().map(|f| range_of(f).1).max().unwrap();
    let mut removed: Vec<(u8, u64)> = inputs.iter().map(|f| (level as u8, f.id)).collect();
    // L0 inputs may overlap other L0 files; the outputs go one level down, where every file
    // overlapping the inputs' whole range is an input too.
    for f in &state.levels[level + 1] {
        let (a, b) = range_of(f);
        if a <= hi && lo <= b {
            removed.push((level as u8 + 1, f.id));
            lo = lo.min(a);
            hi = hi.max(b);
        }
    }
    let mut added = Vec::new();
    let mut next = state.next_file_id;
    let mut at = lo;
    for _ in 0..rng.below(4) {
        if at > hi {
            break;
        }
        let end = (at + rng.below(hi - at + 1)).min(hi);
        let (lsns, pad) = (rng.lsns(), rng.pad());
        added.push(file_meta(next, level as u8 + 1, (at, end), lsns, pad));
        next += 1;
        at = end + 1;
    }
    VersionEdit {
        added,
        removed,
        next_file_id: Some(next),
        ..VersionEdit::default()
    }
}

/// One file moved a level down, where nothing overlaps it.
fn trivial_move(rng: &mut Rng, state: &ManifestState) -> VersionEdit {
    let level = rng.index(LEVELS_MAX - 1);
    let Some(f) = state.levels[level].first() else {
        return VersionEdit::default();
    };
    let (lo, hi) = range_of(f);
    let clear = state.levels[level + 1].iter().all(|g| {
        let (a, b) = range_of(g);
        b < lo || hi < a
    });
    let free_in_l0 = level != 0
        || state.levels[0]
            .iter()
            .filter(|g| g.id != f.id)
            .all(|g| range_of(g).1 < lo || hi < range_of(g).0);
    if !clear || !free_in_l0 {
        return VersionEdit::default();
    }
    let mut moved = f.clone();
    moved.level += 1;
    VersionEdit {
        added: vec![moved],
        removed: vec![(level as u8, f.id)],
        ..VersionEdit::default()
    }
}

/// The states after each prefix of `edits` applied to the empty state: `states[k]` is the state
/// after the first `k`.
pub fn prefix_states(edits: &[VersionEdit]) -> Vec<ManifestState> {
    let mut state = ManifestState::default();
    let mut out = vec![state.clone()];
    for edit in edits {
        state.apply(edit).unwrap();
        out.push(state.clone());
    }
    out
}

/// `count` random edits from the empty state.
pub fn random_edits(rng: &mut Rng, count: usize) -> Vec<VersionEdit> {
    let mut state = ManifestState::default();
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let edit = rng.edit(&state);
        state.apply(&edit).unwrap();
        out.push(edit);
    }
    out
}
