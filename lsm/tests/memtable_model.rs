//! Differential test of the memtable against a `BTreeMap` model of every version, over many
//! seeds: batches with repeated keys and deletes, empty keys and values, point reads and
//! range scans in both directions with every bound kind at random (old and new) read views.
//!
//! A failure names its seed; `MEMTABLE_SEEDS=N` runs N seeds (default 300), and
//! `MEMTABLE_WIDE_SEEDS=N` N seeds of the larger tables (default 6).

#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::collections::BTreeMap;
use std::ops::Bound;

use popdb_testkit::Rng;

use popdb_lsm::{Memtable, MemtableEntry};

/// Every version of every key: (lsn, value or tombstone), in apply order (LSN ascending).
type Model = BTreeMap<Vec<u8>, Vec<(u64, Option<Vec<u8>>)>>;
/// What a read yields per key: (user key, value or tombstone, lsn).
type Row = (Vec<u8>, Option<Vec<u8>>, u64);

/// Memtable-shaped draws on top of the shared generator.
trait Draw {
    fn key(&mut self) -> Vec<u8>;
    fn value(&mut self) -> Vec<u8>;
    fn bound(&mut self) -> Bound<Vec<u8>>;
}

impl Draw for Rng {
    /// A short key over a tiny alphabet, so keys repeat, nest as prefixes, and can be empty.
    fn key(&mut self) -> Vec<u8> {
        const ALPHABET: [u8; 4] = [0, 1, b'a', 0xff];
        let len = self.below(4) as usize;
        (0..len).map(|_| ALPHABET[self.below(4) as usize]).collect()
    }

    /// Mostly tiny values; one in 24 is large, from every size class the arena treats apart:
    /// below its first block (16 KiB), between that and a large node (256 KiB), and above.
    /// A node between the two once overran an arena block that was smaller than itself.
    fn value(&mut self) -> Vec<u8> {
        let len = if self.chance(24) {
            match self.below(3) {
                0 => 1024 + self.below(15 * 1024),
                1 => 16 * 1024 + self.below(240 * 1024),
                _ => 256 * 1024 + self.below(64 * 1024),
            }
        } else {
            self.below(4)
        };
        let fill = self.next() as u8;
        let mut value = vec![fill; usize::try_from(len).unwrap()];
        for byte in value.iter_mut().take(8) {
            *byte = self.next() as u8;
        }
        value
    }

    fn bound(&mut self) -> Bound<Vec<u8>> {
        match self.below(3) {
            0 => Bound::Included(self.key()),
            1 => Bound::Excluded(self.key()),
            _ => Bound::Unbounded,
        }
    }
}

fn visible(versions: &[(u64, Option<Vec<u8>>)], view: u64) -> Option<(Option<Vec<u8>>, u64)> {
    versions
        .iter()
        .rev()
        .find(|(lsn, _)| *lsn <= view)
        .map(|(lsn, v)| (v.clone(), *lsn))
}

fn within(key: &[u8], lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    let above = match lower {
        Bound::Included(l) => key >= l.as_slice(),
        Bound::Excluded(l) => key > l.as_slice(),
        Bound::Unbounded => true,
    };
    let below = match upper {
        Bound::Included(u) => key <= u.as_slice(),
        Bound::Excluded(u) => key < u.as_slice(),
        Bound::Unbounded => true,
    };
    above && below
}

fn model_range(
    model: &Model,
    lower: &Bound<Vec<u8>>,
    upper: &Bound<Vec<u8>>,
    view: u64,
) -> Vec<Row> {
    model
        .iter()
        .filter(|(k, _)| within(k, lower, upper))
        .filter_map(|(k, versions)| visible(versions, view).map(|(v, lsn)| (k.clone(), v, lsn)))
        .collect()
}

fn row(e: MemtableEntry<'_>) -> Row {
    (
        e.user_key().to_vec(),
        e.value().map(<[u8]>::to_vec),
        e.lsn(),
    )
}

fn apply_random_batch(rng: &mut Rng, mt: &Memtable, model: &mut Model, lsn: u64) {
    let n = rng.below(6) as usize;
    let mut batch = Vec::with_capacity(n);
    for _ in 0..n {
        // Reuse an earlier key of the batch half the time, so last-write-wins is exercised.
        let key = if !batch.is_empty() && rng.below(2) == 0 {
            let i = rng.below(batch.len() as u64) as usize;
            let (k, _): &(Vec<u8>, Option<Vec<u8>>) = &batch[i];
            k.clone()
        } else {
            rng.key()
        };
        let value = (rng.below(4) != 0).then(|| rng.value());
        batch.push((key, value));
    }
    apply_both(mt, model, lsn, batch);
}

