//! Tests of [`crate::SimFs`] through its public surface, as the WAL's crash tests use it:
//! power loss (`crash.rs`), injected faults (`faults.rs`), the namespace (`namespace.rs`),
//! and map views (`maps.rs`).

mod crash;
mod faults;
mod maps;
mod namespace;

use std::path::Path;

use crate::{FileRef, FileSystem, OpenOptions, SimFs};

/// Creates `path` with `bytes`, syncs its data and its parent directory.
fn create_synced(fs: &SimFs, path: &str, bytes: &[u8]) -> FileRef {
    let file = fs.open(Path::new(path), OpenOptions::create()).unwrap();
    file.write_all_at(bytes, 0).unwrap();
    file.sync_data().unwrap();
    let parent = Path::new(path).parent().unwrap();
    fs.sync_dir(parent).unwrap();
    file
}

/// The whole file at `path`, as reads see it through a new handle.
fn read_all(fs: &SimFs, path: &str) -> Vec<u8> {
    let file = fs.open(Path::new(path), OpenOptions::read_only()).unwrap();
    let mut buf = vec![0u8; file.len().unwrap() as usize];
    file.read_exact_at(&mut buf, 0).unwrap();
    buf
}

fn exists(fs: &SimFs, path: &str) -> bool {
    fs.exists(Path::new(path)).unwrap()
}
