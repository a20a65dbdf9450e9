//! `popdb-bench db`: the embedded Db (popdb-db) on db_bench's workloads, with one table per
//! engine, measured beside the bare engines in the same run. 16-byte keys, 100-byte
//! incompressible values, the real file system, the Db's background thread on.
//!
//! - `fillrandom`: every key once in a scattered order, `batch_keys` keys per no-sync
//!   `Db::write_with`, then `Db::checkpoint` (inside the timed region: it puts the data in
//!   the table's files, as the bare runs' last checkpoint does). The table named `lsm`
//!   first, then the one named `btree`; the Db's background work is drained (untimed)
//!   between the two. Beside it, in the same run, the bare engines with the same keys,
//!   order and batching: the LSM with a `popdb_lsm::Scheduler` doing its flushes and
//!   compactions, then a checkpoint; the B+tree with a checkpoint every as many keys as
//!   fill the Db's checkpoint trigger (`DbOptions::checkpoint_log_bytes`) and one at the
//!   end. Sides alternate (Db, LSM, B+tree, Db, ...) for `pairs` rounds, each in a fresh
//!   directory; `ratio db_lsm.fillrandom_vs_lsm` is the median of the per-round ratios
//!   (Db over bare engine, higher is better; the design target is 0.9 or more).
//! - `overwrite`: the last round's Db reopened (the reopen is timed and printed), every key
//!   written again in another order with new values, batched as above, then a checkpoint.
//! - `readrandom`: `Db::get` of random loaded keys (all must be found), per table.
//! - `fillsync`: one key per `Db::write_with` with `Durability::Sync`, from 1, 4 and 16
//!   writer threads for a fixed time; operations per second and the log's fdatasyncs per
//!   write. Beside it, just before, the file system's floor: a 128-byte `pwrite` and an
//!   `fdatasync` per operation (other work on the machine moves both).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use hdrhistogram::Histogram;
use popdb_db::{Db, DbOptions, Durability, EngineKind, TableOptions, WriteBatch, WriteOptions};
use popdb_io::{FileSystem, FsRef, OpenOptions, RealFs};

use crate::keys::{key, mix, permute, value};
use crate::measure::{new_histogram, spread};
use crate::raw::duration_ns;
use crate::scratch::Scratch;

/// Options of one `db` run.
#[derive(Debug, Clone)]
pub struct DbBenchOptions {
    pub keys: u64,
    pub value_size: usize,
    /// Keys per write (and per bare apply).
    pub batch_keys: u64,
    /// Rounds of the fillrandom comparison.
    pub pairs: usize,
    /// Length of each `fillsync` run and of the fdatasync floor beside it.
    pub sync_seconds: Duration,
    /// Only the fillrandom rounds (for profiling them).
    pub fill_only: bool,
    /// The Db's `background_interval` (`None`: its default).
    pub background_interval: Option<std::time::Duration>,
    /// Writer thread counts of `fillsync`.
    pub sync_threads: Vec<usize>,
    pub dir: PathBuf,
}

const TABLES: [(&str, EngineKind); 2] = [("lsm", EngineKind::Lsm), ("btree", EngineKind::Btree)];
const NO_SYNC: WriteOptions = WriteOptions {
    durability: Some(Durability::NoSync),
};
const SYNC: WriteOptions = WriteOptions {
    durability: Some(Durability::Sync),
};
/// Bound on the untimed drain of background work (each step does some work or ends it).
const SETTLE_STEPS_MAX: usize = 100_000;

/// Runs every workload; prints one line each and the ratio lines.
pub fn run(options: DbBenchOptions) -> Result<()> {
    ensure!(options.keys > 0, "--keys must be at least 1");
    ensure!(options.batch_keys > 0, "--batch-keys must be at least 1");
    ensure!(options.pairs > 0, "--pairs must be at least 1");
    let real = RealFs::new();
    let scratch = Scratch::create(&real, &options.dir, &format!("db-{}", std::process::id()))?;
    let bench = Bench {
        fs: Arc::new(real),
        checkpoint_keys: (DbOptions::default().checkpoint_log_bytes
            / (16 + options.value_size as u64))
            .max(1),
        options,
    };
    println!(
        "db: {} keys, 16-byte keys, {}-byte values, {} keys per write, {} rounds; bare B+tree checkpoints every {} keys; {}",
        bench.options.keys,
        bench.options.value_size,
        bench.options.batch_keys,
        bench.options.pairs,
        bench.checkpoint_keys,
        scratch.root().display()
    );
    let result = bench.run_all(scratch.root());
    // Scratch removes one level of directories; the Db's directories nest deeper.
    if let Err(error) = remove_children(scratch.root()) {
        eprintln!("note: {error:#}");
    }
    result
}

