//! SST files against a model: random sorted entries (several versions per key, tombstones,
//! empty keys and values, large values) written with random block shapes, with and without
//! zstd, on SimFs, then read back (with and without a block cache, some tiny) with point
//! reads at random views, full iteration both ways, seeks and random walks of
//! next/prev/seek/seek_for_prev, each compared with a sorted `Vec` of the entries. Seeded
//! loops: a failure prints its seed and the command that replays it
//! (`POPDB_SST_SEED=<seed>` runs that seed alone).

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod sst_common;

use std::cmp::Ordering;

use popdb_io::{FileRef, SimFs};
use popdb_lsm::{
    BlockCache, Compression, InternalKey, LSN_MAX, SstIter, SstReadOptions, SstReader,
    SstWriterOptions, ValueKind, compare_internal,
};
use sst_common::{Entry, Rng, build, model_get, random_entries};

const CASES: u64 = 300;

/// The seeds to run: `0..count`, or only `POPDB_SST_SEED` when it is set.
fn seeds(count: u64) -> Vec<u64> {
    match std::env::var("POPDB_SST_SEED") {
        Ok(seed) => vec![seed.parse().expect("POPDB_SST_SEED is a u64")],
        Err(_) => (0..count).collect(),
    }
}

/// What a failure prints: the seed and how to replay it alone.
fn replay(test: &str, seed: u64) -> String {
    format!(
        "seed {seed}; replay: POPDB_SST_SEED={seed} cargo test --profile checked \
         -p popdb-lsm --test sst_model {test}"
    )
}

fn options(rng: &mut Rng) -> SstWriterOptions {
    SstWriterOptions {
        block_size: [64, 256, 1024, 4096][rng.below(4) as usize],
        restart_interval: 1 + rng.below(16) as usize,
        bits_per_key: 1 + rng.below(16) as usize,
        compression: if rng.chance(2) {
            Compression::Zstd {
                level: 1 + rng.below(5) as i32,
            }
        } else {
            Compression::None
        },
    }
}

/// Opens `file` with no cache, a tiny one (that holds few blocks or none) or a large one.
fn open(file: FileRef, rng: &mut Rng) -> SstReader {
    let cache = match rng.below(3) {
        0 => None,
        1 => Some(BlockCache::new(rng.below(4096) as usize)),
        _ => Some(BlockCache::new(1 << 22)),
    };
    let options = SstReadOptions {
        file_id: Some(rng.below(1000)),
        cache,
    };
    SstReader::open_with(file, options).unwrap()
}

fn check_iteration(reader: &SstReader, entries: &[Entry], ctx: &str) {
    let mut it = reader.iter();
    it.seek_to_first().unwrap();
    let mut got = Vec::new();
    while it.valid() {
        got.push((it.key().to_vec(), it.value().to_vec()));
        it.next().unwrap();
    }
    let want: Vec<_> = entries
        .iter()
        .map(|(k, v)| (k.encoded().to_vec(), v.clone()))
        .collect();
    assert_eq!(got, want, "{ctx}: full iteration");
    it.seek_to_last().unwrap();
    let mut back = Vec::new();
    while it.valid() {
        back.push((it.key().to_vec(), it.value().to_vec()));
        it.prev().unwrap();
    }
    back.reverse();
    assert_eq!(back, want, "{ctx}: full backward iteration");
}

