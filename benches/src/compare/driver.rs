//! `popdb-bench compare`: PopDB's targets against the peers compiled in, each run in its
//! own process (this binary again, `run-target`) with a fresh directory. A round runs every
//! target involved once, PopDB's and the peers' alternating (the order reversed every other
//! round, so that a drift of the machine falls on both sides); a comparison's pair `i` is
//! its two targets' runs in round `i`. Reports per comparison and workload the median of the
//! per-round ratios (ours over the peer's operations per second, higher is better) with its
//! minimum and maximum.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use super::report;
use super::target::TargetKind;
use super::workload::{Counts, Workload};
use crate::machine;
use crate::scratch;

/// Options of one comparison run.
#[derive(Debug)]
pub struct Compare {
    pub counts: Counts,
    pub workloads: Vec<Workload>,
    pub pairs: usize,
    /// Only comparisons whose name (`lsm_vs_rocksdb`) contains this.
    pub only: Option<String>,
    /// Where the data goes (a fresh directory inside it).
    pub dir: PathBuf,
    /// Where the JSON goes.
    pub out: PathBuf,
    /// Pause between processes, after `sync(2)`.
    pub settle: Duration,
    /// Count instructions under callgrind instead of timing (`callgrind.rs`).
    pub callgrind: bool,
}

/// One comparison: ours against a peer (or against another of ours).
#[derive(Clone, Copy, Debug)]
pub struct Pairing {
    pub ours: TargetKind,
    pub peer: TargetKind,
}

impl Pairing {
    pub fn name(self) -> String {
        format!("{}_vs_{}", self.ours.name(), self.peer.name())
    }
}

/// Every comparison the driver knows: the engines against the peers of their kind, the Db
/// against its bare engines, and the Db's tables against the peers of their kind (log on,
/// no sync; for fillsync, each system's synced commit).
pub const PAIRINGS: [Pairing; 12] = [
    Pairing {
        ours: TargetKind::Lsm,
        peer: TargetKind::RocksdbNoWal,
    },
    Pairing {
        ours: TargetKind::Lsm,
        peer: TargetKind::Fjall,
    },
    Pairing {
        ours: TargetKind::Btree,
        peer: TargetKind::Lmdb,
    },
    Pairing {
        ours: TargetKind::Btree,
        peer: TargetKind::Redb,
    },
    Pairing {
        ours: TargetKind::Btree,
        peer: TargetKind::Sled,
    },
    Pairing {
        ours: TargetKind::DbLsm,
        peer: TargetKind::Lsm,
    },
    Pairing {
        ours: TargetKind::DbBtree,
        peer: TargetKind::Btree,
    },
    Pairing {
        ours: TargetKind::DbLsm,
        peer: TargetKind::Rocksdb,
    },
    Pairing {
        ours: TargetKind::DbLsm,
        peer: TargetKind::Fjall,
    },
    Pairing {
        ours: TargetKind::DbBtree,
        peer: TargetKind::Lmdb,
    },
    Pairing {
        ours: TargetKind::DbBtree,
        peer: TargetKind::Redb,
    },
    Pairing {
        ours: TargetKind::DbBtree,
        peer: TargetKind::Sled,
    },
];

/// The comparisons that will run, and a line for each one skipped.
pub fn plan(only: Option<&str>) -> (Vec<Pairing>, Vec<String>) {
    let mut run = Vec::new();
    let mut skipped = Vec::new();
    for p in PAIRINGS {
        if only.is_some_and(|o| !p.name().contains(o)) {
            continue;
        }
        let missing: Vec<&str> = [p.ours, p.peer]
            .iter()
            .filter(|t| !t.compiled())
            .filter_map(|t| t.feature())
            .collect();
        if missing.is_empty() {
            run.push(p);
        } else {
            skipped.push(format!(
                "skip {}: not compiled in (build with --features {})",
                p.name(),
                missing.join(",")
            ));
        }
    }
    (run, skipped)
}

