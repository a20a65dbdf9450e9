//! A flipped byte anywhere in a tree's files (every SST, the manifest, `CURRENT`) gives a
//! `Corruption` error naming the file, at open or at the read that meets it — never wrong
//! data and never a panic. Each byte of each file is flipped in turn (the original restored
//! after), the tree is reopened, and every key is read by point reads and by scans both
//! ways; what is read must match the model.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod tree_common;

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use popdb_io::{FsRef, OpenOptions, SimFs};
use popdb_lsm::{Direction, Error, Progress, Result, Tree};
use popdb_testkit::Rng;

use tree_common::{Draw, Model, collect, tiny_options};

const DIR: &str = "/corrupt";

/// Builds a tree with a few SSTs over two levels and a checkpoint; returns the model.
fn build(fs: &FsRef) -> Model {
    let tree = Tree::open(fs.clone(), Path::new(DIR), tiny_options()).unwrap();
    let mut rng = Rng(5);
    let mut model = Model::default();
    for lsn in 1..=120 {
        let batch = rng.batch();
        tree.apply(lsn, &batch).unwrap();
        model.apply(lsn, &batch);
        if lsn % 40 == 0 {
            tree.checkpoint(lsn).unwrap();
            while tree.maintenance_step().unwrap() != Progress::Idle {}
        }
    }
    let stats = tree.stats();
    assert!(
        stats.levels[0].files + stats.levels[1].files >= 2,
        "{stats:?}"
    );
    model
}

/// Opens the tree and reads everything; `Ok` only if every read matched the model.
fn read_all(fs: &FsRef, model: &Model) -> Result<()> {
    let tree = Tree::open(fs.clone(), Path::new(DIR), tiny_options())?;
    let view = tree.read_view();
    let at = view.lsn();
    // A damaged last manifest frame reads as a torn tail (the manifest cannot tell them
    // apart): the tree then opens at an earlier checkpoint, exactly. The Db notices, since
    // it records every completed checkpoint.
    assert!(
        [40, 80, 120].contains(&at),
        "reopened at {at}, no checkpoint's LSN"
    );
    for key in model.versions.keys() {
        let got = view.get(key)?;
        assert_eq!(got, model.get(key, at), "get {key:?} returned wrong data");
    }
    let all = (Bound::Unbounded, Bound::Unbounded);
    for direction in [Direction::Forward, Direction::Backward] {
        let mut it = view.scan(all.clone(), direction)?;
        let mut rows = Vec::new();
        while it.valid() {
            rows.push((it.key().to_vec(), it.value().to_vec(), it.version()));
            it.next()?;
        }
        assert_eq!(
            rows,
            model.scan(&all, at, direction),
            "scan {direction:?} returned wrong data"
        );
    }
    Ok(())
}

/// Every file of the tree and its bytes.
fn save(sim: &SimFs) -> Vec<(String, Vec<u8>)> {
    let mut names = sim.file_names(Path::new(DIR)).unwrap();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let bytes = sim.read_durable(&Path::new(DIR).join(&n)).unwrap();
            (n, bytes)
        })
        .collect()
}

/// Puts the directory back as `saved` (a reopen may have deleted files it took for orphans).
fn restore(sim: &SimFs, fs: &FsRef, saved: &[(String, Vec<u8>)]) {
    for name in sim.file_names(Path::new(DIR)).unwrap() {
        if !saved.iter().any(|(n, _)| *n == name) {
            fs.remove_file(&Path::new(DIR).join(name)).unwrap();
        }
    }
    for (name, bytes) in saved {
        let options = OpenOptions {
            truncate: true,
            ..OpenOptions::create()
        };
        let file = fs.open(&Path::new(DIR).join(name), options).unwrap();
        file.write_all_at(bytes, 0).unwrap();
        file.sync_data().unwrap();
    }
    fs.sync_dir(Path::new(DIR)).unwrap();
}

fn flip(fs: &FsRef, path: &Path, at: u64, mask: u8) {
    let file = fs.open(path, OpenOptions::read_write()).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    byte[0] ^= mask;
    file.write_all_at(&byte, at).unwrap();
    file.sync_data().unwrap();
}

#[test]
fn tree_corruption_every_byte_flip_is_an_error_or_correct_data() {
    let sim = Arc::new(SimFs::new(9));
    let fs: FsRef = sim.clone();
    let model = build(&fs);
    read_all(&fs, &model).unwrap();
    let saved = save(&sim);
    let (mut flips, mut errors) = (0, 0);
    for (name, bytes) in &saved {
        let path = Path::new(DIR).join(name);
        for at in 0..bytes.len() as u64 {
            let mask = 1u8 << (at % 8);
            flip(&fs, &path, at, mask);
            flips += 1;
            match read_all(&fs, &model) {
                Ok(()) => {}
                Err(Error::Corruption(c)) => {
                    errors += 1;
                    assert!(
                        c.file_id.is_some() || c.file_name.is_some(),
                        "{name} byte {at}: the error names no file: {c}"
                    );
                }
                Err(other) => panic!("{name} byte {at}: not a corruption error: {other}"),
            }
            restore(&sim, &fs, &saved);
        }
    }
    read_all(&fs, &model).unwrap();
    println!(
        "{flips} flips over {} files: {errors} corruption errors, the rest read correct data",
        saved.len()
    );
    assert!(
        errors > flips / 2,
        "most flips should be caught: {errors} of {flips}"
    );
}

/// The model's helpers are shared with the other tree tests.
#[test]
fn tree_corruption_model_sanity() {
    let fs: FsRef = Arc::new(SimFs::new(10));
    let model = build(&fs);
    let tree = Tree::open(fs, Path::new(DIR), tiny_options()).unwrap();
    let all = (Bound::Unbounded, Bound::Unbounded);
    assert_eq!(
        collect(&tree.read_view(), &all, Direction::Forward),
        model.scan(&all, 120, Direction::Forward)
    );
}
