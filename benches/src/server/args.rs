//! The command line of `popdb-bench server`, resolved into [`ServerBench`].

use std::path::PathBuf;

use anyhow::{Result, ensure};
use clap::Args;

use super::settings::{Durability, ServerBench};

/// Options of `popdb-bench server`. Unset values come from the mode (full or `--smoke`).
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Client connections on each side. Default 50 (4 with --smoke).
    #[arg(long)]
    connections: Option<u32>,
    /// Requests each connection keeps in flight; each depth is its own comparison.
    /// Default 1,16 (1,4 with --smoke).
    #[arg(long, value_delimiter = ',')]
    pipeline: Option<Vec<u32>>,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Key space: every SET and GET picks one of this many keys at random (redis-benchmark's
    /// `-r`). Default 100,000 (1,000 with --smoke).
    #[arg(long)]
    keys: Option<u64>,
    /// Requests of each phase (SET, then GET) in each run (redis-benchmark's `-n`). Default
    /// 100,000 (300 with --smoke).
    #[arg(long)]
    requests: Option<u64>,
    /// Pairs of runs (PopDB, Redis) per comparison. Default 5 (1 with --smoke).
    #[arg(long)]
    pairs: Option<usize>,
    /// Durability settings, each its own comparison: `sync` (PopDB `--sync sync`, Redis
    /// `appendfsync always`) and `nosync` (PopDB `--sync nosync`, Redis `appendfsync
    /// everysec`).
    #[arg(long, value_delimiter = ',', default_value = "sync,nosync")]
    durability: Vec<String>,
    /// The PopDB table's engine: `lsm` or `btree`.
    #[arg(long, default_value = "lsm")]
    engine: String,
    /// CI's check that the benchmark still runs: tiny counts, one pair; fails unless every
    /// comparison printed its ratios. Proves nothing about speed.
    #[arg(long)]
    smoke: bool,
    /// Milliseconds to pause between processes (after a sync(2)).
    #[arg(long, default_value_t = 200)]
    settle_ms: u64,
    /// Where the data goes (a fresh directory inside it; not tmpfs). Default:
    /// target/popdb-bench/.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where the JSON goes. Default: target/popdb-bench/.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Drives the popdb server already listening at this address instead: each case's
    /// load (SET then GET), no Redis, no ratios, nothing started. For profiling the server
    /// (say under valgrind) or the load generator.
    #[arg(long, hide = true)]
    attach: Option<String>,
}

impl ServerArgs {
    /// The run these arguments describe; `default_dir` is where data and JSON go unless
    /// told otherwise.
    ///
    /// # Errors
    /// An unknown durability or engine, a zero count.
    pub fn resolve(self, default_dir: &std::path::Path) -> Result<ServerBench> {
        let smoke = self.smoke;
        let durabilities = self
            .durability
            .iter()
            .map(|d| Durability::parse(d.trim()))
            .collect::<Result<Vec<_>>>()?;
        ensure!(
            self.engine == "lsm" || self.engine == "btree",
            "--engine is lsm or btree, not {}",
            self.engine
        );
        let bench = ServerBench {
            connections: self.connections.unwrap_or(if smoke { 4 } else { 50 }),
            pipelines: self
                .pipeline
                .unwrap_or_else(|| if smoke { vec![1, 4] } else { vec![1, 16] }),
            value_size: self.value_size,
            keys: self.keys.unwrap_or(if smoke { 1_000 } else { 100_000 }),
            requests: self.requests.unwrap_or(if smoke { 300 } else { 100_000 }),
            pairs: self.pairs.unwrap_or(if smoke { 1 } else { 5 }),
            durabilities,
            engine: self.engine,
            smoke,
            settle: std::time::Duration::from_millis(self.settle_ms),
            dir: self.dir.unwrap_or_else(|| default_dir.to_path_buf()),
            out: self.out.unwrap_or_else(|| default_dir.to_path_buf()),
            attach: self.attach,
        };
        bench.check()?;
        Ok(bench)
    }
}
