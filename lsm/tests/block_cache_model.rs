//! The block cache against simple models: seeded random get/insert/erase sequences checked
//! after every step (usage never above capacity, a hit returns exactly the bytes last
//! inserted under that key, the shard invariants hold), an exact LRU model for a one-shard
//! cache, and threads hammering one cache at once. A failure prints its seed and how to
//! replay it (`POPDB_CACHE_SEED=<seed>` runs that seed alone).

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use popdb_lsm::{BlockCache, ENTRY_CHARGE_OVERHEAD, SHARD_CAPACITY_MIN};
use popdb_testkit::Rng;

const CASES: u64 = 60;

/// The exact-LRU model: (key, image), most recently used first.
type LruModel = VecDeque<((u64, u64), Arc<[u8]>)>;
const STEPS: usize = 3000;

fn seeds() -> Vec<u64> {
    match std::env::var("POPDB_CACHE_SEED") {
        Ok(seed) => vec![seed.parse().expect("POPDB_CACHE_SEED is a u64")],
        Err(_) => (0..CASES).collect(),
    }
}

fn replay(test: &str, seed: u64) -> String {
    format!(
        "seed {seed}; replay: POPDB_CACHE_SEED={seed} cargo test --profile checked \
         -p popdb-lsm --test block_cache_model {test}"
    )
}

/// An image whose bytes say which key and which insert they came from.
fn image(rng: &mut Rng, len_max: usize) -> Arc<[u8]> {
    let len = rng.index(len_max + 1);
    let fill = rng.next();
    (0..len).map(|i| (fill >> (i % 8 * 8)) as u8).collect()
}

#[test]
fn cache_random_ops_keep_bytes_and_budget() {
    for seed in seeds() {
        let ctx = replay("cache_random_ops_keep_bytes_and_budget", seed);
        let mut rng = Rng(seed);
        let capacity = match rng.below(3) {
            0 => rng.index(20_000),
            1 => SHARD_CAPACITY_MIN * (2 + rng.index(30)),
            _ => rng.index(SHARD_CAPACITY_MIN * 4),
        };
        let cache = BlockCache::new(capacity);
        let len_max = [64, 4096, 70_000][rng.index(3)];
        let mut last: HashMap<(u64, u64), Arc<[u8]>> = HashMap::new();
        for step in 0..STEPS {
            let key = (1 + rng.below(4), rng.below(200) * 4096);
            match rng.below(10) {
                0..=4 => {
                    if let Some(got) = cache.get(key.0, key.1) {
                        let want = last.get(&key);
                        assert_eq!(Some(&got), want, "{ctx}, step {step}: hit bytes");
                    }
                }
                5..=8 => {
                    let img = image(&mut rng, len_max);
                    let cached = cache.insert(key.0, key.1, Arc::clone(&img));
                    // Shard capacities differ by at most one byte.
                    let charge = img.len() + ENTRY_CHARGE_OVERHEAD;
                    let shard_min = capacity / cache.shard_count();
                    assert!(
                        cached || charge > shard_min,
                        "{ctx}, step {step}: refused an image that fits"
                    );
                    assert!(
                        !cached || charge <= shard_min + 1,
                        "{ctx}, step {step}: cached an image larger than its shard"
                    );
                    if cached {
                        last.insert(key, img);
                    } else {
                        last.remove(&key);
                    }
                }
                _ => {
                    cache.erase_file(key.0);
                    last.retain(|k, _| k.0 != key.0);
                    assert!(
                        (0..200).all(|o| cache.get(key.0, o * 4096).is_none()),
                        "{ctx}, step {step}: erased"
                    );
                }
            }
            assert!(
                cache.usage_bytes() <= capacity,
                "{ctx}, step {step}: over budget"
            );
            if step % 97 == 0 {
                cache.check_invariants();
            }
        }
        cache.check_invariants();
        assert!(cache.hits() + cache.misses() > 0, "{ctx}");
    }
}

/// A one-shard cache evicts exactly as a plain LRU list of (key, charge) would.
#[test]
fn cache_one_shard_is_exact_lru() {
    for seed in seeds() {
        let ctx = replay("cache_one_shard_is_exact_lru", seed);
        let mut rng = Rng(seed);
        let capacity = 1 + rng.index(64 * 1024);
        let cache = BlockCache::new(capacity);
        assert_eq!(cache.shard_count(), 1, "{ctx}");
        // Most recent at the front.
        let mut model: LruModel = VecDeque::new();
        let (mut evictions, mut hits) = (0u64, 0u64);
        for step in 0..STEPS {
            let key = (1, rng.below(64));
            let at = model.iter().position(|(k, _)| *k == key);
            if rng.chance(2) {
                let got = cache.get(key.0, key.1);
                let want = at.map(|i| {
                    let e = model.remove(i).unwrap();
                    model.push_front(e.clone());
                    e.1
                });
                hits += u64::from(want.is_some());
                assert_eq!(got, want, "{ctx}, step {step}: get {key:?}");
            } else {
                let img = image(&mut rng, capacity / 3);
                if let Some(i) = at {
                    model.remove(i);
                }
                let fits = img.len() + ENTRY_CHARGE_OVERHEAD <= capacity;
                assert_eq!(cache.insert(key.0, key.1, Arc::clone(&img)), fits, "{ctx}");
                if fits {
                    model.push_front((key, img));
                    let charge = |m: &LruModel| -> usize {
                        m.iter().map(|(_, v)| v.len() + ENTRY_CHARGE_OVERHEAD).sum()
                    };
                    while charge(&model) > capacity {
                        model.pop_back();
                        evictions += 1;
                    }
                }
            }
            let usage: usize = model
                .iter()
                .map(|(_, v)| v.len() + ENTRY_CHARGE_OVERHEAD)
                .sum();
            assert_eq!(cache.usage_bytes(), usage, "{ctx}, step {step}: usage");
            assert_eq!(
                cache.entry_count(),
                model.len(),
                "{ctx}, step {step}: entries"
            );
        }
        assert_eq!(cache.evictions(), evictions, "{ctx}");
        assert_eq!(cache.hits(), hits, "{ctx}");
        cache.check_invariants();
    }
}

/// Threads on one cache: every hit returns the bytes that key always gets (the image is a
/// function of the key, as a block's is of its file and offset), and the budget holds.
#[test]
fn cache_threads_share_one_cache() {
    let capacity = SHARD_CAPACITY_MIN * 4;
    let cache = BlockCache::new(capacity);
    let image_of = |file: u64, offset: u64| -> Arc<[u8]> {
        let len = ((file * 7919 + offset) % 9000) as usize;
        (0..len)
            .map(|i| (file as usize + offset as usize + i) as u8)
            .collect()
    };
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let cache = Arc::clone(&cache);
            std::thread::spawn(move || {
                let mut rng = Rng(t);
                for _ in 0..20_000 {
                    let (file, offset) = (1 + rng.below(3), rng.below(300));
                    match cache.get(file, offset) {
                        Some(got) => assert_eq!(got, image_of(file, offset)),
                        None => {
                            cache.insert(file, offset, image_of(file, offset));
                        }
                    }
                    if rng.chance(5000) {
                        cache.erase_file(file);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    cache.check_invariants();
    assert!(cache.usage_bytes() <= capacity);
    assert!(
        cache.hits() > 0 && cache.evictions() > 0,
        "the test exercised both"
    );
}
