//! `popdb`: serves a PopDB database (`popdb --help`), or checks one offline
//! (`popdb check DIR`).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use popdb_server::{Cli, Command, Config};

/// The server allocates and frees a few small buffers per request (frames, log records,
/// memtable entries) across threads; glibc's malloc was about a fifth of its CPU time under
/// `popdb-bench server` (issue 7), where mimalloc's thread-local free lists cost a fraction.
/// Redis, the benchmark's peer, ships with jemalloc for the same reason.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("POPDB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Some(Command::Check { dir }) => check(&dir),
        None => serve(&cli),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("popdb: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(cli: &Cli) -> anyhow::Result<ExitCode> {
    let config = Config::load(&cli.serve)?;
    popdb_server::serve(config)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the Db's offline verifier on `dir` and prints its report; exit code 1 if it found
/// problems. It takes the directory's lock, so it refuses a directory a server holds.
fn check(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let report = popdb_db::check(dir, popdb_db::DbOptions::default())
        .map_err(|error| anyhow::anyhow!("checking {}: {error}", dir.display()))?;
    println!("{report}");
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
