//! popdb-bench: PopDB's benchmark driver. `popdb-bench wal` measures the write-ahead log
//! against the floor the file system sets, in the same run and on the same file system,
//! interleaving the two sides of every comparison (ours, baseline, ours, baseline, ...) and
//! reporting the median ratio with its spread (STYLE.md section 11).
//!
//! `popdb-bench compare` runs PopDB's engines and Db against the peers compiled in (cargo
//! features `lmdb`, `redb`, `fjall`, `sled`, `rocksdb`; `peers-fast` and `peers`), each
//! target in its own process, and reports the same kind of ratio lines.
//!
//! `popdb-bench server` runs the `popdb` server against redis-server, each in its own
//! process, at the same concurrency, pipeline depth and value size.
//!
//! Output: a table, one `ratio <name> <median> min=<..> max=<..>` line per comparison (ours
//! over baseline, higher is better), and a JSON file under `target/popdb-bench/` recording the
//! commit, kernel, file system and every option. Durability benchmarks refuse tmpfs.

// heed marks opening an LMDB environment `unsafe`: with the `lmdb` feature, the crate
// denies unsafe code and the one module that needs it says why (benches/UNSAFE.md).
#![cfg_attr(not(feature = "lmdb"), forbid(unsafe_code))]
#![cfg_attr(feature = "lmdb", deny(unsafe_code))]
#![allow(clippy::disallowed_methods, reason = "benchmarks measure real time")]

/// The whole process's allocator: the one the `popdb` binary ships with (server/src/main.rs
/// says why), since `serve-popdb` runs the server in this process. It is binary-wide, so
/// every subcommand runs on it: in `compare`, every Rust target (PopDB's, redb, fjall,
/// sled) allocates through mimalloc, while LMDB's C and RocksDB's C++ call glibc's malloc
/// from their own code (the settings in the JSON say so). redis-server and redis-benchmark
/// link jemalloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod btreebench;
mod compare;
mod dbbench;
mod keys;
mod lsmbench;
mod machine;
mod measure;
mod raw;
mod report;
mod scratch;
mod server;
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
    /// PopDB (engines `lsm`, `btree`; Db tables `db_lsm`, `db_btree`) against the peers
    /// compiled in (features `lmdb`, `redb`, `fjall`, `sled`, `rocksdb`, `peers-fast`,
    /// `peers`) on db_bench's workloads (readwhilewriting and fillsync with 1-64 writers
    /// included) and YCSB A-F, each target in its own process, interleaved; prints the
    /// median ratio of every comparison with its spread, writes JSON and PNG charts.
    Compare(CompareArgs),
    /// One target in this process (what `compare` starts); writes its figures as JSON.
    #[command(hide = true)]
    RunTarget(RunTargetArgs),
    /// The `popdb` server against redis-server (AOF on, fsync policy matching PopDB's
    /// durability) over loopback: N connections, pipeline depth P, SET then GET, PopDB
    /// driven by popdb-client and Redis by redis-benchmark, interleaved; prints
    /// `ratio server.set_vs_redis` and `ratio server.get_vs_redis` lines.
    Server(server::ServerArgs),
    /// A popdb server in this process (what `server` starts): the `popdb` binary's flags.
    #[command(hide = true)]
    ServePopdb(popdb_server::ServeArgs),
}

