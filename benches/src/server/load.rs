//! PopDB's load generator, built to cost what redis-benchmark costs Redis: one thread,
//! `connections` connections, and on each a batch of `pipeline` requests written at once,
//! the next batch once every response of the last is in (redis-benchmark's `-c` and `-P`).
//! It speaks the protocol itself, popdb-protocol's encoder and decoder on a plain socket, as
//! redis-benchmark speaks RESP through hiredis: one task per connection, no task, channel
//! or allocation per request, a clock read per write and per read. Every response is
//! checked: its request id is one of its batch's not yet answered, a SET's is Written, a
//! GET's is a Value holding the value the SETs write, or none. A request's latency runs
//! from the write of its batch to the read that brought its response.
//!
//! A phase issues `requests` requests in all (SET: a put of a `value_size`-byte value; GET:
//! a get), each on a key drawn at random from `keys` keys named like redis-benchmark's
//! (`key:%012d`), and is timed from its first request to its last response.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hdrhistogram::Histogram;
use popdb_protocol::{
    Decoded, Engine, ErrorKind, Frame, Limits, PROTOCOL_VERSION, PointRequest, PointResponse,
    Request, Response, TableOptions, decode_frame,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::cpu::{Reading, steal_percent, us_per_op};
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
    /// The share of the machine's CPU time the hypervisor gave other guests during the
    /// phase, in percent (/proc/stat's `steal`); `None` where /proc could not say. A phase
    /// that lost much measured the host's neighbours as well as the server.
    pub steal_percent: Option<f64>,
}

impl Figures {
    /// Sets the phase's costs from the readings taken around it.
    pub fn set_costs(&mut self, before: &Reading, after: &Reading) {
        self.server_cpu_us_per_op = us_per_op(before.server, after.server, self.requests);
        self.client_cpu_us_per_op = us_per_op(before.client, after.client, self.requests);
        self.steal_percent = steal_percent(before.stolen, after.stolen, after.at - before.at);
    }

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
            "steal_percent": self.steal_percent,
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
    // Two digits per division, from a table, as itoa does: this runs once per request.
    let mut rest = i;
    for pair in out[4..].rchunks_exact_mut(2) {
        let at = (rest % 100) as usize * 2;
        pair.copy_from_slice(&DIGIT_PAIRS[at..at + 2]);
        rest /= 100;
    }
}

/// "00" to "99", each two bytes.
const DIGIT_PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// Bytes read from a socket at a time, at first: a batch of 128 responses to 100-byte GETs
/// is about 16 KiB. The buffer grows if a response is larger than it.
const READ_CHUNK: usize = 64 * 1024;

/// One connection of the load, past its handshake: a plain socket and the protocol's
/// encoder and decoder, as redis-benchmark drives Redis with hiredis's.
pub struct Connection {
    stream: TcpStream,
    /// The limits the server announced, which its responses keep within.
    limits: Limits,
    /// Bytes received; `input[start..end]` is not yet decoded.
    input: Vec<u8>,
    start: usize,
    end: usize,
    /// The frames of the batch being sent, written with one write.
    output: Vec<u8>,
    /// The id of the next request.
    next_id: u64,
}

