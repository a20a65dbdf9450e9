//! The output of a run: a header naming the machine, a table of both sides of every
//! comparison, one `ratio <name> <median> min=<..> max=<..>` line per comparison, and the
//! JSON file with every sample, option and machine fact.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use popdb_io::{FileSystem, OpenOptions, RealFs};
use serde_json::{Value, json};

use crate::machine::FsInfo;
use crate::measure::{Comparison, Side};
use crate::settings::Settings;

/// Facts about where and on what a run measured.
#[derive(Debug)]
pub struct Environment {
    pub commit: Option<String>,
    pub kernel: Option<String>,
    pub cpus: usize,
    pub fs: FsInfo,
    pub data_dir: PathBuf,
    pub started_unix: u64,
    pub io_uring: bool,
    pub io_uring_reason: Option<String>,
}

pub fn print_header(env: &Environment, settings: &Settings) {
    println!(
        "popdb-bench wal ({} mode): {} pairs per comparison, {:.2} s synced samples, \
         {} MiB bulk samples, {}-byte records",
        settings.mode.name(),
        settings.pairs,
        settings.sample.as_secs_f64(),
        settings.bulk_bytes >> 20,
        settings.record_size
    );
    println!(
        "data {} on {} ({}), kernel {}, {} cpus, commit {}, io_uring {}",
        env.data_dir.display(),
        env.fs.name,
        env.fs.source.as_deref().unwrap_or("?"),
        env.kernel.as_deref().unwrap_or("?"),
        env.cpus,
        env.commit.as_deref().unwrap_or("?"),
        if env.io_uring { "on" } else { "off" }
    );
}

pub fn print_table(comparisons: &[Comparison]) {
    println!();
    println!(
        "{:<28} {:<22} {:>11} {:>11} {:>11} {:>6} {:>9} {:>8} {:>9} {:>9} {:>9}",
        "comparison",
        "side",
        "median",
        "min",
        "max",
        "unit",
        "syncs/op",
        "ops/wr",
        "p50",
        "p99",
        "p99.9"
    );
    for c in comparisons {
        for side in [&c.ours, &c.baseline] {
            let values = side.values(c.metric);
            let s = crate::measure::spread(&values);
            let latency = side.merged_latency();
            let q = |q: f64| {
                latency
                    .as_ref()
                    .map_or_else(|| "-".into(), |h| quantile(h, q))
            };
            println!(
                "{:<28} {:<22} {:>11.1} {:>11.1} {:>11.1} {:>6} {:>9} {:>8.1} {:>9} {:>9} {:>9}",
                c.name,
                side.label,
                s.median,
                s.min,
                s.max,
                c.metric.unit(),
                format_ratio(side.syncs_per_op()),
                side.ops_per_write(),
                q(0.5),
                q(0.99),
                q(0.999)
            );
        }
    }
    println!();
}

/// Prints one ratio line per comparison; returns how many it printed.
pub fn print_ratios(comparisons: &[Comparison]) -> Result<usize> {
    for c in comparisons {
        let s = c.spread()?;
        println!(
            "ratio {} {:.3} min={:.3} max={:.3}",
            c.name, s.median, s.min, s.max
        );
    }
    Ok(comparisons.len())
}

/// A ratio with 4 decimals, or in scientific notation below 0.001.
fn format_ratio(x: f64) -> String {
    if x == 0.0 || x >= 1e-3 {
        format!("{x:.4}")
    } else {
        format!("{x:.2e}")
    }
}

fn quantile(h: &Histogram<u64>, q: f64) -> String {
    format_ns(h.value_at_quantile(q))
}

/// Nanoseconds in the unit that keeps 3-4 significant digits (ASCII only: `us`, not the
/// micro sign).
fn format_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e3 {
        format!("{ns:.0}ns")
    } else if ns < 1e6 {
        format!("{:.1}us", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2}ms", ns / 1e6)
    } else {
        format!("{:.2}s", ns / 1e9)
    }
}

fn side_json(side: &Side, metric: crate::measure::Metric) -> Value {
    let latency = side.merged_latency().map(|h| latency_json(&h));
    let samples: Vec<Value> = side
        .samples
        .iter()
        .map(|s| {
            json!({
                "value": s.value(metric),
                "ops": s.ops,
                "payload_bytes": s.payload_bytes,
                "written_bytes": s.written_bytes,
                "writes": s.writes,
                "syncs": s.syncs,
                "syncs_per_op": s.syncs_per_op(),
                "segments_created": s.segments_created,
                "elapsed_seconds": s.elapsed.as_secs_f64(),
                "latency_ns": s.latency.as_ref().map(latency_json),
            })
        })
        .collect();
    json!({
        "label": side.label,
        "syncs_per_op": side.syncs_per_op(),
        "ops_per_write": side.ops_per_write(),
        "write_amplification": side.write_amplification(),
        "latency_ns": latency,
        "samples": samples,
    })
}

fn latency_json(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "min": h.min(),
        "p50": h.value_at_quantile(0.5),
        "p90": h.value_at_quantile(0.9),
        "p99": h.value_at_quantile(0.99),
        "p99_9": h.value_at_quantile(0.999),
        "max": h.max(),
        "mean": h.mean(),
    })
}

pub fn to_json(
    env: &Environment,
    settings: &Settings,
    comparisons: &[Comparison],
    io_uring_batches: u64,
) -> Result<Value> {
    let mut list = Vec::new();
    for c in comparisons {
        let s = c.spread()?;
        list.push(json!({
            "name": c.name,
            "metric": c.metric.unit(),
            "ratio": { "median": s.median, "min": s.min, "max": s.max, "pairs": c.ratios() },
            "ours": side_json(&c.ours, c.metric),
            "baseline": side_json(&c.baseline, c.metric),
        }));
    }
    Ok(json!({
        "benchmark": "wal",
        "started_unix": env.started_unix,
        "commit": env.commit,
        "machine": {
            "kernel": env.kernel,
            "cpus": env.cpus,
            "filesystem": env.fs.to_json(),
            "data_dir": env.data_dir.display().to_string(),
            "io_uring": env.io_uring,
            "io_uring_unavailable_reason": env.io_uring_reason,
            "io_uring_batches": io_uring_batches,
        },
        "options": settings.to_json(),
        "comparisons": list,
    }))
}

/// Writes the JSON to `<dir>/wal-<mode>-<unix>.json` through the seam; returns the path.
pub fn write_json(
    fs: &RealFs,
    dir: &Path,
    settings: &Settings,
    unix: u64,
    json: &Value,
) -> Result<PathBuf> {
    fs.create_dir_all(dir)
        .with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(format!("wal-{}-{unix}.json", settings.mode.name()));
    let mut bytes = serde_json::to_vec_pretty(json)?;
    bytes.push(b'\n');
    let options = OpenOptions {
        truncate: true,
        ..OpenOptions::create()
    };
    let file = fs
        .open(&path, options)
        .with_context(|| format!("create {}", path.display()))?;
    file.write_all_at(&bytes, 0)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// Reads a JSON file back (the smoke run checks what it wrote).
pub fn read_json(fs: &RealFs, path: &Path) -> Result<Value> {
    let file = fs
        .open(path, OpenOptions::read_only())
        .with_context(|| format!("open {}", path.display()))?;
    let mut bytes = vec![0u8; usize::try_from(file.len()?)?];
    file.read_exact_at(&mut bytes, 0)?;
    serde_json::from_slice(&bytes).with_context(|| format!("parse {}", path.display()))
}
