//! Damaged SST files: every single-byte flip in the footer, index and filter is refused at
//! open; a flip in a data block is refused when that block is read, and never yields a
//! wrong answer; the same for a file of zstd-compressed blocks, read forward, backward and by
//! point reads through a block cache; every truncation is refused; a newer `format_version`
//! is refused as unsupported. Also: a read the bloom filter rules out reads no data block.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod sst_common;

use std::path::Path;

use popdb_io::{FileSystem, SimFs};
use popdb_lsm::{
    BlockCache, BloomFilter, Compression, CorruptionKind, Error, FOOTER_SIZE, FORMAT_VERSION,
    InternalKey, SstReadOptions, SstReader, SstWriterOptions, ValueKind,
};
use sst_common::{Entry, Rng, build, file_with, model_get, random_entries, read_all};

/// A small SST of several data blocks: the first seed from `seed` on that gives one.
fn sample(seed: u64) -> (SimFs, Vec<Entry>, Vec<u8>) {
    for seed in seed..seed + 100 {
        let mut rng = Rng(seed);
        let mut entries = random_entries(&mut rng, 25);
        // Keep the file small enough to flip every byte: no 5 KB+ values.
        for (_, v) in &mut entries {
            v.truncate(30);
        }
        let fs = SimFs::new(seed);
        let options = SstWriterOptions {
            block_size: 128,
            restart_interval: 4,
            bits_per_key: 10,
            compression: Compression::None,
        };
        let (file, summary) = build(&fs, "good.sst", &entries, options);
        if summary.data_blocks >= 3 {
            return (fs, entries, read_all(&file));
        }
    }
    panic!("no seed from {seed} gives several data blocks");
}

fn is_corruption(result: &Result<impl Sized, Error>) -> bool {
    matches!(result, Err(Error::Corruption(_)))
}

#[test]
fn every_byte_flip_is_detected() {
    let (fs, entries, good) = sample(11);
    let reader = SstReader::open(file_with(&fs, "copy.sst", &good)).unwrap();
    let data_end = usize::try_from(reader.footer().filter.offset).unwrap();
    println!(
        "flipping every byte of a {}-byte file ({data_end} data bytes)",
        good.len()
    );
    assert!(data_end > 300, "the data region is too small to mean much");
    let mut users: Vec<Vec<u8>> = entries.iter().map(|(k, _)| k.user_key().to_vec()).collect();
    users.dedup();
    for at in 0..good.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[at] ^= flip;
            let name = format!("flip-{at}-{flip}.sst");
            let file = file_with(&fs, &name, &bad);
            let opened = SstReader::open(file);
            if at >= data_end {
                assert!(
                    is_corruption(&opened),
                    "flip {flip:#x} at {at} (metadata) accepted"
                );
                fs.remove_file(&Path::new("/db").join(&name)).unwrap();
                continue;
            }
            let reader = opened.unwrap_or_else(|e| panic!("data flip at {at} failed open: {e}"));
            let mut it = reader.iter();
            let mut result = it.seek_to_first();
            while result.is_ok() && it.valid() {
                result = it.next();
            }
            assert!(
                is_corruption(&result),
                "flip {flip:#x} at {at} (data) iterated cleanly"
            );
            // Point reads fail or answer as the model does: never a wrong answer.
            let mut failed = 0;
            for user in &users {
                match reader.get(user, u64::MAX) {
                    Ok(got) => assert_eq!(got, model_get(&entries, user, u64::MAX), "flip at {at}"),
                    Err(e) => {
                        assert!(matches!(e, Error::Corruption(_)), "{e}");
                        failed += 1;
                    }
                }
            }
            assert!(
                failed > 0,
                "flip {flip:#x} at {at}: no read touched the damaged block"
            );
            drop(reader);
            fs.remove_file(&Path::new("/db").join(&name)).unwrap();
        }
    }
}

/// A small SST whose data blocks are mostly zstd-compressed, some stored raw.
fn compressed_sample() -> (SimFs, Vec<Entry>, Vec<u8>) {
    let fs = SimFs::new(21);
    let entries: Vec<Entry> = (0..60u32)
        .map(|i| {
            let kind = if i % 7 == 3 {
                ValueKind::Delete
            } else {
                ValueKind::Put
            };
            let value = match (kind, i % 5) {
                (ValueKind::Delete, _) => Vec::new(),
                // Incompressible: the block holding it may be stored raw.
                (_, 0) => (0..24u32)
                    .map(|j| (i * 31 + j).wrapping_mul(2_654_435_761) as u8)
                    .collect(),
                _ => format!("value {} value {}", i % 3, i % 3).into_bytes(),
            };
            let key = format!("key{:03}", i / 2);
            (
                InternalKey::new(key.as_bytes(), 90 - u64::from(i % 2), kind),
                value,
            )
        })
        .collect();
    let options = SstWriterOptions {
        block_size: 256,
        restart_interval: 4,
        bits_per_key: 10,
        compression: Compression::Zstd { level: 3 },
    };
    let (file, summary) = build(&fs, "good.sst", &entries, options);
    assert!(summary.data_blocks_compressed >= 3, "{summary:?}");
    (fs, entries, read_all(&file))
}

