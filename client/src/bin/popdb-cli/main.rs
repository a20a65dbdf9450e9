//! popdb-cli: PopDB's command line. One-shot subcommands (`ping`, `create-table`, `put`,
//! `get`, `del`, `scan`, `tables`, `describe`, `drop-table`, `stats`, `txn`, `load`) and an
//! interactive `shell`; output for people, or JSON with `--json`. Run `popdb-cli --help`.
//!
//! The grammar is args.rs, running a command commands.rs, printing output.rs.

#![forbid(unsafe_code)]

mod args;
mod commands;
mod load;
mod output;
mod shell;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use popdb_client::{Client, ClientOptions};

use crate::args::{Cli, Command};
use crate::output::{Format, Output, render, render_error};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = Format {
        json: cli.global.json,
        hex: cli.global.hex,
    };
    match run(&cli, format) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`popdb-cli scan t | head`): nobody is left to tell.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let message = render_error(&e, format);
            if format.json {
                let _ = print_line(&message);
            } else {
                eprintln!("{message}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Prints `text` and a newline on stdout; unlike `println!`, returns a closed pipe as an
/// error instead of panicking.
pub fn print_line(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Prints `text` on stdout as it is; as [`print_line`] on a closed pipe.
pub fn print_raw(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

fn run(cli: &Cli, format: Format) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let global = &cli.global;
    let options = ClientOptions {
        token: global.token.as_ref().map(|t| t.as_bytes().to_vec()),
        request_timeout: Duration::from_millis(global.timeout_ms),
        ..ClientOptions::default()
    };
    let client = runtime
        .block_on(Client::connect(&global.addr, options))
        .with_context(|| format!("connecting to {}", global.addr))?;
    if cli.command == Command::Shell {
        return shell::run(&runtime, &client, global);
    }
    let output = runtime.block_on(commands::run(&client, global, &cli.command))?;
    if output != Output::Printed {
        print_line(&render(&output, format))?;
    }
    Ok(())
}
