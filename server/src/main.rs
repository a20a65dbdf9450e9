//! `popdb`: serves a PopDB database (`popdb --help`), or checks one offline
//! (`popdb check DIR`).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use popdb_server::{Cli, Command, Config};

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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("popdb")
        .build()?;
    runtime.block_on(popdb_server::run(config))?;
    Ok(ExitCode::SUCCESS)
}

fn check(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    anyhow::bail!(
        "popdb check {}: the offline verifier is not available in this build",
        dir.display()
    )
}
