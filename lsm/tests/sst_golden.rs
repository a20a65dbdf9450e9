//! The SST format pinned by golden fixtures (never regenerated, STYLE section 8):
//! - `v1/tiny.sst`: written by format_version 1; must keep opening and answering.
//! - `v2/tiny.sst`: the same entries as written today; `SstWriter` must produce it byte for
//!   byte (the worked example in docs/format/sstable.md). It differs from v1 only in the
//!   footer's version and crc32.
//! - `v2/tiny-zstd.sst`: one zstd-compressed data block; must keep opening and answering.
//!   The writer's output is not compared with it byte for byte: zstd does not promise the
//!   same frame across library versions, only that every version decodes it.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod sst_common;

use popdb_io::SimFs;
use popdb_lsm::{
    BlockCache, Compression, InternalKey, SstReadOptions, SstReader, SstWriterOptions, ValueKind,
};
use sst_common::{Entry, build, file_with, read_all};

/// Encoded keys and values, in order.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

const V1_TINY: &[u8] = include_bytes!("fixtures/sstable/v1/tiny.sst");
const V2_TINY: &[u8] = include_bytes!("fixtures/sstable/v2/tiny.sst");
const V2_TINY_ZSTD: &[u8] = include_bytes!("fixtures/sstable/v2/tiny-zstd.sst");

fn tiny_entries() -> Vec<Entry> {
    vec![
        (InternalKey::new(b"a", 2, ValueKind::Delete), Vec::new()),
        (InternalKey::new(b"a", 1, ValueKind::Put), b"x".to_vec()),
    ]
}

fn zstd_entries() -> Vec<Entry> {
    let z = vec![b'z'; 40];
    vec![
        (InternalKey::new(b"a", 2, ValueKind::Put), z.clone()),
        (InternalKey::new(b"b", 1, ValueKind::Put), z),
    ]
}

fn zstd_options() -> SstWriterOptions {
    SstWriterOptions {
        compression: Compression::Zstd { level: 3 },
        ..SstWriterOptions::default()
    }
}

fn print_dump(bytes: &[u8]) {
    if std::env::var_os("POPDB_PRINT_SST").is_some() {
        for (i, row) in bytes.chunks(8).enumerate() {
            let hex: Vec<String> = row.iter().map(|b| format!("{b:02x}")).collect();
            println!("{:04x}: {}", i * 8, hex.join(" "));
        }
    }
}

/// Every entry of `bytes` read forward, then backward, through a cached reader.
fn scan_both_ways(bytes: &[u8]) -> (Pairs, Pairs) {
    let fs = SimFs::new(3);
    let options = SstReadOptions {
        file_id: Some(7),
        cache: Some(BlockCache::new(1 << 20)),
    };
    let reader = SstReader::open_with(file_with(&fs, "scan.sst", bytes), options).unwrap();
    let mut it = reader.iter();
    let mut forward = Vec::new();
    it.seek_to_first().unwrap();
    while it.valid() {
        forward.push((it.key().to_vec(), it.value().to_vec()));
        it.next().unwrap();
    }
    let mut backward = Vec::new();
    it.seek_to_last().unwrap();
    while it.valid() {
        backward.push((it.key().to_vec(), it.value().to_vec()));
        it.prev().unwrap();
    }
    backward.reverse();
    (forward, backward)
}

fn encoded(entries: &[Entry]) -> Pairs {
    entries
        .iter()
        .map(|(k, v)| (k.encoded().to_vec(), v.clone()))
        .collect()
}

#[test]
fn writer_output_equals_v2_fixture() {
    let fs = SimFs::new(1);
    let (file, _) = build(
        &fs,
        "tiny.sst",
        &tiny_entries(),
        SstWriterOptions::default(),
    );
    let bytes = read_all(&file);
    print_dump(&bytes);
    assert_eq!(
        bytes, V2_TINY,
        "the v2 encoding changed: that is a format change"
    );
}

#[test]
fn tiny_fixtures_of_every_version_still_read() {
    for (fixture, version) in [(V1_TINY, 1), (V2_TINY, 2)] {
        let fs = SimFs::new(2);
        let reader = SstReader::open(file_with(&fs, "tiny.sst", fixture)).unwrap();
        assert_eq!(reader.format_version(), version);
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
        let (forward, backward) = scan_both_ways(fixture);
        assert_eq!(forward, encoded(&tiny_entries()), "v{version}");
        assert_eq!(backward, forward, "v{version}");
    }
}

#[test]
fn zstd_fixture_still_reads() {
    let (forward, backward) = scan_both_ways(V2_TINY_ZSTD);
    assert_eq!(forward, encoded(&zstd_entries()));
    assert_eq!(backward, forward);
    let fs = SimFs::new(4);
    let reader = SstReader::open(file_with(&fs, "z.sst", V2_TINY_ZSTD)).unwrap();
    assert_eq!(
        reader.get(b"b", 9).unwrap(),
        Some((ValueKind::Put, 1, vec![b'z'; 40]))
    );
    // The one data block is stored compressed: tag 1, five bytes before its end.
    let block_end = usize::try_from(reader.footer().filter.offset).unwrap();
    assert_eq!(V2_TINY_ZSTD[block_end - 5], 1, "compression tag");
}

#[test]
fn writer_output_with_zstd_reads_as_the_fixture() {
    let fs = SimFs::new(5);
    let (file, summary) = build(&fs, "z.sst", &zstd_entries(), zstd_options());
    assert_eq!(
        (summary.data_blocks, summary.data_blocks_compressed),
        (1, 1)
    );
    let bytes = read_all(&file);
    print_dump(&bytes);
    assert_eq!(scan_both_ways(&bytes), scan_both_ways(V2_TINY_ZSTD));
}
