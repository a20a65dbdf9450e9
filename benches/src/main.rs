//! popdb-bench: PopDB's benchmark driver. `popdb-bench wal` measures the write-ahead log
//! against the floor the file system sets, in the same run and on the same file system,
//! interleaving the two sides of every comparison (ours, baseline, ours, baseline, ...) and
//! reporting the median ratio with its spread (STYLE.md section 11).
//!
//! Output: a table, one `ratio <name> <median> min=<..> max=<..>` line per comparison (ours
//! over baseline, higher is better), and a JSON file under `target/popdb-bench/` recording the
//! commit, kernel, file system and every option. Durability benchmarks refuse tmpfs.

#![forbid(unsafe_code)]
#![allow(clippy::disallowed_methods, reason = "benchmarks measure real time")]

mod btreebench;
mod dbbench;
mod keys;
mod lsmbench;
mod machine;
mod measure;
mod raw;
mod report;
mod scratch;
mod settings;
mod suite;
mod walbench;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// PopDB benchmarks, each measured against its baseline in the same run.
#[derive(Debug, Parser)]
#[command(name = "popdb-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The write-ahead log: synced appends against pwrite+fdatasync, group commit with
    /// 1..64 appenders, and unsynced bulk appends against sequential 1 MiB writes.
    Wal(WalArgs),
    /// The LSM engine alone on db_bench's workloads (fillseq, fillrandom, overwrite,
    /// readrandom, readmissing, seekrandom): 16-byte keys, 100-byte values, no log.
    Lsm(LsmArgs),
    /// The B+tree engine alone on the same workloads: one apply per 1,000 keys, a
    /// checkpoint every 100,000 keys and at the end, reads through the map after a reopen.
    Btree(BtreeArgs),
    /// The embedded Db with one table per engine (fillrandom, overwrite, readrandom,
    /// fillsync with 1, 4 and 16 writers), its fillrandom measured against the bare
    /// engines' in the same run.
    Db(DbArgs),
}

/// Options of `popdb-bench db`.
#[derive(Debug, Args)]
struct DbArgs {
    /// Keys loaded into each table (db_bench's `--num`).
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// 100,000 keys instead.
    #[arg(long)]
    quick: bool,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Keys per write (the btree driver's keys per apply).
    #[arg(long, default_value_t = 1_000)]
    batch_keys: u64,
    /// Rounds of the fillrandom comparison (Db, bare LSM, bare B+tree each round).
    #[arg(long, default_value_t = 3)]
    pairs: usize,
    /// Seconds of each fillsync run (and of the fdatasync floor beside it). Default: 3
    /// (1 with --quick).
    #[arg(long)]
    sync_seconds: Option<f64>,
    /// Only the fillrandom rounds (for profiling them).
    #[arg(long)]
    fill_only: bool,
    /// The Db's background interval in ms (how often it syncs no-sync writes and looks for
    /// work). Default: the Db's (20 ms).
    #[arg(long)]
    background_interval_ms: Option<u64>,
    /// Writer thread counts of fillsync.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    sync_threads: Vec<usize>,
    /// Where the data goes (a fresh directory inside it). Default: target/popdb-bench/.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Options of `popdb-bench btree`.
#[derive(Debug, Args)]
struct BtreeArgs {
    /// Keys loaded (db_bench's `--num`).
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// 100,000 keys instead.
    #[arg(long)]
    quick: bool,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Keys per apply (the peers' notes: one redb or LMDB transaction per 1,000 keys).
    #[arg(long, default_value_t = 1_000)]
    batch_keys: u64,
    /// Keys between checkpoints (there is always one at the end of a load).
    #[arg(long, default_value_t = 100_000)]
    checkpoint_keys: u64,
    /// Where the data goes (a fresh directory inside it). Default: target/popdb-bench/.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Options of `popdb-bench lsm`.
#[derive(Debug, Args)]
struct LsmArgs {
    /// Keys loaded (db_bench's `--num`).
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// 100,000 keys instead.
    #[arg(long)]
    quick: bool,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Where the data goes (a fresh directory inside it). Default: target/popdb-bench/.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Options of `popdb-bench wal`. Unset values come from the mode (full, --quick, --smoke).
#[derive(Debug, Args)]
struct WalArgs {
    /// A short run: 5 pairs of 0.3 s samples, 64 MiB bulk samples.
    #[arg(long, conflicts_with = "smoke")]
    quick: bool,
    /// CI's check that the benchmark still runs: every measurement once, tiny sizes (a few
    /// seconds in all); fails unless every measurement produced output. Proves nothing
    /// about speed.
    #[arg(long)]
    smoke: bool,
    /// Where the data files go (a fresh directory is made inside it and removed at the
    /// end). Default: target/popdb-bench/ in the workspace. Must not be tmpfs.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where the JSON results go. Default: target/popdb-bench/ in the workspace.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Pairs of samples per comparison.
    #[arg(long)]
    pairs: Option<usize>,
    /// Length of each timed sample of the synced benchmarks, in seconds.
    #[arg(long)]
    seconds: Option<f64>,
    /// Payload MiB written by each bulk sample.
    #[arg(long)]
    bulk_mib: Option<u64>,
    /// Appender thread counts of the synced WAL benchmarks (1 is always included).
    #[arg(long, value_delimiter = ',')]
    threads: Option<Vec<usize>>,
    /// Payload bytes per record.
    #[arg(long)]
    record_size: Option<usize>,
    /// Turns io_uring off in `RealFs`, so the WAL's writes and syncs take the `pwrite` +
    /// `fdatasync` path.
    #[arg(long)]
    no_io_uring: bool,
    /// Runs only the comparisons whose name contains this (e.g. `bulk`, `sync64`).
    #[arg(long, conflicts_with = "smoke")]
    only: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Wal(args) => suite::run_wal(&args),
        Command::Lsm(args) => {
            let keys = if args.quick { 100_000 } else { args.keys };
            let dir = args.dir.unwrap_or_else(default_dir);
            lsmbench::run(lsmbench::LsmBenchOptions {
                keys,
                value_size: args.value_size,
                reads: keys,
                seeks: keys / 10,
                dir,
            })
        }
        Command::Btree(args) => {
            let keys = if args.quick { 100_000 } else { args.keys };
            btreebench::run(btreebench::BtreeBenchOptions {
                keys,
                value_size: args.value_size,
                reads: keys,
                seeks: keys / 10,
                batch_keys: args.batch_keys,
                checkpoint_keys: args.checkpoint_keys,
                dir: args.dir.unwrap_or_else(default_dir),
            })
        }
        Command::Db(args) => {
            let keys = if args.quick { 100_000 } else { args.keys };
            let sync_seconds = args
                .sync_seconds
                .unwrap_or(if args.quick { 1.0 } else { 3.0 });
            dbbench::run(dbbench::DbBenchOptions {
                keys,
                value_size: args.value_size,
                batch_keys: args.batch_keys,
                pairs: args.pairs,
                sync_seconds: std::time::Duration::from_secs_f64(sync_seconds),
                fill_only: args.fill_only,
                background_interval: args
                    .background_interval_ms
                    .map(std::time::Duration::from_millis),
                sync_threads: args.sync_threads,
                dir: args.dir.unwrap_or_else(default_dir),
            })
        }
    }
}

/// Where the engine runs put their data: target/popdb-bench/ in the workspace.
fn default_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/popdb-bench")
}
