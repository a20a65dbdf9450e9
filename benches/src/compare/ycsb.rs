//! YCSB's core workloads A-F over any [`Target`], after the fillrandom load, with YCSB's
//! key choosers: the scrambled zipfian (theta 0.99, YCSB's `ScrambledZipfianGenerator`),
//! its skewed-latest for D, and uniform.
//!
//! | mix | operations | YCSB's name |
//! |---|---|---|
//! | A | 50% read, 50% update | update heavy |
//! | B | 95% read, 5% update | read mostly |
//! | C | 100% read | read only |
//! | D | 95% read, 5% insert; reads favour the newest keys | read latest |
//! | E | 95% scan of 1-100 entries (uniform), 5% insert | short ranges |
//! | F | 50% read, 50% read-modify-write | read-modify-write |
//!
//! Differences from YCSB's client, on purpose: a record is one 100-byte value, so an update
//! writes the whole value (YCSB writes one of ten fields); inserted keys continue the loaded
//! ones in order (YCSB's `insertorder=ordered`); one client thread. D's zipfian variant is
//! YCSB's skewed-latest chooser, its uniform variant uniform over all records.
//!
//! Every operation sees every write before it: a reader (snapshot, read transaction) is made
//! when a read needs one and dropped before every write, so a target that takes read
//! transactions pays for one per write-separated run of reads, as a YCSB client does.

use std::time::Instant;

use anyhow::{Result, ensure};

use super::target::{Reader, Target};
use super::workload::{Counts, Outcome, Workload};
use crate::keys::value;
use crate::measure::new_histogram;
use crate::raw::duration_ns;

/// YCSB's zipfian constant.
pub const ZIPFIAN_THETA: f64 = 0.99;
/// The scrambled zipfian draws from this many items and hashes the result into the key
/// space (YCSB's `ScrambledZipfianGenerator.ITEM_COUNT`).
const SCRAMBLED_ITEMS: u64 = 10_000_000_000;
/// zeta(10^10, 0.99), which YCSB hard-codes because summing it takes too long.
const SCRAMBLED_ZETAN: f64 = 26.469_028_201_783_02;
/// Longest scan of E (lengths uniform in 1..=this).
pub const SCAN_LENGTH_MAX: u64 = 100;
/// Bound on the redraws of a zipfian pick above the records inserted so far.
const REDRAWS_MAX: u32 = 1_000;

/// One of YCSB's core workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mix {
    A,
    B,
    C,
    D,
    E,
    F,
}

/// How keys are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyChoice {
    /// Scrambled zipfian, theta 0.99 (skewed-latest for D).
    Zipf,
    Uniform,
}

/// A YCSB workload: a mix and a key choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ycsb {
    pub mix: Mix,
    pub choice: KeyChoice,
}

const MIXES: [(Mix, &str); 6] = [
    (Mix::A, "a"),
    (Mix::B, "b"),
    (Mix::C, "c"),
    (Mix::D, "d"),
    (Mix::E, "e"),
    (Mix::F, "f"),
];

/// Operation shares in percent, in the order read, update, insert, scan, read-modify-write.
fn shares(mix: Mix) -> [u32; 5] {
    match mix {
        Mix::A => [50, 50, 0, 0, 0],
        Mix::B => [95, 5, 0, 0, 0],
        Mix::C => [100, 0, 0, 0, 0],
        Mix::D => [95, 0, 5, 0, 0],
        Mix::E => [0, 0, 5, 95, 0],
        Mix::F => [50, 0, 0, 0, 50],
    }
}

impl Ycsb {
    /// `ycsb_<a..f>_<zipf|uniform>`.
    pub fn name(self) -> String {
        let mix = MIXES
            .iter()
            .find(|(m, _)| *m == self.mix)
            .map_or("?", |(_, n)| n);
        let choice = match self.choice {
            KeyChoice::Zipf => "zipf",
            KeyChoice::Uniform => "uniform",
        };
        format!("ycsb_{mix}_{choice}")
    }

