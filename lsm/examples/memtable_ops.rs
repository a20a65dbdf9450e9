//! A fixed memtable workload for instruction counts (`valgrind --tool=callgrind`): the
//! server's shape, 16-byte keys (`key:` and 12 digits) with 100-byte values, each written by
//! its own apply in a scrambled order, then optionally overwritten and read.
//!
//! `cargo run --release -p popdb-lsm --example memtable_ops -- KEYS OVERWRITES GETS [MISSES]`:
//! fills KEYS keys, then overwrites OVERWRITES of them, then reads GETS of them (every read is
//! a hit), then MISSES keys that were never written (0 if not given). Run it twice with one
//! count changed to get the instructions per operation from the difference.

use popdb_lsm::{LSN_MAX, Memtable};

fn key(i: u64) -> [u8; 16] {
    let mut out = *b"key:000000000000";
    let mut rest = i;
    for digit in out[4..].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out
}

/// Visits `0..n` in a scrambled order: a multiplicative permutation by a prime (one per
/// round) that divides no key count this is run with.
fn scrambled(n: u64, round: usize) -> impl Iterator<Item = u64> + Clone {
    let prime = [1_000_003, 999_983, 1_000_033][round];
    (0..n).map(move |i| (i * prime + 1) % n)
}

fn count(args: &[String], at: usize) -> u64 {
    args.get(at)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("usage: memtable_ops KEYS OVERWRITES GETS"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (keys, overwrites, gets) = (count(&args, 1), count(&args, 2), count(&args, 3));
    let misses = if args.len() > 4 { count(&args, 4) } else { 0 };
    // The tree's default budget (64 MiB), which sizes the memtable's hash index.
    let memtable = Memtable::with_budget(64 << 20);
    let value = [7u8; 100];
    let mut lsn = 0;
    for i in scrambled(keys, 0) {
        lsn += 1;
        memtable.apply(lsn, &[(key(i), Some(value))]);
    }
    for i in scrambled(keys, 1)
        .cycle()
        .take(usize::try_from(overwrites).unwrap_or(0))
    {
        lsn += 1;
        memtable.apply(lsn, &[(key(i), Some(value))]);
    }
    let mut found = 0u64;
    for i in scrambled(keys, 2)
        .cycle()
        .take(usize::try_from(gets).unwrap_or(0))
    {
        found += u64::from(memtable.get(&key(i), LSN_MAX).is_some());
    }
    assert_eq!(found, gets, "every read names a written key");
    // Keys past the written ones: the same shape, so each miss hashes and compares as a hit
    // would, and finds no version.
    let mut missed = 0u64;
    for i in scrambled(keys, 2)
        .cycle()
        .take(usize::try_from(misses).unwrap_or(0))
    {
        missed += u64::from(memtable.get(&key(keys + i), LSN_MAX).is_none());
    }
    assert_eq!(
        missed, misses,
        "no read of an unwritten key finds a version"
    );
    println!(
        "{} versions, {} bytes",
        memtable.len(),
        memtable.approximate_bytes()
    );
}
