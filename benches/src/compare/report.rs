//! The comparison's output: a table of every target's median figures per workload, one
//! `ratio <ours>.<workload>_vs_<peer> <median> min=<..> max=<..>` line per comparison and
//! workload (ours over the peer's operations per second, per round; higher is better), and
//! their JSON.

use std::collections::BTreeMap;

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use super::driver::Pairing;
use super::target::TargetKind;
use super::workload::Workload;

/// The report's rows, in run order: each workload's `Workload::rows`.
pub fn rows(workloads: &[Workload]) -> Vec<String> {
    workloads.iter().flat_map(|w| w.rows()).collect()
}
use crate::measure::spread;

/// One comparison on one workload.
#[derive(Debug)]
pub struct Ratio {
    pub name: String,
    pub ours: TargetKind,
    pub peer: TargetKind,
    /// The row (`Workload::rows`).
    pub row: String,
    /// Ours over peer, round by round.
    pub ratios: Vec<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Ratio {
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "ours": self.ours.name(),
            "peer": self.peer.name(),
            "workload": self.row,
            "metric": "ops_per_sec, ours over peer",
            "ratios": self.ratios,
            "median": self.median,
            "min": self.min,
            "max": self.max,
        })
    }
}

/// The figure `field` of row `row` in one process's JSON.
pub fn figure(sample: &Value, row: &str, field: &str) -> Option<f64> {
    sample["workloads"]
        .as_array()?
        .iter()
        .find(|w| w["workload"] == row)?[field]
        .as_f64()
}

pub fn latency(sample: &Value, row: &str, quantile: &str) -> Option<f64> {
    sample["workloads"]
        .as_array()?
        .iter()
        .find(|w| w["workload"] == row)?["latency_ns"][quantile]
        .as_f64()
}

/// Ratios per comparison and row, pairing the two targets' runs round by round. A row
/// that neither side of a comparison ran in any round (fillsync on a bare engine) has no
/// ratio; one missing from some rounds only is an error.
pub fn comparisons(
    pairings: &[Pairing],
    workloads: &[Workload],
    samples: &BTreeMap<TargetKind, Vec<Value>>,
) -> Result<Vec<Ratio>> {
    let mut out = Vec::new();
    for p in pairings {
        let (Some(ours), Some(peer)) = (samples.get(&p.ours), samples.get(&p.peer)) else {
            continue;
        };
        for w in rows(workloads) {
            let ran = |runs: &[Value]| {
                runs.iter()
                    .filter(|s| figure(s, &w, "ops_per_sec").is_some())
                    .count()
            };
            if ran(ours) == 0 || ran(peer) == 0 {
                continue;
            }
            let ratios: Vec<f64> = ours
                .iter()
                .zip(peer)
                .filter_map(|(o, q)| {
                    Some(figure(o, &w, "ops_per_sec")? / figure(q, &w, "ops_per_sec")?)
                })
                .collect();
            ensure!(
                ratios.len() == ours.len().min(peer.len()),
                "{}: {w} is missing from a run",
                p.name(),
            );
            ensure!(
                ratios.iter().all(|r| r.is_finite() && *r > 0.0),
                "{}.{w}: a ratio is not a positive number: {ratios:?}",
                p.name(),
            );
            let s = spread(&ratios);
            out.push(Ratio {
                name: format!("{}.{w}_vs_{}", p.ours.name(), p.peer.name()),
                ours: p.ours,
                peer: p.peer,
                row: w,
                ratios,
                median: s.median,
                min: s.min,
                max: s.max,
            });
        }
    }
    Ok(out)
}

/// One line per target and workload: median, min and max ops/s over the rounds, the
/// median of each run's p50, p99 and p99.9, bytes on disk over raw (loads), peak RSS.
pub fn print_table(
    order: &[TargetKind],
    workloads: &[Workload],
    samples: &BTreeMap<TargetKind, Vec<Value>>,
    raw_bytes: u64,
) {
    println!();
    println!(
        "{:<23} {:<9} {:>11} {:>11} {:>11} {:>9} {:>9} {:>9} {:>8} {:>5} {:>8}",
        "workload",
        "target",
        "ops/s",
        "min",
        "max",
        "p50",
        "p99",
        "p99.9",
        "disk/raw",
        "w-amp",
        "rss MiB"
    );
    for w in rows(workloads) {
        let w = w.as_str();
        for kind in order {
            let Some(runs) = samples.get(kind) else {
                continue;
            };
            let values: Vec<f64> = runs
                .iter()
                .filter_map(|s| figure(s, w, "ops_per_sec"))
                .collect();
            if values.is_empty() {
                continue;
            }
            let ops = spread(&values);
            let median_of = |get: &dyn Fn(&Value) -> Option<f64>| {
                let v: Vec<f64> = runs.iter().filter_map(get).collect();
                (!v.is_empty()).then(|| spread(&v).median)
            };
            let q = |name: &str| {
                median_of(&|s| latency(s, w, name)).map_or_else(|| "-".into(), format_ns)
            };
            let disk = median_of(&|s| figure(s, w, "disk_bytes"))
                .map_or_else(|| "-".into(), |b| format!("{:.2}", b / raw_bytes as f64));
            let amplification = median_of(&|s| figure(s, w, "write_amplification"))
                .map_or_else(|| "-".into(), |a| format!("{a:.2}"));
            let rss = median_of(&|s| figure(s, w, "peak_rss_bytes_so_far"))
                .map_or_else(|| "-".into(), |b| format!("{:.0}", b / f64::from(1 << 20)));
            println!(
                "{:<23} {:<9} {:>11.0} {:>11.0} {:>11.0} {:>9} {:>9} {:>9} {:>8} {:>5} {:>8}",
                w,
                kind.name(),
                ops.median,
                ops.min,
                ops.max,
                q("p50"),
                q("p99"),
                q("p99_9"),
                disk,
                amplification,
                rss
            );
        }
    }
    println!();
}

pub fn print_ratios(ratios: &[Ratio]) {
    for r in ratios {
        println!(
            "ratio {} {:.2} min={:.2} max={:.2}",
            r.name, r.median, r.min, r.max
        );
    }
}

/// Nanoseconds in a unit that keeps 3-4 significant digits (ASCII: `us`).
pub fn format_ns(ns: f64) -> String {
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
