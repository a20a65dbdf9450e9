//! The bloom filter of an SST: built from the user keys of its entries (point reads probe by
//! user key, whatever the LSN), answers "definitely absent" or "maybe present". Spec:
//! docs/format/sstable.md ("Bloom filter").
//!
//! Encoding: the bit array (`m = 8 * len` bits; bit `j` is bit `j % 8`, least significant
//! first, of byte `j / 8`), then `k` as one byte. Probe positions come from one 64-bit hash
//! by double hashing: `h = XXH3-64(user_key, seed 0)`, `delta = h.rotate_right(33)`,
//! position `i` (for `i` in `0..k`) is `(h + i * delta) mod m` with wrapping `u64`
//! arithmetic. The hash is pinned: these bytes outlive the process, so changing it is a
//! format change.
//!
//! Invariants: `1 <= k <= 30` and the bit array is at least one byte; the builder asserts
//! both and the decoder validates both. No false negatives: every added key's `k` bits are
//! set. The filter carries no checksum of its own; the enclosing SST block's crc32 covers it.

use crate::error::{CorruptionKind, Error, Result};

/// Filter bits per key unless configured otherwise (about 1% false positives).
pub const BITS_PER_KEY_DEFAULT: usize = 10;
/// The fewest probes a filter may use.
pub const PROBES_MIN: u8 = 1;
/// The most probes a filter may use.
pub const PROBES_MAX: u8 = 30;
/// The smallest bit array the builder writes, in bits (so that tiny filters stay useful).
const BITS_MIN: usize = 64;

/// Collects user-key hashes and encodes the filter with [`BloomBuilder::finish`].
#[derive(Clone, Debug)]
pub struct BloomBuilder {
    bits_per_key: usize,
    hashes: Vec<u64>,
}

impl Default for BloomBuilder {
    fn default() -> Self {
        Self::new(BITS_PER_KEY_DEFAULT)
    }
}

impl BloomBuilder {
    /// A builder spending `bits_per_key` filter bits per key added.
    ///
    /// # Panics
    /// If `bits_per_key` is 0.
    pub fn new(bits_per_key: usize) -> Self {
        assert!(
            bits_per_key >= 1,
            "a bloom filter needs at least one bit per key"
        );
        Self {
            bits_per_key,
            hashes: Vec::new(),
        }
    }

    /// Adds a user key (not an internal key). Adding a key twice is harmless.
    pub fn add_key(&mut self, user_key: &[u8]) {
        self.hashes.push(hash(user_key));
    }

    /// The number of probes a filter with this many bits per key uses:
    /// `round(bits_per_key * ln 2)` clamped to `1..=30`.
    pub fn probes(bits_per_key: usize) -> u8 {
        let k = (bits_per_key as f64 * std::f64::consts::LN_2).round();
        k.clamp(f64::from(PROBES_MIN), f64::from(PROBES_MAX)) as u8
    }

    /// Encodes the filter: bit array, then `k`.
    pub fn finish(&self) -> Vec<u8> {
        let k = Self::probes(self.bits_per_key);
        let bits = self
            .hashes
            .len()
            .saturating_mul(self.bits_per_key)
            .max(BITS_MIN);
        let bytes = bits.div_ceil(8);
        let mut out = vec![0u8; bytes + 1];
        let m = (bytes * 8) as u64;
        for &h in &self.hashes {
            for bit in probe_positions(h, k, m) {
                out[(bit / 8) as usize] |= 1 << (bit % 8);
            }
        }
        assert!(
            (PROBES_MIN..=PROBES_MAX).contains(&k),
            "probes {k} out of range"
        );
        out[bytes] = k;
        out
    }
}

/// A decoded filter, borrowing its bytes.
#[derive(Clone, Copy, Debug)]
pub struct BloomFilter<'a> {
    bits: &'a [u8],
    probes: u8,
}

impl<'a> BloomFilter<'a> {
    /// Validates `bytes` as an encoded filter.
    pub fn decode(bytes: &'a [u8]) -> Result<Self> {
        let Some((&probes, bits)) = bytes.split_last().filter(|(_, bits)| !bits.is_empty()) else {
            return Err(Error::corruption(
                0,
                "bloom filter",
                CorruptionKind::Truncated {
                    needed: 2,
                    available: bytes.len() as u64,
                },
            ));
        };
        if !(PROBES_MIN..=PROBES_MAX).contains(&probes) {
            return Err(Error::corruption(
                bits.len(),
                "bloom filter probe count",
                CorruptionKind::InvalidValue {
                    found: probes.into(),
                },
            ));
        }
        Ok(Self { bits, probes })
    }

