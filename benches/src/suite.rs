//! `popdb-bench wal`: the comparisons, run one after another, each as interleaved pairs
//! (ours, then baseline) in fresh directories on the same file system.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use popdb_io::{FileSystem, RealFs};

use crate::WalArgs;
use crate::machine::{self, FsInfo};
use crate::measure::{Comparison, Metric, Sample, Side};
use crate::report;
use crate::scratch::{self, Scratch};
use crate::settings::{Mode, Settings};
use crate::{raw, walbench};

/// What one side of a comparison runs.
#[derive(Clone, Copy, Debug)]
enum Bench {
    WalSynced { threads: usize },
    WalPipelined { depth: usize },
    RawFdatasync,
    WalBulk,
    RawBulk,
}

impl Bench {
    fn label(self) -> String {
        match self {
            Bench::WalSynced { threads } => format!("wal sync x{threads}"),
            Bench::WalPipelined { depth } => format!("wal sync {depth} in flight, 1 thread"),
            Bench::RawFdatasync => "raw pwrite+fdatasync".to_string(),
            Bench::WalBulk => "wal bulk (sync never)".to_string(),
            Bench::RawBulk => "raw 1MiB pwrite".to_string(),
        }
    }

    fn dir_label(self) -> String {
        match self {
            Bench::WalSynced { threads } => format!("wal-sync{threads}"),
            Bench::WalPipelined { depth } => format!("wal-pipelined{depth}"),
            Bench::RawFdatasync => "raw-fdatasync".to_string(),
            Bench::WalBulk => "wal-bulk".to_string(),
            Bench::RawBulk => "raw-bulk".to_string(),
        }
    }

    fn run(self, fs: &Arc<RealFs>, dir: &Path, settings: &Settings) -> Result<Sample> {
        match self {
            Bench::WalSynced { threads } => walbench::synced_appends(fs, dir, settings, threads),
            Bench::WalPipelined { depth } => walbench::pipelined_appends(fs, dir, settings, depth),
            Bench::RawFdatasync => raw::fdatasync_floor(fs, dir, settings),
            Bench::WalBulk => walbench::bulk_appends(fs, dir, settings),
            Bench::RawBulk => raw::bulk_write(fs, dir, settings),
        }
    }
}

struct Plan {
    name: String,
    metric: Metric,
    ours: Bench,
    baseline: Bench,
}

fn plans(settings: &Settings) -> Vec<Plan> {
    let mut plans = vec![Plan {
        name: "wal.sync1_vs_raw_fdatasync".to_string(),
        metric: Metric::OpsPerSec,
        ours: Bench::WalSynced { threads: 1 },
        baseline: Bench::RawFdatasync,
    }];
    for &threads in settings.threads.iter().filter(|&&t| t != 1) {
        plans.push(Plan {
            name: format!("wal.sync{threads}_vs_sync1"),
            metric: Metric::OpsPerSec,
            ours: Bench::WalSynced { threads },
            baseline: Bench::WalSynced { threads: 1 },
        });
    }
    // The same concurrency as the largest thread count, from tasks instead of OS threads.
    if let Some(&depth) = settings.threads.iter().max().filter(|&&t| t > 1) {
        plans.push(Plan {
            name: format!("wal.inflight{depth}_vs_sync1"),
            metric: Metric::OpsPerSec,
            ours: Bench::WalPipelined { depth },
            baseline: Bench::WalSynced { threads: 1 },
        });
    }
    plans.push(Plan {
        name: "wal.bulk_vs_raw_write".to_string(),
        metric: Metric::MbPerSec,
        ours: Bench::WalBulk,
        baseline: Bench::RawBulk,
    });
    plans
}

/// The workspace's `target/popdb-bench/`.
fn default_parent() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("target")
        .join("popdb-bench")
}

