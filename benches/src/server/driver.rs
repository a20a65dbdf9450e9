//! `popdb-bench server`: for every case (durability x pipeline depth), `pairs` rounds of one
//! PopDB run and one Redis run, alternating which goes first (so that a drift of the machine
//! falls on both sides), each on a fresh directory; then a table, one
//! `ratio <case>.set_vs_redis <median> min=<..> max=<..>` and one `.get_vs_redis` line per
//! case (PopDB's operations per second over Redis's, per round; higher is better), and a
//! JSON file under the output directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use super::load::{Figures, Op};
use super::settings::{
    Case, Durability, ServerBench, popdb_args, redis_args, redis_benchmark_args,
};
use super::{popdb_side, redis_side};
use crate::machine;
use crate::measure::spread;
use crate::scratch;

/// One run's two phases.
#[derive(Clone, Debug)]
struct Sample {
    set: Figures,
    get: Figures,
}

impl Sample {
    fn phase(&self, op: Op) -> &Figures {
        match op {
            Op::Set => &self.set,
            Op::Get => &self.get,
        }
    }

    fn to_json(&self) -> Value {
        json!({ "set": self.set.to_json(), "get": self.get.to_json() })
    }
}

/// Both sides' runs of one case, round by round.
#[derive(Debug)]
struct Series {
    case: Case,
    popdb: Vec<Sample>,
    redis: Vec<Sample>,
}

/// One ratio line.
#[derive(Debug)]
struct Ratio {
    name: String,
    ratios: Vec<f64>,
    median: f64,
    min: f64,
    max: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Popdb,
    Redis,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Popdb => "popdb",
            Side::Redis => "redis",
        }
    }
}

/// Runs the comparison: the processes, the table, the ratio lines, the JSON.
///
/// # Errors
/// A missing redis-server or redis-benchmark, a data directory on tmpfs, a run that fails,
/// and with `--smoke` a ratio line missing.
pub fn run(bench: &ServerBench) -> Result<()> {
    if let Some(addr) = &bench.attach {
        return attach(bench, addr);
    }
    let redis_version = tool_version("redis-server")?;
    let benchmark_version = tool_version("redis-benchmark")?;
    let unix = scratch::unix_seconds();
    let root = scratch::create_run_dir(&bench.dir, "server", unix)?;
    let fs = machine::file_system_of(&root)?;
    if fs.is_ram_backed() {
        let _ = std::fs::remove_dir_all(&root);
        anyhow::bail!(
            "{} is on {}: fsync is free there, so durability settings mean nothing; pass --dir",
            root.display(),
            fs.name
        );
    }
    println!(
        "popdb-bench server: {} connections, pipeline {:?}, {} requests per phase (SET then GET) \
         on {} keys, {}-byte values, {} pairs, durability {}; PopDB {} table; {redis_version}; \
         data {} on {}",
        bench.connections,
        bench.pipelines,
        bench.requests,
        bench.keys,
        bench.value_size,
        bench.pairs,
        bench
            .durabilities
            .iter()
            .map(|d| d.name())
            .collect::<Vec<_>>()
            .join(","),
        bench.engine,
        root.display(),
        fs.name
    );
    let result = run_cases(bench, &root);
    if let Err(error) = std::fs::remove_dir_all(&root) {
        eprintln!("note: could not remove {}: {error}", root.display());
    }
    let series = result?;
    let ratios = ratios(&series)?;
    print_table(&series);
    for r in &ratios {
        println!(
            "ratio {} {:.3} min={:.3} max={:.3}",
            r.name, r.median, r.min, r.max
        );
    }
    let json = to_json(
        bench,
        unix,
        &fs,
        &series,
        &ratios,
        &redis_version,
        &benchmark_version,
    );
    let path = write_json(&bench.out, unix, &json)?;
    println!("json {}", path.display());
    if bench.smoke {
        smoke_check(bench, &series, &ratios)?;
    }
    Ok(())
}

/// `--attach`: every case's load on the server at `addr`, one run each, figures printed.
fn attach(bench: &ServerBench, addr: &str) -> Result<()> {
    for case in bench.cases() {
        let (set, get) = popdb_side::attach(addr, &bench.engine, bench.load(case))
            .with_context(|| format!("{}: popdb at {addr}", case.name()))?;
        for (op, figures) in [(Op::Set, set), (Op::Get, get)] {
            println!(
                "{} {} {:.0}/s p50 {:.3} ms p99 {:.3} ms client {:.2} us/op",
                case.name(),
                op.name(),
                figures.ops_per_sec,
                figures.p50_ms,
                figures.p99_ms,
                figures.client_cpu_us_per_op.unwrap_or(f64::NAN)
            );
        }
    }
    Ok(())
}

