//! `compare --callgrind`: instruction counts instead of time, for CPU-bound comparisons on
//! a noisy machine. Each target runs each single-threaded workload in its own process
//! under valgrind's callgrind, which counts only the instructions executed inside
//! `run_target::measured` (the timed part of a reported workload: not the prerequisite
//! load, not the opens, closes and checks), on the thread that runs it: background threads
//! (flushes, compactions, fjall's and sled's workers) are not counted, so the figures
//! compare the foreground path of each operation. Counts do not depend on the machine's
//! load, so one run per target is enough; `--pairs` is ignored.
//!
//! Reports instructions per operation, and one line per comparison and workload,
//! `ratio <ours>.<workload>_instructions_vs_<peer> <peer's over ours>` (higher is better:
//! fewer instructions of ours), with min and max equal to it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde_json::json;

use super::driver::{Compare, Pairing, round_order, run_command, target_args};
use super::target::TargetKind;
use super::workload::Workload;
use crate::machine;
use crate::scratch;

/// The function whose instructions are counted (see `run_target::measured`).
const TOGGLE: &str = "*run_target::measured*";

/// Runs the counts and prints them.
///
/// # Errors
/// valgrind missing or failing, or a target's own error.
pub fn run(options: &Compare, pairings: &[Pairing]) -> Result<()> {
    let workloads: Vec<Workload> = options
        .workloads
        .iter()
        .copied()
        .filter(|w| !matches!(w, Workload::ReadWhileWriting | Workload::Fillsync { .. }))
        .collect();
    ensure!(
        !workloads.is_empty(),
        "--callgrind counts single-threaded workloads only (not readwhilewriting, fillsync)"
    );
    let version = Command::new("valgrind").arg("--version").output();
    ensure!(
        version.is_ok_and(|v| v.status.success()),
        "--callgrind needs valgrind (apt-get install -y valgrind)"
    );
    let unix = scratch::unix_seconds();
    let root = scratch::create_run_dir(&options.dir, "callgrind", unix)?;
    let order = round_order(pairings);
    let result = count_all(options, &root, &order, &workloads);
    if let Err(error) = std::fs::remove_dir_all(&root) {
        eprintln!("note: could not remove {}: {error}", root.display());
    }
    let per_op = result?;
    println!();
    println!(
        "{:<16} {:<9} {:>16} {:>12}",
        "workload", "target", "instructions", "per op"
    );
    for w in &workloads {
        for kind in &order {
            if let Some(&(total, per)) = per_op.get(&(*kind, *w)) {
                println!(
                    "{:<16} {:<9} {total:>16} {per:>12.0}",
                    w.name(),
                    kind.name()
                );
            }
        }
    }
    println!();
    let mut ratios = Vec::new();
    for p in pairings {
        for w in &workloads {
            if let (Some(ours), Some(peer)) = (per_op.get(&(p.ours, *w)), per_op.get(&(p.peer, *w)))
            {
                let r = peer.1 / ours.1;
                let name = format!(
                    "{}.{}_instructions_vs_{}",
                    p.ours.name(),
                    w.name(),
                    p.peer.name()
                );
                println!("ratio {name} {r:.2} min={r:.2} max={r:.2}");
                ratios.push(
                    json!({"name": name, "ratio": r, "ours_per_op": ours.1, "peer_per_op": peer.1}),
                );
            }
        }
    }
    let report = json!({
        "benchmark": "compare --callgrind",
        "started_unix": unix,
        "commit": machine::git_commit(),
        "counted": format!("instructions inside {TOGGLE}, the measuring thread only"),
        "keys": options.counts.keys,
        "counts": per_op.iter().map(|((k, w), (total, per))| json!({
            "target": k.name(), "workload": w.name(), "instructions": total, "per_op": per,
        })).collect::<Vec<_>>(),
        "comparisons": ratios,
    });
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("create {}", options.out.display()))?;
    let path = options.out.join(format!("compare-callgrind-{unix}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("write {}", path.display()))?;
    println!("json {}", path.display());
    Ok(())
}

type Counts = BTreeMap<(TargetKind, Workload), (u64, f64)>;

fn count_all(
    options: &Compare,
    root: &Path,
    order: &[TargetKind],
    workloads: &[Workload],
) -> Result<Counts> {
    let exe = std::env::current_exe().context("find this binary")?;
    let mut out = Counts::new();
    for &kind in order {
        for &w in workloads {
            let stem = format!("{}-{}", kind.name(), w.name());
            let (dir, json_path) = (root.join(&stem), root.join(format!("{stem}.json")));
            let out_file = root.join(format!("{stem}.callgrind"));
            let mut command = Command::new("valgrind");
            command
                .args(["--tool=callgrind", "--collect-atstart=no", "-q"])
                .arg(format!("--toggle-collect={TOGGLE}"))
                .arg(format!("--callgrind-out-file={}", out_file.display()))
                .arg(&exe)
                .args(target_args(options, kind, &[w], &dir, &json_path));
            let sample = run_command(command, &json_path)
                .with_context(|| format!("{stem} under callgrind"))?;
            let instructions = totals(&out_file)?;
            let ops = sample["workloads"]
                .as_array()
                .and_then(|rows| rows.iter().find(|r| r["workload"] == w.name()))
                .and_then(|r| r["ops"].as_u64())
                .with_context(|| format!("{stem}: no operation count in its JSON"))?;
            ensure!(ops > 0, "{stem}: no operations");
            eprintln!("  {stem}: {instructions} instructions, {ops} operations");
            out.insert((kind, w), (instructions, instructions as f64 / ops as f64));
        }
    }
    Ok(out)
}

/// The instruction total of a callgrind output file (its `totals:` or `summary:` line).
fn totals(path: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("{}: no totals line", path.display()))
}
