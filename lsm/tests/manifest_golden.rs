//! The manifest format pinned: a tiny manifest and its `CURRENT` built by `Manifest` must
//! equal the v1 golden fixtures byte for byte (the worked example in
//! docs/format/manifest.md), and the fixtures must keep opening to the same state. Fixtures
//! are never regenerated (STYLE section 8). `POPDB_PRINT_MANIFEST=1` prints both as hex.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod manifest_common;

use std::path::Path;

use manifest_common::{DIR, fs_ref, read_file, sim, write_file};
use popdb_lsm::{FileMeta, InternalKey, Manifest, ManifestState, ValueKind, VersionEdit};

const MANIFEST_NAME: &str = "MANIFEST-0000000000000001";
const MANIFEST: &[u8] = include_bytes!("fixtures/manifest/v1/MANIFEST-0000000000000001");
const CURRENT: &[u8] = include_bytes!("fixtures/manifest/v1/CURRENT");

/// The one SST of the example: user keys `a` to `c`, three entries, LSNs 1 and 2.
fn sst(level: u8) -> FileMeta {
    FileMeta {
        id: 1,
        level,
        size: 4096,
        smallest: InternalKey::new(b"a", 2, ValueKind::Put).encoded().to_vec(),
        largest: InternalKey::new(b"c", 1, ValueKind::Put).encoded().to_vec(),
        smallest_lsn: 1,
        largest_lsn: 2,
        entry_count: 3,
    }
}

/// A flush adds the file to L0; a checkpoint records watermark 2; the file moves to L1.
fn edits() -> Vec<VersionEdit> {
    vec![
        VersionEdit {
            added: vec![sst(0)],
            next_file_id: Some(2),
            ..VersionEdit::default()
        },
        VersionEdit {
            watermark: Some(2),
            ..VersionEdit::default()
        },
        VersionEdit {
            added: vec![sst(1)],
            removed: vec![(0, 1)],
            ..VersionEdit::default()
        },
    ]
}

fn expected_state() -> ManifestState {
    let mut state = ManifestState::default();
    state.levels[1].push(sst(1));
    state.watermark = Some(2);
    state.next_file_id = 2;
    state
}

fn print_hex(name: &str, bytes: &[u8]) {
    println!("{name} ({} bytes):", bytes.len());
    for (i, row) in bytes.chunks(8).enumerate() {
        let hex: Vec<String> = row.iter().map(|b| format!("{b:02x}")).collect();
        println!("{:04x}: {}", i * 8, hex.join(" "));
    }
}

#[test]
fn manifest_output_equals_v1_fixtures() {
    let fs = sim(1);
    let mut m = Manifest::create(fs_ref(&fs), Path::new(DIR)).unwrap();
    for edit in edits() {
        m.log_edit(&edit).unwrap();
    }
    assert_eq!(m.state(), &expected_state());
    let manifest = read_file(&fs, MANIFEST_NAME);
    let current = read_file(&fs, "CURRENT");
    if std::env::var_os("POPDB_PRINT_MANIFEST").is_some() {
        print_hex(MANIFEST_NAME, &manifest);
        print_hex("CURRENT", &current);
    }
    assert_eq!(
        manifest, MANIFEST,
        "the v1 manifest encoding changed: a format change"
    );
    assert_eq!(
        current, CURRENT,
        "the v1 CURRENT encoding changed: a format change"
    );
}

#[test]
fn manifest_v1_fixtures_still_open() {
    let fs = sim(2);
    write_file(&fs, MANIFEST_NAME, MANIFEST);
    write_file(&fs, "CURRENT", CURRENT);
    let (_, state, recovery) = Manifest::open(fs_ref(&fs), Path::new(DIR)).unwrap();
    assert_eq!(state, expected_state());
    assert_eq!(recovery.base_frames_count, 1);
    assert_eq!(recovery.edits_count, 3);
    assert_eq!(recovery.size, MANIFEST.len() as u64);
    assert_eq!(recovery.torn_tail, None);
}
