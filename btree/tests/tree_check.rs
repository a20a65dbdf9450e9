//! `Tree::check`, the offline verifier's check: clean on a healthy tree, and on a tree whose
//! file has a damaged page it returns a `Corruption` error (or `Ok`, when the page is one
//! neither tree reaches), never a panic. Each page of a small file in turn gets one flipped
//! byte in its middle; the tree is reopened, written to (so pages only the durable tree
//! reaches exist beside the latest tree's) and checked.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::path::Path;
use std::sync::Arc;

use popdb_btree::{Error, FILE_NAME, PageSize, Tree, TreeOptions};
use popdb_io::{FsRef, OpenOptions, SimFs};

const DIR: &str = "/check";
const PAGE_SIZE: u32 = 512;
const KEYS_COUNT: u64 = 300;

fn options() -> TreeOptions {
    TreeOptions {
        page_size: PageSize::new(PAGE_SIZE).unwrap(),
        roots_retained: 4,
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

/// Every third value is too large for a leaf: an overflow chain.
fn value(i: u64, round: u64) -> Vec<u8> {
    let len = if i.is_multiple_of(3) { 700 } else { 20 };
    vec![(i + round) as u8; len]
}

/// The file of a tree of `KEYS_COUNT` keys, checkpointed twice with overwrites between.
fn build() -> Vec<u8> {
    let sim = SimFs::new(7);
    let fs: FsRef = Arc::new(sim.clone());
    let tree = Tree::open(Arc::clone(&fs), Path::new(DIR), options()).unwrap();
    let batch: Vec<_> = (0..KEYS_COUNT)
        .map(|i| (key(i), Some(value(i, 0))))
        .collect();
    tree.apply(1, &batch).unwrap();
    tree.checkpoint(1).unwrap();
    let batch: Vec<_> = (0..KEYS_COUNT)
        .step_by(5)
        .map(|i| (key(i), Some(value(i, 1))))
        .collect();
    tree.apply(2, &batch).unwrap();
    tree.checkpoint(2).unwrap();
    drop(tree);
    sim.read_durable(&Path::new(DIR).join(FILE_NAME)).unwrap()
}

/// Opens `file` on a fresh file system, writes to it and checks it.
fn open_write_check(file: &[u8]) -> popdb_btree::Result<popdb_btree::TreeStats> {
    let fs: FsRef = Arc::new(SimFs::new(1));
    fs.create_dir_all(Path::new(DIR)).unwrap();
    let handle = fs
        .open(&Path::new(DIR).join(FILE_NAME), OpenOptions::create())
        .unwrap();
    handle.write_all_at(file, 0).unwrap();
    handle.sync_all().unwrap();
    fs.sync_dir(Path::new(DIR)).unwrap();
    drop(handle);
    let tree = Tree::open(fs, Path::new(DIR), options())?;
    let batch: Vec<_> = (0..KEYS_COUNT)
        .step_by(7)
        .map(|i| (key(i), Some(value(i, 2))))
        .collect();
    tree.apply(3, &batch)?;
    tree.check()
}

#[test]
fn tree_check_healthy_file_checks_clean() {
    let stats = open_write_check(&build()).unwrap();
    assert_eq!(stats.entry_count, KEYS_COUNT);
    assert_eq!(stats.tombstone_count, 0);
    assert!(stats.depth >= 2, "depth {}", stats.depth);
    assert!(stats.fill_factor() > 0.0 && stats.fill_factor() <= 1.0);
}

#[test]
fn tree_check_flipped_byte_in_any_page_gives_corruption_or_clean_never_a_panic() {
    let pristine = build();
    let page_bytes = PAGE_SIZE as usize;
    let pages_count = pristine.len() / page_bytes;
    assert!(pages_count > 10, "{pages_count} pages");
    let mut corruptions = 0;
    // Pages 0 and 1 are the metas: the tree falls back or refuses to open, which the
    // corruption tests cover.
    for page in 2..pages_count {
        let mut file = pristine.clone();
        file[page * page_bytes + page_bytes / 2] ^= 0x5a;
        match open_write_check(&file) {
            Ok(_) => {}
            Err(Error::Corruption(c)) => {
                assert!((c.page_id.0 as usize) < pages_count, "page {}", c.page_id.0);
                corruptions += 1;
            }
            Err(other) => panic!("page {page}: not a corruption: {other}"),
        }
    }
    assert!(corruptions > 0, "no flip was found");
}
