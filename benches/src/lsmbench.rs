//! `popdb-bench lsm`: the LSM engine alone on db_bench's workloads (fillseq, fillrandom,
//! overwrite, readrandom, readmissing, seekrandom), with db_bench's shapes: 16-byte keys,
//! 100-byte incompressible values, one put per batch, no log and no sync (an engine-level
//! run). Reads run after a checkpoint, a full drain of background work and a reopen.
//!
//! This measures PopDB's engine only; the same-run comparison against RocksDB and the other
//! peers is the workload driver's job. Figures print as ops/s plus the tree's own counters
//! (write amplification, bytes on disk over raw bytes).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use popdb_io::{FsRef, RealFs};
use popdb_lsm::{BlockCache, Direction, Progress, Scheduler, Tree, TreeOptions};

use crate::keys::{key, mix, permute, value};
use crate::scratch::Scratch;

/// Options of one `lsm` run.
#[derive(Debug, Clone)]
pub struct LsmBenchOptions {
    pub keys: u64,
    pub value_size: usize,
    pub reads: u64,
    pub seeks: u64,
    pub dir: std::path::PathBuf,
}

struct Bench {
    fs: FsRef,
    options: LsmBenchOptions,
}

/// Runs every workload; prints one line each.
pub fn run(options: LsmBenchOptions) -> Result<()> {
    let real = RealFs::new();
    let scratch = Scratch::create(&real, &options.dir, &format!("lsm-{}", std::process::id()))?;
    let fs: FsRef = Arc::new(real);
    let bench = Bench { fs, options };
    let dir = scratch.root().join("fillseq");
    bench.fill(&dir, "fillseq", |i| i)?;
    let dir = scratch.root().join("fillrandom");
    let n = bench.options.keys;
    let lsn = bench.fill(&dir, "fillrandom", |i| permute(i, n))?;
    let lsn = bench.overwrite(&dir, lsn)?;
    bench.reads(&dir, lsn)?;
    Ok(())
}

impl Bench {
    fn open(&self, dir: &Path) -> Result<Tree> {
        // RocksDB's settings in ../shared/notes/peers-measured.md: a 256 MiB block cache.
        let options = TreeOptions {
            block_cache: BlockCache::new(256 * 1024 * 1024),
            ..TreeOptions::default()
        };
        Tree::open(self.fs.clone(), dir, options).context("open tree")
    }

    /// Puts `keys` values in the order `pick` gives, one per batch; returns the last LSN.
    fn fill(&self, dir: &Path, name: &str, pick: impl Fn(u64) -> u64) -> Result<u64> {
        let tree = self.open(dir)?;
        let scheduler = Scheduler::start();
        scheduler.register(&tree);
        let n = self.options.keys;
        let start = Instant::now();
        for i in 0..n {
            let k = pick(i);
            tree.apply(i + 1, &[(key(k), Some(value(k, self.options.value_size)))])?;
        }
        let elapsed = start.elapsed().as_secs_f64();
        Self::settle(&tree, n, scheduler)?;
        self.report(name, n, elapsed, &tree);
        Ok(n)
    }

    fn overwrite(&self, dir: &Path, lsn: u64) -> Result<u64> {
        let tree = self.open(dir)?;
        let scheduler = Scheduler::start();
        scheduler.register(&tree);
        let n = self.options.keys;
        let start = Instant::now();
        for i in 0..n {
            let k = permute(i + n / 3, n);
            tree.apply(
                lsn + i + 1,
                &[(key(k), Some(value(k + 1, self.options.value_size)))],
            )?;
        }
        let elapsed = start.elapsed().as_secs_f64();
        Self::settle(&tree, lsn + n, scheduler)?;
        self.report("overwrite", n, elapsed, &tree);
        Ok(lsn + n)
    }

    /// Checkpoints at `lsn` and drains flushes and compactions.
    fn settle(tree: &Tree, lsn: u64, scheduler: Scheduler) -> Result<()> {
        scheduler.shutdown();
        tree.checkpoint(lsn)?;
        while tree.maintenance_step()? != Progress::Idle {}
        Ok(())
    }

    fn report(&self, name: &str, ops: u64, seconds: f64, tree: &Tree) {
        let stats = tree.stats();
        let raw = self.options.keys * (16 + self.options.value_size as u64);
        println!(
            "{name:<12} {:>10.0} ops/s  ({ops} ops in {seconds:.2} s)  wamp {:.2}  disk/raw {:.3}  levels {:?}  stalls {} slowdowns {}",
            ops as f64 / seconds,
            stats.write_amplification().unwrap_or(0.0),
            stats.sst_bytes() as f64 / raw as f64,
            stats.levels.iter().map(|l| l.files).collect::<Vec<_>>(),
            stats.stalls,
            stats.slowdowns,
        );
    }

    fn reads(&self, dir: &Path, lsn: u64) -> Result<()> {
        let tree = self.open(dir)?;
        assert_eq!(
            tree.watermark(),
            Some(lsn),
            "the tree reopened at its checkpoint"
        );
        let view = tree.read_view();
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
        anyhow::ensure!(found == reads, "readrandom found {found} of {reads}");
        self.report("readrandom", reads, elapsed, &tree);
        let start = Instant::now();
        let mut found = 0u64;
        for i in 0..reads {
            let mut k = key(mix(i ^ 0x1234) % n);
            k[15] = b'x';
            found += u64::from(view.get_into(&k, &mut value)?.is_some());
        }
        let elapsed = start.elapsed().as_secs_f64();
        anyhow::ensure!(found == 0, "readmissing found {found}");
        self.report("readmissing", reads, elapsed, &tree);
        let seeks = self.options.seeks;
        let start = Instant::now();
        let mut rows = 0u64;
        for i in 0..seeks {
            let k = key(mix(i ^ 0x7777) % n);
            let bounds = (
                std::ops::Bound::Included(k.to_vec()),
                std::ops::Bound::Unbounded,
            );
            let mut it = view.scan(bounds, Direction::Forward)?;
            for _ in 0..100 {
                if !it.valid() {
                    break;
                }
                rows += 1;
                it.next()?;
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        anyhow::ensure!(rows > seeks * 50, "seekrandom read only {rows} rows");
        self.report("seekrandom", seeks, elapsed, &tree);
        Ok(())
    }
}