#[test]
fn sst_matches_model_at_random_views() {
    for seed in seeds(CASES) {
        let ctx = replay("sst_matches_model_at_random_views", seed);
        let mut rng = Rng(seed);
        let entries = random_entries(&mut rng, 60);
        let fs = SimFs::new(seed);
        let (file, summary) = build(&fs, "t.sst", &entries, options(&mut rng));
        let reader = open(file, &mut rng);
        let footer = reader.footer();
        assert_eq!(footer.entry_count, entries.len() as u64, "{ctx}");
        assert_eq!(*footer, summary.footer, "{ctx}");
        let lsns = entries.iter().map(|(k, _)| k.lsn());
        assert_eq!(
            footer.smallest_lsn,
            lsns.clone().min().unwrap_or(0),
            "{ctx}"
        );
        assert_eq!(footer.largest_lsn, lsns.max().unwrap_or(0), "{ctx}");
        assert_eq!(reader.data_block_count(), summary.data_blocks, "{ctx}");

        check_iteration(&reader, &entries, &ctx);

        let mut users: Vec<Vec<u8>> = entries.iter().map(|(k, _)| k.user_key().to_vec()).collect();
        users.dedup();
        for _ in 0..10 {
            users.push(rng.bytes(10, b"abcz\x00\xff"));
        }
        for user in &users {
            for view in [0, 1, rng.below(110), rng.below(110), 100, LSN_MAX, u64::MAX] {
                let got = reader.get(user, view).unwrap();
                let want = model_get(&entries, user, view);
                assert_eq!(got, want, "{ctx}: get {user:02x?} at {view}");
            }
        }

        for _ in 0..20 {
            let user = if !users.is_empty() && rng.below(2) == 0 {
                users[rng.below(users.len() as u64) as usize].clone()
            } else {
                rng.bytes(10, b"abcz\x00\xff")
            };
            let target = InternalKey::seek_key(&user, rng.below(110));
            let mut it = reader.iter();
            it.seek(target.encoded()).unwrap();
            let mut want = entries.iter().filter(|(k, _)| *k >= target);
            for _ in 0..3 {
                let Some((k, v)) = want.next() else {
                    assert!(!it.valid(), "{ctx}: seek past the end");
                    break;
                };
                assert!(it.valid(), "{ctx}: seek ended early");
                assert_eq!(it.key(), k.encoded(), "{ctx}");
                assert_eq!(it.value(), &v[..], "{ctx}");
                it.next().unwrap();
            }
        }
    }
}

/// A seek target: an existing key, another version of an existing user key, or a random
/// user key, at a random LSN and kind.
fn target(rng: &mut Rng, entries: &[Entry]) -> Vec<u8> {
    if !entries.is_empty() && rng.chance(3) {
        return entries[rng.index(entries.len())].0.encoded().to_vec();
    }
    let user = if !entries.is_empty() && rng.chance(2) {
        entries[rng.index(entries.len())].0.user_key().to_vec()
    } else {
        rng.bytes(10, b"abcz\x00\xff")
    };
    let kind = if rng.chance(2) {
        ValueKind::Put
    } else {
        ValueKind::Delete
    };
    InternalKey::new(&user, rng.below(110), kind)
        .encoded()
        .to_vec()
}

/// Checks the cursor against the model position.
fn check_at(it: &SstIter<'_>, entries: &[Entry], pos: Option<usize>, ctx: &str) {
    assert_eq!(it.valid(), pos.is_some(), "{ctx}: validity");
    if let Some(p) = pos {
        assert_eq!(it.key(), entries[p].0.encoded(), "{ctx}: key at {p}");
        assert_eq!(it.value(), &entries[p].1[..], "{ctx}: value at {p}");
    }
}

