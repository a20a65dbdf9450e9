//! db_bench's key and value shapes, shared by the engine runs (`lsm`, `btree`) so that both
//! load the same keys in the same orders: 16-byte zero-padded decimal keys, incompressible
//! values derived from the key's index, and a fixed scattered permutation for the random
//! orders.

/// splitmix64: a bijection on u64, so distinct indexes give distinct keys.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A permutation of `0..n`: every key once, in a pseudo-random order. A four-round Feistel
/// network over the smallest even number of bits that holds `n` is a bijection on that
/// power of two; walking its cycle until the result falls below `n` keeps it one on `0..n`
/// (fewer than four steps on average, since the power of two is below `4n`).
/// (Multiplying by a fixed prime modulo `n` would be simpler, but a prime just above a
/// power of ten is a small number modulo the usual `n`: a stride, not a scatter.)
pub fn permute(i: u64, n: u64) -> u64 {
    assert!(n > 0, "a permutation of nothing");
    let bits = (u64::BITS - (n - 1).leading_zeros())
        .max(2)
        .next_multiple_of(2);
    let mut x = i % n;
    // Bounded: the cycle through `x` is at most 2^bits long and holds `i % n` itself.
    for _ in 0..=(1u64 << bits) {
        x = feistel(x, bits);
        if x < n {
            return x;
        }
    }
    unreachable!("a cycle of a bijection returns to its start, which is below n")
}

/// A bijection on `0..2^bits` (`bits` even, at most 64): four Feistel rounds with
/// splitmix64 as the round function.
fn feistel(x: u64, bits: u32) -> u64 {
    let half = bits / 2;
    let mask = (1u64 << half) - 1;
    let (mut left, mut right) = (x >> half, x & mask);
    for round in 0..4u64 {
        let next = left ^ (mix(right ^ (round << 32)) & mask);
        left = right;
        right = next;
    }
    (left << half) | right
}

/// Key `i` (16 bytes, db_bench style: a zero-padded decimal).
pub fn key(i: u64) -> [u8; 16] {
    let mut out = [b'0'; 16];
    let digits = i.to_string();
    out[16 - digits.len()..].copy_from_slice(digits.as_bytes());
    out
}

/// The value of key `i`: `size` bytes of splitmix64 output (incompressible).
pub fn value(i: u64, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size + 8);
    value_into(i, size, &mut v);
    v
}

/// [`value`] written over `out`, which keeps its allocation.
pub fn value_into(i: u64, size: usize, out: &mut Vec<u8>) {
    out.clear();
    let mut x = i;
    while out.len() < size {
        x = mix(x);
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(size);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_is_a_scattered_bijection() {
        for n in [1, 2, 3, 7, 1000, 20_000, 100_003] {
            let mut seen = vec![false; n as usize];
            for i in 0..n {
                let p = permute(i, n);
                assert!(!seen[p as usize], "{p} twice for n = {n}");
                seen[p as usize] = true;
            }
        }
        let n = 1_000_000;
        let strides: Vec<u64> = (0..5)
            .map(|i| permute(i + 1, n).abs_diff(permute(i, n)))
            .collect();
        assert!(
            strides.iter().all(|&d| d > 1000),
            "consecutive picks too close: {strides:?}"
        );
    }
}
