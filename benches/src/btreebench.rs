//! `popdb-bench btree`: the B+tree engine alone on db_bench's workloads (fillseq,
//! fillrandom, overwrite, readrandom, readmissing, seekrandom), with db_bench's shapes:
//! 16-byte keys, 100-byte incompressible values, on the real file system, no log.
//!
//! Writes go in as the notes ran redb and LMDB (../shared/notes/peers-measured.md): one
//! apply per 1,000 keys, a checkpoint (the tree's commit: page writes, a sync, the meta, a
//! sync) every 100,000 keys and one at the end, all inside the timed region. Reads run
//! after the last checkpoint and a reopen, so they go through the read-only map of the file
//! with every node on disk, as the peers' reads ran after close, reopen and settle (all data
//! in the page cache). One untimed full scan (whose time is reported) settles the cache and
//! maps every page before the timed reads.
//!
//! This measures PopDB's engine only. The peers' figures it prints beside each workload
//! come from the notes, measured in another run: they show the scale, not a same-run
//! comparison (that is the workload driver's job).

use std::hint::black_box;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use popdb_btree::{Direction, PageSize, ROOTS_RETAINED_DEFAULT, Tree, TreeOptions};
use popdb_io::{FsRef, RealFs};

use crate::keys::{key, mix, permute, value};
use crate::scratch::Scratch;

/// Options of one `btree` run.
#[derive(Debug, Clone)]
pub struct BtreeBenchOptions {
    pub keys: u64,
    pub value_size: usize,
    pub reads: u64,
    pub seeks: u64,
    /// Keys per apply (the peers' keys per transaction).
    pub batch_keys: u64,
    /// Keys between checkpoints.
    pub checkpoint_keys: u64,
    pub dir: std::path::PathBuf,
}

/// A peer's figure from the notes, in operations per second.
type Peer = (&'static str, f64);

/// The notes' medians (1,000,000 keys; another run, another day) for each workload, and
/// the target set for this engine where there is one.
fn notes(workload: &str) -> (&'static [Peer], Option<(f64, &'static str)>) {
    match workload {
        "fillseq" => (
            &[
                ("RocksDB", 567e3),
                ("fjall", 723e3),
                ("redb", 1.00e6),
                ("LMDB", 2.92e6),
            ],
            None,
        ),
        "fillrandom" => (
            &[
                ("RocksDB", 304e3),
                ("fjall", 346e3),
                ("redb", 136e3),
                ("LMDB", 287e3),
            ],
            Some((204e3, "1.5x redb")),
        ),
        "overwrite" => (
            &[
                ("RocksDB", 305e3),
                ("fjall", 278e3),
                ("redb", 102e3),
                ("LMDB", 212e3),
            ],
            None,
        ),
        "readrandom" => (
            &[
                ("RocksDB", 309e3),
                ("fjall", 236e3),
                ("redb", 724e3),
                ("LMDB", 950e3),
            ],
            Some((950e3, "LMDB")),
        ),
        "readmissing" => (
            &[
                ("RocksDB", 1.66e6),
                ("fjall", 468e3),
                ("redb", 799e3),
                ("LMDB", 921e3),
            ],
            None,
        ),
        "seekrandom" => (
            &[
                ("RocksDB", 31e3),
                ("fjall", 23e3),
                ("redb", 111e3),
                ("LMDB", 182e3),
            ],
            Some((182e3, "LMDB")),
        ),
        _ => (&[], None),
    }
}

/// Runs every workload; prints a few lines each.
pub fn run(options: BtreeBenchOptions) -> Result<()> {
    ensure!(options.keys > 0, "--keys must be at least 1");
    ensure!(
        options.batch_keys > 0 && options.checkpoint_keys > 0,
        "batch and checkpoint intervals must be at least 1"
    );
    let real = RealFs::new();
    let name = format!("btree-{}", std::process::id());
    let scratch = Scratch::create(&real, &options.dir, &name)?;
    let fs: FsRef = Arc::new(real);
    println!(
        "btree: {} keys, {}-byte keys, {}-byte values, {} keys per apply, a checkpoint every {} keys and at the end, 4 KiB pages, {}",
        options.keys,
        16,
        options.value_size,
        options.batch_keys,
        options.checkpoint_keys,
        scratch.root().display(),
    );
    let bench = Bench { fs, options };
    let n = bench.options.keys;
    bench.fill(&scratch.root().join("fillseq"), "fillseq", |i| i)?;
    let dir = scratch.root().join("fillrandom");
    let lsn = bench.fill(&dir, "fillrandom", |i| permute(i, n))?;
    let lsn = bench.overwrite(&dir, lsn)?;
    bench.reads(&dir, lsn)?;
    Ok(())
}

