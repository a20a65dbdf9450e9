//! `popdb-bench run-target` (hidden): one target, in this process alone, through the
//! workloads asked for, each load in a fresh directory; writes its figures as JSON for the
//! `compare` driver that started it.
//!
//! Order: fillseq into its own directory; fillrandom into another (loaded, untimed, when
//! only later workloads are asked for); overwrite after a close and reopen; the reads after
//! another close and reopen, on one reader, after a full untimed scan. After each load and
//! its untimed `settle`, the directory's bytes on disk are counted, and the process's peak
//! resident memory so far is read.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use super::target::{Target, TargetKind};
use super::workload::{self, Counts, Outcome, Workload};

/// What to run.
#[derive(Debug)]
pub struct RunTarget {
    pub kind: TargetKind,
    pub workloads: Vec<Workload>,
    pub counts: Counts,
    /// A fresh directory for this process's data (created, and emptied at the end).
    pub dir: PathBuf,
    pub json: PathBuf,
}

/// Runs the target and writes the JSON.
pub fn run(args: &RunTarget) -> Result<()> {
    args.counts.check()?;
    std::fs::create_dir_all(&args.dir).with_context(|| format!("create {}", args.dir.display()))?;
    let result = run_workloads(args);
    let cleanup = std::fs::remove_dir_all(&args.dir)
        .with_context(|| format!("remove {}", args.dir.display()));
    let report = result?;
    cleanup?;
    let mut bytes = serde_json::to_vec_pretty(&report)?;
    bytes.push(b'\n');
    std::fs::write(&args.json, bytes).with_context(|| format!("write {}", args.json.display()))
}

fn run_workloads(args: &RunTarget) -> Result<Value> {
    let kind = args.kind;
    let counts = &args.counts;
    let want = |w: Workload| args.workloads.contains(&w);
    let mut results = Vec::new();
    let mut extra = serde_json::Map::new();
    if want(Workload::Fillseq) {
        let dir = args.dir.join("fillseq");
        let (outcome, disk) = load_fresh(kind, &dir, Workload::Fillseq, counts)?;
        results.push(with_disk(&outcome, disk, counts));
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    if want(Workload::Fillsync) {
        let dir = args.dir.join("fillsync");
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let mut target = kind.open(&dir)?;
        let outcome = workload::fill_sync(target.as_mut(), counts)?;
        target.close()?;
        results.push(with_rss(outcome.to_json()));
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    let later = args
        .workloads
        .iter()
        .any(|&w| w == Workload::Overwrite || w.is_read());
    if !(want(Workload::Fillrandom) || later) {
        return Ok(report(args, results, extra));
    }
    let dir = args.dir.join("fillrandom");
    let (outcome, disk) = load_fresh(kind, &dir, Workload::Fillrandom, counts)?;
    if want(Workload::Fillrandom) {
        results.push(with_disk(&outcome, disk, counts));
    }
    let mut shift = 0;
    if want(Workload::Overwrite) {
        let mut target = kind.open(&dir)?;
        let pick = workload::pick(Workload::Overwrite, counts.keys);
        let outcome = workload::load(
            target.as_mut(),
            Workload::Overwrite,
            counts,
            kind.batch_keys(),
            pick,
        )?;
        target.settle()?;
        target.close()?;
        results.push(with_disk(&outcome, disk_bytes(&dir)?, counts));
        shift = 1;
    }
    let reads: Vec<Workload> = args
        .workloads
        .iter()
        .copied()
        .filter(|w| w.is_read())
        .collect();
    if !reads.is_empty() {
        let started = Instant::now();
        let target = kind.open(&dir)?;
        let reopen_seconds = started.elapsed().as_secs_f64();
        let mut reader = target.reader()?;
        let warm_seconds = workload::warm_and_check(reader.as_mut(), counts, shift)?;
        extra.insert("reopen_seconds".into(), json!(reopen_seconds));
        extra.insert("warm_scan_seconds".into(), json!(warm_seconds));
        for w in reads {
            let outcome = workload::read(reader.as_mut(), w, counts)?;
            results.push(with_rss(outcome.to_json()));
        }
        drop(reader);
        target.close()?;
    }
    Ok(report(args, results, extra))
}

/// A fresh load into `dir`: open, load, settle (untimed), count bytes, close.
fn load_fresh(
    kind: TargetKind,
    dir: &Path,
    w: Workload,
    counts: &Counts,
) -> Result<(Outcome, DiskBytes)> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut target: Box<dyn Target> = kind.open(dir)?;
    let outcome = workload::load(
        target.as_mut(),
        w,
        counts,
        kind.batch_keys(),
        workload::pick(w, counts.keys),
    )?;
    target.settle()?;
    let disk = disk_bytes(dir)?;
    target.close()?;
    Ok((outcome, disk))
}

fn report(args: &RunTarget, results: Vec<Value>, extra: serde_json::Map<String, Value>) -> Value {
    json!({
        "target": args.kind.name(),
        "settings": args.kind.settings(),
        "keys": args.counts.keys,
        "key_size": args.counts.shape.key_size,
        "value_size": args.counts.shape.value_size,
        "reads": args.counts.reads,
        "seeks": args.counts.seeks,
        "sync_ops": args.counts.sync_ops,
        "raw_bytes": args.counts.raw_bytes(),
        "peak_rss_bytes": peak_rss_bytes(),
        "extra": extra,
        "workloads": results,
    })
}

fn with_disk(outcome: &Outcome, disk: DiskBytes, counts: &Counts) -> Value {
    let mut value = outcome.to_json();
    let raw = counts.raw_bytes();
    value["disk_bytes"] = json!(disk.allocated);
    value["disk_apparent_bytes"] = json!(disk.apparent);
    value["space_amplification"] = json!(disk.allocated as f64 / raw as f64);
    with_rss(value)
}

fn with_rss(mut value: Value) -> Value {
    value["peak_rss_bytes_so_far"] = json!(peak_rss_bytes());
    value
}

/// A directory tree's size: blocks allocated (what the disk holds) and file lengths.
#[derive(Clone, Copy, Debug, Default)]
struct DiskBytes {
    allocated: u64,
    apparent: u64,
}

/// Walks `dir` (bounded depth: engines nest a few levels at most).
fn disk_bytes(dir: &Path) -> Result<DiskBytes> {
    use std::os::unix::fs::MetadataExt;
    const DEPTH_MAX: usize = 16;
    let mut total = DiskBytes::default();
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    while let Some((path, depth)) = stack.pop() {
        ensure!(depth <= DEPTH_MAX, "{} nests too deep", path.display());
        for entry in std::fs::read_dir(&path).with_context(|| format!("list {}", path.display()))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push((entry.path(), depth + 1));
            } else {
                total.allocated += meta.blocks() * 512;
                total.apparent += meta.len();
            }
        }
    }
    Ok(total)
}

