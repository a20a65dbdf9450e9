//! SST readers through the shared block cache: a cached block costs no file read, readers of
//! different files share one cache without mixing their blocks, compressed blocks are cached
//! decompressed, a tiny cache still reads correctly, and corruption errors carry the file id
//! the reader was opened with.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod sst_common;

use std::sync::Arc;

use popdb_io::SimFs;
use popdb_lsm::{
    Block, BlockCache, Compression, Error, InternalKey, SstReadOptions, SstReader,
    SstWriterOptions, ValueKind,
};
use sst_common::{Entry, build, file_with, read_all};

fn entries(tag: &str, count: u32) -> Vec<Entry> {
    (0..count)
        .map(|i| {
            let key = format!("key-{i:05}");
            let value = format!("{tag}-value-{i}-{tag}-{tag}");
            (
                InternalKey::new(key.as_bytes(), 3, ValueKind::Put),
                value.into_bytes(),
            )
        })
        .collect()
}

fn options(compression: Compression) -> SstWriterOptions {
    SstWriterOptions {
        block_size: 512,
        compression,
        ..SstWriterOptions::default()
    }
}

fn cached(cache: &Arc<BlockCache>, file_id: u64) -> SstReadOptions {
    SstReadOptions {
        file_id: Some(file_id),
        cache: Some(Arc::clone(cache)),
    }
}

fn scan(reader: &SstReader) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut it = reader.iter();
    let mut out = Vec::new();
    it.seek_to_first().unwrap();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.next().unwrap();
    }
    out
}

#[test]
fn sst_cached_blocks_are_read_once() {
    for compression in [Compression::None, Compression::Zstd { level: 3 }] {
        let fs = SimFs::new(1);
        let want = entries("a", 500);
        let (file, summary) = build(&fs, "a.sst", &want, options(compression));
        assert!(summary.data_blocks > 10);
        let cache = BlockCache::new(1 << 22);
        let reader = SstReader::open_with(file, cached(&cache, 1)).unwrap();
        assert_eq!(scan(&reader).len(), want.len());
        let blocks = reader.data_block_count() as u64;
        assert_eq!(
            reader.data_block_reads(),
            blocks,
            "{compression:?}: one read per block"
        );
        assert_eq!(cache.inserts(), blocks);
        scan(&reader);
        for (k, v) in &want {
            let got = reader.get(k.user_key(), 9).unwrap().unwrap();
            assert_eq!(&got.2, v);
        }
        assert_eq!(
            reader.data_block_reads(),
            blocks,
            "{compression:?}: hits read nothing"
        );
        assert!(cache.hits() >= blocks + want.len() as u64);
        cache.check_invariants();
    }
}

#[test]
fn sst_cache_holds_uncompressed_images() {
    let fs = SimFs::new(2);
    let want = entries("z", 300);
    let (file, summary) = build(&fs, "z.sst", &want, options(Compression::Zstd { level: 3 }));
    assert!(summary.data_blocks_compressed > 0);
    let stored = read_all(&file);
    let cache = BlockCache::new(1 << 22);
    let reader = SstReader::open_with(file, cached(&cache, 2)).unwrap();
    scan(&reader);
    let number = reader.cache_file_number().unwrap();
    // The first block is stored compressed (tag 1) and cached as a valid uncompressed block
    // holding the file's first entries.
    let image = cache.get(number, 0).unwrap();
    let block = Block::decode(&image).unwrap();
    let mut bit = block.iter();
    bit.seek_to_first().unwrap();
    assert_eq!(bit.key(), want[0].0.encoded());
    assert_eq!(bit.value(), &want[0].1[..]);
    assert!(
        image.len() > stored.len() / summary.data_blocks,
        "decompressed"
    );
}

#[test]
fn sst_readers_of_two_files_share_one_cache() {
    let fs = SimFs::new(3);
    let cache = BlockCache::new(1 << 22);
    let (a, b) = (entries("a", 400), entries("b", 400));
    let (fa, _) = build(&fs, "a.sst", &a, options(Compression::None));
    let (fb, _) = build(&fs, "b.sst", &b, options(Compression::None));
    // Same layout, same offsets: only the file number tells their blocks apart.
    let ra = SstReader::open_with(fa, cached(&cache, 10)).unwrap();
    let rb = SstReader::open_with(fb, cached(&cache, 10)).unwrap();
    assert_ne!(ra.cache_file_number(), rb.cache_file_number());
    for _ in 0..2 {
        for ((ka, va), (_, vb)) in a.iter().zip(&b) {
            assert_eq!(&ra.get(ka.user_key(), 5).unwrap().unwrap().2, va);
            assert_eq!(&rb.get(ka.user_key(), 5).unwrap().unwrap().2, vb);
        }
    }
    let want_a: Vec<_> = a
        .iter()
        .map(|(k, v)| (k.encoded().to_vec(), v.clone()))
        .collect();
    assert_eq!(scan(&ra), want_a);
    cache.erase_file(ra.cache_file_number().unwrap());
    assert_eq!(scan(&ra), want_a, "erased blocks are read again");
    cache.check_invariants();
}

#[test]
fn sst_tiny_cache_reads_correctly() {
    let fs = SimFs::new(4);
    let want = entries("t", 300);
    let (file, _) = build(&fs, "t.sst", &want, options(Compression::Zstd { level: 1 }));
    for capacity in [0, 100, 2000] {
        let cache = BlockCache::new(capacity);
        let reader = SstReader::open_with(file.clone(), cached(&cache, 4)).unwrap();
        assert_eq!(scan(&reader).len(), want.len());
        for (k, v) in &want {
            assert_eq!(&reader.get(k.user_key(), 5).unwrap().unwrap().2, v);
        }
        assert!(cache.usage_bytes() <= capacity);
        cache.check_invariants();
    }
}

#[test]
fn sst_corruption_errors_carry_the_file_id() {
    let fs = SimFs::new(5);
    let want = entries("c", 200);
    let (file, _) = build(&fs, "c.sst", &want, options(Compression::Zstd { level: 1 }));
    let good = read_all(&file);
    let id_of = |e: Error| match e {
        Error::Corruption(c) => c.file_id,
        other => panic!("not corruption: {other}"),
    };
    // Metadata damage: refused at open.
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let err = SstReader::open_with(
        file_with(&fs, "m.sst", &bad),
        cached(&BlockCache::new(0), 77),
    )
    .unwrap_err();
    assert_eq!(id_of(err), Some(77));
    // Data damage: refused when the block is read, by get and by every iterator method.
    let mut bad = good.clone();
    bad[3] ^= 0x40;
    let options = SstReadOptions {
        file_id: Some(78),
        cache: None,
    };
    let reader = SstReader::open_with(file_with(&fs, "d.sst", &bad), options).unwrap();
    assert_eq!(
        id_of(reader.get(want[0].0.user_key(), 5).unwrap_err()),
        Some(78)
    );
    let mut it = reader.iter();
    assert_eq!(id_of(it.seek_to_first().unwrap_err()), Some(78));
    assert!(!it.valid());
    assert_eq!(id_of(it.seek(want[0].0.encoded()).unwrap_err()), Some(78));
    assert_eq!(
        id_of(it.seek_for_prev(want[0].0.encoded()).unwrap_err()),
        Some(78)
    );
    // Without an id, errors carry none.
    let reader = SstReader::open(file_with(&fs, "n.sst", &bad)).unwrap();
    assert_eq!(
        id_of(reader.get(want[0].0.user_key(), 5).unwrap_err()),
        None
    );
}
