//! Writes the seed corpus of fuzz target `btree_file_open` with the real tree on a
//! simulated file system, never by hand, at page sizes 512 and 4096: an empty file, a small
//! tree, one with overflow values, one with a free list after several checkpoints, and that
//! one with its newest meta torn (so that open falls back to the other). Each file starts
//! with the control byte `fuzz_file_open` reads (btree/src/fuzz_open.rs); most ask for the
//! write, checkpoint and reopen step.
//!
//! Run from fuzz/: `cargo run --example make_btree_file_corpus -- corpus/btree_file_open`.

// A developer's tool that writes a scratch folder.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::sync::Arc;

use popdb_btree::internals::{CONTROL_WRITE, fuzz_file_open};
use popdb_btree::{FILE_NAME, PageSize, Tree, TreeOptions, recover_meta};
use popdb_io::{FsRef, SimFs};

const DIR: &str = "/t";

/// What to put in a tree before its bytes are taken.
#[derive(Clone, Copy)]
enum Shape {
    Empty,
    Small,
    Overflow,
    FreeList,
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:05}").into_bytes()
}

/// Builds a tree of `shape` at `page_size` and returns its file's durable bytes.
fn build(page_size: PageSize, shape: Shape) -> Vec<u8> {
    let sim = SimFs::new(7);
    let fs: FsRef = Arc::new(sim.clone());
    let options = TreeOptions {
        page_size,
        roots_retained: 4,
    };
    let tree = Tree::open(fs, Path::new(DIR), options).expect("open a fresh tree");
    let payload_max = page_size.leaf_payload_max();
    let mut lsn = 0;
    let mut batch = |tree: &Tree, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>| {
        lsn += 1;
        tree.apply(lsn, &writes).expect("apply");
        tree.checkpoint(lsn).expect("checkpoint");
    };
    match shape {
        Shape::Empty => {}
        Shape::Small => batch(
            &tree,
            (0..12).map(|i| (key(i), Some(vec![b'v'; 8]))).collect(),
        ),
        Shape::Overflow => {
            let writes = (0..6)
                .map(|i| {
                    let len = if i % 2 == 0 {
                        payload_max + 1 + 300 * i as usize
                    } else {
                        20
                    };
                    (key(i), Some(vec![i as u8; len]))
                })
                .collect();
            batch(&tree, writes);
        }
        Shape::FreeList => {
            let keys = if page_size.bytes() == 512 { 60 } else { 120 };
            batch(
                &tree,
                (0..keys).map(|i| (key(i), Some(vec![b'a'; 24]))).collect(),
            );
            // Overwrites and deletes rewrite leaves; the pages they leave go to the free
            // list, and later checkpoints reuse some.
            batch(
                &tree,
                (0..keys)
                    .step_by(3)
                    .map(|i| (key(i), Some(vec![b'b'; 30])))
                    .collect(),
            );
            batch(
                &tree,
                (0..keys).step_by(5).map(|i| (key(i), None)).collect(),
            );
            let big = vec![b'c'; payload_max + 40];
            batch(&tree, vec![(key(1), Some(big)), (key(2), None)]);
            batch(
                &tree,
                (0..keys)
                    .step_by(7)
                    .map(|i| (key(i), Some(vec![b'd'; 10])))
                    .collect(),
            );
            assert!(
                tree.stats().free_pages > 0,
                "no free list: {:?}",
                tree.stats()
            );
        }
    }
    tree.check_invariants();
    drop(tree);
    sim.read_durable(&Path::new(DIR).join(FILE_NAME))
        .expect("read the tree's file")
}

/// `file` with its newest meta zeroed from byte 64 on (its fields end at byte 113; the
/// rest of the page is zeros), as a crash while writing it might leave it.
fn tear_newest_meta(file: &[u8]) -> Vec<u8> {
    let choice = recover_meta(file).expect("the file's metas");
    assert!(
        choice.previous.is_some(),
        "both metas are valid before the tear"
    );
    let size = choice.current.page_size.bytes();
    let at = usize::try_from(choice.current.page_id().0).expect("0 or 1") * size;
    let mut torn = file.to_vec();
    torn[at + 64..at + size].fill(0);
    let fallback = recover_meta(&torn).expect("falls back to the other meta");
    assert!(fallback.damaged.is_some(), "the tear is seen");
    assert_eq!(fallback.current.txn_id.0 + 1, choice.current.txn_id.0);
    torn
}

fn write(dir: &Path, name: &str, c0: u8, file: &[u8]) {
    let mut data = vec![c0];
    data.extend_from_slice(file);
    let summary = fuzz_file_open(&data);
    assert!(summary.opened, "{name} does not open: {summary:?}");
    assert_eq!(summary.errors, 0, "{name}: {summary:?}");
    assert!(summary.disagreements.is_empty(), "{name}: {summary:?}");
    std::fs::write(dir.join(name), &data).expect("write a corpus file");
    println!("{name}: {} bytes, {} entries", data.len(), summary.entries);
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: make_btree_file_corpus DIR");
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).expect("create the corpus folder");
    for bytes in [512, 4096] {
        let size = PageSize::new(bytes).expect("a page size");
        let shapes = [
            ("empty", Shape::Empty),
            ("small", Shape::Small),
            ("overflow", Shape::Overflow),
            ("free-list", Shape::FreeList),
        ];
        for (name, shape) in shapes {
            let file = build(size, shape);
            write(dir, &format!("{name}-{bytes}"), CONTROL_WRITE, &file);
            if let Shape::FreeList = shape {
                let torn = tear_newest_meta(&file);
                write(dir, &format!("torn-meta-{bytes}"), CONTROL_WRITE, &torn);
            }
        }
    }
    let small = build(PageSize::new(512).expect("a page size"), Shape::Small);
    write(dir, "small-512-read-only", 0, &small);
}
