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

/// A permutation of `0..n`: every key once, in a scattered order (1,000,003 is a prime, so
/// coprime to any `n` below it and to the usual powers of ten above).
pub fn permute(i: u64, n: u64) -> u64 {
    (u128::from(i % n) * 1_000_003 % u128::from(n)) as u64
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
    let mut x = i;
    while v.len() < size {
        x = mix(x);
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(size);
    v
}