/// Random walks of seeks and steps both ways, each step checked against the model's position
/// in the sorted entries.
#[test]
fn sst_random_walks_match_model() {
    for seed in seeds(CASES) {
        let ctx = replay("sst_random_walks_match_model", seed);
        let mut rng = Rng(seed ^ 0x5157_a1c0);
        let entries = random_entries(&mut rng, 60);
        let fs = SimFs::new(seed);
        let (file, _) = build(&fs, "w.sst", &entries, options(&mut rng));
        let reader = open(file, &mut rng);
        let keys: Vec<&[u8]> = entries.iter().map(|(k, _)| k.encoded()).collect();
        let mut it = reader.iter();
        let mut pos: Option<usize> = None;
        for step in 0..300 {
            let op = rng.below(10);
            let ctx = format!("{ctx}, step {step} (op {op})");
            match op {
                0 => {
                    it.seek_to_first().unwrap();
                    pos = (!keys.is_empty()).then_some(0);
                }
                1 => {
                    it.seek_to_last().unwrap();
                    pos = keys.len().checked_sub(1);
                }
                2 => {
                    let t = target(&mut rng, &entries);
                    it.seek(&t).unwrap();
                    let p = keys.partition_point(|k| compare_internal(k, &t) == Ordering::Less);
                    pos = (p < keys.len()).then_some(p);
                }
                3 => {
                    let t = target(&mut rng, &entries);
                    it.seek_for_prev(&t).unwrap();
                    let p = keys.partition_point(|k| compare_internal(k, &t) != Ordering::Greater);
                    pos = p.checked_sub(1);
                }
                4..=6 => {
                    let Some(p) = pos else { continue };
                    it.next().unwrap();
                    pos = (p + 1 < keys.len()).then_some(p + 1);
                }
                _ => {
                    let Some(p) = pos else { continue };
                    it.prev().unwrap();
                    pos = p.checked_sub(1);
                }
            }
            check_at(&it, &entries, pos, &ctx);
        }
    }
}

#[test]
fn empty_sst_opens_and_holds_nothing() {
    let fs = SimFs::new(1);
    let (file, summary) = build(&fs, "e.sst", &[], SstWriterOptions::default());
    assert_eq!(summary.data_blocks, 0);
    let reader = SstReader::open(file).unwrap();
    assert_eq!(reader.footer().entry_count, 0);
    assert_eq!(reader.get(b"", u64::MAX).unwrap(), None);
    check_iteration(&reader, &[], "empty");
    let mut it = reader.iter();
    it.seek(InternalKey::seek_key(b"a", 5).encoded()).unwrap();
    assert!(!it.valid());
    it.seek_for_prev(InternalKey::seek_key(b"a", 5).encoded())
        .unwrap();
    assert!(!it.valid());
    it.seek_to_last().unwrap();
    assert!(!it.valid());
}

#[test]
fn large_value_spans_one_big_block() {
    let fs = SimFs::new(2);
    let big = vec![7u8; 100_000];
    let entries = vec![
        (InternalKey::new(b"", 3, ValueKind::Put), Vec::new()),
        (InternalKey::new(b"a", 9, ValueKind::Delete), Vec::new()),
        (InternalKey::new(b"a", 4, ValueKind::Put), big.clone()),
        (InternalKey::new(b"b", 1, ValueKind::Put), b"x".to_vec()),
    ];
    let (file, summary) = build(&fs, "b.sst", &entries, SstWriterOptions::default());
    assert!(summary.file_size > 100_000);
    let reader = SstReader::open(file).unwrap();
    assert_eq!(reader.get(b"a", 8).unwrap(), Some((ValueKind::Put, 4, big)));
    assert_eq!(
        reader.get(b"a", 9).unwrap(),
        Some((ValueKind::Delete, 9, Vec::new()))
    );
    assert_eq!(reader.get(b"a", 3).unwrap(), None);
    assert_eq!(
        reader.get(b"", 3).unwrap(),
        Some((ValueKind::Put, 3, Vec::new()))
    );
    check_iteration(&reader, &entries, "large value");
}

#[test]
#[should_panic(expected = "sst keys out of order")]
fn out_of_order_entries_panic() {
    let fs = SimFs::new(3);
    let file = sst_common::create(&fs, "o.sst");
    let mut w = popdb_lsm::SstWriter::new(file, SstWriterOptions::default());
    w.add(&InternalKey::new(b"a", 1, ValueKind::Put), b"")
        .unwrap();
    w.add(&InternalKey::new(b"a", 2, ValueKind::Put), b"")
        .unwrap();
}