/// `<tool> --version`, or an error saying how to install it.
fn tool_version(tool: &str) -> Result<String> {
    let output = Command::new(tool)
        .arg("--version")
        .output()
        .with_context(|| {
            format!("{tool} not found: install it with `apt-get install -y redis-server`")
        })?;
    ensure!(
        output.status.success(),
        "{tool} --version: {}",
        output.status
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn run_cases(bench: &ServerBench, root: &Path) -> Result<Vec<Series>> {
    let exe = std::env::current_exe().context("find this binary")?;
    let mut all = Vec::new();
    for case in bench.cases() {
        let mut series = Series {
            case,
            popdb: Vec::new(),
            redis: Vec::new(),
        };
        for round in 0..bench.pairs {
            let order = if round % 2 == 0 {
                [Side::Popdb, Side::Redis]
            } else {
                [Side::Redis, Side::Popdb]
            };
            for side in order {
                let dir = root.join(format!("{}-{round}-{}", case.name(), side.name()));
                let sample = run_one(bench, &exe, case, side, &dir)
                    .with_context(|| format!("{} round {round}: {}", case.name(), side.name()))?;
                eprintln!(
                    "  {:<18} round {}/{} {:<5} set {:>9.0}/s  get {:>9.0}/s",
                    case.name(),
                    round + 1,
                    bench.pairs,
                    side.name(),
                    sample.set.ops_per_sec,
                    sample.get.ops_per_sec
                );
                match side {
                    Side::Popdb => series.popdb.push(sample),
                    Side::Redis => series.redis.push(sample),
                }
                if let Err(error) = std::fs::remove_dir_all(&dir) {
                    eprintln!("note: could not remove {}: {error}", dir.display());
                }
                rustix::fs::sync();
                std::thread::sleep(bench.settle);
            }
        }
        all.push(series);
    }
    Ok(all)
}

fn run_one(bench: &ServerBench, exe: &Path, case: Case, side: Side, dir: &Path) -> Result<Sample> {
    let load = bench.load(case);
    let (set, get) = match side {
        Side::Popdb => popdb_side::run(exe, case.durability, &bench.engine, dir, load)?,
        Side::Redis => redis_side::run(case.durability, dir, load)?,
    };
    Ok(Sample { set, get })
}

/// PopDB over Redis per round, for both phases of every case.
fn ratios(series: &[Series]) -> Result<Vec<Ratio>> {
    let mut out = Vec::new();
    for s in series {
        for op in [Op::Set, Op::Get] {
            let ratios: Vec<f64> = s
                .popdb
                .iter()
                .zip(&s.redis)
                .map(|(p, r)| p.phase(op).ops_per_sec / r.phase(op).ops_per_sec)
                .collect();
            let name = format!("{}.{}_vs_redis", s.case.name(), op.name());
            ensure!(!ratios.is_empty(), "{name}: no pairs measured");
            ensure!(
                ratios.iter().all(|r| r.is_finite() && *r > 0.0),
                "{name}: a ratio is not a positive number: {ratios:?}"
            );
            let spread = spread(&ratios);
            out.push(Ratio {
                name,
                ratios,
                median: spread.median,
                min: spread.min,
                max: spread.max,
            });
        }
    }
    Ok(out)
}

fn print_table(series: &[Series]) {
    println!();
    println!(
        "{:<18} {:<4} {:<6} {:>10} {:>10} {:>10} {:>9} {:>9} {:>10} {:>10} {:>8}",
        "case",
        "op",
        "side",
        "ops/s",
        "min",
        "max",
        "p50 ms",
        "p99 ms",
        "srv us/op",
        "cli us/op",
        "steal %"
    );
    for s in series {
        for op in [Op::Set, Op::Get] {
            for (side, samples) in [(Side::Popdb, &s.popdb), (Side::Redis, &s.redis)] {
                let of = |get: fn(&Figures) -> f64| {
                    let values: Vec<f64> = samples.iter().map(|x| get(x.phase(op))).collect();
                    spread(&values)
                };
                let ops = of(|f| f.ops_per_sec);
                let cpu = of(|f| f.server_cpu_us_per_op.unwrap_or(f64::NAN)).median;
                let client = of(|f| f.client_cpu_us_per_op.unwrap_or(f64::NAN)).median;
                let steal = of(|f| f.steal_percent.unwrap_or(f64::NAN)).max;
                println!(
                    "{:<18} {:<4} {:<6} {:>10.0} {:>10.0} {:>10.0} {:>9.3} {:>9.3} {:>10.1} {:>10.1} {:>8.1}",
                    s.case.name(),
                    op.name(),
                    side.name(),
                    ops.median,
                    ops.min,
                    ops.max,
                    of(|f| f.p50_ms).median,
                    of(|f| f.p99_ms).median,
                    cpu,
                    client,
                    steal,
                );
            }
        }
    }
    println!();
}

fn to_json(
    bench: &ServerBench,
    unix: u64,
    fs: &machine::FsInfo,
    series: &[Series],
    ratios: &[Ratio],
    redis_version: &str,
    benchmark_version: &str,
) -> Value {
    let placeholder = PathBuf::from("<fresh directory>");
    let by_durability = |f: &dyn Fn(Durability) -> Vec<String>| {
        bench
            .durabilities
            .iter()
            .map(|&d| (d.name().to_string(), json!(f(d))))
            .collect::<serde_json::Map<_, _>>()
    };
    json!({
        "benchmark": "server",
        "started_unix": unix,
        "commit": machine::git_commit(),
        "machine": {
            "kernel": machine::kernel(),
            "cpus": machine::cpus(),
            "cpu_model": machine::cpu_model(),
            "memory_bytes": machine::memory_bytes(),
            "filesystem": fs.to_json(),
        },
        "options": bench.to_json(),
        "settings": {
            "popdb": {
                "process": "popdb-bench serve-popdb: popdb_server::serve, the popdb binary's entry point",
                "args": by_durability(&|d| popdb_args(d, &placeholder)),
                "table": { "name": super::settings::TABLE, "engine": bench.engine, "compression": "none", "bloom_bits_per_key": 10, "page_size": 4096 },
                "load_generator": "popdb-protocol on plain sockets, one tokio current-thread runtime, one task per connection; as redis-benchmark: a batch of `pipeline` requests in one write, the next once all are answered; every response checked",
            },
            "redis": {
                "version": redis_version,
                "redis_benchmark_version": benchmark_version,
                "args": by_durability(&|d| redis_args(d, 0, &placeholder)),
                "redis_benchmark_args": bench.cases().iter().map(|&c| (c.name(), json!(["set", "get"].map(|t| redis_benchmark_args(bench.load(c), 0, t))))).collect::<serde_json::Map<_, _>>(),
                "port": "a free loopback port (0 above)",
            },
        },
        "samples": series.iter().map(|s| (s.case.name(), json!({
            "durability": s.case.durability.name(),
            "pipeline": s.case.pipeline,
            "popdb": s.popdb.iter().map(Sample::to_json).collect::<Vec<_>>(),
            "redis": s.redis.iter().map(Sample::to_json).collect::<Vec<_>>(),
        }))).collect::<serde_json::Map<_, _>>(),
        "comparisons": ratios.iter().map(|r| json!({
            "name": r.name,
            "metric": "ops_per_sec, popdb over redis",
            "ratios": r.ratios,
            "median": r.median,
            "min": r.min,
            "max": r.max,
        })).collect::<Vec<_>>(),
    })
}

fn write_json(out: &Path, unix: u64, json: &Value) -> Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let path = out.join(format!("server-{unix}.json"));
    let mut bytes = serde_json::to_vec_pretty(json)?;
    bytes.push(b'\n');
    std::fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// The smoke run's claims: every case printed both ratio lines, and PopDB's GETs found
/// the keys its SETs wrote.
fn smoke_check(bench: &ServerBench, series: &[Series], ratios: &[Ratio]) -> Result<()> {
    let expected = bench.cases().len() * 2;
    ensure!(
        ratios.len() == expected,
        "smoke: {} ratio lines, expected {expected}",
        ratios.len()
    );
    for s in series {
        for sample in &s.popdb {
            ensure!(
                sample.get.found.unwrap_or(0) > 0,
                "smoke: {}: PopDB's GETs found none of the keys its SETs wrote",
                s.case.name()
            );
        }
    }
    println!("smoke: {expected} ratio lines printed");
    Ok(())
}