struct Bench {
    fs: FsRef,
    options: DbBenchOptions,
    /// The bare B+tree's checkpoint interval: the keys that fill the Db's log trigger.
    checkpoint_keys: u64,
}

/// What one load took, the last checkpoint (or, for the bare B+tree, every checkpoint)
/// included.
struct Fill {
    seconds: f64,
    checkpoint_seconds: f64,
    /// Per `Db::write_with` or bare `apply` (checkpoints not included), in nanoseconds.
    latency: Histogram<u64>,
}

impl Fill {
    fn report(&self, name: &str, ops: u64) {
        println!(
            "{name:<24} {:>10.0} ops/s  ({ops} ops in {:.2} s, of which checkpoints {:.2} s)",
            ops as f64 / self.seconds,
            self.seconds,
            self.checkpoint_seconds
        );
        let latency = &self.latency;
        let ms = |ns: u64| ns as f64 / 1e6;
        println!(
            "{:<24} per write or apply: mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            "",
            latency.mean() / 1e6,
            ms(latency.value_at_quantile(0.5)),
            ms(latency.value_at_quantile(0.99)),
            ms(latency.max()),
        );
    }
}

/// The fillrandom figures of one round, in operations per second.
struct Round {
    db: [f64; 2],
    bare: [f64; 2],
}

impl Bench {
    fn db_options(&self) -> DbOptions {
        let defaults = DbOptions::default();
        DbOptions {
            background_interval: self
                .options
                .background_interval
                .unwrap_or(defaults.background_interval),
            ..defaults
        }
    }

    fn run_all(&self, root: &Path) -> Result<()> {
        let mut rounds = Vec::with_capacity(self.options.pairs);
        let mut last_db = None;
        for round in 0..self.options.pairs {
            let db_dir = root.join(format!("{round}-db"));
            let db = self.db_fill(&db_dir)?;
            let lsm_dir = root.join(format!("{round}-lsm"));
            let lsm = self.lsm_fill(&lsm_dir)?;
            std::fs::remove_dir_all(&lsm_dir).context("remove the LSM run's directory")?;
            let btree_dir = root.join(format!("{round}-btree"));
            let btree = self.btree_fill(&btree_dir)?;
            std::fs::remove_dir_all(&btree_dir).context("remove the B+tree run's directory")?;
            rounds.push(Round {
                db,
                bare: [lsm, btree],
            });
            if let Some(previous) = last_db.replace(db_dir) {
                std::fs::remove_dir_all(previous).context("remove a Db run's directory")?;
            }
        }
        print_ratios(&rounds);
        let dir = last_db.context("no round ran")?;
        if self.options.fill_only {
            return Ok(());
        }
        self.later_workloads(&dir)
    }

    /// Overwrite, readrandom and fillsync on the Db of the last fillrandom round.
    fn later_workloads(&self, dir: &Path) -> Result<()> {
        let started = Instant::now();
        let db = Db::open(dir, self.db_options()).context("reopen the Db")?;
        let recovery = db.recovery();
        println!(
            "reopen                   {:.1} ms (log: {} segments, {:.1} MiB read in {:.1} ms; {} records replayed)",
            started.elapsed().as_secs_f64() * 1e3,
            recovery.wal.segments_read,
            recovery.wal.bytes_read as f64 / f64::from(1 << 20),
            recovery.wal.elapsed.as_secs_f64() * 1e3,
            recovery.records_replayed
        );
        let n = self.options.keys;
        for (table, _) in TABLES {
            let fill = self.load(&db, table, |i| {
                let k = permute(i + n / 3, n);
                (k, k + 1)
            })?;
            fill.report(&format!("db_{table}.overwrite"), n);
            settle(&db)?;
        }
        for (table, _) in TABLES {
            self.read_random(&db, table)?;
        }
        let mut next_key = n;
        let floor_dir = dir.with_extension("floor");
        for (table, _) in TABLES {
            let floor = self.fdatasync_floor(&floor_dir)?;
            for &threads in &self.options.sync_threads {
                let ops = self.fill_sync(&db, table, threads, next_key)?;
                next_key += 1 << 40;
                if threads == 1 {
                    println!(
                        "ratio db_{table}.fillsync1_vs_fdatasync {:.3} (one run each)",
                        ops / floor
                    );
                }
            }
        }
        db.close().context("close the Db")
    }