/// The targets of `pairings`, PopDB's and the peers' alternating.
pub fn round_order(pairings: &[Pairing]) -> Vec<TargetKind> {
    let is_ours = |t: &TargetKind| t.feature().is_none();
    let mut all: Vec<TargetKind> = pairings.iter().flat_map(|p| [p.ours, p.peer]).collect();
    all.sort();
    all.dedup();
    let ours: Vec<TargetKind> = all.iter().copied().filter(is_ours).collect();
    let peers: Vec<TargetKind> = all.iter().copied().filter(|t| !is_ours(t)).collect();
    let mut order = Vec::with_capacity(all.len());
    for i in 0..ours.len().max(peers.len()) {
        order.extend(ours.get(i));
        order.extend(peers.get(i));
    }
    order
}

/// Runs the comparison: the processes, the table, the ratio lines, the JSON.
pub fn run(options: &Compare) -> Result<()> {
    options.counts.check()?;
    ensure!(options.pairs > 0, "--pairs must be at least 1");
    let (pairings, skipped) = plan(options.only.as_deref());
    for line in &skipped {
        println!("{line}");
    }
    ensure!(!pairings.is_empty(), "no comparison to run");
    if options.callgrind {
        return super::callgrind::run(options, &pairings);
    }
    let unix = scratch::unix_seconds();
    let root = scratch::create_run_dir(&options.dir, "compare", unix)?;
    let fs = machine::file_system_of(&root)?;
    let order = round_order(&pairings);
    println!(
        "popdb-bench compare: {} keys of {} + {} bytes, {} pairs; workloads {}; targets {}; data {} on {}",
        options.counts.keys,
        options.counts.shape.key_size,
        options.counts.shape.value_size,
        options.pairs,
        names(options.workloads.iter().map(|w| w.name())),
        names(order.iter().map(|t| t.name().to_string())),
        root.display(),
        fs.name
    );
    let result = run_rounds(options, &root, &order);
    if let Err(error) = std::fs::remove_dir_all(&root) {
        eprintln!("note: could not remove {}: {error}", root.display());
    }
    let samples = result?;
    let comparisons = report::comparisons(&pairings, &options.workloads, &samples)?;
    report::print_table(
        &order,
        &options.workloads,
        &samples,
        options.counts.raw_bytes(),
    );
    report::print_ratios(&comparisons);
    let json = json!({
        "benchmark": "compare",
        "started_unix": unix,
        "commit": machine::git_commit(),
        "machine": {
            "kernel": machine::kernel(),
            "cpus": machine::cpus(),
            "cpu_model": machine::cpu_model(),
            "memory_bytes": machine::memory_bytes(),
            "filesystem": fs.to_json(),
            "data_dir": root.display().to_string(),
        },
        "options": {
            "keys": options.counts.keys,
            "key_size": options.counts.shape.key_size,
            "value_size": options.counts.shape.value_size,
            "reads": options.counts.reads,
            "seeks": options.counts.seeks,
            "seek_rows": super::workload::SEEK_ROWS,
            "sync_seconds": options.counts.sync_seconds,
            "ycsb_ops": options.counts.ycsb_ops,
            "ycsb_zipfian_theta": super::ycsb::ZIPFIAN_THETA,
            "readwhilewriting_reader_refresh_ops": super::concurrent::READER_REFRESH_OPS,
            "pairs": options.pairs,
            "workloads": options.workloads.iter().map(|w| w.name()).collect::<Vec<_>>(),
            "settle_seconds": options.settle.as_secs_f64(),
            "round_order": order.iter().map(|t| t.name()).collect::<Vec<_>>(),
            "between_processes": "remove the process's directory, sync(2), sleep settle_seconds",
            "allocator": "mimalloc as the driver's global allocator (every Rust target); \
                LMDB's C and RocksDB's C++ call glibc malloc from their own code",
        },
        "skipped": skipped,
        "settings": order.iter().map(|t| (t.name().to_string(), t.settings())).collect::<serde_json::Map<_, _>>(),
        "samples": samples.iter().map(|(t, runs)| (t.name().to_string(), Value::Array(runs.clone()))).collect::<serde_json::Map<_, _>>(),
        "comparisons": comparisons.iter().map(report::Ratio::to_json).collect::<Vec<_>>(),
    });
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("create {}", options.out.display()))?;
    let path = options.out.join(format!("compare-{unix}.json"));
    let mut bytes = serde_json::to_vec_pretty(&json)?;
    bytes.push(b'\n');
    std::fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))?;
    println!("json {}", path.display());
    super::charts::write_or_explain(
        &options.out,
        &format!("compare-{unix}"),
        &format!(
            "popdb-bench compare, {} keys, {} pairs",
            options.counts.keys, options.pairs
        ),
        &order,
        &report::rows(&options.workloads),
        &samples,
    );
    Ok(())
}