/// Every entry forward and backward, and a point read of every user key; each may fail with
/// `Corruption` but must never return anything but the model's answer.
fn read_everything(reader: &SstReader, entries: &[Entry], at: usize) -> bool {
    let want: Vec<(Vec<u8>, Vec<u8>)> = entries
        .iter()
        .map(|(k, v)| (k.encoded().to_vec(), v.clone()))
        .collect();
    let mut failed = false;
    let mut it = reader.iter();
    let mut got = Vec::new();
    let mut result = it.seek_to_first();
    while result.is_ok() && it.valid() {
        got.push((it.key().to_vec(), it.value().to_vec()));
        result = it.next();
    }
    match result {
        Ok(()) => assert_eq!(got, want, "flip at {at}: forward scan"),
        Err(e) => {
            assert!(matches!(e, Error::Corruption(_)), "{e}");
            assert!(!it.valid());
            assert_eq!(got[..], want[..got.len()], "flip at {at}: forward prefix");
            failed = true;
        }
    }
    let mut back = Vec::new();
    let mut result = it.seek_to_last();
    while result.is_ok() && it.valid() {
        back.push((it.key().to_vec(), it.value().to_vec()));
        result = it.prev();
    }
    back.reverse();
    match result {
        Ok(()) => assert_eq!(back, want, "flip at {at}: backward scan"),
        Err(e) => {
            assert!(matches!(e, Error::Corruption(_)), "{e}");
            assert_eq!(
                back[..],
                want[want.len() - back.len()..],
                "flip at {at}: backward suffix"
            );
            failed = true;
        }
    }
    let mut users: Vec<&[u8]> = entries.iter().map(|(k, _)| k.user_key()).collect();
    users.dedup();
    for user in users {
        match reader.get(user, u64::MAX) {
            Ok(got) => assert_eq!(got, model_get(entries, user, u64::MAX), "flip at {at}"),
            Err(e) => {
                assert!(matches!(e, Error::Corruption(_)), "{e}");
                failed = true;
            }
        }
    }
    failed
}

#[test]
fn every_byte_flip_of_a_compressed_sst_is_detected() {
    let (fs, entries, good) = compressed_sample();
    println!(
        "flipping every byte of a {}-byte compressed file",
        good.len()
    );
    for at in 0..good.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[at] ^= flip;
            let name = format!("zflip-{at}-{flip}.sst");
            let options = SstReadOptions {
                file_id: Some(9),
                cache: Some(BlockCache::new(1 << 20)),
            };
            match SstReader::open_with(file_with(&fs, &name, &bad), options) {
                Err(e) => assert!(matches!(e, Error::Corruption(_)), "flip at {at}: {e}"),
                Ok(reader) => {
                    // Each read twice: once from the file, once from the cache.
                    let failed = read_everything(&reader, &entries, at);
                    assert!(failed, "flip {flip:#x} at {at} went unnoticed");
                    assert_eq!(read_everything(&reader, &entries, at), failed);
                }
            }
            fs.remove_file(&Path::new("/db").join(&name)).unwrap();
        }
    }
}

#[test]
fn every_truncation_is_refused() {
    let (fs, _, good) = sample(12);
    for len in 0..good.len() {
        let file = file_with(&fs, &format!("trunc-{len}.sst"), &good[..len]);
        let result = SstReader::open(file);
        assert!(is_corruption(&result), "truncation to {len} accepted");
    }
}

#[test]
fn newer_format_version_is_unsupported() {
    let (fs, _, mut bytes) = sample(13);
    let footer_at = bytes.len() - FOOTER_SIZE;
    let version_at = footer_at + 56;
    bytes[version_at..version_at + 4].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let crc = popdb_io::crc32(&bytes[footer_at..footer_at + 60]);
    bytes[footer_at + 60..].copy_from_slice(&crc.to_le_bytes());
    let Err(Error::Corruption(c)) = SstReader::open(file_with(&fs, "v3.sst", &bytes)) else {
        panic!("version 3 opened");
    };
    assert_eq!(
        c.kind,
        CorruptionKind::UnsupportedVersion {
            found: FORMAT_VERSION + 1,
            max: FORMAT_VERSION
        }
    );
    assert_eq!(c.offset, version_at as u64);
    assert_eq!(c.what, "sst format_version");
}

#[test]
fn bloom_negative_reads_read_no_data_block() {
    let fs = SimFs::new(14);
    let entries: Vec<Entry> = (0..2000u32)
        .map(|i| {
            let key = format!("present-{i:05}");
            (
                InternalKey::new(key.as_bytes(), 7, ValueKind::Put),
                b"v".to_vec(),
            )
        })
        .collect();
    let (file, summary) = build(&fs, "bloom.sst", &entries, SstWriterOptions::default());
    let bytes = read_all(&file);
    let filter = summary.footer.filter;
    let start = usize::try_from(filter.offset).unwrap();
    let filter_bytes = &bytes[start..start + filter.size as usize - 4];
    let bloom = BloomFilter::decode(filter_bytes).unwrap();
    let reader = SstReader::open(file).unwrap();
    let mut negatives = 0;
    for i in 0..2000u32 {
        let key = format!("absent-{i:05}");
        let before = reader.data_block_reads();
        assert_eq!(reader.get(key.as_bytes(), u64::MAX).unwrap(), None);
        let reads = reader.data_block_reads() - before;
        if bloom.may_contain(key.as_bytes()) {
            assert_eq!(reads, 1, "a maybe reads exactly one block");
        } else {
            assert_eq!(
                reads, 0,
                "{key}: the filter said absent but a block was read"
            );
            negatives += 1;
        }
    }
    assert!(
        negatives > 1900,
        "only {negatives} of 2000 absent keys ruled out"
    );
    let before = reader.data_block_reads();
    assert!(reader.get(b"present-00042", 7).unwrap().is_some());
    assert_eq!(
        reader.data_block_reads() - before,
        1,
        "a hit reads one block"
    );
}