    /// One Db with a table per engine; fillrandom into each in turn. Returns ops/s per
    /// table, in `TABLES` order.
    fn db_fill(&self, dir: &Path) -> Result<[f64; 2]> {
        let db = Db::open(dir, self.db_options()).context("open the Db")?;
        for (table, engine) in TABLES {
            db.create_table(table, TableOptions::new(engine))
                .with_context(|| format!("create table {table}"))?;
        }
        let n = self.options.keys;
        let mut figures = [0.0; 2];
        for (figure, (table, _)) in figures.iter_mut().zip(TABLES) {
            let before = db.stats().wal;
            let cpu_before = thread_cpu();
            let fill = self.load(&db, table, |i| {
                let k = permute(i, n);
                (k, k)
            })?;
            let cpu_after = thread_cpu();
            let after = db.stats().wal;
            *figure = n as f64 / fill.seconds;
            fill.report(&format!("db_{table}.fillrandom"), n);
            println!(
                "{:<24} log: {:.1} MiB in {} writes, {} fdatasyncs",
                "",
                (after.bytes - before.bytes) as f64 / f64::from(1 << 20),
                after.writes - before.writes,
                after.syncs - before.syncs
            );
            println!(
                "{:<24} CPU s by thread: {}",
                "",
                thread_cpu_delta(&cpu_before, &cpu_after)
            );
            settle(&db)?;
        }
        db.close().context("close the Db")?;
        Ok(figures)
    }

    /// Writes every key of `table`, `pick(i)` giving write `i`'s key index and value seed,
    /// `batch_keys` per no-sync write, then checkpoints; returns the seconds it took.
    fn load(&self, db: &Db, table: &str, pick: impl Fn(u64) -> (u64, u64)) -> Result<Fill> {
        let n = self.options.keys;
        let mut latency = new_histogram();
        let start = Instant::now();
        let mut done = 0;
        while done < n {
            let end = n.min(done + self.options.batch_keys);
            let mut batch = WriteBatch::new();
            for i in done..end {
                let (k, v) = pick(i);
                batch.put(table, key(k), value(v, self.options.value_size));
            }
            let write = Instant::now();
            db.write_with(batch, NO_SYNC)
                .with_context(|| format!("write to {table}"))?;
            latency.saturating_record(duration_ns(write.elapsed()));
            done = end;
        }
        let checkpoint = Instant::now();
        db.checkpoint().context("checkpoint the Db")?;
        Ok(Fill {
            seconds: start.elapsed().as_secs_f64(),
            checkpoint_seconds: checkpoint.elapsed().as_secs_f64(),
            latency,
        })
    }

    /// The bare LSM tree: the same keys, order and batching; returns ops/s.
    fn lsm_fill(&self, dir: &Path) -> Result<f64> {
        let tree = popdb_lsm::Tree::open(self.fs.clone(), dir, popdb_lsm::TreeOptions::default())
            .context("open the LSM tree")?;
        let scheduler = popdb_lsm::Scheduler::start();
        scheduler.register(&tree);
        let n = self.options.keys;
        let mut batch = Vec::with_capacity(self.options.batch_keys as usize);
        let mut lsn = 0;
        let mut latency = new_histogram();
        let cpu_before = thread_cpu();
        let start = Instant::now();
        let mut done = 0;
        while done < n {
            let end = n.min(done + self.options.batch_keys);
            batch.clear();
            for i in done..end {
                let k = permute(i, n);
                batch.push((key(k), Some(value(k, self.options.value_size))));
            }
            lsn += 1;
            let apply = Instant::now();
            tree.apply(lsn, &batch)?;
            latency.saturating_record(duration_ns(apply.elapsed()));
            done = end;
        }
        let checkpoint = Instant::now();
        tree.checkpoint(lsn)?;
        let fill = Fill {
            seconds: start.elapsed().as_secs_f64(),
            checkpoint_seconds: checkpoint.elapsed().as_secs_f64(),
            latency,
        };
        let cpu_after = thread_cpu();
        scheduler.shutdown();
        fill.report("lsm.fillrandom", n);
        println!(
            "{:<24} CPU s by thread: {}",
            "",
            thread_cpu_delta(&cpu_before, &cpu_after)
        );
        Ok(n as f64 / fill.seconds)
    }

