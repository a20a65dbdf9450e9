//! `popdb-cli shell`: an interactive prompt (rustyline, with history in
//! `~/.popdb_cli_history`) taking the same commands as the command line, without the
//! program name and global flags, which the shell's own invocation sets.

use clap::Parser;
use popdb_client::Client;
use rustyline::DefaultEditor;
use rustyline::config::Configurer;
use rustyline::error::ReadlineError;

use crate::args::{Global, ShellLine, split_words};
use crate::output::{Format, Output, render, render_error};

/// Most lines kept in the history file.
const HISTORY_MAX: usize = 1000;

/// Reads and runs commands until `exit`, `quit` or end of input.
pub fn run(
    runtime: &tokio::runtime::Runtime,
    client: &Client,
    global: &Global,
) -> anyhow::Result<()> {
    let format = Format {
        json: global.json,
        hex: global.hex,
    };
    let mut editor = DefaultEditor::new()?;
    editor.set_max_history_size(HISTORY_MAX)?;
    let history = std::env::var_os("HOME")
        .map(|home| std::path::PathBuf::from(home).join(".popdb_cli_history"));
    if let Some(path) = &history {
        // A missing history file is the first run's normal state.
        let _ = editor.load_history(path);
    }
    println!(
        "connected to {} ({}); type help, or exit",
        global.addr,
        client.server().server_version
    );
    loop {
        let line = match editor.readline("popdb> ") {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line);
        match line {
            "exit" | "quit" => break,
            "help" => {
                println!(
                    "{}",
                    <ShellLine as clap::CommandFactory>::command().render_help()
                );
                continue;
            }
            _ => {}
        }
        let printed = match run_line(runtime, client, global, line) {
            Ok(Some(Output::Printed) | None) => Ok(()),
            Ok(Some(output)) => crate::print_line(&render(&output, format)),
            Err(e) => crate::print_line(&render_error(&e, format)),
        };
        printed?;
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(())
}

/// Runs one line; `None` if clap printed help or usage instead.
fn run_line(
    runtime: &tokio::runtime::Runtime,
    client: &Client,
    global: &Global,
    line: &str,
) -> anyhow::Result<Option<crate::output::Output>> {
    let words = split_words(line)?;
    let parsed = match ShellLine::try_parse_from(words) {
        Ok(parsed) => parsed,
        Err(e) => {
            // Help, usage and parse errors: clap's own rendering.
            crate::print_line(&e.render().to_string())?;
            return Ok(None);
        }
    };
    let output = runtime.block_on(crate::commands::run(client, global, &parsed.command))?;
    Ok(Some(output))
}
