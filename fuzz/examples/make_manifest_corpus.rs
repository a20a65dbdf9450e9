//! Writes the seed corpus of fuzz target `lsm_manifest_decode` with the real manifest on a
//! simulated file system, never by hand: a fresh manifest, one with edits after its base, a
//! rotated one whose base has several frames, a torn last frame, damage before a valid frame
//! (as written and re-sealed), a `CURRENT` file, and a bare edit body. Each file starts with
//! the control byte that fuzz/checks/lsm_manifest_decode.rs reads (base frame count, re-seal
//! bit).
//!
//! Run from fuzz/: `cargo run --example make_manifest_corpus -- corpus/lsm_manifest_decode`.

// A developer's tool that writes a scratch folder.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::sync::Arc;

use popdb_io::{FileSystem, FsRef, SimFs};
use popdb_lsm::internals::manifest::encode_edit;
use popdb_lsm::{FileMeta, InternalKey, Manifest, ManifestOptions, ValueKind, VersionEdit};

const DIR: &str = "/db";

/// A file of `level` holding user keys `k{lo}..=k{hi}`.
fn sst(id: u64, level: u8, lo: u32, hi: u32) -> FileMeta {
    let key = |k: u32, lsn: u64| {
        InternalKey::new(format!("k{k:03}").as_bytes(), lsn, ValueKind::Put)
            .encoded()
            .to_vec()
    };
    FileMeta {
        id,
        level,
        size: 4096 * id,
        smallest: key(lo, 9),
        largest: key(hi, 3),
        smallest_lsn: 3,
        largest_lsn: 9,
        entry_count: u64::from(hi - lo + 1),
    }
}

/// Flushes, a compaction into L1, a checkpoint and a move.
fn edits() -> Vec<VersionEdit> {
    let mut out: Vec<VersionEdit> = (1..=4)
        .map(|id| VersionEdit {
            added: vec![sst(id, 0, id as u32 * 10, id as u32 * 10 + 15)],
            next_file_id: Some(id + 1),
            ..VersionEdit::default()
        })
        .collect();
    out.push(VersionEdit {
        removed: vec![(0, 1), (0, 2)],
        added: vec![sst(5, 1, 10, 20), sst(6, 1, 21, 35)],
        next_file_id: Some(7),
        watermark: Some(9),
    });
    out.push(VersionEdit {
        removed: vec![(1, 5)],
        added: vec![sst(5, 2, 10, 20)],
        ..VersionEdit::default()
    });
    out
}

/// Runs `edits` on a fresh manifest with `options`; returns the live manifest's bytes, the
/// `CURRENT` bytes and the number of base frames.
fn build(edits: &[VersionEdit], options: ManifestOptions) -> (Vec<u8>, Vec<u8>, u8) {
    let sim = SimFs::new(1);
    sim.create_dir_all(Path::new(DIR)).expect("mkdir");
    let fs: FsRef = Arc::new(sim.clone());
    let mut m = Manifest::create_with(Arc::clone(&fs), Path::new(DIR), options).expect("create");
    for edit in edits {
        m.log_edit(edit).expect("log");
    }
    let name = m.manifest_file_name();
    drop(m);
    let (_, _, recovery) = Manifest::open_with(fs, Path::new(DIR), options).expect("open");
    let read = |n: &str| sim.read_durable(&Path::new(DIR).join(n)).expect("read");
    let base_frames = u8::try_from(recovery.base_frames_count).expect("small");
    (read(&name), read("CURRENT"), base_frames)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir] = &args[..] else {
        eprintln!("usage: make_manifest_corpus DIR");
        std::process::exit(2);
    };
    let dir = Path::new(dir);
    std::fs::create_dir_all(dir).expect("create the corpus folder");
    let write = |name: &str, c0: u8, bytes: &[u8]| {
        let mut data = vec![c0];
        data.extend_from_slice(bytes);
        std::fs::write(dir.join(name), &data).expect("write");
    };
    let plain = ManifestOptions::default();
    let rotating = ManifestOptions {
        rotate_size: 0,
        base_frame_size: 40,
    };
    let (fresh, current, _) = build(&[], plain);
    write("always-fresh", 0, &fresh);
    write("current", 0, &current);
    let (with_edits, _, base) = build(&edits(), plain);
    let k = (base - 1) << 4;
    write("always-edits", k, &with_edits);
    let (rotated, _, base) = build(&edits(), rotating);
    write("always-rotated", (base - 1) << 4, &rotated);
    write("torn-last-frame", k, &with_edits[..with_edits.len() - 5]);
    let mut damaged = with_edits.clone();
    damaged[60] ^= 0x20;
    write("damage-before-valid-frame", k, &damaged);
    write("resealed-damage-before-valid-frame", k | 2, &damaged);
    write("base-past-the-end", 0xf0, &with_edits);
    let mut body = Vec::new();
    encode_edit(&edits()[4], &mut body);
    write("edit-body", 0, &body);
}