struct Bench {
    fs: FsRef,
    options: BtreeBenchOptions,
}

/// What one write workload did.
struct Load {
    seconds: f64,
    checkpoint_seconds: f64,
    last_lsn: u64,
}

impl Bench {
    fn open(&self, dir: &Path) -> Result<Tree> {
        // Every option explicit, so that a change of defaults cannot move the figures.
        let options = TreeOptions {
            page_size: PageSize::DEFAULT,
            roots_retained: ROOTS_RETAINED_DEFAULT,
        };
        Tree::open(self.fs.clone(), dir, options).context("open tree")
    }

    /// Puts every key once in the order `pick` gives; returns the last LSN.
    fn fill(&self, dir: &Path, name: &str, pick: impl Fn(u64) -> u64) -> Result<u64> {
        let tree = self.open(dir)?;
        let load = self.load(&tree, 0, |i| {
            let k = pick(i);
            (k, k)
        })?;
        self.report_write(name, &tree, &load)?;
        Ok(load.last_lsn)
    }

    /// Writes every key again (in another scattered order, with new values) over the tree
    /// `fillrandom` left, reopened; returns the last LSN.
    fn overwrite(&self, dir: &Path, lsn: u64) -> Result<u64> {
        let tree = self.open(dir)?;
        ensure!(
            tree.watermark() == Some(lsn),
            "the tree reopened at {:?}, not at its last checkpoint {lsn}",
            tree.watermark()
        );
        let n = self.options.keys;
        let load = self.load(&tree, lsn, |i| {
            let k = permute(i + n / 3, n);
            (k, k + 1)
        })?;
        self.report_write("overwrite", &tree, &load)?;
        Ok(load.last_lsn)
    }

    /// Applies `keys` writes, `pick(i)` giving write `i`'s key index and value seed, in
    /// batches of `batch_keys` at LSNs from `lsn + 1`, checkpointing every
    /// `checkpoint_keys` and at the end.
    fn load(&self, tree: &Tree, mut lsn: u64, pick: impl Fn(u64) -> (u64, u64)) -> Result<Load> {
        let n = self.options.keys;
        let batch_keys = self.options.batch_keys;
        let mut batch: Vec<([u8; 16], Option<Vec<u8>>)> = Vec::with_capacity(batch_keys as usize);
        let mut next_checkpoint = self.options.checkpoint_keys;
        let mut checkpoint_time = Duration::ZERO;
        let start = Instant::now();
        let mut done = 0;
        while done < n {
            let end = n.min(done + batch_keys);
            batch.clear();
            for i in done..end {
                let (k, v) = pick(i);
                batch.push((key(k), Some(value(v, self.options.value_size))));
            }
            lsn += 1;
            tree.apply(lsn, &batch)?;
            done = end;
            if done >= next_checkpoint || done == n {
                let started = Instant::now();
                tree.checkpoint(lsn)?;
                checkpoint_time += started.elapsed();
                while next_checkpoint <= done {
                    next_checkpoint += self.options.checkpoint_keys;
                }
            }
        }
        Ok(Load {
            seconds: start.elapsed().as_secs_f64(),
            checkpoint_seconds: checkpoint_time.as_secs_f64(),
            last_lsn: lsn,
        })
    }

    fn raw_bytes(&self) -> u64 {
        self.options.keys * (16 + self.options.value_size as u64)
    }

    fn report_write(&self, name: &str, tree: &Tree, load: &Load) -> Result<()> {
        let n = self.options.keys;
        let stats = tree.stats();
        let walk = tree.read_view().stats()?;
        ensure!(
            walk.entry_count == n,
            "{name}: the tree holds {} entries, not {n}",
            walk.entry_count
        );
        let page_bytes = stats.page_size.bytes() as u64;
        let raw = self.raw_bytes() as f64;
        println!(
            "{name:<12} {:>10.0} ops/s  ({n} ops in {:.2} s, {} checkpoints took {:.2} s and wrote {:.1} MiB = {:.2}x raw)",
            n as f64 / load.seconds,
            load.seconds,
            stats.checkpoints,
            load.checkpoint_seconds,
            stats.checkpoint_bytes as f64 / f64::from(1 << 20),
            stats.checkpoint_bytes as f64 / raw,
        );
        println!(
            "{:<12} disk/raw {:.3} ({:.1} MiB file, {} of {} pages free)  depth {}  leaves {}  fill {:.2}",
            "",
            (stats.file_pages * page_bytes) as f64 / raw,
            (stats.file_pages * page_bytes) as f64 / f64::from(1 << 20),
            stats.free_pages,
            stats.file_pages,
            stats.depth,
            walk.leaf_count,
            walk.fill_factor(),
        );
        print_notes(name);
        Ok(())
    }