    /// The bare B+tree: the same keys, order and batching, a checkpoint every
    /// `checkpoint_keys` and at the end; returns ops/s.
    fn btree_fill(&self, dir: &Path) -> Result<f64> {
        let tree =
            popdb_btree::Tree::open(self.fs.clone(), dir, popdb_btree::TreeOptions::default())
                .context("open the B+tree")?;
        let n = self.options.keys;
        let mut batch = Vec::with_capacity(self.options.batch_keys as usize);
        let mut lsn = 0;
        let mut next_checkpoint = self.checkpoint_keys;
        let mut checkpoint_time = Duration::ZERO;
        let mut latency = new_histogram();
        let cpu_before = thread_cpu();
        let start = Instant::now();
        let mut done = 0;
        while done < n {
            let end = n.min(done + self.options.batch_keys);
            batch.clear();
            for i in done..end {
                let k = permute(i, n);
                batch.push((key(k), Some(value(k, self.options.value_size))));
            }
            lsn += 1;
            let apply = Instant::now();
            tree.apply(lsn, &batch)?;
            latency.saturating_record(duration_ns(apply.elapsed()));
            done = end;
            if done >= next_checkpoint || done == n {
                let checkpoint = Instant::now();
                tree.checkpoint(lsn)?;
                checkpoint_time += checkpoint.elapsed();
                while next_checkpoint <= done {
                    next_checkpoint += self.checkpoint_keys;
                }
            }
        }
        let fill = Fill {
            seconds: start.elapsed().as_secs_f64(),
            checkpoint_seconds: checkpoint_time.as_secs_f64(),
            latency,
        };
        let cpu_after = thread_cpu();
        fill.report("btree.fillrandom", n);
        println!(
            "{:<24} CPU s by thread: {}",
            "",
            thread_cpu_delta(&cpu_before, &cpu_after)
        );
        Ok(n as f64 / fill.seconds)
    }

    /// `Db::get` of `keys` random loaded keys; checks a sample of values first (untimed).
    fn read_random(&self, db: &Db, table: &str) -> Result<()> {
        let n = self.options.keys;
        for i in 0..n.min(1000) {
            let k = mix(i ^ 0x5a5a) % n;
            let (got, _) = db.get(table, &key(k))?.context("a loaded key is missing")?;
            ensure!(
                got == value(k + 1, self.options.value_size),
                "{table}: key {k} holds the wrong value"
            );
        }
        let start = Instant::now();
        let mut found = 0u64;
        for i in 0..n {
            let k = mix(i ^ 0xabcd) % n;
            found += u64::from(db.get(table, &key(k))?.is_some());
        }
        let seconds = start.elapsed().as_secs_f64();
        ensure!(found == n, "{table}: readrandom found {found} of {n}");
        report(&format!("db_{table}.readrandom"), n, seconds);
        Ok(())
    }