/// Options of `popdb-bench compare`.
#[derive(Debug, Args)]
struct CompareArgs {
    /// Keys loaded by each target (db_bench's `--num`). Default 1,000,000 (100,000 with
    /// --quick).
    #[arg(long)]
    keys: Option<u64>,
    /// 100,000 keys (unless --keys is given) and 3 pairs (unless --pairs is given).
    #[arg(long)]
    quick: bool,
    /// Bytes per key.
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Gets of readrandom and readmissing. Default: as many as keys.
    #[arg(long)]
    reads: Option<u64>,
    /// Seeks of seekrandom (each then reads 100 entries). Default: a tenth of the keys.
    #[arg(long)]
    seeks: Option<u64>,
    /// Seconds of each fillsync run (one per writer count). Default 3 (1 with --quick).
    #[arg(long)]
    sync_seconds: Option<f64>,
    /// Writer counts of `fillsync`.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    sync_writers: Vec<u32>,
    /// Operations of each YCSB workload. Default: a fifth of the keys.
    #[arg(long)]
    ycsb_ops: Option<u64>,
    /// Rounds: every target runs once per round, so each comparison gets this many pairs.
    /// Default 5 (3 with --quick).
    #[arg(long)]
    pairs: Option<usize>,
    /// The workloads, in db_bench's names (`fillsync` is one per `--sync-writers` count),
    /// and YCSB's: `ycsb` (A-F, zipfian and uniform), `ycsb_a`, `ycsb_a_zipf`, ...
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "fillseq,fillrandom,overwrite,readrandom,readmissing,seekrandom,\
            readwhilewriting,fillsync,ycsb"
    )]
    workloads: Vec<String>,
    /// Runs only the comparisons whose name contains this (e.g. `lsm_vs`, `btree_vs_lmdb`).
    #[arg(long)]
    only: Option<String>,
    /// Milliseconds to pause between processes (after a sync(2)).
    #[arg(long, default_value_t = 200)]
    settle_ms: u64,
    /// Where the data goes (a fresh directory inside it). Default: target/popdb-bench/.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where the JSON goes. Default: target/popdb-bench/.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Counts instructions per operation under valgrind's callgrind instead of timing
    /// (single-threaded workloads; one run per target). For CPU-bound comparisons.
    #[arg(long)]
    callgrind: bool,
}

/// Options of the hidden `popdb-bench run-target`.
#[derive(Debug, Args)]
struct RunTargetArgs {
    #[arg(long)]
    target: String,
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    #[arg(long)]
    keys: u64,
    #[arg(long)]
    key_size: usize,
    #[arg(long)]
    value_size: usize,
    #[arg(long)]
    reads: u64,
    #[arg(long)]
    seeks: u64,
    #[arg(long)]
    sync_seconds: f64,
    #[arg(long)]
    ycsb_ops: u64,
    /// A fresh directory for this process's data; removed at the end.
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    json: PathBuf,
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
        Command::Compare(args) => run_compare(args),
        Command::Server(args) => server::run(&args.resolve(&default_dir())?),
        Command::ServePopdb(args) => server::serve_popdb(&args),
        Command::RunTarget(args) => compare::run_target(&compare::RunTarget {
            kind: compare::TargetKind::parse(&args.target)?,
            workloads: compare::Workload::parse_list(&args.workloads, &[])?,
            counts: compare::Counts {
                keys: args.keys,
                shape: compare::Shape {
                    key_size: args.key_size,
                    value_size: args.value_size,
                },
                reads: args.reads,
                seeks: args.seeks,
                sync_seconds: args.sync_seconds,
                ycsb_ops: args.ycsb_ops,
            },
            dir: args.dir,
            json: args.json,
        }),
    }
}

fn run_compare(args: CompareArgs) -> anyhow::Result<()> {
    let keys = args
        .keys
        .unwrap_or(if args.quick { 100_000 } else { 1_000_000 });
    let pairs = args.pairs.unwrap_or(if args.quick { 3 } else { 5 });
    compare::run_compare(&compare::Compare {
        counts: compare::Counts {
            keys,
            shape: compare::Shape {
                key_size: args.key_size,
                value_size: args.value_size,
            },
            reads: args.reads.unwrap_or(keys),
            seeks: args.seeks.unwrap_or((keys / 10).max(1)),
            sync_seconds: args
                .sync_seconds
                .unwrap_or(if args.quick { 1.0 } else { 3.0 }),
            ycsb_ops: args.ycsb_ops.unwrap_or((keys / 5).max(1)),
        },
        workloads: compare::Workload::parse_list(&args.workloads, &args.sync_writers)?,
        pairs,
        only: args.only,
        dir: args.dir.unwrap_or_else(default_dir),
        out: args.out.unwrap_or_else(default_dir),
        settle: std::time::Duration::from_millis(args.settle_ms),
        callgrind: args.callgrind,
    })
}

/// Where the engine runs put their data: target/popdb-bench/ in the workspace.
fn default_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/popdb-bench")
}