    /// `ycsb` (all twelve), `ycsb_<mix>` (both choices) or `ycsb_<mix>_<choice>`.
    pub fn parse(name: &str) -> Option<Vec<Ycsb>> {
        let rest = name.strip_prefix("ycsb")?;
        let all = MIXES.iter().flat_map(|&(mix, _)| {
            [KeyChoice::Zipf, KeyChoice::Uniform].map(|choice| Ycsb { mix, choice })
        });
        let list: Vec<Ycsb> = all
            .filter(|y| {
                rest.is_empty() || y.name() == name || y.name().starts_with(&format!("{name}_"))
            })
            .collect();
        (!list.is_empty()).then_some(list)
    }
}

/// The records of the loaded data set, grown by the inserts of D and E (which run after
/// A, B and C).
#[derive(Debug)]
pub struct Records {
    pub count: u64,
}

/// One YCSB workload of `counts.ycsb_ops` operations on the loaded `target`.
///
/// # Errors
/// The target's, or a read that did not find a record.
pub fn run(
    target: &dyn Target,
    counts: &Counts,
    ycsb: Ycsb,
    records: &mut Records,
) -> Result<Outcome> {
    let ops = counts.ycsb_ops;
    ensure!(records.count > 0, "YCSB on no records");
    let [read, update, insert, scan, _rmw] = shares(ycsb.mix);
    // YCSB sizes the zipfian for the inserts it expects (twice the expected count).
    let expected_inserts = ops * u64::from(insert) * 2 / 100;
    let mut chooser = Chooser::new(ycsb, records.count, records.count + expected_inserts);
    let mut rng = Rng(0x9c5b_0000 + 2 * ycsb.mix as u64 + ycsb.choice as u64);
    let mut reader: Option<Box<dyn Reader + '_>> = None;
    let mut got = Vec::new();
    let mut key = Vec::with_capacity(counts.shape.key_size);
    let mut latency = new_histogram();
    let begin = Instant::now();
    for _ in 0..ops {
        let dice = u32::try_from(rng.below(100)).expect("below 100");
        let op = Instant::now();
        if dice < read + update + insert + scan {
            if dice < read {
                let k = chooser.pick(&mut rng, records.count);
                let r = open_reader(target, &mut reader)?;
                counts.key_into(k, &mut key);
                ensure!(r.get(&key, &mut got)?, "record {k} is missing");
            } else if dice < read + update {
                let k = chooser.pick(&mut rng, records.count);
                reader = None;
                write_one(target, counts, k, k + 3 + rng.below(1 << 20))?;
            } else if dice < read + update + insert {
                let k = records.count;
                reader = None;
                write_one(target, counts, k, k)?;
                records.count += 1;
            } else {
                let k = chooser.pick(&mut rng, records.count);
                let length = 1 + rng.below(SCAN_LENGTH_MAX);
                let r = open_reader(target, &mut reader)?;
                counts.key_into(k, &mut key);
                let rows = r.seek_next(&key, usize::try_from(length)?)?;
                ensure!(rows > 0, "a scan from record {k} read nothing");
            }
        } else {
            // Read-modify-write: the read, then the write of a value made from it.
            let k = chooser.pick(&mut rng, records.count);
            let r = open_reader(target, &mut reader)?;
            counts.key_into(k, &mut key);
            ensure!(r.get(&key, &mut got)?, "record {k} is missing");
            let seed = got.first().map_or(0, |&b| u64::from(b));
            reader = None;
            write_one(target, counts, k, k + 5 + seed)?;
        }
        latency.saturating_record(duration_ns(op.elapsed()));
    }
    drop(reader);
    Ok(Outcome {
        name: Workload::Ycsb(ycsb).name(),
        op: Workload::Ycsb(ycsb).op(),
        ops,
        seconds: begin.elapsed().as_secs_f64(),
        finish_seconds: 0.0,
        latency,
        keys_per_latency: 1,
    })
}

/// The reader, made if there is none.
fn open_reader<'t, 'r>(
    target: &'t dyn Target,
    reader: &'r mut Option<Box<dyn Reader + 't>>,
) -> Result<&'r mut Box<dyn Reader + 't>> {
    if reader.is_none() {
        *reader = Some(target.reader()?);
    }
    Ok(reader.as_mut().expect("set just above"))
}