impl Connection {
    /// Connects to `addr` and completes the handshake.
    async fn open(addr: &str) -> Result<Connection> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to popdb at {addr}"))?;
        // As hiredis does for redis-benchmark: each batch goes out at once.
        stream.set_nodelay(true)?;
        let mut connection = Connection {
            stream,
            // Until the server announces its limits, as docs/protocol.md section 9 says.
            limits: Limits::DEFAULT,
            input: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            output: Vec::new(),
            next_id: 0,
        };
        let handshake = Request::Handshake {
            version_min: PROTOCOL_VERSION,
            version_max: PROTOCOL_VERSION,
            token: None,
        };
        match connection.call(&handshake).await? {
            Response::Handshake(ok) => connection.limits = ok.limits,
            other => bail!("the server answered the handshake with {other:?}"),
        }
        Ok(connection)
    }

    /// Sends one request alone and returns its response (setup only, untimed).
    async fn call(&mut self, request: &Request) -> Result<Response> {
        let id = self.next_id;
        self.next_id += 1;
        self.output.clear();
        request.encode(id, &mut self.output)?;
        self.stream.write_all(&self.output).await?;
        loop {
            let buffered = self.input.get(self.start..self.end).unwrap_or_default();
            if let Decoded::Frame(frame) = decode_frame(buffered, &self.limits)? {
                ensure!(
                    frame.header.request_id == id,
                    "the response to request {id} came with id {}",
                    frame.header.request_id
                );
                let response = Response::decode(&frame, &self.limits)?;
                self.start += frame.size();
                return Ok(response);
            }
            self.fill().await?;
        }
    }

    /// Reads what the socket has into the input buffer (waiting for at least one byte),
    /// making room first: moving undecoded bytes to the front, growing the buffer if they
    /// fill it (a frame larger than the buffer; `decode_frame` has checked its declared
    /// size against the limits by then).
    async fn fill(&mut self) -> Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.input.len() {
            self.input.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.input.len() {
                self.input.resize(self.input.len() * 2, 0);
            }
        }
        let room = self.input.get_mut(self.end..).unwrap_or_default();
        let n = self.stream.read(room).await?;
        ensure!(n > 0, "the server closed the connection");
        self.end += n;
        Ok(())
    }

    /// Sends requests `first..first + count` of the phase as one batch (one write) and reads
    /// until every one is answered, checking each response and timing it from the write to
    /// the read that brought it. Returns how many GETs found their key.
    async fn batch(&mut self, phase: &Phase, first: u64, count: u64) -> Result<u64> {
        ensure!(
            (1..=128).contains(&count),
            "a batch of {count} requests: from 1 to 128"
        );
        let base = self.next_id;
        self.output.clear();
        let mut key = [0; KEY_SIZE];
        for i in 0..count {
            key_into(
                mix((first + i) ^ (phase.op.salt() << 48)) % phase.keys,
                &mut key,
            );
            let request = match phase.op {
                Op::Set => PointRequest::Put {
                    table: TABLE,
                    key: &key,
                    value: &phase.value,
                },
                Op::Get => PointRequest::Get {
                    table: TABLE,
                    key: &key,
                },
            };
            request.encode(base + i, &mut self.output)?;
        }
        self.next_id += count;
        let sent = Instant::now();
        self.stream.write_all(&self.output).await?;
        // Bit i: request `base + i` awaits its response (a batch is at most 128 requests).
        let mut pending = u128::MAX >> (128 - count);
        let mut found = 0;
        while pending != 0 {
            self.fill().await?;
            let latency = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let mut answered = 0;
            loop {
                let buffered = self.input.get(self.start..self.end).unwrap_or_default();
                let Decoded::Frame(frame) = decode_frame(buffered, &self.limits)? else {
                    break;
                };
                let id = frame.header.request_id;
                let index = id.wrapping_sub(base);
                let bit = if index < count { 1_u128 << index } else { 0 };
                ensure!(
                    pending & bit != 0,
                    "a response with id {id}, which no request of the batch ({base} to {}) \
                     awaits",
                    base + count - 1
                );
                pending &= !bit;
                found += check(phase, &frame, &self.limits)?;
                self.start += frame.size();
                answered += 1;
            }
            if answered > 0 {
                phase
                    .latency
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .saturating_record_n(latency, answered);
            }
        }
        Ok(found)
    }
}

/// Whether `frame` answers a request of `phase` as it should: a SET with Written, a GET
/// with a Value that is the phase's value or none (a key no SET drew). Returns 1 for a GET
/// that found its key.
fn check(phase: &Phase, frame: &Frame<'_>, limits: &Limits) -> Result<u64> {
    let id = frame.header.request_id;
    // The answers expected are read in place; anything else (an error) is decoded whole to
    // be reported.
    let point = PointResponse::decode(frame, limits)
        .with_context(|| format!("the response to request {id}"))?;
    match (phase.op, point) {
        (Op::Set, Some(PointResponse::Written { .. }))
        | (Op::Get, Some(PointResponse::Value(None))) => Ok(0),
        (Op::Get, Some(PointResponse::Value(Some((value, _))))) => {
            ensure!(
                value == phase.value.as_slice(),
                "request {id}: a GET found a value the SETs did not write: {:?}",
                value.escape_ascii().to_string()
            );
            Ok(1)
        }
        (op, _) => match Response::decode(frame, limits) {
            Ok(Response::Error(error)) => bail!("request {id}: the server answered {error}"),
            other => bail!("request {id}: a {} answered with {other:?}", op.name()),
        },
    }
}

