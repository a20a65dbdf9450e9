//! The simulator's only source of randomness: SplitMix64 seeded by the test, so that one seed
//! and one sequence of operations replay the same crash and fault outcomes exactly.
//!
//! SplitMix64 is tiny, has no bad seeds (zero is fine) and passes BigCrush; we need
//! reproducibility and rough uniformity, not cryptographic strength, so a dependency would
//! buy nothing.

/// A seeded SplitMix64 generator.
#[derive(Clone, Debug)]
pub(super) struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose whole output is fixed by `seed`.
    pub(super) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub(super) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..bound`, by multiply-shift (Lemire) rather than modulo, so small bounds
    /// take the well-mixed high bits.
    pub(super) fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "random value below 0 requested");
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// An index in `0..len`.
    pub(super) fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// A fair coin.
    pub(super) fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn rng_same_seed_same_stream() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Rng::new(7).next_u64(), Rng::new(8).next_u64());
    }

    #[test]
    fn rng_below_stays_in_bounds_and_covers_them() {
        let mut rng = Rng::new(1);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let v = rng.below(5);
            assert!(v < 5, "{v} out of bounds");
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|s| *s), "not every value seen: {seen:?}");
    }
}
