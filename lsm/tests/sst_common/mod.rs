//! Shared helpers of the SST tests: a seeded generator of sorted entries, a builder on SimFs,
//! and a model read.

#![allow(dead_code, reason = "each test file uses a different subset")]

use std::path::Path;

use popdb_io::{FileRef, FileSystem, OpenOptions, SimFs};
use popdb_lsm::{InternalKey, SstSummary, SstWriter, SstWriterOptions, ValueKind};

pub use popdb_testkit::Rng;

/// One stored version.
pub type Entry = (InternalKey, Vec<u8>);

/// Random entries in strictly increasing internal-key order: several versions per user key,
/// tombstones, the empty key, empty values and (sometimes) large values.
pub fn random_entries(rng: &mut Rng, max_users: u64) -> Vec<Entry> {
    let users = rng.below(max_users + 1);
    let mut out = Vec::new();
    for _ in 0..users {
        let user = rng.bytes(10, b"abcz\x00\xff");
        let versions = 1 + rng.below(4);
        for _ in 0..versions {
            let lsn = 1 + rng.below(100);
            let kind = if rng.below(5) == 0 {
                ValueKind::Delete
            } else {
                ValueKind::Put
            };
            let value = match (kind, rng.below(20)) {
                (ValueKind::Delete, _) | (_, 1..=3) => Vec::new(),
                (_, 0) => vec![b'L'; 5000 + rng.below(15_000) as usize],
                _ => rng.bytes(20, b"0123456789"),
            };
            out.push((InternalKey::new(&user, lsn, kind), value));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    // One version per (user key, LSN): a batch never writes a key twice at one LSN.
    out.dedup_by(|b, a| a.0.user_key() == b.0.user_key() && a.0.lsn() == b.0.lsn());
    out
}

/// The model's answer: the newest version of `user` at or below `view`.
pub fn model_get(entries: &[Entry], user: &[u8], view: u64) -> Option<(ValueKind, u64, Vec<u8>)> {
    entries
        .iter()
        .filter(|(k, _)| k.user_key() == user && k.lsn() <= view)
        .max_by_key(|(k, _)| k.lsn())
        .map(|(k, v)| (k.kind(), k.lsn(), v.clone()))
}

pub fn create(fs: &SimFs, name: &str) -> FileRef {
    fs.create_dir_all(Path::new("/db")).unwrap();
    fs.open(&Path::new("/db").join(name), OpenOptions::create_new())
        .unwrap()
}

/// Writes `entries` into a new file `name`.
pub fn build(
    fs: &SimFs,
    name: &str,
    entries: &[Entry],
    options: SstWriterOptions,
) -> (FileRef, SstSummary) {
    let file = create(fs, name);
    let mut writer = SstWriter::new(file.clone(), options);
    for (k, v) in entries {
        writer.add(k, v).unwrap();
    }
    (file, writer.finish().unwrap())
}

pub fn read_all(file: &FileRef) -> Vec<u8> {
    let mut buf = vec![0u8; usize::try_from(file.len().unwrap()).unwrap()];
    file.read_exact_at(&mut buf, 0).unwrap();
    buf
}

/// A new file `name` holding `bytes`.
pub fn file_with(fs: &SimFs, name: &str, bytes: &[u8]) -> FileRef {
    let file = create(fs, name);
    file.write_all_at(bytes, 0).unwrap();
    file
}
