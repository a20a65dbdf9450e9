//! The PopDB side: a `popdb` server in its own process (this binary's hidden `serve-popdb`,
//! which runs `popdb_server::serve`, the `popdb` binary's entry point), on a fresh data
//! directory and a port the kernel picks, driven by the load generator.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};
use popdb_protocol::Engine;
use popdb_server::{Config, ServeArgs};

use super::cpu::{Reading, cpu_seconds, own_cpu_seconds};
use super::load::{self, Figures, Op};
use super::settings::{Durability, Load, popdb_args};

/// The hidden `serve-popdb` subcommand: serves as `popdb` would with these flags.
///
/// # Errors
/// The configuration's or the server's.
pub fn serve(args: &ServeArgs) -> Result<()> {
    popdb_server::serve(Config::load(args)?)
}

/// A running PopDB server process; killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    /// Starts the server and waits until it prints the address it serves.
    fn start(exe: &Path, durability: Durability, data_dir: &Path) -> Result<Server> {
        let mut child = Command::new(exe)
            .arg("serve-popdb")
            .args(popdb_args(durability, data_dir))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {} serve-popdb", exe.display()))?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        // The server prints this line once it accepts connections; a server that exits
        // first closes its stdout, which ends the loop.
        let mut addr = None;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("popdb listening on ") {
                addr = Some(rest.trim().to_string());
                break;
            }
        }
        let Some(addr) = addr else {
            // Killing an exited child is harmless; one that closed its stdout and lives on
            // would otherwise be waited for forever.
            let _ = child.kill();
            let status = child.wait().context("waiting for the server")?;
            bail!("the popdb server exited before serving: {status}");
        };
        Ok(Server { child, addr })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL, like the Redis side: a clean shutdown would checkpoint, which is not
        // part of what is measured.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One PopDB run: start the server on `data_dir`, create the table, SET then GET.
///
/// # Errors
/// The server's start, a failed request.
pub fn run(
    exe: &Path,
    durability: Durability,
    engine: &str,
    data_dir: &Path,
    load: Load,
) -> Result<(Figures, Figures)> {
    let server = Server::start(exe, durability, data_dir)?;
    let pid = server.child.id();
    // One thread drives every connection, as redis-benchmark does by default: both load
    // generators get one core's worth at most, and the server the rest.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the load generator's runtime")?;
    let figures = runtime.block_on(drive(&server.addr, engine, load, Some(pid)));
    drop(server);
    figures
}

/// `--attach`: SET then GET on the server already at `addr`, on one thread as in [`run`];
/// the table is created unless it exists.
///
/// # Errors
/// A failed connection or request.
pub fn attach(addr: &str, engine: &str, load: Load) -> Result<(Figures, Figures)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the load generator's runtime")?;
    runtime.block_on(drive(addr, engine, load, None))
}

/// Connects, creates the table, runs the SET then the GET phase; reads `server`'s CPU time
/// around each phase if there is one.
async fn drive(
    addr: &str,
    engine: &str,
    load: Load,
    server: Option<u32>,
) -> Result<(Figures, Figures)> {
    let engine = if engine == "btree" {
        Engine::Btree
    } else {
        Engine::Lsm
    };
    let cpu = || server.and_then(cpu_seconds);
    let mut connections = load::connect(addr, load).await?;
    let first = connections.first_mut().context("no connection")?;
    load::create_table(first, engine, server.is_none()).await?;
    let reading = || Reading::now(cpu(), own_cpu_seconds());
    let start = reading();
    let (connections, mut set) = load::run(connections, Op::Set, load).await?;
    let after_set = reading();
    let (connections, mut get) = load::run(connections, Op::Get, load).await?;
    let after_get = reading();
    set.set_costs(&start, &after_set);
    get.set_costs(&after_set, &after_get);
    drop(connections);
    Ok((set, get))
}
