//! SST files against a model: random sorted entries (several versions per key, tombstones,
//! empty keys and values, large values) written with random block shapes on SimFs, then read
//! back with point reads at random views, full iteration and seeks, each compared with a
//! plain scan of the entries. Seeded loops: a failure prints its seed.

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod sst_common;

use popdb_io::SimFs;
use popdb_lsm::{InternalKey, LSN_MAX, SstReader, SstWriterOptions, ValueKind};
use sst_common::{Entry, Rng, build, model_get, random_entries};

const CASES: u64 = 300;

fn options(rng: &mut Rng) -> SstWriterOptions {
    SstWriterOptions {
        block_size: [64, 256, 1024, 4096][rng.below(4) as usize],
        restart_interval: 1 + rng.below(16) as usize,
        bits_per_key: 1 + rng.below(16) as usize,
    }
}

fn check_iteration(reader: &SstReader, entries: &[Entry], seed: u64) {
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
    assert_eq!(got, want, "seed {seed}: full iteration");
}

#[test]
fn sst_matches_model_at_random_views() {
    for seed in 0..CASES {
        let mut rng = Rng(seed);
        let entries = random_entries(&mut rng, 60);
        let fs = SimFs::new(seed);
        let (file, summary) = build(&fs, "t.sst", &entries, options(&mut rng));
        let reader = SstReader::open(file).unwrap();
        let footer = reader.footer();
        assert_eq!(footer.entry_count, entries.len() as u64, "seed {seed}");
        assert_eq!(*footer, summary.footer, "seed {seed}");
        let lsns = entries.iter().map(|(k, _)| k.lsn());
        assert_eq!(footer.smallest_lsn, lsns.clone().min().unwrap_or(0));
        assert_eq!(footer.largest_lsn, lsns.max().unwrap_or(0));
        assert_eq!(reader.data_block_count(), summary.data_blocks);

        check_iteration(&reader, &entries, seed);

        let mut users: Vec<Vec<u8>> = entries.iter().map(|(k, _)| k.user_key().to_vec()).collect();
        users.dedup();
        for _ in 0..10 {
            users.push(rng.bytes(10, b"abcz\x00\xff"));
        }
        for user in &users {
            for view in [0, 1, rng.below(110), rng.below(110), 100, LSN_MAX, u64::MAX] {
                let got = reader.get(user, view).unwrap();
                let want = model_get(&entries, user, view);
                assert_eq!(got, want, "seed {seed}: get {user:02x?} at {view}");
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
                    assert!(!it.valid(), "seed {seed}: seek past the end");
                    break;
                };
                assert!(it.valid(), "seed {seed}: seek ended early");
                assert_eq!(it.key(), k.encoded(), "seed {seed}");
                assert_eq!(it.value(), &v[..], "seed {seed}");
                it.next().unwrap();
            }
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
    check_iteration(&reader, &[], 1);
    let mut it = reader.iter();
    it.seek(InternalKey::seek_key(b"a", 5).encoded()).unwrap();
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
    check_iteration(&reader, &entries, 2);
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
