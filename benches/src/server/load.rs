//! PopDB's load generator: `connections` popdb-client connections, each keeping `pipeline`
//! requests in flight, on one thread, the way redis-benchmark drives Redis (one thread, `-c`
//! connections, `-P` commands in flight on each). A phase issues `requests` requests in all
//! (SET: a put of a `value_size`-byte value; GET: a get), each on a key drawn at random from
//! `keys` keys named like redis-benchmark's (`key:%012d`), and is timed from its first
//! request to its last response.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// The size of every key: `key:` and 12 digits.
const KEY_SIZE: usize = 16;

/// The key of index `i`: 16 bytes, as redis-benchmark's `key:__rand_int__` with `-r`
/// (which writes its digits into the same buffer each time; so does this, without an
/// allocation per request).
///
/// # Panics
/// If `i` has more than 12 digits (the key space is far smaller).
pub fn key_into(i: u64, out: &mut [u8; KEY_SIZE]) {
    assert!(
        i < 1_000_000_000_000,
        "key index {i} has more than 12 digits"
    );
    out[..4].copy_from_slice(b"key:");
    let mut rest = i;
    for digit in out[4..].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
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
    // One histogram for every task, made before the clock starts: a histogram is a few
    // hundred KiB of counters, and one per task (800 at 50 connections x 16) had the phase
    // zeroing and merging hundreds of MiB inside the timed window. The tasks share one
    // thread, so the lock is never contended.
    let latency = Arc::new(Mutex::new(new_histogram()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in clients {
        for _ in 0..load.pipeline {
            let client = client.clone();
            let next = Arc::clone(&next);
            let value = Arc::clone(&value);
            let latency = Arc::clone(&latency);
            tasks.spawn(async move { worker(&client, op, load, &next, &value, &latency).await });
        }
    }
    let mut found = 0;
    while let Some(joined) = tasks.join_next().await {
        found += joined.context("a load task panicked")??;
    }
    let elapsed = started.elapsed();
    let latency = latency
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    ensure!(
        latency.len() == load.requests,
        "{} requests answered, {} sent",
        latency.len(),
        load.requests
    );
    Ok(figures(op, &latency, elapsed, found))
}

/// One of the `pipeline` tasks of a connection: takes request indexes until there are none
/// left, one request in flight at a time, and records each one's latency. Returns how many
/// GETs found their key.
async fn worker(
    client: &Client,
    op: Op,
    load: Load,
    next: &AtomicU64,
    value: &[u8],
    latency: &Mutex<Histogram<u64>>,
) -> Result<u64> {
    let mut found = 0;
    let mut key = [0; KEY_SIZE];
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        if index >= load.requests {
            break;
        }
        key_into(mix(index ^ (op.salt() << 48)) % load.keys, &mut key);
        let sent = Instant::now();
        match op {
            Op::Set => {
                client
                    .put(TABLE, &key, value)
                    .await
                    .with_context(|| format!("put {}", key.escape_ascii()))?;
            }
            Op::Get => {
                let got = client
                    .get(TABLE, &key)
                    .await
                    .with_context(|| format!("get {}", key.escape_ascii()))?;
                found += u64::from(got.is_some());
            }
        }
        let nanos = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
        latency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .saturating_record(nanos);
    }
    Ok(found)
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
        let mut key = [0; KEY_SIZE];
        key_into(12_345, &mut key);
        assert_eq!(&key, b"key:000000012345");
        key_into(999_999_999_999, &mut key);
        assert_eq!(&key, b"key:999999999999");
        key_into(0, &mut key);
        assert_eq!(&key, b"key:000000000000");
    }
}
