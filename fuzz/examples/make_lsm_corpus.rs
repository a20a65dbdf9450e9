//! Writes the seed corpus of fuzz target `lsm_block_decode` with the real block builder,
//! never by hand: blocks of a few shapes (empty, one entry, shared prefixes, several restart
//! intervals, tombstones, empty user keys and values), each prefixed with the control byte
//! that fuzz/checks/lsm_block_decode.rs reads (`0`: as written; `1`: re-seal the crc32, for
//! damaged variants that should reach the structure checks).
//!
//! Run from fuzz/: `cargo run --example make_lsm_corpus -- corpus/lsm_block_decode`.

// A developer's tool that writes a scratch folder.
#![allow(clippy::disallowed_methods)]

use std::path::Path;

use popdb_lsm::{BlockBuilder, InternalKey, ValueKind};

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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir] = &args[..] else {
        eprintln!("usage: make_lsm_corpus DIR");
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