    fn report_read(name: &str, ops: u64, seconds: f64) {
        println!(
            "{name:<12} {:>10.0} ops/s  ({ops} ops in {seconds:.2} s)",
            ops as f64 / seconds
        );
        print_notes(name);
    }

    fn reads(&self, dir: &Path, lsn: u64) -> Result<()> {
        let started = Instant::now();
        let tree = self.open(dir)?;
        let reopen = started.elapsed();
        ensure!(
            tree.watermark() == Some(lsn),
            "the tree reopened at {:?}, not at its last checkpoint {lsn}",
            tree.watermark()
        );
        println!(
            "reopen       {:.3} ms (notes: redb and LMDB <= 1 ms, RocksDB 160 ms)",
            reopen.as_secs_f64() * 1e3
        );
        let view = tree.read_view();
        self.settle(&view)?;
        self.check_values(&view)?;
        let n = self.options.keys;
        let reads = self.options.reads;
        let mut value = Vec::new();
        let start = Instant::now();
        let mut found = 0u64;
        for i in 0..reads {
            let k = mix(i ^ 0xabcd) % n;
            found += u64::from(view.get_into(&key(k), &mut value)?.is_some());
        }
        let elapsed = start.elapsed().as_secs_f64();
        ensure!(found == reads, "readrandom found {found} of {reads}");
        Self::report_read("readrandom", reads, elapsed);

        let start = Instant::now();
        let mut found = 0u64;
        for i in 0..reads {
            let mut k = key(mix(i ^ 0x1234) % n);
            k[15] = b'x';
            found += u64::from(view.get_into(&k, &mut value)?.is_some());
        }
        let elapsed = start.elapsed().as_secs_f64();
        ensure!(found == 0, "readmissing found {found}");
        Self::report_read("readmissing", reads, elapsed);

        let seeks = self.options.seeks;
        let start = Instant::now();
        let mut rows = 0u64;
        for i in 0..seeks {
            let k = key(mix(i ^ 0x7777) % n);
            let bounds = (Bound::Included(k.to_vec()), Bound::Unbounded);
            let mut it = view.scan(bounds, Direction::Forward)?;
            for _ in 0..100 {
                if !it.valid() {
                    break;
                }
                black_box((it.key(), it.value()));
                rows += 1;
                it.next()?;
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        ensure!(
            rows > seeks * 50,
            "seekrandom read only {rows} rows in {seeks} scans"
        );
        Self::report_read("seekrandom", seeks, elapsed);
        Ok(())
    }

    /// Reads every entry once, untimed but reported: the peers' reads ran with all data
    /// cached, and the first read of each page through a new map faults it in and verifies
    /// it.
    fn settle(&self, view: &popdb_btree::ReadView) -> Result<()> {
        let start = Instant::now();
        let all = (Bound::Unbounded, Bound::Unbounded);
        let mut it = view.scan(all, Direction::Forward)?;
        let mut rows = 0u64;
        while it.valid() {
            black_box((it.key(), it.value()));
            rows += 1;
            it.next()?;
        }
        let elapsed = start.elapsed().as_secs_f64();
        ensure!(
            rows == self.options.keys,
            "a full scan read {rows} rows, not {}",
            self.options.keys
        );
        println!(
            "settle       full scan of {rows} entries after the reopen in {elapsed:.2} s ({:.0} entries/s)",
            rows as f64 / elapsed
        );
        Ok(())
    }

    /// Checks a sample of values (outside the timed loops): after `overwrite`, key `k`
    /// holds `value(k + 1)`.
    fn check_values(&self, view: &popdb_btree::ReadView) -> Result<()> {
        let n = self.options.keys;
        for i in 0..n.min(1000) {
            let k = mix(i ^ 0x5a5a) % n;
            let got = view.get(&key(k))?.context("a loaded key is missing")?;
            ensure!(
                got.value == value(k + 1, self.options.value_size),
                "key {k} holds the wrong value"
            );
        }
        Ok(())
    }
}

/// Prints the notes' figures for `workload`, labelled as from another run.
fn print_notes(workload: &str) {
    let (peers, target) = notes(workload);
    if peers.is_empty() {
        return;
    }
    let figures: Vec<String> = peers
        .iter()
        .map(|(engine, ops)| format!("{engine} {}", si(*ops)))
        .collect();
    let target = target.map_or(String::new(), |(ops, why)| {
        format!("; target >= {} ({why})", si(ops))
    });
    println!(
        "{:<12} notes, not same run: {}{target}",
        "",
        figures.join("  ")
    );
}

/// `ops` with a K or M suffix, as the notes write them.
fn si(ops: f64) -> String {
    if ops >= 1e6 {
        format!("{:.2}M", ops / 1e6)
    } else {
        format!("{:.0}K", ops / 1e3)
    }
}
