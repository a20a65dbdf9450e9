//! Space: steady random overwrites over many checkpoints keep the file bounded, because
//! each checkpoint reuses the pages the one before it freed. On the real file system (the
//! simulator keeps a copy of a map per content it was read at, which would dominate).
//!
//! The figure is printed: `cargo test --profile checked -p popdb-btree --test tree_space
//! -- --nocapture`.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]
#![allow(
    clippy::disallowed_methods,
    reason = "a scratch directory for the real file system"
)]

use std::path::PathBuf;
use std::sync::Arc;

use popdb_btree::{Tree, TreeOptions};
use popdb_io::{FsRef, RealFs};
use popdb_testkit::Rng;

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("popdb-btree-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const KEYS: u64 = 20_000;
const ROUNDS: u64 = 200;
const WRITES_PER_ROUND: u64 = 1_000;

#[test]
fn steady_overwrites_keep_the_file_bounded() {
    let scratch = Scratch::new("space");
    let fs: FsRef = Arc::new(RealFs::new());
    let tree = Tree::open(fs, &scratch.0, TreeOptions::default()).unwrap();
    let key = |i: u64| format!("key{i:013}").into_bytes();
    let mut rng = Rng(5);
    let mut lsn = 1;
    let load: Vec<_> = (0..KEYS).map(|i| (key(i), Some(vec![b'a'; 100]))).collect();
    tree.apply(lsn, &load).unwrap();
    tree.checkpoint(lsn).unwrap();
    let loaded = tree.stats().file_pages;
    let mut sizes = Vec::new();
    for round in 0..ROUNDS {
        // A reader holds a view across a checkpoint now and then: its pages wait a round.
        let held = (round % 10 == 0).then(|| tree.read_view());
        for _ in 0..WRITES_PER_ROUND / 100 {
            lsn += 1;
            let byte = u8::try_from(lsn % 251).unwrap();
            let batch: Vec<_> = (0..100)
                .map(|_| (key(rng.below(KEYS)), Some(vec![byte; 100])))
                .collect();
            tree.apply(lsn, &batch).unwrap();
        }
        tree.checkpoint(lsn).unwrap();
        drop(held);
        sizes.push(tree.stats().file_pages);
    }
    tree.check_invariants();
    let tree_pages = tree.read_view().stats().unwrap().node_count;
    let settled = sizes[usize::try_from(ROUNDS / 4).unwrap()..]
        .iter()
        .copied()
        .max()
        .unwrap();
    let last = *sizes.last().unwrap();
    let stats = tree.stats();
    eprintln!(
        "space: {KEYS} keys, {ROUNDS} checkpoints of {WRITES_PER_ROUND} random overwrites: \
         tree {tree_pages} pages, file {loaded} pages after the load, at most {settled} after \
         round {}, {last} at the end ({:.2}x the tree), {} free",
        ROUNDS / 4,
        last as f64 / tree_pages as f64,
        stats.free_pages
    );
    // Bounded: no growth over the last three quarters beyond what one round adds, and a
    // file within a small multiple of its tree.
    let quarter = sizes[usize::try_from(ROUNDS / 4).unwrap()];
    assert!(last <= quarter + quarter / 10, "{sizes:?}");
    assert!(
        last <= 3 * tree_pages,
        "file {last} pages for a tree of {tree_pages}"
    );
}