/// Record `k` written with the value of seed `seed`, one key in one write.
fn write_one(target: &dyn Target, counts: &Counts, k: u64, seed: u64) -> Result<()> {
    target.write(&[(counts.key(k), value(seed, counts.shape.value_size))])
}

/// A key chooser of one workload.
#[derive(Debug)]
enum Chooser {
    Uniform,
    /// YCSB's `ScrambledZipfianGenerator`: a zipfian over 10^10 items, hashed (FNV-1a)
    /// into `0..items`; a pick at or above the records inserted so far is drawn again.
    Scrambled {
        zipfian: Zipfian,
        items: u64,
    },
    /// YCSB's `SkewedLatestGenerator`: the newest record most often.
    Latest(Zipfian),
}

impl Chooser {
    /// A chooser over `records` now, sized (scrambled zipfian) for `items` in the end.
    fn new(ycsb: Ycsb, records: u64, items: u64) -> Chooser {
        match (ycsb.choice, ycsb.mix) {
            (KeyChoice::Uniform, _) => Chooser::Uniform,
            (KeyChoice::Zipf, Mix::D) => Chooser::Latest(Zipfian::new(records)),
            (KeyChoice::Zipf, _) => Chooser::Scrambled {
                zipfian: Zipfian::with_zeta(SCRAMBLED_ITEMS, SCRAMBLED_ZETAN),
                items,
            },
        }
    }

    /// A record below `records`.
    fn pick(&mut self, rng: &mut Rng, records: u64) -> u64 {
        match self {
            Chooser::Uniform => rng.below(records),
            Chooser::Latest(zipfian) => records - 1 - zipfian.next(rng, records),
            Chooser::Scrambled { zipfian, items } => {
                for _ in 0..REDRAWS_MAX {
                    let k = fnv_hash64(zipfian.next(rng, SCRAMBLED_ITEMS)) % *items;
                    if k < records {
                        return k;
                    }
                }
                // Unreachable in practice: `items` exceeds `records` by at most twice the
                // expected inserts, so a redraw succeeds with probability above a half.
                rng.below(records)
            }
        }
    }
}

/// YCSB's `ZipfianGenerator` (Gray et al., "Quickly generating billion-record synthetic
/// databases"): item 0 the most popular; zeta grown incrementally when the item count grows.
#[derive(Debug)]
struct Zipfian {
    items: u64,
    zetan: f64,
    zeta2: f64,
    alpha: f64,
    eta: f64,
}

impl Zipfian {
    fn new(items: u64) -> Zipfian {
        Zipfian::with_zeta(items, zeta(0, items, 0.0))
    }

    fn with_zeta(items: u64, zetan: f64) -> Zipfian {
        let zeta2 = zeta(0, 2, 0.0);
        let mut z = Zipfian {
            items,
            zetan,
            zeta2,
            alpha: 1.0 / (1.0 - ZIPFIAN_THETA),
            eta: 0.0,
        };
        z.eta = z.eta_for(items);
        z
    }

    fn eta_for(&self, items: u64) -> f64 {
        (1.0 - (2.0 / items as f64).powf(1.0 - ZIPFIAN_THETA)) / (1.0 - self.zeta2 / self.zetan)
    }

    /// An item below `items` (which never shrinks).
    fn next(&mut self, rng: &mut Rng, items: u64) -> u64 {
        assert!(items > 0, "a zipfian over no items");
        if items > self.items {
            self.zetan = zeta(self.items, items, self.zetan);
            self.items = items;
            self.eta = self.eta_for(items);
        }
        let u = rng.unit();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(ZIPFIAN_THETA) {
            return 1.min(items - 1);
        }
        let x = items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha);
        // The float can round to `items` itself.
        (x as u64).min(items - 1)
    }
}