    /// False if `user_key` was certainly not added; true if it may have been.
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        let m = (self.bits.len() * 8) as u64;
        probe_positions(hash(user_key), self.probes, m)
            .all(|bit| self.bits[(bit / 8) as usize] & (1 << (bit % 8)) != 0)
    }

    /// The number of probes, `k`.
    pub fn probes(&self) -> u8 {
        self.probes
    }

    /// The size of the bit array in bits, `m`.
    pub fn bit_count(&self) -> usize {
        self.bits.len() * 8
    }
}

/// The pinned hash: XXH3-64 with seed 0.
fn hash(user_key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(user_key)
}

/// The `k` bit positions of hash `h` in an array of `m` bits.
fn probe_positions(h: u64, k: u8, m: u64) -> impl Iterator<Item = u64> {
    let delta = h.rotate_right(33);
    (0..u64::from(k)).map(move |i| h.wrapping_add(i.wrapping_mul(delta)) % m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn probes_follow_bits_per_key() {
        assert_eq!(BloomBuilder::probes(1), 1);
        assert_eq!(BloomBuilder::probes(10), 7);
        assert_eq!(BloomBuilder::probes(20), 14);
        assert_eq!(BloomBuilder::probes(100), 30);
    }

    #[test]
    fn hash_is_pinned() {
        // XXH3-64, seed 0: if these change, every filter on disk is wrong.
        assert_eq!(hash(b""), 0x2d06800538d394c2);
        assert_eq!(hash(b"popdb"), hash(b"popdb"));
    }

    #[test]
    fn false_positive_rate_at_10_bits_per_key() {
        let mut builder = BloomBuilder::default();
        for i in 0..10_000u32 {
            builder.add_key(format!("present-{i}").as_bytes());
        }
        let bytes = builder.finish();
        let filter = BloomFilter::decode(&bytes).unwrap();
        let absent = 100_000u32;
        let hits = (0..absent)
            .filter(|i| filter.may_contain(format!("absent-{i}").as_bytes()))
            .count();
        let rate = hits as f64 / f64::from(absent);
        println!(
            "bloom false-positive rate at 10 bits/key: {:.3}%",
            rate * 100.0
        );
        assert!((0.005..=0.02).contains(&rate), "false-positive rate {rate}");
    }

    #[test]
    fn empty_filter_says_absent() {
        let bytes = BloomBuilder::default().finish();
        assert_eq!(bytes.len(), 9);
        let filter = BloomFilter::decode(&bytes).unwrap();
        assert!(!filter.may_contain(b"x"));
    }

    #[test]
    fn corrupt_filters_are_refused() {
        let good = {
            let mut b = BloomBuilder::default();
            b.add_key(b"k");
            b.finish()
        };
        let last = good.len() - 1;
        for bad in [&[][..], &[7]] {
            let Err(Error::Corruption(c)) = BloomFilter::decode(bad) else {
                panic!("{bad:?} accepted");
            };
            assert!(matches!(c.kind, CorruptionKind::Truncated { .. }), "{c}");
        }
        for k in [0u8, 31, 255] {
            let mut bad = good.clone();
            bad[last] = k;
            let Err(Error::Corruption(c)) = BloomFilter::decode(&bad) else {
                panic!("k = {k} accepted");
            };
            assert_eq!(c.offset, last as u64);
            assert_eq!(c.kind, CorruptionKind::InvalidValue { found: k.into() });
        }
    }

    proptest! {
        #[test]
        fn no_false_negatives_and_round_trip(
            keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..24), 0..300),
            bits_per_key in 1usize..40,
        ) {
            let mut builder = BloomBuilder::new(bits_per_key);
            for key in &keys {
                builder.add_key(key);
            }
            let bytes = builder.finish();
            let filter = BloomFilter::decode(&bytes).unwrap();
            prop_assert_eq!(filter.probes(), BloomBuilder::probes(bits_per_key));
            prop_assert_eq!(filter.bit_count(), (bytes.len() - 1) * 8);
            prop_assert!(filter.bit_count() >= keys.len() * bits_per_key);
            for key in &keys {
                prop_assert!(filter.may_contain(key), "false negative for {:?}", key);
            }
            // The encoding is a pure function of the keys: decode then re-derive agrees.
            let again = BloomFilter::decode(&bytes).unwrap();
            prop_assert_eq!(again.bits, filter.bits);
        }
    }
}
