//! Writes the seed corpora of the LSM fuzz targets with the real builders, never by hand:
//! - `lsm_block_decode`: blocks of a few shapes (empty, one entry, shared prefixes, several
//!   restart intervals, tombstones, empty user keys and values), each prefixed with the
//!   control byte that fuzz/checks/lsm_block_decode.rs reads (`0`: as written; `1`: re-seal
//!   the crc32, for damaged variants that should reach the structure checks).
//! - `lsm_sst_decode` (with `--sst`): whole SST files from the real writer, with and without
//!   zstd, each prefixed with the control byte of fuzz/checks/lsm_sst_decode.rs.
//!
//! Run from fuzz/: `cargo run --example make_lsm_corpus -- corpus/lsm_block_decode` and
//! `cargo run --example make_lsm_corpus -- --sst corpus/lsm_sst_decode`.

// A developer's tool that writes a scratch folder.
#![allow(clippy::disallowed_methods)]

use std::path::Path;

use popdb_io::{FileSystem, OpenOptions, SimFs};
use popdb_lsm::{BlockBuilder, Compression, InternalKey, SstWriter, SstWriterOptions, ValueKind};

fn block(restart_interval: usize, entries: &[(&[u8], u64, bool, &[u8])]) -> Vec<u8> {
    let mut builder = BlockBuilder::new(restart_interval);
    for &(user, lsn, put, value) in entries {
        let kind = if put {
            ValueKind::Put
        } else {
            ValueKind::Delete
        };
        builder.add(InternalKey::new(user, lsn, kind).encoded(), value);
    }
    builder.finish()
}

/// An SST of `entries` from the real writer, read back as bytes.
fn sst(entries: &[(Vec<u8>, u64, bool, Vec<u8>)], options: SstWriterOptions) -> Vec<u8> {
    let fs = SimFs::new(1);
    let file = fs
        .open(Path::new("/t.sst"), OpenOptions::create_new())
        .expect("SimFs makes files");
    let mut writer = SstWriter::new(file.clone(), options);
    for (user, lsn, put, value) in entries {
        let kind = if *put {
            ValueKind::Put
        } else {
            ValueKind::Delete
        };
        writer
            .add(&InternalKey::new(user, *lsn, kind), value)
            .expect("SimFs writes");
    }
    let summary = writer.finish().expect("SimFs syncs");
    let mut bytes = vec![0u8; usize::try_from(summary.file_size).expect("small")];
    file.read_exact_at(&mut bytes, 0).expect("SimFs reads");
    bytes
}

fn write_sst_corpus(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create the corpus folder");
    let many: Vec<(Vec<u8>, u64, bool, Vec<u8>)> = (0..120u64)
        .map(|i| {
            let value = format!("value {} of {}", i % 4, i / 3).into_bytes();
            (
                format!("user{:03}", i / 3).into_bytes(),
                100 - i % 3,
                i % 5 != 2,
                value,
            )
        })
        .collect();
    let tiny = vec![
        (b"a".to_vec(), 2, false, Vec::new()),
        (b"a".to_vec(), 1, true, b"x".to_vec()),
    ];
    let big = vec![
        (Vec::new(), 3, true, Vec::new()),
        (b"b".to_vec(), 9, true, vec![b'q'; 3000]),
        (b"c".to_vec(), 1, true, b"after".to_vec()),
    ];
    let zstd = Compression::Zstd { level: 3 };
    let shape =
        |block_size: usize, restart_interval: usize, compression: Compression| SstWriterOptions {
            block_size,
            restart_interval,
            compression,
            ..SstWriterOptions::default()
        };
    let files = [
        ("empty", sst(&[], SstWriterOptions::default())),
        ("tiny", sst(&tiny, SstWriterOptions::default())),
        ("tiny-zstd", sst(&tiny, shape(4096, 16, zstd))),
        ("many-b256-r4", sst(&many, shape(256, 4, Compression::None))),
        ("many-b256-r4-zstd", sst(&many, shape(256, 4, zstd))),
        ("many-b64-r1-zstd", sst(&many, shape(64, 1, zstd))),
        ("many-b4096-zstd", sst(&many, shape(4096, 16, zstd))),
        ("big-value-zstd", sst(&big, shape(512, 2, zstd))),
    ];
    for (name, bytes) in &files {
        for c0 in [0u8, 7] {
            let mut data = vec![c0];
            data.extend_from_slice(bytes);
            std::fs::write(dir.join(format!("{name}-c{c0}")), &data).expect("write");
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, dir] = &args[..]
        && flag == "--sst"
    {
        write_sst_corpus(Path::new(dir));
        return;
    }
    let [dir] = &args[..] else {
        eprintln!("usage: make_lsm_corpus DIR | make_lsm_corpus --sst DIR");
        std::process::exit(2);
    };
    let dir = Path::new(dir);
    std::fs::create_dir_all(dir).expect("create the corpus folder");
    let many: Vec<(Vec<u8>, u64)> = (0..40u64)
        .map(|i| (format!("user{:03}", i / 2).into_bytes(), 100 - i % 2))
        .collect();
    let many_entries: Vec<(&[u8], u64, bool, &[u8])> = many
        .iter()
        .map(|(k, lsn)| (&k[..], *lsn, lsn % 2 == 0, &b"value"[..]))
        .collect();
    let fruit: &[(&[u8], u64, bool, &[u8])] = &[
        (b"apple", 7, true, b"red"),
        (b"apply", 9, false, b""),
        (b"pear", 3, true, b"green"),
    ];
    let blocks = [
        ("empty", block(16, &[])),
        ("one-entry", block(16, &[(b"k", 1, true, b"v")])),
        (
            "empty-user-key",
            block(16, &[(b"", 5, true, b""), (b"", 4, false, b"")]),
        ),
        ("fruit-r1", block(1, fruit)),
        ("fruit-r2", block(2, fruit)),
        ("fruit-r16", block(16, fruit)),
        ("many-r3", block(3, &many_entries)),
        ("many-r16", block(16, &many_entries)),
    ];
    for (name, bytes) in &blocks {
        let mut data = vec![0u8];
        data.extend_from_slice(bytes);
        std::fs::write(dir.join(format!("always-{name}")), &data).expect("write");
        // A damaged variant whose crc32 the check re-seals: a flipped byte mid-entries.
        if bytes.len() > 12 {
            let mut damaged = data.clone();
            damaged[0] = 1;
            damaged[1 + bytes.len() / 3] ^= 0x40;
            std::fs::write(dir.join(format!("resealed-flip-{name}")), &damaged).expect("write");
        }
    }
}