/// What every connection of a phase shares.
struct Phase {
    op: Op,
    keys: u64,
    requests: u64,
    pipeline: u64,
    value: Vec<u8>,
    /// The index of the next request not yet taken by a connection.
    next: AtomicU64,
    /// Every connection's latencies. One histogram, made before the clock starts (one is a
    /// few hundred KiB of counters: one per connection had each phase zeroing and merging
    /// tens of MiB), locked once per read; the tasks share one thread, so never contended.
    latency: Mutex<Histogram<u64>>,
}

/// Connects the load's connections (untimed).
///
/// # Errors
/// A connection or handshake that fails.
pub async fn connect(addr: &str, load: Load) -> Result<Vec<Connection>> {
    let mut connections = Vec::with_capacity(load.connections as usize);
    for _ in 0..load.connections {
        connections.push(Connection::open(addr).await?);
    }
    Ok(connections)
}

/// Creates the load's table on `connection` (untimed); one that exists already will do if
/// `may_exist`.
///
/// # Errors
/// A failed request, or any answer but the table's creation.
pub async fn create_table(
    connection: &mut Connection,
    engine: Engine,
    may_exist: bool,
) -> Result<()> {
    let request = Request::CreateTable {
        name: TABLE.to_owned(),
        options: TableOptions::new(engine),
    };
    match connection.call(&request).await? {
        Response::TableCreated { .. } => Ok(()),
        Response::Error(error) if may_exist && error.kind == ErrorKind::TableExists => Ok(()),
        other => bail!("creating the table {TABLE}: the server answered {other:?}"),
    }
}

/// Runs one phase on `connections`, one task each, and returns them with its figures.
///
/// Like redis-benchmark, each connection takes `pipeline` requests at a time (fewer at the
/// end) until the phase's `requests` are taken, writes them at once and reads until all are
/// answered before taking the next.
///
/// # Errors
/// Any request that fails or is answered wrongly: a benchmark that hides errors measures
/// nothing.
pub async fn run(
    connections: Vec<Connection>,
    op: Op,
    load: Load,
) -> Result<(Vec<Connection>, Figures)> {
    let phase = Arc::new(Phase {
        op,
        keys: load.keys,
        requests: load.requests,
        pipeline: u64::from(load.pipeline.max(1)),
        value: vec![b'x'; load.value_size],
        next: AtomicU64::new(0),
        latency: Mutex::new(new_histogram()),
    });
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut connection in connections {
        let phase = Arc::clone(&phase);
        tasks.spawn(async move {
            let found = drive(&mut connection, &phase).await?;
            anyhow::Ok((connection, found))
        });
    }
    let mut connections = Vec::with_capacity(tasks.len());
    let mut found = 0;
    while let Some(joined) = tasks.join_next().await {
        let (connection, its_found) = joined.context("a load task panicked")??;
        found += its_found;
        connections.push(connection);
    }
    let elapsed = started.elapsed();
    let latency = phase
        .latency
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    ensure!(
        latency.len() == load.requests,
        "{} requests answered, {} sent",
        latency.len(),
        load.requests
    );
    Ok((connections, figures(op, &latency, elapsed, found)))
}

/// One connection's share of a phase: batches until the phase's requests are all taken.
/// Returns how many GETs found their key.
async fn drive(connection: &mut Connection, phase: &Phase) -> Result<u64> {
    let mut found = 0;
    loop {
        let first = phase.next.fetch_add(phase.pipeline, Ordering::Relaxed);
        if first >= phase.requests {
            return Ok(found);
        }
        let count = phase.pipeline.min(phase.requests - first);
        found += connection.batch(phase, first, count).await?;
    }
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
        steal_percent: None,
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
        key_into(100_000_000_007, &mut key);
        assert_eq!(&key, b"key:100000000007");
        key_into(90_817_263_544, &mut key);
        assert_eq!(&key, b"key:090817263544");
    }
}