/// zeta(to) given zeta(from) = `sum`: adds 1/i^theta for i in from+1..=to.
fn zeta(from: u64, to: u64, sum: f64) -> f64 {
    (from + 1..=to).fold(sum, |acc, i| acc + 1.0 / (i as f64).powf(ZIPFIAN_THETA))
}

/// YCSB's `Utils.fnvhash64`: FNV-1a over the eight bytes of `v`, low byte first, and the
/// absolute value of the result as a signed number.
fn fnv_hash64(mut v: u64) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 1_099_511_628_211;
    let mut hash = OFFSET_BASIS;
    for _ in 0..8 {
        hash ^= v & 0xff;
        hash = hash.wrapping_mul(PRIME);
        v >>= 8;
    }
    hash.cast_signed().unsigned_abs()
}

/// splitmix64, seeded per workload.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        crate::keys::mix(self.0)
    }

    /// Uniform in `[0, 1)`: the top 53 bits.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform below `n` (> 0); the modulo bias is below 2^-40 for the sizes used here.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ycsb_names_parse_back() {
        assert_eq!(Ycsb::parse("ycsb").map(|l| l.len()), Some(12));
        let a = Ycsb::parse("ycsb_a").expect("a mix");
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].name(), "ycsb_a_zipf");
        let one = Ycsb::parse("ycsb_e_uniform").expect("one workload");
        assert_eq!(
            one,
            vec![Ycsb {
                mix: Mix::E,
                choice: KeyChoice::Uniform
            }]
        );
        assert!(Ycsb::parse("ycsb_g").is_none());
    }

    #[test]
    fn zipfian_favours_low_items_and_stays_in_range() {
        let mut z = Zipfian::new(1_000);
        let mut rng = Rng(7);
        let mut counts = vec![0u32; 1_000];
        for _ in 0..100_000 {
            let i = z.next(&mut rng, 1_000);
            counts[usize::try_from(i).expect("small")] += 1;
        }
        // With theta 0.99 over 1,000 items, item 0 takes about 1/zeta(1000) = 13%.
        assert!(
            (10_000..16_000).contains(&counts[0]),
            "item 0: {}",
            counts[0]
        );
        assert!(
            counts[0] > counts[1] && counts[1] > counts[10],
            "{:?}",
            &counts[..11]
        );
    }

    #[test]
    fn scrambled_zipfian_scatters_its_hot_keys() {
        let ycsb = Ycsb {
            mix: Mix::A,
            choice: KeyChoice::Zipf,
        };
        let mut chooser = Chooser::new(ycsb, 100_000, 100_000);
        let mut rng = Rng(11);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..100_000 {
            let k = chooser.pick(&mut rng, 100_000);
            assert!(k < 100_000);
            *counts.entry(k).or_insert(0u32) += 1;
        }
        let mut hot: Vec<(u64, u32)> = counts.into_iter().collect();
        hot.sort_by_key(|&(_, c)| std::cmp::Reverse(c));
        // The hottest key takes a few percent, and the hot keys are not neighbours.
        assert!(hot[0].1 > 1_000, "hottest {:?}", hot[0]);
        assert!(hot[0].0.abs_diff(hot[1].0) > 1, "{:?}", &hot[..2]);
    }

    #[test]
    fn latest_favours_the_newest_record() {
        let ycsb = Ycsb {
            mix: Mix::D,
            choice: KeyChoice::Zipf,
        };
        let mut chooser = Chooser::new(ycsb, 1_000, 1_000);
        let mut rng = Rng(3);
        let newest = (0..10_000)
            .filter(|_| chooser.pick(&mut rng, 1_000) == 999)
            .count();
        assert!(newest > 1_000, "newest picked {newest} times in 10,000");
    }

    #[test]
    fn fnv_hash_matches_ycsb() {
        // Utils.fnvhash64 of 0 and of 12345 as YCSB's Java computes them (FNV-1a over the
        // eight bytes, low first, then Math.abs of the signed result).
        assert_eq!(fnv_hash64(0), 6_284_781_860_667_377_211);
        assert_eq!(fnv_hash64(12_345), 1_792_800_413_050_876_852);
    }
}
