//! The body of fuzz target `lsm_sst_decode`: arbitrary bytes opened as a whole SST file must
//! never make the reader or its iterator panic, and must read the same with and without a
//! block cache.
//!
//! Like fuzz/checks/wal_segment_decode.rs (which says why), this file is included with
//! `#[path = ...] mod check;` by both fuzz/fuzz_targets/lsm_sst_decode.rs and
//! lsm/tests/sst_fuzz_replay.rs, and needs nothing but `popdb_lsm` and `popdb_io`.
//!
//! Input layout: `[c0, file...]`. If bit 0 of `c0` is set, the check first re-seals the
//! footer's crc32 (the file's last 4 bytes cover the 60 before them) so that the fuzzer
//! explores the footer's fields behind the checksum. Bits 1 and 2 pick the cache's size
//! (none of it fits, a few blocks, everything). Empty inputs are ignored.
//!
//! The file goes into a SimFs file and is opened twice, without a cache and with one. Both
//! opens must agree; if they succeed, each reader is scanned forward in full, backward in
//! full, and probed with a few seeks, seeks for prev and gets (at keys taken from the file
//! and at arbitrary ones). Asserted: nothing panics; an error is `Corruption` and leaves the
//! cursor invalid; both readers (cached and not) give identical results, including which
//! step fails; and when both scans succeed they meet the same entries. Memory is bounded by
//! the file's length plus 4 MiB per compressed block (docs/format/sstable.md, section 2a);
//! libFuzzer's `-rss_limit_mb` enforces it.

use std::path::Path;

use popdb_io::{FileRef, FileSystem, OpenOptions, SimFs};
use popdb_lsm::{BlockCache, Error, FOOTER_SIZE, SstReadOptions, SstReader};

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// What one reader did, step by step, for comparing two readers.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    forward: (Entries, bool),
    backward: (Entries, bool),
    probes: Vec<Option<Vec<u8>>>,
}

/// The fuzz target's body; panics on any violation.
pub fn check(data: &[u8]) {
    let Some((&c0, rest)) = data.split_first() else {
        return;
    };
    let mut image = rest.to_vec();
    if c0 & 1 == 1 && image.len() >= FOOTER_SIZE {
        let footer_at = image.len() - FOOTER_SIZE;
        let crc_at = image.len() - 4;
        let crc = popdb_io::crc32(&image[footer_at..crc_at]);
        image[crc_at..].copy_from_slice(&crc.to_le_bytes());
    }
    let capacity = [0, 8 << 10, 1 << 20, 64 << 20][usize::from((c0 >> 1) & 3)];
    let fs = SimFs::new(0);
    let file = file_with(&fs, &image);
    let plain = SstReader::open(file.clone());
    let options = SstReadOptions {
        file_id: Some(7),
        cache: Some(BlockCache::new(capacity)),
    };
    let cached = SstReader::open_with(file, options);
    let (plain, cached) = match (plain, cached) {
        (Ok(p), Ok(c)) => (p, c),
        (Err(p), Err(c)) => {
            assert_corruption(&p);
            assert_corruption(&c);
            return;
        }
        (p, c) => panic!("the cache changed whether the file opens: {p:?} vs {c:?}"),
    };
    let a = exercise(&plain);
    let b = exercise(&cached);
    assert_eq!(a, b, "reading through the cache changed the results");
    // A second pass over the cached reader reads from the cache now.
    assert_eq!(
        exercise(&cached),
        b,
        "cached blocks read differently the second time"
    );
    let (forward, forward_ok) = &a.forward;
    let (backward, backward_ok) = &a.backward;
    if *forward_ok && *backward_ok {
        assert_eq!(forward, backward, "forward and backward scans disagree");
    }
}

fn file_with(fs: &SimFs, bytes: &[u8]) -> FileRef {
    let dir = Path::new("/fuzz");
    fs.create_dir_all(dir).expect("SimFs makes folders");
    let file = fs
        .open(&dir.join("input.sst"), OpenOptions::create_new())
        .expect("SimFs makes files");
    file.write_all_at(bytes, 0).expect("SimFs writes");
    file
}

fn assert_corruption(e: &Error) {
    assert!(matches!(e, Error::Corruption(_)), "not corruption: {e}");
}

/// Scans `reader` both ways and probes it; records what it saw.
fn exercise(reader: &SstReader) -> Outcome {
    let forward = scan(reader, true);
    let backward = scan(reader, false);
    let mut targets: Vec<Vec<u8>> = forward
        .0
        .iter()
        .step_by(7)
        .map(|(k, _)| k.clone())
        .collect();
    targets.extend([
        Vec::new(),
        vec![0; 8],
        vec![0xff; 12],
        b"a\x01\0\0\0\0\0\0\0".to_vec(),
    ]);
    let mut probes = Vec::new();
    let mut it = reader.iter();
    for target in &targets {
        for op in 0..3 {
            let result = match op {
                0 => it.seek(target),
                1 => it.seek_for_prev(target),
                _ => {
                    let user = &target[..target.len().saturating_sub(8)];
                    let found = reader.get(user, u64::MAX).unwrap_or_else(|e| {
                        assert_corruption(&e);
                        None
                    });
                    probes.push(found.map(|(_, _, v)| v));
                    continue;
                }
            };
            probes.push(position(&it, result));
        }
    }
    Outcome {
        forward,
        backward,
        probes,
    }
}

/// The cursor's key after an operation, or `None` (invalid, or failed: then it must be
/// invalid and the error `Corruption`).
fn position(it: &popdb_lsm::SstIter<'_>, result: popdb_lsm::Result<()>) -> Option<Vec<u8>> {
    if let Err(e) = result {
        assert_corruption(&e);
        assert!(!it.valid(), "a failed step left the cursor valid");
        return None;
    }
    it.valid().then(|| it.key().to_vec())
}

/// Every entry in one direction (returned in file order), and whether the scan finished
/// without an error.
fn scan(reader: &SstReader, forward: bool) -> (Entries, bool) {
    let mut it = reader.iter();
    let mut out = Vec::new();
    let mut result = if forward {
        it.seek_to_first()
    } else {
        it.seek_to_last()
    };
    while result.is_ok() && it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        result = if forward { it.next() } else { it.prev() };
    }
    if !forward {
        out.reverse();
    }
    if let Err(e) = &result {
        assert_corruption(e);
        assert!(!it.valid(), "a failed step left the cursor valid");
    }
    (out, result.is_ok())
}
