//! The SST format pinned: a tiny file built by `SstWriter` must equal the v1 golden fixture
//! byte for byte (the worked example in docs/format/sstable.md), and the fixture must keep
//! opening and answering. Fixtures are never regenerated (STYLE section 8).

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod sst_common;

use popdb_io::SimFs;
use popdb_lsm::{InternalKey, SstReader, SstWriterOptions, ValueKind};
use sst_common::{build, file_with, read_all};

const FIXTURE: &[u8] = include_bytes!("fixtures/sstable/v1/tiny.sst");

fn tiny_entries() -> Vec<(InternalKey, Vec<u8>)> {
    vec![
        (InternalKey::new(b"a", 2, ValueKind::Delete), Vec::new()),
        (InternalKey::new(b"a", 1, ValueKind::Put), b"x".to_vec()),
    ]
}

#[test]
fn writer_output_equals_v1_fixture() {
    let fs = SimFs::new(1);
    let (file, _) = build(
        &fs,
        "tiny.sst",
        &tiny_entries(),
        SstWriterOptions::default(),
    );
    let bytes = read_all(&file);
    if std::env::var_os("POPDB_PRINT_SST").is_some() {
        for (i, row) in bytes.chunks(8).enumerate() {
            let hex: Vec<String> = row.iter().map(|b| format!("{b:02x}")).collect();
            println!("{:04x}: {}", i * 8, hex.join(" "));
        }
    }
    assert_eq!(
        bytes, FIXTURE,
        "the v1 encoding changed: that is a format change"
    );
}

#[test]
fn v1_fixture_still_reads() {
    let fs = SimFs::new(2);
    let reader = SstReader::open(file_with(&fs, "tiny.sst", FIXTURE)).unwrap();
    assert_eq!(reader.footer().entry_count, 2);
    assert_eq!(
        reader.get(b"a", 1).unwrap(),
        Some((ValueKind::Put, 1, b"x".to_vec()))
    );
    assert_eq!(
        reader.get(b"a", 5).unwrap(),
        Some((ValueKind::Delete, 2, Vec::new()))
    );
    assert_eq!(reader.get(b"b", 5).unwrap(), None);
}