/// The process's peak resident set (VmHWM in /proc/self/status), in bytes; 0 where the
/// file is missing (not Linux).
pub fn peak_rss_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::compare::target::Shape;

    /// Every target compiled in runs every workload on a small data set and reports each
    /// one with figures that make sense; the adapters' value checks run inside.
    #[test]
    fn run_target_every_compiled_target_runs_every_workload() {
        let counts = Counts {
            keys: 2_000,
            shape: Shape {
                key_size: 16,
                value_size: 100,
            },
            reads: 2_000,
            seeks: 200,
            sync_ops: 20,
        };
        let scratch = tempfile::tempdir().expect("a temporary directory");
        for kind in TargetKind::ALL.into_iter().filter(|k| k.compiled()) {
            let args = RunTarget {
                kind,
                workloads: Workload::ALL.to_vec(),
                counts,
                dir: scratch.path().join(kind.name()),
                json: scratch.path().join(format!("{}.json", kind.name())),
            };
            run(&args).unwrap_or_else(|e| panic!("{}: {e:#}", kind.name()));
            let bytes = std::fs::read(&args.json).expect("the JSON was written");
            let report: Value = serde_json::from_slice(&bytes).expect("valid JSON");
            let workloads = report["workloads"].as_array().expect("a list of workloads");
            assert_eq!(workloads.len(), Workload::ALL.len(), "{}", kind.name());
            for w in workloads {
                assert!(w["ops_per_sec"].as_f64().is_some_and(|x| x > 0.0), "{w}");
                assert!(
                    w["latency_ns"]["count"].as_u64().is_some_and(|x| x > 0),
                    "{w}"
                );
            }
            let fill = workloads
                .iter()
                .find(|w| w["workload"] == "fillrandom")
                .expect("fillrandom ran");
            assert_eq!(fill["workload"], "fillrandom");
            assert!(
                fill["disk_bytes"].as_u64().is_some_and(|b| b > 0),
                "{}: no bytes on disk after fillrandom",
                kind.name()
            );
            assert!(
                !args.dir.exists(),
                "{}: the data was left behind",
                kind.name()
            );
        }
    }

    #[test]
    fn peak_rss_is_read_on_linux() {
        if Path::new("/proc/self/status").exists() {
            assert!(peak_rss_bytes() > 0);
        }
    }
}
