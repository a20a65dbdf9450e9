//! The server mode's loop: the real `popdb` binary, killed with SIGKILL at random moments.
//!
//! A cycle: start `popdb` on the data directory (loopback, port 0: the server prints the
//! port it got), with the sync policy alternating per cycle; now and then kill it once
//! while it starts, to exercise recovery interrupted by a crash; check the previous cycle's
//! ledger against scans of both tables through the client; then run the workload from
//! `--writers` client threads (one connection each) and kill the server at a random moment.
//! One restart thus serves both as the previous cycle's check and as the next cycle's
//! server. After the last cycle's check the server is killed once more and `popdb check
//! DIR` verifies the directory offline.
//!
//! The client threads write the same lines the embedded child prints (child.rs), so
//! ledger.rs reads and judges both modes alike. How an answer maps to the ledger:
//! acknowledged (with its LSN), a conflict or an error that says the request was never sent
//! or refused (certainly not applied), or no answer line at all for a lost connection, a
//! timeout or an unknown outcome (in doubt). A thread stops after an answer in doubt, so
//! each thread has at most one operation in doubt per cycle, as the ledger assumes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use popdb_client::{
    BlockingClient, ClientOptions, Engine, Error, ScanOptions, TableOptions, TxnOptions, WriteBatch,
};
use popdb_db::EngineKind;
use popdb_io::{Clock, SystemClock};
use popdb_testkit::Rng;

use crate::child::{KEYS_PER_THREAD, SEQ_PER_CYCLE, TABLES, key, parse_count, value};
use crate::ledger::{self, Findings, Found, Ledger, Rows};
use crate::{Args, Mode, print_progress, print_replay};

/// How long a server may take to recover and listen before the loop gives up on it.
const READY_TIMEOUT: Duration = Duration::from_mins(2);
/// A client request's bound; a killed server fails requests at once, so this only
/// matters if the server hangs.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// One restart in this many is killed while the server starts (recovery interrupted).
const KILL_WHILE_STARTING_ONE_IN: u64 = 4;

/// Runs `args.cycles` kill-and-check cycles of the `popdb` server on `dir`.
pub(crate) fn run(args: &Args, dir: &Path) -> Result<Findings, String> {
    let mut state = Loop {
        args,
        dir,
        bin: popdb_bin(args)?,
        clock: SystemClock::new(),
        rng: Rng(args.seed),
        ledger: Ledger::default(),
        findings: Findings::default(),
        ready_ms: Vec::new(),
        killed_while_starting: 0,
        pending: None,
    };
    for cycle in 0..=args.cycles {
        if let Err(error) = state.cycle(cycle) {
            print_replay(args, Mode::Server, cycle);
            return Err(format!("cycle {cycle}: {error}"));
        }
    }
    state.findings.check_problems += offline_check(&state.bin, dir)?;
    print_restarts(&mut state.ready_ms, state.killed_while_starting);
    Ok(state.findings)
}

/// The server loop's state across cycles.
struct Loop<'a> {
    args: &'a Args,
    dir: &'a Path,
    bin: PathBuf,
    clock: SystemClock,
    rng: Rng,
    ledger: Ledger,
    findings: Findings,
    /// How long each start took to listen, in milliseconds.
    ready_ms: Vec<u64>,
    killed_while_starting: u64,
    /// The lines of the cycle whose kill the next start recovers from.
    pending: Option<Vec<String>>,
}