/// Applies `batch` at `lsn` to the memtable and to the model, where the batch's last write
/// to a key wins.
fn apply_both(mt: &Memtable, model: &mut Model, lsn: u64, batch: Vec<(Vec<u8>, Option<Vec<u8>>)>) {
    mt.apply(lsn, &batch);
    let mut last: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    for (k, v) in batch {
        last.insert(k, v);
    }
    for (k, v) in last {
        model.entry(k).or_default().push((lsn, v));
    }
}

fn check_reads(rng: &mut Rng, mt: &Memtable, model: &Model, max_lsn: u64, seed: u64) {
    let view = rng.below(max_lsn + 3);
    let key = rng.key();
    let got = mt
        .get(&key, view)
        .map(|e| (e.value().map(<[u8]>::to_vec), e.lsn()));
    let expected = model.get(&key).and_then(|versions| visible(versions, view));
    assert_eq!(got, expected, "seed {seed}: get {key:?} at view {view}");

    let (lower, upper) = (rng.bound(), rng.bound());
    let expected = model_range(model, &lower, &upper, view);
    let bounds = (
        lower.as_ref().map(Vec::as_slice),
        upper.as_ref().map(Vec::as_slice),
    );
    let forward: Vec<Row> = mt.range(bounds, view).map(row).collect();
    assert_eq!(
        forward, expected,
        "seed {seed}: range {bounds:?} at view {view}"
    );
    let backward: Vec<Row> = mt.range_rev(bounds, view).map(row).collect();
    let mut reversed = expected;
    reversed.reverse();
    assert_eq!(
        backward, reversed,
        "seed {seed}: range_rev {bounds:?} at view {view}"
    );
}

fn run_seed(seed: u64) {
    let mut rng = Rng(seed);
    let mt = Memtable::new();
    let mut model = Model::new();
    let mut lsn = rng.below(3);
    let mut max_lsn = None;
    for _ in 0..150 {
        if rng.below(3) == 0 {
            apply_random_batch(&mut rng, &mt, &mut model, lsn);
            max_lsn = Some(lsn);
            lsn += 1 + rng.below(3);
            mt.check_invariants();
        } else {
            check_reads(&mut rng, &mt, &model, max_lsn.unwrap_or(0), seed);
        }
    }
    let versions: usize = model.values().map(Vec::len).sum();
    assert_eq!(mt.len(), versions, "seed {seed}: version count");
    assert_eq!(mt.max_lsn(), max_lsn, "seed {seed}: max_lsn");
    // Old views stay answerable: a full scan at every LSN ever applied matches the model.
    for view in 0..=max_lsn.unwrap_or(0) {
        let all: Vec<Row> = mt
            .range::<(Bound<&[u8]>, Bound<&[u8]>)>((Bound::Unbounded, Bound::Unbounded), view)
            .map(row)
            .collect();
        let expected = model_range(&model, &Bound::Unbounded, &Bound::Unbounded, view);
        assert_eq!(all, expected, "seed {seed}: full scan at view {view}");
    }
}

#[test]
fn memtable_matches_model_over_many_seeds() {
    let seeds: u64 = std::env::var("MEMTABLE_SEEDS").map_or(300, |s| s.parse().unwrap());
    for seed in 0..seeds {
        run_seed(seed);
    }
}

