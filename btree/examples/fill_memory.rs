//! Where a random fill's memory goes: fills a tree as `popdb-bench compare`'s fillrandom
//! does (16-byte decimal keys in a pseudo-random order, 100-byte values, one apply per
//! 1,000 keys, a checkpoint every 100,000 and at the end) and prints, after each
//! checkpoint, the tree's dirty and spare pages beside the process's resident memory
//! (anonymous and file-backed, from /proc/self/status, Linux only). It runs on the system
//! allocator; popdb-bench's mimalloc peaked within 1% of it on a 1M fill.
//!
//! `cargo run --release -p popdb-btree --example fill_memory -- [KEYS] [DIR] [ROOTS_RETAINED]`

use std::path::PathBuf;

use popdb_btree::{ROOTS_RETAINED_DEFAULT, Tree, TreeOptions};

const VALUE_SIZE: usize = 100;
const BATCH_KEYS: u64 = 1_000;
const CHECKPOINT_KEYS: u64 = 100_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let keys: u64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let dir = args.next().map_or_else(
        || std::env::temp_dir().join("popdb-fill-memory"),
        PathBuf::from,
    );
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let roots_retained: usize = args
        .next()
        .map_or(Ok(ROOTS_RETAINED_DEFAULT), |a| a.parse())?;
    let fs: popdb_io::FsRef = std::sync::Arc::new(popdb_io::RealFs::new());
    let options = TreeOptions {
        roots_retained,
        ..TreeOptions::default()
    };
    let tree = Tree::open(fs, &dir, options)?;
    let mut lsn = 0;
    let mut batch: Vec<([u8; 16], Vec<u8>)> = Vec::new();
    let mut since = 0;
    let show = |label: &str, tree: &Tree| {
        let stats = tree.stats();
        println!(
            "{label:>10} dirty {:>6} spare {:>6} file {:>7} pages | {}",
            stats.dirty_pages,
            stats.spare_pages,
            stats.file_pages,
            memory()
        );
    };
    for i in 0..keys {
        let n = permute(i, keys);
        batch.push((key(n), value(n)));
        if batch.len() as u64 == BATCH_KEYS || i + 1 == keys {
            let writes: Vec<(&[u8], Option<&[u8]>)> = batch
                .iter()
                .map(|(k, v)| (k.as_slice(), Some(v.as_slice())))
                .collect();
            lsn += 1;
            tree.apply(lsn, &writes)?;
            since += batch.len() as u64;
            batch.clear();
            if since >= CHECKPOINT_KEYS {
                show("before", &tree);
                tree.checkpoint(lsn)?;
                show(&format!("{}k", (i + 1) / 1000), &tree);
                since = 0;
            }
        }
    }
    tree.checkpoint(lsn)?;
    show("end", &tree);
    drop(tree);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Resident memory from /proc/self/status.
fn memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024)
    };
    format!(
        "anon {:>4} MiB file {:>4} MiB peak {:>4} MiB",
        field("RssAnon:"),
        field("RssFile:"),
        field("VmHWM:")
    )
}

fn key(i: u64) -> [u8; 16] {
    let mut out = [b'0'; 16];
    let digits = i.to_string();
    out[16 - digits.len()..].copy_from_slice(digits.as_bytes());
    out
}

fn value(i: u64) -> Vec<u8> {
    (0..VALUE_SIZE as u64)
        .map(|j| (mix(i ^ j) % 251) as u8)
        .collect()
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A bijection of `0..n` (a Feistel network over the next even power of two, cycle-walked).
fn permute(i: u64, n: u64) -> u64 {
    let bits = (u64::BITS - (n - 1).leading_zeros())
        .max(2)
        .next_multiple_of(2);
    let half = bits / 2;
    let mask = (1u64 << half) - 1;
    let mut x = i % n;
    loop {
        let (mut left, mut right) = (x >> half, x & mask);
        for round in 0..4u64 {
            let next = left ^ (mix(right ^ (round << 32)) & mask);
            left = right;
            right = next;
        }
        x = (left << half) | right;
        if x < n {
            return x;
        }
    }
}
