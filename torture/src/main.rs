//! `popdb-torture`: PopDB's process crash loop, in two modes that share one ledger and one
//! set of checks (ledger.rs).
//!
//! - **embedded** (the default): each cycle starts a child process that opens a real Db (on
//!   the real file system) and runs a random workload from several threads, reporting every
//!   operation it starts and every answer it gets on its standard output; the parent kills
//!   the child with SIGKILL at a random moment, opens the Db itself and checks it.
//! - **server**: each cycle starts the real `popdb` binary on a free loopback port, with the
//!   sync policy alternating between `sync` and `nosync` from cycle to cycle (the policy is
//!   per server: the wire has no per-request durability); several client threads run the
//!   same workload through popdb-client, each on its own connection; the parent SIGKILLs the
//!   server at a random moment, restarts it on the same directory (now and then killing it
//!   again while it recovers), scans both tables through the client and checks them. After
//!   the last cycle it runs `popdb check DIR`, the offline verifier.
//!
//! The workload, in both modes: puts and deletes that write the same key of an LSM table and
//! a B+tree table in one batch, and transactions that increment a counter in both tables
//! under a version condition. The checks: every acknowledged write is there with its version
//! (unless a later write to the key replaced it), no batch or transaction is visible in part,
//! no value appears that was never written, versions only grow. An operation whose answer
//! never came (the kill) or says the outcome is unknown may or may not be there; a conflict
//! certainly did not apply. A killed process keeps the page cache, so no-sync writes must
//! survive too (power loss is the simulated file system's job, not this loop's).
//!
//! `cargo run --release --bin popdb-torture -- --cycles 50` (embedded) and, after
//! `cargo build --release --bin popdb`, `cargo run --release --bin popdb-torture -- --mode
//! server --cycles 50` print `N cycles, M acknowledged writes checked, 0 lost, 0 torn, 0
//! phantom` (or what they found) and exit non-zero on any finding; a failure prints the seed
//! and cycle to replay with. `--canary` forges an acknowledged write per cycle that the check
//! must report lost: a canary run that passes means the harness is broken.

#![forbid(unsafe_code)]

mod child;
mod embedded;
mod ledger;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::ledger::Findings;

#[derive(Parser, Debug)]
#[command(about = "PopDB's crash loop: a Db or a popdb server killed at random, then checked")]
struct Args {
    #[command(subcommand)]
    command: Option<Hidden>,
    /// What to kill: a Db in a child process, the `popdb` server, or one run of each.
    #[arg(long, value_enum, default_value_t = Mode::Embedded)]
    mode: Mode,
    /// Kill-and-check cycles (per mode).
    #[arg(long, default_value_t = 20)]
    cycles: u64,
    /// Writer threads (embedded: in the child; server: client threads, one connection each).
    #[arg(long, default_value_t = 4)]
    writers: u64,
    /// The longest the workload runs before the kill, in milliseconds (each cycle picks a
    /// random time up to it).
    #[arg(long, default_value_t = 600)]
    kill_within_ms: u64,
    /// Seed of the cycles' random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The data directory (default: a fresh temporary directory, removed at the end). With
    /// `--mode both`, each mode uses a subdirectory.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Canary: forge one acknowledged write per cycle that was never sent. The run must
    /// report it lost and fail; if it passes, the harness is broken.
    #[arg(long)]
    canary: bool,
    /// Server mode: the `popdb` binary (default: the one next to this executable, which
    /// `cargo build --bin popdb` with the same profile puts there).
    #[arg(long, value_name = "PATH")]
    popdb_bin: Option<PathBuf>,
}

/// Which process the loop kills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// A Db opened in a child process.
    Embedded,
    /// The `popdb` server, driven through popdb-client.
    Server,
    /// Embedded, then server.
    Both,
}

impl Mode {
    /// The mode's name as `--mode` spells it.
    fn name(self) -> &'static str {
        match self {
            Mode::Embedded => "embedded",
            Mode::Server => "server",
            Mode::Both => "both",
        }
    }
}

#[derive(Subcommand, Debug)]
enum Hidden {
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
    if let Some(Hidden::Child {
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
    let modes: &[Mode] = match args.mode {
        Mode::Both => &[Mode::Embedded, Mode::Server],
        Mode::Embedded => &[Mode::Embedded],
        Mode::Server => &[Mode::Server],
    };
    let mut clean = true;
    for &mode in modes {
        match run_mode(&args, mode) {
            Ok(findings) => clean &= findings.is_clean(),
            Err(error) => {
                eprintln!("popdb-torture ({} mode): {error}", mode.name());
                clean = false;
            }
        }
    }
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs one mode's cycles in its data directory and prints its summary line.
fn run_mode(args: &Args, mode: Mode) -> Result<Findings, String> {
    let temp;
    let base = if let Some(dir) = &args.dir {
        dir.clone()
    } else {
        temp = tempfile::tempdir().map_err(|e| format!("make a temporary directory: {e}"))?;
        temp.path().to_path_buf()
    };
    let dir = match (args.dir.is_some(), args.mode) {
        (true, Mode::Both) => base.join(mode.name()),
        (true, _) => base,
        (false, _) => base.join("popdb-data"),
    };
    let findings = match mode {
        Mode::Server => server::run(args, &dir)?,
        _ => embedded::run(args, &dir)?,
    };
    let label = if args.mode == Mode::Both {
        format!("{} mode: ", mode.name())
    } else {
        String::new()
    };
    println!("{label}{} cycles, {findings}", args.cycles);
    Ok(findings)
}

/// Tells how to run the same cycles again, after a finding in `cycle`. The kill times come
/// from the seed; what the workload managed before them depends on the machine, so a replay
/// repeats the same choices, not necessarily the same interleaving.
fn print_replay(args: &Args, mode: Mode, cycle: u64) {
    eprintln!(
        "replay: popdb-torture --mode {} --seed {} --cycles {} --writers {} --kill-within-ms {}{} \
         (finding in cycle {cycle})",
        mode.name(),
        args.seed,
        cycle + 1,
        args.writers,
        args.kill_within_ms,
        if args.canary { " --canary" } else { "" },
    );
}

/// Every 100 cycles of a long run, says how far it got (standard error, so that standard
/// output stays the summary alone).
fn print_progress(mode: Mode, cycle: u64, cycles: u64, findings: &Findings) {
    let done = cycle + 1;
    if done.is_multiple_of(100) && done < cycles {
        eprintln!(
            "{} mode: {done} of {cycles} cycles, {findings}",
            mode.name()
        );
    }
}
