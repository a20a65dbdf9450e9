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
use super::{concurrent, ycsb};

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
        results.push(load_fresh(kind, &dir, Workload::Fillseq, counts, true)?);
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    for &w in &args.workloads {
        if let Workload::Fillsync { writers } = w {
            if kind.has_synced_commits() {
                results.push(fill_sync_fresh(kind, &args.dir, counts, writers)?);
            } else {
                extra.insert(
                    w.name(),
                    json!("not run: a bare engine has no log (a synced write is a checkpoint)"),
                );
            }
        }
    }
    let later = args.workloads.iter().any(|&w| w.needs_load());
    if !(want(Workload::Fillrandom) || later) {
        return Ok(report(args, results, extra));
    }
    let dir = args.dir.join("fillrandom");
    let fill = load_fresh(
        kind,
        &dir,
        Workload::Fillrandom,
        counts,
        want(Workload::Fillrandom),
    )?;
    if want(Workload::Fillrandom) {
        results.push(fill);
    }
    let mut shift = 0;
    if want(Workload::Overwrite) {
        let mut target = kind.open(&dir)?;
        let pick = workload::pick(Workload::Overwrite, counts.keys);
        let outcome = measured(|| {
            workload::load(
                target.as_mut(),
                Workload::Overwrite,
                counts,
                kind.batch_keys(),
                pick,
            )
        })?;
        target.settle()?;
        results.push(with_write_amplification(
            with_disk(&outcome, disk_bytes(&dir)?, counts),
            target.as_ref(),
        ));
        target.close()?;
        shift = 1;
    }
    if args
        .workloads
        .iter()
        .any(|&w| w.needs_load() && w != Workload::Overwrite)
    {
        run_on_loaded(args, &dir, shift, &mut results, &mut extra)?;
    }
    Ok(report(args, results, extra))
}

/// After a reopen: the db_bench reads on one reader, then readwhilewriting, then YCSB (the
/// last two change the data, so they come after the reads that check it).
fn run_on_loaded(
    args: &RunTarget,
    dir: &Path,
    shift: u64,
    results: &mut Vec<Value>,
    extra: &mut serde_json::Map<String, Value>,
) -> Result<()> {
    let (kind, counts) = (args.kind, &args.counts);
    let started = Instant::now();
    let target = kind.open(dir)?;
    let reopen_seconds = started.elapsed().as_secs_f64();
    let mut reader = target.reader()?;
    let warm_seconds = workload::warm_and_check(reader.as_mut(), counts, shift)?;
    extra.insert("reopen_seconds".into(), json!(reopen_seconds));
    extra.insert("warm_scan_seconds".into(), json!(warm_seconds));
    for &w in args.workloads.iter().filter(|w| w.is_read()) {
        let outcome = measured(|| workload::read(reader.as_mut(), w, counts))?;
        results.push(with_rss(outcome.to_json()));
    }
    drop(reader);
    if args.workloads.contains(&Workload::ReadWhileWriting) {
        let (read, write) =
            concurrent::read_while_writing(target.as_ref(), counts, kind.batch_keys())?;
        results.push(with_rss(read.to_json()));
        results.push(with_rss(write.to_json()));
    }
    let mut records = ycsb::Records { count: counts.keys };
    for &w in &args.workloads {
        if let Workload::Ycsb(y) = w {
            let outcome = measured(|| ycsb::run(target.as_ref(), counts, y, &mut records))?;
            results.push(with_rss(outcome.to_json()));
        }
    }
    target.close()
}

/// fillsync with `writers` threads into a fresh directory, opened for synced commits.
fn fill_sync_fresh(kind: TargetKind, root: &Path, counts: &Counts, writers: u32) -> Result<Value> {
    let dir = root.join(format!("fillsync-{writers}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let target = kind.open_synced(&dir)?;
    let outcome = concurrent::fill_sync(target.as_ref(), counts, writers)?;
    target.close()?;
    std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    Ok(with_rss(outcome.to_json()))
}

/// Runs `f`, the timed part of a workload that is reported. Never inlined, so that
/// `compare --callgrind` can count the instructions inside it and nowhere else
/// (`--toggle-collect=*run_target::measured*`).
#[inline(never)]
fn measured<T>(f: impl FnOnce() -> T) -> T {
    f()
}

/// A fresh load into `dir`: open, load, settle (untimed), count bytes, close; its row.
/// `reported`: the load is a workload of this run, not only the data later ones read.
fn load_fresh(
    kind: TargetKind,
    dir: &Path,
    w: Workload,
    counts: &Counts,
    reported: bool,
) -> Result<Value> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut target: Box<dyn Target> = kind.open(dir)?;
    let pick = workload::pick(w, counts.keys);
    let mut load = || workload::load(target.as_mut(), w, counts, kind.batch_keys(), &pick);
    let outcome = if reported { measured(load)? } else { load()? };
    target.settle()?;
    let row = with_write_amplification(
        with_disk(&outcome, disk_bytes(dir)?, counts),
        target.as_ref(),
    );
    target.close()?;
    Ok(row)
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
        "sync_seconds": args.counts.sync_seconds,
        "ycsb_ops": args.counts.ycsb_ops,
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

/// The engine's write amplification since it was opened, where it counts it.
fn with_write_amplification(mut value: Value, target: &dyn Target) -> Value {
    if let Some(amplification) = target.write_amplification() {
        value["write_amplification"] = json!(amplification);
    }
    value
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
            sync_seconds: 0.05,
            ycsb_ops: 500,
        };
        let names: Vec<String> = [
            "fillseq",
            "fillrandom",
            "overwrite",
            "readrandom",
            "readmissing",
            "seekrandom",
            "readwhilewriting",
            "fillsync",
            "ycsb",
        ]
        .map(String::from)
        .to_vec();
        let workloads = Workload::parse_list(&names, &[1, 4]).expect("known names");
        let scratch = tempfile::tempdir().expect("a temporary directory");
        for kind in TargetKind::ALL.into_iter().filter(|k| k.compiled()) {
            let rows = crate::compare::report::rows(&workloads)
                .into_iter()
                .filter(|r| kind.has_synced_commits() || !r.starts_with("fillsync"))
                .count();
            let args = RunTarget {
                kind,
                workloads: workloads.clone(),
                counts,
                dir: scratch.path().join(kind.name()),
                json: scratch.path().join(format!("{}.json", kind.name())),
            };
            run(&args).unwrap_or_else(|e| panic!("{}: {e:#}", kind.name()));
            let bytes = std::fs::read(&args.json).expect("the JSON was written");
            let report: Value = serde_json::from_slice(&bytes).expect("valid JSON");
            let workloads = report["workloads"].as_array().expect("a list of workloads");
            assert_eq!(workloads.len(), rows, "{}", kind.name());
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