pub(super) fn names(list: impl Iterator<Item = String>) -> String {
    list.collect::<Vec<_>>().join(",")
}

/// Every round; returns each target's per-round JSON, in round order.
fn run_rounds(
    options: &Compare,
    root: &Path,
    order: &[TargetKind],
) -> Result<BTreeMap<TargetKind, Vec<Value>>> {
    let exe = std::env::current_exe().context("find this binary")?;
    let mut samples: BTreeMap<TargetKind, Vec<Value>> = BTreeMap::new();
    for round in 0..options.pairs {
        let mut this_round = order.to_vec();
        if round % 2 == 1 {
            this_round.reverse();
        }
        for kind in this_round {
            let dir = root.join(format!("{round}-{}", kind.name()));
            let json_path = root.join(format!("{round}-{}.json", kind.name()));
            let sample = run_process(&exe, options, kind, &dir, &json_path)
                .with_context(|| format!("round {round}: target {}", kind.name()))?;
            print_progress(round, options.pairs, kind, &sample);
            samples.entry(kind).or_default().push(sample);
            rustix::fs::sync();
            std::thread::sleep(options.settle);
        }
    }
    Ok(samples)
}

fn run_process(
    exe: &Path,
    options: &Compare,
    kind: TargetKind,
    dir: &Path,
    json_path: &Path,
) -> Result<Value> {
    let mut command = Command::new(exe);
    command.args(target_args(
        options,
        kind,
        &options.workloads,
        dir,
        json_path,
    ));
    run_command(command, json_path)
}

/// The arguments of `run-target` for `kind` running `workloads`.
pub(super) fn target_args(
    options: &Compare,
    kind: TargetKind,
    workloads: &[Workload],
    dir: &Path,
    json_path: &Path,
) -> Vec<std::ffi::OsString> {
    let c = &options.counts;
    let mut args: Vec<std::ffi::OsString> = [
        "run-target".to_string(),
        "--target".into(),
        kind.name().into(),
        "--workloads".into(),
        names(workloads.iter().map(|w| w.name())),
        "--keys".into(),
        c.keys.to_string(),
        "--key-size".into(),
        c.shape.key_size.to_string(),
        "--value-size".into(),
        c.shape.value_size.to_string(),
        "--reads".into(),
        c.reads.to_string(),
        "--seeks".into(),
        c.seeks.to_string(),
        "--sync-seconds".into(),
        c.sync_seconds.to_string(),
        "--ycsb-ops".into(),
        c.ycsb_ops.to_string(),
    ]
    .into_iter()
    .map(Into::into)
    .collect();
    args.extend([
        "--dir".into(),
        dir.into(),
        "--json".into(),
        json_path.into(),
    ]);
    args
}

/// Runs a `run-target` process to its end and reads (and removes) the JSON it wrote.
pub(super) fn run_command(mut command: Command, json_path: &Path) -> Result<Value> {
    let status = command.status().context("start run-target")?;
    if !status.success() {
        bail!("run-target exited with {status}");
    }
    let bytes =
        std::fs::read(json_path).with_context(|| format!("read {}", json_path.display()))?;
    std::fs::remove_file(json_path).with_context(|| format!("remove {}", json_path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parse {}", json_path.display()))
}

fn print_progress(round: usize, pairs: usize, kind: TargetKind, sample: &Value) {
    let figures: Vec<String> = sample["workloads"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            format!(
                "{} {:.0}",
                w["workload"].as_str().unwrap_or("?"),
                w["ops_per_sec"].as_f64().unwrap_or(0.0)
            )
        })
        .collect();
    eprintln!(
        "  round {}/{pairs} {:<9} {}",
        round + 1,
        kind.name(),
        figures.join("  ")
    );
}