    /// Synced one-key writes from `threads` writers for `sync_seconds`, writer `t` to keys
    /// from `first + t * 10^9`; returns ops/s.
    fn fill_sync(&self, db: &Db, table: &str, threads: usize, first: u64) -> Result<f64> {
        let value_size = self.options.value_size;
        let run_for = self.options.sync_seconds;
        let barrier = Barrier::new(threads + 1);
        let before = db.stats().wal;
        let (ops, seconds) = std::thread::scope(|scope| -> Result<(u64, f64)> {
            let writers: Vec<_> = (0..threads as u64)
                .map(|t| {
                    let barrier = &barrier;
                    scope.spawn(move || -> Result<u64> {
                        barrier.wait();
                        let deadline = Instant::now() + run_for;
                        let mut i = first + t * 1_000_000_000;
                        let mut ops = 0;
                        while Instant::now() < deadline {
                            let mut batch = WriteBatch::new();
                            batch.put(table, key(i), value(i, value_size));
                            db.write_with(batch, SYNC)?;
                            i += 1;
                            ops += 1;
                        }
                        Ok(ops)
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            let mut ops = 0;
            for writer in writers {
                ops += writer
                    .join()
                    .map_err(|_| anyhow::anyhow!("a writer panicked"))??;
            }
            Ok((ops, start.elapsed().as_secs_f64()))
        })?;
        let after = db.stats().wal;
        report(&format!("db_{table}.fillsync{threads}"), ops, seconds);
        println!(
            "{:<24} {:.2} fdatasyncs per write, {:.1} records per log write",
            "",
            (after.syncs - before.syncs) as f64 / ops.max(1) as f64,
            (after.records - before.records) as f64 / (after.writes - before.writes).max(1) as f64
        );
        Ok(ops as f64 / seconds)
    }

    /// The floor of a synced write on this file system, now: one 128-byte `pwrite` (about
    /// a one-key record) and one `fdatasync` per operation, for `sync_seconds`, into a file
    /// whose blocks were written and synced first. Returns ops/s.
    fn fdatasync_floor(&self, dir: &Path) -> Result<f64> {
        let fs = RealFs::new();
        fs.create_dir_all(dir)?;
        let path = dir.join("floor.dat");
        let file = fs.open(&path, OpenOptions::create_new())?;
        let file_bytes: u64 = 4 << 20;
        file.write_all_at(&vec![0x5a; file_bytes as usize], 0)?;
        file.sync_data()?;
        fs.sync_dir(dir)?;
        let record = value(0xf100, 128);
        let mut offset = 0;
        let mut ops = 0u64;
        let start = Instant::now();
        let deadline = start + self.options.sync_seconds;
        while Instant::now() < deadline {
            file.write_all_at(&record, offset)?;
            file.sync_data()?;
            ops += 1;
            offset = (offset + 128) % file_bytes;
        }
        let seconds = start.elapsed().as_secs_f64();
        drop(file);
        std::fs::remove_dir_all(dir).context("remove the floor's directory")?;
        report("floor.pwrite_fdatasync", ops, seconds);
        Ok(ops as f64 / seconds)
    }
}

/// CPU seconds used so far by each of this process's threads, summed by thread name, from
/// /proc/self/task (Linux; empty elsewhere). utime and stime count in USER_HZ ticks, 100
/// per second on Linux.
fn thread_cpu() -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("stat")),
        ) else {
            continue;
        };
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields
            .get(11..13)
            .into_iter()
            .flatten()
            .filter_map(|f| f.parse::<u64>().ok())
            .sum();
        *out.entry(comm.trim().to_string()).or_default() += ticks as f64 / 100.0;
    }
    out
}

/// The CPU seconds each thread used between two `thread_cpu` readings, largest first.
fn thread_cpu_delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> String {
    let mut deltas: Vec<(&str, f64)> = after
        .iter()
        .map(|(name, &t)| (name.as_str(), t - before.get(name).copied().unwrap_or(0.0)))
        .filter(|&(_, d)| d >= 0.01)
        .collect();
    deltas.sort_by(|a, b| b.1.total_cmp(&a.1));
    deltas
        .iter()
        .map(|(name, d)| format!("{name} {d:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Drains the Db's background work (flushes, compactions, a due checkpoint), untimed.
fn settle(db: &Db) -> Result<()> {
    for _ in 0..SETTLE_STEPS_MAX {
        if !db
            .maintenance_step()
            .context("drain the Db's background work")?
        {
            return Ok(());
        }
    }
    anyhow::bail!("background work did not drain in {SETTLE_STEPS_MAX} steps")
}

fn report(name: &str, ops: u64, seconds: f64) {
    println!(
        "{name:<24} {:>10.0} ops/s  ({ops} ops in {seconds:.2} s)",
        ops as f64 / seconds
    );
}

/// One `ratio` line per engine: the Db's fillrandom over the bare engine's, per round.
fn print_ratios(rounds: &[Round]) {
    for (index, (table, _)) in TABLES.iter().enumerate() {
        let ratios: Vec<f64> = rounds.iter().map(|r| r.db[index] / r.bare[index]).collect();
        let s = spread(&ratios);
        println!(
            "ratio db_{table}.fillrandom_vs_{table} {:.3} min={:.3} max={:.3}",
            s.median, s.min, s.max
        );
    }
}

/// Removes every directory inside `root` with its contents.
fn remove_children(root: &Path) -> Result<()> {
    for entry in std::fs::read_dir(root).with_context(|| format!("list {}", root.display()))? {
        let path = entry?.path();
        std::fs::remove_dir_all(&path).with_context(|| format!("remove {}", path.display()))?;
    }
    Ok(())
}