#[test]
fn memtable_range_bounds_on_a_fixed_table() {
    use Bound::{Excluded as Ex, Included as In, Unbounded as Un};
    let mt = Memtable::new();
    mt.apply(
        1,
        &[
            (&b""[..], Some(&b""[..])),
            (b"a", Some(b"1")),
            (b"b", Some(b"2")),
        ],
    );
    mt.apply(2, &[(&b"a"[..], None::<&[u8]>)]);
    let a: &[u8] = b"a";
    let b: &[u8] = b"b";
    let keys = |it: &mut dyn Iterator<Item = MemtableEntry<'_>>| -> Vec<Vec<u8>> {
        it.map(|e| e.user_key().to_vec()).collect()
    };
    assert_eq!(keys(&mut mt.range((In(a), Ex(b)), 2)), vec![a.to_vec()]);
    assert_eq!(
        keys(&mut mt.range((In(a), In(b)), 2)),
        vec![a.to_vec(), b.to_vec()]
    );
    assert_eq!(keys(&mut mt.range((Ex(a), Un), 2)), vec![b.to_vec()]);
    assert_eq!(
        keys(&mut mt.range_rev((Un, Ex(b)), 2)),
        vec![a.to_vec(), Vec::new()]
    );
    assert!(
        keys(&mut mt.range((In(b), In(a)), 2)).is_empty(),
        "inverted bounds are empty"
    );
    assert!(keys(&mut mt.range_rev((Ex(a), Ex(a)), 2)).is_empty());
    assert!(
        keys(&mut mt.range(.., 0)).is_empty(),
        "nothing at or below view 0"
    );
    let versions =
        |it: &mut dyn Iterator<Item = MemtableEntry<'_>>| -> Vec<(Option<Vec<u8>>, u64)> {
            it.map(|e| (e.value().map(<[u8]>::to_vec), e.lsn()))
                .collect()
        };
    assert_eq!(
        versions(&mut mt.range((In(a), In(a)), 2)),
        vec![(None, 2)],
        "tombstone, flagged"
    );
    assert_eq!(
        versions(&mut mt.range_rev((In(a), In(a)), 1)),
        vec![(Some(b"1".to_vec()), 1)]
    );
}

/// A wider draw than [`Draw::key`]: enough distinct keys for tall towers.
fn wide_key(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(10) as usize;
    (0..len).map(|_| b'a' + rng.below(16) as u8).collect()
}

/// Larger tables: thousands of versions, batches past the small-batch dedup path (up to 40
/// writes, repeats included), values now and then larger than an arena block's share, and
/// reads at many LSNs in between.
fn run_wide_seed(seed: u64) {
    let mut rng = Rng(seed);
    let mt = Memtable::new();
    let mut model = Model::new();
    let mut lsn = 1;
    for round in 0..400 {
        let n = rng.below(41) as usize;
        let mut batch: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(n);
        for _ in 0..n {
            let key = if !batch.is_empty() && rng.below(4) == 0 {
                batch[rng.below(batch.len() as u64) as usize].0.clone()
            } else {
                wide_key(&mut rng)
            };
            let value = match rng.below(200) {
                0 => Some(vec![rng.next() as u8; 300 * 1024]),
                1..=40 => None,
                _ => Some(rng.value()),
            };
            batch.push((key, value));
        }
        apply_both(&mt, &mut model, lsn, batch);
        lsn += 1 + rng.below(2);
        if round % 40 == 0 {
            mt.check_invariants();
        }
        for _ in 0..4 {
            let view = rng.below(lsn + 1);
            let key = wide_key(&mut rng);
            let got = mt
                .get(&key, view)
                .map(|e| (e.value().map(<[u8]>::to_vec), e.lsn()));
            let expected = model.get(&key).and_then(|versions| visible(versions, view));
            assert_eq!(got, expected, "seed {seed}: get {key:?} at view {view}");
        }
        let view = rng.below(lsn + 1);
        let (lower, upper) = (
            Bound::Included(wide_key(&mut rng)),
            match rng.below(3) {
                0 => Bound::Excluded(wide_key(&mut rng)),
                1 => Bound::Included(wide_key(&mut rng)),
                _ => Bound::Unbounded,
            },
        );
        let expected = model_range(&model, &lower, &upper, view);
        let bounds = (
            lower.as_ref().map(Vec::as_slice),
            upper.as_ref().map(Vec::as_slice),
        );
        let forward: Vec<Row> = mt.range(bounds, view).map(row).collect();
        assert_eq!(forward, expected, "seed {seed}: range {bounds:?} at {view}");
        let mut backward: Vec<Row> = mt.range_rev(bounds, view).map(row).collect();
        backward.reverse();
        assert_eq!(
            backward, expected,
            "seed {seed}: range_rev {bounds:?} at {view}"
        );
    }
    mt.check_invariants();
    let versions: usize = model.values().map(Vec::len).sum();
    assert_eq!(mt.len(), versions, "seed {seed}: version count");
}

#[test]
fn memtable_matches_model_on_wide_tables() {
    let seeds: u64 = std::env::var("MEMTABLE_WIDE_SEEDS").map_or(6, |s| s.parse().unwrap());
    for seed in 0..seeds {
        run_wide_seed(seed);
    }
}
