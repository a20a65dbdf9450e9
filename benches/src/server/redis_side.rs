//! The Redis side: redis-server (the Debian package) in its own process on a fresh
//! directory and a free loopback port, driven by `redis-benchmark` with the same load.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use super::cpu::{Reading, children_cpu_seconds, cpu_seconds};
use super::load::Figures;
use super::settings::{Durability, Load, redis_args, redis_benchmark_args};

/// How long redis-server gets to answer PING after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

const INSTALL_HINT: &str = "install it with `apt-get install -y redis-server` (redis-tools \
                            brings redis-benchmark)";

/// A running redis-server; killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(durability: Durability, dir: &Path) -> Result<Server> {
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args(redis_args(durability, port, dir))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting redis-server: {INSTALL_HINT}"))?;
        let mut server = Server { child, port };
        server.wait_ready()?;
        Ok(server)
    }

    /// Polls with PING until the server answers PONG.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("redis-server exited before serving: {status} (its log is redis.log)");
            }
            if ping(self.port).unwrap_or(false) {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "redis-server did not answer PING on port {} within {READY_TIMEOUT:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on right now (the kernel's pick; released at once, so
/// another process could take it before redis-server binds it, in which case the start
/// fails loudly rather than measuring the wrong server).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn ping(port: u16) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    stream.write_all(b"PING\r\n")?;
    let mut reply = [0_u8; 7];
    stream.read_exact(&mut reply)?;
    Ok(&reply == b"+PONG\r\n")
}

/// One Redis run: start redis-server in `dir`, run redis-benchmark's SET and GET tests.
///
/// # Errors
/// The server's start, redis-benchmark's failure or output that does not parse.
pub fn run(durability: Durability, dir: &Path, load: Load) -> Result<(Figures, Figures)> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let server = Server::start(durability, dir)?;
    let pid = server.child.id();
    // One redis-benchmark per test (it makes fresh connections for every test anyway), so
    // that the server's CPU time can be read between them.
    let reading = || Reading::now(cpu_seconds(pid), children_cpu_seconds());
    let start = reading();
    let mut set = benchmark(load, server.port, "set")?;
    let after_set = reading();
    let mut get = benchmark(load, server.port, "get")?;
    let after_get = reading();
    drop(server);
    set.set_costs(&start, &after_set);
    get.set_costs(&after_set, &after_get);
    Ok((set, get))
}

/// Runs redis-benchmark's `test` (`set` or `get`) and parses its figures.
fn benchmark(load: Load, port: u16, test: &str) -> Result<Figures> {
    let started = Instant::now();
    let output = Command::new("redis-benchmark")
        .args(redis_benchmark_args(load, port, test))
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running redis-benchmark: {INSTALL_HINT}"))?;
    let wall = started.elapsed();
    ensure!(
        output.status.success(),
        "redis-benchmark exited with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let csv = String::from_utf8(output.stdout).context("redis-benchmark's output")?;
    let mut figures = parse_csv(&csv, &test.to_ascii_uppercase(), load.requests)?;
    figures.ops_per_sec = finite_rate(figures.ops_per_sec, load.requests, wall);
    Ok(figures)
}

/// redis-benchmark's rate, or, when it printed `inf` (a run shorter than its millisecond
/// clock, as in CI's smoke run), the requests over the whole process's wall time: a lower
/// bound, since that time includes connecting. Full runs last seconds and never need it.
fn finite_rate(reported: f64, requests: u64, wall: Duration) -> f64 {
    if reported.is_finite() && reported > 0.0 {
        reported
    } else {
        requests as f64 / wall.as_secs_f64().max(1e-9)
    }
}

/// The figures of `test` in redis-benchmark's `--csv` output: a header line
/// `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",...` then one line per
/// test. Columns are found by header name, not position.
fn parse_csv(csv: &str, test: &str, requests: u64) -> Result<Figures> {
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').map(|f| f.trim().trim_matches('"')).collect())
        .collect();
    let header = rows
        .iter()
        .find(|r| r.first() == Some(&"test"))
        .with_context(|| format!("no header in redis-benchmark's output: {csv:?}"))?;
    let row = rows
        .iter()
        .find(|r| r.first() == Some(&test))
        .with_context(|| format!("no {test} line in redis-benchmark's output: {csv:?}"))?;
    let column = |name: &str| -> Result<f64> {
        let at = header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("no {name} column in redis-benchmark's output"))?;
        let field = row.get(at).with_context(|| format!("{test}: no {name}"))?;
        field
            .parse()
            .with_context(|| format!("{test}: {name} {field:?} is not a number"))
    };
    Ok(Figures {
        ops_per_sec: column("rps")?,
        requests,
        p50_ms: column("p50_latency_ms")?,
        p99_ms: column("p99_latency_ms")?,
        p99_9_ms: None,
        found: None,
        server_cpu_us_per_op: None,
        client_cpu_us_per_op: None,
        steal_percent: None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

    use super::*;

    #[test]
    fn parse_csv_reads_redis_benchmark_7() {
        let csv = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\
                   \"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                   \"SET\",\"1445.09\",\"6.856\",\"0.264\",\"6.111\",\"14.231\",\"19.983\",\"34.175\"\n\
                   \"GET\",\"27777.78\",\"0.263\",\"0.024\",\"0.071\",\"0.167\",\"4.199\",\"11.559\"\n";
        let set = parse_csv(csv, "SET", 10).unwrap();
        assert!((set.ops_per_sec - 1445.09).abs() < 1e-9);
        assert!((set.p99_ms - 19.983).abs() < 1e-9);
        let get = parse_csv(csv, "GET", 10).unwrap();
        assert!((get.p50_ms - 0.071).abs() < 1e-9);
        assert!(parse_csv(csv, "INCR", 10).is_err());
        assert!(parse_csv("", "SET", 10).is_err());
    }

    #[test]
    fn an_infinite_rate_falls_back_to_the_wall_time() {
        let csv = "\"test\",\"rps\",\"p50_latency_ms\",\"p99_latency_ms\"\n\
                   \"GET\",\"inf\",\"0.071\",\"0.167\"\n";
        let get = parse_csv(csv, "GET", 300).unwrap();
        assert!(get.ops_per_sec.is_infinite());
        let rate = finite_rate(get.ops_per_sec, 300, Duration::from_millis(3));
        assert!((rate - 100_000.0).abs() < 1e-6, "{rate}");
        assert!((finite_rate(1445.5, 300, Duration::from_millis(3)) - 1445.5).abs() < 1e-9);
    }
}