impl Loop<'_> {
    /// Restarts the server, checks the previous cycle, and (unless this is the extra cycle
    /// after the last) runs this cycle's workload until the kill.
    fn cycle(&mut self, cycle: u64) -> Result<(), String> {
        // The policy the server runs this cycle's workload with; the check of the previous
        // cycle runs under it too, which makes no difference to reads.
        let sync = if cycle.is_multiple_of(2) {
            "sync"
        } else {
            "nosync"
        };
        if cycle > 0 && self.rng.chance(KILL_WHILE_STARTING_ONE_IN) {
            let typical_ms = self.ready_ms.last().copied().unwrap_or(20);
            let delay = Duration::from_millis(self.rng.below(typical_ms + 1));
            kill_while_starting(&self.bin, self.dir, sync, delay)?;
            self.killed_while_starting += 1;
        }
        let started = self.clock.now();
        let mut server = Server::start(&self.bin, self.dir, sync)?;
        self.ready_ms
            .push(self.clock.now().saturating_sub(started).as_millis() as u64);
        let client = connect(&server.addr)?;
        if let Some(lines) = self.pending.take() {
            let events = ledger::parse(&lines)?;
            let found = read_tables(&client)?;
            let findings = self.ledger.check(&events, &found);
            if !findings.is_clean() {
                eprintln!("cycle {}: {findings}", cycle - 1);
                print_replay(self.args, Mode::Server, cycle - 1);
            }
            self.findings.add(&findings);
            print_progress(Mode::Server, cycle - 1, self.args.cycles, &self.findings);
        }
        if cycle == self.args.cycles {
            drop(client);
            return server.kill();
        }
        ensure_tables(&client)?;
        drop(client);
        let kill_within_ms = self.args.kill_within_ms.max(1);
        let run_for = Duration::from_millis(1 + self.rng.below(kill_within_ms));
        let mut lines = workload(self.args, &mut server, cycle, run_for)?;
        if self.args.canary {
            ledger::forge_acknowledged_put(&mut lines, cycle);
        }
        self.pending = Some(lines);
        Ok(())
    }
}

/// The `popdb` binary: `--popdb-bin`, or the one next to this executable.
fn popdb_bin(args: &Args) -> Result<PathBuf, String> {
    if let Some(path) = &args.popdb_bin {
        return if path.is_file() {
            Ok(path.clone())
        } else {
            Err(format!("--popdb-bin {}: no such file", path.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("find this binary: {e}"))?;
    let bin = exe.with_file_name(format!("popdb{}", std::env::consts::EXE_SUFFIX));
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "no popdb binary at {}: build it with the same profile first (`cargo build \
             --release -p popdb-server --bin popdb`, or `--profile checked`), or pass \
             --popdb-bin PATH",
            bin.display()
        ))
    }
}

/// A running `popdb` process and the address it serves. Dropping it kills the process, so
/// a cycle that fails half-way leaves no server behind.
struct Server {
    process: Child,
    addr: String,
    reaped: bool,
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

impl Server {
    /// Starts `popdb` on `dir` and waits until it listens.
    fn start(bin: &Path, dir: &Path, sync: &str) -> Result<Server, String> {
        let mut process = spawn(bin, dir, sync)?;
        let stdout = process.stdout.take().ok_or("the server has no stdout")?;
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        // Drains the server's standard output for its whole life, so that a later line
        // never finds the pipe closed.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = lines_tx.send(line);
            }
        });
        loop {
            match lines_rx.recv_timeout(READY_TIMEOUT) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("popdb listening on ") {
                        let addr = addr.trim().to_owned();
                        return Ok(Server {
                            process,
                            addr,
                            reaped: false,
                        });
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = process.wait().map_err(|e| format!("wait for popdb: {e}"))?;
                    return Err(format!(
                        "popdb exited before listening ({status}); its standard error above \
                         says why"
                    ));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = process.kill();
                    let _ = process.wait();
                    return Err(format!(
                        "popdb did not listen within {READY_TIMEOUT:?} (recovery hung?)"
                    ));
                }
            }
        }
    }

    /// SIGKILLs the server and reaps it.
    fn kill(&mut self) -> Result<(), String> {
        self.process
            .kill()
            .map_err(|e| format!("kill popdb: {e}"))?;
        let status = self
            .process
            .wait()
            .map_err(|e| format!("wait for popdb: {e}"))?;
        self.reaped = true;
        if status.success() {
            return Err("popdb exited on its own before the kill".to_owned());
        }
        Ok(())
    }
}

