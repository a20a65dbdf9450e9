//! PopDB's load generator: `connections` popdb-client connections, each keeping `pipeline`
//! requests in flight, on one thread, the way redis-benchmark drives Redis (one thread, `-c`
//! connections, `-P` commands in flight on each). A phase issues `requests` requests in all
//! (SET: a put of a `value_size`-byte value; GET: a get), each on a key drawn at random from
//! `keys` keys named like redis-benchmark's (`key:%012d`), and is timed from its first
//! request to its last response.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use hdrhistogram::Histogram;
use popdb_client::Client;
use serde_json::{Value, json};

use super::settings::{Load, TABLE};
use crate::keys::mix;
use crate::measure::new_histogram;

/// What a phase measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Set,
    Get,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Set => "set",
            Op::Get => "get",
        }
    }

    /// Mixed into the key draw so that the GET phase does not replay the SET phase's keys
    /// in the same order (redis-benchmark draws afresh for each test too).
    fn salt(self) -> u64 {
        match self {
            Op::Set => 0x5e7,
            Op::Get => 0x6e7,
        }
    }
}

/// One phase's figures, the same fields for both sides.
#[derive(Clone, Debug)]
pub struct Figures {
    pub ops_per_sec: f64,
    pub requests: u64,
    /// Latency quantiles in milliseconds (redis-benchmark reports p50 and p99, not p99.9).
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: Option<f64>,
    /// GETs that found their key (PopDB only; redis-benchmark does not count them).
    pub found: Option<u64>,
    /// The server process's CPU time (all threads) per request of the phase, in
    /// microseconds; `None` where /proc could not say.
    pub server_cpu_us_per_op: Option<f64>,
    /// The load generator's CPU time per request, in microseconds (PopDB: this process;
    /// Redis: redis-benchmark). On two cores a load generator that needs more than one
    /// core's worth caps the figure it reports.
    pub client_cpu_us_per_op: Option<f64>,
}

impl Figures {
    pub fn to_json(&self) -> Value {
        json!({
            "ops_per_sec": self.ops_per_sec,
            "requests": self.requests,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "p99_9_ms": self.p99_9_ms,
            "found": self.found,
            "server_cpu_us_per_op": self.server_cpu_us_per_op,
            "client_cpu_us_per_op": self.client_cpu_us_per_op,
        })
    }
}

/// The key of index `i`: 16 bytes, as redis-benchmark's `key:__rand_int__` with `-r`.
pub fn key(i: u64) -> String {
    format!("key:{i:012}")
}

/// Connects the load's connections (untimed).
///
/// # Errors
/// A connection that fails.
pub async fn connect(addr: &str, load: Load) -> Result<Vec<Client>> {
    let options = popdb_client::ClientOptions::default().with_in_flight_max(load.pipeline.max(1));
    let mut clients = Vec::with_capacity(load.connections as usize);
    for _ in 0..load.connections {
        let client = Client::connect(addr, options.clone())
            .await
            .with_context(|| format!("connecting to popdb at {addr}"))?;
        clients.push(client);
    }
    Ok(clients)
}

/// Runs one phase on `clients` and returns its figures.
///
/// # Errors
/// Any request that fails: a benchmark that hides errors measures nothing.
pub async fn run(clients: &[Client], op: Op, load: Load) -> Result<Figures> {
    let next = Arc::new(AtomicU64::new(0));
    let value = Arc::new(vec![b'x'; load.value_size]);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in clients {
        for _ in 0..load.pipeline {
            let client = client.clone();
            let next = Arc::clone(&next);
            let value = Arc::clone(&value);
            tasks.spawn(async move { worker(&client, op, load, &next, &value).await });
        }
    }
    let mut latency = new_histogram();
    let mut found = 0;
    while let Some(joined) = tasks.join_next().await {
        let (histogram, hits) = joined.context("a load task panicked")??;
        latency.add(&histogram).context("merging latencies")?;
        found += hits;
    }
    let elapsed = started.elapsed();
    ensure!(
        latency.len() == load.requests,
        "{} requests answered, {} sent",
        latency.len(),
        load.requests
    );
    Ok(figures(op, &latency, elapsed, found))
}

/// One of the `pipeline` tasks of a connection: takes request indexes until there are none
/// left, one request in flight at a time.
async fn worker(
    client: &Client,
    op: Op,
    load: Load,
    next: &AtomicU64,
    value: &[u8],
) -> Result<(Histogram<u64>, u64)> {
    let mut latency = new_histogram();
    let mut found = 0;
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        if index >= load.requests {
            break;
        }
        let key = key(mix(index ^ (op.salt() << 48)) % load.keys);
        let sent = Instant::now();
        match op {
            Op::Set => {
                client
                    .put(TABLE, key.as_bytes(), value)
                    .await
                    .with_context(|| format!("put {key}"))?;
            }
            Op::Get => {
                let got = client
                    .get(TABLE, key.as_bytes())
                    .await
                    .with_context(|| format!("get {key}"))?;
                found += u64::from(got.is_some());
            }
        }
        let nanos = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
        latency.saturating_record(nanos);
    }
    Ok((latency, found))
}

fn figures(op: Op, latency: &Histogram<u64>, elapsed: Duration, found: u64) -> Figures {
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1e6;
    Figures {
        ops_per_sec: latency.len() as f64 / elapsed.as_secs_f64(),
        requests: latency.len(),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p99_9_ms: Some(ms(0.999)),
        found: (op == Op::Get).then_some(found),
        server_cpu_us_per_op: None,
        client_cpu_us_per_op: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_redis_benchmarks_shape() {
        assert_eq!(key(12_345), "key:000000012345");
        assert_eq!(key(0).len(), 16);
    }
}