pub fn run_wal(args: &WalArgs) -> Result<()> {
    let settings = Settings::from_args(args)?;
    let fs = Arc::new(if settings.io_uring {
        RealFs::new()
    } else {
        RealFs::without_io_uring()
    });
    let unix = scratch::unix_seconds();
    let parent = args.dir.clone().unwrap_or_else(default_parent);
    let scratch = Scratch::create(&fs, &parent, &scratch::run_name("wal", unix))?;
    let fs_info = machine::file_system_of(scratch.root())?;
    check_not_ram(&fs_info, scratch.root(), settings.mode)?;
    let out_dir = args.out.clone().unwrap_or_else(default_parent);
    let env = report::Environment {
        commit: machine::git_commit(),
        kernel: machine::kernel(),
        cpus: machine::cpus(),
        fs: fs_info,
        data_dir: scratch.root().to_path_buf(),
        started_unix: unix,
        io_uring: fs.io_uring_active(),
        io_uring_reason: fs.io_uring_unavailable_reason(),
    };
    report::print_header(&env, &settings);

    let mut comparisons = Vec::new();
    let selected = plans(&settings).into_iter().filter(|p| {
        settings
            .only
            .as_deref()
            .is_none_or(|only| p.name.contains(only))
    });
    for plan in selected {
        let mut comparison = Comparison {
            name: plan.name,
            metric: plan.metric,
            ours: Side::new(plan.ours.label()),
            baseline: Side::new(plan.baseline.label()),
        };
        for pair in 1..=settings.pairs {
            for (bench, side) in [
                (plan.ours, &mut comparison.ours),
                (plan.baseline, &mut comparison.baseline),
            ] {
                let dir = scratch.sample_dir(&fs, &bench.dir_label())?;
                let sample = bench
                    .run(&fs, &dir, &settings)
                    .with_context(|| format!("{}: {}", comparison.name, bench.label()))?;
                scratch::remove_dir(&fs, &dir)?;
                settle(&fs, scratch.root(), &settings)?;
                eprintln!(
                    "  {} pair {pair}/{}: {:<24} {:>12.1} {}",
                    comparison.name,
                    settings.pairs,
                    side.label,
                    sample.value(comparison.metric),
                    comparison.metric.unit()
                );
                side.samples.push(sample);
            }
        }
        comparisons.push(comparison);
    }

    ensure!(!comparisons.is_empty(), "--only matched no comparison");
    let uring_batches = fs.io_uring_batch_count();
    report::print_table(&comparisons);
    let ratio_lines = report::print_ratios(&comparisons)?;
    let json = report::to_json(&env, &settings, &comparisons, uring_batches)?;
    let path = report::write_json(&fs, &out_dir, &settings, unix, &json)?;
    println!("json {}", path.display());
    if settings.mode == Mode::Smoke {
        smoke_check(&fs, &path, &settings, &comparisons, ratio_lines)?;
        println!("smoke: ok ({ratio_lines} comparisons)");
    }
    Ok(())
}

/// Lets the file system go quiet before the next sample: commits the removal of the last
/// sample's files and writes back everything dirty (the disk here is mounted with online
/// `discard`, so freed blocks are trimmed at journal commit; without this the next sample
/// would pay for the last one's cleanup), then waits `settings.settle`.
fn settle(fs: &RealFs, root: &Path, settings: &Settings) -> Result<()> {
    fs.sync_dir(root)
        .with_context(|| format!("sync {}", root.display()))?;
    rustix::fs::sync();
    std::thread::sleep(settings.settle);
    Ok(())
}

/// Refuses RAM-backed file systems, where fdatasync costs nothing, except for the smoke run,
/// which only checks that the benchmark runs.
fn check_not_ram(fs_info: &FsInfo, dir: &Path, mode: Mode) -> Result<()> {
    if !fs_info.is_ram_backed() {
        return Ok(());
    }
    if mode == Mode::Smoke {
        eprintln!(
            "warning: {} is on {}; fine for a smoke run, meaningless for measurements",
            dir.display(),
            fs_info.name
        );
        return Ok(());
    }
    bail!(
        "refusing to run durability benchmarks on {} ({} is RAM-backed, so fdatasync costs \
         nothing there); pass --dir with a directory on a disk-backed file system",
        fs_info.name,
        dir.display()
    )
}

/// The smoke run's assertions: every measurement produced samples with work in them, every
/// comparison printed its ratio, and the JSON file reads back with every comparison.
fn smoke_check(
    fs: &RealFs,
    json_path: &Path,
    settings: &Settings,
    comparisons: &[Comparison],
    ratio_lines: usize,
) -> Result<()> {
    let expected = plans(settings).len();
    ensure!(
        comparisons.len() == expected && ratio_lines == expected,
        "expected {expected} comparisons, got {} with {ratio_lines} ratio lines",
        comparisons.len()
    );
    for c in comparisons {
        for side in [&c.ours, &c.baseline] {
            ensure!(
                side.samples.len() == settings.pairs,
                "{}: {} has {} samples",
                c.name,
                side.label,
                side.samples.len()
            );
            for s in &side.samples {
                ensure!(
                    s.ops > 0 && s.payload_bytes > 0 && !s.elapsed.is_zero(),
                    "{}: {} produced an empty sample: {s:?}",
                    c.name,
                    side.label
                );
                ensure!(
                    s.latency.as_ref().is_some_and(|h| !h.is_empty()),
                    "{}: {} recorded no latency",
                    c.name,
                    side.label
                );
            }
        }
        c.spread()?;
    }
    let bulk = comparisons
        .iter()
        .find(|c| c.metric == Metric::MbPerSec)
        .context("no bulk comparison")?;
    ensure!(
        bulk.ours.samples.iter().all(|s| s.segments_created >= 1),
        "the WAL bulk samples did not cross a segment boundary"
    );
    let json = report::read_json(fs, json_path)?;
    let listed = json
        .get("comparisons")
        .and_then(|v| v.as_array())
        .map_or(0, Vec::len);
    ensure!(
        listed == expected,
        "{} lists {listed} comparisons, expected {expected}",
        json_path.display()
    );
    Ok(())
}