/// Starts `popdb` serving `dir` on a loopback port the OS picks, without the metrics
/// endpoint (its fixed default port would collide with other runs), logging warnings only.
fn spawn(bin: &Path, dir: &Path, sync: &str) -> Result<Child, String> {
    Command::new(bin)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--metrics-listen")
        .arg("off")
        .arg("--data-dir")
        .arg(dir)
        .arg("--sync")
        .arg(sync)
        .env("POPDB_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start {}: {e}", bin.display()))
}

/// Starts `popdb` and SIGKILLs it after `delay`: before, during or just after its
/// recovery, whichever `delay` falls on.
fn kill_while_starting(bin: &Path, dir: &Path, sync: &str, delay: Duration) -> Result<(), String> {
    let mut process = spawn(bin, dir, sync)?;
    std::thread::sleep(delay);
    let _ = process.kill();
    process
        .wait()
        .map_err(|e| format!("wait for popdb killed while starting: {e}"))?;
    Ok(())
}

fn connect(addr: &str) -> Result<BlockingClient, String> {
    let options = ClientOptions::default()
        .with_request_timeout(REQUEST_TIMEOUT)
        // A broken connection means the server was killed: nothing left to send to.
        .with_reconnect(false);
    BlockingClient::connect(addr, options).map_err(|e| format!("connect to {addr}: {e}"))
}

/// The wire's name for an engine.
fn wire_engine(kind: EngineKind) -> Engine {
    match kind {
        EngineKind::Lsm => Engine::Lsm,
        EngineKind::Btree => Engine::Btree,
    }
}

/// Creates the tables the first time; later they must still be there with their engines.
fn ensure_tables(client: &BlockingClient) -> Result<(), String> {
    for (name, kind) in TABLES {
        let engine = wire_engine(kind);
        match client.describe_table(name) {
            Ok(info) if info.options.engine == engine => {}
            Ok(info) => return Err(format!("table {name} came back as {info:?}")),
            Err(Error::UnknownTable { .. }) => {
                client
                    .create_table(name, TableOptions::new(engine))
                    .map_err(|e| format!("create table {name}: {e}"))?;
            }
            Err(e) => return Err(format!("describe table {name}: {e}")),
        }
    }
    Ok(())
}

/// Scans both tables whole through the client.
fn read_tables(client: &BlockingClient) -> Result<Found, String> {
    let mut tables = BTreeMap::new();
    for (table, _) in TABLES {
        let entries = client
            .block_on(client.client().scan(table, ScanOptions::new()).collect())
            .map_err(|e| format!("scan {table} after the restart: {e}"))?;
        let rows: Rows = entries
            .into_iter()
            .map(|e| (e.key, (e.value, e.version)))
            .collect();
        tables.insert(table, rows);
    }
    Ok(Found::new(tables))
}

/// The lines of one cycle's client threads, in the order they were said.
#[derive(Default)]
struct Log(Mutex<Vec<String>>);

impl Log {
    fn say(&self, line: String) {
        // A push leaves the vector whole, so a poisoned lock carries nothing.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(line);
    }
}

/// Runs the client threads against `server` for `run_for`, then SIGKILLs it; returns the
/// threads' lines.
fn workload(
    args: &Args,
    server: &mut Server,
    cycle: u64,
    run_for: Duration,
) -> Result<Vec<String>, String> {
    // Connected before the clock starts, so that every thread is writing when the kill
    // comes, even for the shortest runs.
    let clients = (0..args.writers)
        .map(|_| connect(&server.addr))
        .collect::<Result<Vec<_>, _>>()?;
    let log = Log::default();
    let seed = args.seed << 20 | cycle;
    let killed = std::thread::scope(|scope| {
        for (thread, client) in (0u64..).zip(clients) {
            let log = &log;
            scope.spawn(move || writer(&client, log, seed, thread, cycle));
        }
        std::thread::sleep(run_for);
        // The threads see their connections break and stop; the scope joins them.
        server.kill()
    });
    killed?;
    Ok(log
        .0
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner))
}

