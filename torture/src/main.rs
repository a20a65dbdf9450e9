//! `popdb-torture`: PopDB's process crash loop. Each cycle starts a child process that opens
//! a real Db (on the real file system) and runs a random workload from several threads —
//! puts and deletes that write the same key of an LSM table and a B+tree table in one batch,
//! and transactions that increment a shared counter in both tables under a version
//! condition, some synced and some not — reporting every operation it starts and every
//! answer it gets on its standard output. The parent kills the child with SIGKILL at a random
//! moment, opens the Db itself and checks it against what was acknowledged: every
//! acknowledged write is there with its version (unless a later write to the key replaced
//! it), no batch or transaction is visible in part, no value appears that was never written,
//! versions only grow. A killed process keeps the page cache, so no-sync writes must survive
//! too.
//!
//! `cargo run --release --bin popdb-torture -- --cycles 50` prints
//! `N cycles, M acknowledged writes checked, 0 lost, 0 torn, 0 phantom` (or what it found)
//! and exits non-zero on any finding. The server mode (the same loop against the `popdb`
//! binary through the client) comes with the server.

#![forbid(unsafe_code)]

mod child;
mod ledger;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use popdb_testkit::Rng;

use crate::ledger::{Findings, Ledger};

#[derive(Parser, Debug)]
#[command(about = "PopDB's crash loop: a Db in a child process, killed at random, checked")]
struct Args {
    #[command(subcommand)]
    command: Option<Mode>,
    /// Kill-and-check cycles.
    #[arg(long, default_value_t = 20)]
    cycles: u64,
    /// Writer threads in the child.
    #[arg(long, default_value_t = 4)]
    writers: u64,
    /// The longest the child runs before it is killed, in milliseconds (each cycle picks a
    /// random time up to it).
    #[arg(long, default_value_t = 600)]
    kill_within_ms: u64,
    /// Seed of the cycles' random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The data directory (default: a fresh temporary directory, removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Runs the workload on `dir` until killed (the parent starts this).
    #[command(hide = true)]
    Child {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        writers: u64,
        #[arg(long)]
        cycle: u64,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Mode::Child {
        dir,
        seed,
        writers,
        cycle,
    }) = args.command
    {
        return match child::run(&dir, seed, writers, cycle) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("popdb-torture child: {error}");
                ExitCode::FAILURE
            }
        };
    }
    match parent(&args) {
        Ok(findings) if findings.is_clean() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("popdb-torture: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parent(args: &Args) -> Result<Findings, String> {
    let temp;
    let dir = if let Some(dir) = &args.dir {
        dir.clone()
    } else {
        temp = tempfile::tempdir().map_err(|e| format!("make a temporary directory: {e}"))?;
        temp.path().join("popdb-data")
    };
    let exe = std::env::current_exe().map_err(|e| format!("find this binary: {e}"))?;
    let mut rng = Rng(args.seed);
    let mut ledger = Ledger::default();
    let mut findings = Findings::default();
    for cycle in 0..args.cycles {
        let mut child = Command::new(&exe)
            .arg("child")
            .arg("--dir")
            .arg(&dir)
            .arg("--seed")
            .arg((args.seed << 20 | cycle).to_string())
            .arg("--writers")
            .arg(args.writers.to_string())
            .arg("--cycle")
            .arg(cycle.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start the child: {e}"))?;
        let stdout = child.stdout.take().ok_or("the child has no stdout")?;
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until the child has opened the Db, then let it run a random while.
        let mut lines = Vec::new();
        loop {
            match lines_rx.recv_timeout(Duration::from_mins(1)) {
                Ok(line) if line == "ready" => break,
                Ok(line) => lines.push(line),
                Err(_) => {
                    let _ = child.kill();
                    return Err(format!("cycle {cycle}: the child never opened the Db"));
                }
            }
        }
        let run_for = Duration::from_millis(1 + rng.below(args.kill_within_ms.max(1)));
        std::thread::sleep(run_for);
        // SIGKILL on Unix.
        child.kill().map_err(|e| format!("kill the child: {e}"))?;
        let status = child
            .wait()
            .map_err(|e| format!("wait for the child: {e}"))?;
        let _ = reader.join();
        lines.extend(lines_rx.try_iter());
        if status.success() {
            return Err(format!("cycle {cycle}: the child exited on its own"));
        }
        let events = ledger::parse(&lines).map_err(|e| format!("cycle {cycle}: {e}"))?;
        let found = ledger::read_db(&dir).map_err(|e| format!("cycle {cycle}: reopen: {e}"))?;
        let cycle_findings = ledger.check(&events, &found);
        if !cycle_findings.is_clean() {
            eprintln!("cycle {cycle}: {cycle_findings}");
        }
        findings.add(&cycle_findings);
    }
    let report = popdb_db::check(&dir, popdb_db::DbOptions::default())
        .map_err(|e| format!("offline check: {e}"))?;
    if !report.problems.is_empty() {
        findings.check_problems = report.problems.len() as u64;
        eprintln!("offline check: {report}");
    }
    println!("{} cycles, {findings}", args.cycles);
    Ok(findings)
}
