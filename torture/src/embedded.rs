//! The embedded mode's loop: each cycle starts this binary's hidden `child` subcommand on
//! the data directory (child.rs), reads its lines until a random moment, SIGKILLs it, opens
//! the Db in this process and checks it against the ledger. After the last cycle it runs
//! the Db's offline check.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use popdb_testkit::Rng;

use crate::ledger::{self, Findings, Ledger};
use crate::{Args, Mode, print_progress, print_replay};

/// Runs `args.cycles` kill-and-check cycles of a Db in a child process on `dir`.
pub(crate) fn run(args: &Args, dir: &Path) -> Result<Findings, String> {
    let exe = std::env::current_exe().map_err(|e| format!("find this binary: {e}"))?;
    let mut rng = Rng(args.seed);
    let mut ledger = Ledger::default();
    let mut findings = Findings::default();
    for cycle in 0..args.cycles {
        let mut child = Command::new(&exe)
            .arg("child")
            .arg("--dir")
            .arg(dir)
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
        if args.canary {
            ledger::forge_acknowledged_put(&mut lines, cycle);
        }
        let events = ledger::parse(&lines).map_err(|e| format!("cycle {cycle}: {e}"))?;
        let found = ledger::read_db(dir).map_err(|e| format!("cycle {cycle}: reopen: {e}"))?;
        let cycle_findings = ledger.check(&events, &found);
        if !cycle_findings.is_clean() {
            eprintln!("cycle {cycle}: {cycle_findings}");
            print_replay(args, Mode::Embedded, cycle);
        }
        findings.add(&cycle_findings);
        print_progress(Mode::Embedded, cycle, args.cycles, &findings);
    }
    let report = popdb_db::check(dir, popdb_db::DbOptions::default())
        .map_err(|e| format!("offline check: {e}"))?;
    if !report.problems.is_empty() {
        findings.check_problems = report.problems.len() as u64;
        eprintln!("offline check: {report}");
    }
    Ok(findings)
}