/// One client thread: the embedded child's workload (child.rs), through the client, until
/// an answer leaves the outcome in doubt or the connection is gone.
fn writer(client: &BlockingClient, log: &Log, seed: u64, thread: u64, cycle: u64) {
    let mut rng = Rng(seed ^ (thread + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    for i in 0.. {
        let seq = cycle * SEQ_PER_CYCLE + i;
        let choice = rng.below(20);
        let result = if choice < 15 {
            let j = rng.below(KEYS_PER_THREAD);
            let key = key(thread, j);
            let mut batch = WriteBatch::new();
            if choice < 12 {
                log.say(format!("S {thread} {seq} P {j}"));
                let value = value(thread, seq);
                for (table, _) in TABLES {
                    batch.put(table, key.as_bytes(), value.as_bytes());
                }
            } else {
                log.say(format!("S {thread} {seq} D {j}"));
                for (table, _) in TABLES {
                    batch.delete(table, key.as_bytes());
                }
            }
            client.batch(batch)
        } else {
            log.say(format!("S {thread} {seq} C"));
            increment_counter(client)
        };
        match result {
            Ok(lsn) => log.say(format!("A {thread} {seq} {lsn}")),
            Err(error) if error.is_conflict() || matches!(error, Error::Overloaded { .. }) => {
                log.say(format!("F {thread} {seq}"));
            }
            // In doubt: no answer line. The kill shows up as a lost connection; anything
            // else in doubt is worth a note.
            Err(error) if error.may_have_applied() => {
                if !matches!(error, Error::ConnectionLost { .. }) {
                    eprintln!("cycle {cycle} thread {thread} op {seq}: in doubt: {error}");
                }
                return;
            }
            // Never sent: the connection was already gone.
            Err(Error::Closed { .. } | Error::Io { .. }) => {
                log.say(format!("F {thread} {seq}"));
                return;
            }
            Err(error) => {
                log.say(format!("E {thread} {seq} {error}"));
                return;
            }
        }
    }
}

/// Increments the counter in both tables with the client's transaction helper: the read of
/// the LSM table's counter becomes the commit's version condition, and the helper retries
/// conflicts and resends the commit (with its idempotency key) after an unknown outcome.
fn increment_counter(client: &BlockingClient) -> popdb_client::Result<u64> {
    let options = TxnOptions {
        retries_max: 8,
        ..TxnOptions::default()
    };
    let committed = client.transaction(options, |txn| async move {
        let n = txn
            .get("lsm", b"counter")
            .await?
            .map_or(0, |v| parse_count(&v));
        let next = (n + 1).to_string();
        for (table, _) in TABLES {
            txn.put(table, b"counter", next.as_bytes());
        }
        Ok(())
    })?;
    Ok(committed
        .lsn
        .expect("a transaction that read and wrote sends a commit"))
}

/// Runs `popdb check DIR`; returns 1 if it found problems (and prints its report).
fn offline_check(bin: &Path, dir: &Path) -> Result<u64, String> {
    let output = Command::new(bin)
        .arg("check")
        .arg(dir)
        .env("POPDB_LOG", "warn")
        .output()
        .map_err(|e| format!("run popdb check: {e}"))?;
    if output.status.success() {
        return Ok(0);
    }
    eprintln!(
        "popdb check {} ({}):\n{}{}",
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(1)
}

/// Prints how long restarts took to listen (recovery included).
fn print_restarts(ready_ms: &mut [u64], killed_while_starting: u64) {
    ready_ms.sort_unstable();
    let at = |q: f64| ready_ms[((ready_ms.len() - 1) as f64 * q).round() as usize];
    if ready_ms.is_empty() {
        return;
    }
    println!(
        "server: {} starts ({killed_while_starting} more killed while starting), listening \
         after p50 {} ms, p99 {} ms, max {} ms",
        ready_ms.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}
